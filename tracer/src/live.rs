//! The live source: loads the programs the pipeline's view needs, drains
//! the kernel's ring buffer in batches on a short timer (the programs
//! submit without waking us; a wakeup comes only when the ring is
//! filling), decodes, and pushes inputs through the [`Pipeline`]'s one
//! door: the start, events, RTT snapshots, `/proc` seeds, lost counts,
//! the kernel's counters (for views that show rates) and ticks. Stops on
//! SIGINT/SIGTERM, `--duration`, `--count` or a closed output pipe.

mod seeding;
mod source;

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{Instant, sleep, sleep_until},
};

use crate::{
    counters,
    event::Clock,
    hooks::{self, Probe},
    memory,
    pipeline::{Input, Pipeline},
    record::Start,
    stderr,
};
use seeding::{Seeding, hold, release};
use source::{Source, check_lost, drain, read_rtt};

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
#[derive(Debug)]
pub struct RunOptions {
    pub duration: Option<Duration>,
    /// Size of the kernel's ring buffer (default [`hooks::RING_BYTES`]).
    pub ring_bytes: Option<u32>,
    /// What the start-up message says is being watched.
    pub what: &'static str,
    /// Which connect plan to attach (`--connect-plan`).
    pub connect: hooks::connect::Choice,
    /// Which form of the hooks that have two to attach (`--hook-type`).
    pub forms: hooks::forms::Choice,
    /// Keys pressed on `top`'s screen, pushed as they come.
    pub keys: Option<tokio::sync::mpsc::UnboundedReceiver<crate::keys::Key>>,
    /// Raised on SIGHUP instead of stopping (the agent's log reopens).
    pub reopen: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// Loads and attaches the programs the pipeline's view needs, then pushes
/// what they see into it until a stop condition; closes the pipeline.
pub fn run(p: Pipeline, opts: RunOptions) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run_async(p, opts))
}

