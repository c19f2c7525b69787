//! The same listening tuple in two network namespaces (every pod on
//! 0.0.0.0:8080; here 127.0.0.1:PORT twice): each accepted socket belongs
//! to its own namespace's server, every record names its namespace, the
//! census per namespace is what `ss` shows there, and `--netns` picks one.
//! And a SYN-ACK retransmit (the client's final ACK dropped) counts on the
//! listener without leaving a SYN_RECV row behind.
//!
//! Servers and clients are threads of this test process (its pid), told
//! apart by their thread names, which is what tcptrace reports as `comm`
//! for the task that listened or connected.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;
use tests::{
    NetNs, Tracer,
    ftrace::{Ftrace, census_distance, field},
    our_pid, require_root,
    tracer::{of_type, run},
    unique_port, wait_until,
};

/// The namespace's inode, as tcptrace reports it in `netns`.
fn inode(ns: &NetNs) -> u64 {
    std::fs::metadata(ns_path(ns)).unwrap().ino()
}

fn ns_path(ns: &NetNs) -> String {
    format!("/run/netns/{}", ns.name)
}

/// A JSON census object as a map.
fn census_of(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// The last `top` record.
fn last_top(recs: &[Value]) -> &Value {
    recs.iter()
        .rev()
        .find(|r| r["type"] == "top")
        .expect("a top record")
}

/// A temporary recording path, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> Self {
        Self(std::env::temp_dir().join(format!("tcptrace-{tag}-{}.jsonl", std::process::id())))
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `tcptrace replay FILE states ARGS... --json`, without `lost` records.
fn replay_states(file: &TempFile, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["replay", file.path(), "states", "--json"];
    all.extend_from_slice(args);
    let (status, out, err) = run(&all);
    assert!(status.success(), "replay {args:?} failed: {err}");
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["type"] != "lost")
        .collect()
}

/// How the workload of one namespace went.
struct Side {
    ns: NetNs,
    netns: u64,
    /// Connections made and kept open, and made and closed by the client.
    open: usize,
    closed: usize,
}

