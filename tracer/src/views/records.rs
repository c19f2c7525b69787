//! What the views say happened: typed records, one per line of output.
//!
//! A view decides *what* to report; it never formats. Every sink (the text
//! table, JSON Lines, the recording writer, later a Prometheus registry or
//! the doctor) consumes these same records, so adding a field means adding
//! it here and to the renderers, nowhere else. Records borrow from the
//! event, the engine or the view that made them: producing one allocates
//! nothing on the per-event path.

use crate::{
    counters::{SockStat, rates::Rates},
    engine::flows::{ConnectOutcome, RetransCounts, Role, Rtt},
    event::{Event, Owner, RetransKind, TcpState, Tuple},
    views::top::{GroupBy, SortBy, TopGroup},
};

/// The flow a per-flow record is about: its time, tuple and owner.
#[derive(Clone, Copy, Debug)]
pub struct FlowRef<'a> {
    /// CLOCK_MONOTONIC nanoseconds of what happened.
    pub ts_ns: u64,
    pub tuple: &'a Tuple,
    /// `None` when the owner is unknown.
    pub owner: Option<&'a Owner>,
}

/// Which way a reset went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Received => "received",
        }
    }
}

/// The kernel's reason for a reset: its name from the running (or
/// recording) kernel's `enum sk_rst_reason`, or the bare number when the
/// kernel gave none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason<'a> {
    Named(&'a str),
    Code(u32),
}

/// A latency histogram of one destination or flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistGroup {
    /// The flow's local side (per flow); `None` per destination.
    pub local: Option<std::net::SocketAddr>,
    /// The destination.
    pub remote: std::net::SocketAddr,
    /// The network namespace of the flows measured: the same destination
    /// seen from two namespaces is two groups.
    pub netns: u32,
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Used log2 buckets, lowest first: `(lo_us, hi_us, count)`.
    pub buckets: Vec<(u64, u64, u64)>,
}

/// What a histogram measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Handshake,
    Rtt,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::Rtt => "rtt",
        }
    }
}

/// One round of histograms (`--interval`, or the end of the run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistReport {
    pub ts_ns: u64,
    pub metric: Metric,
    pub per_flow: bool,
    /// Groups with at least one sample, by namespace, then destination
    /// (or flow) as text sorts it; none in a round without samples.
    pub groups: Vec<HistGroup>,
}

/// One row of `top`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopRow {
    pub owner: Option<Owner>,
    pub tuple: Tuple,
    pub state: TcpState,
    pub role: Role,
    /// Closed and lingering (an inferred TIME_WAIT is not "closed").
    pub closed: bool,
    pub age_ms: Option<u64>,
    pub retrans: u64,
    pub retrans_segs: u64,
    /// The retransmits by kind, and failed attempts.
    pub retrans_by_kind: RetransCounts,
    pub resets_sent: u64,
    pub resets_recv: u64,
    pub handshake_ns: Option<u64>,
    /// Median smoothed RTT.
    pub rtt_us: Option<u64>,
}

/// One refresh of `top`.
#[derive(Clone, Debug, PartialEq)]
pub struct TopReport {
    pub ts_ns: u64,
    /// Live sockets per state.
    pub census: Vec<(TcpState, u64)>,
    /// The same, per network namespace (0: unknown), by inode.
    pub census_by_netns: Vec<(u32, Vec<(TcpState, u64)>)>,
    pub rows: Vec<TopRow>,
    /// Transitions seen since start, sorted.
    pub transitions: Vec<((TcpState, TcpState), u64)>,
    /// Show the RTT column (text).
    pub rtt: bool,
    /// Drawn on a screen (text on a terminal) rather than appended.
    pub redraw: bool,
    /// Flows the filters let through, before `states` and the limit cut
    /// them (the footer's "of how many").
    pub total_flows: u64,
    /// Of those, the flows in `states`.
    pub matching_flows: u64,
    /// Only rows in these states (`--state`, the `s` key); empty: all.
    pub states: Vec<TcpState>,
    pub sort: SortBy,
    /// Rows rolled up by this (`--group`, the `g` key), into `groups`
    /// (sorted and cut to the limit like rows), of `total_groups`.
    pub group: Option<GroupBy>,
    pub groups: Vec<TopGroup>,
    pub total_groups: u64,
    /// The `p` key froze the table.
    pub paused: bool,
    /// The namespace's own counters since the last refresh (live only:
    /// a recording has none, and then there is no rates line).
    pub rates: Option<Rates>,
}

/// One interval of `tcptrace stat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatReport {
    /// The counters' growth over the interval.
    pub rates: Rates,
    /// Connections ESTABLISHED or CLOSE_WAIT at its end.
    pub curr_estab: Option<u64>,
    pub sockstat: SockStat,
    /// Sockets per state at its end.
    pub census: Vec<(TcpState, u64)>,
    /// Which interval this is (0 first): the text repeats its header
    /// every so many.
    pub seq: u64,
}

