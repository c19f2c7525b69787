//! `tcptrace states` against real loopback connections in a private
//! network namespace: full client and server transition sequences, the
//! right tuple, and the right owner.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use serde_json::Value;
use tests::{
    NetNs, Tracer,
    ftrace::{Ftrace, field},
    kernel, our_pid, require_root,
    tracer::of_type,
    unique_port,
};

/// One connection: the server accepts on a thread named `tt-server`, the
/// client connects from `tt-client`, sends, closes first; the server reads
/// to EOF and closes. Returns the client's local address.
fn one_connection(ns: &NetNs, ip: &str, port: u16) -> SocketAddr {
    let addr = SocketAddr::new(ip.parse().unwrap(), port);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = ns.spawn("tt-server", move || {
        let l = TcpListener::bind(addr).unwrap();
        ready_tx.send(()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        buf.len()
    });
    ready_rx.recv().unwrap();
    let local = ns.run("tt-client", move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"hello").unwrap();
        c.local_addr().unwrap()
    });
    assert_eq!(server.join().unwrap(), 5);
    local
}

fn transitions<'a>(
    recs: &[&'a Value],
    pred: impl Fn(&Value) -> bool,
) -> Vec<(String, String, &'a Value)> {
    recs.iter()
        .filter(|r| pred(r))
        .map(|r| {
            (
                r["old"].as_str().unwrap().to_string(),
                r["new"].as_str().unwrap().to_string(),
                *r,
            )
        })
        .collect()
}

/// An accepted socket's first transition (a listener leaves LISTEN only
/// for CLOSE).
fn child_first(r: &Value) -> bool {
    r["old"] == "LISTEN" && r["new"] == "SYN_RECV"
}

fn unspecified(family: &str) -> &'static str {
    if family == "ipv4" { "0.0.0.0" } else { "::" }
}

/// (old, new) of a state change as ftrace prints it (`TCP_LISTEN`).
fn traced(line: &str) -> (String, String) {
    let state = |f| {
        let s = field(line, f).unwrap_or_default();
        s.strip_prefix("TCP_").unwrap_or(s).to_string()
    };
    (state("oldstate"), state("newstate"))
}

/// State changes as (old, new).
type Changes = Vec<(String, String)>;

/// The state changes of one socket, as the kernel made them and as a BPF
/// program could see them (all but those in an interrupt where none
/// runs, see `Ftrace`).
fn kernel_and_seen(peer: &Ftrace, pred: impl Fn(&str, (&str, &str)) -> bool) -> (Changes, Changes) {
    let pick = |lines: Vec<String>| -> Changes {
        lines
            .iter()
            .filter(|l| {
                let (o, n) = traced(l);
                pred(l, (o.as_str(), n.as_str()))
            })
            .map(|l| traced(l))
            .collect()
    };
    (pick(peer.lines()), pick(peer.seen()))
}

