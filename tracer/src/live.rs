//! The live source: drains the kernel's ring buffer in batches on a short
//! timer (the programs submit without waking us; a wakeup comes only when
//! the ring is filling), decodes, runs the engine and the view, and stops on
//! SIGINT/SIGTERM, `--duration`, `--count` or a closed output pipe. Lost
//! events (ring full) are reported, never dropped silently.

use std::time::Duration;

use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    time::{Instant, MissedTickBehavior, interval, sleep_until},
};

use crate::{
    engine::Engine,
    filter::Filter,
    hooks::{self, Probe, Wants},
    procnet,
    sinks::{
        Mode, Output,
        format::{self, Clock},
    },
    views::View,
    wire,
};

/// How often the ring is drained when nothing forces a wakeup.
const DRAIN_EVERY: Duration = Duration::from_millis(10);
/// How often the lost counter is read.
const LOST_EVERY_TICKS: u32 = 10;
/// Records drained before output is handed over.
const BATCH: usize = 4096;

/// Options for a live run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub filter: Filter,
    pub mode: Mode,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    pub wants: Wants,
    /// What the start-up message says is being watched.
    pub what: &'static str,
}

struct Source {
    ring: AsyncFd<RingBuf<MapData>>,
    lost: PerCpuArray<MapData, u64>,
    lost_seen: u64,
}

struct Sinks<'a> {
    engine: Engine,
    view: &'a mut dyn View,
    filter: Filter,
    out: Output,
    clock: Clock,
    written: u64,
    limit: Option<u64>,
    decode_errors: u64,
}

impl Sinks<'_> {
    fn done(&self) -> bool {
        self.limit.is_some_and(|n| self.written >= n) || self.out.is_closed()
    }
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
    let mut probe = Probe::load(opts.filter.kernel(), opts.wants)?;
    let ring = probe.take_ring()?;
    let lost = probe.take_lost()?;
    let mut src = Source {
        // SAFETY: the ring buffer owns its map fd, which stays open and the
        // same for as long as the AsyncFd owns the ring.
        ring: unsafe { AsyncFd::register(ring) }
            .map_err(|e| e.into_parts().1)
            .context("watching the ring buffer")?,
        lost,
        lost_seen: 0,
    };
    let mut engine = Engine::default();
    let now = Clock::monotonic_now();
    for s in procnet::seed() {
        engine.seed(s.tuple, s.state, s.owner, now);
    }
    let mut sinks = Sinks {
        engine,
        view,
        filter: opts.filter,
        out: Output::stdout(opts.mode),
        clock: Clock::now(),
        written: 0,
        limit: opts.count,
        decode_errors: 0,
    };
    if opts.mode == Mode::Text
        && let Some(h) = sinks.view.text_header()
    {
        sinks.out.buf.extend_from_slice(h.trim_end().as_bytes());
        sinks.out.buf.push(b'\n');
        sinks.out.flush_blocking();
    }
    eprintln!(
        "tcptrace: watching {} (hooks: {}); Ctrl-C to stop",
        opts.what,
        probe.report.summary()
    );

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = opts.duration.map(|d| Instant::now() + d);
    let mut tick = interval(DRAIN_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ticks = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => { ticks += 1; }
            r = src.ring.readable_mut() => { r?.clear_ready(); }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => break,
        }
        drain(&mut src, &mut sinks);
        if ticks >= LOST_EVERY_TICKS {
            ticks = 0;
            check_lost(&mut src, &mut sinks);
        }
        if sinks.done() {
            break;
        }
    }
    // What the kernel already wrote still counts.
    if !sinks.done() {
        drain(&mut src, &mut sinks);
    }
    check_lost(&mut src, &mut sinks);
    if sinks.decode_errors > 0 {
        eprintln!(
            "tcptrace: warning: {} kernel records could not be decoded",
            sinks.decode_errors
        );
    }
    let unreported = sinks.out.close();
    if unreported > 0 {
        eprintln!(
            "tcptrace: warning: {unreported} records dropped because the output was too slow"
        );
    }
    drop(probe);
    Ok(())
}

/// Drains everything in the ring, handing output over every [`BATCH`].
fn drain(src: &mut Source, s: &mut Sinks<'_>) {
    let ring = src.ring.get_mut();
    let mut n = 0;
    while !s.done() {
        let Some(item) = ring.next() else { break };
        let rec = wire::read_record(&item);
        drop(item);
        match rec.and_then(|w| wire::decode(&w)) {
            Ok(ev) => {
                let a = s.engine.process(&ev);
                if s.filter.matches(&a) && s.view.on_event(&a, &mut s.out, &s.clock) {
                    s.written += 1;
                }
            }
            Err(_) => s.decode_errors += 1,
        }
        n += 1;
        if n % BATCH == 0 {
            s.out.flush_batch(Clock::monotonic_now(), &s.clock);
        }
    }
    s.out.flush_batch(Clock::monotonic_now(), &s.clock);
}

/// Reports events the kernel could not queue since the last look.
fn check_lost(src: &mut Source, s: &mut Sinks<'_>) {
    let total = hooks::lost_total(&src.lost);
    if total <= src.lost_seen {
        return;
    }
    let n = total - src.lost_seen;
    src.lost_seen = total;
    match s.out.mode {
        Mode::Json => {
            format::lost_json(
                &mut s.out.buf,
                &s.clock,
                Clock::monotonic_now(),
                n,
                "kernel",
            );
            s.out.flush_blocking();
        }
        Mode::Text => eprintln!(
            "tcptrace: warning: lost {n} events: the kernel ring buffer was full (the reader fell behind)"
        ),
    }
}
