//! The engine: a pure state machine over [`Event`]s that every view reads.
//!
//! No I/O and no clock: time comes from event timestamps (and from
//! [`Engine::advance`], which the live source calls with the kernel's clock
//! and replay with the last event's time), so the same stream gives the
//! same answers live and in replay. It keeps:
//! - who owns each socket ([`owners`]);
//! - a flow per socket ([`flows::Flow`]): state and since when, role,
//!   handshake latency, retransmits by kind, resets, errors, RTT;
//! - connection outcomes (latency or errno) for the `connect` and `hist`
//!   views (`outcomes`);
//! - a census of sockets per state (in total and per network namespace)
//!   and a transition matrix.
//!
//! A flow is one full kernel socket. Request sockets (a half-open
//! connection of a listener) and timewait sockets are not: what the kernel
//! reports about them (a SYN-ACK retransmit, a reset) is counted on the
//! listener, or nowhere, and never opens a flow of its own.
//!
//! Memory is bounded: closed flows linger for [`Config::linger_ns`] (the
//! last [`Config::max_closed`] of them), then go; past
//! [`Config::max_flows`] the oldest are evicted and counted (`retire`).
//! Every limit is in `config`.
//!
//! This file holds the engine's state, the dispatch of each event and the
//! TCP state machine; each other part owns its own state: `seeding`
//! (sockets from /proc), `outcomes`, `retire`.

mod config;
pub mod flows;
mod outcomes;
pub mod owners;
mod retire;
mod seeding;
mod table;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;

// Keys are kernel addresses and tuples, some chosen by remote peers:
// foldhash is seeded per process (so flooding one bucket needs the seed)
// and several times faster than SipHash on the per-event path.
use foldhash::HashMap;

pub use config::Config;
use config::SWEEP_EVERY_NS;
use flows::{Flow, Role, Rtt};
use outcomes::Outcomes;
use owners::Owners;
use retire::Retirement;
use table::{BySock, ByTuple, FlowTable};

use crate::event::{Event, EventKind, Owner, RetransKind, TcpState, Tuple};

