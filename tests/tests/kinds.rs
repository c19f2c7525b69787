//! Retransmit kinds (`rto`, `fast`, `tlp`, `syn`, `synack`) against the
//! namespace's own TcpExt counters under random loss, a black-holed peer
//! (RTOs at growing intervals) and one dropped last segment (a tail-loss
//! probe). On a kernel without BTF every data retransmit is `data`
//! ([`kernel::retrans_kinds_known`]); these tests then fail, loudly.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use serde_json::Value;
use tests::{
    NetNs, Tracer,
    ftrace::{Ftrace, field},
    kernel,
    load::{bulk_transfers, quiet},
    require_root,
    tracer::{failed_after_count, lost, of_type},
    unique_port, wait_until,
};

/// The counters the kinds are judged by.
const COUNTERS: [(&str, &str); 7] = [
    ("Tcp", "RetransSegs"),
    ("TcpExt", "TCPFastRetrans"),
    ("TcpExt", "TCPSlowStartRetrans"),
    ("TcpExt", "TCPLossProbes"),
    ("TcpExt", "TCPSynRetrans"),
    ("TcpExt", "TCPTimeouts"),
    ("TcpExt", "TCPRetransFail"),
];

fn counters(ns: &NetNs) -> BTreeMap<&'static str, u64> {
    COUNTERS
        .iter()
        .map(|&(g, n)| (n, ns.counter(g, n)))
        .collect()
}

/// Retransmit records that sent something (not failed attempts).
fn sent(recs: &[Value]) -> Vec<&Value> {
    of_type(recs, "retrans")
        .into_iter()
        .filter(|r| r.get("failed").is_none())
        .collect()
}

/// Records and segments per kind.
fn by_kind(rt: &[&Value]) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    for r in rt {
        let e: &mut (u64, u64) = m
            .entry(r["kind"].as_str().unwrap().to_string())
            .or_default();
        e.0 += 1;
        e.1 += r["segs"].as_u64().expect("segs known here");
    }
    m
}

/// Seconds of the day of a record's `ts` (`...THH:MM:SS.ffffffZ`).
fn secs(r: &Value) -> f64 {
    let ts = r["ts"].as_str().unwrap();
    let t = &ts[ts.find('T').unwrap() + 1..ts.len() - 1];
    let p: Vec<f64> = t.split(':').map(|x| x.parse().unwrap()).collect();
    p[0] * 3600.0 + p[1] * 60.0 + p[2]
}

