//! The flow engine's views against real sockets in private network
//! namespaces: handshake latency and histograms, failed connects with their
//! errno, resets, the census against `ss`, and RTT against `ss -ti`.
//! Most tests record once and replay the recording through several views,
//! which also proves that replay gives what live would.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use serde_json::Value;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tests::{
    NetNs, TempFile, Tracer,
    ftrace::{Ftrace, census_distance},
    kernel, our_pid, require_root,
    tracer::{self, forced_plan, of_type, run},
    unique_port, wait_until,
};

/// `tcptrace replay FILE VIEW ARGS... --json`, parsed, without `lost` records.
fn replay(file: &TempFile, view: &[&str]) -> Vec<Value> {
    let mut args = vec!["replay", file.path()];
    args.extend_from_slice(view);
    args.push("--json");
    let (status, out, err) = run(&args);
    assert!(status.success(), "replay {view:?} failed: {err}");
    // `lost` records (the kernel skipped some program runs, possibly for
    // other traffic) are replayed too; the tests look at the view's own.
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["type"] != "lost")
        .collect()
}

/// Connects from `local` (port 0: any) to `remote`, blocking.
fn connect_from(local: SocketAddr, remote: SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(
        Domain::for_address(remote),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(local))?;
    s.connect_timeout(&SockAddr::from(remote), Duration::from_secs(5))?;
    Ok(s.into())
}

/// Connections that lose their first SYN, and connections that do not.
const SLOW: u16 = 3;
const FAST: u16 = 5;

/// Connections whose first SYN is dropped take the initial SYN RTO (1 s);
/// the others take well under 10 ms; `hist` buckets them accordingly, with
/// as many samples as connections made; `connect` shows each with its owner.
/// The same from a JSON and from a binary recording made side by side.
#[test]
fn first_syn_dropped_costs_one_rto_and_lands_in_the_right_bucket() {
    require_root();
    let ns = NetNs::new("hs");
    let port = unique_port();
    // Source ports 41000.. lose their first SYN only.
    ns.nft(&format!(
        "table inet firstsyn {{
           set seen {{ type inet_service; flags dynamic, timeout; timeout 60s; }}
           chain input {{
             type filter hook input priority 0; policy accept;
             tcp dport {port} tcp flags & (syn | ack) == syn tcp sport 41000-{} tcp sport != @seen add @seen {{ tcp sport }} drop
           }}
         }}",
        41000 + SLOW - 1
    ));
    let rec = TempFile::new("hs");
    let bin = TempFile::new("hs-bin");
    let t = Tracer::start(&["record", "-o", rec.path(), "--port", &port.to_string()]);
    let tb = Tracer::start(&[
        "record",
        "--binary",
        "-o",
        bin.path(),
        "--port",
        &port.to_string(),
    ]);
    // The clients' handshakes ending (ESTABLISHED is 1): one that ends in
    // an interrupt where no BPF program runs is unseen (see `Ftrace`).
    let peer = Ftrace::start(
        "sock/inet_sock_set_state",
        &format!("dport == {port} && newstate == 1"),
    );
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let latencies = ns.run("tt-hs", move || {
        let l = TcpListener::bind(server).unwrap();
        let mut lat = Vec::new();
        for i in 0..(SLOW + FAST) {
            let src = if i < SLOW { 41000 + i } else { 42000 + i };
            let start = Instant::now();
            let c = connect_from(format!("127.0.0.1:{src}").parse().unwrap(), server).unwrap();
            lat.push(start.elapsed());
            let _ = l.accept().unwrap();
            drop(c);
        }
        lat
    });
    assert!(
        latencies[..SLOW as usize]
            .iter()
            .all(|d| *d >= Duration::from_millis(900)),
        "{latencies:?}"
    );
    t.stop();
    tb.stop();
    let head = std::fs::read(bin.path()).unwrap();
    assert!(
        head.starts_with(b"{\"type\":\"header\",\"format\":4,"),
        "{:?}",
        String::from_utf8_lossy(&head[..60.min(head.len())])
    );
    let blind = peer.blind();
    for rec in [&rec, &bin] {
        check_handshakes(rec, port, blind);
    }
}

