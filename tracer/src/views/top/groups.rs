//! `top --group owner|remote|port` (and the `g` key): flows rolled up into
//! one row per process, remote host or service port, with the group's
//! live sockets per state and how fast each grows (`CLOSE_WAIT 40
//! (+3/min)`), and its rates: new connections, retransmitted segments and
//! resets per second.
//!
//! Rates come from the flows' own counters between two periodic
//! refreshes: what each flow gained since the previous refresh (all of it
//! for a flow seen for the first time), summed per group for every
//! grouping at once, so that a key that changes the grouping shows rates
//! at once. A flow stays in the table until `--linger` after it closed,
//! so with the default linger (10 s) above the interval (1 s) nothing it
//! did is missed. Growth per minute compares the group's count in each
//! state with a snapshot taken up to a minute earlier.

use std::{collections::VecDeque, net::IpAddr};

use foldhash::{HashMap, HashMapExt as _};

use crate::{
    engine::flows::{Flow, Role},
    event::{Owner, TcpState, Tuple},
};

/// How rows are rolled up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum GroupBy {
    /// One row per owning process.
    Owner,
    /// One row per remote host (listeners have none).
    Remote,
    /// One row per service port: the local port of servers and
    /// listeners, the remote port of clients.
    Port,
}

impl GroupBy {
    pub const ALL: [GroupBy; 3] = [Self::Owner, Self::Remote, Self::Port];

    pub fn name(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Remote => "remote",
            Self::Port => "port",
        }
    }

    /// The group of a flow. Remote hosts and ports are per network
    /// namespace (127.0.0.1 in two namespaces is two hosts).
    pub fn key(self, f: &Flow) -> GroupKey {
        let t = &f.tuple;
        match self {
            Self::Owner => GroupKey::Owner(f.owner),
            Self::Remote => GroupKey::Remote {
                netns: t.netns,
                addr: (f.role != Role::Listener && f.state != TcpState::Listen).then_some(t.raddr),
            },
            Self::Port => GroupKey::Port {
                netns: t.netns,
                port: service_port(f),
            },
        }
    }
}

/// The port a flow serves or uses: the local one of servers and
/// listeners, the remote one of clients; for a flow of unknown role (from
/// before the run), the lower of the two (ephemeral ports are high).
pub fn service_port(f: &Flow) -> u16 {
    let t = &f.tuple;
    match f.role {
        _ if f.state == TcpState::Listen => t.lport,
        Role::Server | Role::Listener => t.lport,
        Role::Client => t.rport,
        Role::Unknown if t.rport == 0 => t.lport,
        Role::Unknown => t.lport.min(t.rport),
    }
}

/// One group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupKey {
    /// `None`: flows nobody owns (orphans, sockets from before the run).
    Owner(Option<Owner>),
    /// `None`: listeners.
    Remote {
        netns: u32,
        addr: Option<IpAddr>,
    },
    Port {
        netns: u32,
        port: u16,
    },
}

impl GroupKey {
    pub fn netns(&self) -> Option<u32> {
        match self {
            Self::Owner(_) => None,
            Self::Remote { netns, .. } | Self::Port { netns, .. } => Some(*netns),
        }
    }
}

/// One row of a rolled-up table.
#[derive(Clone, Debug, PartialEq)]
pub struct TopGroup {
    pub key: GroupKey,
    /// Flows in the table (live and lingering) that fall in the group.
    pub flows: u64,
    /// Live sockets per state (kernel order), and the change per minute
    /// over up to the last minute (`None` before a first earlier look).
    pub states: Vec<(TcpState, u64, Option<f64>)>,
    /// Retransmits (buffers) and segments of the group's flows in the table.
    pub retrans: u64,
    pub retrans_segs: u64,
    pub resets: u64,
    /// Per second over the last refresh interval.
    pub new_per_s: f64,
    pub retrans_segs_per_s: f64,
    pub resets_per_s: f64,
    /// The slowest handshake of the group's flows.
    pub max_handshake_ns: Option<u64>,
    /// When its oldest flow was first seen.
    pub oldest_ns: u64,
}

/// What a group gained over one refresh interval.
#[derive(Clone, Copy, Debug, Default)]
struct Delta {
    new: u64,
    segs: u64,
    resets: u64,
}

/// A flow across refreshes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum FlowId {
    Sock(u64, u64),
    Tuple(Tuple),
}

/// Sockets per (group, state) at one time.
type Snapshot = HashMap<(GroupKey, TcpState), u64>;

/// A snapshot for growth rates is kept at most this often...
const SNAPSHOT_EVERY_NS: u64 = 5_000_000_000;
/// ...and compared over at most this long.
const GROWTH_WINDOW_NS: u64 = 60_000_000_000;

/// The per-flow counters and snapshots that rates are computed from.
#[derive(Debug, Default)]
pub struct Rates {
    /// Per flow: retransmitted segments and resets at the last refresh.
    seen: HashMap<FlowId, (u64, u64)>,
    /// What each group gained over the last interval, and its length.
    gained: HashMap<GroupKey, Delta>,
    interval_ns: u64,
    /// When the last refresh was (the run's start before the first).
    last_ns: Option<u64>,
    history: VecDeque<(u64, Snapshot)>,
}

