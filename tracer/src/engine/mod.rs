//! The engine: a pure state machine over [`Event`]s that every view reads.
//!
//! No I/O and no clock: time comes from event timestamps, so the same
//! stream gives the same answers live and in replay. Today it keeps what
//! the streaming views need: who owns each socket ([`owners`]) and when each
//! socket entered its current state.

pub mod owners;

use std::collections::HashMap;

use crate::event::{Event, EventKind, Owner, TcpState};
use owners::Owners;

/// Upper bound on tracked sockets; past it the oldest are dropped (counted).
pub const DEFAULT_MAX_SOCKETS: usize = 1 << 20;

/// What the engine knows of one live socket.
#[derive(Clone, Copy, Debug)]
struct Sock {
    state: TcpState,
    since_ns: u64,
}

/// An event with what the engine adds to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Annotated {
    pub event: Event,
    /// The process that owns the socket, when known.
    pub owner: Option<Owner>,
    /// For a state change: how long the socket spent in the previous state,
    /// when the engine saw it enter that state.
    pub prev_state_ns: Option<u64>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Engine {
    owners: Owners,
    socks: HashMap<u64, Sock>,
    max_socks: usize,
    /// Sockets forgotten because of `max_socks`.
    pub evicted: u64,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SOCKETS)
    }
}

impl Engine {
    pub fn new(max_socks: usize) -> Self {
        Self {
            owners: Owners::default(),
            socks: HashMap::new(),
            max_socks,
            evicted: 0,
        }
    }

    /// Owner attribution for sockets that existed before tracing started.
    pub fn owners_mut(&mut self) -> &mut Owners {
        &mut self.owners
    }

    /// Takes one event and returns it annotated.
    pub fn process(&mut self, ev: &Event) -> Annotated {
        let owner = self.owners.observe(ev);
        let mut prev_state_ns = None;
        if let EventKind::State { new, .. } = ev.kind {
            if let Some(s) = self.socks.get(&ev.sock) {
                prev_state_ns = Some(ev.ts_ns.saturating_sub(s.since_ns));
            }
            if new == TcpState::Close {
                self.socks.remove(&ev.sock);
            } else {
                if self.socks.len() >= self.max_socks && !self.socks.contains_key(&ev.sock) {
                    self.evict_oldest();
                }
                self.socks.insert(
                    ev.sock,
                    Sock {
                        state: new,
                        since_ns: ev.ts_ns,
                    },
                );
            }
        }
        Annotated {
            event: *ev,
            owner,
            prev_state_ns,
        }
    }

    /// Current state of a socket the engine has seen.
    pub fn state_of(&self, sock: u64) -> Option<TcpState> {
        self.socks.get(&sock).map(|s| s.state)
    }

    fn evict_oldest(&mut self) {
        if let Some((&k, _)) = self.socks.iter().min_by_key(|(_, s)| s.since_ns) {
            self.socks.remove(&k);
            self.owners.forget(k);
            self.evicted += 1;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::event::{Comm, Family, RetransKind, Tuple};

    pub fn owner(pid: u32, comm: &str) -> Owner {
        Owner {
            pid,
            comm: Comm::from_bytes(comm.as_bytes()),
        }
    }

    pub fn tuple(lport: u16, rport: u16) -> Tuple {
        Tuple {
            family: Family::V4,
            laddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            lport,
            raddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            rport,
        }
    }

    pub fn state(ts: u64, sock: u64, t: Tuple, task: Owner, old: TcpState, new: TcpState) -> Event {
        Event {
            ts_ns: ts,
            sock,
            tuple: t,
            task,
            kind: EventKind::State { old, new },
        }
    }

    pub fn retrans(
        ts: u64,
        sock: u64,
        t: Tuple,
        task: Owner,
        st: TcpState,
        kind: RetransKind,
    ) -> Event {
        Event {
            ts_ns: ts,
            sock,
            tuple: t,
            task,
            kind: EventKind::Retrans {
                state: st,
                kind,
                segs: Some(1),
            },
        }
    }

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
    fn bounded_socket_table() {
        use TcpState::*;
        let mut e = Engine::new(2);
        let c = owner(10, "c");
        for s in 1..=3 {
            e.process(&state(s * 10, s, tuple(s as u16, 80), c, Close, SynSent));
        }
        assert_eq!(e.evicted, 1);
        assert_eq!(e.state_of(1), None, "the oldest went");
        assert_eq!(e.state_of(3), Some(SynSent));
    }
}
