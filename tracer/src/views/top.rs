//! `tcptrace top`: a refreshing per-flow table (owner, flow, state, age,
//! retransmits, resets, handshake latency, RTT) with a census of sockets
//! per state, in total and per network namespace, and live a line of
//! rates from the namespace's own counters since the last refresh. The text sink redraws it in place on a terminal and prints
//! it periodically otherwise; one JSON record per refresh with `--json`.

use std::cmp::Reverse;

use super::{
    Context, Emit, View,
    records::{Rec, TopReport, TopRow},
};
use crate::{
    counters::{Counters, rates::Rates},
    engine::{Engine, flows::Flow},
    event::TcpState,
    hooks::Wants,
};

/// Sort order of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    /// Most retransmits first.
    Retrans,
    /// Slowest handshake first.
    Latency,
    /// Oldest first.
    Age,
}

pub struct Top {
    pub sort: SortBy,
    pub interval_ns: u64,
    /// Rows at most.
    pub limit: usize,
    /// Redraw in place (stdout is a terminal and text mode).
    pub redraw: bool,
    pub rtt: bool,
    /// How long closed flows stay in the table.
    pub linger_ns: u64,
    last_ns: Option<u64>,
    /// The namespace's counters at the last refresh, and the latest.
    counters_then: Option<Counters>,
    counters_now: Option<Counters>,
}

impl Top {
    pub fn new(sort: SortBy, interval_ns: u64, limit: usize, redraw: bool, rtt: bool) -> Self {
        Self {
            sort,
            interval_ns,
            limit,
            redraw,
            rtt,
            linger_ns: crate::engine::Config::default().linger_ns,
            last_ns: None,
            counters_then: None,
            counters_now: None,
        }
    }

    /// The table as it stands at `now_ns`.
    pub fn report(&self, engine: &Engine, now_ns: u64, cx: &Context) -> TopReport {
        let census = engine.census(|f| cx.filter.keeps(f));
        let census_by_netns = engine
            .census_by_netns(|f| cx.filter.keeps(f))
            .into_iter()
            .map(|(netns, c)| (netns, c.into_iter().collect()))
            .collect();
        let mut flows: Vec<&Flow> = engine.flows().filter(|f| cx.filter.keeps(f)).collect();
        match self.sort {
            SortBy::Retrans => flows.sort_by_key(|f| {
                (
                    Reverse(f.extra().retrans.total()),
                    Reverse(f.extra().resets_sent + f.extra().resets_recv),
                    f.start_ns,
                )
            }),
            SortBy::Latency => flows.sort_by_key(|f| (Reverse(f.handshake_ns.get()), f.start_ns)),
            SortBy::Age => flows.sort_by_key(|f| f.start_ns),
        }
        flows.truncate(self.limit);
        let rows = flows
            .iter()
            .map(|f| TopRow {
                owner: f.owner,
                tuple: f.tuple,
                state: f.state,
                role: f.role,
                closed: f.end_ns.get().is_some() && f.state != TcpState::TimeWait,
                age_ms: (f.start_ns != 0).then(|| now_ns.saturating_sub(f.start_ns) / 1_000_000),
                retrans: f.extra().retrans.total(),
                retrans_segs: f.extra().retrans.segs,
                resets_sent: f.extra().resets_sent.into(),
                resets_recv: f.extra().resets_recv.into(),
                handshake_ns: f.handshake_ns.get(),
                rtt_us: f.extra().rtt.as_ref().and_then(|r| r.median_us()),
            })
            .collect();
        let mut transitions: Vec<_> = engine.matrix().iter().map(|(k, n)| (*k, *n)).collect();
        transitions.sort();
        TopReport {
            ts_ns: now_ns,
            census: census.into_iter().collect(),
            census_by_netns,
            rows,
            transitions,
            rtt: self.rtt,
            redraw: self.redraw,
            rates: match (&self.counters_then, &self.counters_now) {
                (Some(a), Some(b)) if b.ts_ns > a.ts_ns => Some(Rates::between(a, b)),
                _ => None,
            },
        }
    }

    /// A refresh was shown: its rates are said.
    fn shown(&mut self) {
        if self.counters_now.is_some() {
            self.counters_then.clone_from(&self.counters_now);
        }
    }
}

impl View for Top {
    fn wants(&self) -> Wants {
        Wants {
            rtt: self.rtt,
            ..Wants::FLOWS
        }
    }

    fn engine_config(&self) -> crate::engine::Config {
        crate::engine::Config {
            linger_ns: self.linger_ns,
            ..crate::engine::Config::default()
        }
    }

    fn on_tick(&mut self, engine: &Engine, now_ns: u64, cx: &Context, out: &mut dyn Emit) {
        let last = *self.last_ns.get_or_insert(now_ns);
        if now_ns < last.saturating_add(self.interval_ns) {
            return;
        }
        self.last_ns = Some(now_ns);
        out.emit(&Rec::Top(&self.report(engine, now_ns, cx)));
        self.shown();
    }

    fn counters(&self) -> Option<bool> {
        Some(false)
    }

    fn on_counters(&mut self, c: &Counters, _out: &mut dyn Emit) {
        if self.counters_then.is_none() {
            self.counters_then = Some(c.clone());
        }
        self.counters_now = Some(c.clone());
    }

    fn finish(&mut self, engine: &Engine, now_ns: u64, cx: &Context, out: &mut dyn Emit) {
        out.emit(&Rec::Top(&self.report(engine, now_ns, cx)));
    }
}