/// `blind`: handshakes that ended where no BPF program runs, which may be
/// missing from any count (exact when there are none).
fn check_handshakes(rec: &TempFile, port: u16, blind: u64) {
    let within = |n: u64, want: u64| n <= want && want - n <= blind;
    let hist = replay(rec, &["hist"]);
    let d = hist
        .iter()
        .find(|r| r["raddr"] == "127.0.0.1" && r["rport"] == port)
        .unwrap_or_else(|| panic!("{hist:#?}"));
    assert!(
        within(d["count"].as_u64().unwrap(), u64::from(SLOW + FAST)),
        "{blind} where BPF does not run: {d:#}"
    );
    let buckets = d["buckets"].as_array().unwrap();
    let count_in = |lo: u64, hi: u64| -> u64 {
        buckets
            .iter()
            .filter(|b| b["lo_us"].as_u64().unwrap() >= lo && b["hi_us"].as_u64().unwrap() <= hi)
            .map(|b| b["count"].as_u64().unwrap())
            .sum()
    };
    // About 1 s: the log2 buckets 0.5-1 s and 1-2 s.
    assert!(
        within(count_in(524_288, 2_097_151), u64::from(SLOW)),
        "{blind} where BPF does not run: {d:#}"
    );
    // Under 10 ms: every bucket up to 8-16 ms.
    assert!(
        within(count_in(0, 16_383), u64::from(FAST)),
        "{blind} where BPF does not run: {d:#}"
    );
    let max_ms = d["max_us"].as_u64().unwrap() / 1000;
    assert!((900..1500).contains(&max_ms), "{d:#}");

    let connects = replay(rec, &["connect"]);
    assert!(
        within(connects.len() as u64, u64::from(SLOW + FAST)),
        "{blind} where BPF does not run: {connects:#?}"
    );
    for c in &connects {
        assert_eq!(c["pid"], our_pid(), "{c}");
        assert_eq!(c["comm"], "tt-hs", "{c}");
        assert!(c["error"].is_null(), "{c}");
        let us = c["handshake_us"].as_u64().unwrap();
        let slow = (41000..41000 + u64::from(SLOW)).contains(&c["lport"].as_u64().unwrap());
        if slow {
            assert!((900_000..1_500_000).contains(&us), "{c}");
        } else {
            assert!(us < 10_000, "{c}");
        }
    }
}

/// A connect to a closed port: ECONNREFUSED for the connecting thread (and
/// the kernel's error report of it), and the RST it received (and, since 6.10, the one the kernel sent for no
/// socket), from the BTF tracepoints (the default here).
#[test]
fn refused_connect_reports_errno_and_received_reset() {
    refused_connect(None);
}

/// The same from the classic tracepoints, the form kernels without BTF get.
#[test]
fn refused_connect_reports_errno_and_received_reset_classic_tracepoint() {
    refused_connect(Some("tracepoint"));
}

/// `hook_type`: `--hook-type` (`None`: tcptrace's own choice).
fn refused_connect(hook_type: Option<&str>) {
    require_root();
    let ns = NetNs::new("refused");
    let port = unique_port();
    let rec = TempFile::new("refused");
    let port_arg = port.to_string();
    let mut args = vec!["record", "-o", rec.path(), "--port", &port_arg];
    if let Some(h) = hook_type {
        args.extend(["--hook-type", h]);
    }
    let t = Tracer::start(&args);
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let err = ns.run("tt-refused", move || {
        TcpStream::connect(target).unwrap_err()
    });
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    // Every event of the attempt fired before connect() returned: what is
    // in the ring now is drained and written when tcptrace stops.
    t.stop();

    // The kernel's error report for the socket (tp_btf or classic
    // `sock:inet_sk_error_report`, as `hook_type` says), as recorded.
    let errors: Vec<Value> = std::fs::read_to_string(rec.path())
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["event"] == "sock_error")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        (&errors[0]["errno"], &errors[0]["tuple"]["rport"]),
        (&libc::ECONNREFUSED.into(), &port.into()),
        "{errors:#?}"
    );

    let connects = replay(&rec, &["connect"]);
    assert_eq!(connects.len(), 1, "{connects:#?}");
    let c = &connects[0];
    assert_eq!(c["error"], "ECONNREFUSED", "{c}");
    assert!(c["handshake_us"].is_null());
    assert_eq!(
        (c["pid"].as_u64(), c["comm"].as_str()),
        (Some(our_pid()), Some("tt-refused"))
    );
    assert_eq!(c["rport"], port);

    let resets = replay(&rec, &["resets"]);
    let received: Vec<&Value> = resets
        .iter()
        .filter(|r| r["direction"] == "received")
        .collect();
    assert_eq!(received.len(), 1, "{resets:#?}");
    assert_eq!(received[0]["comm"], "tt-refused");
    // The engine knows what the kernel's tcp_receive_reset does not say.
    assert_eq!(received[0]["state"], "SYN_SENT", "{resets:#?}");
    assert_eq!(received[0]["rport"], port);
    // The RST came from the kernel for a port with no socket, which
    // `tcp_send_reset` reports only since 6.10 (`kernel` says why).
    let sent: Vec<&Value> = resets.iter().filter(|r| r["direction"] == "sent").collect();
    if !kernel::no_socket_resets_traced() {
        assert!(sent.is_empty(), "{resets:#?}");
        return;
    }
    assert_eq!(sent.len(), 1, "{resets:#?}");
    assert_eq!(sent[0]["lport"], port);
    assert_eq!(sent[0]["reason"], "NO_SOCKET");
}

