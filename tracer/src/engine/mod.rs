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
//!   views;
//! - a census of sockets per state and a transition matrix.
//!
//! Memory is bounded: closed flows linger for [`Config::linger_ns`] (the
//! last [`Config::max_closed`] of them), then go; past
//! [`Config::max_flows`] the oldest are evicted and counted.

pub mod flows;
pub mod owners;
mod table;

use std::collections::{BTreeMap, VecDeque};

// Keys are kernel addresses and tuples, some chosen by remote peers:
// foldhash is seeded per process (so flooding one bucket needs the seed)
// and several times faster than SipHash on the per-event path.
use foldhash::HashMap;

use crate::event::{Event, EventKind, Owner, TcpState, Tuple};
use flows::{ConnectOutcome, Flow, Role, Rtt};
use owners::Owners;
use table::{BySock, ByTuple, FlowTable};

/// How many of the most recently closed flows a late event may belong to.
const RECENT: usize = 64;

/// How often (event time) `process` lets time-based work run.
const SWEEP_EVERY_NS: u64 = 100_000_000;

/// Engine limits and timings (nanoseconds of event time).
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// How long a closed flow stays visible (in `top`).
    pub linger_ns: u64,
    /// Flows kept at most (live, seeded and lingering).
    pub max_flows: usize,
    /// Closed flows lingering at most (the most recent are kept): a storm
    /// closes flows far faster than anyone reads a table of them.
    pub max_closed: usize,
    /// Closed flows kept whatever the linger, for events that come late
    /// (a RST after CLOSE, a connect errno, a last RTT).
    pub keep_closed: usize,
    /// How long an inferred TIME_WAIT lasts (the kernel's TCP_TIMEWAIT_LEN).
    pub time_wait_ns: u64,
    /// How long a failed connect waits for its errno from the connect hook.
    pub pending_connect_ns: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            linger_ns: 10_000_000_000,
            max_flows: 1 << 20,
            max_closed: 16_384,
            keep_closed: 0,
            time_wait_ns: 60_000_000_000,
            pending_connect_ns: 1_000_000_000,
        }
    }
}

impl Config {
    /// For views that show events, not flows (`states`, `retrans`,
    /// `resets`, `connect`, `record`): closed flows and inferred TIME_WAIT
    /// are not kept beyond the last [`KEEP_CLOSED`], which late events
    /// still find. A storm of 150 000 connections otherwise held 300 000
    /// closed flows for 10 s.
    pub fn streaming() -> Self {
        Self {
            linger_ns: 0,
            time_wait_ns: 0,
            keep_closed: KEEP_CLOSED,
            ..Self::default()
        }
    }
}