/// Two namespaces, a listener on the same 127.0.0.1:PORT in each (B's made
/// last), clients in each: every server-side record is owned by its own
/// namespace's server thread and carries its namespace; `top --json`'s
/// census per namespace equals `ss -tan` there; `--netns` (a path live, an
/// inode in replay) shows one namespace only. A state change that fired
/// where no BPF program runs (see `Ftrace`) is unseen: its socket may be
/// left behind in the census, and an accepted socket may be missing.
#[test]
fn same_listener_in_two_namespaces() {
    require_root();
    let port = unique_port();
    let sides = [
        Side {
            ns: NetNs::new("nsa"),
            netns: 0,
            open: 3,
            closed: 1,
        },
        Side {
            ns: NetNs::new("nsb"),
            netns: 0,
            open: 2,
            closed: 2,
        },
    ]
    .map(|s| Side {
        netns: inode(&s.ns),
        ..s
    });
    assert_ne!(sides[0].netns, sides[1].netns);
    let p = port.to_string();
    let rec = TempFile::new("netns");
    let recorder = Tracer::start(&["record", "-o", rec.path(), "--port", &p]);
    let top = Tracer::start(&["top", "--json", "--interval", "0.2", "--port", &p]);
    let only_a = Tracer::start(&[
        "states",
        "--json",
        "--port",
        &p,
        "--netns",
        &ns_path(&sides[0].ns),
    ]);
    let peer = Ftrace::start(
        "sock/inet_sock_set_state",
        &format!("sport == {port} || dport == {port}"),
    );

    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Listeners first, A then B, so B's is the one seen last; then each
    // namespace's clients.
    let mut keep = Vec::new();
    let mut done = Vec::new();
    let mut listening = Vec::new();
    for (i, s) in sides.iter().enumerate() {
        let (tx, rx) = mpsc::channel::<TcpListener>();
        let name = format!("tt-srv-{}", ["a", "b"][i]);
        s.ns.run(&name, move || {
            tx.send(TcpListener::bind(server).unwrap()).unwrap();
        });
        listening.push(rx.recv().unwrap());
    }
    for (i, s) in sides.iter().enumerate() {
        let (open, closed) = (s.open, s.closed);
        let l = listening[i].try_clone().unwrap();
        let name = format!("tt-cli-{}", ["a", "b"][i]);
        let (pairs, ended) = s.ns.run(&name, move || {
            let mut pairs = Vec::new();
            for _ in 0..open {
                let c = TcpStream::connect(server).unwrap();
                let (srv, _) = l.accept().unwrap();
                pairs.push((c, srv));
            }
            // Closed by the client first: TIME_WAIT on its side.
            let mut ended = Vec::new();
            for _ in 0..closed {
                let mut c = TcpStream::connect(server).unwrap();
                let (mut srv, _) = l.accept().unwrap();
                c.write_all(b"x").unwrap();
                drop(c);
                let mut buf = Vec::new();
                srv.read_to_end(&mut buf).unwrap();
                ended.push(srv);
            }
            (pairs, ended)
        });
        keep.push(pairs);
        done.push(ended);
    }
    drop(done);

    // Each namespace settles: its client-closed sockets in TIME_WAIT.
    let settled = wait_until(Duration::from_secs(5), || {
        sides
            .iter()
            .all(|s| s.ns.ss_census(port).get("TIME_WAIT") == Some(&(s.closed as u64)))
    });
    assert!(settled, "the workload did not settle");
    std::thread::sleep(Duration::from_millis(600));
    let kernel: Vec<BTreeMap<String, u64>> = sides.iter().map(|s| s.ns.ss_census(port)).collect();
    let top_recs = top.stop();
    recorder.stop();
    let live_a = only_a.stop();
    drop((keep, listening));

    // The census per namespace is what ss shows there (ftrace does not
    // say the namespace: the state changes no BPF program saw may leave
    // as many sockets behind in either).
    let blind = peer.blind_lines();
    let mut distance = 0;
    let last = last_top(&top_recs);
    for (s, k) in sides.iter().zip(&kernel) {
        let got = census_of(&last["census_by_netns"][s.netns.to_string()]);
        distance += census_distance(&got, k);
        assert!(
            distance <= 2 * blind.len() as u64,
            "netns {}: tcptrace {got:?} vs ss -tan {k:?}; where BPF does not run: {blind:#?}; {last:#}",
            s.netns
        );
        assert_eq!(k.get("LISTEN"), Some(&1));
        assert_eq!(k.get("ESTABLISHED"), Some(&(2 * s.open as u64)));
        eprintln!("netns {}: census {got:?}, ss {k:?}", s.netns);
    }
    // The total is the sum over namespaces.
    let mut sum: BTreeMap<String, u64> = BTreeMap::new();
    for c in last["census_by_netns"].as_object().unwrap().values() {
        for (state, n) in census_of(c) {
            *sum.entry(state).or_default() += n;
        }
    }
    assert_eq!(census_of(&last["census"]), sum, "{last:#}");

    // Every record of ours names one of our two namespaces; each record
    // of a server-side socket (local port PORT) is owned by its own
    // namespace's server, each client-side one by its own client.
    let states = replay_states(&rec, &[]);
    let (ours, others): (Vec<&Value>, Vec<&Value>) = states
        .iter()
        .partition(|r| sides.iter().any(|s| r["netns"] == s.netns));
    for r in &others {
        eprintln!("not in our namespaces (another test's?): {r}");
    }
    for (i, s) in sides.iter().enumerate() {
        let in_ns: Vec<&&Value> = ours.iter().filter(|r| r["netns"] == s.netns).collect();
        let server_side: Vec<&&Value> = in_ns
            .iter()
            .filter(|r| r["lport"] == port)
            .copied()
            .collect();
        let client_side: Vec<&&Value> = in_ns
            .iter()
            .filter(|r| r["lport"] != port)
            .copied()
            .collect();
        let (srv, cli) = (
            format!("tt-srv-{}", ["a", "b"][i]),
            format!("tt-cli-{}", ["a", "b"][i]),
        );
        for r in &server_side {
            assert_eq!(
                (r["pid"].as_u64(), r["comm"].as_str()),
                (Some(our_pid()), Some(srv.as_str())),
                "a server-side record in netns {} not owned by {srv}: {r}",
                s.netns
            );
        }
        for r in &client_side {
            assert_eq!(r["comm"], cli.as_str(), "{r}");
        }
        // The listener, and each accepted socket entering SYN_RECV.
        let accepted = server_side
            .iter()
            .filter(|r| r["old"] == "LISTEN" && r["new"] == "SYN_RECV")
            .count();
        let unseen = blind
            .iter()
            .filter(|l| field(l, "oldstate") == Some("TCP_LISTEN"))
            .filter(|l| field(l, "newstate") == Some("TCP_SYN_RECV"))
            .count();
        assert!(
            accepted <= s.open + s.closed && accepted + unseen >= s.open + s.closed,
            "netns {}: {accepted} accepted, {unseen} where BPF does not run",
            s.netns
        );
        assert!(
            server_side
                .iter()
                .any(|r| r["old"] == "CLOSE" && r["new"] == "LISTEN")
        );
        let connects = client_side
            .iter()
            .filter(|r| r["old"] == "CLOSE" && r["new"] == "SYN_SENT")
            .count();
        assert_eq!(connects, s.open + s.closed, "netns {}", s.netns);
        eprintln!(
            "netns {}: {} server-side and {} client-side records, all owned by {srv} / {cli}",
            s.netns,
            server_side.len(),
            client_side.len()
        );
    }

    // --netns: live by path, in replay by inode, one namespace only.
    let a = sides[0].netns;
    let a_records = ours.iter().filter(|r| r["netns"] == a).count();
    let live_a: Vec<&Value> = of_type(&live_a, "state");
    assert!(!live_a.is_empty());
    assert!(live_a.iter().all(|r| r["netns"] == a), "{live_a:#?}");
    assert_eq!(live_a.len(), a_records);
    let replay_a = replay_states(&rec, &["--netns", &a.to_string()]);
    assert!(replay_a.iter().all(|r| r["netns"] == a));
    assert_eq!(replay_a.len(), a_records);
    let replay_b = replay_states(&rec, &["--netns", &sides[1].netns.to_string()]);
    assert_eq!(replay_b.len() + a_records, ours.len());
}

