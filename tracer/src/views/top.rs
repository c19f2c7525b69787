//! `tcptrace top`: a refreshing per-flow table (owner, flow, state, age,
//! retransmits, resets, handshake latency, RTT) with a census of sockets
//! per state, in total and per network namespace; optionally cut to some
//! states (`--state`), rolled up per owner, remote host or port
//! (`--group`, [`groups`]), in one of three orders ([`order`]). One
//! record per refresh: the screen sink draws it on a terminal, the text
//! sink prints it periodically otherwise, JSON has one line each. Keys
//! pressed on the screen reach [`View::on_key`] as inputs (see
//! [`crate::keys`]) and change the cut; live, a line of rates
//! from the namespace's own counters since the last refresh.

mod groups;
mod order;

pub use groups::{GroupBy, GroupKey, TopGroup};

use super::{
    Context, Emit, View,
    records::{Rec, TopReport, TopRow},
};
use crate::{
    counters::{Counters, rates::Rates},
    engine::{Engine, flows::Flow},
    event::TcpState,
    hooks::Wants,
    keys::Key,
};

/// Sort order of the table (defined with the keys that pick it, so a
/// source that reads keys needs no view).
pub use crate::keys::SortBy;

pub struct Top {
    pub sort: SortBy,
    pub interval_ns: u64,
    /// Rows at most; 0: all.
    pub limit: usize,
    /// Drawn on a screen (stdout is a terminal, text mode).
    pub redraw: bool,
    pub rtt: bool,
    /// How long closed flows stay in the table.
    pub linger_ns: u64,
    /// Only rows in these states (empty: all).
    pub states: Vec<TcpState>,
    /// Rows rolled up by this.
    pub group: Option<GroupBy>,
    /// Frozen by the `p` key: refreshes are not shown.
    pub paused: bool,
    last_ns: Option<u64>,
    rates: groups::Rates,
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
            states: Vec::new(),
            group: None,
            paused: false,
            last_ns: None,
            rates: groups::Rates::default(),
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
        let total_flows = flows.len() as u64;
        flows.retain(|f| order::in_states(f, &self.states));
        let matching_flows = flows.len() as u64;
        let mut groups = match self.group {
            Some(by) => {
                let mut g =
                    self.rates
                        .groups(flows.iter().map(|f| (*f, engine.in_census(f))), by, now_ns);
                order::sort_groups(&mut g, self.sort);
                g
            }
            None => Vec::new(),
        };
        let total_groups = groups.len() as u64;
        order::sort(&mut flows, self.sort);
        if self.limit > 0 {
            flows.truncate(self.limit);
            groups.truncate(self.limit);
        }
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
                retrans_by_kind: f.extra().retrans,
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
            total_flows,
            matching_flows,
            states: self.states.clone(),
            sort: self.sort,
            group: self.group,
            groups,
            total_groups,
            paused: self.paused,
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

    /// Takes a periodic look: rates move on. Only when they can be shown
    /// (grouped, or on a screen where `g` may group at any time): on a
    /// host with 100 000 flows a look costs a hash-map entry per flow.
    fn refresh(&mut self, engine: &Engine, now_ns: u64, cx: &Context) {
        if self.group.is_none() && !self.redraw {
            return;
        }
        self.rates.refresh(
            engine
                .flows()
                .filter(|f| cx.filter.keeps(f))
                .map(|f| (f, engine.in_census(f))),
            now_ns,
        );
    }

    /// What a key changes.
    pub fn press(&mut self, key: Key, engine: &Engine, cx: &Context) {
        match key {
            Key::Sort(s) => self.sort = s,
            Key::State => {
                let current = match self.states[..] {
                    [one] => Some(one),
                    _ => None,
                };
                let census: Vec<_> = engine.census(|f| cx.filter.keeps(f)).into_iter().collect();
                self.states = order::next_state(current, &census).into_iter().collect();
            }
            Key::Group => {
                self.group = match self.group {
                    None => Some(GroupBy::Owner),
                    Some(GroupBy::Owner) => Some(GroupBy::Remote),
                    Some(GroupBy::Remote) => Some(GroupBy::Port),
                    Some(GroupBy::Port) => None,
                }
            }
            Key::Pause => self.paused = !self.paused,
            Key::Quit | Key::Redraw => {}
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
        self.rates.start(last);
        if now_ns < last.saturating_add(self.interval_ns) {
            return;
        }
        self.last_ns = Some(now_ns);
        self.refresh(engine, now_ns, cx);
        if !self.paused {
            out.emit(&Rec::Top(&self.report(engine, now_ns, cx)));
            self.shown();
        }
    }

    fn on_key(&mut self, key: Key, engine: &Engine, cx: &Context, out: &mut dyn Emit) {
        self.press(key, engine, cx);
        out.emit(&Rec::Top(&self.report(engine, engine.now_ns(), cx)));
    }

    fn counters(&self) -> Option<crate::counters::Reading> {
        Some(crate::counters::Reading::Counters)
    }

    fn on_counters(&mut self, c: &Counters, _out: &mut dyn Emit) {
        if self.counters_then.is_none() {
            self.counters_then = Some(c.clone());
        }
        self.counters_now = Some(c.clone());
    }

    fn finish(&mut self, engine: &Engine, now_ns: u64, cx: &Context, out: &mut dyn Emit) {
        self.rates.start(self.last_ns.unwrap_or(now_ns));
        self.refresh(engine, now_ns, cx);
        out.emit(&Rec::Top(&self.report(engine, now_ns, cx)));
    }
}

#[cfg(test)]
mod tests;