/// An event with what the engine adds to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Annotated {
    pub event: Event,
    /// The process that owns the socket, when known.
    pub owner: Option<Owner>,
    /// For a state change: how long the socket spent in the previous state,
    /// when the engine saw it enter that state.
    pub prev_state_ns: Option<u64>,
    /// The socket's state as the engine knew it when the event came
    /// (before a state change applied), if it knew the socket.
    pub state: Option<TcpState>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Engine {
    cfg: Config,
    owners: Owners,
    /// Live flows by socket.
    flows: FlowTable<BySock>,
    /// Sockets found in /proc at start-up, by tuple, until an event names
    /// their kernel socket.
    seeded: FlowTable<ByTuple>,
    /// Closed flows, inferred TIME_WAITs, and the eviction order.
    retirement: Retirement,
    /// Connect outcomes, and the failures that wait for their errno.
    outcomes: Outcomes,
    matrix: HashMap<(TcpState, TcpState), u64>,
    now_ns: u64,
    last_sweep_ns: u64,
    /// Flows dropped because of `max_flows`.
    pub evicted: u64,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl Engine {
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            owners: Owners::default(),
            flows: FlowTable::default(),
            seeded: FlowTable::default(),
            retirement: Retirement::default(),
            outcomes: Outcomes::default(),
            matrix: HashMap::default(),
            now_ns: 0,
            last_sweep_ns: 0,
            evicted: 0,
        }
    }

    /// Takes one event and returns it annotated.
    pub fn process(&mut self, ev: &Event) -> Annotated {
        self.now_ns = self.now_ns.max(ev.ts_ns);
        let flow = match self.flows.get(&ev.sock) {
            Some(f) => Some(f),
            None if ev.sock == 0 => None,
            None => self.seeded.get(&ev.tuple),
        };
        let state = flow.map(|f| f.state);
        let known = match flow {
            Some(f) => f.owner,
            // What the kernel says of a socket just after it closed (a
            // client's SO_LINGER 0 abort goes to CLOSE, then sends its RST)
            // is still its owner's; a state change is a new socket's life.
            None if !matches!(ev.kind, EventKind::State { .. }) && ev.sock != 0 => self
                .retirement
                .recent(ev.sock)
                .and_then(|i| self.retirement.closed(i).owner),
            None => None,
        };
        let owner = self.owners.observe(ev, known);
        let mut prev_state_ns = None;
        match ev.kind {
            EventKind::State { old, new } => {
                *self.matrix.entry((old, new)).or_default() += 1;
                prev_state_ns = self.on_state(ev, old, new, owner);
            }
            EventKind::Retrans {
                kind,
                segs,
                state,
                failed,
            } => {
                let f = match kind {
                    // The socket is the listener; the connection is a
                    // request socket, not a flow.
                    RetransKind::SynAck => self.listener_flow(ev),
                    _ => Some(self.event_flow(ev, state, owner)),
                };
                if let Some(f) = f {
                    f.extra_mut().retrans.add(kind, segs, failed.is_some());
                }
            }
            EventKind::ResetSent { state, .. } => {
                let f = match state {
                    _ if ev.sock == 0 => None,
                    Some(TcpState::Listen) => self.listener_flow(ev),
                    // A timewait or request socket: not a flow.
                    Some(TcpState::TimeWait | TcpState::NewSynRecv) => None,
                    st => Some(self.event_flow(ev, st.unwrap_or(TcpState::Close), owner)),
                };
                if let Some(f) = f {
                    f.extra_mut().resets_sent += 1;
                }
            }
            EventKind::ResetRecv => {
                self.event_flow(ev, TcpState::Established, owner)
                    .extra_mut()
                    .resets_recv += 1;
            }
            EventKind::SockError { errno } => self.on_sock_error(ev, errno),
            EventKind::ConnectError { errno } => self.on_connect_error(ev, errno, owner),
        }
        if self.now_ns >= self.last_sweep_ns.saturating_add(SWEEP_EVERY_NS) {
            self.sweep(self.now_ns);
        }
        Annotated {
            event: *ev,
            owner,
            prev_state_ns,
            state,
        }
    }

    /// Moves time forward without an event (the end of a replay or run):
    /// resolves connects that waited in vain for an errno and lets closed
    /// flows go.
    pub fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        self.sweep(self.now_ns);
    }

    /// [`Self::advance`] for the live source's timer: sweeps at most every
    /// [`SWEEP_EVERY_NS`], as events do. The live loop ticks after every
    /// drain (100 times a second in a storm), and a sweep walks the table
    /// of error reports waiting for their connect (up to 65 536 in a storm
    /// of resets): sweeping on every tick took a quarter of tcptrace's time
    /// in a RST storm and stalled the reader long enough for the kernel's
    /// rings to fill.
    pub fn tick(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        if self.now_ns >= self.last_sweep_ns.saturating_add(SWEEP_EVERY_NS) {
            self.sweep(self.now_ns);
        }
    }

    /// Current state of a live socket.
    pub fn state_of(&self, sock: u64) -> Option<TcpState> {
        self.flows.get(&sock).map(|f| f.state)
    }

    /// Every flow the engine holds: live, seeded, and recently closed.
    pub fn flows(&self) -> impl Iterator<Item = &Flow> {
        self.flows
            .values()
            .chain(self.seeded.values())
            .chain(self.retirement.iter())
    }

    /// Whether a flow counts in the census now: live, or in an inferred
    /// TIME_WAIT that has not run out.
    pub fn in_census(&self, f: &Flow) -> bool {
        match f.end_ns.get() {
            None => true,
            Some(end) => f.state == TcpState::TimeWait && end > self.now_ns,
        }
    }

    /// Sockets per state among flows that `keep` accepts.
    pub fn census(&self, keep: impl Fn(&Flow) -> bool) -> BTreeMap<TcpState, u64> {
        let mut c = BTreeMap::new();
        for f in self.flows().filter(|f| self.in_census(f) && keep(f)) {
            *c.entry(f.state).or_default() += 1;
        }
        c
    }

    /// [`Self::census`] per network namespace (0: unknown).
    pub fn census_by_netns(
        &self,
        keep: impl Fn(&Flow) -> bool,
    ) -> BTreeMap<u32, BTreeMap<TcpState, u64>> {
        let mut c: BTreeMap<u32, BTreeMap<TcpState, u64>> = BTreeMap::new();
        for f in self.flows().filter(|f| self.in_census(f) && keep(f)) {
            *c.entry(f.tuple.netns)
                .or_default()
                .entry(f.state)
                .or_default() += 1;
        }
        c
    }

    /// Transitions seen, by (old, new).
    pub fn matrix(&self) -> &HashMap<(TcpState, TcpState), u64> {
        &self.matrix
    }

    /// The engine's notion of now.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Replaces a live flow's RTT summary (from the kernel's RTT map).
    pub fn set_rtt(&mut self, sock: u64, rtt: Rtt) {
        // A flow that closed since the last read keeps its last histogram.
        let f = match self.flows.get_mut(&sock) {
            Some(f) => Some(f),
            None => self.retirement.late(sock),
        };
        if let Some(f) = f {
            f.extra_mut().rtt = Some(rtt);
        }
    }

    /// The live flow of `ev`'s socket, created (or taken over from the
    /// /proc seed with the same tuple) if new.
    fn flow_mut(&mut self, ev: &Event, state: TcpState, owner: Option<Owner>) -> &mut Flow {
        if !self.flows.contains_key(&ev.sock) {
            self.evicted +=
                self.retirement
                    .make_room(&mut self.flows, &mut self.seeded, self.cfg.max_flows);
            // A child socket's first transition, LISTEN -> SYN_RECV, is
            // never its listener's: on kernels that fire it before the
            // child has its peer's address (6.1, 6.12), it carries the
            // listener's tuple and would take over the listener's seed.
            let seed = if is_child(ev) {
                None
            } else {
                self.seeded.remove(&ev.tuple)
            };
            let f = match seed {
                Some(mut f) => {
                    f.sock = ev.sock;
                    f
                }
                None => Flow::new(ev.sock, ev.tuple, state, ev.ts_ns),
            };
            debug_assert_eq!(f.sock, ev.sock);
            self.retirement.touch(f.sock, f.since_ns);
            self.flows.insert(f);
        }
        let f = self.flows.get_mut(&ev.sock).expect("inserted above");
        if f.owner.is_none() {
            f.owner = owner;
        }
        // CLOSE -> SYN_SENT carries local port 0; later events the real one.
        if ev.tuple.lport != 0 || f.tuple.lport == 0 {
            f.tuple = ev.tuple;
        }
        f
    }

    /// The flow a non-state event belongs to: the live one, or one that
    /// closed just before (a RST is sent after the socket went to CLOSE),
    /// else a new one.
    fn event_flow(&mut self, ev: &Event, state: TcpState, owner: Option<Owner>) -> &mut Flow {
        if !self.flows.contains_key(&ev.sock)
            && let Some(i) = self.retirement.recent(ev.sock)
        {
            return self.retirement.closed_at(i);
        }
        self.flow_mut(ev, state, owner)
    }

    /// The listener an event about one of its request sockets names
    /// (`ev.sock` is the listener): its live flow, whose tuple stays its
    /// own, or the one seeded from /proc on the event's local address (or
    /// the wildcard) and port in its namespace. `None` when the listener
    /// is unknown: no flow is made for it from a request's tuple (it would
    /// stay in the census as long as the listener lives).
    fn listener_flow(&mut self, ev: &Event) -> Option<&mut Flow> {
        if self.flows.contains_key(&ev.sock) {
            return self.flows.get_mut(&ev.sock);
        }
        let t = ev.tuple;
        let any = Tuple::unspecified(t.family);
        for laddr in [t.laddr, any] {
            let listener = Tuple {
                laddr,
                raddr: any,
                rport: 0,
                ..t
            };
            if self
                .seeded
                .get(&listener)
                .is_some_and(|f| f.state == TcpState::Listen)
            {
                return self.seeded.get_mut(&listener);
            }
        }
        None
    }

    fn on_state(
        &mut self,
        ev: &Event,
        old: TcpState,
        new: TcpState,
        owner: Option<Owner>,
    ) -> Option<u64> {
        use TcpState::*;
        // A new life of the socket (or of its memory): end the old one.
        if old == Close && self.flows.contains_key(&ev.sock) && !self.settle(ev.sock) {
            self.close(ev.sock, ev.ts_ns);
        }
        let known = self.flows.contains_key(&ev.sock);
        let ts = ev.ts_ns;
        let f = self.flow_mut(ev, old, owner);
        let prev = (known && f.since_ns != 0).then(|| ts.saturating_sub(f.since_ns));
        // The task inside connect() or listen() is the exact owner: it
        // overrules an owner seeded from /proc (the process's name, not the
        // thread's), which may have been read just before.
        if matches!((old, new), (Close, SynSent) | (_, Listen)) && ev.task.pid != 0 {
            f.owner = owner.or(f.owner);
        }
        match (old, new) {
            (Close, SynSent) => f.role = Role::Client,
            (_, Listen) => f.role = Role::Listener,
            (Listen, SynRecv) => f.role = Role::Server,
            // From the SYN (SYN_SENT, SYN_RECV entered at `since_ns`), when
            // this run saw it.
            (SynRecv, Established) if f.role == Role::Server => f.handshake_ns = prev.into(),
            (SynSent, Established) if f.role == Role::Client => f.handshake_ns = prev.into(),
            _ => {}
        }
        f.state = match (old, new) {
            // The kernel hands the socket to a timewait socket.
            (FinWait2 | Closing, Close) => TimeWait,
            _ => new,
        };
        f.since_ns = ts;
        let success = match (old, new) {
            (SynSent, Established) => Outcomes::connected(f, ts),
            _ => None,
        };
        self.retirement.touch(ev.sock, ts);
        match (old, new) {
            (SynSent, Established) => self.outcomes.report(success),
            (SynSent, Close) => self.connect_failed(ev),
            (FinWait2 | Closing, Close) => {
                self.close(ev.sock, ts.saturating_add(self.cfg.time_wait_ns));
            }
            (_, Close) => self.close(ev.sock, ts),
            _ => {}
        }
        prev
    }

    /// Moves a live flow to the closed lists, ending at `end_ns`.
    fn close(&mut self, sock: u64, end_ns: u64) {
        if self
            .flows
            .get(&sock)
            .is_some_and(|f| f.extra().pending_fail_ns.is_some())
        {
            return; // closed once its errno is known
        }
        if let Some(mut f) = self.flows.remove(&sock) {
            f.end_ns = Some(end_ns).into();
            self.evicted += self.retirement.add(f, &self.cfg);
        }
    }

    /// Time-based work: failures that waited in vain for an errno are
    /// reported, ended flows that have lingered go, old error reports too.
    fn sweep(&mut self, now: u64) {
        self.last_sweep_ns = now;
        self.resolve_overdue(now);
        let live = self.flows.len() + self.seeded.len();
        self.retirement.sweep(now, &self.cfg, live);
        self.outcomes.forget_errors(now);
    }
}

/// Whether `ev` is the first transition of a socket accepted from a
/// listener: `LISTEN -> SYN_RECV` (a listener itself leaves LISTEN only
/// for CLOSE). The child is a new kernel socket, never the listener.
pub(crate) fn is_child(ev: &Event) -> bool {
    matches!(
        ev.kind,
        EventKind::State {
            old: TcpState::Listen,
            new
        } if new != TcpState::Close
    )
}
