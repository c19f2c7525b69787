//! The event playbooks (`retrans_spike`, `rst_storm`) on made-up events
//! and counter readings: what fires, what stays quiet (normal life), and
//! the guards against tiny denominators.

use super::{Examine, Scene, retrans_spike::RetransSpike, rst_storm::RstStorm};
use crate::{
    counters::{Counter, Counters},
    engine::{
        Annotated, Config, Engine,
        tests::{outcome, owner, retrans, tuple},
    },
    event::{Event, EventKind, RetransKind, TcpState},
    views::{doctor::finding::Finding, testing::context},
};

const S: u64 = 1_000_000_000;

/// Two readings `secs` apart whose counters grew by `grew`.
fn readings(secs: u64, grew: &[(Counter, u64)]) -> (Counters, Counters) {
    let mut a = Counters::default();
    let mut b = Counters {
        ts_ns: secs * S,
        ..Counters::default()
    };
    for c in Counter::ALL {
        a.values[c as usize] = Some(1_000);
        b.values[c as usize] = Some(1_000);
    }
    for &(c, n) in grew {
        b.values[c as usize] = Some(1_000 + n);
    }
    (a, b)
}

/// What `book` finds after `secs` s with those counters.
fn examine(book: &dyn Examine, secs: u64, grew: &[(Counter, u64)], wan: bool) -> Vec<Finding> {
    let engine = Engine::new(Config::default());
    let cx = context();
    let (first, last) = readings(secs, grew);
    book.examine(&Scene {
        engine: &engine,
        now_ns: secs * S,
        duration_s: secs as f64,
        first: Some(&first),
        last: Some(&last),
        tables_first: None,
        tables_last: None,
        cx: &cx,
        wan,
    })
}

fn annotated(event: Event, state: Option<TcpState>) -> Annotated {
    Annotated {
        owner: Some(event.task),
        event,
        prev_state_ns: None,
        state,
    }
}

/// `n` retransmits of `kind` on flow `sock`, `gap_ns` apart from `t0`.
fn resend(b: &mut RetransSpike, sock: u64, kind: RetransKind, n: u64, t0: u64, gap_ns: u64) {
    let (cx, t) = (context(), tuple(40000 + sock as u16, 7000));
    for i in 0..n {
        let e = retrans(
            t0 + i * gap_ns,
            sock,
            t,
            owner(9, "tt-client"),
            TcpState::Established,
            kind,
        );
        b.on_event(&annotated(e, None), &cx);
    }
}

fn rate(retrans: u64, out: u64) -> Vec<(Counter, u64)> {
    vec![(Counter::RetransSegs, retrans), (Counter::OutSegs, out)]
}

#[test]
fn a_handful_of_segments_is_not_a_rate() {
    let mut b = RetransSpike::default();
    resend(&mut b, 1, RetransKind::Fast, 5, 0, S / 100);
    // 5 of 100: 5 %, but from too few segments.
    assert!(examine(&b, 10, &rate(5, 100), false).is_empty());
    assert!(examine(&b, 10, &rate(9, 100_000), false).is_empty());
    // 1 in 100 000 is under the LAN line.
    assert!(examine(&b, 10, &rate(10, 1_000_000), false).is_empty());
}

#[test]
fn path_loss_is_fast_and_critical_over_one_percent() {
    let mut b = RetransSpike::default();
    resend(&mut b, 1, RetransKind::Fast, 40, 0, S / 100);
    resend(&mut b, 2, RetransKind::Rto, 2, 0, S / 2);
    let f = examine(&b, 10, &rate(42, 2_000), false);
    assert_eq!(f.len(), 1, "{f:#?}");
    let f = &f[0];
    assert_eq!(f.severity.name(), "critical");
    assert!(f.summary.contains("fast retransmits"), "{}", f.summary);
    let ev = |k: &str| {
        f.evidence
            .iter()
            .find(|x| x.key == k)
            .unwrap()
            .value
            .clone()
    };
    assert_eq!(ev("dominant"), "fast");
    assert_eq!(ev("retrans_segs"), 42);
    assert_eq!(ev("rate_pct"), 2.1);
    assert_eq!(f.subjects[0].lport, Some(40001), "the top flow first");
    assert_eq!(f.subjects[0].comm.as_deref(), Some("tt-client"));
    // 0.3 %: over the LAN line, under the WAN one.
    assert_eq!(
        examine(&b, 10, &rate(30, 10_000), false)[0].severity.name(),
        "warning"
    );
    assert!(examine(&b, 10, &rate(30, 10_000), true).is_empty());
}

