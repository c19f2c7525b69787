//! The live source: drains the kernel's ring buffer in batches on a short
//! timer (the programs submit without waking us; a wakeup comes only when
//! the ring is filling), decodes, and feeds the [`Pipeline`]; reads the
//! RTT map when asked to; stops on SIGINT/SIGTERM, `--duration`, `--count`
//! or a closed output pipe. Lost events (ring full) are reported, never
//! dropped silently.

use std::{fs::File, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    time::{Instant, sleep, sleep_until},
};
use tracer_common::RttHist;

use crate::{
    engine::flows::Rtt,
    event::{Event, TcpState},
    filter::Filter,
    hooks::{self, Probe},
    memory,
    pipeline::Pipeline,
    procnet,
    sinks::{
        Mode, Output,
        format::{self, Clock},
    },
    views::{Context, View},
    wire,
};

/// How often the ring is drained while events flow and nothing forces a
/// wakeup.
const DRAIN_EVERY: Duration = Duration::from_millis(10);
/// The longest wait when the ring stays empty: each empty drain doubles the
/// wait up to this, so an idle agent wakes twice a second, not 100 times
/// (the first event after a quiet spell shows at most this late; its
/// timestamp is the kernel's).
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// How often the lost counters and the RTT map are read.
const SLOW_EVERY: Duration = Duration::from_secs(1);
/// How long events wait for the /proc seeds at start-up (see `run_async`).
const SEED_HOLD: Duration = Duration::from_millis(150);
/// Events held at most meanwhile (a storm makes 500 000 a second).
const HOLD_MAX: usize = 200_000;

/// Options for a live run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub filter: Filter,
    pub mode: Mode,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    /// Size of the kernel's ring buffer (default [`hooks::RING_BYTES`]).
    pub ring_bytes: Option<u32>,
    /// What the start-up message says is being watched.
    pub what: &'static str,
    /// Write to this file instead of standard output.
    pub output: Option<PathBuf>,
}

struct Source {
    ring: AsyncFd<RingBuf<MapData>>,
    lost: PerCpuArray<MapData, u64>,
    lost_seen: u64,
    /// Kernel recursion misses at start-up and reported so far.
    nested_seen: u64,
    rtt: Option<BpfHashMap<MapData, u64, RttHist>>,
    decode_errors: u64,
}

/// Loads and attaches the programs, then runs `view` until a stop condition.
pub fn run(view: &mut dyn View, opts: RunOptions) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run_async(view, opts))
}

