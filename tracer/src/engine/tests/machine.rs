//! The state machine: time in each state, flows per socket, the census.

use super::*;

#[test]
fn time_in_previous_state() {
    use TcpState::*;
    let mut e = Engine::default();
    let c = owner(10, "client");
    let t = tuple(40000, 80);
    assert_eq!(
        e.process(&state(1_000, 1, t, c, Close, SynSent))
            .prev_state_ns,
        None
    );
    assert_eq!(
        e.process(&state(251_000, 1, t, c, SynSent, Established))
            .prev_state_ns,
        Some(250_000)
    );
    assert_eq!(e.state_of(1), Some(Established));
    assert_eq!(
        e.process(&state(1_251_000, 1, t, c, Established, Close))
            .prev_state_ns,
        Some(1_000_000)
    );
    assert_eq!(e.state_of(1), None, "closed sockets are forgotten");
}

#[test]
fn out_of_order_timestamps_do_not_underflow() {
    use TcpState::*;
    let mut e = Engine::default();
    let c = owner(10, "client");
    e.process(&state(5_000, 1, tuple(1, 2), c, Close, SynSent));
    let a = e.process(&state(4_000, 1, tuple(1, 2), c, SynSent, Established));
    assert_eq!(a.prev_state_ns, Some(0));
}

#[test]
fn a_reset_after_close_counts_on_the_closed_flow() {
    use TcpState::*;
    let mut e = Engine::default();
    let c = owner(10, "c");
    let t = tuple(80, 5000);
    e.process(&state(1, 1, t, c, Established, Close));
    e.process(&ev(
        2,
        1,
        t,
        EventKind::ResetSent {
            state: Some(Close),
            reason: Some(12),
        },
    ));
    assert!(e.census(|_| true).is_empty(), "no live flow was made");
    assert_eq!(
        e.flows().find(|f| f.sock == 1).unwrap().extra().resets_sent,
        1
    );
}

/// The live timer sweeps at most every `SWEEP_EVERY_NS` (events the
/// same); the end of input sweeps whenever it comes.
#[test]
fn the_timer_sweeps_at_most_every_interval() {
    use TcpState::*;
    let mut e = Engine::new(Config {
        linger_ns: 1_000,
        ..Config::default()
    });
    let c = owner(1, "c");
    e.process(&state(100, 1, tuple(1, 80), c, SynSent, Established));
    e.process(&state(200, 1, tuple(1, 80), c, LastAck, Close));
    // No sweep yet: the first is due 100 ms after time 0.
    e.tick(200 + 1_000);
    assert_eq!(e.flows().count(), 1, "swept before its interval");
    e.tick(100 + config::SWEEP_EVERY_NS);
    assert_eq!(e.flows().count(), 0, "not swept once due");
    e.process(&state(300, 2, tuple(2, 80), c, LastAck, Close));
    e.advance(300 + config::SWEEP_EVERY_NS + 1_000);
    assert_eq!(e.flows().count(), 0, "the end of input sweeps at once");
}

#[test]
fn census_with_inferred_time_wait_and_linger() {
    use TcpState::*;
    let mut e = Engine::new(Config {
        linger_ns: 1_000,
        time_wait_ns: 10_000,
        ..Config::default()
    });
    let c = owner(1, "c");
    e.seed(tuple(22, 0), Listen, Some(owner(2, "sshd")), 0);
    e.process(&state(100, 1, tuple(1, 80), c, SynSent, Established));
    e.process(&state(100, 2, tuple(2, 80), c, Established, CloseWait));
    e.process(&state(100, 3, tuple(3, 80), c, FinWait2, Close));
    e.process(&state(100, 4, tuple(4, 80), c, LastAck, Close));
    let census = e.census(|_| true);
    assert_eq!(census.get(&Listen), Some(&1));
    assert_eq!(census.get(&Established), Some(&1));
    assert_eq!(census.get(&CloseWait), Some(&1));
    assert_eq!(census.get(&TimeWait), Some(&1));
    assert_eq!(
        census.get(&Close),
        None,
        "closed sockets are not in the census"
    );
    assert_eq!(e.flows().count(), 5, "the closed one lingers");
    e.advance(100 + 1_000);
    assert_eq!(e.flows().count(), 4, "linger over");
    e.advance(100 + 10_000);
    assert_eq!(e.census(|_| true).get(&TimeWait), None, "TIME_WAIT over");
    assert_eq!(e.matrix()[&(FinWait2, Close)], 1);
}

#[test]
fn retransmits_and_resets_per_flow() {
    use TcpState::*;
    let mut e = Engine::default();
    let c = owner(1, "c");
    let t = tuple(1, 80);
    e.process(&state(1, 9, t, c, SynSent, Established));
    e.process(&retrans(2, 9, t, c, Established, RetransKind::Data));
    e.process(&retrans(3, 9, t, c, Established, RetransKind::Data));
    e.process(&ev(
        4,
        9,
        t,
        EventKind::ResetSent {
            state: Some(Established),
            reason: Some(12),
        },
    ));
    let f = e.flows().find(|f| f.sock == 9).unwrap();
    assert_eq!(
        (
            f.extra().retrans.of(RetransKind::Data),
            f.extra().retrans.segs
        ),
        (2, 2)
    );
    assert_eq!(f.extra().resets_sent, 1);
}

