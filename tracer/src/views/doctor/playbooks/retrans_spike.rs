//! `retrans_spike`: the namespace's retransmission rate (ΔRetransSegs over
//! ΔOutSegs, the kernel's own counters) against the line for a LAN
//! (0.01 %) or a WAN (0.5 %), split by kind (from the retransmit events
//! and from the TcpExt counters), with the flows and processes that
//! retransmit most. Mostly timeouts (`rto`) means a silent peer or a
//! black hole; mostly fast retransmits or loss probes means loss on the
//! path while ACKs still flow; mostly SYNs means handshakes are dropped.
//! A flow that timed out again and again is reported even when the rate
//! has too few segments to mean anything: a black hole sends little.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{
    Examine, Scene,
    retrans_advice::{ByKind, KernelKinds, advice, dominant, meaning, slot},
};
use crate::{
    counters::Counter,
    engine::{Annotated, flows::ConnectOutcome},
    event::{EventKind, Owner, RetransKind, Tuple},
    views::{
        Context,
        doctor::finding::{Finding, Playbook, Severity, Subject},
    },
};

/// The retransmission rates (percent of segments sent) above which a LAN
/// (sub-millisecond RTTs, no loss but congestion drops) and a WAN are
/// unhealthy, and those at which throughput collapses (at 1 % loss a
/// CUBIC flow gets about a tenth of a clean one's rate).
const LAN_LINE_PCT: f64 = 0.01;
const WAN_LINE_PCT: f64 = 0.5;
const LAN_CRIT_PCT: f64 = 1.0;
const WAN_CRIT_PCT: f64 = 5.0;
/// A rate needs this many segments sent and retransmitted: below, one
/// unlucky segment is a "rate" many times the line (a handful of
/// segments is not a rate).
const MIN_OUT_SEGS: u64 = 500;
const MIN_RETRANS_SEGS: u64 = 10;
/// Timeouts on one flow that make it a silent peer whatever the rate:
/// three RTOs back to back are at least 1.4 s (0.2 + 0.4 + 0.8) without
/// an answer, seconds on a WAN.
const SILENT_RTOS: u64 = 3;
/// The kernel's minimum RTO is 200 ms: timeouts closer than this are
/// not one flow's backed-off timer.
const MIN_RTO_GAP_NS: u64 = 150_000_000;
/// A destination whose shortest handshake takes this long is far (a WAN):
/// its retransmits are judged by the WAN line. The shortest, not the
/// median: under the very loss being judged, a handshake whose SYN was
/// lost takes a second, which measures the loss, not the distance.
const WAN_RTT_NS: u64 = 20_000_000;
/// Flows and destinations tracked at most (a storm must not grow memory).
const MAX_FLOWS: usize = 4096;
const MAX_DESTS: usize = 1024;
/// Flows named in a finding.
const TOP_FLOWS: usize = 3;

struct FlowRt {
    tuple: Tuple,
    owner: Option<Owner>,
    segs: ByKind,
    /// Timeouts backed off one after another (see [`FlowRt::rto`]): the
    /// longest run so far, the current one, and its last timeout and gap.
    rtos: u64,
    streak: u64,
    last_rto_ns: Option<u64>,
    last_gap_ns: u64,
}

impl FlowRt {
    fn total(&self) -> u64 {
        self.segs.iter().sum()
    }

    /// An `rto` retransmit at `ts`. A timeout that backs off (at least
    /// [`MIN_RTO_GAP_NS`] after the previous one and half again the gap
    /// before) extends the run; the slow-start resends that follow a
    /// timeout come an RTT apart, faster and faster, and start a new one.
    fn rto(&mut self, ts: u64) {
        match self.last_rto_ns {
            Some(last) => {
                let gap = ts.saturating_sub(last);
                if gap >= MIN_RTO_GAP_NS && 2 * gap >= 3 * self.last_gap_ns {
                    self.streak += 1;
                } else {
                    self.streak = 1;
                }
                self.last_gap_ns = gap;
            }
            None => self.streak = 1,
        }
        self.last_rto_ns = Some(ts);
        self.rtos = self.rtos.max(self.streak);
    }
}