/// The client's final ACK of the handshake is dropped (nftables, input
/// hook), so the server retransmits its SYN-ACK from a request socket,
/// once with a listener from before start-up and once with one made after:
/// the retransmits are reported with the listener's owner, counted on the
/// listener, as many as the namespace's TCPSynRetrans but those whose
/// timer fired where no BPF program runs (see `Ftrace`); and once the
/// handshake completes and `ss` shows no SYN-RECV, `top` has no SYN_RECV
/// row and its census equals `ss` (but for sockets whose last state
/// change no BPF program saw).
#[test]
fn synack_retransmits_leave_no_syn_recv_row() {
    synack_retransmits(None);
}

/// The same from the classic tracepoints, the form kernels without BTF get.
#[test]
fn synack_retransmits_leave_no_syn_recv_row_classic_tracepoint() {
    synack_retransmits(Some("tracepoint"));
}

/// `hook_type`: `--hook-type` (`None`: tcptrace's own choice).
fn synack_retransmits(hook_type: Option<&str>) {
    require_root();
    let ns = NetNs::new("synack");
    let netns = inode(&ns);
    let (early, late) = (unique_port(), unique_port());
    ns.nft(&format!(
        "table inet lastack {{
           chain input {{
             type filter hook input priority 0; policy accept;
             tcp dport {{ {early}, {late} }} tcp flags & (syn | ack) == ack drop
           }}
         }}"
    ));
    let addr = |port: u16| -> SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };
    // The listener from before start-up, found in /proc: its thread stays
    // in the namespace until the end (/proc shows the TCP table of a
    // namespace some task is in).
    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let early_thread = ns.spawn("tt-srv-early", move || {
        tx.send(TcpListener::bind(addr(early)).unwrap()).unwrap();
        let _ = done_rx.recv();
    });
    let early_l = rx.recv().unwrap();
    let path = ns_path(&ns);
    let with_form = |args: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        v.extend(["--netns".to_string(), path.clone()]);
        if let Some(h) = hook_type {
            v.extend(["--hook-type".to_string(), h.to_string()]);
        }
        v
    };
    let start =
        |args: Vec<String>| Tracer::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let top = start(with_form(&["top", "--json", "--interval", "0.2"]));
    let retrans = start(with_form(&["retrans", "--json"]));
    let states = Ftrace::start(
        "sock/inet_sock_set_state",
        &format!("sport == {early} || dport == {early} || sport == {late} || dport == {late}"),
    );
    let peer = Ftrace::start(
        "tcp/tcp_retransmit_synack",
        &format!("sport == {early} || sport == {late}"),
    );
    let before = ns.counter("TcpExt", "TCPSynRetrans");
    let (tx, rx) = mpsc::channel();
    ns.run("tt-srv-late", move || {
        tx.send(TcpListener::bind(addr(late)).unwrap()).unwrap()
    });
    let late_l = rx.recv().unwrap();
    // The clients' connects complete (they got the SYN-ACK); their ACKs
    // do not arrive, so the servers hold request sockets and retransmit.
    let clients = ns.run("tt-cli", move || {
        [early, late].map(|p| TcpStream::connect(addr(p)).unwrap())
    });
    let retransmitted = wait_until(Duration::from_secs(5), || {
        ns.counter("TcpExt", "TCPSynRetrans") - before >= 2
    });
    assert!(retransmitted, "no SYN-ACK retransmits");
    let half_open = ns.ss_census(early).get("SYN_RECV").copied();
    assert_eq!(half_open, Some(1), "ss shows the request socket");
    // Let the handshakes complete: data carries the ACK.
    ns.sh(&["nft", "delete", "table", "inet", "lastack"]);
    let mut clients = clients;
    for c in &mut clients {
        c.write_all(b"x").unwrap();
    }
    let servers: Vec<TcpStream> = [&early_l, &late_l]
        .iter()
        .map(|l| l.accept().unwrap().0)
        .collect();
    let gone = wait_until(Duration::from_secs(5), || {
        [early, late]
            .iter()
            .all(|&p| !ns.ss_census(p).contains_key("SYN_RECV"))
    });
    assert!(gone, "ss still shows SYN-RECV");
    let synack_retrans = ns.counter("TcpExt", "TCPSynRetrans") - before;
    std::thread::sleep(Duration::from_millis(600));
    let kernel: BTreeMap<String, u64> = {
        let mut k = ns.ss_census(early);
        for (s, n) in ns.ss_census(late) {
            *k.entry(s).or_default() += n;
        }
        k
    };
    let recs = top.stop();
    let retrans = retrans.stop();
    drop((clients, servers, early_l, late_l));
    done_tx.send(()).unwrap();
    early_thread.join().unwrap();

    let last = last_top(&recs);
    let flows = last["flows"].as_array().unwrap();
    let syn_recv: Vec<&Value> = flows.iter().filter(|f| f["state"] == "SYN_RECV").collect();
    assert!(syn_recv.is_empty(), "ghost SYN_RECV rows: {last:#}");
    // Each state change no BPF program saw may leave one socket behind.
    let unseen = 2 * states.blind();
    for census in [&last["census"], &last["census_by_netns"][netns.to_string()]] {
        let census = census_of(census);
        assert!(
            census_distance(&census, &kernel) <= unseen,
            "tcptrace {census:?} vs ss {kernel:?}, {} state changes where BPF does not run: {last:#}",
            unseen / 2
        );
    }
    // Retransmits: each with the listener's owner (the one from before
    // start-up is known from /proc, which names the process, not the
    // thread), as many as the kernel counted, and counted on the
    // listeners' rows.
    let process = std::fs::read_to_string("/proc/self/comm").unwrap();
    let synacks: Vec<&Value> = of_type(&retrans, "retrans")
        .into_iter()
        .filter(|r| r["kind"] == "synack")
        .collect();
    // The kernel's, as ftrace saw them; tcptrace's, those a BPF program
    // could see.
    let blind = peer.blind_lines();
    assert_eq!(peer.count(), synack_retrans, "{:#?}", peer.lines());
    assert_eq!(
        synacks.len() as u64,
        synack_retrans - blind.len() as u64,
        "{} where BPF does not run: {retrans:#?}",
        blind.len()
    );
    for r in &synacks {
        let owner = if r["lport"] == early {
            process.trim_end()
        } else {
            "tt-srv-late"
        };
        assert_eq!(r["comm"], owner, "{r}");
        assert_eq!(r["pid"], our_pid(), "{r}");
        assert_eq!(r["netns"], netns, "{r}");
        assert_eq!(r["state"], "SYN_RECV", "{r}");
    }
    for port in [early, late] {
        let listener = flows
            .iter()
            .find(|f| f["state"] == "LISTEN" && f["lport"] == port)
            .unwrap_or_else(|| panic!("no LISTEN row for {port}: {last:#}"));
        let n = synacks.iter().filter(|r| r["lport"] == port).count();
        let unseen = blind
            .iter()
            .filter(|l| field(l, "sport") == Some(port.to_string().as_str()))
            .count();
        assert!(n + unseen >= 1, "no SYN-ACK retransmit on {port}");
        assert_eq!(listener["retrans"], n as u64, "{listener}");
        assert_eq!(
            listener["raddr"], "0.0.0.0",
            "the listener keeps its own tuple"
        );
    }
    eprintln!(
        "SYN-ACK retransmits: {} (kernel TCPSynRetrans {synack_retrans}); census {kernel:?}",
        synacks.len()
    );
}
