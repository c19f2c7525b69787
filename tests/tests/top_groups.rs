//! `tcptrace top --group` against the namespace's own counters: what the
//! groups count and their rates add up to what the kernel counted.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;
use tests::{NetNs, Tracer, ftrace::Ftrace, our_pid, require_root, unique_port, wait_until};

/// Seconds of an RFC 3339 timestamp within its day (enough for the
/// differences of one run).
fn secs(ts: &Value) -> f64 {
    let t = ts.as_str().unwrap();
    let hms = &t[11..t.len() - 1];
    let mut p = hms.split(':');
    let (h, m, s): (f64, f64, f64) = (
        p.next().unwrap().parse().unwrap(),
        p.next().unwrap().parse().unwrap(),
        p.next().unwrap().parse().unwrap(),
    );
    h * 3600.0 + m * 60.0 + s
}

/// Under 8 % loss (nftables, offloads off), `top --group owner`: the
/// groups' retransmitted segments add up to the namespace's RetransSegs
/// exactly (or within what tcptrace said it lost), and their rates, times
/// the time between refreshes, add up to the same within rounding; new
/// connections per second add up to the connections made (two flows
/// each; an accepted socket whose first state change fired where no BPF
/// program runs, see `Ftrace`, is not known as one). The client and the
/// server thread each have their group.
#[test]
fn top_group_rates_add_up_to_the_kernel_counters() {
    require_root();
    let ns = NetNs::new("topg");
    ns.small_segments();
    let port = unique_port();
    ns.random_drop(port, 8);
    const CONNS: usize = 6;
    const BYTES: usize = 150_000;
    let ns_path = format!("/run/netns/{}", ns.name);
    let port_arg = port.to_string();
    let t = Tracer::start(&[
        "top",
        "--json",
        "--group",
        "owner",
        "--interval",
        "0.5",
        "--linger",
        "300",
        "--port",
        &port_arg,
        "--netns",
        &ns_path,
    ]);
    let peer = Ftrace::start(
        "tcp/tcp_retransmit_skb",
        &format!("sport == {port} || dport == {port}"),
    );
    // The accepted sockets' first state change (LISTEN is 10, SYN_RECV 3).
    let children = Ftrace::start(
        "sock/inet_sock_set_state",
        &format!("sport == {port} && oldstate == 10 && newstate == 3"),
    );
    // Rates count from the first refresh on.
    t.wait_for("a first table", Duration::from_secs(10), |r| {
        r.iter().any(|r| r["type"] == "top")
    });
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = ns.spawn("tt-grp-srv", move || {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        ready_tx.send(()).unwrap();
        for _ in 0..CONNS {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).unwrap();
            assert_eq!(buf.len(), BYTES);
        }
    });
    ready_rx.recv().unwrap();
    ns.run("tt-grp-cli", move || {
        for _ in 0..CONNS {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.write_all(&vec![7u8; BYTES]).unwrap();
        }
    });
    server.join().unwrap();
    // Retransmits of FINs may still come: until every socket is gone or in
    // TIME_WAIT.
    assert!(
        wait_until(Duration::from_secs(60), || ns
            .ss_census(port)
            .keys()
            .all(|s| s == "TIME_WAIT")),
        "the connections did not finish"
    );
    let kernel = ns.counter("Tcp", "RetransSegs");
    assert!(kernel > 0, "8 % loss made no retransmission");
    let recs = t.stop();
    // Events the kernel skipped (another BPF program was running on that
    // CPU: other tests on the host) are said; each is a buffer of one or
    // two segments.
    let lost: u64 = recs
        .iter()
        .filter(|r| r["type"] == "lost")
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    let tops: Vec<&Value> = recs.iter().filter(|r| r["type"] == "top").collect();
    let last = tops.last().unwrap();
    let groups = last["groups"].as_array().unwrap();
    for thread in ["tt-grp-cli", "tt-grp-srv"] {
        assert!(
            groups
                .iter()
                .any(|g| g["comm"] == thread && g["pid"] == our_pid()),
            "no group of {thread}: {last}"
        );
    }
    let total = |key: &str| -> u64 { groups.iter().map(|g| g[key].as_u64().unwrap()).sum() };
    let seen = total("retrans_segs");
    // Events where no BPF program runs (see `Ftrace`).
    let blind = peer.blind();
    eprintln!("groups' retrans_segs {seen}, RetransSegs {kernel}, {blind} where BPF does not run");
    if lost == 0 && blind == 0 {
        assert_eq!(seen, kernel, "{last}");
    } else {
        assert!(
            seen <= kernel && kernel - seen <= 2 * (lost + blind),
            "groups' retrans_segs {seen}, RetransSegs {kernel}, {lost} events said lost, {blind} where BPF does not run"
        );
    }
    // Rates over each refresh's interval, summed over the run.
    let mut segs = 0.0;
    let mut new = 0.0;
    for w in tops.windows(2) {
        let dt = secs(&w[1]["ts"]) - secs(&w[0]["ts"]);
        for g in w[1]["groups"].as_array().unwrap() {
            segs += g["retrans_segs_per_s"].as_f64().unwrap() * dt;
            new += g["new_per_s"].as_f64().unwrap() * dt;
        }
    }
    eprintln!(
        "RetransSegs {kernel}; groups' retrans_segs {}; sum of rate x interval {segs:.2} over {} refreshes; new connections {new:.2}",
        total("retrans_segs"),
        tops.len()
    );
    // The rates say what the counts say, within the rounding of a rate
    // to three decimals.
    assert!(
        (segs - seen as f64).abs() <= 0.5 + 0.01 * seen as f64,
        "retransmitted segments/s times seconds: {segs}, the groups' retrans_segs {seen}"
    );
    assert_eq!(children.count(), CONNS as u64, "{:#?}", children.lines());
    let accepted = children.seen().len();
    assert!(
        (new - (CONNS + accepted) as f64).abs() < 0.5,
        "new connections/s times seconds: {new}, made {}, {} accepted where BPF does not run",
        2 * CONNS,
        CONNS - accepted
    );
}