/// `hook`: `--hook-type` (`None`: tcptrace's own choice). Each sequence
/// is the kernel's (ftrace's) but for the changes that fired in an
/// interrupt where no BPF program runs (see `Ftrace`).
fn check_sequences(ip: &str, family: &str, hook: Option<&str>) {
    require_root();
    let ns = NetNs::new("states");
    let port = unique_port();
    let ps = port.to_string();
    let mut args = vec!["states", "--json", "--port", &ps];
    if let Some(h) = hook {
        args.extend(["--hook-type", h]);
    }
    let t = Tracer::start(&args);
    let peer = Ftrace::start(
        "sock/inet_sock_set_state",
        &format!("sport == {port} || dport == {port}"),
    );
    // The start-up line names the hook in use: the BTF tracepoint unless
    // told otherwise (every kernel this runs on has BTF).
    let want = match hook {
        Some("tracepoint") => "sock:inet_sock_set_state",
        _ => "tp_btf:inet_sock_set_state",
    };
    assert!(t.stderr().contains(want), "{}", t.stderr());
    let client = one_connection(&ns, ip, port);
    // Until the FIN_WAIT2 -> CLOSE of the client (its TIME_WAIT is handed
    // to a timewait socket), the server's LAST_ACK -> CLOSE and the
    // listener's close are out, or fired where no BPF program runs.
    t.wait_for("the last closes", Duration::from_secs(10), |r| {
        let blind: Vec<(String, String)> = peer.blind_lines().iter().map(|l| traced(l)).collect();
        ["FIN_WAIT2", "LAST_ACK", "LISTEN"].iter().all(|old| {
            r.iter().any(|r| r["old"] == *old && r["new"] == "CLOSE")
                || blind.iter().any(|(o, n)| o == old && n == "CLOSE")
        })
    });
    let recs = t.stop();
    let states = of_type(&recs, "state");
    for r in &states {
        assert_eq!(r["family"], family, "{r}");
        assert!(r["ts"].as_str().unwrap().ends_with('Z'), "{r}");
    }

    let ours = |c: &[(String, String, &Value)]| -> Vec<(String, String)> {
        c.iter().map(|(o, n, _)| (o.clone(), n.clone())).collect()
    };
    let pairs = |s: &[(&str, &str)]| -> Vec<(String, String)> {
        s.iter()
            .map(|(o, n)| (o.to_string(), n.to_string()))
            .collect()
    };
    let port_s = port.to_string();
    let is = |l: &str, f: &str, v: &str| field(l, f) == Some(v);

    // Client: everything whose remote port is the server's.
    let c = transitions(&states, |r| r["rport"] == port);
    let (made, seen) = kernel_and_seen(&peer, |l, _| is(l, "dport", &port_s));
    assert_eq!(
        made,
        pairs(&[
            ("CLOSE", "SYN_SENT"),
            ("SYN_SENT", "ESTABLISHED"),
            ("ESTABLISHED", "FIN_WAIT1"),
            ("FIN_WAIT1", "FIN_WAIT2"),
            ("FIN_WAIT2", "CLOSE"),
        ]),
        "the client's, in ftrace: {:#?}",
        peer.lines()
    );
    assert_eq!(
        ours(&c),
        seen,
        "client transitions: {states:#?}\nftrace: {:#?}",
        peer.lines()
    );
    for (i, (_, _, r)) in c.iter().enumerate() {
        assert_eq!(r["pid"], our_pid(), "client owner: {r}");
        assert_eq!(r["comm"], "tt-client", "client owner: {r}");
        assert_eq!(r["raddr"], ip, "{r}");
        // The local port is assigned inside connect(), after SYN_SENT.
        if i > 0 {
            assert_eq!(r["lport"], client.port(), "{r}");
            assert_eq!(r["laddr"], client.ip().to_string(), "{r}");
        }
    }
    assert!(c[0].2["prev_state_us"].is_null());
    assert!(c[1].2["prev_state_us"].as_u64().is_some());

    // Server's accepted socket: local port is the server's, remote the
    // client's, from its first transition on (LISTEN -> SYN_RECV, which
    // on older kernels still has the listener's tuple: see `first` below).
    let s = transitions(&states, |r| {
        r["lport"] == port && (r["rport"] == client.port() || child_first(r))
    });
    let client_s = client.port().to_string();
    let (made, seen) = kernel_and_seen(&peer, |l, st| {
        is(l, "sport", &port_s) && (is(l, "dport", &client_s) || st == ("LISTEN", "SYN_RECV"))
    });
    assert_eq!(
        made,
        pairs(&[
            ("LISTEN", "SYN_RECV"),
            ("SYN_RECV", "ESTABLISHED"),
            ("ESTABLISHED", "CLOSE_WAIT"),
            ("CLOSE_WAIT", "LAST_ACK"),
            ("LAST_ACK", "CLOSE"),
        ]),
        "the accepted socket's, in ftrace: {:#?}",
        peer.lines()
    );
    assert_eq!(
        ours(&s),
        seen,
        "server transitions: {states:#?}\nftrace: {:#?}",
        peer.lines()
    );
    for (_, _, r) in &s {
        // Owned by the listener's process and thread, although most of
        // these run while the client thread is on the CPU.
        assert_eq!(r["pid"], our_pid(), "server owner: {r}");
        assert_eq!(r["comm"], "tt-server", "server owner: {r}");
        assert_eq!(r["laddr"], ip, "{r}");
    }
    let first = s[0].2;
    match kernel::child_starts_with_peer().filter(|_| child_first(first)) {
        Some(true) => assert_eq!(
            (&first["raddr"], &first["rport"]),
            (&Value::from(ip), &Value::from(client.port())),
            "{first}"
        ),
        // Fired on the listener's fresh clone, before the peer is copied in.
        Some(false) => assert_eq!(
            (&first["raddr"], &first["rport"]),
            (&Value::from(unspecified(family)), &Value::from(0)),
            "{first}"
        ),
        None => {}
    }

    // The listener itself.
    let l = transitions(&states, |r| {
        r["lport"] == port && r["rport"] == 0 && !child_first(r)
    });
    let seq: Vec<(&str, &str)> = l.iter().map(|(o, n, _)| (o.as_str(), n.as_str())).collect();
    assert_eq!(seq, [("CLOSE", "LISTEN"), ("LISTEN", "CLOSE")]);
    assert_eq!(l[0].2["comm"], "tt-server");
}

