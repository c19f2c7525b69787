//! From runs to the report: medians and ratios against the baseline of the
//! same invocation, the goals with their measured values, the markdown of
//! BENCHMARKS.md and the raw JSON of bench/results.json.

use std::collections::BTreeMap;

use serde_json::json;

use super::markdown::int;
pub use super::markdown::markdown;
#[cfg(test)]
use super::markdown::num;
use super::{
    configs::{CONFIGS, Kind, Watch},
    extras::{Calibration, Replay, Startup},
    flows::FlowsMem,
    host::Machine,
    kcost,
    workloads::Run,
};

/// Two-sided 95 % quantiles of Student's t for 1 to 30 degrees of freedom
/// (a table by hand: one quantile is not worth a statistics crate).
const T95: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// The 95 % confidence interval of the mean of `xs` (Student's t); None
/// for fewer than two values.
pub fn ci95(xs: &[f64]) -> Option<(f64, f64)> {
    let n = xs.len();
    if n < 2 {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = T95.get(n - 2).copied().unwrap_or(1.96);
    let half = t * (var / n as f64).sqrt();
    Some((mean - half, mean + half))
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One (workload, configuration) over every round.
#[derive(Clone, Debug)]
pub struct Summary {
    pub workload: String,
    pub config: &'static str,
    pub is_tcptrace: bool,
    pub runs: usize,
    pub unit: &'static str,
    pub rate: f64,
    pub rate_min: f64,
    pub rate_max: f64,
    /// `baseline median / rate median - 1`, in percent.
    pub slowdown_pct: Option<f64>,
    /// The 95 % confidence interval of the mean of the rounds' own
    /// slowdowns (each run against the baseline run of its round), in
    /// percent; None with fewer than two rounds.
    pub slowdown_ci: Option<(f64, f64)>,
    /// Totals over the rounds: what it printed (segments for tcptrace
    /// retrans) and what it should have.
    pub seen: Option<f64>,
    pub expected: Option<f64>,
    pub lost_by: BTreeMap<String, u64>,
    /// Tracer CPU (attached to drained) per event the workload made.
    pub cpu_us_per_event: Option<f64>,
    /// Tracer CPU over the same span, in % of one core.
    pub cpu_pct: Option<f64>,
    pub wakeups_per_sec: Option<f64>,
    pub rss_peak_mb: f64,
    pub rss_mb: f64,
    pub foreign_runs: usize,
    pub killed_runs: usize,
}

impl Summary {
    pub fn lost(&self) -> u64 {
        self.lost_by.values().sum()
    }
}

/// Summaries in run order of workloads, configurations in table order.
pub fn summarize(runs: &[Run]) -> Vec<Summary> {
    let mut workloads: Vec<&str> = Vec::new();
    for r in runs {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    let mut out = Vec::new();
    for w in workloads {
        let of = |c: &str| -> Vec<&Run> {
            runs.iter()
                .filter(|r| r.workload == w && r.config.name == c)
                .collect()
        };
        let base = of("none");
        let base = (!base.is_empty()).then(|| median(base.iter().map(|r| r.rate).collect()));
        for cfg in CONFIGS {
            let rs = of(cfg.name);
            if rs.is_empty() {
                continue;
            }
            let tracer = !matches!(cfg.kind, Kind::None);
            let rates: Vec<f64> = rs.iter().map(|r| r.rate).collect();
            let rate = median(rates.clone());
            let sum = |f: &dyn Fn(&Run) -> Option<f64>| -> Option<f64> {
                let v: Vec<f64> = rs.iter().filter_map(|r| f(r)).collect();
                (!v.is_empty()).then(|| v.iter().sum())
            };
            let seen = sum(&|r| r.sample.segs.or(r.sample.events).map(|v| v as f64));
            let cpu: f64 = rs.iter().map(|r| r.sample.cpu_secs).sum();
            let wall: f64 = rs.iter().map(|r| r.sample.wall_secs).sum();
            let kernel = sum(&|r| r.kernel_events).filter(|k| *k > 0.0);
            let mut lost_by = BTreeMap::new();
            for r in &rs {
                for (k, v) in &r.sample.lost_by {
                    *lost_by.entry(k.clone()).or_default() += v;
                }
            }
            out.push(Summary {
                workload: w.to_string(),
                config: cfg.name,
                is_tcptrace: matches!(cfg.kind, Kind::Tcptrace(_)),
                runs: rs.len(),
                unit: rs[0].unit,
                rate,
                rate_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
                rate_max: rates.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                slowdown_pct: base
                    .filter(|_| tracer && w != "idle")
                    .map(|b| (b / rate - 1.0) * 100.0),
                slowdown_ci: if tracer && w != "idle" {
                    let paired: Vec<f64> = rs
                        .iter()
                        .filter_map(|r| {
                            let b = runs.iter().find(|b| {
                                b.workload == w && b.round == r.round && b.config.name == "none"
                            })?;
                            Some((b.rate / r.rate - 1.0) * 100.0)
                        })
                        .collect();
                    ci95(&paired)
                } else {
                    None
                },
                seen: seen.filter(|_| cfg.watch != Watch::Summary),
                expected: sum(&|r| r.expected),
                lost_by,
                cpu_us_per_event: kernel.filter(|_| tracer).map(|k| cpu / k * 1e6),
                cpu_pct: (tracer && wall > 0.0).then(|| cpu / wall * 100.0),
                wakeups_per_sec: (tracer && wall > 0.0)
                    .then(|| rs.iter().map(|r| r.sample.wakeups).sum::<u64>() as f64 / wall),
                rss_peak_mb: rs.iter().map(|r| r.sample.rss_peak_kb).max().unwrap_or(0) as f64
                    / 1024.0,
                rss_mb: median(rs.iter().map(|r| r.sample.rss_kb as f64).collect()) / 1024.0,
                foreign_runs: rs.iter().filter(|r| !r.foreign.is_empty()).count(),
                killed_runs: rs.iter().filter(|r| r.sample.killed).count(),
            });
        }
    }
    out
}

/// A goal, its measured value and whether it was met (`None`: not measured).
pub struct Goal {
    pub what: String,
    pub measured: String,
    pub met: Option<bool>,
}

/// Everything measured in one invocation.
pub struct Results<'a> {
    pub machine: &'a Machine,
    pub rounds: usize,
    pub quick: bool,
    pub secs: f64,
    pub runs: &'a [Run],
    pub summaries: &'a [Summary],
    pub calibration: Option<&'a Calibration>,
    pub startup: &'a [Startup],
    pub replay: &'a [Replay],
    pub flows: &'a [FlowsMem],
}

pub(super) fn lost_text(s: &Summary) -> String {
    if s.lost_by.is_empty() {
        return "0".into();
    }
    let parts: Vec<String> = s.lost_by.iter().map(|(k, v)| format!("{v} {k}")).collect();
    parts.join(", ")
}

/// Spawn to attached of the tcptrace runs of the matrix, which start before
/// their workload: (median, worst).
pub(super) fn quiet_ready_ms(runs: &[Run]) -> Option<(f64, f64)> {
    let v: Vec<f64> = runs
        .iter()
        .filter(|x| matches!(x.config.kind, Kind::Tcptrace(_)) && x.workload != "idle")
        .map(|x| x.sample.ready_ms)
        .collect();
    let max = v.iter().copied().fold(0.0, f64::max);
    (!v.is_empty()).then(|| (median(v), max))
}

pub fn goals(r: &Results) -> Vec<Goal> {
    let s = r.summaries;
    let mut g = Vec::new();
    let storms = |c: &str| -> Vec<&Summary> {
        s.iter()
            .filter(|x| x.workload.starts_with("storm") && x.config == c)
            .collect()
    };
    for c in [
        "tcptrace states",
        "tcptrace states --json",
        "tcptrace retrans",
        "tcptrace retrans --json",
    ] {
        let xs = storms(c);
        if xs.is_empty() {
            continue;
        }
        let measured: Vec<String> = xs
            .iter()
            .map(|x| {
                format!(
                    "{}: {:+.1} %{}, lost {}",
                    x.workload.trim_start_matches("storm "),
                    x.slowdown_pct.unwrap_or(f64::NAN),
                    x.slowdown_ci
                        .map(|(lo, hi)| format!(" (95 % CI {lo:+.1} to {hi:+.1} %)"))
                        .unwrap_or_default(),
                    lost_text(x)
                )
            })
            .collect();
        g.push(Goal {
            what: format!("storm at full rate, `{c}`: ≤ 5 % slowdown, 0 lost"),
            measured: measured.join("; "),
            // Met only when the interval's top is under 5 % too (the
            // median alone, when there is no interval).
            met: Some(xs.iter().all(|x| {
                let top = x.slowdown_ci.map(|(_, hi)| hi).or(x.slowdown_pct);
                top.is_some_and(|v| v <= 5.0) && x.lost() == 0
            })),
        });
    }
    let worst = |xs: Vec<(&Summary, f64)>| {
        xs.into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(x, v)| (format!("{} under {}", x.config, x.workload), v))
    };
    let stream: Vec<(&Summary, f64)> = s
        .iter()
        .filter(|x| x.workload.starts_with("storm") && x.is_tcptrace)
        .filter(|x| x.config.contains("states") || x.config.contains("retrans"))
        .filter_map(|x| Some((x, x.cpu_us_per_event?)))
        .collect();
    if let Some((who, v)) = worst(stream) {
        g.push(Goal {
            what: "tracer CPU ≤ 0.3 µs per event, streaming views (storm; user + system time of the tcptrace process)".into(),
            measured: format!(
                "worst {v:.2} µs ({who}){}",
                r.replay
                    .iter()
                    .find(|x| x.view == "states" && x.encoding == "binary")
                    .and_then(|x| x.instr_per_event)
                    .map_or(String::new(), |i| format!(
                        "; replay of a recorded storm through `states`: {i:.0} instructions per event (callgrind)"
                    ))
            ),
            met: Some(v <= 0.3),
        });
    }
    let rss: Vec<(&Summary, f64)> = s
        .iter()
        .filter(|x| x.is_tcptrace)
        .map(|x| (x, x.rss_peak_mb))
        .collect();
    if let Some((who, v)) = worst(rss) {
        g.push(Goal {
            what: "RSS ≤ 30 MB (peak, every tcptrace run)".into(),
            measured: format!("worst {v:.1} MB ({who})"),
            met: Some(v <= 30.0),
        });
    }
    if let Some(worst) = r.flows.iter().max_by_key(|x| x.rss_kb) {
        g.push(Goal {
            what: format!(
                "RSS ≤ 30 MB with {} live flows (sockets)",
                int(worst.sockets as f64)
            ),
            measured: format!(
                "worst {:.1} MB (`{}` started {} they opened; anonymous {:.1} MB, the rest the mapped ring buffer and the binary)",
                worst.rss_kb as f64 / 1024.0,
                worst.config,
                worst.started,
                worst.anon_kb as f64 / 1024.0
            ),
            met: Some(worst.rss_kb as f64 / 1024.0 <= 30.0),
        });
    }
    let idle: Vec<(&Summary, f64)> = s
        .iter()
        .filter(|x| x.workload == "idle" && x.is_tcptrace)
        .map(|x| (x, x.rate))
        .collect();
    if let Some((who, v)) = worst(idle) {
        g.push(Goal {
            what: "idle CPU < 0.1 % of a core".into(),
            measured: format!("worst {v:.3} % ({who})"),
            met: Some(v < 0.1),
        });
    }
    if !r.startup.is_empty() {
        let first: Vec<f64> = r.startup.iter().map(|x| x.first_event_ms).collect();
        let m = median(first.clone());
        let max = first.iter().copied().fold(0.0, f64::max);
        let quiet = quiet_ready_ms(r.runs);
        g.push(Goal {
            what: "first event within 300 ms of start, under 2 000 new connections/s (median of the tries)".into(),
            measured: format!(
                "median {m:.0} ms, worst {max:.0} ms (attached in {} ms median when started before its workload)",
                quiet.map_or("-".into(), |(m, _)| format!("{m:.0}"))
            ),
            met: Some(m <= 300.0),
        });
    }
    g.extend(kcost::goals(r.runs));
    // The engine path: views that print a summary, not a line per event.
    let engine_views = ["top", "hist", "connect"];
    let rate = |x: &&Replay| x.events as f64 / x.secs;
    let slowest = |encoding: &str| {
        r.replay
            .iter()
            .filter(|x| x.encoding == encoding && engine_views.contains(&x.view))
            .min_by(|a, b| rate(a).total_cmp(&rate(b)))
    };
    if let Some(worst) = slowest("binary") {
        let json = slowest("json").map_or(String::new(), |j| {
            format!(
                "; from JSON Lines {:.2} M events/s (`{}`)",
                rate(&j) / 1e6,
                j.view
            )
        });
        g.push(Goal {
            what: "replay ≥ 5 M events/s on one core, engine path (`top`, `hist`, `connect`)".into(),
            measured: format!(
                "from a binary recording at least {:.2} M events/s (`{}`, decoding and process start included){json}",
                rate(&worst) / 1e6,
                worst.view
            ),
            met: Some(rate(&worst) >= 5e6),
        });
    }
    g
}

pub fn raw_json(r: &Results) -> serde_json::Value {
    let m = r.machine;
    json!({
        "machine": {
            "cores": m.cores, "cpu": m.cpu, "mem_gib": m.mem_gib,
            "kernel": m.kernel, "commit": m.commit, "dirty": m.dirty,
        },
        "rounds": r.rounds,
        "quick": r.quick,
        "secs": r.secs,
        "calibration": r.calibration.map(|c| json!({
            "fin": {"per_conn": c.fin.per_conn, "fixed": c.fin.fixed},
            "rst": {"per_conn": c.rst.per_conn, "fixed": c.rst.fixed},
            "points": c.points.iter().map(|(rst, n, counted)| json!({
                "rst": rst, "conns": n, "transitions": counted,
            })).collect::<Vec<_>>(),
        })),
        "runs": r.runs.iter().map(|x| json!({
            "workload": x.workload,
            "config": x.config.name,
            "round": x.round,
            "rate": x.rate,
            "unit": x.unit,
            "expected": x.expected,
            "kernel_events": x.kernel_events,
            "events": x.sample.events,
            "segs": x.sample.segs,
            "lost": x.sample.lost_by,
            "cpu_secs": x.sample.cpu_secs,
            "wall_secs": x.sample.wall_secs,
            "cpu_total_secs": x.sample.cpu_total_secs,
            "wakeups": x.sample.wakeups,
            "rss_peak_kb": x.sample.rss_peak_kb,
            "rss_kb": x.sample.rss_kb,
            "ready_ms": x.sample.ready_ms,
            "killed": x.sample.killed,
            "kernel": x.sample.kernel.map(|k| json!({
                "run_time_ns": k.run_ns, "run_cnt": k.runs,
                "recursion_misses": k.misses, "programs": k.progs,
            })),
            "foreign_tracers": x.foreign,
        })).collect::<Vec<_>>(),
        "startup": r.startup.iter().map(|x| json!({
            "ready_ms": x.ready_ms, "first_event_ms": x.first_event_ms,
        })).collect::<Vec<_>>(),
        "replay": r.replay.iter().map(|x| json!({
            "view": x.view, "encoding": x.encoding, "events": x.events, "secs": x.secs,
            "instr_per_event": x.instr_per_event,
        })).collect::<Vec<_>>(),
        "flows": r.flows.iter().map(|x| json!({
            "config": x.config, "started": x.started, "sockets": x.sockets,
            "census": x.census, "rss_kb": x.rss_kb, "peak_kb": x.peak_kb, "anon_kb": x.anon_kb,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{configs::config, tracers::Sample};

    fn run(c: &str, rate: f64, cpu: f64) -> Run {
        Run {
            workload: "w".into(),
            config: config(c),
            round: 0,
            rate,
            unit: "conn/s",
            sample: Sample {
                cpu_secs: cpu,
                wall_secs: 1.0,
                events: Some(1000),
                ..Sample::default()
            },
            expected: Some(1000.0),
            kernel_events: Some(1000.0),
            foreign: Vec::new(),
        }
    }

    #[test]
    fn the_confidence_interval_of_a_mean() {
        let (lo, hi) = ci95(&[1.0, 2.0, 3.0]).unwrap();
        // mean 2, sd 1, n 3: 4.303 / sqrt(3) either side.
        assert!((lo - (2.0 - 2.4843)).abs() < 1e-3, "{lo}");
        assert!((hi - (2.0 + 2.4843)).abs() < 1e-3, "{hi}");
        assert_eq!(ci95(&[5.0]), None);
        assert_eq!(ci95(&[4.0, 4.0]), Some((4.0, 4.0)));
    }

    #[test]
    fn medians_slowdown_and_cpu_per_event() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let s = summarize(&[
            run("none", 100.0, 0.0),
            run("tcptrace states", 80.0, 0.001),
            run("none", 100.0, 0.0),
            run("tcptrace states", 80.0, 0.001),
        ]);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].slowdown_pct, Some(25.0));
        // 2 ms of CPU over 2 000 events.
        assert!((s[1].cpu_us_per_event.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(s[1].seen, Some(2000.0));
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(num(1234567.0), "1\u{202f}234\u{202f}567");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(-0.5), "-0.50");
    }
}
