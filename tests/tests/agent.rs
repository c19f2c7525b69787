//! `tcptrace agent` with the real components a fleet runs: a Prometheus
//! that scrapes it (judged against the namespace's own RetransSegs and by
//! `promtool`), bounded series under 10 000 client ports, and a log
//! reader that stalls. The rsyslog pipeline through a rotation is in
//! `agent_log.rs`, the files of deploy/ are checked in `deploy.rs`.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use tests::{
    NetNs, Tracer,
    daemons::Prometheus,
    ftrace::Ftrace,
    require_root,
    scrape::{metrics, series, sum},
    tracer::{lost, of_type},
    unique_port, wait_until,
};

/// A loopback address for the agent's `/metrics`.
fn listen_addr() -> SocketAddr {
    format!("127.0.0.1:{}", unique_port()).parse().unwrap()
}

/// Starts the agent on `addr`, watching only `ns`, with `extra` flags.
fn agent(ns: &NetNs, addr: SocketAddr, extra: &[&str], stalled: bool) -> Tracer {
    let netns = format!("/run/netns/{}", ns.name);
    let addr = addr.to_string();
    let mut args = vec!["agent", "--listen", &addr, "--netns", &netns];
    args.extend_from_slice(extra);
    if stalled {
        Tracer::start_stalled(&args)
    } else {
        Tracer::start(&args)
    }
}

/// Whether every socket on `port` in `ns` is gone or in TIME_WAIT.
fn quiet(ns: &NetNs, port: u16) -> bool {
    let out = ns.sh(&[
        "ss",
        "-Htan",
        &format!("( sport = :{port} or dport = :{port} )"),
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .all(|l| l.starts_with("TIME-WAIT"))
}

/// `conns` connections to `port` in `ns`, each sending `bytes`; the
/// server accepts them all. Connects go to 127.0.0.1 + i % `addrs`.
fn workload(ns: &NetNs, port: u16, conns: usize, bytes: usize, addrs: u8) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = ns.spawn("tt-server", move || {
        let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
        ready_tx.send(()).unwrap();
        let mut total = 0;
        for _ in 0..conns {
            let (mut s, _) = l.accept().unwrap();
            if bytes > 0 {
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).unwrap();
                total += buf.len();
            }
        }
        total
    });
    ready_rx.recv().unwrap();
    ns.run("tt-client", move || {
        for i in 0..conns {
            let ip = [127, 0, 0, 1 + (i % usize::from(addrs)) as u8];
            let addr = SocketAddr::from((ip, port));
            let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(30)).unwrap();
            if bytes > 0 {
                c.write_all(&vec![7u8; bytes]).unwrap();
            }
        }
    });
    assert_eq!(server.join().unwrap(), conns * bytes);
}