async fn run_async(view: &mut dyn View, opts: RunOptions) -> Result<()> {
    let wants = view.wants();
    let mut probe = Probe::load(
        opts.filter.kernel(),
        wants,
        opts.ring_bytes.unwrap_or(hooks::RING_BYTES),
    )?;
    // Loading parsed the kernel's BTF (the fexit plan) and the object:
    // many megabytes of small allocations, all freed by now.
    memory::release();
    let ring = probe.take_ring()?;
    let mut src = Source {
        // SAFETY: the ring buffer owns its map fd, which stays open and the
        // same for as long as the AsyncFd owns the ring.
        ring: unsafe { AsyncFd::register(ring) }
            .map_err(|e| e.into_parts().1)
            .context("watching the ring buffer")?,
        lost: probe.take_lost()?,
        lost_seen: 0,
        nested_seen: hooks::nested_misses(&probe),
        rtt: if wants.rtt {
            Some(probe.take_rtt()?)
        } else {
            None
        },
        decode_errors: 0,
    };
    let out = match &opts.output {
        Some(p) => Output::to_writer(
            opts.mode,
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => Output::stdout(opts.mode),
    };
    let cx = Context {
        clock: Clock::now(),
        reset_reasons: probe.report.reset_reasons.clone(),
        filter: opts.filter,
    };
    let mut p = Pipeline::new(view, out, cx, opts.count);
    p.view.start(&probe.report, &p.cx, &mut p.out);
    // Sockets from before start-up are read from /proc beside the ring
    // reader. Events are held until the seeds are in, so that the first
    // ones (say, a connection accepted by a listener from before start-up)
    // know their owners; but on a host with a large TCP table (a TIME_WAIT
    // storm) reading /proc takes a second or more, and events do not wait
    // longer than SEED_HOLD for it: the seeds then join late.
    let mut seeding = Some(Seeding::start()?);
    let hold_until = Instant::now() + SEED_HOLD;
    let mut held = Vec::new();
    p.header();
    eprintln!(
        "tcptrace: watching {} (hooks: {}); Ctrl-C to stop",
        opts.what,
        probe.report.summary()
    );

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = opts.duration.map(|d| Instant::now() + d);
    let mut wait = DRAIN_EVERY;
    let mut slow_at = Instant::now() + SLOW_EVERY;
    loop {
        tokio::select! {
            _ = sleep(wait) => {}
            r = src.ring.readable_mut() => { r?.clear_ready(); }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => break,
        }
        if let Some(s) = &seeding {
            // Read the ring first: the seeds must meet every event from
            // before /proc was read, held or processed.
            let holding = Instant::now() < hold_until && held.len() < HOLD_MAX;
            if holding {
                hold(&mut src, &mut held);
            } else {
                release(&mut held, &mut p);
                drain(&mut src, &mut p);
            }
            if s.merge(&mut p, &held, false) {
                seeding = None;
            } else if holding {
                wait = DRAIN_EVERY;
                continue;
            }
        }
        release(&mut held, &mut p);
        wait = if drain(&mut src, &mut p) == 0 {
            (wait * 2).min(IDLE_WAIT)
        } else {
            DRAIN_EVERY
        };
        if Instant::now() >= slow_at {
            slow_at = Instant::now() + SLOW_EVERY;
            check_lost(&mut src, &mut p, &probe);
            read_rtt(&mut src, &mut p);
        }
        p.tick(Clock::monotonic_now());
        if p.done() {
            break;
        }
    }
    // A short run still ends with the census of what was there before.
    if let Some(s) = &seeding
        && !p.out.is_closed()
    {
        hold(&mut src, &mut held);
        s.merge(&mut p, &held, true);
    }
    release(&mut held, &mut p);
    // What the kernel already wrote still counts.
    if !p.done() {
        drain(&mut src, &mut p);
    }
    check_lost(&mut src, &mut p, &probe);
    read_rtt(&mut src, &mut p);
    if src.decode_errors > 0 {
        eprintln!(
            "tcptrace: warning: {} kernel records could not be decoded",
            src.decode_errors
        );
    }
    let unreported = p.finish(Clock::monotonic_now()).close();
    if unreported > 0 {
        eprintln!(
            "tcptrace: warning: {unreported} records dropped because the output was too slow"
        );
    }
    drop(probe);
    Ok(())
}

/// `/proc` seeding on a thread of its own.
struct Seeding(std::sync::mpsc::Receiver<Vec<procnet::Seed>>);

impl Seeding {
    fn start() -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("tcptrace-seed".into())
            .spawn(move || {
                let _ = tx.send(procnet::seed());
            })
            .context("starting the /proc reader")?;
        Ok(Self(rx))
    }

    /// Hands the seeds to the engine once they are read (waiting for them
    /// if `wait`), before the `held` events; returns whether seeding is over.
    fn merge(&self, p: &mut Pipeline<'_>, held: &[Event], wait: bool) -> bool {
        let seeds = if wait {
            self.0.recv().ok()
        } else {
            match self.0.try_recv() {
                Ok(s) => Some(s),
                Err(std::sync::mpsc::TryRecvError::Empty) => return false,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
            }
        };
        if let Some(seeds) = seeds {
            // Only what the filters let through is ever shown; listeners
            // are kept for the owners of the sockets they will accept.
            let filter = &p.cx.filter;
            let wanted = seeds
                .into_iter()
                .filter(|s| {
                    s.state == TcpState::Listen
                        || filter.matches_flow(&s.tuple, s.owner.as_ref(), true)
                })
                .map(|s| (s.tuple, s.state, s.owner));
            let coming = held.iter().map(|e| e.tuple).collect();
            let now = Clock::monotonic_now();
            p.engine.seed_late(wanted, &coming, now);
            memory::release();
        }
        true
    }
}

