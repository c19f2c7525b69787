//! Every limit and timing of the engine, in one place: what the engine
//! holds is bounded by these, so a reader who asks "how much can it keep,
//! and for how long" finds the whole answer here. Views choose the fields
//! of [`Config`]; the constants are not worth a knob.

/// How many of the most recently closed flows a late event may belong to
/// (a RST sent after CLOSE, a retransmit racing the close).
pub(super) const RECENT: usize = 64;

/// Closed flows streaming views keep, and how far back late events that
/// may come long after the close (an RTT read, a connect errno) look.
pub(super) const KEEP_CLOSED: usize = RECENT * 16;

/// How often (event time) `process` lets time-based work run: often enough
/// that a failed connect is reported close to its time, rarely enough that
/// the sweep costs nothing per event.
pub(super) const SWEEP_EVERY_NS: u64 = 100_000_000;

/// How long an error report waits for the failed connect of its tuple
/// (the kernel reports it just before or just after SYN_SENT -> CLOSE).
pub(super) const ERROR_KEEP_NS: u64 = 1_000_000_000;

/// Error reports waiting for their connect, at most: a remote peer that
/// refuses everything must not grow the table without bound.
pub(super) const MAX_ERRORS: usize = 65_536;

/// When the table is full, one scan picks the oldest one in this many live
/// flows to be evicted next: each eviction then costs that many flows
/// scanned (amortised), and the picks 16 bytes each while the table is
/// full (1 MB for a million flows).
pub(super) const EVICT_ONE_IN: usize = 16;

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

    /// Closed flows lingering at most: never fewer than late events look
    /// back over.
    pub(super) fn closed_cap(&self) -> usize {
        self.max_closed.max(KEEP_CLOSED)
    }
}