/// Under 8 % random loss, what a real Prometheus scraped of
/// `tcptrace_retransmitted_segments_total` equals the growth of the
/// namespace's RetransSegs exactly (unless tcptrace reported events lost,
/// then it falls short by at most two segments per lost event); and
/// `promtool check metrics` accepts the page.
#[test]
fn agent_prometheus_scrapes_the_retransmits_the_kernel_counted() {
    require_root();
    let ns = NetNs::new("prom");
    ns.small_segments();
    let port = unique_port();
    ns.random_drop(port, 8);
    let addr = listen_addr();
    let t = agent(&ns, addr, &["--metrics-ports", &port.to_string()], false);
    let prom = Prometheus::start(addr);
    let peer = Ftrace::start(
        "tcp/tcp_retransmit_skb",
        &format!("sport == {port} || dport == {port}"),
    );
    let before = ns.counter("Tcp", "RetransSegs");
    workload(&ns, port, 8, 150_000, 1);
    assert!(
        wait_until(Duration::from_secs(60), || quiet(&ns, port)),
        "flows on port {port} did not finish"
    );
    let kernel = ns.counter("Tcp", "RetransSegs") - before;
    assert!(kernel > 0, "8 % loss produced no retransmission at all");
    let promql = format!("sum(tcptrace_retransmitted_segments_total{{port=\"{port}\"}})");
    let mut scraped = None;
    wait_until(Duration::from_secs(20), || {
        scraped = prom.query(&promql);
        scraped == Some(kernel as f64)
    });
    let body = metrics(addr);
    let lost_events = sum(&body, "tcptrace_lost_events_total", &[]) as u64;
    let scraped = scraped.unwrap_or_else(|| panic!("prometheus has no value for {promql}"));
    // Events where no BPF program runs (see `Ftrace`).
    let blind = peer.blind();
    if lost_events == 0 && blind == 0 {
        assert_eq!(
            scraped, kernel as f64,
            "prometheus: {promql} = {scraped}, the namespace's RetransSegs grew by {kernel}"
        );
    } else {
        let missing = kernel as f64 - scraped;
        assert!(
            (0.0..=2.0 * (lost_events + blind) as f64).contains(&missing),
            "prometheus {scraped}, kernel {kernel}, reported lost {lost_events}, where BPF does not run {blind}"
        );
    }
    eprintln!("retransmitted segments: prometheus {scraped}, kernel RetransSegs {kernel}");
    // The retransmits carry their kinds (RTO, fast, loss probe; random
    // loss on data makes no SYN retransmit only by luck, so those count
    // too); `data` only where the kernel cannot tell.
    let by_kind = |k: &str| {
        let label = format!("kind=\"{k}\"");
        sum(&body, "tcptrace_retransmitted_segments_total", &[&label])
    };
    let told: f64 = ["rto", "fast", "tlp", "syn", "synack"]
        .iter()
        .map(|k| by_kind(k))
        .sum();
    assert!(told > 0.0, "no retransmit by kind in the metrics");
    if tests::kernel::retrans_kinds_known() {
        assert_eq!(by_kind("data"), 0.0, "every kind is told here");
    }
    // promtool reads the page the way Prometheus does and lints it.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; `cargo xtask setup` installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(prom);
    t.stop();
}

/// 10 000 connections from as many client ports (to 50 loopback
/// addresses, with per-peer labels on and a cap of 10): no client port
/// is ever a label, the capped families hold at most the cap plus the
/// folded set, the folds are counted, and every attempt a BPF program
/// could see end (its SYN_SENT -> ESTABLISHED; one that fired where no
/// BPF program runs is unseen, see `Ftrace`) is still counted once.
#[test]
fn agent_series_stay_under_the_cap_with_10000_client_ports() {
    require_root();
    let ns = NetNs::new("cap");
    ns.many_connections();
    let port = unique_port();
    let addr = listen_addr();
    let t = agent(
        &ns,
        addr,
        &["--metrics-labels", "peer", "--max-series", "10"],
        false,
    );
    let peer = Ftrace::start(
        "sock/inet_sock_set_state",
        &format!("dport == {port} && oldstate == 2 && newstate == 1"),
    );
    const CONNS: usize = 10_000;
    workload(&ns, port, CONNS, 0, 50);
    // Each connect() returned once its socket was ESTABLISHED.
    let (traced, blind) = (peer.count(), peer.blind());
    assert_eq!(traced, CONNS as u64, "ftrace saw every handshake end");
    let visible = (CONNS as u64 - blind) as f64;
    let mut body = String::new();
    let counted = wait_until(Duration::from_secs(20), || {
        body = metrics(addr);
        sum(&body, "tcptrace_connect_attempts_total", &[]) >= visible
    });
    let lost_events = sum(&body, "tcptrace_lost_events_total", &[]);
    let attempts = sum(&body, "tcptrace_connect_attempts_total", &[]);
    assert!(
        counted || lost_events > 0.0,
        "{attempts} connect attempts counted of {CONNS}, {blind} of them ended where BPF does not run"
    );
    assert!(
        attempts <= visible,
        "{attempts} of {CONNS}, {blind} of them ended where BPF does not run"
    );
    let all = series(&body);
    for l in &all {
        if let Some(p) = l.split("port=\"").nth(1) {
            let p = p.split('"').next().unwrap();
            assert!(
                p == "other" || p.parse::<u16>().is_ok_and(|n| n < 1024 || n == port),
                "a port label that is neither well-known, listening at start nor other: {l}"
            );
        }
    }
    // Label sets per family (a histogram's buckets, sum and count are one
    // set).
    let mut sets: std::collections::BTreeMap<&str, std::collections::BTreeSet<String>> =
        Default::default();
    for l in &all {
        let (name, rest) = l.split_once(['{', ' ']).unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        let labels: String = rest
            .split_once('}')
            .map_or("", |(ls, _)| ls)
            .split(',')
            .filter(|kv| !kv.starts_with("le="))
            .collect::<Vec<_>>()
            .join(",");
        sets.entry(family).or_default().insert(labels);
    }
    // The capped (per-flow) families carry the peer: at most 10 label sets
    // name one, the rest fold into `other` (one set per combination of
    // the fixed labels). All are bounded by their fixed labels (states by
    // states at most).
    let named = |s: &std::collections::BTreeSet<String>| {
        s.iter()
            .filter(|l| l.contains("peer=") && !l.contains("peer=\"other\""))
            .count()
    };
    for (family, s) in &sets {
        assert!(
            named(s) <= 10,
            "{} named peers in {family}: {s:?}",
            named(s)
        );
        assert!(s.len() <= 12 * 12, "{} label sets of {family}", s.len());
    }
    let connects = &sets["tcptrace_connect_attempts_total"];
    assert_eq!(
        named(connects),
        10,
        "50 peers under a cap of 10: {connects:?}"
    );
    assert!(connects.iter().any(|l| l.contains("peer=\"other\"")));
    let connect_series = connects.len();
    let dropped = sum(&body, "tcptrace_series_dropped_total", &[]);
    assert!(dropped > 0.0, "50 peers under a cap of 10 folded nothing");
    let total: usize = sets.values().map(|s| s.len()).sum();
    eprintln!(
        "{total} label sets ({} lines) in all, {connect_series} of connect attempts, {dropped} folds",
        all.len()
    );
    t.stop();
}

