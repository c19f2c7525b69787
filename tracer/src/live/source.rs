//! The ring-buffer side of a live run: reading and decoding records
//! (sampling the ring's fill as it goes), and the kernel's lost counters
//! and RTT map, each pushed through the pipeline's door.

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use tokio::io::unix::AsyncFd;
use tracer_common::RttHist;

use crate::{
    cgroups,
    engine::flows::Rtt,
    event::{Clock, Event},
    hooks::{self, Probe},
    pipeline::{Input, Pipeline},
    record::lost,
    wire,
};

/// Records read between two samples of the ring's fill (a run's first
/// read is sampled too): a stop in the middle of a drain hides at most
/// this many of a full ring.
const FILL_SAMPLE_EVERY: u64 = 16;

/// The kernel's side of a live run: the ring, its counters, and what
/// has been reported of them.
pub(super) struct Source {
    pub(super) ring: AsyncFd<RingBuf<MapData>>,
    pub(super) lost: PerCpuArray<MapData, u64>,
    pub(super) lost_seen: u64,
    /// Kernel recursion misses at start-up and reported so far.
    pub(super) nested_seen: u64,
    /// Events whose fields the kernel would not let us read, reported so far.
    pub(super) unreadable_seen: u64,
    pub(super) rtt: Option<BpfHashMap<MapData, u64, RttHist>>,
    pub(super) decode_errors: u64,
    /// Names owners' cgroups before their first event is pushed.
    pub(super) cgroups: cgroups::Resolver,
    /// The ring's fill, sampled as it is read (None if the positions
    /// could not be mapped: then no fill is reported), and the highest
    /// since it was last reported.
    pub(super) fill: Option<hooks::ring_fill::RingFill>,
    pub(super) fill_high: u64,
    /// Records read since the ring was last found empty.
    pub(super) reads_in_run: u64,
}

impl Source {
    /// Notes the ring's fill at the first read of a run of reads and
    /// every [`FILL_SAMPLE_EVERY`] reads after it. Not once at the top of
    /// the loop: an agent stopped (SIGSTOP, a descheduled VM) after that
    /// sample, or in the middle of a drain, went on to drain a full ring
    /// unseen (the 6.1 VM reported a peak fill of 0.017 after 9 374 events
    /// were lost). Two atomic loads per sample.
    fn sample_fill(&mut self) {
        if let Some(f) = &self.fill {
            self.fill_high = self.fill_high.max(f.used());
        }
    }

    /// The next record in the ring, decoded (`Some(None)`: it could not
    /// be, and is counted); `None` when the ring is empty.
    pub(super) fn next_event(&mut self) -> Option<Option<Event>> {
        if self.reads_in_run.is_multiple_of(FILL_SAMPLE_EVERY) {
            self.sample_fill();
        }
        let Some(item) = self.ring.get_mut().next() else {
            self.reads_in_run = 0;
            return None;
        };
        self.reads_in_run += 1;
        let rec = wire::read_record(&item);
        drop(item);
        let ev = rec.and_then(|w| wire::decode(&w)).ok();
        self.decode_errors += u64::from(ev.is_none());
        Some(ev)
    }
}

/// Drains everything in the ring into the pipeline; returns how many
/// records it read.
pub(super) fn drain(src: &mut Source, p: &mut Pipeline) -> usize {
    let mut n = 0;
    while !p.done() {
        let Some(ev) = src.next_event() else { break };
        if let Some(ev) = ev {
            src.cgroups.name(p, ev.task.cgroup.get());
            p.push(Input::Event(ev));
        }
        n += 1;
    }
    n
}

/// Reports events lost since the last look: those the kernel could not
/// queue (ring full), those it skipped because one of our programs was
/// already running on that CPU, and those with fields our programs could
/// not read.
pub(super) fn check_lost(src: &mut Source, p: &mut Pipeline, probe: &Probe) {
    let total = hooks::lost_total(&src.lost);
    let full = total.saturating_sub(src.lost_seen);
    src.lost_seen = src.lost_seen.max(total);
    let nested_total = hooks::nested_misses(probe);
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
