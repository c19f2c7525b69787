//! What the engine keeps per flow (one kernel socket).

use crate::event::{Owner, RetransKind, TcpState, Tuple};

/// Which end of the connection the socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Made by `connect()`.
    Client,
    /// Accepted from a listener.
    Server,
    Listener,
    /// Existed before tracing started, or first seen mid-life.
    Unknown,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
            Self::Listener => "listener",
            Self::Unknown => "unknown",
        }
    }
}

/// Retransmissions of one flow, by kind, and failed attempts apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetransCounts {
    /// Retransmits of each kind, in [`RetransKind::ALL`]'s order.
    by_kind: [u64; RetransKind::ALL.len()],
    /// Segments, as the kernel counts RetransSegs.
    pub segs: u64,
    /// Attempts that sent nothing (Linux 6.17+): no retransmits.
    pub failed: u64,
}

impl RetransCounts {
    const NONE: Self = Self {
        by_kind: [0; RetransKind::ALL.len()],
        segs: 0,
        failed: 0,
    };

    fn slot(kind: RetransKind) -> usize {
        RetransKind::ALL
            .iter()
            .position(|&k| k == kind)
            .expect("every kind is in ALL")
    }

    /// Counts one retransmit, or a failed attempt if `failed`.
    pub fn add(&mut self, kind: RetransKind, segs: Option<u16>, failed: bool) {
        if failed {
            self.failed += 1;
            return;
        }
        self.by_kind[Self::slot(kind)] += 1;
        self.segs += u64::from(segs.unwrap_or(1));
    }

    /// Retransmits of `kind`.
    pub fn of(&self, kind: RetransKind) -> u64 {
        self.by_kind[Self::slot(kind)]
    }

    /// The kinds seen, with their counts, in [`RetransKind::ALL`]'s order.
    pub fn by_kind(&self) -> impl Iterator<Item = (RetransKind, u64)> + '_ {
        RetransKind::ALL
            .into_iter()
            .map(|k| (k, self.of(k)))
            .filter(|&(_, n)| n > 0)
    }

    pub fn total(&self) -> u64 {
        self.by_kind.iter().sum()
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.by_kind.iter_mut().zip(other.by_kind) {
            *a += b;
        }
        self.segs += other.segs;
        self.failed += other.failed;
    }
}

/// Smoothed-RTT summary of a flow, from the kernel's per-socket histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rtt {
    pub slots: [u32; tracer_common::RTT_SLOTS],
    pub count: u64,
    pub sum_us: u64,
    pub last_us: u32,
}

impl Rtt {
    /// Median from the log2 histogram: the upper bound of the slot holding
    /// the middle sample, in µs.
    pub fn median_us(&self) -> Option<u64> {
        let half = self.count.div_ceil(2);
        let mut seen = 0u64;
        for (i, &n) in self.slots.iter().enumerate() {
            seen += u64::from(n);
            if seen >= half && n > 0 {
                return Some(tracer_common::slot_high(i));
            }
        }
        None
    }

    pub fn mean_us(&self) -> Option<u64> {
        (self.count > 0).then(|| self.sum_us / self.count)
    }
}

/// An optional nanosecond count in 8 bytes (`Option<u64>` takes 16, and
/// a flow has two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptNs(u64);

impl OptNs {
    pub const NONE: Self = Self(u64::MAX);

    pub fn get(self) -> Option<u64> {
        (self != Self::NONE).then_some(self.0)
    }
}

impl From<Option<u64>> for OptNs {
    fn from(v: Option<u64>) -> Self {
        // u64::MAX ns is 584 years: saturating one below it loses nothing.
        v.map_or(Self::NONE, |v| Self(v.min(u64::MAX - 1)))
    }
}