/// Closed flows streaming views keep, and how far back late events look.
const KEEP_CLOSED: usize = RECENT * 16;

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
    cfg: Config,
    owners: Owners,
    /// Live flows by socket.
    flows: FlowTable<BySock>,
    /// Sockets found in /proc at start-up, by tuple, until an event names
    /// their kernel socket.
    seeded: FlowTable<ByTuple>,
    /// Closed flows, oldest first.
    closed: VecDeque<Flow>,
    /// Flows in an inferred TIME_WAIT, oldest first (apart so that both
    /// lists stay ordered by end time).
    time_wait: VecDeque<Flow>,
    /// Errors reported for a tuple (no socket identity), with their time.
    errors: HashMap<Tuple, (i32, u64)>,
    /// Sockets whose failed connect waits for an errno.
    pending: Vec<u64>,
    outcomes: Vec<ConnectOutcome>,
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
            closed: VecDeque::new(),
            time_wait: VecDeque::new(),
            errors: HashMap::default(),
            pending: Vec::new(),
            outcomes: Vec::new(),
            matrix: HashMap::default(),
            now_ns: 0,
            last_sweep_ns: 0,
            evicted: 0,
        }
    }

    /// Records a socket that existed before tracing started, at `now_ns`.
    pub fn seed(&mut self, tuple: Tuple, state: TcpState, owner: Option<Owner>, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        // Listeners lend their owner to the sockets they accept; the other
        // seeds carry theirs in their flow.
        if let Some(o) = owner
            && state == TcpState::Listen
        {
            self.owners.seed(tuple, state, o);
        }
        let mut f = Flow::new(0, tuple, state, 0);
        f.owner = owner;
        if state == TcpState::Listen {
            f.role = Role::Listener;
        }
        if state == TcpState::TimeWait {
            // Its remaining time is unknown: assume a full TIME_WAIT.
            f.end_ns = Some(now_ns + self.cfg.time_wait_ns).into();
            self.time_wait.push_back(f);
        } else {
            self.seeded.insert(f);
        }
    }

    /// Records sockets found in /proc while events already flow (seeding
    /// runs beside the ring reader so that it does not delay the first
    /// event). A tuple the engine already follows from events keeps what
    /// the events said, which is at least as new, and only gains the owner
    /// if it had none; so does a tuple in `coming`, events read but not yet
    /// processed (/proc may have been read after them); the rest are
    /// seeded as by [`Self::seed`].
    pub fn seed_late(
        &mut self,
        seeds: impl IntoIterator<Item = (Tuple, TcpState, Option<Owner>)>,
        coming: &foldhash::HashSet<Tuple>,
        now_ns: u64,
    ) {
        let mut known: HashMap<Tuple, u64> = HashMap::default();
        known.extend(self.flows.values().map(|f| (f.tuple, f.sock)));
        // Closed flows are known too, but have nothing to gain.
        known.extend(
            self.time_wait
                .iter()
                .chain(&self.closed)
                .map(|f| (f.tuple, 0)),
        );
        for (tuple, state, owner) in seeds {
            match known.get(&tuple) {
                None if coming.contains(&tuple) => {
                    if let Some(o) = owner {
                        self.owners.seed(tuple, state, o);
                    }
                }
                None => self.seed(tuple, state, owner, now_ns),
                Some(&sock) => {
                    if let (Some(f), Some(o)) = (self.flows.get_mut(&sock), owner)
                        && f.owner.is_none()
                    {
                        f.owner = Some(o);
                    }
                }
            }
        }
    }

    /// Takes one event and returns it annotated.
    pub fn process(&mut self, ev: &Event) -> Annotated {
        self.now_ns = self.now_ns.max(ev.ts_ns);
        let known = match self.flows.get(&ev.sock) {
            Some(f) => f.owner,
            None => self.seeded.get(&ev.tuple).and_then(|f| f.owner),
        };
        let owner = self.owners.observe(ev, known);
        let mut prev_state_ns = None;
        match ev.kind {
            EventKind::State { old, new } => {
                *self.matrix.entry((old, new)).or_default() += 1;
                prev_state_ns = self.on_state(ev, old, new, owner);
            }
            EventKind::Retrans { kind, segs, state } => {
                self.event_flow(ev, state, owner)
                    .extra_mut()
                    .retrans
                    .add(kind, segs);
            }
            EventKind::ResetSent { state, .. } => {
                if ev.sock != 0 {
                    let st = state.unwrap_or(TcpState::Close);
                    self.event_flow(ev, st, owner).extra_mut().resets_sent += 1;
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
        if self.now_ns >= self.last_sweep_ns + SWEEP_EVERY_NS {
            self.sweep(self.now_ns);
        }
        Annotated {
            event: *ev,
            owner,
            prev_state_ns,
        }
    }

    /// Moves time forward without an event (the live source's timer, or
    /// the end of a replay): resolves connects that waited in vain for an
    /// errno and lets closed flows go.
    pub fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        self.sweep(self.now_ns);
    }

    /// Resolves every pending connect now (end of input).
    pub fn finish(&mut self) {
        for sock in std::mem::take(&mut self.pending) {
            self.resolve_failure(sock, None);
        }
    }

    /// Connection outcomes since the last call.
    pub fn take_outcomes(&mut self) -> Vec<ConnectOutcome> {
        std::mem::take(&mut self.outcomes)
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
            .chain(self.time_wait.iter())
            .chain(self.closed.iter())
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
        if let Some(f) = self.flows.get_mut(&sock) {
            f.extra_mut().rtt = Some(rtt);
            return;
        }
        // A flow that closed since the last read keeps its last histogram.
        let recent = self.closed.len().saturating_sub(KEEP_CLOSED);
        if let Some(f) = self
            .closed
            .range_mut(recent..)
            .chain(self.time_wait.iter_mut().rev().take(KEEP_CLOSED))
            .rev()
            .find(|f| f.sock == sock)
        {
            f.extra_mut().rtt = Some(rtt);
        }
    }

    /// The live flow of `ev`'s socket, created (or taken over from the
    /// /proc seed with the same tuple) if new.
    fn flow_mut(&mut self, ev: &Event, state: TcpState, owner: Option<Owner>) -> &mut Flow {
        if !self.flows.contains_key(&ev.sock) {
            self.make_room();
            let f = match self.seeded.remove(&ev.tuple) {
                Some(mut f) => {
                    f.sock = ev.sock;
                    f
                }
                None => Flow::new(ev.sock, ev.tuple, state, ev.ts_ns),
            };
            debug_assert_eq!(f.sock, ev.sock);
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
        if !self.flows.contains_key(&ev.sock) {
            let recent = self.closed.len().saturating_sub(RECENT);
            if let Some(i) = (recent..self.closed.len())
                .rev()
                .find(|&i| self.closed[i].sock == ev.sock)
            {
                return &mut self.closed[i];
            }
        }
        self.flow_mut(ev, state, owner)
    }

    /// An error report names no socket: it completes a failed connect of
    /// the same tuple, or waits for one (the kernel reports before or after
    /// SYN_SENT -> CLOSE depending on the version).
    fn on_sock_error(&mut self, ev: &Event, errno: i32) {
        let pending = self
            .pending
            .iter()
            .copied()
            .find(|s| self.flows.get(s).is_some_and(|f| f.tuple == ev.tuple));
        match pending {
            Some(sock) => self.resolve_failure(sock, Some(errno)),
            None if self.errors.len() < 65_536 => {
                self.errors.insert(ev.tuple, (errno, ev.ts_ns));
            }
            None => {}
        }
    }

    fn on_state(
        &mut self,
        ev: &Event,
        old: TcpState,
        new: TcpState,
        owner: Option<Owner>,
    ) -> Option<u64> {
        if old == TcpState::Close && self.flows.contains_key(&ev.sock) {
            // A new life of the socket (or of its memory): end the old one.
            if self.pending.contains(&ev.sock) {
                self.resolve_failure(ev.sock, None);
            } else {
                self.close(ev.sock, ev.ts_ns);
            }
        }
        let known = self.flows.contains_key(&ev.sock);
        let ts = ev.ts_ns;
        let tw = self.cfg.time_wait_ns;
        let f = self.flow_mut(ev, old, owner);
        let prev = (known && f.since_ns != 0).then(|| ts.saturating_sub(f.since_ns));
        match (old, new) {
            (TcpState::Close, TcpState::SynSent) => f.role = Role::Client,
            (_, TcpState::Listen) => f.role = Role::Listener,
            (TcpState::Listen, TcpState::SynRecv) => f.role = Role::Server,
            // From the SYN (SYN_SENT, SYN_RECV entered at `since_ns`), when
            // this run saw it.
            (TcpState::SynRecv, TcpState::Established) if f.role == Role::Server => {
                f.handshake_ns = prev.into();
            }
            (TcpState::SynSent, TcpState::Established) if f.role == Role::Client => {
                f.handshake_ns = prev.into();
            }
            _ => {}
        }
        f.state = new;
        f.since_ns = ts;
        let (sock, tuple, flow_owner, error, handshake) = (
            f.sock,
            f.tuple,
            f.owner,
            f.extra().error,
            f.handshake_ns.get(),
        );
        let first_outcome = !f.outcome_done;
        match (old, new) {
            (TcpState::SynSent, TcpState::Established) if first_outcome && handshake.is_some() => {
                f.outcome_done = true;
                self.outcomes.push(ConnectOutcome {
                    ts_ns: ts,
                    sock,
                    tuple,
                    owner: flow_owner,
                    latency_ns: handshake,
                    errno: None,
                });
            }
            (TcpState::SynSent, TcpState::Close) => {
                let errno = error.or_else(|| self.errors.remove(&ev.tuple).map(|e| e.0));
                match errno {
                    Some(e) => {
                        self.resolve_failure(ev.sock, Some(e));
                        self.close(ev.sock, ts);
                    }
                    None => {
                        // The connect hook may still tell why (EADDRNOTAVAIL).
                        if let Some(f) = self.flows.get_mut(&ev.sock) {
                            f.extra_mut().pending_fail_ns = Some(ts);
                        }
                        self.pending.push(ev.sock);
                    }
                }
            }
            (TcpState::FinWait2 | TcpState::Closing, TcpState::Close) => {
                // The kernel hands the socket to a timewait socket.
                if let Some(f) = self.flows.get_mut(&ev.sock) {
                    f.state = TcpState::TimeWait;
                }
                self.close(ev.sock, ts + tw);
            }
            (_, TcpState::Close) => self.close(ev.sock, ts),
            _ => {}
        }
        prev
    }

    fn on_connect_error(&mut self, ev: &Event, errno: i32, owner: Option<Owner>) {
        match self.flows.get_mut(&ev.sock) {
            Some(f) if f.outcome_done => {}
            Some(f) if f.extra().pending_fail_ns.is_some() => {
                self.resolve_failure(ev.sock, Some(errno));
            }
            Some(f) => f.extra_mut().error = Some(errno),
            None => {
                // Already closed and reported, or never seen: report unless
                // a lingering flow says it was reported.
                let reported = self
                    .closed
                    .iter()
                    .chain(self.time_wait.iter())
                    .rev()
                    .any(|f| f.sock == ev.sock && f.outcome_done && ev.sock != 0);
                if !reported {
                    self.outcomes.push(ConnectOutcome {
                        ts_ns: ev.ts_ns,
                        sock: ev.sock,
                        tuple: ev.tuple,
                        owner,
                        latency_ns: None,
                        errno: Some(errno),
                    });
                }
            }
        }
    }

    /// Emits the failed outcome of `sock` and closes it if it was pending.
    fn resolve_failure(&mut self, sock: u64, errno: Option<i32>) {
        self.pending.retain(|&s| s != sock);
        let Some(f) = self.flows.get_mut(&sock) else {
            return;
        };
        let was_pending = f.take_pending_fail();
        if !f.outcome_done {
            f.outcome_done = true;
            let errno = f.extra().error.or(errno);
            if errno.is_some() {
                f.extra_mut().error = errno;
            }
            self.outcomes.push(ConnectOutcome {
                ts_ns: was_pending.unwrap_or(f.since_ns),
                sock,
                tuple: f.tuple,
                owner: f.owner,
                latency_ns: None,
                errno,
            });
        }
        if let Some(ts) = was_pending {
            self.close(sock, ts);
        }
    }

    /// Moves a live flow to the closed list, ending at `end_ns`.
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
            if f.state == TcpState::TimeWait {
                self.time_wait.push_back(f);
            } else {
                self.closed.push_back(f);
                if self.closed.len() > self.cfg.max_closed.max(KEEP_CLOSED) {
                    self.closed.pop_front();
                    self.evicted += 1;
                }
            }
        }
    }

    fn sweep(&mut self, now: u64) {
        self.last_sweep_ns = now;
        let due: Vec<u64> = self
            .pending
            .iter()
            .copied()
            .filter(|s| {
                self.flows
                    .get(s)
                    .and_then(|f| f.extra().pending_fail_ns)
                    .is_none_or(|t| now.saturating_sub(t) >= self.cfg.pending_connect_ns)
            })
            .collect();
        for sock in due {
            self.resolve_failure(sock, None);
        }
        let linger = self.cfg.linger_ns;
        for list in [&mut self.closed, &mut self.time_wait] {
            while list.len() > self.cfg.keep_closed
                && list
                    .front()
                    .is_some_and(|f| f.end_ns.get().unwrap_or(0).saturating_add(linger) <= now)
            {
                list.pop_front();
            }
        }
        self.errors
            .retain(|_, (_, ts)| now.saturating_sub(*ts) < 1_000_000_000);
    }

    /// Keeps the number of flows under the cap, closed ones first.
    fn make_room(&mut self) {
        while self.flows.len() + self.seeded.len() + self.closed.len() + self.time_wait.len()
            >= self.cfg.max_flows
        {
            if self.closed.pop_front().is_none() && self.time_wait.pop_front().is_none() {
                let oldest = self
                    .flows
                    .values()
                    .min_by_key(|f| f.since_ns)
                    .map(|f| f.sock);
                match oldest {
                    Some(k) => {
                        self.flows.remove(&k);
                    }
                    None => {
                        if self.seeded.pop().is_none() {
                            return;
                        }
                    }
                }
            }
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

    fn ev(ts: u64, sock: u64, t: Tuple, kind: EventKind) -> Event {
        Event {
            ts_ns: ts,
            sock,
            tuple: t,
            task: owner(0, "swapper/0"),
            kind,
        }
    }

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
        assert_eq!((f.extra().retrans.data, f.extra().retrans.segs), (2, 2));
        assert_eq!(f.extra().resets_sent, 1);
    }
}