/// Reads the ring into `held` while the seeds are being read.
fn hold(src: &mut Source, held: &mut Vec<Event>) {
    while held.len() < HOLD_MAX {
        let Some(ev) = src.next_event() else { break };
        held.extend(ev);
    }
}

impl Source {
    /// The next record in the ring, decoded (`Some(None)`: it could not
    /// be, and is counted); `None` when the ring is empty.
    fn next_event(&mut self) -> Option<Option<Event>> {
        let item = self.ring.get_mut().next()?;
        let rec = wire::read_record(&item);
        drop(item);
        let ev = rec.and_then(|w| wire::decode(&w)).ok();
        self.decode_errors += u64::from(ev.is_none());
        Some(ev)
    }
}

/// Feeds the held events to the pipeline.
fn release(held: &mut Vec<Event>, p: &mut Pipeline<'_>) {
    if held.is_empty() {
        return;
    }
    for ev in held.drain(..) {
        if p.done() {
            break;
        }
        p.feed(&ev);
        p.out.flush_if_full(Clock::monotonic_now, &p.cx.clock);
    }
    held.shrink_to_fit();
    p.out.flush_batch(Clock::monotonic_now(), &p.cx.clock);
}

/// Drains everything in the ring, handing output over in batches;
/// returns how many records it read.
fn drain(src: &mut Source, p: &mut Pipeline<'_>) -> usize {
    let mut n = 0;
    while !p.done() {
        let Some(ev) = src.next_event() else { break };
        if let Some(ev) = ev {
            p.feed(&ev);
        }
        n += 1;
        p.out.flush_if_full(Clock::monotonic_now, &p.cx.clock);
    }
    p.out.flush_batch(Clock::monotonic_now(), &p.cx.clock);
    n
}

/// Reports events lost since the last look: those the kernel could not
/// queue (ring full) and those it skipped because one of our programs was
/// already running on that CPU.
fn check_lost(src: &mut Source, p: &mut Pipeline<'_>, probe: &Probe) {
    let total = hooks::lost_total(&src.lost);
    let full = total.saturating_sub(src.lost_seen);
    src.lost_seen = src.lost_seen.max(total);
    let nested_total = hooks::nested_misses(probe);
    let nested = nested_total.saturating_sub(src.nested_seen);
    src.nested_seen = src.nested_seen.max(nested_total);
    for (n, source, why) in [
        (
            full,
            "kernel",
            "the kernel ring buffer was full (the reader fell behind)",
        ),
        (
            nested,
            "kernel-nested",
            "the kernel skipped them while our program was already running on that CPU",
        ),
    ] {
        if n == 0 {
            continue;
        }
        match p.out.mode {
            Mode::Json => {
                format::lost_json(
                    &mut p.out.buf,
                    &p.cx.clock,
                    Clock::monotonic_now(),
                    n,
                    source,
                );
                p.out.flush_blocking();
            }
            Mode::Text => eprintln!("tcptrace: warning: lost {n} events: {why}"),
        }
    }
}

/// Hands the kernel's per-socket RTT histograms to the pipeline.
fn read_rtt(src: &mut Source, p: &mut Pipeline<'_>) {
    let Some(map) = &src.rtt else { return };
    let now = Clock::monotonic_now();
    let snapshot: Vec<(u64, RttHist)> = map.iter().filter_map(Result::ok).collect();
    for (sock, h) in snapshot {
        p.rtt(
            sock,
            now,
            Rtt {
                slots: h.slots,
                count: h.count,
                sum_us: h.sum_us,
                last_us: h.last_us,
            },
        );
    }
}
