//! The one door: every source (the live kernel, a recording) only pushes
//! [`Input`]s here, and everything after is the same whatever the source:
//! the engine annotates, the filter is applied (once, here), the view says
//! what happened as records, and the output says it. A recording is the
//! serialized input stream, so replay gives what live gave by construction.

use anyhow::Result;

use crate::{
    counters::Counters,
    engine::{Engine, flows::Rtt},
    event::{Event, Owner, TcpState, Tuple},
    filter::Filter,
    hooks::Wants,
    keys::Key,
    record::Start,
    sinks::{Output, OutputSpec},
    views::{Context, View},
};

/// Everything a source can say.
#[derive(Clone, Debug)]
pub enum Input {
    /// The run begins (first, once).
    Start(Start),
    Event(Event),
    /// A socket's RTT histogram as the kernel keeps it (boxed: it is
    /// large and rare, and every input moves through the door).
    Rtt {
        ts_ns: u64,
        sock: u64,
        rtt: Box<Rtt>,
    },
    /// `count` events never reached us; `source` says why (see
    /// [`crate::sinks::lost`]).
    Lost {
        source: String,
        count: u64,
    },
    /// Sockets that existed before the run.
    Seeds(Box<Seeds>),
    /// The cgroup with this id (in owners' `cgroup`) is at `path` below
    /// the unified hierarchy's root: said once, before the first event
    /// that needs it.
    Cgroup {
        id: u64,
        path: String,
    },
    /// The cgroup with this id is gone (for minutes): its name is
    /// forgotten.
    CgroupGone(u64),
    /// The kernel's event ring was at most `used` of its `size` bytes
    /// full over the last second (live only; see
    /// [`crate::hooks::ring_fill`]).
    Ring {
        used: u64,
        size: u64,
    },
    /// A reading of the kernel's TCP counters (live only; boxed: the
    /// door's other inputs are small).
    Counters(Box<Counters>),
    /// Time passes (the kernel's monotonic clock, or event time in replay).
    Tick(u64),
    /// No more input.
    End(u64),
    /// A key pressed on `top`'s screen (see [`crate::keys`] for why keys
    /// are inputs): `q` ends the run, others go to the view.
    Key(Key),
}

/// Sockets that existed before the run, read from `/proc`.
#[derive(Clone, Debug)]
pub struct Seeds {
    pub seeds: Vec<(Tuple, TcpState, Option<Owner>)>,
    /// Tuples of events already read but not yet pushed, which the seeds
    /// must not overrule.
    pub coming: foldhash::HashSet<Tuple>,
    pub now_ns: u64,
}

/// See the module documentation.
pub struct Pipeline {
    engine: Engine,
    view: Box<dyn View>,
    cx: Context,
    out: Output,
}

impl Pipeline {
    /// A pipeline running `view` over what `filter` lets through into the
    /// output `spec` describes.
    pub fn new(view: Box<dyn View>, filter: Filter, spec: &OutputSpec) -> Result<Self> {
        Ok(Self {
            engine: Engine::new(view.engine_config()),
            cx: Context {
                reset_reasons: Vec::new(),
                filter,
            },
            view,
            out: Output::open(spec)?,
        })
    }

    /// A pipeline into an output made elsewhere (tests).
    pub fn with_output(view: Box<dyn View>, filter: Filter, out: Output) -> Self {
        Self {
            engine: Engine::new(view.engine_config()),
            cx: Context {
                reset_reasons: Vec::new(),
                filter,
            },
            view,
            out,
        }
    }

    /// The hooks the view needs.
    pub fn wants(&self) -> Wants {
        self.view.wants()
    }

    /// Whether the view reads the kernel's counters, and what with them:
    /// the source then pushes [`Input::Counters`].
    pub fn wants_counters(&self) -> Option<crate::counters::Reading> {
        self.view.counters()
    }