#[derive(Default)]
pub struct RetransSpike {
    /// By socket and tuple: a socket's memory is soon another socket's
    /// (a client's, then an accepted one's), and the two lives must not
    /// share counts or an owner.
    flows: HashMap<(u64, Tuple), FlowRt>,
    /// Every retransmitted segment seen, by kind (flows past the cap too).
    segs: ByKind,
    /// The shortest handshake by destination, for its distance.
    handshakes: HashMap<IpAddr, u64>,
}

impl Examine for RetransSpike {
    fn on_event(&mut self, a: &Annotated, _cx: &Context) {
        let EventKind::Retrans {
            kind, segs, failed, ..
        } = a.event.kind
        else {
            return;
        };
        if failed.is_some() {
            return;
        }
        let n = u64::from(segs.unwrap_or(1));
        self.segs[slot(kind)] += n;
        let tuple = a.event.tuple.unmapped();
        let key = (a.event.sock, tuple);
        if !self.flows.contains_key(&key) && self.flows.len() >= MAX_FLOWS {
            return;
        }
        let f = self.flows.entry(key).or_insert(FlowRt {
            tuple,
            owner: None,
            segs: ByKind::default(),
            rtos: 0,
            streak: 0,
            last_rto_ns: None,
            last_gap_ns: 0,
        });
        f.owner = a.owner.or(f.owner);
        f.segs[slot(kind)] += n;
        if kind == RetransKind::Rto {
            f.rto(a.event.ts_ns);
        }
    }

    fn on_connect(&mut self, o: &ConnectOutcome) {
        let Some(ns) = o.latency_ns else { return };
        let to = o.tuple.unmapped().raddr;
        if !self.handshakes.contains_key(&to) && self.handshakes.len() >= MAX_DESTS {
            return;
        }
        let v = self.handshakes.entry(to).or_insert(ns);
        *v = (*v).min(ns);
    }

    fn examine(&self, scene: &Scene<'_>) -> Vec<Finding> {
        let rates = scene.rates();
        let retrans = rates.as_ref().and_then(|r| r.delta(Counter::RetransSegs));
        let out = rates.as_ref().and_then(|r| r.delta(Counter::OutSegs));
        let rate = rates.as_ref().and_then(|r| r.retrans_rate_pct());
        let wan = scene.wan || self.mostly_far();
        let (line, crit) = if wan {
            (WAN_LINE_PCT, WAN_CRIT_PCT)
        } else {
            (LAN_LINE_PCT, LAN_CRIT_PCT)
        };
        let enough = retrans.unwrap_or(0) >= MIN_RETRANS_SEGS && out.unwrap_or(0) >= MIN_OUT_SEGS;
        let over = enough && rate.is_some_and(|r| r > line);
        let mut silent: Vec<&FlowRt> = self
            .flows
            .values()
            .filter(|f| f.rtos >= SILENT_RTOS)
            .collect();
        silent.sort_by_key(|f| std::cmp::Reverse(f.rtos));
        if !over && silent.is_empty() {
            return Vec::new();
        }
        let severity = if over && rate.is_some_and(|r| r >= crit) {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let kernel = KernelKinds::of(scene);
        let kind = self.dominant().or(kernel.dominant());
        let secs = scene.duration_s;
        let summary = match (over, rate) {
            (true, Some(r)) => format!(
                "Retransmission rate {r:.2} % over {secs:.0} s ({} line {line} %){}",
                if wan { "WAN" } else { "LAN" },
                kind.map_or(String::new(), |k| format!(", mostly {}", meaning(k))),
            ),
            _ => format!(
                "{} flow{} to {} timed out {SILENT_RTOS} or more times in a row: the peer or path went silent",
                silent.len(),
                if silent.len() == 1 { "" } else { "s" },
                std::net::SocketAddr::new(silent[0].tuple.raddr, silent[0].tuple.rport),
            ),
        };
        let mut f = Finding::new(Playbook::RetransSpike, severity, summary);
        if let (Some(rs), Some(os)) = (retrans, out) {
            let judged = if enough {
                format!(
                    "warning above {line} % ({}), critical at {crit} %",
                    if scene.wan {
                        "--wan"
                    } else if wan {
                        "WAN: the retransmitting peers' shortest handshake is 20 ms or more"
                    } else {
                        "LAN"
                    }
                )
            } else {
                format!(
                    "too few segments for a rate: it is judged from {MIN_OUT_SEGS} sent and {MIN_RETRANS_SEGS} retransmitted"
                )
            };
            f = f
                .fact(
                    "retrans_segs",
                    rs,
                    format!(
                        "{rs} segments retransmitted of {os} sent = {} ({judged})",
                        rate.map_or("no rate".into(), |r| format!("{r:.3} %"))
                    ),
                )
                .fact("out_segs", os, String::new());
            if let Some(r) = rate {
                f = f.fact("rate_pct", round3(r), String::new());
            }
        }
        f = f
            .fact("line_pct", line, String::new())
            .fact("wan", wan, String::new());
        let seen: u64 = self.segs.iter().sum();
        let by_kind: serde_json::Map<String, serde_json::Value> = RetransKind::ALL
            .iter()
            .filter(|&&k| self.segs[slot(k)] > 0)
            .map(|&k| (k.name().to_string(), self.segs[slot(k)].into()))
            .collect();
        let listed: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        f = f.fact(
            "by_kind",
            by_kind,
            format!(
                "traced by kind (segments): {} of {seen}",
                if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(", ")
                }
            ),
        );
        if let Some(k) = kind {
            f = f.fact("dominant", k.name(), String::new());
        }
        f = kernel.facts(f);
        if !silent.is_empty() {
            f = f.fact(
                "silent_flows",
                silent.len(),
                format!(
                    "{} flow{} with {SILENT_RTOS} or more backed-off timeouts in a row each (most: {})",
                    silent.len(),
                    if silent.len() == 1 { "" } else { "s" },
                    silent[0].rtos
                ),
            );
        }
        f = self.who(f);
        let (cause, action, fix) = advice(kind, silent.first().map(|s| s.tuple.raddr));
        vec![f.cause(cause).action(action).fix(fix)]
    }
}

