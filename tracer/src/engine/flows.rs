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

/// Retransmissions of one flow, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetransCounts {
    pub data: u64,
    pub syn: u64,
    pub synack: u64,
    /// Segments, as the kernel counts RetransSegs.
    pub segs: u64,
}

impl RetransCounts {
    pub fn add(&mut self, kind: RetransKind, segs: Option<u16>) {
        match kind {
            RetransKind::Data => self.data += 1,
            RetransKind::Syn => self.syn += 1,
            RetransKind::SynAck => self.synack += 1,
        }
        self.segs += u64::from(segs.unwrap_or(1));
    }

    pub fn total(&self) -> u64 {
        self.data + self.syn + self.synack
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
                return Some(if i == 0 { 0 } else { (1u64 << i) - 1 });
            }
        }
        None
    }

    pub fn mean_us(&self) -> Option<u64> {
        (self.count > 0).then(|| self.sum_us / self.count)
    }
}

/// One flow.
#[derive(Clone, Debug)]
pub struct Flow {
    pub sock: u64,
    pub tuple: Tuple,
    pub owner: Option<Owner>,
    pub role: Role,
    /// Current state. `TimeWait` is inferred: the kernel hands a closing
    /// socket to a timewait socket that no tracepoint follows.
    pub state: TcpState,
    pub since_ns: u64,
    /// First seen.
    pub start_ns: u64,
    /// When the socket reached CLOSE (or its inferred TIME_WAIT ended).
    pub end_ns: Option<u64>,
    pub syn_sent_ns: Option<u64>,
    pub syn_recv_ns: Option<u64>,
    /// Client: SYN_SENT -> ESTABLISHED. Server: SYN_RECV -> ESTABLISHED of
    /// the accepted socket (which the kernel creates only when the final ACK
    /// arrives, so this is near zero but for TCP Fast Open).
    pub handshake_ns: Option<u64>,
    pub retrans: RetransCounts,
    pub resets_sent: u32,
    pub resets_recv: u32,
    /// The error the kernel reported to the owner, if any (positive errno).
    pub error: Option<i32>,
    /// Boxed: 150 bytes that most flows (no `--rtt`) never fill, and a
    /// flow table of 100 000 entries pays for every byte of `Flow`.
    pub rtt: Option<Box<Rtt>>,
    /// A failed connect waiting for its errno (from the connect hook).
    pub(crate) pending_fail_ns: Option<u64>,
    /// The connect outcome has been emitted.
    pub(crate) outcome_done: bool,
}

impl Flow {
    pub fn new(sock: u64, tuple: Tuple, state: TcpState, ts_ns: u64) -> Self {
        Self {
            sock,
            tuple,
            owner: None,
            role: Role::Unknown,
            state,
            since_ns: ts_ns,
            start_ns: ts_ns,
            end_ns: None,
            syn_sent_ns: None,
            syn_recv_ns: None,
            handshake_ns: None,
            retrans: RetransCounts::default(),
            resets_sent: 0,
            resets_recv: 0,
            error: None,
            rtt: None,
            pending_fail_ns: None,
            outcome_done: false,
        }
    }

    /// Whether the flow still counts in the census.
    pub fn is_live(&self) -> bool {
        self.end_ns.is_none()
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