    /// The user's filter (the kernel's pre-filter is derived from it).
    pub fn filter(&self) -> &Filter {
        &self.cx.filter
    }

    /// `--count` reached, or the output has gone: the source may stop.
    pub fn done(&self) -> bool {
        self.out.done()
    }

    /// The door.
    pub fn push(&mut self, input: Input) {
        match input {
            Input::Start(s) => {
                self.cx.reset_reasons.clone_from(&s.reset_reasons);
                self.out.start(&s, self.view.columns());
            }
            Input::Event(ev) => {
                let a = self.engine.process(&ev);
                if self.cx.filter.matches(&a) {
                    self.view.on_event(&a, &self.cx, &mut self.out);
                }
                self.outcomes();
            }
            Input::Rtt { ts_ns, sock, rtt } => {
                self.engine.set_rtt(sock, *rtt);
                self.view.on_rtt(sock, ts_ns, &rtt, &mut self.out);
            }
            Input::Lost { source, count } => self.out.lost(&source, count),
            Input::Ring { used, size } => self.out.ring(used, size),
            Input::Cgroup { id, path } => {
                self.cx.filter.learn_cgroup(id, &path);
                self.out.cgroup(id, &path);
            }
            Input::CgroupGone(id) => {
                self.cx.filter.forget_cgroup(id);
                self.out.cgroup_gone(id);
            }
            Input::Seeds(s) => {
                let Seeds {
                    seeds,
                    coming,
                    now_ns,
                } = *s;
                // Only what the filter lets through is ever shown; listeners
                // are kept for the owners of the sockets they will accept.
                let filter = &self.cx.filter;
                let wanted = Seeds {
                    seeds: seeds
                        .into_iter()
                        .filter(|(t, s, o)| {
                            *s == TcpState::Listen || filter.matches_flow(t, o.as_ref())
                        })
                        .collect(),
                    coming,
                    now_ns,
                };
                // A recording keeps them, so replay knows old listeners.
                self.view.on_seeds(&wanted, &mut self.out);
                self.engine.seed_late(wanted.seeds, &wanted.coming, now_ns);
            }
            // Also once `--count` is reached: a summary at the end covers
            // the whole run.
            Input::Counters(mut c) => {
                // The socket tables are cut by the filter like the events
                // (`doctor --port 8080` speaks of those sockets only); the
                // counters are the namespace's and cannot be.
                if let Some(t) = c.tables.as_mut() {
                    let filter = &self.cx.filter;
                    t.retain_sockets(|s| filter.matches_flow(&s.tuple, s.owner.as_ref()));
                }
                self.view.on_counters(&c, &mut self.out)
            }
            Input::Tick(now) => {
                self.engine.tick(now);
                self.outcomes();
                if !self.out.done() {
                    self.view
                        .on_tick(&self.engine, now, &self.cx, &mut self.out);
                }
                self.out.tick(now);
            }
            Input::Key(Key::Quit) => self.out.quit(),
            Input::Key(k) => {
                if !self.out.done() {
                    self.view.on_key(k, &self.engine, &self.cx, &mut self.out);
                    self.out.tick(self.engine.now_ns());
                }
            }
            Input::End(now) => {
                self.engine.advance(now);
                self.engine.finish();
                self.outcomes();
                if !self.out.is_closed() {
                    self.view.finish(&self.engine, now, &self.cx, &mut self.out);
                }
                self.out.tick(now);
            }
        }
    }

    /// Connection outcomes the engine settled, through the filter.
    fn outcomes(&mut self) {
        for o in self.engine.take_outcomes() {
            if !self.out.done() && self.cx.filter.matches_flow(&o.tuple, o.owner.as_ref()) {
                self.view.on_connect(&o, &self.cx, &mut self.out);
            }
        }
    }

    /// Closes the output: says what is left, waits for it to be written,
    /// and reports a write error.
    pub fn finish(self) -> Result<()> {
        self.out.close()
    }
}
