//! The source of `tcptrace stat`: no eBPF, only the kernel's counters. It
//! pushes the start, a first reading (the baseline), then a reading and a
//! tick every interval through the pipeline's one door, until `COUNT`
//! intervals, `--duration`, or a signal; a run stopped by a signal or
//! `--duration` ends with the interval so far, so the records add up to
//! the whole run.

use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{Instant, sleep_until},
};

use super::{Reading, netns::Reader};
use crate::{
    event::Clock,
    pipeline::{Input, Pipeline},
    record::Start,
};

/// Options of a `stat` run.
#[derive(Clone, Debug)]
pub struct StatOptions {
    pub interval: Duration,
    pub duration: Option<Duration>,
    /// `--netns` as given (a path, a process id or an inode); `None`: ours.
    pub netns: Option<String>,
}

/// Reads the counters into `p` until a stop condition; closes it.
pub fn run(p: Pipeline, opts: StatOptions) -> Result<()> {
    let reader = match &opts.netns {
        Some(arg) => Reader::open(arg)?,
        None => Reader::own()?,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run_async(p, reader, opts))
}

async fn run_async(mut p: Pipeline, reader: Reader, opts: StatOptions) -> Result<()> {
    let what = p.wants_counters().unwrap_or(Reading::Counters);
    p.push(Input::Start(Start {
        clock: Clock::now(),
        ts_ns: Clock::monotonic_now(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        ..Start::default()
    }));
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    p.push(Input::Counters(Box::new(reader.read(what)?)));
    eprintln!(
        "tcptrace: watching the TCP counters of network namespace {} every {} s; Ctrl-C to stop",
        reader.netns,
        opts.interval.as_secs_f64()
    );
    let start = Instant::now();
    let deadline = opts.duration.map(|d| start + d);
    let mut next = start + opts.interval;
    loop {
        let wake = deadline.map_or(next, |d| d.min(next));
        let signalled = tokio::select! {
            _ = sleep_until(wake) => false,
            _ = sigint.recv() => true,
            _ = sigterm.recv() => true,
            _ = sighup.recv() => true,
        };
        let stop = signalled || deadline.is_some_and(|d| Instant::now() >= d);
        // Stopped early: the interval so far.
        p.push(Input::Counters(Box::new(reader.read(what)?)));
        p.push(Input::Tick(Clock::monotonic_now()));
        if stop || p.done() {
            break;
        }
        // A late wakeup (a stopped process) skips the intervals it missed
        // rather than printing them all at once.
        while next <= Instant::now() {
            next += opts.interval;
        }
    }
    p.push(Input::End(Clock::monotonic_now()));
    p.finish()
}

/// For a live run whose view reads the counters: a reader of the
/// namespace being watched (the `--netns` one, else ours) and what the
/// view wants read. A namespace that cannot be read costs only the
/// rates, with a warning.
pub fn for_live(p: &Pipeline) -> Option<(Reader, Reading)> {
    let what = p.wants_counters()?;
    let reader = match p.filter().netns {
        Some(inode) => Reader::by_inode(inode),
        None => Reader::own(),
    };
    match reader {
        Ok(r) => Some((r, what)),
        Err(e) => {
            eprintln!("tcptrace: warning: no rates from the kernel's counters: {e:#}");
            None
        }
    }
}

/// Pushes a reading (a live run's; one that fails is left out). `edge`:
/// the first or the last of the run, the only ones that carry the
/// [`Reading::Tables`] a view may ask for (the others carry the census).
pub fn push(reader: Option<&(Reader, Reading)>, p: &mut Pipeline, edge: bool) {
    if let Some((r, what)) = reader
        && let Ok(c) = r.read(if edge {
            *what
        } else {
            (*what).min(Reading::Census)
        })
    {
        p.push(Input::Counters(Box::new(c)));
    }
}
