//! The recording format of `tcptrace record` and `tcptrace replay`: JSON
//! Lines, a header first, then decoded events, RTT snapshots and lost
//! counts in the order they were seen. With `--binary` (format 4; format
//! 3 frames lacked the cgroup, format 2 ones also the network namespace)
//! each event is a fixed-size
//! binary [`frame`] instead of a line. A format 1 event line without
//! `netns` in its tuple (recorded before tcptrace read it) has namespace 0.
//!
//! ```text
//! {"type":"header","format":1,"tcptrace":"0.1.0","kernel":"6.18.44",...}
//! {"type":"event","ts_ns":..,"sock":..,"tuple":{..},"task":{..},"event":"state","old":"CLOSE","new":"SYN_SENT"}
//! {"type":"rtt","ts_ns":..,"sock":..,"slots":[..],"count":..,"sum_us":..,"last_us":..}
//! {"type":"lost","ts":"..","count":3,"source":"kernel"}
//! {"type":"seeds","ts_ns":..,"seeds":[{"tuple":{..},"state":"LISTEN","owner":{..}}],"coming":[..]}
//! ```
//!
//! `seeds` lines hold the sockets that existed before the recording
//! started (read from `/proc`), where the live run took them in, so that
//! replay knows the owners of old listeners as live did (several lines in
//! a row on a host with many sockets, see [`SEEDS_PER_LINE`]). A `cgroup` line
//! (`{"type":"cgroup","id":..,"path":"/system.slice/x.service"}`) names
//! a cgroup before the first event whose owner is in it (`task.cgroup`;
//! 0 or absent: unknown).

pub mod frame;

use serde::{Deserialize, Serialize};

use crate::{
    engine::flows::Rtt,
    event::{Clock, Event, Owner, TcpState, Tuple},
    pipeline::Seeds,
};

/// Version of this format: every record a JSON line.
pub const FORMAT: u32 = 1;
/// Events as binary [`frame`]s, the rest JSON lines.
pub const FORMAT_BINARY: u32 = 4;
/// Binary frames without the cgroup; still read.
pub const FORMAT_BINARY_3: u32 = 3;
/// Binary frames without the network namespace; still read.
pub const FORMAT_BINARY_2: u32 = 2;

/// First line of a recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    /// Version of the tcptrace that recorded.
    pub tcptrace: String,
    /// Kernel release of the recording host.
    pub kernel: String,
    /// Hooks that were attached.
    pub hooks: Vec<String>,
    pub connect_plan: Option<String>,
    /// Wall-clock start, RFC 3339.
    pub start: String,
    /// Wall-clock nanoseconds at the kernel's monotonic zero, so replay
    /// prints the same times.
    pub clock_offset_ns: i64,
    /// The recording kernel's names of reset reasons.
    pub reset_reasons: Vec<(i64, String)>,
}

/// How a run began: the first input of every run, live or replayed, and
/// what a recording's header says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Start {
    /// The kernel's monotonic clock against wall-clock time.
    pub clock: Clock,
    /// CLOCK_MONOTONIC nanoseconds at the start.
    pub ts_ns: u64,
    /// Kernel release.
    pub kernel: String,
    /// Hooks attached.
    pub hooks: Vec<String>,
    /// Hooks of the plan tried and refused (live only: a recording keeps
    /// the attached ones).
    pub refused: Vec<String>,
    pub connect_plan: Option<String>,
    /// The kernel's names of reset reasons.
    pub reset_reasons: Vec<(i64, String)>,
}

impl Start {
    /// The start a recording's header describes.
    pub fn of(h: &Header) -> Self {
        let clock = Clock::with_offset(i128::from(h.clock_offset_ns));
        Self {
            clock,
            ts_ns: 0,
            kernel: h.kernel.clone(),
            hooks: h.hooks.clone(),
            refused: Vec::new(),
            connect_plan: h.connect_plan.clone(),
            reset_reasons: h.reset_reasons.clone(),
        }
    }
}

/// An RTT histogram snapshot of one socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RttLine {
    pub ts_ns: u64,
    pub sock: u64,
    pub slots: Vec<u32>,
    pub count: u64,
    pub sum_us: u64,
    pub last_us: u32,
}

impl RttLine {
    pub fn new(ts_ns: u64, sock: u64, r: &Rtt) -> Self {
        Self {
            ts_ns,
            sock,
            slots: r.slots.to_vec(),
            count: r.count,
            sum_us: r.sum_us,
            last_us: r.last_us,
        }
    }

    pub fn rtt(&self) -> Rtt {
        let mut slots = [0; tracer_common::RTT_SLOTS];
        for (s, v) in slots.iter_mut().zip(&self.slots) {
            *s = *v;
        }
        Rtt {
            slots,
            count: self.count,
            sum_us: self.sum_us,
            last_us: self.last_us,
        }
    }
}