/// Under 12 % random loss each kind's segments equal the kernel counter
/// that counts the same retransmits:
/// - `fast` = TCPFastRetrans (the kernel adds a buffer's segments there
///   for every retransmit outside the Loss state in
///   `tcp_xmit_retransmit_queue`): exact;
/// - `syn` + `synack` records = TCPSynRetrans: exact;
/// - `tlp` <= TCPLossProbes: that counter also counts probes that sent
///   new data instead (no retransmit), so it is an upper bound;
/// - `rto` lies between TCPSlowStartRetrans (the Loss-state retransmits
///   after a timeout) and that plus TCPTimeouts: each timeout resends the
///   head once more, counted nowhere else, but TCPTimeouts also counts
///   SYN and SYN-ACK timeouts and timeouts that resend nothing;
/// - the sum of them all = RetransSegs, as before the kinds.
///
/// Where tcptrace reports events lost (the kernel skipped our program
/// because another BPF program ran on that CPU, on this shared host),
/// each figure may fall short by up to two segments per lost event.
#[test]
fn random_loss_kinds_match_kernel_counters() {
    require_root();
    assert!(
        kernel::retrans_kinds_known(),
        "no kernel BTF: kinds cannot be told"
    );
    let ns = NetNs::new("kinds");
    ns.small_segments();
    let port = unique_port();
    // 12 %, not more: the loss is on both directions, so an attempt (the
    // segment or its ACK) fails with 1 - 0.88^2 = 23 %. At 20 % (36 % an
    // attempt) a transfer once stalled past its 60 s read timeout in CI:
    // timeouts back off from 0.2 s, doubling, so nine failed attempts in a
    // row wait 102 s (0.36^9 = 1e-4 per loss, and a run has hundreds).
    ns.random_drop(port, 12);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Tracer::start(&["retrans", "--json", "--port", &port.to_string()]);
    let peer = Ftrace::start(
        "tcp/tcp_retransmit_skb",
        &format!("sport == {port} || dport == {port}"),
    );
    let before = counters(&ns);
    bulk_transfers(&ns, addr, 6, 100_000);
    assert!(
        wait_until(Duration::from_secs(60), || quiet(&ns, port)),
        "flows on port {port} did not finish"
    );
    let after = counters(&ns);
    let k: BTreeMap<&str, u64> = after.iter().map(|(n, v)| (*n, v - before[n])).collect();
    let recs = t.stop();
    // Lost events, attempts that failed after the kernel counted them,
    // and events where no BPF program runs (see `Ftrace`) may each have
    // been a buffer of up to two segments.
    let tol = 2 * (lost(&recs, "").0 + failed_after_count(&recs) + peer.blind());
    let rt = sent(&recs);
    let kinds = by_kind(&rt);
    let segs = |kind: &str| kinds.get(kind).map_or(0, |&(_, s)| s);
    let count = |kind: &str| kinds.get(kind).map_or(0, |&(n, _)| n);
    eprintln!("kernel {k:?}\ntcptrace (records, segments) {kinds:?}, lost tolerance {tol}");
    let near = |ours: u64, theirs: u64| ours <= theirs && theirs - ours <= tol;
    assert!(k["RetransSegs"] > 0, "12 % loss retransmitted nothing");
    assert!(
        !kinds.contains_key("data"),
        "every kind known here: {kinds:?}"
    );
    let total: u64 = kinds.values().map(|&(_, s)| s).sum();
    assert!(near(total, k["RetransSegs"]), "total {total}, {k:?}");
    assert!(
        near(segs("fast"), k["TCPFastRetrans"]),
        "fast: {kinds:?} {k:?}"
    );
    let syns = count("syn") + count("synack");
    assert!(near(syns, k["TCPSynRetrans"]), "syn: {kinds:?} {k:?}");
    assert!(segs("tlp") <= k["TCPLossProbes"], "tlp: {kinds:?} {k:?}");
    let rto = segs("rto");
    assert!(
        rto + tol >= k["TCPSlowStartRetrans"] && rto <= k["TCPSlowStartRetrans"] + k["TCPTimeouts"],
        "rto: {kinds:?} {k:?}"
    );
    // Failed attempts other than EBUSY are what TCPRetransFail counts
    // (by segments; our records say 0 segments: nothing was sent).
    let failed: Vec<&Value> = of_type(&recs, "retrans")
        .into_iter()
        .filter(|r| r.get("failed").is_some())
        .collect();
    if !kernel::failed_retransmits_traced() {
        assert!(failed.is_empty(), "{failed:?}");
    }
    let hard = failed.iter().filter(|r| r["failed"] != "EBUSY").count() as u64;
    assert!(hard <= k["TCPRetransFail"], "failed {failed:?}, {k:?}");
    if tol == 0 && kernel::failed_retransmits_traced() {
        assert_eq!(
            hard > 0,
            k["TCPRetransFail"] > 0,
            "failed {failed:?}, {k:?}"
        );
    }
    for r in &failed {
        assert_eq!(r["segs"], 0, "{r}");
    }
}

