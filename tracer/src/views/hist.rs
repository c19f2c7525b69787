//! `tcptrace hist`: latency histograms per destination (`addr:port`) or per
//! flow, in each network namespace: handshake latency of connects (exact samples, HDR percentiles), or
//! with `--rtt` the smoothed RTT the kernel samples per segment (log2 slots
//! aggregated in the kernel; percentiles are slot upper bounds).

use std::{collections::BTreeMap, net::SocketAddr};

use hdrhistogram::Histogram;

pub use super::records::Metric;
use super::{
    Context, Emit, View,
    records::{HistGroup, HistReport, Rec},
};
use crate::{
    engine::{Engine, flows::ConnectOutcome},
    event::Tuple,
    hooks::Wants,
};

/// Log2 slots: slot i holds values in [2^(i-1), 2^i - 1] µs (slot 0: 0).
const SLOTS: usize = 64;

#[derive(Clone)]
struct Group {
    local: Option<SocketAddr>,
    remote: SocketAddr,
    slots: [u64; SLOTS],
    count: u64,
    /// Exact samples (handshake); `None` for RTT, which arrives as slots.
    hdr: Option<Histogram<u64>>,
    min_us: u64,
    max_us: u64,
}

impl Group {
    fn new(exact: bool, (local, remote): (Option<SocketAddr>, SocketAddr)) -> Self {
        Self {
            local,
            remote,
            slots: [0; SLOTS],
            count: 0,
            hdr: exact.then(|| Histogram::new(3).expect("3 significant figures is valid")),
            min_us: u64::MAX,
            max_us: 0,
        }
    }

    fn record(&mut self, us: u64) {
        self.slots[slot(us)] += 1;
        self.count += 1;
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
        if let Some(h) = &mut self.hdr {
            let _ = h.record(us);
        }
    }

    fn percentile(&self, p: f64) -> u64 {
        match &self.hdr {
            // HDR gives the highest value equivalent to the sample's (within
            // 0.1 %), which may pass the largest sample: a quantile is never
            // above the maximum nor below the minimum.
            Some(h) => h
                .value_at_quantile(p / 100.0)
                .clamp(self.min_us.min(self.max_us), self.max_us),
            None => {
                let want = ((self.count as f64) * p / 100.0).ceil().max(1.0) as u64;
                let mut seen = 0;
                for (i, &n) in self.slots.iter().enumerate() {
                    seen += n;
                    if seen >= want {
                        return hi(i);
                    }
                }
                0
            }
        }
    }
}

// The kernel's RTT histograms use the same slots.
use tracer_common::{log2_slot, slot_high as hi, slot_low as lo};

fn slot(us: u64) -> usize {
    log2_slot(us, SLOTS)
}

/// A group as text names it: `addr:port`, or `local -> remote` per flow.
pub fn group_name(local: Option<SocketAddr>, remote: SocketAddr) -> String {
    match local {
        Some(l) => format!("{l} -> {remote}"),
        None => remote.to_string(),
    }
}

pub struct Hist {
    pub metric: Metric,
    pub per_flow: bool,
    /// Print (and start over) every this many ns; else only at the end.
    pub interval_ns: Option<u64>,
    last_ns: Option<u64>,
    groups: BTreeMap<Key, Group>,
}

/// A group: its namespace, then its destination (or flow) as text shows
/// it (so one namespace's groups come out in the order of their text).
type Key = (u32, String);

/// The local side (per flow) and the destination of a group.
type Ends = (Option<SocketAddr>, SocketAddr);

impl Hist {
    pub fn new(metric: Metric, per_flow: bool, interval_ns: Option<u64>) -> Self {
        Self {
            metric,
            per_flow,
            interval_ns,
            last_ns: None,
            groups: BTreeMap::new(),
        }
    }

    /// A flow's group (an IPv4 flow on an IPv6 socket is IPv4).
    fn key(&self, t: &Tuple) -> (Key, Ends) {
        let t = t.unmapped();
        let remote = SocketAddr::new(t.raddr, t.rport);
        let local = self.per_flow.then(|| SocketAddr::new(t.laddr, t.lport));
        ((t.netns, group_name(local, remote)), (local, remote))
    }