/// A SYN-ACK retransmit names the listener (`skaddr`) and the half-open
/// connection's tuple: it counts on the listener, whose row keeps its own
/// tuple, and makes no SYN_RECV flow, whether the listener was seen
/// entering LISTEN or seeded from /proc.
#[test]
fn synack_retransmits_count_on_the_listener_and_make_no_flow() {
    use TcpState::*;
    let srv = owner(3, "server");
    let listening = Tuple {
        raddr: Tuple::unspecified(Family::V4),
        ..tuple(8080, 0)
    };
    let half_open = |rport| tuple(8080, rport);
    let synack = |ts, sock, rport| {
        retrans(
            ts,
            sock,
            half_open(rport),
            owner(0, "swapper/0"),
            SynRecv,
            RetransKind::SynAck,
        )
    };

    // Seen entering LISTEN.
    let mut e = Engine::default();
    e.process(&state(1, 50, listening, srv, Close, Listen));
    for (i, rport) in [40000, 40000, 40001].into_iter().enumerate() {
        let a = e.process(&synack(2 + i as u64, 50, rport));
        assert_eq!(a.owner, Some(srv));
    }
    let flows: Vec<_> = e.flows().collect();
    assert_eq!(flows.len(), 1, "{flows:?}");
    assert_eq!(
        flows[0].tuple, listening,
        "the listener's row keeps its tuple"
    );
    assert_eq!(flows[0].extra().retrans.of(RetransKind::SynAck), 3);
    assert_eq!(e.census(|_| true).get(&SynRecv), None);

    // Seeded from /proc: counted on the seeded listener, still no flow.
    let mut e = Engine::default();
    e.seed(listening, Listen, Some(srv), 0);
    let a = e.process(&synack(2, 60, 40002));
    assert_eq!(a.owner, Some(srv));
    assert_eq!(e.flows().count(), 1);
    assert_eq!(e.census(|_| true).get(&SynRecv), None);
    assert_eq!(
        e.flows()
            .next()
            .unwrap()
            .extra()
            .retrans
            .of(RetransKind::SynAck),
        1
    );
    // Wildcard listener too.
    let mut e = Engine::default();
    let wildcard = Tuple {
        laddr: Tuple::unspecified(Family::V4),
        ..listening
    };
    e.seed(wildcard, Listen, Some(srv), 0);
    e.process(&synack(2, 60, 40002));
    assert_eq!(
        e.flows()
            .next()
            .unwrap()
            .extra()
            .retrans
            .of(RetransKind::SynAck),
        1
    );
    // The handshake completes later: the accepted socket is the only
    // SYN_RECV there ever was, and it moves on.
    e.process(&state(3, 61, half_open(40002), srv, Listen, SynRecv));
    e.process(&state(4, 61, half_open(40002), srv, SynRecv, Established));
    let census = e.census(|_| true);
    assert_eq!(
        (census.get(&SynRecv), census.get(&Established)),
        (None, Some(&1))
    );

    // A listener nobody saw: counted nowhere, still no flow.
    let mut e = Engine::default();
    let a = e.process(&synack(2, 70, 40003));
    assert_eq!(a.owner, None);
    assert_eq!(e.flows().count(), 0);
}

/// Resets sent by a listener, a timewait or a request socket make no flow
/// either; a listener's count on its row.
#[test]
fn resets_of_sockets_that_are_not_flows() {
    use TcpState::*;
    let mut e = Engine::default();
    let listening = tuple(8080, 0);
    e.process(&state(1, 50, listening, owner(3, "s"), Close, Listen));
    let rst = |ts, sock, st| {
        ev(
            ts,
            sock,
            tuple(8080, 40000),
            EventKind::ResetSent {
                state: Some(st),
                reason: None,
            },
        )
    };
    e.process(&rst(2, 50, Listen));
    e.process(&rst(3, 51, TimeWait));
    e.process(&rst(4, 52, NewSynRecv));
    let flows: Vec<_> = e.flows().collect();
    assert_eq!(flows.len(), 1, "{flows:?}");
    assert_eq!(flows[0].tuple, listening);
    assert_eq!(flows[0].extra().resets_sent, 1);
}

/// An error report names no socket, so no namespace: it still completes
/// the failed connect of its tuple in whichever namespace that is.
#[test]
fn error_reports_without_a_namespace_find_their_connect() {
    use TcpState::*;
    for report_first in [true, false] {
        let mut e = Engine::default();
        let c = owner(10, "curl");
        let ns = |t: Tuple| Tuple {
            netns: 4_026_532_001,
            ..t
        };
        let t = tuple(40000, 9);
        let refused = ev(3, 0, t, EventKind::SockError { errno: 111 });
        e.process(&state(1, 1, ns(tuple(0, 9)), c, Close, SynSent));
        if report_first {
            e.process(&refused);
        }
        e.process(&state(4, 1, ns(t), owner(0, "x"), SynSent, Close));
        if !report_first {
            e.process(&refused);
        }
        let o = e.take_outcomes();
        assert_eq!(o.len(), 1, "{o:?}");
        assert_eq!(o[0].errno, Some(111));
        assert_eq!(o[0].tuple.netns, 4_026_532_001);
    }
}
