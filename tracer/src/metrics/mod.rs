//! The metrics sink of `tcptrace agent`: a `prometheus-client` registry
//! updated from the same records the other sinks render (it taps the
//! output, see [`crate::sinks::tap`]), served on `/metrics` by [`server`].
//! Names follow Prometheus conventions (`_total` counters, seconds) and
//! the kernel's where they overlap: `tcptrace_retransmitted_segments_total`
//! counts what `RetransSegs` (`node_netstat_Tcp_RetransSegs`) counts.
//! Labels are bounded ([`labels`]).

pub mod labels;
pub mod server;

use std::{borrow::Cow, collections::HashSet, time::Instant};

use prometheus_client::{
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

use crate::{
    engine::flows::Rtt,
    event::TcpState,
    record::Start,
    sinks::{format::errno_name, tap::Tap},
    views::records::{Reason, Rec},
};
use labels::{Capped, Extra, Labeller, Labels};

/// Per-socket RTT histograms remembered at most (to count what is new in
/// the next snapshot); past it they are forgotten and start over.
const RTT_SOCKETS: usize = 100_000;

/// How the metrics are labelled.
#[derive(Clone, Debug)]
pub struct Config {
    /// Ports that stay labels ([`labels::default_ports`] by default).
    pub ports: HashSet<u16>,
    pub extra: Vec<Extra>,
    /// Label sets per family at most.
    pub max_series: usize,
    /// Register the RTT histogram (the agent reads RTTs).
    pub rtt: bool,
}

/// See the module documentation.
pub struct Metrics {
    labeller: Labeller,
    sockets: Family<Labels, Gauge>,
    transitions: Family<Labels, Counter>,
    retrans_segs: Capped<Counter>,
    retrans_failed: Capped<Counter>,
    resets: Capped<Counter>,
    connects: Capped<Counter>,
    handshake: Capped<Histogram>,
    rtt: Histogram,
    lost: Family<Labels, Counter>,
    dropped: Family<Labels, Counter>,
    records: Family<Labels, Counter>,
    hooks: Family<Labels, Gauge>,
    rate: Gauge<f64, std::sync::atomic::AtomicU64>,
    ring_fill: Gauge<f64, std::sync::atomic::AtomicU64>,
    rss: Gauge,
    /// Records counted, and when and at what count the rate was last set.
    events: u64,
    rate_from: (Instant, u64),
    /// The hottest series, looked up once: a storm makes half a million
    /// transitions a second.
    transition_of: foldhash::HashMap<(TcpState, TcpState), Counter>,
    records_of: foldhash::HashMap<&'static str, Counter>,
    rtt_seen: foldhash::HashMap<u64, [u32; tracer_common::RTT_SLOTS]>,
}

fn l(name: &'static str, v: impl Into<Cow<'static, str>>) -> (&'static str, Cow<'static, str>) {
    (name, v.into())
}

impl Metrics {
    /// The metrics and the registry that serves them.
    pub fn new(cfg: &Config) -> (Self, Registry) {
        let mut r = Registry::with_prefix("tcptrace");
        let dropped_series = Counter::default();
        let handshake = Family::<Labels, Histogram>::new_with_constructor(|| {
            // 50 µs to about 3 s.
            Histogram::new(exponential_buckets(50e-6, 2.0, 17))
        });
        let m = Self {
            labeller: Labeller::new(
                cfg.ports.clone(),
                &cfg.extra,
                cfg.max_series,
                dropped_series.clone(),
            ),
            sockets: Family::default(),
            transitions: Family::default(),
            retrans_segs: Capped::new(Family::default()),
            retrans_failed: Capped::new(Family::default()),
            resets: Capped::new(Family::default()),
            connects: Capped::new(Family::default()),
            handshake: Capped::new(handshake),
            // The kernel's log2 slots, in seconds.
            rtt: Histogram::new(
                (1..tracer_common::RTT_SLOTS).map(|i| tracer_common::slot_high(i) as f64 / 1e6),
            ),
            lost: Family::default(),
            dropped: Family::default(),
            records: Family::default(),
            hooks: Family::default(),
            rate: Gauge::default(),
            ring_fill: Gauge::default(),
            rss: Gauge::default(),
            events: 0,
            rate_from: (Instant::now(), 0),
            transition_of: foldhash::HashMap::default(),
            records_of: foldhash::HashMap::default(),
            rtt_seen: foldhash::HashMap::default(),
        };
        let build = Family::<Labels, Gauge>::default();
        build
            .get_or_create(&vec![l("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        r.register("build_info", "tcptrace's version (always 1)", build);
        r.register(
            "sockets",
            "Live TCP sockets per state (census of what tcptrace tracks)",
            m.sockets.clone(),
        );
        r.register(
            "transitions",
            "TCP state transitions, by old and new state",
            m.transitions.clone(),
        );
        r.register(
            "retransmitted_segments",
            "Segments retransmitted (the kernel's RetransSegs), by kind, state and port",
            m.retrans_segs.fam.clone(),
        );
        r.register(
            "retransmit_failures",
            "Retransmit attempts the kernel could not send (Linux 6.17+), by errno and port; never counted as retransmitted segments",
            m.retrans_failed.fam.clone(),
        );
        r.register(
            "resets",
            "Resets sent and received, by direction, reason and port",
            m.resets.fam.clone(),
        );
        r.register(
            "connect_attempts",
            "Connection attempts by outcome (ok or the errno) and port",
            m.connects.fam.clone(),
        );
        r.register_with_unit(
            "handshake_duration",
            "Connect latency (SYN_SENT to ESTABLISHED), by port",
            Unit::Seconds,
            m.handshake.fam.clone(),
        );
        if cfg.rtt {
            r.register_with_unit(
                "rtt",
                "Smoothed RTT samples, in the kernel's log2 buckets",
                Unit::Seconds,
                m.rtt.clone(),
            );
        }
        r.register(
            "lost_events",
            "Events or records that never reached a sink, by source",
            m.lost.clone(),
        );
        r.register(
            "sink_dropped_records",
            "Records a sink's bounded queue dropped, by sink",
            m.dropped.clone(),
        );
        r.register("records", "Records produced, by type", m.records.clone());
        r.register(
            "events_per_second",
            "Records per second over the last second or more",
            m.rate.clone(),
        );
        r.register(
            "hook_attached",
            "Kernel hooks of the plan: attached (1) or tried and refused (0), by hook",
            m.hooks.clone(),
        );
        r.register(
            "ring_fill_ratio",
            "Highest fill of any of the kernel's event rings (one per CPU) over the last second (0 to 1; the programs lose events at 1)",
            m.ring_fill.clone(),
        );
        r.register_with_unit(
            "resident_memory",
            "Resident set size of tcptrace",
            Unit::Bytes,
            m.rss.clone(),
        );
        r.register(
            "series_dropped",
            "Label sets folded into `other` by --max-series",
            dropped_series,
        );
        (m, r)
    }

    /// The resident-memory gauge, set by the server before each scrape.
    pub fn rss_gauge(&self) -> Gauge {
        self.rss.clone()
    }

    /// New samples in a socket's cumulative RTT histogram.
    fn rtt(&mut self, sock: u64, rtt: &Rtt) {
        if self.rtt_seen.len() >= RTT_SOCKETS && !self.rtt_seen.contains_key(&sock) {
            self.rtt_seen.clear();
        }
        let seen = self.rtt_seen.entry(sock).or_default();
        for (i, (now, before)) in rtt.slots.iter().zip(seen.iter_mut()).enumerate() {
            // A smaller count is a reused socket address: start over.
            let new = if now < before { *now } else { now - *before };
            let v = tracer_common::slot_low(i) as f64 / 1e6;
            for _ in 0..new {
                self.rtt.observe(v);
            }
            *before = *now;
        }
    }
}

impl Tap for Metrics {
    fn start(&mut self, start: &Start) {
        // Programs attached; the BTF offsets the plan also lists are not
        // hooks.
        for h in start.hooks.iter().filter(|h| !h.starts_with("BTF")) {
            self.hooks.get_or_create(&vec![l("hook", h.clone())]).set(1);
        }
        for h in start.refused.iter().filter(|h| !h.starts_with("BTF")) {
            self.hooks.get_or_create(&vec![l("hook", h.clone())]).set(0);
        }
    }

    fn cgroup_gone(&mut self, id: u64) {
        self.labeller.cgroup_gone(id);
    }

    fn ring(&mut self, used: u64, size: u64) {
        if size > 0 {
            self.ring_fill.set(used as f64 / size as f64);
        }
    }

    fn cgroup(&mut self, id: u64, info: &crate::cgroups::CgroupInfo) {
        self.labeller.cgroup(id, &info.path);
    }

    fn record(&mut self, rec: &Rec<'_>) {
        let lb = &self.labeller;
        let count = |n: u64| {
            move |c: &Counter| {
                c.inc_by(n);
            }
        };
        match *rec {
            Rec::State { old, new, .. } => {
                let fam = &self.transitions;
                self.transition_of
                    .entry((old, new))
                    .or_insert_with(|| {
                        let ls = vec![l("old", old.name()), l("new", new.name())];
                        fam.get_or_create_owned(&ls)
                    })
                    .inc();
            }
            Rec::Retrans {
                ref flow,
                failed: Some(errno),
                ..
            } => {
                let ls = vec![l("errno", errno_name(errno))];
                let ls = lb.flow(ls, flow.tuple, flow.owner);
                self.retrans_failed.with(lb, ls, count(1));
            }
            Rec::Retrans {
                ref flow,
                state,
                kind,
                segs,
                failed: None,
            } => {
                let ls = vec![l("kind", kind.name()), l("state", state.name())];
                let ls = lb.flow(ls, flow.tuple, flow.owner);
                self.retrans_segs
                    .with(lb, ls, count(u64::from(segs.unwrap_or(1))));
            }
            Rec::Reset {
                ref flow,
                direction,
                reason,
                ..
            } => {
                let reason: Cow<'static, str> = match reason {
                    Some(Reason::Named(r)) => Cow::Owned(r.to_string()),
                    Some(Reason::Code(n)) => Cow::Owned(n.to_string()),
                    None => Cow::Borrowed("unknown"),
                };
                let ls = vec![l("direction", direction.name()), l("reason", reason)];
                let ls = lb.flow(ls, flow.tuple, flow.owner);
                self.resets.with(lb, ls, count(1));
            }
            Rec::Connect(o) => {
                let outcome: Cow<'static, str> = match (o.latency_ns, o.errno) {
                    (Some(_), _) => Cow::Borrowed("ok"),
                    (None, Some(e)) => Cow::Owned(errno_name(e)),
                    (None, None) => Cow::Borrowed("unknown"),
                };
                let ls = lb.flow(vec![l("outcome", outcome)], &o.tuple, o.owner.as_ref());
                self.connects.with(lb, ls, count(1));
                if let Some(ns) = o.latency_ns {
                    let ls = lb.flow(vec![], &o.tuple, o.owner.as_ref());
                    self.handshake.with(lb, ls, |h| h.observe(ns as f64 / 1e9));
                }
            }
            Rec::Census { states, .. } => {
                self.sockets.clear();
                for (s, n) in states {
                    self.sockets
                        .get_or_create(&vec![l("state", s.name())])
                        .set(*n as i64);
                }
            }
            Rec::Rtt { sock, rtt, .. } => self.rtt(sock, rtt),
            Rec::Hist(_)
            | Rec::Top(_)
            | Rec::Event(_)
            | Rec::Stat(_)
            | Rec::Summary(_)
            | Rec::Seeds(_)
            | Rec::Finding(_)
            | Rec::Doctor(_) => {}
        }
        if rec.counts() {
            self.events += 1;
            let fam = &self.records;
            let ty = rec.type_name();
            self.records_of
                .entry(ty)
                .or_insert_with(|| fam.get_or_create_owned(&vec![l("type", ty)]))
                .inc();
        }
    }

    fn lost(&mut self, source: &str, n: u64) {
        self.lost
            .get_or_create(&vec![l("source", source.to_string())])
            .inc_by(n);
    }

    fn dropped(&mut self, sink: &'static str, n: u64) {
        self.dropped.get_or_create(&vec![l("sink", sink)]).inc_by(n);
    }

    fn tick(&mut self) {
        let (since, before) = self.rate_from;
        let secs = since.elapsed().as_secs_f64();
        if secs < 1.0 {
            return;
        }
        let total = self.events;
        self.rate.set((total - before) as f64 / secs);
        self.rate_from = (Instant::now(), total);
    }
}