impl RetransSpike {
    /// The kind with most segments retransmitted (ties: the earlier kind).
    fn dominant(&self) -> Option<RetransKind> {
        dominant(&self.segs)
    }

    /// Whether most retransmitted segments went to destinations whose
    /// shortest handshake is a WAN's.
    fn mostly_far(&self) -> bool {
        let (mut far, mut all) = (0u64, 0u64);
        for f in self.flows.values() {
            let n = f.total();
            all += n;
            if self
                .handshakes
                .get(&f.tuple.raddr)
                .is_some_and(|&m| m >= WAN_RTT_NS)
            {
                far += n;
            }
        }
        all > 0 && far * 2 > all
    }

    /// The top flows (with their owners) and the processes behind them.
    fn who(&self, mut f: Finding) -> Finding {
        let mut flows: Vec<&FlowRt> = self.flows.values().collect();
        flows.sort_by(|a, b| {
            b.total()
                .cmp(&a.total())
                .then(a.tuple.lport.cmp(&b.tuple.lport))
        });
        for fl in flows.iter().take(TOP_FLOWS) {
            let mut s = fl.owner.as_ref().map(Subject::owner).unwrap_or_default();
            s.laddr = Some(fl.tuple.laddr);
            s.lport = Some(fl.tuple.lport);
            s.raddr = Some(fl.tuple.raddr);
            s.rport = Some(fl.tuple.rport);
            f = f.subject(s.with_count(fl.total()));
        }
        let mut owners: HashMap<Owner, u64> = HashMap::new();
        for fl in &flows {
            if let Some(o) = fl.owner {
                *owners.entry(o).or_default() += fl.total();
            }
        }
        let top = Subject::owners(owners.iter().map(|(o, n)| (o, *n)), 3);
        if !top.is_empty() {
            let (json, text) = super::processes(&top);
            f = f.fact(
                "by_owner",
                json,
                format!("retransmitted segments by process: {text}"),
            );
        }
        f
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