#[test]
fn far_destinations_are_judged_by_the_wan_line() {
    let mut b = RetransSpike::default();
    resend(&mut b, 1, RetransKind::Fast, 30, 0, S / 100);
    // The flows' destination (127.0.0.1) answers handshakes in 40 ms.
    for _ in 0..5 {
        b.on_connect(&outcome(Some(40_000_000), None));
    }
    assert!(examine(&b, 10, &rate(30, 10_000), false).is_empty());
    assert_eq!(examine(&b, 10, &rate(30, 1_000), false).len(), 1);
}

/// A near destination whose handshakes mostly lost a SYN (1 s each) is
/// still near: its shortest handshake says the distance.
#[test]
fn lost_syns_do_not_make_a_near_destination_far() {
    let mut b = RetransSpike::default();
    resend(&mut b, 1, RetransKind::Fast, 30, 0, S / 100);
    for ns in [1_020_000_000, 1_010_000_000, 50_000, 1_030_000_000] {
        b.on_connect(&outcome(Some(ns), None));
    }
    // 0.3 %: over the LAN line, under the WAN one.
    assert_eq!(examine(&b, 10, &rate(30, 10_000), false).len(), 1);
}

#[test]
fn backed_off_timeouts_are_a_silent_peer_whatever_the_rate() {
    // 0.2, 0.6, 1.4 s: three timeouts, each gap twice the last.
    let mut b = RetransSpike::default();
    let (cx, t) = (context(), tuple(40001, 7000));
    for ts in [S / 5, 3 * S / 5, 7 * S / 5] {
        let e = retrans(
            ts,
            1,
            t,
            owner(9, "tt-hole"),
            TcpState::Established,
            RetransKind::Rto,
        );
        b.on_event(&annotated(e, None), &cx);
    }
    let f = examine(&b, 10, &rate(3, 20), false);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert!(f[0].summary.contains("went silent"), "{}", f[0].summary);
    assert_eq!(f[0].severity.name(), "warning");
    // One timeout and the slow-start resends after it (an RTT apart)
    // are not a silent peer.
    let mut b = RetransSpike::default();
    resend(&mut b, 1, RetransKind::Rto, 6, S, S / 1000);
    assert!(examine(&b, 10, &rate(6, 100), false).is_empty());
}

fn reset(ts: u64, sock: u64, lport: u16, rport: u16, comm: &str, kind: EventKind) -> Event {
    Event {
        ts_ns: ts,
        sock,
        tuple: tuple(lport, rport),
        task: owner(9, comm),
        kind,
    }
}

const NO_SOCKET: EventKind = EventKind::ResetSent {
    state: None,
    reason: Some(1),
};
const ABORT: EventKind = EventKind::ResetSent {
    state: Some(TcpState::Close),
    reason: Some(11),
};

/// `n` aborts by the server on port 8080 (sent) and their receipt by
/// the clients, which connected (SYN_SENT) first.
fn aborts(b: &mut RstStorm, n: u64) {
    let cx = context();
    for i in 0..n {
        let (srv, cli, eph) = (100 + 2 * i, 101 + 2 * i, 40000 + i as u16);
        let syn = EventKind::State {
            old: TcpState::Close,
            new: TcpState::SynSent,
        };
        b.on_event(
            &annotated(reset(i, cli, eph, 8080, "client", syn), None),
            &cx,
        );
        b.on_event(
            &annotated(reset(i, srv, 8080, eph, "server", ABORT), None),
            &cx,
        );
        let recv = reset(i, cli, eph, 8080, "client", EventKind::ResetRecv);
        b.on_event(&annotated(recv, Some(TcpState::Established)), &cx);
    }
}