/// A peer that goes silent after the handshake (nftables drops every
/// segment on the port): the sender resends at growing intervals, each
/// an `rto` (a loss probe may come first), as many as the timeouts. A
/// timeout that fired where no BPF program runs (see `Ftrace`) joins two
/// intervals, which still grow, but by less than half.
#[test]
fn black_holed_peer_gives_rto_at_growing_intervals() {
    require_root();
    let ns = NetNs::new("hole");
    ns.small_segments();
    let port = unique_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Tracer::start(&["retrans", "--json", "--port", &port.to_string()]);
    let peer = Ftrace::start("tcp/tcp_retransmit_skb", &format!("dport == {port}"));
    let l = ns.run("tt-server", move || TcpListener::bind(addr).unwrap());
    let c = ns.run("tt-hole", move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap()
    });
    let (_accepted, _) = l.accept().unwrap();
    let timeouts = ns.counter("TcpExt", "TCPTimeouts");
    ns.black_hole(port);
    (&c).write_all(&[1u8; 1000]).unwrap();
    // RTOs at about 0.2, 0.6, 1.4 and 3.0 s (the minimum RTO, doubling).
    let recs = t.wait_for("four rto retransmits", Duration::from_secs(20), |recs| {
        of_type(recs, "retrans")
            .iter()
            .filter(|r| r["kind"] == "rto")
            .count()
            >= 4
    });
    let timeouts = ns.counter("TcpExt", "TCPTimeouts") - timeouts;
    drop(c);
    t.stop();
    let rt = of_type(&recs, "retrans");
    let rto: Vec<&&Value> = rt.iter().filter(|r| r["kind"] == "rto").collect();
    for r in &rt {
        assert!(["rto", "tlp"].contains(&r["kind"].as_str().unwrap()), "{r}");
        assert_eq!(r["state"], "ESTABLISHED", "{r}");
        assert_eq!(r["comm"], "tt-hole", "{r}");
        assert_eq!(r["segs"], 1, "{r}");
    }
    assert!(
        rto.len() as u64 <= timeouts + 1,
        "{} rto records, {timeouts} timeouts",
        rto.len()
    );
    let at: Vec<f64> = rto.iter().map(|r| secs(r)).collect();
    let gaps: Vec<f64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    let blind = peer.blind();
    eprintln!("rto at {at:?}, gaps {gaps:?}, {blind} retransmits where BPF does not run");
    assert!(gaps[0] >= 0.15, "the minimum RTO is 200 ms: {gaps:?}");
    // With timeouts unseen, an interval may be two or more joined (0.4 +
    // 0.8 s before 1.6 s): each still shorter than the next, which is at
    // least twice the last one it holds.
    let growth = if blind == 0 { 1.5 } else { 1.0 };
    for g in gaps.windows(2) {
        assert!(
            g[1] >= growth * g[0],
            "backoff doubles: {gaps:?}, {blind} retransmits where BPF does not run"
        );
    }
}

/// The only data segment of a request is dropped once (an nftables quota
/// lets its resend through): the sender's loss probe resends it before
/// the RTO, one `tlp`, as TCPLossProbes counts, unless its timer fired
/// where no BPF program runs (see `Ftrace`).
#[test]
fn dropped_last_segment_gives_a_tlp() {
    require_root();
    let ns = NetNs::new("tlp");
    ns.small_segments();
    let port = unique_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // 600 bytes of payload: a 652-byte packet fits the quota once only.
    ns.nft(&format!(
        "table inet once {{
           chain input {{
             type filter hook input priority 0; policy accept;
             tcp dport {port} ip length > 200 quota until 1000 bytes drop
           }}
         }}"
    ));
    let t = Tracer::start(&["retrans", "--json", "--port", &port.to_string()]);
    let peer = Ftrace::start("tcp/tcp_retransmit_skb", &format!("dport == {port}"));
    let probes = ns.counter("TcpExt", "TCPLossProbes");
    let l = ns.run("tt-server", move || TcpListener::bind(addr).unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 600];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"k").unwrap();
    });
    ns.run("tt-tlp", move || {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(&[2u8; 600]).unwrap();
        let mut k = [0u8; 1];
        c.read_exact(&mut k).unwrap();
    });
    server.join().unwrap();
    // The probe was answered before the client's read returned.
    assert_eq!(peer.count(), 1, "one retransmit: {:#?}", peer.lines());
    let visible = peer.seen().len();
    let recs = t.wait_for("the probe", Duration::from_secs(10), |recs| {
        of_type(recs, "retrans").len() >= visible
    });
    let probes = ns.counter("TcpExt", "TCPLossProbes") - probes;
    t.stop();
    assert_eq!(probes, 1, "the kernel counted {probes} loss probes");
    let rt = of_type(&recs, "retrans");
    assert_eq!(rt.len(), visible, "{rt:?}\nftrace: {:#?}", peer.lines());
    if visible == 0 {
        eprintln!(
            "the probe fired where BPF does not run: {:#?}",
            peer.lines()
        );
        return;
    }
    assert_eq!(rt[0]["kind"], "tlp", "{}", rt[0]);
    assert_eq!(rt[0]["comm"], "tt-tlp", "{}", rt[0]);
    assert_eq!(rt[0]["segs"], 1, "{}", rt[0]);
}

