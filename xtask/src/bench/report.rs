//! Summaries of the runs (medians, ratios against the baseline of the same
//! invocation), the markdown report and the raw JSON.

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::json;

use super::tracers::Sample;

/// One run of one configuration under one workload.
#[derive(Clone, Debug)]
pub struct Run {
    pub workload: String,
    pub config: String,
    pub round: usize,
    /// Work units per second (connections, bytes).
    pub rate: f64,
    pub unit: &'static str,
    pub sample: Sample,
    /// The kernel's own count of what the tracer should see, when known.
    pub kernel: Option<u64>,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Per (workload, config) summary.
#[derive(Clone, Debug)]
pub struct Summary {
    pub workload: String,
    pub config: String,
    pub rate: f64,
    pub unit: &'static str,
    pub slowdown_pct: Option<f64>,
    pub cpu_us_per_event: Option<f64>,
    pub events: Option<f64>,
    pub expected: Option<f64>,
    pub lost: u64,
    pub rss_peak_mb: f64,
}

/// Summaries in workload order, configs in first-seen order.
pub fn summarize(runs: &[Run]) -> Vec<Summary> {
    let mut order: Vec<(String, String)> = Vec::new();
    for r in runs {
        let k = (r.workload.clone(), r.config.clone());
        if !order.contains(&k) {
            order.push(k);
        }
    }
    fn pick<'a>(runs: &'a [Run], w: &'a str, c: &'a str) -> impl Iterator<Item = &'a Run> {
        runs.iter()
            .filter(move |r| r.workload == w && r.config == c)
    }
    let base: BTreeMap<String, f64> = order
        .iter()
        .filter(|(_, c)| c == "none")
        .map(|(w, c)| {
            (
                w.clone(),
                median(pick(runs, w, c).map(|r| r.rate).collect()),
            )
        })
        .collect();
    order
        .iter()
        .map(|(w, c)| {
            let rs: Vec<&Run> = pick(runs, w, c).collect();
            let rate = median(rs.iter().map(|r| r.rate).collect());
            let events: Vec<f64> = rs
                .iter()
                .filter_map(|r| r.sample.events.map(|e| e as f64))
                .collect();
            let kernel: Vec<f64> = rs
                .iter()
                .filter_map(|r| r.kernel.map(|e| e as f64))
                .collect();
            let cpu: f64 = rs.iter().map(|r| r.sample.cpu_secs).sum();
            // CPU per event over what the kernel says happened (so views
            // that print summaries, not events, are comparable).
            let denom: f64 = if !kernel.is_empty() {
                kernel.iter().sum()
            } else {
                events.iter().sum()
            };
            Summary {
                workload: w.clone(),
                config: c.clone(),
                rate,
                unit: rs[0].unit,
                slowdown_pct: (c != "none")
                    .then(|| base.get(w).map(|b| (b / rate - 1.0) * 100.0))
                    .flatten(),
                cpu_us_per_event: (c != "none" && denom > 0.0).then(|| cpu / denom * 1e6),
                events: (!events.is_empty()).then(|| median(events)),
                expected: (!kernel.is_empty()).then(|| median(kernel)),
                lost: rs.iter().map(|r| r.sample.lost).sum(),
                rss_peak_mb: rs.iter().map(|r| r.sample.rss_peak_kb).max().unwrap_or(0) as f64
                    / 1024.0,
            }
        })
        .collect()
}

/// A goal, its measured value and whether it was met.
pub struct Goal {
    pub what: String,
    pub measured: String,
    pub met: Option<bool>,
}

pub fn markdown(machine: &str, summaries: &[Summary], goals: &[Goal], extra: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `cargo xtask bench`; ratios are against the no-tracer baseline of the same invocation, runs interleaved round-robin.\n"
    );
    let _ = writeln!(s, "{machine}\n");
    let _ = writeln!(
        s,
        "## Goals\n\n| goal | measured | met |\n| --- | --- | --- |"
    );
    for g in goals {
        let met = match g.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(s, "| {} | {} | {met} |", g.what, g.measured);
    }
    let _ = writeln!(
        s,
        "\n## Runs (medians)\n\n| workload | configuration | rate | slowdown | tracer CPU µs/event | events seen / kernel | lost | peak RSS MB |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for x in summaries {
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "-".to_string(), f);
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} {}/s | {} | {} | {} / {} | {} | {} |",
            x.workload,
            x.config,
            x.rate,
            x.unit,
            opt(x.slowdown_pct, &|v| format!("{v:+.1} %")),
            opt(x.cpu_us_per_event, &|v| format!("{v:.2}")),
            opt(x.events, &|v| format!("{v:.0}")),
            opt(x.expected, &|v| format!("{v:.0}")),
            x.lost,
            if x.config == "none" {
                "-".to_string()
            } else {
                format!("{:.1}", x.rss_peak_mb)
            },
        );
    }
    s.push_str(extra);
    s
}

pub fn raw_json(machine: &str, runs: &[Run], extra: serde_json::Value) -> serde_json::Value {
    json!({
        "machine": machine,
        "runs": runs.iter().map(|r| json!({
            "workload": r.workload,
            "config": r.config,
            "round": r.round,
            "rate": r.rate,
            "unit": r.unit,
            "cpu_secs": r.sample.cpu_secs,
            "events": r.sample.events,
            "kernel": r.kernel,
            "lost": r.sample.lost,
            "rss_peak_kb": r.sample.rss_peak_kb,
            "rss_kb": r.sample.rss_kb,
        })).collect::<Vec<_>>(),
        "extra": extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_slowdown() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let run = |c: &str, rate: f64| Run {
            workload: "w".into(),
            config: c.into(),
            round: 0,
            rate,
            unit: "conn",
            sample: Sample {
                cpu_secs: 0.5,
                events: Some(1000),
                ..Sample::default()
            },
            kernel: Some(1000),
        };
        let s = summarize(&[
            run("none", 100.0),
            run("t", 80.0),
            run("none", 100.0),
            run("t", 80.0),
        ]);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].slowdown_pct, Some(25.0));
        assert_eq!(s[1].cpu_us_per_event, Some(500.0));
    }
}