/// With two ephemeral ports in the namespace and both in use, the third
/// connect fails with EADDRNOTAVAIL, reported for its owner.
#[test]
fn exhausted_ephemeral_ports_report_eaddrnotavail() {
    require_root();
    let ns = NetNs::new("ports");
    ns.sh(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_local_port_range=40000 40001",
    ]);
    let port = unique_port();
    let rec = TempFile::new("ports");
    let t = Tracer::start(&["record", "-o", rec.path(), "--port", &port.to_string()]);
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let err = ns.run("tt-ports", move || {
        let l = TcpListener::bind(server).unwrap();
        let a = TcpStream::connect(server).unwrap();
        let b = TcpStream::connect(server).unwrap();
        let e = TcpStream::connect(server).unwrap_err();
        drop((a, b, l));
        e
    });
    assert_eq!(err.raw_os_error(), Some(libc::EADDRNOTAVAIL), "{err}");
    t.stop();
    // Only the connect hooks see what connect() returned: this is the
    // test of the plan in use (`cargo xtask kernels` forces each one).
    let header: Value = serde_json::from_str(
        std::fs::read_to_string(rec.path())
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let plan = header["connect_plan"].as_str().expect("a connect plan");
    if let Some(forced) = forced_plan() {
        assert!(
            plan.starts_with(forced.prefix()),
            "{plan} is not {forced:?}"
        );
    }
    eprintln!("connect plan: {plan}");
    let connects = replay(&rec, &["connect"]);
    let failed: Vec<&Value> = connects.iter().filter(|c| !c["error"].is_null()).collect();
    assert_eq!(failed.len(), 1, "{connects:#?}");
    assert_eq!(failed[0]["error"], "EADDRNOTAVAIL");
    assert_eq!(failed[0]["comm"], "tt-ports");
    assert_eq!(failed[0]["pid"], our_pid());
    assert_eq!(
        connects.len(),
        3,
        "two successes and the failure: {connects:#?}"
    );
}

