//! Bounded memory: closed flows going, eviction at the cap.

use super::*;
use crate::engine::config::KEEP_CLOSED;
use crate::event::RetransKind;

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

#[test]
fn a_full_table_evicts_the_flow_longest_in_its_state() {
    use TcpState::*;
    let mut e = Engine::new(Config {
        max_flows: 100,
        ..Config::default()
    });
    let c = owner(10, "c");
    for s in 1..=100 {
        e.process(&state(s * 10, s, tuple(s as u16, 80), c, Close, SynSent));
    }
    assert_eq!(e.evicted, 0);
    // The first ten change state: now they are the youngest.
    for s in 1..=10 {
        e.process(&state(
            2_000 + s,
            s,
            tuple(s as u16, 80),
            c,
            SynSent,
            Established,
        ));
    }
    for s in 101..=120 {
        e.process(&state(3_000 + s, s, tuple(s as u16, 80), c, Close, SynSent));
    }
    assert_eq!(e.evicted, 20);
    assert!((1..=10).all(|s| e.state_of(s) == Some(Established)));
    assert!(
        (11..=30).all(|s| e.state_of(s).is_none()),
        "the oldest went"
    );
    assert!((31..=120).all(|s| e.state_of(s) == Some(SynSent)));

    // A socket from before start-up, first named by a retransmit, entered
    // its state before any event: it goes first, ahead of socket 33.
    e.seed(tuple(7_777, 80), Established, None, 3_100);
    e.process(&retrans(
        3_200,
        500,
        tuple(7_777, 80),
        c,
        Established,
        RetransKind::Data,
    ));
    assert_eq!(
        e.evicted, 22,
        "31 and 32 made room for the seed and its flow"
    );
    assert_eq!(e.state_of(500), Some(Established));
    e.process(&state(3_300, 121, tuple(121, 80), c, Close, SynSent));
    e.process(&state(3_400, 122, tuple(122, 80), c, Close, SynSent));
    assert_eq!(e.evicted, 23);
    assert_eq!(e.state_of(500), None);
    assert_eq!(e.state_of(33), Some(SynSent));
    assert_eq!(e.flows().count(), 100);
}

/// Random opens, state changes (with timestamps out of order) and
/// takeovers of /proc seeds at the cap: evictions take the live flows of
/// the least `since_ns`, as a scan of them all would.
#[test]
fn eviction_matches_a_scan_of_all_live_flows() {
    use TcpState::*;
    const CAP: usize = 200;
    let mut e = Engine::new(Config {
        max_flows: CAP,
        ..Config::default()
    });
    let c = owner(10, "c");
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let since = |e: &Engine| -> HashMap<u64, u64> {
        e.flows()
            .filter(|f| f.sock != 0)
            .map(|f| (f.sock, f.since_ns))
            .collect()
    };
    let (mut socks, mut seeds, mut evictions) = (0u64, 0u16, 0);
    for step in 1..=20_000u64 {
        let ts = 1_000_000 + step * 1_000 - next(200_000);
        let before = since(&e);
        let ev = match next(10) {
            0..=4 => {
                socks += 1;
                state(ts, socks, tuple(socks as u16, 80), c, Close, SynSent)
            }
            5..=7 if socks > 0 => {
                let s = 1 + next(socks);
                state(ts, s, tuple(s as u16, 80), c, SynSent, Established)
            }
            8 => {
                seeds += 1;
                e.seed(tuple(seeds, 443), Established, None, ts);
                continue;
            }
            _ if seeds > 0 => {
                // Names the socket of a seed (if it is still there).
                socks += 1;
                let t = tuple(1 + next(u64::from(seeds)) as u16, 443);
                retrans(ts, socks, t, c, Established, RetransKind::Data)
            }
            _ => continue,
        };
        let new = !before.contains_key(&ev.sock);
        let full = e.flows().count() >= CAP;
        e.process(&ev);
        let after = since(&e);
        let gone: Vec<u64> = before
            .keys()
            .filter(|s| !after.contains_key(s))
            .copied()
            .collect();
        if !(new && full) {
            assert!(gone.is_empty(), "step {step}: {gone:?} went");
            continue;
        }
        // Seeds count without making room: one new flow may take several.
        assert!(!gone.is_empty() || before.is_empty(), "step {step}");
        let mut went: Vec<u64> = gone.iter().map(|s| before[s]).collect();
        let mut all: Vec<u64> = before.into_values().collect();
        went.sort_unstable();
        all.sort_unstable();
        assert_eq!(went, all[..went.len()], "step {step}: {gone:?} went");
        evictions += gone.len();
    }
    assert!(evictions > 5_000, "{evictions}");
    assert_eq!(e.flows().count(), CAP);
}
