//! Start-up seeding of a live run: sockets from before it started, read
//! from `/proc` on a thread of their own, merged into the pipeline before
//! the events held meanwhile.

use anyhow::{Context as _, Result};

use super::{HOLD_MAX, source::Source};
use crate::{
    cgroups,
    event::{Clock, Event},
    memory,
    pipeline::{Input, Pipeline, Seeds},
    procnet,
};

/// `/proc` seeding on a thread of its own.
pub(super) struct Seeding(std::sync::mpsc::Receiver<Vec<procnet::Seed>>);

impl Seeding {
    /// Starts reading; tuples carry their namespace if `netns` (as the
    /// kernel's events then do).
    pub(super) fn start(netns: bool) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("tcptrace-seed".into())
            .spawn(move || {
                let _ = tx.send(procnet::seed(netns));
            })
            .context("starting the /proc reader")?;
        Ok(Self(rx))
    }

    /// Hands the seeds to the engine once they are read (waiting for them
    /// if `wait`), before the `held` events; returns whether seeding is over.
    pub(super) fn merge(
        &self,
        p: &mut Pipeline,
        held: &[Event],
        wait: bool,
        cg: &mut cgroups::Resolver,
    ) -> bool {
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
            for o in seeds.iter().filter_map(|s| s.owner.as_ref()) {
                cg.name(p, o.cgroup.get());
            }
            p.push(Input::Seeds(Box::new(Seeds {
                seeds: seeds
                    .into_iter()
                    .map(|s| (s.tuple, s.state, s.owner))
                    .collect(),
                coming: held.iter().map(|e| e.tuple).collect(),
                now_ns: Clock::monotonic_now(),
            })));
            memory::release();
        }
        true
    }
}

/// Reads the rings into `held` (all of them in the `last` pass, see
/// [`Source::begin`]) while the seeds are being read.
pub(super) fn hold(src: &mut Source, held: &mut Vec<Event>, last: bool) {
    let cutoff = src.begin(last);
    while held.len() < HOLD_MAX {
        let Some(ev) = src.next_event(cutoff) else {
            break;
        };
        held.push(ev);
    }
}

/// Pushes the held events into the pipeline.
pub(super) fn release(held: &mut Vec<Event>, p: &mut Pipeline, cg: &mut cgroups::Resolver) {
    if held.is_empty() {
        return;
    }
    for ev in held.drain(..) {
        if p.done() {
            break;
        }
        cg.name(p, ev.task.cgroup.get());
        p.push(Input::Event(ev));
    }
    held.shrink_to_fit();
}
