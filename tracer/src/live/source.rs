//! The kernel's side of a live run: the event rings (one per CPU, or per
//! few CPUs), read in time order and decoded, sampling each ring's fill
//! as it goes; the kernel's lost counters and RTT map, each pushed through
//! the pipeline's door.

use std::time::Duration;

use anyhow::{Context as _, Result};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use tokio::io::unix::AsyncFd;
use tracer_common::{FROM_NESTED, RttHist, kind};

use crate::{
    cgroups,
    engine::flows::Rtt,
    event::{Clock, Event, EventKind, TcpState},
    hooks::{self, Nested, Probe, ring_fill::RingFill},
    pipeline::{Input, Pipeline},
    record::lost,
    stderr, wire,
};

/// Records read between two samples of a ring's fill (a run's first
/// read is sampled too): a stop in the middle of a drain hides at most
/// this many of a full ring.
const FILL_SAMPLE_EVERY: u64 = 16;

/// How long after its time a record may still be on its way into its
/// ring: a program takes its record's time when it starts and commits it
/// a few microseconds later. With several rings, a record goes out only
/// once it is this old, so that one from another CPU with an earlier time
/// cannot come after it (a socket's transitions can happen on different
/// CPUs); the wait is well under one drain interval.
const IN_FLIGHT_NS: u64 = 5_000_000;

/// State records remembered to recognise a repeat: the original and its
/// repeat are a few records apart on their CPU, but every transition of
/// one softirq run (a batch of packets) can come between them, and the
/// other CPUs' records are merged in. Looked through only for the second
/// program's records (about 1 in 1 000 in a storm).
const RECENT: usize = 1024;

/// How long the last look at the nested-event counters waits for the
/// catches of the misses it saw: a catch trails its miss by under a
/// microsecond unless the CPU is taken away in between.
const CATCH_GRACE: Duration = Duration::from_millis(10);

/// One of the kernel's rings, watched for the programs' rare wakeups, with
/// its next record read ahead (to merge the rings in time order).
pub(super) struct Ring {
    fd: AsyncFd<RingBuf<MapData>>,
    /// The next record, and whether the second state program sent it.
    head: Option<(Event, bool)>,
    /// The ring's fill, sampled as it is read (None if its positions
    /// could not be mapped).
    fill: Option<RingFill>,
    /// Records read since the ring was last found empty.
    reads_in_run: u64,
    /// Found empty in this pass (see [`Source::begin`]).
    empty: bool,
}

/// The kernel's side of a live run: the rings, their counters, and what
/// has been reported of them.
pub(super) struct Source {
    pub(super) rings: Vec<Ring>,
    pub(super) lost: PerCpuArray<MapData, u64>,
    pub(super) lost_seen: u64,
    /// Kernel recursion misses not made up for, at start-up and reported
    /// so far.
    pub(super) nested_seen: u64,
    /// The last look at the nested-event counters (see [`Nested::lost`]).
    nested_look: Nested,
    /// Events whose fields the kernel would not let us read, reported so far.
    pub(super) unreadable_seen: u64,
    pub(super) rtt: Option<BpfHashMap<MapData, u64, RttHist>>,
    pub(super) decode_errors: u64,
    /// Names owners' cgroups before their first event is pushed.
    pub(super) cgroups: cgroups::Resolver,
    /// The size of each ring, and the highest fill of any since it was
    /// last reported (when fills are known).
    pub(super) ring_bytes: u64,
    pub(super) fill_high: Option<u64>,
    /// Drops the kernel's rare repeated state record.
    repeats: Repeats,
}

impl Source {
    /// Takes the rings and counters out of the loaded `probe`.
    pub(super) fn new(probe: &mut Probe, rtt: bool) -> Result<Self> {
        let rings = probe.take_rings()?;
        let plan = rings.plan;
        let mut fills_known = true;
        let rings = rings
            .open()?
            .into_iter()
            .map(|ring| {
                let fill = RingFill::new(std::os::fd::AsFd::as_fd(&ring), plan.bytes)
                    .inspect_err(|e| {
                        if fills_known {
                            stderr::say(format_args!(
                                "warning: the ring's fill is not reported: {e:#}"
                            ));
                        }
                        fills_known = false;
                    })
                    .ok();
                Ok(Ring {
                    // SAFETY: the ring buffer owns its map fd, which stays
                    // open and the same for as long as the AsyncFd owns it.
                    fd: unsafe { AsyncFd::register(ring) }
                        .map_err(|e| e.into_parts().1)
                        .context("watching the ring buffer")?,
                    head: None,
                    fill,
                    reads_in_run: 0,
                    empty: false,
                })
            })
            .collect::<Result<_>>()?;
        let nested_look = hooks::nested_misses(probe);
        Ok(Self {
            rings,
            lost: probe.take_lost()?,
            lost_seen: 0,
            nested_seen: nested_look.lost(nested_look),
            nested_look,
            unreadable_seen: 0,
            rtt: if rtt { Some(probe.take_rtt()?) } else { None },
            decode_errors: 0,
            cgroups: cgroups::Resolver::new(),
            ring_bytes: u64::from(plan.bytes),
            fill_high: fills_known.then_some(0),
            repeats: Repeats::default(),
        })
    }