#[test]
fn aborted_connections_are_a_storm_on_the_service_port() {
    let mut b = RstStorm::default();
    aborts(&mut b, 30);
    let opens = [(Counter::ActiveOpens, 30), (Counter::PassiveOpens, 30)];
    let f = examine(&b, 4, &opens, false);
    assert_eq!(f.len(), 1, "{f:#?}");
    let f = &f[0];
    assert!(
        f.summary.starts_with("30 connections reset on port 8080"),
        "{}",
        f.summary
    );
    assert!(f.summary.contains("TCP_ABORT_ON_CLOSE"), "{}", f.summary);
    assert_eq!(f.severity.name(), "critical");
    assert_eq!(f.subjects[0].lport, Some(8080));
    assert_eq!(
        f.subjects[1].comm.as_deref(),
        Some("server"),
        "{:?}",
        f.subjects
    );
    assert_eq!(
        f.subjects.len(),
        2,
        "the receivers are evidence: {:?}",
        f.subjects
    );
}

#[test]
fn a_health_checker_and_a_few_resets_are_normal_life() {
    // A checker that aborts once a second: under the rate.
    let mut b = RstStorm::default();
    aborts(&mut b, 10);
    assert!(examine(&b, 10, &[(Counter::ActiveOpens, 10)], false).is_empty());
    // 30 aborts among 1 000 connections a second: under the share.
    let mut b = RstStorm::default();
    aborts(&mut b, 30);
    let busy = [
        (Counter::ActiveOpens, 5_000),
        (Counter::PassiveOpens, 5_000),
    ];
    assert!(examine(&b, 10, &busy, false).is_empty());
}

#[test]
fn refused_connects_here_are_left_to_connect_failures() {
    let mut b = RstStorm::default();
    let cx = context();
    for i in 0..50 {
        let eph = 40000 + i as u16;
        b.on_event(
            &annotated(reset(i, 0, 9, eph, "swapper", NO_SOCKET), None),
            &cx,
        );
        let recv = reset(i, 200 + i, eph, 9, "tt-refused", EventKind::ResetRecv);
        b.on_event(&annotated(recv, Some(TcpState::SynSent)), &cx);
    }
    assert!(examine(&b, 4, &[(Counter::ActiveOpens, 50)], false).is_empty());
    // The same resets sent to connects made elsewhere are a storm.
    let mut b = RstStorm::default();
    for i in 0..50 {
        let e = reset(i, 0, 9, 40000 + i as u16, "swapper", NO_SOCKET);
        b.on_event(&annotated(e, None), &cx);
    }
    let f = examine(&b, 4, &[], false);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert!(f[0].summary.contains("NO_SOCKET"), "{}", f[0].summary);
}

/// A socket's memory taken by another socket (a client's, then a server's
/// accepted one): two flows with their own owners, not one flow with the
/// first tuple and the last owner.
#[test]
fn a_reused_socket_address_is_two_flows() {
    let (mut b, cx) = (RetransSpike::default(), context());
    let client = tuple(40001, 7000);
    let server = tuple(7000, 40002);
    for i in 0..30 {
        let e = retrans(
            i,
            1,
            client,
            owner(9, "tt-client"),
            TcpState::Established,
            RetransKind::Fast,
        );
        b.on_event(&annotated(e, None), &cx);
    }
    for i in 30..32 {
        let e = retrans(
            i,
            1,
            server,
            owner(8, "tt-server"),
            TcpState::LastAck,
            RetransKind::Rto,
        );
        b.on_event(&annotated(e, None), &cx);
    }
    let f = examine(&b, 10, &rate(32, 2_000), false);
    let s = &f[0].subjects;
    assert_eq!(
        (s[0].lport, s[0].comm.as_deref()),
        (Some(40001), Some("tt-client")),
        "{s:#?}"
    );
    assert_eq!(
        (s[1].lport, s[1].comm.as_deref()),
        (Some(7000), Some("tt-server")),
        "{s:#?}"
    );
}
