//! `tcptrace retrans` against real losses made by nftables in a private
//! network namespace, with the namespace's own counters as the judge.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use serde_json::Value;
use tests::{
    NetNs, Tracer,
    ftrace::Ftrace,
    kernel,
    load::{bulk_transfers, quiet},
    our_pid, require_root,
    tracer::{failed_after_count, of_type},
    unique_port, wait_until,
};

/// Events tcptrace reported lost (ring full, or skipped by the kernel).
fn lost_count(recs: &[Value]) -> u64 {
    of_type(recs, "lost")
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

/// Every retransmission under random loss is reported for the right flow
/// and owner, and the total equals the namespace's RetransSegs; from the
/// BTF tracepoint (the default here), none lost.
#[test]
fn random_loss_retransmits_match_kernel_counter() {
    random_loss(None);
}

/// The same from the classic tracepoint, the form kernels without BTF get.
#[test]
fn random_loss_retransmits_match_kernel_counter_classic_tracepoint() {
    random_loss(Some("tracepoint"));
}

/// `hook_type`: `--hook-type` (`None`: tcptrace's own choice).
fn random_loss(hook_type: Option<&str>) {
    require_root();
    let ns = NetNs::new("loss");
    ns.small_segments();
    let port = unique_port();
    ns.random_drop(port, 8);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    const CONNS: usize = 8;
    const BYTES: usize = 150_000;

    let port_arg = port.to_string();
    let mut args = vec!["retrans", "--json", "--port", &port_arg];
    if let Some(h) = hook_type {
        args.extend(["--hook-type", h]);
    }
    let t = Tracer::start(&args);
    let peer = Ftrace::start(
        "tcp/tcp_retransmit_skb",
        &format!("sport == {port} || dport == {port}"),
    );
    let before = ns.counter("Tcp", "RetransSegs");
    let client_ports = bulk_transfers(&ns, addr, CONNS, BYTES);
    // FINs may still be retransmitted after close: wait for the flows to end.
    assert!(
        wait_until(Duration::from_secs(60), || quiet(&ns, port)),
        "flows on port {port} did not finish"
    );
    let kernel = ns.counter("Tcp", "RetransSegs") - before;
    let recs = t.stop();
    let lost = lost_count(&recs);
    let rt: Vec<&Value> = of_type(&recs, "retrans");
    assert!(kernel > 0, "8 % loss produced no retransmission at all");
    // The kernel counts segments; a retransmitted buffer may hold several
    // (TCP builds multi-MSS skbs even with device offloads off), so each
    // record carries `segs` and their sum is the kernel's figure.
    let segs: u64 = rt
        .iter()
        .map(|r| r["segs"].as_u64().expect("segs known here"))
        .sum();
    // Attempts that failed after the kernel counted them (see
    // `failed_after_count`) are in RetransSegs but sent nothing.
    let failed = failed_after_count(&recs);
    // Events no BPF program could see (see `Ftrace`).
    let blind = peer.blind();
    eprintln!(
        "retransmitted segments: tcptrace {segs} in {} records, RetransSegs {kernel}; ftrace {} events, {blind} where BPF does not run",
        rt.len(),
        peer.count()
    );
    if hook_type.is_none() {
        // The BTF program's second handles what the kernel skips the
        // first for; the ring does not fill with a few hundred records.
        assert_eq!(lost, 0, "the BTF retransmit programs lost {lost}");
    }
    if lost == 0 && failed == 0 && blind == 0 {
        assert_eq!(
            segs,
            kernel,
            "tcptrace saw {segs} retransmitted segments in {} records, the namespace's RetransSegs grew by {kernel}",
            rt.len()
        );
    } else {
        // The kernel skipped some events (our program was already running
        // on that CPU) and tcptrace said so, attempts failed, or events
        // came where no BPF program runs: what is missing is at most a
        // buffer of one or two segments for each.
        let missing = kernel - segs.min(kernel);
        assert!(
            segs <= kernel && missing <= 2 * (lost + failed + blind),
            "segs {segs}, kernel {kernel}, reported lost {lost}, failed after the count {failed}, where BPF does not run {blind}"
        );
    }
    for r in &rt {
        assert_eq!(r["family"], "ipv4");
        assert_eq!(r["pid"], our_pid(), "{r}");
        let (lport, rport) = (
            r["lport"].as_u64().unwrap() as u16,
            r["rport"].as_u64().unwrap() as u16,
        );
        if lport == port {
            // Server side (data is client -> server, so these are ACK-bearing
            // SYN-ACKs or FINs) owned by the listener's thread.
            assert!(client_ports.contains(&rport), "{r}");
            assert_eq!(r["comm"], "tt-server", "{r}");
        } else {
            assert_eq!(rport, port, "{r}");
            assert!(client_ports.contains(&lport), "unknown flow {r}");
            assert_eq!(r["comm"], "tt-client", "{r}");
        }
        let kind = r["kind"].as_str().unwrap();
        let kinds: &[&str] = if kernel::retrans_kinds_known() {
            &["rto", "fast", "tlp", "syn", "synack"]
        } else {
            &["data", "syn", "synack"]
        };
        assert!(kinds.contains(&kind), "{r}");
        if kind == "syn" {
            assert_eq!(r["state"], "SYN_SENT", "{r}");
        }
    }
    eprintln!(
        "retransmitted segments: tcptrace {segs} ({} records) = kernel {kernel}",
        rt.len()
    );
}

/// SYNs that never get through are retransmitted (after 1 s, 3 s) and
/// reported as `kind=syn`, owned by the connecting thread.
fn syn_retransmits(ip: &str, family: &str) {
    require_root();
    let ns = NetNs::new("syn");
    let port = unique_port();
    ns.drop_syns(port);
    let addr = SocketAddr::new(ip.parse().unwrap(), port);
    let t = Tracer::start(&["retrans", "--json", "--rport", &port.to_string()]);
    let peer = Ftrace::start("tcp/tcp_retransmit_skb", &format!("dport == {port}"));
    let before = ns.counter("TcpExt", "TCPSynRetrans");
    let err = ns.run("tt-syn", move || {
        // The listener exists; only its SYNs are dropped.
        let _l = TcpListener::bind(addr).unwrap();
        TcpStream::connect_timeout(&addr, Duration::from_millis(3500)).unwrap_err()
    });
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    let kernel = ns.counter("TcpExt", "TCPSynRetrans") - before;
    let recs = t.stop();
    let rt = of_type(&recs, "retrans");
    assert!(
        kernel >= 2,
        "expected SYN retransmits at 1 s and 3 s, kernel counted {kernel}"
    );
    // ftrace sees every one the kernel counts.
    let traced = peer.count();
    assert_eq!(traced, kernel, "ftrace: {:#?}", peer.lines());
    // Exact, unless tcptrace reported events the kernel skipped (our
    // program already running on that CPU), or they came in an interrupt
    // where no BPF program runs (see `Ftrace`).
    let lost = lost_count(&recs);
    let blind = peer.blind();
    let seen = rt.len() as u64;
    assert!(
        seen == kernel || (seen < kernel && kernel - seen <= lost + blind),
        "tcptrace saw {seen} SYN retransmits, the kernel counted {kernel}, reported lost {lost}, where BPF does not run {blind}: {recs:#?}\nftrace: {:#?}",
        peer.lines()
    );
    for r in &rt {
        assert_eq!(r["kind"], "syn", "{r}");
        assert_eq!(r["state"], "SYN_SENT", "{r}");
        assert_eq!(r["family"], family, "{r}");
        assert_eq!(r["raddr"], ip, "{r}");
        assert_eq!(r["rport"], port, "{r}");
        assert_eq!(r["pid"], our_pid(), "{r}");
        assert_eq!(r["comm"], "tt-syn", "{r}");
    }
}

#[test]
fn dropped_syns_are_syn_retransmits_ipv4() {
    syn_retransmits("127.0.0.1", "ipv4");
}

#[test]
fn dropped_syns_are_syn_retransmits_ipv6() {
    syn_retransmits("::1", "ipv6");
}