    /// RTT groups from the engine's current per-flow histograms.
    fn rtt_groups(&self, engine: &Engine, cx: &Context) -> BTreeMap<Key, Group> {
        let mut groups = BTreeMap::new();
        for f in engine.flows() {
            let Some(r) = &f.extra().rtt else {
                continue;
            };
            if !cx.filter.keeps(f) {
                continue;
            }
            let (key, ends) = self.key(&f.tuple);
            let g = groups.entry(key).or_insert_with(|| Group::new(false, ends));
            for (i, &n) in r.slots.iter().enumerate() {
                g.slots[i] += u64::from(n);
            }
            g.count += r.count;
            if let Some(top) = r.slots.iter().rposition(|&n| n > 0) {
                g.max_us = g.max_us.max(hi(top));
            }
        }
        groups
    }

    /// The histograms of this round (none when nothing was measured: a
    /// round is said, and counted by `-c`, all the same).
    fn report(&mut self, engine: &Engine, now_ns: u64, cx: &Context) -> HistReport {
        let groups = match self.metric {
            Metric::Handshake => std::mem::take(&mut self.groups),
            Metric::Rtt => self.rtt_groups(engine, cx),
        };
        let groups: Vec<HistGroup> = groups
            .into_iter()
            .filter(|(_, g)| g.count > 0)
            .map(|((netns, _), g)| {
                let first = g.slots.iter().position(|&n| n > 0).unwrap_or(0);
                let last = g.slots.iter().rposition(|&n| n > 0).unwrap_or(0);
                HistGroup {
                    count: g.count,
                    p50_us: g.percentile(50.0),
                    p90_us: g.percentile(90.0),
                    p99_us: g.percentile(99.0),
                    max_us: g.max_us,
                    buckets: (first..=last).map(|i| (lo(i), hi(i), g.slots[i])).collect(),
                    local: g.local,
                    remote: g.remote,
                    netns,
                }
            })
            .collect();
        HistReport {
            ts_ns: now_ns,
            metric: self.metric,
            per_flow: self.per_flow,
            groups,
        }
    }

    fn print(&mut self, engine: &Engine, now_ns: u64, cx: &Context, out: &mut dyn Emit) {
        out.emit(&Rec::Hist(&self.report(engine, now_ns, cx)));
    }
}

impl View for Hist {
    fn wants(&self) -> Wants {
        Wants {
            rtt: self.metric == Metric::Rtt,
            ..Wants::FLOWS
        }
    }

    fn on_connect(&mut self, o: &ConnectOutcome, _cx: &Context, _out: &mut dyn Emit) {
        if self.metric == Metric::Handshake
            && let Some(l) = o.latency_ns
        {
            let (key, ends) = self.key(&o.tuple);
            self.groups
                .entry(key)
                .or_insert_with(|| Group::new(true, ends))
                .record(l / 1000);
        }
    }

    fn on_tick(&mut self, engine: &Engine, now_ns: u64, cx: &Context, out: &mut dyn Emit) {
        let Some(every) = self.interval_ns else {
            return;
        };
        let last = *self.last_ns.get_or_insert(now_ns);
        if now_ns < last.saturating_add(every) {
            return;
        }
        self.last_ns = Some(now_ns);
        self.print(engine, now_ns, cx, out);
    }