impl Rates {
    /// Starts counting at `now_ns` (the first refresh's rates cover the
    /// time since then).
    pub fn start(&mut self, now_ns: u64) {
        self.last_ns.get_or_insert(now_ns);
    }

    /// A periodic refresh at `now_ns` over `flows` (those the filter lets
    /// through; `live` tells the ones in the census).
    pub fn refresh<'a>(&mut self, flows: impl Iterator<Item = (&'a Flow, bool)>, now_ns: u64) {
        let since = *self.last_ns.get_or_insert(now_ns);
        let mut seen = HashMap::with_capacity(self.seen.len());
        let mut gained: HashMap<GroupKey, Delta> = HashMap::new();
        let mut snap = Snapshot::new();
        for (f, live) in flows {
            // A socket's tuple changes once (its local port is chosen
            // after SYN_SENT), and its address is soon reused by another
            // socket (both may be in the table, one closed): a flow is its
            // socket and when it was first seen. A flow from /proc has no
            // socket yet.
            let id = if f.sock != 0 {
                FlowId::Sock(f.sock, f.start_ns)
            } else {
                FlowId::Tuple(f.tuple)
            };
            let now = (
                f.extra().retrans.segs,
                u64::from(f.extra().resets_sent + f.extra().resets_recv),
            );
            let before = self.seen.get(&id).copied();
            seen.insert(id, now);
            let (s0, r0) = before.unwrap_or((0, 0));
            let d = Delta {
                // Every flow the filters let through was looked at last
                // time: one not seen then is new since (the first look:
                // since the run began). Not by its start time: an event
                // read from the ring just after a refresh may be older.
                new: u64::from(before.is_none() && matches!(f.role, Role::Client | Role::Server)),
                segs: now.0.saturating_sub(s0),
                resets: now.1.saturating_sub(r0),
            };
            for g in GroupBy::ALL {
                let k = g.key(f);
                if d.new + d.segs + d.resets > 0 {
                    let e = gained.entry(k).or_default();
                    e.new += d.new;
                    e.segs += d.segs;
                    e.resets += d.resets;
                }
                if live {
                    *snap.entry((k, f.state)).or_default() += 1;
                }
            }
        }
        self.seen = seen;
        self.gained = gained;
        self.interval_ns = now_ns.saturating_sub(since);
        self.last_ns = Some(now_ns);
        while self
            .history
            .get(1)
            .is_some_and(|(t, _)| now_ns.saturating_sub(*t) >= GROWTH_WINDOW_NS)
        {
            self.history.pop_front();
        }
        if self
            .history
            .back()
            .is_none_or(|(t, _)| now_ns.saturating_sub(*t) >= SNAPSHOT_EVERY_NS)
        {
            self.history.push_back((now_ns, snap));
        }
    }

    /// The groups of `flows` (already cut to the state filter, with
    /// whether each is live) by `by`, at `now_ns`.
    pub fn groups<'a>(
        &self,
        flows: impl Iterator<Item = (&'a Flow, bool)>,
        by: GroupBy,
        now_ns: u64,
    ) -> Vec<TopGroup> {
        let mut groups: HashMap<GroupKey, TopGroup> = HashMap::new();
        for (f, live) in flows {
            let key = by.key(f);
            let g = groups.entry(key).or_insert_with(|| self.empty(key));
            g.flows += 1;
            g.retrans += f.extra().retrans.total();
            g.retrans_segs += f.extra().retrans.segs;
            g.resets += u64::from(f.extra().resets_sent + f.extra().resets_recv);
            g.max_handshake_ns = g.max_handshake_ns.max(f.handshake_ns.get());
            g.oldest_ns = g.oldest_ns.min(f.start_ns);
            if live {
                match g.states.iter_mut().find(|(s, ..)| *s == f.state) {
                    Some(e) => e.1 += 1,
                    None => g.states.push((f.state, 1, None)),
                }
            }
        }
        let base = self
            .history
            .front()
            .filter(|(t, _)| now_ns > *t)
            .map(|(t, snap)| (now_ns - t, snap));
        let mut out: Vec<TopGroup> = groups.into_values().collect();
        for g in &mut out {
            g.states.sort_by_key(|(s, ..)| *s);
            if let Some((dt, snap)) = base {
                for (s, n, per_min) in &mut g.states {
                    let was = snap.get(&(g.key, *s)).copied().unwrap_or(0);
                    *per_min = Some((*n as f64 - was as f64) * 60e9 / dt as f64);
                }
            }
        }
        out
    }

    /// A group with no flows yet and the rates it gained.
    fn empty(&self, key: GroupKey) -> TopGroup {
        let d = self.gained.get(&key).copied().unwrap_or_default();
        let per_s = |n: u64| {
            if self.interval_ns == 0 {
                0.0
            } else {
                n as f64 * 1e9 / self.interval_ns as f64
            }
        };
        TopGroup {
            key,
            flows: 0,
            states: Vec::new(),
            retrans: 0,
            retrans_segs: 0,
            resets: 0,
            new_per_s: per_s(d.new),
            retrans_segs_per_s: per_s(d.segs),
            resets_per_s: per_s(d.resets),
            max_handshake_ns: None,
            oldest_ns: u64::MAX,
        }
    }
}
