//! `tcptrace doctor`: watches for a while (the events, the kernel's
//! counters, the engine's sockets, and the socket tables and sysctls at
//! the start and the end: [`crate::counters::Reading::Tables`]) and at
//! the end walks the playbooks
//! ([`playbooks`]) from symptom to evidence to the setting to change. It
//! emits one [`Rec::Finding`] per problem, worst first, and a final
//! [`Rec::Doctor`] verdict whose status is also the exit status.

pub mod finding;
pub mod playbooks;

use std::sync::{
    Arc,
    atomic::{AtomicU8, Ordering},
};

use super::{Context, Emit, Rec, View};
use crate::{
    counters::{Counters, Tables},
    engine::{Annotated, Engine, flows::ConnectOutcome},
    hooks::Wants,
};
use finding::{Finding, Status, Verdict};
use playbooks::{Examine, Options, Scene};

/// The doctor's view of a session.
pub struct Doctor {
    books: Vec<Box<dyn Examine>>,
    opts: Options,
    first: Option<Counters>,
    last: Option<Counters>,
    /// The socket tables and sysctls at the start and at the end (the
    /// first and the last readings that carry them).
    tables_first: Option<Box<Tables>>,
    tables_last: Option<Box<Tables>>,
    start_ns: Option<u64>,
    /// The session's status, for the caller's exit status (the view is
    /// moved into the pipeline).
    status: Arc<AtomicU8>,
}

impl Doctor {
    pub fn new(opts: Options) -> Self {
        Self {
            books: playbooks::all(opts),
            opts,
            first: None,
            last: None,
            tables_first: None,
            tables_last: None,
            start_ns: None,
            status: Arc::new(AtomicU8::new(Status::Healthy as u8)),
        }
    }

    /// Where the session's status lands when it ends: read it with
    /// [`status_of`].
    pub fn status_cell(&self) -> Arc<AtomicU8> {
        self.status.clone()
    }

    /// The findings of the session so far, worst first.
    fn findings(&self, engine: &Engine, now_ns: u64, cx: &Context) -> Vec<Finding> {
        let scene = Scene {
            engine,
            now_ns,
            duration_s: self.duration_s(now_ns),
            first: self.first.as_ref(),
            last: self.last.as_ref(),
            tables_first: self.tables_first.as_deref(),
            tables_last: self.tables_last.as_deref(),
            cx,
            wan: self.opts.wan,
        };
        let mut all: Vec<Finding> = self.books.iter().flat_map(|b| b.examine(&scene)).collect();
        // Stable: within a severity, the playbooks' order, then each
        // playbook's own order (its worst first).
        all.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.playbook.cmp(&b.playbook))
        });
        all
    }

    fn duration_s(&self, now_ns: u64) -> f64 {
        self.start_ns
            .map_or(0.0, |s| now_ns.saturating_sub(s) as f64 / 1e9)
    }
}

/// The status a finished session left in `cell`.
pub fn status_of(cell: &AtomicU8) -> Status {
    match cell.load(Ordering::Relaxed) {
        x if x == Status::Critical as u8 => Status::Critical,
        x if x == Status::Warning as u8 => Status::Warning,
        _ => Status::Healthy,
    }
}

impl View for Doctor {
    fn wants(&self) -> Wants {
        Wants::FLOWS
    }

    fn counters(&self) -> Option<crate::counters::Reading> {
        Some(crate::counters::Reading::Tables)
    }

    fn on_event(&mut self, a: &Annotated, cx: &Context, _out: &mut dyn Emit) {
        self.start_ns.get_or_insert(a.event.ts_ns);
        for b in &mut self.books {
            b.on_event(a, cx);
        }
    }

    fn on_connect(&mut self, o: &ConnectOutcome, _cx: &Context, _out: &mut dyn Emit) {
        for b in &mut self.books {
            b.on_connect(o);
        }
    }

    fn on_counters(&mut self, c: &Counters, _out: &mut dyn Emit) {
        if let Some(t) = &c.tables {
            if self.tables_first.is_none() {
                self.tables_first = Some(t.clone());
            } else {
                self.tables_last = Some(t.clone());
            }
        }
        if self.first.is_none() {
            self.start_ns = Some(self.start_ns.map_or(c.ts_ns, |s| s.min(c.ts_ns)));
            self.first = Some(c.clone());
        } else {
            self.last = Some(c.clone());
        }
    }

    fn on_tick(&mut self, _engine: &Engine, now_ns: u64, _cx: &Context, _out: &mut dyn Emit) {
        self.start_ns.get_or_insert(now_ns);
    }

    fn finish(&mut self, engine: &Engine, now_ns: u64, cx: &Context, out: &mut dyn Emit) {
        let mut findings = self.findings(engine, now_ns, cx);
        for f in &mut findings {
            f.ts_ns = now_ns;
            out.emit(&Rec::Finding(f));
        }
        let status = Status::of(&findings);
        self.status.store(status as u8, Ordering::Relaxed);
        out.emit(&Rec::Doctor(&Verdict {
            ts_ns: now_ns,
            duration_s: self.duration_s(now_ns),
            findings: findings.len(),
            critical: findings
                .iter()
                .filter(|f| f.severity == finding::Severity::Critical)
                .count(),
            status,
            netns: self.first.as_ref().map(|c| c.netns),
        }));
    }
}