#[test]
fn ipv4_loopback_connection_full_sequences() {
    check_sequences("127.0.0.1", "ipv4", None);
}

#[test]
fn ipv6_loopback_connection_full_sequences() {
    check_sequences("::1", "ipv6", None);
}

/// The same through the classic tracepoint, the fallback for kernels
/// without BTF: it must give the very same records.
#[test]
fn ipv4_loopback_connection_full_sequences_classic_tracepoint() {
    check_sequences("127.0.0.1", "ipv4", Some("tracepoint"));
}

#[test]
fn ipv6_loopback_connection_full_sequences_classic_tracepoint() {
    check_sequences("::1", "ipv6", Some("tracepoint"));
}

/// A listener that exists before tcptrace starts is found in /proc (in
/// another network namespace), and the sockets it accepts later inherit
/// its owner. The listener's thread lives until tcptrace stops: /proc is
/// read beside the ring reader, and a namespace whose last task has gone
/// can no longer be read. (The accepted socket's changes all come in
/// softirq: those where no BPF program runs, see `Ftrace`, are unseen.)
#[test]
fn listener_from_before_startup_owns_accepted_sockets() {
    require_root();
    let ns = NetNs::new("seed");
    let port = unique_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (served_tx, served_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = ns.spawn("tt-early", move || {
        let l = TcpListener::bind(addr).unwrap();
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        served_tx.send(()).unwrap();
        done_rx.recv().unwrap();
    });
    ready_rx.recv().unwrap();
    let t = Tracer::start(&["states", "--json", "--lport", &port.to_string()]);
    let peer = Ftrace::start("sock/inet_sock_set_state", &format!("sport == {port}"));
    // "Later": once tcptrace has read /proc (under emulation that takes
    // longer than the 150 ms events wait for it).
    t.wait_seeded();
    go_tx.send(()).unwrap();
    ns.run("tt-client", move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"x").unwrap();
    });
    served_rx.recv().unwrap();
    // Until the accepted socket has seen the client's FIN (or it came
    // where no BPF program runs).
    let unseen = |old: &str, new: &str| {
        peer.blind_lines()
            .iter()
            .any(|l| traced(l) == (old.to_string(), new.to_string()))
    };
    t.wait_for("ESTABLISHED -> CLOSE_WAIT", Duration::from_secs(10), |r| {
        r.iter()
            .any(|r| r["old"] == "ESTABLISHED" && r["new"] == "CLOSE_WAIT")
            || unseen("ESTABLISHED", "CLOSE_WAIT")
    });
    let recs = t.stop();
    done_tx.send(()).unwrap();
    server.join().unwrap();
    // Everything but the listener's own transitions (it lives on until
    // after tcptrace stops, so it makes none here).
    let accepted: Vec<&Value> = of_type(&recs, "state")
        .into_iter()
        .filter(|r| r["new"] != "LISTEN" && !(r["old"] == "LISTEN" && r["new"] == "CLOSE"))
        .collect();
    assert!(
        accepted.first().is_some_and(|r| child_first(r)) || unseen("LISTEN", "SYN_RECV"),
        "{recs:#?}\nftrace: {:#?}",
        peer.lines()
    );
    // Seeded owners carry the process's name (/proc/PID/comm): which of its
    // threads opened the socket is not recorded anywhere in /proc.
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    for r in &accepted {
        assert_eq!(r["lport"], port, "--lport filter: {r}");
        assert_eq!(r["pid"], our_pid(), "{r}");
        assert_eq!(r["comm"], comm.trim_end(), "owner seeded from /proc: {r}");
    }
}
