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

/// A listener bound to 127.0.0.1:8080, as /proc shows it.
fn listener_tuple() -> Tuple {
    Tuple {
        raddr: Tuple::unspecified(crate::event::Family::V4),
        ..tuple(8080, 0)
    }
}

/// On 6.1 and 6.12 the kernel fires an accepted socket's LISTEN -> SYN_RECV
/// on the clone of its listener before the clone has its peer's address:
/// the child carries the listener's tuple. It is a new socket, accepted
/// from the seeded listener, which stays listening.
#[test]
fn child_with_its_listeners_tuple_is_a_new_socket() {
    use TcpState::*;
    let mut e = Engine::default();
    let srv = owner(300, "server");
    e.seed(listener_tuple(), Listen, Some(srv), 0);
    let client = owner(100, "curl");
    let a = e.process(&state(10, 51, listener_tuple(), client, Listen, SynRecv));
    assert_eq!(a.owner, Some(srv));
    let full = tuple(8080, 40001);
    let a = e.process(&state(11, 51, full, client, SynRecv, Established));
    assert_eq!(a.owner, Some(srv));
    let census = e.census(|_| true);
    assert_eq!(census.get(&Listen), Some(&1), "{census:?}");
    assert_eq!(census.get(&Established), Some(&1), "{census:?}");
    let child = e.flows().find(|f| f.sock == 51).unwrap();
    assert_eq!((child.tuple, child.role), (full, flows::Role::Server));
    // A second child still finds the listener's owner.
    let a = e.process(&state(12, 52, listener_tuple(), client, Listen, SynRecv));
    assert_eq!(a.owner, Some(srv));
    // The listener itself leaving LISTEN takes over its seed.
    e.process(&state(13, 50, listener_tuple(), srv, Listen, Close));
    assert_eq!(e.census(|_| true).get(&Listen), None);
}

/// The same child seen before /proc was read (seeds that join late): the
/// listener's seed is still a listener, not the child's.
#[test]
fn late_listener_seed_is_not_taken_for_its_child() {
    use TcpState::*;
    let mut e = Engine::default();
    let client = owner(100, "curl");
    e.process(&state(10, 51, listener_tuple(), client, Listen, SynRecv));
    let srv = owner(300, "server");
    let coming: foldhash::HashSet<Tuple> = [listener_tuple()].into_iter().collect();
    e.seed_late([(listener_tuple(), Listen, Some(srv))], &coming, 20);
    assert_eq!(e.census(|_| true).get(&Listen), Some(&1));
    let a = e.process(&state(30, 52, listener_tuple(), client, Listen, SynRecv));
    assert_eq!(a.owner, Some(srv), "later children know their owner");
}

/// A listener read from /proc just before its `listen()` is seen live: the
/// thread inside `listen()` is the owner (the seed only knows the
/// process's name), for the listener and for its SYN-ACK retransmits.
#[test]
fn the_task_inside_listen_overrules_a_seed() {
    use TcpState::*;
    let mut e = Engine::default();
    let listener = Tuple {
        raddr: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        ..tuple(8080, 0)
    };
    e.seed_late(
        [(listener, Listen, Some(owner(7, "the-process")))],
        &foldhash::HashSet::default(),
        1,
    );
    let thread = owner(7, "tt-server");
    let a = e.process(&state(2, 9, listener, thread, Close, Listen));
    assert_eq!(a.owner, Some(thread));
    let synack = retrans(
        3,
        9,
        tuple(8080, 40000),
        owner(0, "swapper/0"),
        SynRecv,
        crate::event::RetransKind::SynAck,
    );
    assert_eq!(e.process(&synack).owner, Some(thread));
}