/// A retransmit the kernel cannot send because the previous copy is still
/// queued on this host (a 20 kbit/s token bucket on loopback holds it for
/// longer than the RTO): Linux 6.17+ fires the tracepoint with EBUSY, and
/// tcptrace reports it as `"failed":"EBUSY"` with 0 segments, apart from
/// the retransmits, which still add up to RetransSegs. Older kernels do
/// not report such attempts ([`kernel::failed_retransmits_traced`]). The
/// timer's attempts that fired where no BPF program runs (see `Ftrace`)
/// are unseen.
#[test]
fn retransmit_of_a_segment_still_queued_fails_with_ebusy() {
    require_root();
    let ns = NetNs::new("busy");
    ns.small_segments();
    ns.sh(&[
        "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "20kbit", "burst", "1600",
        "limit", "200000",
    ]);
    let port = unique_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Tracer::start(&["retrans", "--json", "--port", &port.to_string()]);
    let peer = Ftrace::start("tcp/tcp_retransmit_skb", &format!("dport == {port}"));
    let before = ns.counter("Tcp", "RetransSegs");
    let l = ns.run("tt-server", move || TcpListener::bind(addr).unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 8000];
        s.read_exact(&mut buf).unwrap();
    });
    ns.run("tt-busy", move || {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        c.write_all(&[3u8; 8000]).unwrap();
        server.join().unwrap();
    });
    let kernel = ns.counter("Tcp", "RetransSegs") - before;
    let recs = t.stop();
    // Lost events and events where no BPF program runs: a buffer of up to
    // two segments each.
    let blind = peer.blind();
    let tol = 2 * (lost(&recs, "").0 + blind);
    let failed: Vec<&Value> = of_type(&recs, "retrans")
        .into_iter()
        .filter(|r| r.get("failed").is_some())
        .collect();
    let segs: u64 = sent(&recs)
        .iter()
        .map(|r| r["segs"].as_u64().unwrap())
        .sum();
    eprintln!(
        "failed attempts {failed:?}; retransmitted segments {segs}, kernel {kernel}; {blind} attempts where BPF does not run"
    );
    assert!(
        segs <= kernel && kernel - segs <= tol,
        "segs {segs}, kernel {kernel}, {blind} attempts where BPF does not run"
    );
    if !kernel::failed_retransmits_traced() {
        assert!(failed.is_empty(), "{failed:?}");
        return;
    }
    // EBUSY is 16: the kernel's attempts, and those a BPF program saw.
    let ebusy = |lines: Vec<String>| {
        lines
            .iter()
            .filter(|l| field(l, "err") == Some("-16"))
            .count()
    };
    assert!(ebusy(peer.lines()) > 0, "no EBUSY: {:#?}", peer.lines());
    assert!(
        !failed.is_empty() || ebusy(peer.seen()) == 0,
        "no failed attempt reported: {recs:?}\nftrace: {:#?}",
        peer.lines()
    );
    for r in &failed {
        assert_eq!(r["failed"], "EBUSY", "{r}");
        assert_eq!(r["segs"], 0, "{r}");
        assert_eq!(r["comm"], "tt-busy", "{r}");
        assert_eq!(r["kind"], "rto", "resent by the retransmission timer: {r}");
    }
}
