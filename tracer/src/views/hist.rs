//! `tcptrace hist`: latency histograms per destination (`addr:port`) or per
//! flow: handshake latency of connects (exact samples, HDR percentiles), or
//! with `--rtt` the smoothed RTT the kernel samples per segment (log2 slots
//! aggregated in the kernel; percentiles are slot upper bounds).

use std::{collections::BTreeMap, io::Write};

use hdrhistogram::Histogram;

use super::{Context, View};
use crate::{
    engine::{Engine, flows::ConnectOutcome},
    event::Tuple,
    hooks::Wants,
    sinks::{
        Mode, Output,
        format::{endpoint, json_str},
    },
};

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Handshake,
    Rtt,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::Rtt => "rtt",
        }
    }
}

/// Log2 slots: slot i holds values in [2^(i-1), 2^i - 1] µs (slot 0: 0).
const SLOTS: usize = 64;

#[derive(Clone)]
struct Group {
    slots: [u64; SLOTS],
    count: u64,
    /// Exact samples (handshake); `None` for RTT, which arrives as slots.
    hdr: Option<Histogram<u64>>,
    max_us: u64,
}

impl Group {
    fn new(exact: bool) -> Self {
        Self {
            slots: [0; SLOTS],
            count: 0,
            hdr: exact.then(|| Histogram::new(3).expect("3 significant figures is valid")),
            max_us: 0,
        }
    }

    fn record(&mut self, us: u64) {
        self.slots[slot(us)] += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
        if let Some(h) = &mut self.hdr {
            let _ = h.record(us);
        }
    }