    fn finish(&mut self, engine: &Engine, now_ns: u64, cx: &Context, out: &mut dyn Emit) {
        self.print(engine, now_ns, cx, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::tests::{owner, tuple},
        views::testing::context,
    };

    fn connect(lat_us: u64, rport: u16) -> ConnectOutcome {
        ConnectOutcome {
            ts_ns: 1,
            sock: 1,
            tuple: tuple(40000, rport),
            owner: Some(owner(1, "c")),
            latency_ns: Some(lat_us * 1000),
            errno: None,
        }
    }

    /// Collects the histogram reports a view emits.
    #[derive(Default)]
    struct Reports(Vec<HistReport>);
    impl Emit for Reports {
        fn emit(&mut self, rec: &Rec<'_>) {
            if let Rec::Hist(r) = rec {
                self.0.push((*r).clone());
            }
        }
    }

    #[test]
    fn handshake_buckets_and_percentiles_per_destination() {
        let cx = context();
        let engine = Engine::default();
        let mut h = Hist::new(Metric::Handshake, false, None);
        let mut out = Reports::default();
        for _ in 0..9 {
            h.on_connect(&connect(100, 80), &cx, &mut out);
        }
        h.on_connect(&connect(1_000_000, 80), &cx, &mut out);
        h.on_connect(&connect(50, 443), &cx, &mut out);
        h.finish(&engine, 2, &cx, &mut out);
        assert_eq!(out.0.len(), 1);
        let groups = &out.0[0].groups;
        assert_eq!(groups.len(), 2);
        let d80 = groups
            .iter()
            .find(|g| g.remote == "127.0.0.1:80".parse().unwrap())
            .unwrap();
        assert_eq!((d80.count, d80.p50_us, d80.max_us), (10, 100, 1_000_000));
        assert_eq!(d80.buckets.first(), Some(&(64, 127, 9)));
        assert_eq!(d80.buckets.last().map(|b| (b.0, b.2)), Some((524_288, 1)));
        assert_eq!(d80.buckets.iter().map(|b| b.2).sum::<u64>(), 10);
    }

    #[test]
    fn one_destination_from_two_namespaces_is_two_groups() {
        let cx = context();
        let engine = Engine::default();
        let mut h = Hist::new(Metric::Handshake, false, None);
        let mut out = Reports::default();
        for (netns, us) in [(2, 100), (1, 5_000), (2, 100)] {
            let mut o = connect(us, 80);
            o.tuple.netns = netns;
            h.on_connect(&o, &cx, &mut out);
        }
        h.finish(&engine, 2, &cx, &mut out);
        let g: Vec<_> = out.0[0]
            .groups
            .iter()
            .map(|g| (g.netns, g.remote.to_string(), g.count, g.max_us))
            .collect();
        assert_eq!(
            g,
            [
                (1, "127.0.0.1:80".to_string(), 1, 5_000),
                (2, "127.0.0.1:80".to_string(), 2, 100)
            ]
        );
    }

    #[test]
    fn interval_prints_and_starts_over() {
        let cx = context();
        let engine = Engine::default();
        let mut h = Hist::new(Metric::Handshake, false, Some(1_000));
        let mut out = Reports::default();
        h.on_tick(&engine, 0, &cx, &mut out);
        h.on_connect(&connect(100, 80), &cx, &mut out);
        h.on_tick(&engine, 1_000, &cx, &mut out);
        assert_eq!(out.0.len(), 1);
        h.on_tick(&engine, 2_000, &cx, &mut out);
        assert_eq!(out.0.len(), 2, "a round without samples is a round");
        assert!(out.0[1].groups.is_empty());
        h.finish(&engine, 2_500, &cx, &mut out);
        assert_eq!(out.0.len(), 3, "the end says the last round");
        assert_eq!(out.0[0].groups[0].count, 1);
        assert_eq!(out.0[0].groups[0].buckets, [(64, 127, 1)]);
    }

    #[test]
    fn quantiles_stay_within_the_samples() {
        // As reported: p99 3063.807 ms above a max of 3062.007 ms. HDR's
        // bucket at 3 062 007 us spans values up to 3 063 807 us.
        let cx = context();
        let mut h = Hist::new(Metric::Handshake, false, None);
        let mut out = Reports::default();
        for _ in 0..50 {
            h.on_connect(&connect(3_062_007, 80), &cx, &mut out);
        }
        h.on_connect(&connect(1_001, 80), &cx, &mut out);
        h.finish(&Engine::default(), 2, &cx, &mut out);
        let g = &out.0[0].groups[0];
        assert_eq!(g.max_us, 3_062_007);
        for p in [g.p50_us, g.p90_us, g.p99_us] {
            assert!((1_001..=g.max_us).contains(&p), "{p} in {g:?}");
        }
        assert_eq!(g.p99_us, 3_062_007);
        // One sample: every quantile is that sample.
        let mut h = Hist::new(Metric::Handshake, false, None);
        h.on_connect(&connect(3_062_007, 80), &cx, &mut out);
        h.finish(&Engine::default(), 2, &cx, &mut out);
        let g = &out.0[1].groups[0];
        assert_eq!((g.p50_us, g.p99_us), (3_062_007, 3_062_007));
    }

    #[test]
    fn a_quiet_run_still_ends_with_its_round() {
        // `hist 1 1` on a quiet port: the first round has no samples, and
        // is the one round asked for.
        let cx = context();
        let engine = Engine::default();
        let mut h = Hist::new(Metric::Handshake, false, Some(1_000));
        let mut out = Reports::default();
        h.on_tick(&engine, 0, &cx, &mut out);
        h.on_tick(&engine, 1_000, &cx, &mut out);
        assert_eq!(out.0.len(), 1);
        assert!(out.0[0].groups.is_empty());
        // Without an interval, the end of the run says the round.
        let mut h = Hist::new(Metric::Handshake, false, None);
        h.finish(&engine, 5, &cx, &mut out);
        assert_eq!(out.0.len(), 2);
    }
}