/// The end of a `retrans` run: what tcptrace showed beside what the
/// namespace's counters say over the same run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetransSummary {
    /// Retransmit records shown.
    pub records: u64,
    /// Segments in them (where known).
    pub segs: u64,
    /// The counters from start to end.
    pub rates: Rates,
}

/// One record a view produced.
#[derive(Clone, Copy, Debug)]
pub enum Rec<'a> {
    /// A state transition and the time spent in the state left.
    State {
        flow: FlowRef<'a>,
        old: TcpState,
        new: TcpState,
        prev_state_ns: Option<u64>,
    },
    /// A retransmitted buffer, or with `failed` (an errno) an attempt
    /// that sent nothing.
    Retrans {
        flow: FlowRef<'a>,
        state: TcpState,
        kind: RetransKind,
        segs: Option<u16>,
        failed: Option<i32>,
    },
    /// A connection attempt's outcome.
    Connect(&'a ConnectOutcome),
    /// A reset sent or received.
    Reset {
        flow: FlowRef<'a>,
        direction: Direction,
        state: Option<TcpState>,
        reason: Option<Reason<'a>>,
    },
    Hist(&'a HistReport),
    Top(&'a TopReport),
    /// One interval of the kernel's counters.
    Stat(&'a StatReport),
    /// The end of a `retrans` run (never counts towards `--count`).
    Summary(&'a RetransSummary),
    /// An input event as it came, for a recording.
    Event(&'a Event),
    /// A socket's RTT histogram as read from the kernel, for a recording
    /// or the metrics.
    Rtt {
        ts_ns: u64,
        sock: u64,
        rtt: &'a Rtt,
    },
    /// Sockets from before the run, for a recording.
    Seeds(&'a crate::pipeline::Seeds),
    /// Live sockets per state, for the metrics (no line of its own).
    Census {
        ts_ns: u64,
        states: &'a [(TcpState, u64)],
    },
    /// A problem the doctor found.
    Finding(&'a crate::views::doctor::finding::Finding),
    /// The end of a doctor session.
    Doctor(&'a crate::views::doctor::finding::Verdict),
}

impl Rec<'_> {
    /// Whether the record counts towards `--count` (RTT snapshots in a
    /// recording are bookkeeping, not records the user asked for).
    pub fn counts(&self) -> bool {
        !matches!(
            self,
            Self::Rtt { .. }
                | Self::Seeds(_)
                | Self::Summary(_)
                | Self::Census { .. }
                | Self::Doctor(_)
        )
    }

    /// When what a per-flow record says happened.
    pub fn ts_ns(&self) -> Option<u64> {
        match self {
            Self::State { flow, .. } | Self::Retrans { flow, .. } | Self::Reset { flow, .. } => {
                Some(flow.ts_ns)
            }
            Self::Connect(o) => Some(o.ts_ns),
            _ => None,
        }
    }

    /// Whether the record is said even once `--count` is reached (the
    /// summary of the records that were).
    pub fn after_count(&self) -> bool {
        matches!(self, Self::Summary(_) | Self::Doctor(_))
    }

    /// The record's `type` in JSON Lines.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::State { .. } => "state",
            Self::Retrans { .. } => "retrans",
            Self::Connect(_) => "connect",
            Self::Reset { .. } => "reset",
            Self::Hist(_) => "hist",
            Self::Top(_) => "top",
            Self::Event(_) => "event",
            Self::Rtt { .. } => "rtt",
            Self::Census { .. } => "census",
            Self::Stat(_) => "stat",
            Self::Summary(_) => "summary",
            Self::Seeds(_) => "seeds",
            Self::Finding(_) => "finding",
            Self::Doctor(_) => "doctor",
        }
    }

    /// The network namespace of a per-flow record.
    pub fn netns(&self) -> Option<u32> {
        match self {
            Self::State { flow, .. } | Self::Retrans { flow, .. } | Self::Reset { flow, .. } => {
                Some(flow.tuple.netns)
            }
            Self::Connect(o) => Some(o.tuple.netns),
            _ => None,
        }
    }
}

/// The text columns a view's records fill, so a text sink can print the
/// header before the first record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Columns {
    Retrans,
    States,
    Connect,
    Resets,
    /// Histograms, tables and recordings carry their own headings.
    None,
}

/// Where a view's records go: the pipeline's output.
pub trait Emit {
    fn emit(&mut self, rec: &Rec<'_>);
}

impl<'a> FlowRef<'a> {
    /// The flow of an annotated event.
    pub fn of(a: &'a crate::engine::Annotated) -> Self {
        Self {
            ts_ns: a.event.ts_ns,
            tuple: &a.event.tuple,
            owner: a.owner.as_ref(),
        }
    }
}