/// One flow. Kept small (128 bytes): a table of 100 000 live flows pays
/// for every byte, so what most flows never have lives in [`Extra`].
#[derive(Clone, Debug)]
pub struct Flow {
    pub sock: u64,
    pub tuple: Tuple,
    pub owner: Option<Owner>,
    pub role: Role,
    /// Current state. `TimeWait` is inferred: the kernel hands a closing
    /// socket to a timewait socket that no tracepoint follows.
    pub state: TcpState,
    /// The connect outcome has been emitted.
    pub(crate) outcome_done: bool,
    /// When the current state was entered (0: before tracing started).
    pub since_ns: u64,
    /// First seen.
    pub start_ns: u64,
    /// When the socket reached CLOSE (or its inferred TIME_WAIT ended).
    pub end_ns: OptNs,
    /// Client: SYN_SENT -> ESTABLISHED. Server: SYN_RECV -> ESTABLISHED of
    /// the accepted socket (which the kernel creates only when the final ACK
    /// arrives, so this is near zero but for TCP Fast Open).
    pub handshake_ns: OptNs,
    extra: Option<Box<Extra>>,
}

/// What a flow has only when something went wrong or `--rtt` is on.
#[derive(Clone, Debug, Default)]
pub struct Extra {
    pub retrans: RetransCounts,
    pub resets_sent: u32,
    pub resets_recv: u32,
    /// The error the kernel reported to the owner, if any (positive errno).
    pub error: Option<i32>,
    pub rtt: Option<Rtt>,
    /// A failed connect waiting for its errno (from the connect hook).
    pub(crate) pending_fail_ns: Option<u64>,
}

/// The [`Extra`] of a flow that has none.
static NO_EXTRA: Extra = Extra {
    retrans: RetransCounts::NONE,
    resets_sent: 0,
    resets_recv: 0,
    error: None,
    rtt: None,
    pending_fail_ns: None,
};

impl Flow {
    pub fn new(sock: u64, tuple: Tuple, state: TcpState, ts_ns: u64) -> Self {
        Self {
            sock,
            tuple,
            owner: None,
            role: Role::Unknown,
            state,
            outcome_done: false,
            since_ns: ts_ns,
            start_ns: ts_ns,
            end_ns: OptNs::NONE,
            handshake_ns: OptNs::NONE,
            extra: None,
        }
    }

    /// Retransmits, resets, error, RTT (zeros and `None` when nothing
    /// happened).
    pub fn extra(&self) -> &Extra {
        self.extra.as_deref().unwrap_or(&NO_EXTRA)
    }

    pub(crate) fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_default()
    }

    /// Takes the pending-failure time, if any.
    pub(crate) fn take_pending_fail(&mut self) -> Option<u64> {
        self.extra.as_mut().and_then(|x| x.pending_fail_ns.take())
    }

    /// Whether the flow still counts in the census.
    pub fn is_live(&self) -> bool {
        self.end_ns.get().is_none()
    }
}

/// The result of a connection attempt, for the `connect` and `hist` views.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectOutcome {
    /// When the outcome was known.
    pub ts_ns: u64,
    pub sock: u64,
    pub tuple: Tuple,
    pub owner: Option<Owner>,
    /// SYN_SENT -> ESTABLISHED, on success.
    pub latency_ns: Option<u64>,
    /// Positive errno on failure; `None` with `latency_ns` `None` when the
    /// attempt failed without the kernel saying why.
    pub errno: Option<i32>,
}

impl ConnectOutcome {
    pub fn failed(&self) -> bool {
        self.latency_ns.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_stays_small() {
        // 100 000 live flows must fit in the memory goal (see BENCHMARKS.md).
        assert!(size_of::<Flow>() <= 128, "{}", size_of::<Flow>());
    }

    #[test]
    fn rtt_median_from_log2_slots() {
        let mut r = Rtt {
            slots: [0; tracer_common::RTT_SLOTS],
            count: 5,
            sum_us: 500,
            last_us: 100,
        };
        r.slots[7] = 3; // 64..127 µs
        r.slots[10] = 2; // 512..1023 µs
        assert_eq!(r.median_us(), Some(127));
        assert_eq!(r.mean_us(), Some(100));
    }
}