/// A log reader that stops reading (a pipe nobody reads) costs records,
/// counted in the metrics and said in `lost` records once it reads again,
/// while `/metrics` answers all along; afterwards records flow again.
/// Exact: the records the metrics counted are the records the log holds
/// plus those it dropped.
#[test]
fn agent_stalled_log_drops_counted_records_while_metrics_answer() {
    require_root();
    let ns = NetNs::new("stall");
    ns.many_connections();
    let port = unique_port();
    let addr = listen_addr();
    let mut t = agent(&ns, addr, &["--output-queue", "64K"], true);
    // About 9 records of 300 bytes a connection: 2.7 MB, far more than
    // the pipe (64K) and the queue (64K) hold.
    workload(&ns, port, 1000, 0, 1);
    let mut body = String::new();
    let dropped = wait_until(Duration::from_secs(20), || {
        body = metrics(addr);
        sum(
            &body,
            "tcptrace_sink_dropped_records_total",
            &["sink=\"log\""],
        ) > 0.0
    });
    assert!(
        dropped,
        "nothing dropped while the log was not read:\n{body}"
    );
    assert!(sum(&body, "tcptrace_lost_events_total", &["source=\"output\""]) > 0.0);
    t.resume_reading();
    // The agent may still be reading the first burst from the ring (a
    // debug build, a loaded machine): wait until its count stands still,
    // and the drops are said (a `lost` record rides the first batch the
    // queue takes again); only then is the sink back for a new burst.
    let mut last = -1.0;
    assert!(wait_until(Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(700));
        let now = sum(&metrics(addr), "tcptrace_records_total", &[]);
        std::mem::replace(&mut last, now) == now
    }));
    t.wait_for("the drops said", Duration::from_secs(60), |r| {
        lost(r, "output").1 > 0
    });
    // Recovery: a second burst (a batch or two) reaches the log.
    let port2 = unique_port();
    workload(&ns, port2, 5, 0, 1);
    let p2 = u64::from(port2);
    // (Not all 20 exactly: the kernel may skip events while another BPF
    // program runs on that CPU, and says so; the accounting below is
    // exact regardless.)
    // (A debug build on a loaded machine takes a while to catch up.)
    t.wait_for("the second burst", Duration::from_secs(60), |r| {
        of_type(r, "connect").iter().any(|c| c["rport"] == p2)
    });
    // Everything of both bursts is through once their sockets are gone
    // (or in TIME_WAIT) and the reader has drained (within 0.5 s idle).
    assert!(wait_until(Duration::from_secs(20), || quiet(&ns, port)
        && quiet(&ns, port2)));
    std::thread::sleep(Duration::from_secs(1));
    let body = metrics(addr);
    let recs = t.stop();
    let counted = sum(&body, "tcptrace_records_total", &[]) as u64;
    let drops = sum(&body, "tcptrace_sink_dropped_records_total", &[]) as u64;
    let (_, said) = lost(&recs, "output");
    let logged = recs.iter().filter(|r| r["type"] != "lost").count() as u64;
    assert_eq!(said, drops, "lost records said {said}, the metric {drops}");
    assert_eq!(
        logged + drops,
        counted,
        "log {logged} + dropped {drops} != counted {counted}"
    );
    eprintln!("stalled log: {counted} records, {drops} dropped and said, {logged} written");
}

