//! Seeds from /proc against what events already said.

use super::*;

#[test]
fn late_seeds_do_not_overrule_events() {
    use TcpState::*;
    let mut e = Engine::default();
    // Two sockets from before start-up changed state before /proc was
    // read: one closed, one went to CLOSE_WAIT (a softirq: no owner).
    let nobody = owner(0, "swapper/0");
    e.process(&state(10, 1, tuple(1, 80), nobody, Established, CloseWait));
    e.process(&state(11, 2, tuple(2, 80), nobody, LastAck, Close));
    let app = owner(7, "app");
    // /proc was read after a socket closed whose events are still to
    // come: its TIME_WAIT is for those events to make, not the seed.
    let coming: foldhash::HashSet<Tuple> = [tuple(4, 80)].into_iter().collect();
    e.seed_late(
        [
            (tuple(1, 80), Established, Some(app)),
            (tuple(2, 80), LastAck, Some(app)),
            (tuple(3, 80), Established, Some(app)),
            (tuple(4, 80), TimeWait, None),
        ],
        &coming,
        20,
    );
    let census = e.census(|_| true);
    assert_eq!(census.get(&CloseWait), Some(&1), "{census:?}");
    assert_eq!(census.get(&Established), Some(&1), "only the untouched one");
    assert_eq!(census.get(&LastAck), None, "the closed one stays closed");
    assert_eq!(census.get(&TimeWait), None, "{census:?}");
    let f = e.flows().find(|f| f.sock == 1).unwrap();
    assert_eq!(f.owner, Some(app), "the event's flow gains the owner");
    // And later events of that socket carry it.
    let a = e.process(&state(30, 1, tuple(1, 80), nobody, CloseWait, LastAck));
    assert_eq!(a.owner, Some(app));
}