async fn run_async(mut p: Pipeline, mut opts: RunOptions) -> Result<()> {
    let wants = p.wants();
    let ring_bytes = opts.ring_bytes.unwrap_or(hooks::RING_BYTES);
    let mut probe = Probe::load(p.filter(), wants, ring_bytes, opts.connect, opts.forms)?;
    // Loading parsed the kernel's BTF (the fexit plan) and the object:
    // many megabytes of small allocations, all freed by now.
    memory::release();
    let netns = probe.report.netns;
    if p.filter().netns.is_some() && !netns {
        bail!(
            "--netns needs each socket's network namespace, and this kernel's BTF does not say where it is (sock_common.skc_net, net.ns.inum; see `tcptrace check`)"
        );
    }
    let mut src = Source::new(&mut probe, wants.rtt)?;
    // Handlers first: whoever sees the start ("watching", or the agent's
    // metrics saying the hooks are attached) may signal us at once.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    // A hangup (the terminal or ssh session went away) ends the run like
    // SIGTERM, flushing what was captured, rather than killing it.
    let mut sighup = signal(SignalKind::hangup())?;
    // Hooks of the plan attached, and those tried and refused.
    let (attached, refused): (Vec<_>, Vec<_>) =
        probe.report.hooks.iter().partition(|h| h.result.is_ok());
    let names = |hs: Vec<&hooks::HookStatus>| hs.into_iter().map(|h| h.hook.clone()).collect();
    p.push(Input::Start(Start {
        clock: Clock::now(),
        ts_ns: Clock::monotonic_now(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        hooks: names(attached),
        refused: names(refused),
        connect_plan: probe.report.connect.map(|c| c.name().to_string()),
        reset_reasons: probe.report.reset_reasons.clone(),
    }));
    // The namespace's own counters, for views that show rates.
    let counters = counters::source::for_live(&p);
    counters::source::push(counters.as_ref(), &mut p, true);
    // Sockets from before start-up are read from /proc beside the ring
    // reader. Events are held until the seeds are in, so that the first
    // ones (say, a connection accepted by a listener from before start-up)
    // know their owners; but on a host with a large TCP table (a TIME_WAIT
    // storm) reading /proc takes a second or more, and events do not wait
    // longer than SEED_HOLD for it: the seeds then join late. The wait is
    // counted from the first event held, not from start-up: on a slow
    // machine (a VM under emulation) /proc takes longer than SEED_HOLD to
    // read, and the first events come later too.
    if let Some(w) = hooks::privileges::seeding_warning() {
        stderr::say(format_args!("warning: {w}"));
    }
    let mut seeding = Some(Seeding::start(netns)?);
    let mut hold_until: Option<Instant> = None;
    let mut held = Vec::new();
    stderr::say(format_args!(
        "watching {} (hooks: {}); {} to stop",
        opts.what,
        probe.report.summary(),
        if opts.keys.is_some() { "q" } else { "Ctrl-C" }
    ));
    let mut keys = opts.keys.take();

    let deadline = opts.duration.map(|d| Instant::now() + d);
    let mut wait = DRAIN_EVERY;
    let mut slow_at = Instant::now() + SLOW_EVERY;
    // Each timer made once and reset in place: a timer made in the loop
    // and dropped when another branch won cost a wakeup of the runtime
    // per drain (a write to its eventfd, and one more epoll_wait).
    let nap = sleep(wait);
    let end = sleep_until(deadline.unwrap_or_else(Instant::now));
    tokio::pin!(nap, end);
    loop {
        nap.as_mut().reset(Instant::now() + wait);
        tokio::select! {
            _ = &mut nap => {}
            r = src.woken() => r?,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => match &opts.reopen {
                Some(r) => r.store(true, std::sync::atomic::Ordering::Relaxed),
                None => break,
            },
            Some(k) = next_key(&mut keys) => {
                p.push(Input::Key(k));
                if p.done() {
                    break;
                }
                continue;
            }
            _ = &mut end, if deadline.is_some() => break,
        }
        if let Some(s) = &seeding {
            // Read the ring first: the seeds must meet every event from
            // before /proc was read, held or processed; seeds that are in
            // go before the events held, whether or not they are still
            // being held.
            if held.len() >= HOLD_MAX {
                release(&mut held, &mut p, &mut src.cgroups);
            }
            hold(&mut src, &mut held, false);
            if hold_until.is_none() && !held.is_empty() {
                hold_until = Some(Instant::now() + SEED_HOLD);
            }
            if s.merge(&mut p, &held, false, &mut src.cgroups) {
                seeding = None;
            } else if hold_until.is_none_or(|t| Instant::now() < t) && held.len() < HOLD_MAX {
                wait = DRAIN_EVERY;
                continue;
            }
        }
        release(&mut held, &mut p, &mut src.cgroups);
        wait = if drain(&mut src, &mut p, false) == 0 && !src.holding() {
            (wait * 2).min(IDLE_WAIT)
        } else {
            DRAIN_EVERY
        };
        if Instant::now() >= slow_at {
            slow_at = Instant::now() + SLOW_EVERY;
            check_lost(&mut src, &mut p, &probe, false);
            if let Some(used) = &mut src.fill_high {
                p.push(Input::Ring {
                    used: std::mem::take(used),
                    size: src.ring_bytes,
                });
            }
            read_rtt(&mut src, &mut p);
            counters::source::push(counters.as_ref(), &mut p, false);
        }
        src.cgroups.retry(&mut p);
        p.push(Input::Tick(Clock::monotonic_now()));
        if p.done() {
            break;
        }
    }
    // A short run still ends with the census of what was there before.
    if let Some(s) = &seeding
        && !p.done()
    {
        hold(&mut src, &mut held, true);
        s.merge(&mut p, &held, true, &mut src.cgroups);
    }
    release(&mut held, &mut p, &mut src.cgroups);
    // What the kernel already wrote still counts.
    if !p.done() {
        drain(&mut src, &mut p, true);
    }
    check_lost(&mut src, &mut p, &probe, true);
    read_rtt(&mut src, &mut p);
    counters::source::push(counters.as_ref(), &mut p, true);
    if src.decode_errors > 0 {
        stderr::say(format_args!(
            "warning: {} kernel records could not be decoded",
            src.decode_errors
        ));
    }
    p.push(Input::End(Clock::monotonic_now()));
    drop(probe);
    p.finish()
}

/// The next key pressed, if keys are read (never, otherwise).
async fn next_key(
    keys: &mut Option<tokio::sync::mpsc::UnboundedReceiver<crate::keys::Key>>,
) -> Option<crate::keys::Key> {
    match keys {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
