//! Bounded memory: closed flows going, eviction at the cap.

use super::*;
use crate::engine::config::KEEP_CLOSED;

#[test]
fn bounded_socket_table() {
    use TcpState::*;
    let mut e = Engine::new(Config {
        max_flows: 2,
        ..Config::default()
    });
    let c = owner(10, "c");
    for s in 1..=3 {
        e.process(&state(s * 10, s, tuple(s as u16, 80), c, Close, SynSent));
    }
    assert_eq!(e.evicted, 1);
    assert_eq!(e.state_of(1), None, "the oldest went");
    assert_eq!(e.state_of(3), Some(SynSent));
}

#[test]
fn streaming_views_keep_only_the_last_closed_flows() {
    use TcpState::*;
    let mut e = Engine::new(Config::streaming());
    let c = owner(1, "c");
    for s in 1..=5_000u64 {
        e.process(&state(
            s * 1_000,
            s,
            tuple(s as u16, 80),
            c,
            Established,
            Close,
        ));
    }
    e.advance(10_000_000_000);
    assert_eq!(e.flows().count(), KEEP_CLOSED);
    // A RST sent just after the last close still finds its flow.
    e.process(&Event {
        kind: EventKind::ResetSent {
            state: None,
            reason: None,
        },
        ..state(10_000_000_001, 5_000, tuple(5_000, 80), c, Close, Close)
    });
    let f = e.flows().find(|f| f.sock == 5_000).unwrap();
    assert_eq!(f.extra().resets_sent, 1);
}