/// The agent's health says the kernel side of the plan and how close the
/// ring came to losing events: with the whole agent stopped (SIGSTOP) and
/// a 64 KiB ring, a storm of 1 000 connections (about 10 000 records of
/// 104 bytes, 15 times the ring) fills the ring; after SIGCONT the next
/// seconds' `tcptrace_ring_fill_ratio` says so (the kernel counted the
/// events it could not queue), and with the reader keeping up it falls
/// back under a tenth.
#[test]
fn agent_ring_fill_and_hook_plan() {
    use nix::{
        sys::signal::{Signal, kill},
        unistd::Pid,
    };
    require_root();
    let ns = NetNs::new("ring");
    ns.many_connections();
    let port = unique_port();
    let addr = listen_addr();
    let t = agent(&ns, addr, &["--ring-size", "64K"], false);
    let body = metrics(addr);
    let attached = |b: &str, v: &str| {
        series(b)
            .into_iter()
            .filter(|l| l.starts_with("tcptrace_hook_attached{") && l.ends_with(&format!(" {v}")))
            .count()
    };
    // The state hook (BTF or classic) and the retransmit hooks at least.
    assert!(attached(&body, "1") >= 3, "{body}");
    assert_eq!(
        attached(&body, "1") + attached(&body, "0"),
        series(&body)
            .iter()
            .filter(|l| l.starts_with("tcptrace_hook_attached{"))
            .count(),
        "{body}"
    );
    let fill = |b: &str| sum(b, "tcptrace_ring_fill_ratio", &[]);
    assert!((0.0..0.1).contains(&fill(&body)), "idle ring: {body}");

    let pid = Pid::from_raw(t.pid() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    workload(&ns, port, 1000, 0, 1);
    kill(pid, Signal::SIGCONT).unwrap();
    let mut body = String::new();
    let mut highest: f64 = 0.0;
    wait_until(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(100));
        body = metrics(addr);
        highest = highest.max(fill(&body));
        highest >= 0.9 && sum(&body, "tcptrace_lost_events_total", &[]) > 0.0
    });
    let lost_kernel = sum(&body, "tcptrace_lost_events_total", &["source=\"kernel\""]);
    assert!(
        lost_kernel > 0.0,
        "the stopped agent's ring lost nothing: no stall\n{body}"
    );
    assert!(
        highest >= 0.9,
        "the ring overflowed ({lost_kernel} events lost) but its fill peaked at {highest}"
    );
    // Drained and quiet again.
    assert!(
        wait_until(Duration::from_secs(20), || {
            std::thread::sleep(Duration::from_millis(300));
            fill(&metrics(addr)) < 0.1
        }),
        "the ring stayed full"
    );
    eprintln!("ring: peak fill {highest}, {lost_kernel} events lost by the kernel");
    t.stop();
}