/// After a known workload, `top --json` shows the census the kernel shows,
/// but for sockets whose last state change fired where no BPF program
/// runs (see `Ftrace`).
#[test]
fn top_census_matches_ss() {
    require_root();
    let ns = NetNs::new("census");
    let port = unique_port();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (keep_tx, keep_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (phase_tx, phase_rx) = std::sync::mpsc::channel::<()>();
    let worker = ns.spawn("tt-census", move || {
        // Before tcptrace starts: a listener and one established pair
        // (found in /proc at start-up).
        let l = TcpListener::bind(server).unwrap();
        let early = TcpStream::connect(server).unwrap();
        let (early_srv, _) = l.accept().unwrap();
        ready_tx.send(()).unwrap();
        phase_rx.recv().unwrap();
        let mut keep = vec![early, early_srv];
        // Two more established pairs.
        for _ in 0..2 {
            let c = TcpStream::connect(server).unwrap();
            let (s, _) = l.accept().unwrap();
            keep.extend([c, s]);
        }
        // Two half-closed by the client: FIN_WAIT2 / CLOSE_WAIT.
        for _ in 0..2 {
            let c = TcpStream::connect(server).unwrap();
            let (s, _) = l.accept().unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            keep.extend([c, s]);
        }
        // Three closed by the client first: TIME_WAIT on the client side.
        for _ in 0..3 {
            let mut c = TcpStream::connect(server).unwrap();
            let (mut s, _) = l.accept().unwrap();
            c.write_all(b"x").unwrap();
            drop(c);
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).unwrap();
        }
        ready_tx.send(()).unwrap();
        keep_rx.recv().unwrap();
        drop((keep, l));
    });
    ready_rx.recv().unwrap();
    let t = Tracer::start(&[
        "top",
        "--json",
        "--interval",
        "0.2",
        "--port",
        &port.to_string(),
    ]);
    let peer = Ftrace::start(
        "sock/inet_sock_set_state",
        &format!("sport == {port} || dport == {port}"),
    );
    phase_tx.send(()).unwrap();
    ready_rx.recv().unwrap();
    // Let the last transitions settle, then compare the next snapshots.
    let mut kernel = BTreeMap::new();
    let settled = wait_until(Duration::from_secs(5), || {
        kernel = ns.ss_census(port);
        kernel.get("FIN_WAIT2") == Some(&2) && kernel.get("TIME_WAIT") == Some(&3)
    });
    assert!(settled, "workload did not settle: {kernel:?}");
    // Three more snapshots (0.2 s apart) for the last transitions to reach
    // the census.
    let seen = of_type(&t.records(), "top").len();
    t.wait_for("three more snapshots", Duration::from_secs(10), |r| {
        of_type(r, "top").len() >= seen + 3
    });
    let kernel = ns.ss_census(port);
    let recs = t.stop();
    keep_tx.send(()).unwrap();
    worker.join().unwrap();
    let last = recs
        .iter()
        .rev()
        .find(|r| r["type"] == "top")
        .expect("a top record");
    let census: BTreeMap<String, u64> = last["census"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    // Each state change no BPF program saw, or that tcptrace said it lost
    // (a `lost` record), may leave one socket behind.
    let blind = peer.blind_lines();
    let (lost, _) = tracer::lost(&recs, "output");
    assert!(
        census_distance(&census, &kernel) <= 2 * (blind.len() as u64 + lost),
        "tcptrace census {census:?} vs ss -tan {kernel:?}; where BPF does not run: {blind:#?}; lost records: {:?}; last snapshot: {last:#}",
        of_type(&recs, "lost")
    );
    assert_eq!(kernel.get("ESTABLISHED"), Some(&6));
    assert_eq!(kernel.get("CLOSE_WAIT"), Some(&2));
    assert_eq!(kernel.get("LISTEN"), Some(&1));
}

/// `ss -ti` for one socket: (srtt, rttvar) in µs.
fn ss_rtt(ns: &NetNs, lport: u16) -> Option<(f64, f64)> {
    let out = ns.sh(&["ss", "-Htin", &format!("( sport = :{lport} )")]);
    let text = String::from_utf8_lossy(&out.stdout);
    let rtt = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rtt:"))?;
    let (s, v) = rtt.split_once('/')?;
    Some((
        s.parse::<f64>().ok()? * 1000.0,
        v.parse::<f64>().ok()? * 1000.0,
    ))
}

/// A bulk flow's RTT histogram is populated, and its median is within the
/// range `ss -ti` reports for that socket (srtt ± rttvar over the transfer,
/// widened to the log2 bucket the median falls in).
#[test]
fn bulk_flow_rtt_matches_ss() {
    require_root();
    let ns = NetNs::new("rtt");
    ns.small_segments();
    let port = unique_port();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Tracer::start(&[
        "top",
        "--json",
        "--rtt",
        "--interval",
        "0.5",
        "--port",
        &port.to_string(),
    ]);
    let (lport_tx, lport_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let worker = ns.spawn("tt-bulk", move || {
        let l = TcpListener::bind(server).unwrap();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 64 << 10];
            let mut total = 0usize;
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n;
            }
            total
        });
        let mut c = TcpStream::connect(server).unwrap();
        lport_tx.send(c.local_addr().unwrap().port()).unwrap();
        let chunk = vec![1u8; 64 << 10];
        // Until the samples of `ss` are in (bounded): on a slow machine
        // (one vCPU under TCG) the transfer can starve `ss` for seconds.
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end && stop_rx.try_recv().is_err() {
            c.write_all(&chunk).unwrap();
        }
        drop(c);
        reader.join().unwrap()
    });
    let lport = lport_rx.recv().unwrap();
    let mut lo = f64::MAX;
    let mut hi: f64 = 0.0;
    let mut samples = 0;
    let start = Instant::now();
    while (start.elapsed() < Duration::from_millis(2500) || samples < 3)
        && start.elapsed() < Duration::from_secs(25)
    {
        if let Some((srtt, var)) = ss_rtt(&ns, lport) {
            lo = lo.min(srtt - var);
            hi = hi.max(srtt + var);
            samples += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_tx.send(()).unwrap();
    assert!(worker.join().unwrap() > 0);
    let recs = t.stop();
    let flow = recs
        .iter()
        .rev()
        .filter(|r| r["type"] == "top")
        .flat_map(|r| r["flows"].as_array().unwrap().iter())
        .find(|f| f["lport"] == lport && !f["rtt_us"].is_null())
        .unwrap_or_else(|| panic!("no RTT for the bulk flow: {recs:#?}"));
    let median = flow["rtt_us"].as_f64().unwrap();
    // The median is reported as the upper bound of its log2 bucket.
    let bucket = (median / 2.0, median);
    assert!(
        lo <= hi,
        "ss reported no rtt for the socket in {samples} tries"
    );
    // Within one log2 bucket of ss's range: ss samples the smoothed RTT
    // every 100 ms, the histogram holds every sample of the run, and under
    // an emulated guest the RTT swings (6.1 once: bucket 2-4 ms against
    // ss's 0.5-1.9 ms).
    assert!(
        bucket.0 / 2.0 <= hi.max(1.0) && bucket.1 * 2.0 >= lo.max(0.0),
        "median bucket {bucket:?} µs more than a bucket outside ss's srtt±rttvar range [{lo}, {hi}] µs"
    );
    eprintln!("rtt: tcptrace median bucket {bucket:?} µs, ss srtt±rttvar [{lo:.0}, {hi:.0}] µs");
}

/// Both forms of the RTT hook take the same samples: two tracers, one on
/// the BTF tracepoint, one on the classic `tcp:tcp_probe` (which on 6.1
/// finds the socket by its tuple), watch one bulk transfer; the kernel
/// calls both programs for every segment a socket receives, so each
/// socket's sample count must be the same in both, exactly, and neither
/// may lose any. The sockets stay open until both tracers have stopped
/// (a closed socket's histogram goes with it).
#[test]
fn rtt_samples_are_the_same_from_both_hook_forms() {
    require_root();
    let ns = NetNs::new("rttforms");
    ns.small_segments();
    let port = unique_port();
    let port_arg = port.to_string();
    let start = |form: &'static str| {
        Tracer::start(&[
            "hist",
            "--rtt",
            "--per-flow",
            "--json",
            "--port",
            &port_arg,
            "--hook-type",
            form,
        ])
    };
    let btf = start("tp_btf");
    let classic = start("tracepoint");
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    const BYTES: usize = 8 << 20;
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let (close_tx, close_rx) = std::sync::mpsc::channel::<()>();
    let worker = ns.spawn("tt-rttforms", move || {
        let l = TcpListener::bind(server).unwrap();
        let mut c = TcpStream::connect(server).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            let mut total = 0;
            while total < BYTES {
                total += s.read(&mut buf).unwrap();
            }
            s
        });
        let chunk = vec![1u8; 64 << 10];
        for _ in 0..BYTES / chunk.len() {
            c.write_all(&chunk).unwrap();
        }
        let s = reader.join().unwrap();
        sent_tx.send(()).unwrap();
        close_rx.recv().unwrap();
        drop((c, s, l));
    });
    sent_rx.recv().unwrap();
    // The last ACKs (delayed by at most 200 ms) in before the tracers stop.
    std::thread::sleep(Duration::from_millis(500));
    let counts = |recs: &[Value], form: &str| -> BTreeMap<String, u64> {
        let (lost, _) = tracer::lost(recs, "");
        assert_eq!(lost, 0, "{form} lost samples: {recs:#?}");
        of_type(recs, "hist")
            .into_iter()
            .map(|h| {
                let flow = format!("{}->{}", h["lport"], h["rport"]);
                (flow, h["count"].as_u64().unwrap())
            })
            .collect()
    };
    let btf_recs = btf.stop();
    let classic_recs = classic.stop();
    close_tx.send(()).unwrap();
    worker.join().unwrap();
    let (b, c) = (
        counts(&btf_recs, "tp_btf"),
        counts(&classic_recs, "tracepoint"),
    );
    assert_eq!(b, c, "samples per socket, tp_btf against tracepoint");
    // Both sockets of the flow took samples: the one receiving data (5 734
    // on this host, 804 on the 6.12 guest, where the receive path
    // coalesces more segments per call) and the one receiving ACKs (148,
    // 127). Enough that equality above is not the equality of two
    // near-empty maps.
    assert_eq!(b.len(), 2, "{btf_recs:#?}");
    assert!(
        b.values().all(|&n| n >= 20) && b.values().sum::<u64>() >= 200,
        "{b:?}"
    );
    eprintln!("rtt samples per socket, both forms: {b:?}");
}