/// Sources of `lost` records (lines of a recording, records of `--json`).
pub mod lost {
    /// Events the kernel could not queue (ring buffer full).
    pub const KERNEL: &str = "kernel";
    /// Events the kernel skipped because our program was already running
    /// on that CPU.
    pub const KERNEL_NESTED: &str = "kernel-nested";
    /// Records dropped because the output was read too slowly.
    pub const OUTPUT: &str = "output";
    /// Events whose fields the kernel would not let our programs read.
    pub const UNREADABLE: &str = "unreadable";
}

/// Events that never reached the recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostLine {
    #[serde(default)]
    pub ts: Option<String>,
    pub count: u64,
    pub source: String,
}

/// One socket from before the recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedLine {
    pub tuple: Tuple,
    pub state: TcpState,
    pub owner: Option<Owner>,
}

/// The sockets from before the recording, as the pipeline took them in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedsLine {
    pub ts_ns: u64,
    pub seeds: Vec<SeedLine>,
    /// Tuples of events recorded after this line that the seeds must not
    /// overrule (read before `/proc` was, pushed after).
    pub coming: Vec<Tuple>,
}

/// Seeds in one `seeds` line: about 150 bytes each (up to 500 with IPv6
/// addresses and an owner), so a line stays well under replay's limit of
/// a MiB per line. A host with 9 866 sockets made a 1.5 MB line, which
/// replay then refused as damaged.
pub const SEEDS_PER_LINE: usize = 1024;

impl SeedsLine {
    /// `s` as lines of at most [`SEEDS_PER_LINE`] seeds (one line when
    /// there are none). Each carries the tuples of `coming` that its own
    /// seeds have (the only ones the engine looks up), so that replaying
    /// the lines one after the other seeds what the whole did.
    pub fn split(s: &Seeds) -> Vec<Self> {
        let mut lines: Vec<Self> = s
            .seeds
            .chunks(SEEDS_PER_LINE)
            .map(|chunk| {
                let mut coming: Vec<Tuple> = chunk
                    .iter()
                    .map(|(t, _, _)| *t)
                    .filter(|t| s.coming.contains(t))
                    .collect();
                // The same recording for the same seeds, whatever the
                // hash order.
                coming.sort_by_key(|t| (t.netns, t.laddr, t.lport, t.raddr, t.rport));
                coming.dedup();
                Self {
                    ts_ns: s.now_ns,
                    seeds: chunk
                        .iter()
                        .map(|&(tuple, state, owner)| SeedLine {
                            tuple,
                            state,
                            owner,
                        })
                        .collect(),
                    coming,
                }
            })
            .collect();
        if lines.is_empty() {
            lines.push(Self {
                ts_ns: s.now_ns,
                seeds: Vec::new(),
                coming: Vec::new(),
            });
        }
        lines
    }

    pub fn seeds(self) -> Seeds {
        Seeds {
            seeds: self
                .seeds
                .into_iter()
                .map(|s| (s.tuple, s.state, s.owner))
                .collect(),
            coming: self.coming.into_iter().collect(),
            now_ns: self.ts_ns,
        }
    }
}

/// The path (below the unified hierarchy's root) of the cgroup whose id
/// owners' `cgroup` holds; before the first event that needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupLine {
    pub id: u64,
    pub path: String,
}

/// One line of a recording.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Line {
    Header(Header),
    Event(Event),
    Rtt(RttLine),
    Lost(LostLine),
    Seeds(SeedsLine),
    Cgroup(CgroupLine),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::tests::{owner, retrans, state, tuple},
        event::{EventKind, RetransKind, TcpState},
    };

    #[test]
    fn events_round_trip_through_json() {
        let events = [
            state(
                1,
                2,
                tuple(3, 4),
                owner(5, "a\"b"),
                TcpState::Close,
                TcpState::SynSent,
            ),
            retrans(
                6,
                7,
                tuple(8, 9),
                owner(0, "swapper/1"),
                TcpState::FinWait1,
                RetransKind::SynAck,
            ),
            Event {
                kind: EventKind::ResetSent {
                    state: None,
                    reason: Some(3),
                },
                ..state(
                    1,
                    0,
                    tuple(1, 2),
                    owner(1, "x"),
                    TcpState::Close,
                    TcpState::Close,
                )
            },
            Event {
                kind: EventKind::SockError { errno: 111 },
                ..state(
                    1,
                    0,
                    tuple(1, 2),
                    owner(1, "x"),
                    TcpState::Close,
                    TcpState::Close,
                )
            },
        ];
        for e in events {
            let line = serde_json::to_string(&Line::Event(e)).unwrap();
            assert!(line.starts_with("{\"type\":\"event\""), "{line}");
            assert_eq!(serde_json::from_str::<Line>(&line).unwrap(), Line::Event(e));
        }
    }

    #[test]
    fn live_lost_records_are_lines() {
        let l: Line = serde_json::from_str(
            r#"{"type":"lost","ts":"2026-11-22T12:00:00.000000Z","count":3,"source":"kernel"}"#,
        )
        .unwrap();
        assert!(matches!(l, Line::Lost(LostLine { count: 3, .. })));
    }
}