    fn percentile(&self, p: f64) -> u64 {
        match &self.hdr {
            Some(h) => h.value_at_quantile(p / 100.0),
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

fn slot(us: u64) -> usize {
    ((64 - us.leading_zeros()) as usize).min(SLOTS - 1)
}

fn lo(i: usize) -> u64 {
    if i == 0 { 0 } else { 1 << (i - 1) }
}

fn hi(i: usize) -> u64 {
    if i == 0 { 0 } else { (1u64 << i) - 1 }
}

pub struct Hist {
    pub metric: Metric,
    pub per_flow: bool,
    /// Print (and start over) every this many ns; else only at the end.
    pub interval_ns: Option<u64>,
    last_ns: Option<u64>,
    groups: BTreeMap<String, Group>,
}

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

    fn key(&self, t: &Tuple) -> String {
        if self.per_flow {
            format!(
                "{} -> {}",
                endpoint(t.laddr, t.lport),
                endpoint(t.raddr, t.rport)
            )
        } else {
            endpoint(t.raddr, t.rport)
        }
    }

    /// RTT groups from the engine's current per-flow histograms.
    fn rtt_groups(&self, engine: &Engine, cx: &Context) -> BTreeMap<String, Group> {
        let mut groups = BTreeMap::new();
        for f in engine.flows() {
            let Some(r) = &f.extra().rtt else {
                continue;
            };
            if !cx.filter.matches_flow(&f.tuple, f.owner.as_ref(), true) {
                continue;
            }
            let g = groups
                .entry(self.key(&f.tuple))
                .or_insert_with(|| Group::new(false));
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

    fn print(&mut self, engine: &Engine, now_ns: u64, out: &mut Output, cx: &Context) -> bool {
        let groups = match self.metric {
            Metric::Handshake => std::mem::take(&mut self.groups),
            Metric::Rtt => self.rtt_groups(engine, cx),
        };
        let mut wrote = false;
        for (key, g) in &groups {
            if g.count == 0 {
                continue;
            }
            wrote = true;
            let (p50, p90, p99) = (g.percentile(50.0), g.percentile(90.0), g.percentile(99.0));
            let used = || {
                let first = g.slots.iter().position(|&n| n > 0).unwrap_or(0);
                let last = g.slots.iter().rposition(|&n| n > 0).unwrap_or(0);
                first..=last
            };
            match out.mode {
                Mode::Json => {
                    let _ = write!(
                        out.buf,
                        "{{\"type\":\"hist\",\"ts\":\"{}\",\"metric\":\"{}\",\"key\":",
                        cx.clock.rfc3339(now_ns),
                        self.metric.name()
                    );
                    json_str(&mut out.buf, key);
                    let _ = write!(
                        out.buf,
                        ",\"count\":{},\"p50_us\":{p50},\"p90_us\":{p90},\"p99_us\":{p99},\"max_us\":{},\"buckets\":[",
                        g.count, g.max_us
                    );
                    for (n, i) in used().enumerate() {
                        let _ = write!(
                            out.buf,
                            "{}{{\"lo_us\":{},\"hi_us\":{},\"count\":{}}}",
                            if n > 0 { "," } else { "" },
                            lo(i),
                            hi(i),
                            g.slots[i]
                        );
                    }
                    out.buf.extend_from_slice(b"]}\n");
                }
                Mode::Text => {
                    let ms = |us: u64| us as f64 / 1000.0;
                    let _ = writeln!(
                        out.buf,
                        "{} {key}: {} samples, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
                        if self.per_flow { "flow" } else { "destination" },
                        g.count,
                        ms(p50),
                        ms(p90),
                        ms(p99),
                        ms(g.max_us)
                    );
                    let _ = writeln!(out.buf, "{:>20}         : count     distribution", "usecs");
                    let peak = g.slots.iter().copied().max().unwrap_or(1).max(1);
                    for i in used() {
                        let stars = (g.slots[i] * 40).div_ceil(peak) as usize;
                        let _ = writeln!(
                            out.buf,
                            "{:>12} -> {:<12} : {:<9} |{:<40}|",
                            lo(i),
                            hi(i),
                            g.slots[i],
                            "*".repeat(stars.min(40))
                        );
                    }
                    out.buf.push(b'\n');
                }
            }
            out.record_done();
        }
        wrote
    }
}

impl View for Hist {
    fn wants(&self) -> Wants {
        Wants {
            rtt: self.metric == Metric::Rtt,
            ..Wants::FLOWS
        }
    }

    fn on_connect(&mut self, o: &ConnectOutcome, _out: &mut Output, _cx: &Context) -> bool {
        if self.metric == Metric::Handshake
            && let Some(l) = o.latency_ns
        {
            let key = self.key(&o.tuple);
            self.groups
                .entry(key)
                .or_insert_with(|| Group::new(true))
                .record(l / 1000);
        }
        false
    }

    fn on_tick(&mut self, engine: &Engine, now_ns: u64, out: &mut Output, cx: &Context) -> bool {
        let Some(every) = self.interval_ns else {
            return false;
        };
        let last = *self.last_ns.get_or_insert(now_ns);
        if now_ns < last + every {
            return false;
        }
        self.last_ns = Some(now_ns);
        self.print(engine, now_ns, out, cx)
    }

    fn finish(&mut self, engine: &Engine, now_ns: u64, out: &mut Output, cx: &Context) {
        self.print(engine, now_ns, out, cx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::tests::{owner, tuple},
        views::{testing::render, tests::context},
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

    #[test]
    fn handshake_buckets_and_percentiles_per_destination() {
        let cx = context();
        let engine = Engine::default();
        let mut h = Hist::new(Metric::Handshake, false, None);
        let text = render(Mode::Json, |out| {
            for _ in 0..9 {
                h.on_connect(&connect(100, 80), out, &cx);
            }
            h.on_connect(&connect(1_000_000, 80), out, &cx);
            h.on_connect(&connect(50, 443), out, &cx);
            h.finish(&engine, 2, out, &cx);
        });
        let v: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(v.len(), 2);
        let d80 = v.iter().find(|r| r["key"] == "127.0.0.1:80").unwrap();
        assert_eq!(d80["count"], 10);
        assert_eq!(d80["p50_us"], 100);
        assert_eq!(d80["max_us"], 1_000_000);
        let b = d80["buckets"].as_array().unwrap();
        assert_eq!(b.first().unwrap()["lo_us"], 64);
        assert_eq!(b.first().unwrap()["count"], 9);
        assert_eq!(b.last().unwrap()["lo_us"], 524_288);
        assert_eq!(b.last().unwrap()["count"], 1);
        let total: u64 = b.iter().map(|x| x["count"].as_u64().unwrap()).sum();
        assert_eq!(total, 10);
    }

    #[test]
    fn interval_prints_and_starts_over() {
        let cx = context();
        let engine = Engine::default();
        let mut h = Hist::new(Metric::Handshake, false, Some(1_000));
        let text = render(Mode::Text, |out| {
            h.on_tick(&engine, 0, out, &cx);
            h.on_connect(&connect(100, 80), out, &cx);
            assert!(h.on_tick(&engine, 1_000, out, &cx));
            assert!(!h.on_tick(&engine, 2_000, out, &cx), "nothing new");
            h.finish(&engine, 2_500, out, &cx);
        });
        assert_eq!(
            text.matches("destination 127.0.0.1:80: 1 samples").count(),
            1,
            "{text}"
        );
        assert!(text.contains("64 -> 127"), "{text}");
    }
}
