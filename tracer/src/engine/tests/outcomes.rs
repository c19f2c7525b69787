//! Connect outcomes: latency on success, the errno on failure, once.

use super::*;

#[test]
fn client_handshake_latency_outcome() {
    use TcpState::*;
    let mut e = Engine::default();
    let c = owner(10, "curl");
    e.process(&state(1_000, 1, tuple(0, 80), c, Close, SynSent));
    e.process(&state(
        1_001_000,
        1,
        tuple(40000, 80),
        owner(0, "x"),
        SynSent,
        Established,
    ));
    let o = e.take_outcomes();
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].latency_ns, Some(1_000_000));
    assert_eq!(o[0].owner, Some(c));
    assert_eq!(
        o[0].tuple.lport, 40000,
        "the real local port, not CLOSE -> SYN_SENT's 0"
    );
    assert!(e.take_outcomes().is_empty());
}

#[test]
fn refused_connect_takes_errno_from_error_report() {
    use TcpState::*;
    let mut e = Engine::default();
    let c = owner(10, "curl");
    let t = tuple(40000, 9);
    e.process(&state(1, 1, tuple(0, 9), c, Close, SynSent));
    e.process(&ev(2, 1, t, EventKind::ResetRecv));
    e.process(&ev(3, 0, t, EventKind::SockError { errno: 111 }));
    e.process(&state(4, 1, t, owner(0, "x"), SynSent, Close));
    // The syscall's own return arrives afterwards: not reported twice.
    e.process(&Event {
        task: c,
        ..ev(5, 1, tuple(0, 9), EventKind::ConnectError { errno: 111 })
    });
    let o = e.take_outcomes();
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!((o[0].errno, o[0].latency_ns), (Some(111), None));
    assert_eq!(o[0].owner, Some(c));
    let f = e.flows().find(|f| f.sock == 1).unwrap();
    assert_eq!(f.extra().resets_recv, 1);
}

#[test]
fn error_report_after_close_completes_the_failure() {
    use TcpState::*;
    let mut e = Engine::default();
    let c = owner(10, "curl");
    let t = tuple(40000, 9);
    e.process(&state(1, 1, tuple(0, 9), c, Close, SynSent));
    e.process(&state(2, 1, t, owner(0, "x"), SynSent, Close));
    e.process(&ev(3, 0, t, EventKind::SockError { errno: 111 }));
    let o = e.take_outcomes();
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].errno, Some(111));
    assert_eq!(o[0].tuple, t);
}

#[test]
fn a_reused_socket_address_starts_a_new_flow() {
    use TcpState::*;
    let mut e = Engine::default();
    let c = owner(10, "c");
    e.process(&state(1, 1, tuple(0, 9), c, Close, SynSent));
    e.process(&state(2, 1, tuple(4, 9), c, SynSent, Close));
    // The same kernel address now holds a listener.
    let l = tuple(7000, 0);
    e.process(&state(3, 1, l, c, Close, Listen));
    let o = e.take_outcomes();
    assert_eq!(o.len(), 1);
    assert_eq!(
        o[0].tuple,
        tuple(4, 9),
        "the failed connect keeps its own tuple"
    );
    assert_eq!(e.census(|_| true).get(&Listen), Some(&1));
}

#[test]
fn no_free_port_takes_errno_from_the_connect_hook() {
    use TcpState::*;
    let mut e = Engine::default();
    let c = owner(10, "client");
    e.process(&state(1, 1, tuple(0, 80), c, Close, SynSent));
    e.process(&state(2, 1, tuple(0, 80), c, SynSent, Close));
    assert!(e.take_outcomes().is_empty(), "waits for the errno");
    e.process(&Event {
        task: c,
        ..ev(3, 1, tuple(0, 80), EventKind::ConnectError { errno: 99 })
    });
    let o = e.take_outcomes();
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].errno, Some(99));
    assert_eq!(o[0].owner, Some(c));
}

#[test]
fn failure_without_errno_is_reported_after_the_wait() {
    use TcpState::*;
    let mut e = Engine::default();
    let c = owner(10, "client");
    e.process(&state(1, 1, tuple(0, 80), c, Close, SynSent));
    e.process(&state(2, 1, tuple(5, 80), c, SynSent, Close));
    e.advance(2 + 999_999_999);
    assert!(e.take_outcomes().is_empty());
    e.advance(2 + 1_000_000_000);
    let o = e.take_outcomes();
    assert_eq!((o.len(), o[0].errno), (1, None));
}