    /// Waits until a program wakes the reader (a ring is filling), and
    /// clears the wakeup.
    pub(super) async fn woken(&mut self) -> std::io::Result<()> {
        std::future::poll_fn(|cx| {
            let mut woken = false;
            for r in &mut self.rings {
                match r.fd.poll_read_ready_mut(cx) {
                    std::task::Poll::Ready(Ok(mut g)) => {
                        g.clear_ready();
                        woken = true;
                    }
                    std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                    std::task::Poll::Pending => {}
                }
            }
            if woken {
                std::task::Poll::Ready(Ok(()))
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    /// Starts a pass over the rings; returns the latest time a record
    /// may have to go out in it: every record with a time up to it is in
    /// its ring (see [`IN_FLIGHT_NS`]); any time with one ring, or in the
    /// `last` pass, when the programs are stopping. So a ring
    /// found empty in the pass is not looked at again in it: what comes
    /// into it meanwhile is later than the cutoff (and each look at a
    /// ring's producer position is a cache line the kernel writes from
    /// another CPU).
    pub(super) fn begin(&mut self, last: bool) -> u64 {
        for r in &mut self.rings {
            r.empty = false;
        }
        if last || self.rings.len() == 1 {
            u64::MAX
        } else {
            Clock::monotonic_now().saturating_sub(IN_FLIGHT_NS)
        }
    }

    /// Whether a record was read and is waiting to be old enough.
    pub(super) fn holding(&self) -> bool {
        self.rings.iter().any(|r| r.head.is_some())
    }

    /// The earliest record of all rings, if its time is at most `cutoff`;
    /// `None` when the rings are empty or their next records too recent.
    /// Skips the kernel's repeats (see [`Repeats`]).
    pub(super) fn next_event(&mut self, cutoff: u64) -> Option<Event> {
        loop {
            let (ev, nested) = self.next_record(cutoff)?;
            if !self.repeats.seen(&ev, nested) {
                return Some(ev);
            }
        }
    }

    fn next_record(&mut self, cutoff: u64) -> Option<(Event, bool)> {
        let mut best: Option<(usize, u64)> = None;
        for i in 0..self.rings.len() {
            if let Some(ts) = self.peek(i)
                && best.is_none_or(|(_, b)| ts < b)
            {
                best = Some((i, ts));
            }
        }
        match best {
            Some((i, ts)) if ts <= cutoff => self.rings[i].head.take(),
            _ => None,
        }
    }

    /// The time of ring `i`'s next record, read ahead into its head.
    fn peek(&mut self, i: usize) -> Option<u64> {
        let r = &mut self.rings[i];
        while r.head.is_none() && !r.empty {
            if r.reads_in_run.is_multiple_of(FILL_SAMPLE_EVERY)
                && let (Some(f), Some(high)) = (&r.fill, &mut self.fill_high)
            {
                // Not once at the top of the loop: an agent stopped
                // (SIGSTOP, a descheduled VM) after that sample, or in the
                // middle of a drain, went on to drain a full ring unseen
                // (the 6.1 VM reported a peak fill of 0.017 after 9 374
                // events were lost). Two atomic loads per sample.
                *high = (*high).max(f.used());
            }
            let Some(item) = r.fd.get_mut().next() else {
                r.reads_in_run = 0;
                r.empty = true;
                return None;
            };
            r.reads_in_run += 1;
            let rec = wire::read_record(&item);
            drop(item);
            r.head = rec
                .and_then(|w| {
                    let nested = w.kind == kind::STATE && w.reason == FROM_NESTED;
                    Ok((wire::decode(&w)?, nested))
                })
                .ok();
            self.decode_errors += u64::from(r.head.is_none());
        }
        r.head.as_ref().map(|(e, _)| e.ts_ns)
    }
}

/// The last [`RECENT`] state records handed on (socket, old and new
/// state), newest at `at - 1`.
pub(super) struct Repeats {
    recent: Vec<(u64, TcpState, TcpState)>,
    at: usize,
}

impl Default for Repeats {
    fn default() -> Self {
        Self {
            recent: vec![(0, TcpState::Close, TcpState::Close); RECENT],
            at: 0,
        }
    }
}

impl Repeats {
    /// Whether `ev`, a record the second state program sent (`nested`),
    /// repeats the socket's last state record; remembers every state
    /// record that is not a repeat. The kernel sends a transition twice
    /// in one case: when another transition lands in the first
    /// instructions of the second state program, the first runs for it
    /// and the second then takes its own transition for one the first
    /// missed (see tracer-ebpf's `state_btf.rs`). A socket cannot make
    /// the same change twice in a row; but records lost in a full ring
    /// can hide the changes between two lives of a socket's address, so
    /// only the second program's records are suspected.
    pub(super) fn seen(&mut self, ev: &Event, nested: bool) -> bool {
        let EventKind::State { old, new } = ev.kind else {
            return false;
        };
        if ev.sock == 0 {
            return false;
        }
        if nested {
            for k in 1..=RECENT {
                let (sock, o, n) = self.recent[(self.at + RECENT - k) % RECENT];
                if sock == ev.sock {
                    if (o, n) == (old, new) {
                        return true;
                    }
                    break;
                }
            }
        }
        self.recent[self.at] = (ev.sock, old, new);
        self.at = (self.at + 1) % RECENT;
        false
    }
}

/// Drains the rings into the pipeline in time order (all of them in the
/// `last` pass, see [`Source::begin`]); returns how many records it
/// pushed.
pub(super) fn drain(src: &mut Source, p: &mut Pipeline, last: bool) -> usize {
    let cutoff = src.begin(last);
    let mut n = 0;
    while !p.done() {
        let Some(ev) = src.next_event(cutoff) else {
            break;
        };
        src.cgroups.name(p, ev.task.cgroup.get());
        p.push(Input::Event(ev));
        n += 1;
    }
    n
}

/// Reports events lost since the last look: those the kernel could not
/// queue (ring full), those it skipped because one of our programs was
/// already running on that CPU, and those with fields our programs could
/// not read. The `last` look waits [`CATCH_GRACE`] for the catches of its
/// own misses, as no later look will (see [`Nested::lost`]).
pub(super) fn check_lost(src: &mut Source, p: &mut Pipeline, probe: &Probe, last: bool) {
    let total = hooks::lost_total(&src.lost);
    let full = total.saturating_sub(src.lost_seen);
    src.lost_seen = src.lost_seen.max(total);
    let look = hooks::nested_misses(probe);
    let nested_total = if last {
        std::thread::sleep(CATCH_GRACE);
        hooks::nested_misses(probe).lost(look)
    } else {
        look.lost(src.nested_look)
    };
    src.nested_look = look;
    let nested = nested_total.saturating_sub(src.nested_seen);
    src.nested_seen = src.nested_seen.max(nested_total);
    // Layout drift shows up as a number: fields a program needed and
    // could not read (see `tcptrace check`).
    let unreadable_total = probe.unreadable_total().unwrap_or(src.unreadable_seen);
    let unreadable = unreadable_total.saturating_sub(src.unreadable_seen);
    src.unreadable_seen = src.unreadable_seen.max(unreadable_total);
    for (count, source) in [
        (full, lost::KERNEL),
        (nested, lost::KERNEL_NESTED),
        (unreadable, lost::UNREADABLE),
    ] {
        if count > 0 {
            p.push(Input::Lost {
                source: source.to_string(),
                count,
            });
        }
    }
}

/// Hands the kernel's per-socket RTT histograms to the pipeline.
pub(super) fn read_rtt(src: &mut Source, p: &mut Pipeline) {
    let Some(map) = &src.rtt else { return };
    let now = Clock::monotonic_now();
    let snapshot: Vec<(u64, RttHist)> = map.iter().filter_map(Result::ok).collect();
    for (sock, h) in snapshot {
        p.push(Input::Rtt {
            ts_ns: now,
            sock,
            rtt: Box::new(Rtt {
                slots: h.slots,
                count: h.count,
                sum_us: h.sum_us,
                last_us: h.last_us,
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::{owner, state, tuple};

    #[test]
    fn a_repeated_transition_is_dropped_and_a_new_life_is_not() {
        use TcpState::*;
        let ev = |sock, old, new| state(1, sock, tuple(1, 2), owner(7, "curl"), old, new);
        let mut r = Repeats::default();
        assert!(!r.seen(&ev(1, Close, SynSent), false));
        assert!(!r.seen(&ev(2, Listen, SynRecv), false));
        // The kernel's repeat, a record or two later.
        assert!(r.seen(&ev(1, Close, SynSent), true));
        assert!(!r.seen(&ev(1, SynSent, Close), true));
        // A failed connect tried again on the same socket.
        assert!(!r.seen(&ev(1, Close, SynSent), true));
        // The same change from the first program: a new life of the
        // address whose changes between were lost.
        assert!(!r.seen(&ev(2, Listen, SynRecv), false));
        // Unknown sockets are never repeats.
        assert!(!r.seen(&ev(0, Close, SynSent), true));
        assert!(!r.seen(&ev(0, Close, SynSent), true));
    }
}
