//! Owner attribution: which process a socket belongs to.
//!
//! Retransmits, resets and most state changes run in softirq or in the
//! peer's context, so the task on the CPU says nothing. Owners are attached
//! to sockets instead:
//! - CLOSE -> SYN_SENT runs inside `connect()`: the task is the owner;
//! - -> LISTEN runs inside `listen()`: the task owns the listener;
//! - an accepted socket (-> SYN_RECV, created from a listener) inherits the
//!   owner of the listener on its local address and port in its network
//!   namespace (every pod may listen on 0.0.0.0:8080);
//! - sockets that existed before tracing started are seeded from
//!   `/proc/net/tcp{,6}` and `/proc/<pid>/fd` by tuple
//!   ([`crate::procnet::seed`]).

use std::net::IpAddr;

use foldhash::HashMap;

use crate::event::{Event, EventKind, Family, Owner, TcpState, Tuple};

/// A listening socket.
#[derive(Clone, Copy, Debug)]
struct Listener {
    sock: u64,
    laddr: IpAddr,
    owner: Owner,
}

/// Where listeners are filed: network namespace, family, local port.
type ListenKey = (u32, Family, u16);

fn listen_key(t: &Tuple) -> ListenKey {
    (t.netns, t.family, t.lport)
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Owners {
    /// Listeners by (namespace, family, local port).
    listeners: HashMap<ListenKey, Vec<Listener>>,
    /// Sockets that existed before start-up, by tuple.
    seeded: HashMap<Tuple, Owner>,
}

impl Owners {
    /// Records a socket that existed before tracing started.
    pub fn seed(&mut self, tuple: Tuple, state: TcpState, owner: Owner) {
        if state == TcpState::Listen {
            self.add_listener(0, tuple, owner);
        } else {
            self.seeded.insert(tuple, owner);
        }
    }

    /// Updates the tables from `ev` and returns the owner of its socket;
    /// `known` is the owner the engine's live flow of that socket has (the
    /// engine keeps owners per socket, so this table does not).
    pub fn observe(&mut self, ev: &Event, known: Option<Owner>) -> Option<Owner> {
        let in_process = ev.task.pid != 0;
        let owner = match ev.kind {
            EventKind::State {
                old: TcpState::Close,
                new: TcpState::SynSent,
            } if in_process => Some(ev.task),
            EventKind::State {
                new: TcpState::Listen,
                ..
            } if in_process => {
                self.add_listener(ev.sock, ev.tuple, ev.task);
                Some(ev.task)
            }
            // A child cloned from a listener starts with LISTEN -> SYN_RECV.
            EventKind::State {
                new: TcpState::SynRecv,
                ..
            } => self.listener_owner(&ev.tuple).or(known),
            EventKind::State {
                old: TcpState::Listen,
                new: TcpState::Close,
            } => {
                let owner = known.or_else(|| self.listener_owner(&ev.tuple));
                self.remove_listener(ev.sock, ev.tuple);
                owner
            }
            // A SYN-ACK is retransmitted on behalf of the listener.
            EventKind::Retrans {
                kind: crate::event::RetransKind::SynAck,
                ..
            } => known.or_else(|| self.listener_owner(&ev.tuple)),
            // The local side of a failed connect is unknown; the task is the caller.
            EventKind::ConnectError { .. } => known.or(in_process.then_some(ev.task)),
            _ => known
                .or_else(|| self.seeded.get(&ev.tuple).copied())
                .or_else(|| self.listener_owner(&ev.tuple)),
        };
        if let EventKind::State {
            new: TcpState::Close,
            ..
        } = ev.kind
            && !self.seeded.is_empty()
        {
            self.seeded.remove(&ev.tuple);
        }
        owner
    }

    fn add_listener(&mut self, sock: u64, t: Tuple, owner: Owner) {
        let v = self.listeners.entry(listen_key(&t)).or_default();
        // Replaces what we knew of the same listener.
        v.retain(|l| {
            if sock == 0 {
                l.laddr != t.laddr
            } else {
                l.sock != sock
            }
        });
        v.push(Listener {
            sock,
            laddr: t.laddr,
            owner,
        });
    }

    fn remove_listener(&mut self, sock: u64, t: Tuple) {
        if let Some(v) = self.listeners.get_mut(&listen_key(&t)) {
            v.retain(|l| l.sock != sock && !(l.sock == 0 && l.laddr == t.laddr));
            if v.is_empty() {
                self.listeners.remove(&listen_key(&t));
            }
        }
    }

    /// The owner of the listener that would have accepted `t`: one bound to
    /// its local address, else a wildcard one, in its namespace.
    fn listener_owner(&self, t: &Tuple) -> Option<Owner> {
        let v = self.listeners.get(&listen_key(t))?;
        v.iter()
            .rev()
            .find(|l| l.laddr == t.laddr)
            .or_else(|| v.iter().rev().find(|l| l.laddr.is_unspecified()))
            .map(|l| l.owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::tests::{owner, retrans, state, tuple},
        event::{Comm, RetransKind},
    };
    use TcpState::*;

    fn softirq() -> Owner {
        Owner {
            pid: 0,
            comm: Comm::from_bytes(b"swapper/0"),
            cgroup: Default::default(),
        }
    }

    #[test]
    fn client_owner_comes_from_connect_not_from_softirq() {
        // Through the engine, which keeps the owner of each live socket.
        let mut o = crate::engine::Engine::default();
        let c = owner(100, "curl");
        let t = tuple(40000, 80);
        assert_eq!(o.process(&state(1, 7, t, c, Close, SynSent)).owner, Some(c));
        // Later transitions and retransmits run elsewhere.
        let other = owner(200, "nginx");
        assert_eq!(
            o.process(&state(2, 7, t, other, SynSent, Established))
                .owner,
            Some(c)
        );
        assert_eq!(
            o.process(&retrans(3, 7, t, softirq(), Established, RetransKind::Data))
                .owner,
            Some(c)
        );
        assert_eq!(
            o.process(&state(4, 7, t, softirq(), Established, Close))
                .owner,
            Some(c)
        );
        // Closed: a new socket at the same address is not confused with it.
        assert_eq!(
            o.process(&state(5, 7, t, softirq(), FinWait1, FinWait2))
                .owner,
            None
        );
    }

    #[test]
    fn accepted_sockets_inherit_the_listener() {
        // Through the engine, which keeps the owner of each live socket.
        let mut o = crate::engine::Engine::default();
        let srv = owner(300, "server");
        let wildcard = Tuple {
            laddr: Tuple::unspecified(Family::V4),
            raddr: Tuple::unspecified(Family::V4),
            ..tuple(8080, 0)
        };
        assert_eq!(
            o.process(&state(1, 50, wildcard, srv, Close, Listen)).owner,
            Some(srv)
        );
        let child = tuple(8080, 40001);
        // The child is created while the client's ACK is processed: the task
        // on the CPU is the client.
        let client = owner(100, "curl");
        assert_eq!(
            o.process(&state(2, 51, child, client, Listen, SynRecv))
                .owner,
            Some(srv)
        );
        assert_eq!(
            o.process(&state(3, 51, child, client, SynRecv, Established))
                .owner,
            Some(srv)
        );
        // SYN-ACK retransmits are reported on the listener socket.
        assert_eq!(
            o.process(&retrans(
                4,
                50,
                tuple(8080, 40002),
                softirq(),
                SynRecv,
                RetransKind::SynAck
            ))
            .owner,
            Some(srv)
        );
        // The listener closes; a later socket on that port has no owner.
        o.process(&state(5, 50, wildcard, srv, Listen, Close));
        assert_eq!(
            o.process(&state(6, 52, tuple(8080, 40003), client, Listen, SynRecv))
                .owner,
            None
        );
    }

    #[test]
    fn specific_listener_beats_wildcard() {
        // Through the engine, which keeps the owner of each live socket.
        let mut o = crate::engine::Engine::default();
        let any = owner(1, "any");
        let lo = owner(2, "lo");
        let wildcard = Tuple {
            laddr: Tuple::unspecified(Family::V4),
            ..tuple(9000, 0)
        };
        o.process(&state(1, 60, wildcard, any, Close, Listen));
        o.process(&state(2, 61, tuple(9000, 0), lo, Close, Listen));
        assert_eq!(
            o.process(&state(3, 62, tuple(9000, 5), softirq(), Listen, SynRecv))
                .owner,
            Some(lo)
        );
    }

    /// Every pod listens on 0.0.0.0:8080: each accepted socket belongs to
    /// the listener of its own namespace, whichever was seen last, and
    /// closing one listener leaves the other's owner in place.
    #[test]
    fn same_listener_tuple_in_two_namespaces() {
        let mut o = crate::engine::Engine::default();
        let (a, b) = (owner(10, "server-a"), owner(20, "server-b"));
        let (ns_a, ns_b) = (4_026_532_001, 4_026_532_002);
        let listen = |netns| Tuple {
            laddr: Tuple::unspecified(Family::V4),
            raddr: Tuple::unspecified(Family::V4),
            netns,
            ..tuple(8080, 0)
        };
        let child = |rport, netns| Tuple {
            netns,
            ..tuple(8080, rport)
        };
        o.process(&state(1, 100, listen(ns_a), a, Close, Listen));
        o.process(&state(2, 200, listen(ns_b), b, Close, Listen));
        let client = owner(30, "curl");
        for (i, (netns, want)) in [(ns_a, a), (ns_b, b), (ns_a, a)].into_iter().enumerate() {
            let i = i as u64;
            let got = o.process(&state(
                3 + i,
                300 + i,
                child(40000 + i as u16, netns),
                client,
                Listen,
                SynRecv,
            ));
            assert_eq!(got.owner, Some(want), "accepted socket {i}");
            let got = o.process(&retrans(
                10 + i,
                300 + i,
                child(40000 + i as u16, netns),
                softirq(),
                Established,
                RetransKind::Data,
            ));
            assert_eq!(got.owner, Some(want), "retransmit of accepted socket {i}");
        }
        // The census counts each namespace's listener.
        let census = o.census_by_netns(|_| true);
        assert_eq!(census[&ns_a][&Listen], 1);
        assert_eq!(census[&ns_b][&Listen], 1);
        assert_eq!(census[&ns_a][&SynRecv], 2);
        assert_eq!(census[&ns_b][&SynRecv], 1);
        assert_eq!(o.census(|_| true)[&Listen], 2);
        // Server A's listener goes; B's still owns what B accepts, and the
        // row of B's listener stays open.
        o.process(&state(20, 100, listen(ns_a), a, Listen, Close));
        assert_eq!(
            o.process(&state(21, 400, child(40100, ns_b), client, Listen, SynRecv))
                .owner,
            Some(b)
        );
        assert_eq!(
            o.process(&state(22, 401, child(40101, ns_a), client, Listen, SynRecv))
                .owner,
            None
        );
        assert_eq!(o.state_of(200), Some(Listen));
        assert_eq!(o.census_by_netns(|_| true)[&ns_b][&Listen], 1);
        assert!(!o.census_by_netns(|_| true)[&ns_a].contains_key(&Listen));
    }

    /// Listeners from before start-up, same tuple in two namespaces.
    #[test]
    fn seeded_listeners_in_two_namespaces() {
        let mut o = crate::engine::Engine::default();
        let (a, b) = (owner(10, "server-a"), owner(20, "server-b"));
        for (netns, who) in [(1, a), (2, b)] {
            let t = Tuple {
                raddr: Tuple::unspecified(Family::V4),
                netns,
                ..tuple(8080, 0)
            };
            o.seed(t, Listen, Some(who), 0);
        }
        for (netns, who) in [(2, b), (1, a)] {
            let t = Tuple {
                netns,
                ..tuple(8080, 50000)
            };
            assert_eq!(
                o.process(&state(
                    1,
                    500 + u64::from(netns),
                    t,
                    softirq(),
                    Listen,
                    SynRecv
                ))
                .owner,
                Some(who)
            );
        }
    }

    #[test]
    fn seeded_sockets_are_found_by_tuple() {
        // Through the engine, which keeps the owner of each live socket.
        let mut o = crate::engine::Engine::default();
        let db = owner(400, "postgres");
        let t = tuple(5432, 50000);
        o.seed(t, Established, Some(db), 0);
        o.seed(
            Tuple {
                laddr: Tuple::unspecified(Family::V4),
                ..tuple(5432, 0)
            },
            Listen,
            Some(db),
            0,
        );
        assert_eq!(
            o.process(&retrans(
                1,
                77,
                t,
                softirq(),
                Established,
                RetransKind::Data
            ))
            .owner,
            Some(db)
        );
        // Sockets accepted after start-up from a seeded listener.
        assert_eq!(
            o.process(&state(
                2,
                78,
                tuple(5432, 50001),
                softirq(),
                Listen,
                SynRecv
            ))
            .owner,
            Some(db)
        );
        assert_eq!(
            o.process(&state(
                3,
                79,
                tuple(5432, 50002),
                softirq(),
                Listen,
                SynRecv
            ))
            .owner,
            Some(db)
        );
    }
}
