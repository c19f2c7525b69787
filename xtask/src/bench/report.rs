//! From runs to the report: medians and ratios against the baseline of the
//! same invocation, the goals with their measured values, the markdown of
//! BENCHMARKS.md and the raw JSON of bench/results.json.

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::json;

use super::{
    configs::{CONFIGS, Kind, Watch},
    extras::{Calibration, Replay, Startup},
    flows::FlowsMem,
    host::Machine,
    kcost,
    workloads::Run,
};

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

fn lost_text(s: &Summary) -> String {
    if s.lost_by.is_empty() {
        return "0".into();
    }
    let parts: Vec<String> = s.lost_by.iter().map(|(k, v)| format!("{v} {k}")).collect();
    parts.join(", ")
}

/// Spawn to attached of the tcptrace runs of the matrix, which start before
/// their workload: (median, worst).
fn quiet_ready_ms(runs: &[Run]) -> Option<(f64, f64)> {
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
                    "{}: {:+.1} %, lost {}",
                    x.workload.trim_start_matches("storm "),
                    x.slowdown_pct.unwrap_or(f64::NAN),
                    lost_text(x)
                )
            })
            .collect();
        g.push(Goal {
            what: format!("storm at full rate, `{c}`: ≤ 5 % slowdown, 0 lost"),
            measured: measured.join("; "),
            met: Some(
                xs.iter()
                    .all(|x| x.slowdown_pct.is_some_and(|v| v <= 5.0) && x.lost() == 0),
            ),
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
            measured: format!("worst {v:.2} µs ({who})"),
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

/// A count, rounded.
fn int(v: f64) -> String {
    if v.is_finite() {
        group(&format!("{:.0}", v.round()))
    } else {
        "-".into()
    }
}

/// Three significant digits or so.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    group(&format!("{v:.digits$}"))
}

fn group(s: &str) -> String {
    // Thin spaces between thousands make 6-digit rates readable.
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let (sign, int) = int.strip_prefix('-').map_or(("", int), |i| ("-", i));
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push('\u{202f}');
        }
        grouped.push(ch);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

pub fn markdown(r: &Results, goals: &[Goal]) -> String {
    let m = r.machine;
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `cargo xtask bench`{}: every configuration runs the same workloads in the same invocation, interleaved round-robin ({} round{}, the order rotated each round), and ratios are against the no-tracer baseline of that invocation. Raw numbers: `bench/results.json`.\n",
        if r.quick { " --quick" } else { "" },
        r.rounds,
        if r.rounds == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        s,
        "Machine: {} × {}, {:.1} GiB; kernel {}; commit {}{}. Whole run: {:.0} s.\n",
        m.cores,
        m.cpu,
        m.mem_gib,
        m.kernel,
        m.commit,
        if m.dirty {
            " with uncommitted changes under tracer*/"
        } else {
            ""
        },
        r.secs
    );
    let foreign: usize = r.runs.iter().filter(|x| !x.foreign.is_empty()).count();
    if foreign > 0 {
        let _ = writeln!(
            s,
            "**{foreign} of {} runs had other tracers on the host** (tcptrace, bpftrace or tcpstates not started by the harness); their numbers are less reliable.\n",
            r.runs.len()
        );
    }
    let _ = writeln!(
        s,
        "## Goals\n\n| goal | measured | met |\n| --- | --- | --- |"
    );
    for g in goals {
        let met = match g.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(s, "| {} | {} | {met} |", g.what, g.measured);
    }
    let floor: Vec<String> = r
        .summaries
        .iter()
        .filter(|x| x.workload.starts_with("storm") && x.config == "bpftrace states count")
        .filter_map(|x| Some(format!("{} {:+.1} %", x.workload, x.slowdown_pct?)))
        .collect();
    if !floor.is_empty() {
        let _ = writeln!(
            s,
            "\nFor scale: bpftrace counting the same tracepoint in the kernel, with no output at all, slows the storms by {} (the cost of the tracepoint and a program call).",
            floor.join(", ")
        );
    }
    kcost::markdown(r.runs, &mut s);
    let mut workloads: Vec<&str> = Vec::new();
    for x in r.summaries {
        if x.workload != "idle" && !workloads.contains(&x.workload.as_str()) {
            workloads.push(&x.workload);
        }
    }
    for w in workloads {
        let spread = r
            .summaries
            .iter()
            .find(|x| x.workload == w && x.config == "none")
            .filter(|x| x.rate > 0.0 && x.runs > 1)
            .map(|x| {
                format!(
                    "\n\nThe baseline's runs spread over {:.0} % of their median: slowdowns smaller than that are noise.",
                    (x.rate_max - x.rate_min) / x.rate * 100.0
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "\n## {w}{spread}\n\n| configuration | rate, median (min–max) | slowdown | events seen / expected | lost | tracer CPU µs/event | tracer CPU % of a core | RSS MB peak / end |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for x in r.summaries.iter().filter(|x| x.workload == w) {
            let seen = match (x.seen, x.expected) {
                (Some(a), Some(b)) if b > 0.0 => {
                    format!("{} / {} ({:.1} %)", int(a), int(b), a / b * 100.0)
                }
                (Some(a), Some(b)) => format!("{} / {}", int(a), int(b)),
                (Some(a), None) => int(a),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "| {}{}{} | {} {} ({}–{}) | {} | {} | {} | {} | {} | {} |",
                x.config,
                if x.killed_runs > 0 {
                    " (killed: ignored SIGINT)"
                } else {
                    ""
                },
                if x.foreign_runs > 0 {
                    " (other tracers on the host)"
                } else {
                    ""
                },
                num(x.rate),
                x.unit,
                num(x.rate_min),
                num(x.rate_max),
                opt(x.slowdown_pct, |v| format!("{v:+.1} %")),
                seen,
                lost_text(x),
                opt(x.cpu_us_per_event, num),
                opt(x.cpu_pct, num),
                if x.config == "none" {
                    "-".into()
                } else {
                    format!("{:.1} / {:.1}", x.rss_peak_mb, x.rss_mb)
                },
            );
        }
    }
    let idle: Vec<&Summary> = r
        .summaries
        .iter()
        .filter(|x| x.workload == "idle")
        .collect();
    if !idle.is_empty() {
        let _ = writeln!(
            s,
            "\n## idle (no traffic on the watched port)\n\n| configuration | CPU % of a core | wakeups/s | RSS MB peak / end |\n| --- | --- | --- | --- |"
        );
        for x in idle {
            let _ = writeln!(
                s,
                "| {} | {:.3} | {} | {:.1} / {:.1} |",
                x.config,
                x.rate,
                opt(x.wakeups_per_sec, num),
                x.rss_peak_mb,
                x.rss_mb
            );
        }
    }
    if !r.startup.is_empty() {
        let list = |f: &dyn Fn(&Startup) -> f64| {
            r.startup
                .iter()
                .map(|x| format!("{:.0}", f(x)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "\n## Start-up\n\n`tcptrace states --json` started while 2 000 connections/s are being made on its port:\n\n- spawn to attached (\"watching\" on stderr): {} ms\n- spawn to first event on stdout: {} ms",
            list(&|x| x.ready_ms),
            list(&|x| x.first_event_ms)
        );
        if let Some((m, max)) = quiet_ready_ms(r.runs) {
            let _ = writeln!(
                s,
                "- for comparison, spawn to attached in every tcptrace run above, started before its workload: median {m:.0} ms, worst {max:.0} ms"
            );
        }
    }
    if !r.replay.is_empty() {
        let _ = writeln!(
            s,
            "\n## Replay of a recorded FIN storm (`tcptrace replay FILE VIEW --json > /dev/null`)\n\nThe same storm recorded side by side as JSON Lines and with `record --binary`. `states`, `retrans` and `resets` print a line per event; `top`, `hist` and `connect` are the engine path.\n\n| recording | view | events | seconds | events/s |\n| --- | --- | --- | --- | --- |"
        );
        for x in r.replay {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.3} | {} M |",
                x.encoding,
                x.view,
                int(x.events as f64),
                x.secs,
                num(x.events as f64 / x.secs / 1e6)
            );
        }
    }
    if !r.flows.is_empty() {
        let _ = writeln!(
            s,
            "\n## Memory with many live flows\n\nA namespace holds loopback connections open (both ends: every socket is a flow to tcptrace), with tcptrace started before they open (flows learnt from events) or after (found in /proc at start-up). RSS includes the ring buffer, which is mapped twice (4 MiB ring: 8 MB of RSS), and the binary; anonymous memory is what tcptrace allocated.\n\n| configuration | started | sockets | census | RSS MB | peak MB | anonymous MB |\n| --- | --- | --- | --- | --- | --- | --- |"
        );
        for x in r.flows {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {:.1} | {:.1} | {:.1} |",
                x.config,
                x.started,
                int(x.sockets as f64),
                x.census.map_or("-".into(), |c| int(c as f64)),
                x.rss_kb as f64 / 1024.0,
                x.peak_kb as f64 / 1024.0,
                x.anon_kb as f64 / 1024.0
            );
        }
    }
    if let Some(c) = r.calibration {
        let _ = writeln!(
            s,
            "\n## Expected events\n\nMeasured at the start of the run with `bpftrace states count` (an in-kernel count on `sock:inet_sock_set_state`, filtered to the port) over storms of 1 000 and 4 000 connections: a FIN-closed loopback connection makes {:.2} transitions (plus {:.0} for the listener), a RST-closed one {:.2} (plus {:.0}). The storm's server waits for the client's FIN or RST before it closes, which makes these numbers exact (otherwise a RST finds the server's socket in one state or another depending on timing). Retransmissions are expected from the namespaces' own `RetransSegs` (`/proc/net/snmp`).",
            c.fin.per_conn, c.fin.fixed, c.rst.per_conn, c.rst.fixed
        );
    }
    let _ = writeln!(
        s,
        "\n## How to read this\n\n\
- **rate**: connections/s of one client thread (storms), or MB/s of the bulk flows (retransmit, steady). **slowdown** = median baseline rate / median rate − 1.\n\
- **events seen**: lines the tool printed for the workload's port (the in-kernel count for `bpftrace ... count`); for retransmissions the segments they held (tcptrace's `segs`, the bpftrace peers' `tcp_gso_segs`), the unit of `RetransSegs`. Summary views (`top`, `connect`) print no line per event.\n\
- **lost**: what the tool itself reported: tcptrace `lost` records or warnings by source (`kernel`: ring buffer full; `kernel-nested`: the kernel skipped our program because it was already running on that CPU; `output`: our output fell behind), bpftrace's and libbpf-tools' perf-buffer `lost` lines.\n\
- **tracer CPU**: user + system time of all the tracer's threads (`/proc/<pid>/task/*/schedstat`) from attached until its output has been still for 200 ms, so start-up and exit are left out; per event it is divided by the events the workload made in the kernel (the expected transitions, or `RetransSegs`), the same denominator for every configuration. In-kernel BPF time is not in it: it shows up as slowdown.\n\
- **RSS**: `VmHWM` (peak) and `VmRSS` (end) of the tracer from `/proc/<pid>/status`, read before it is stopped.\n\
- Output goes to a file on tmpfs, which like /dev/null never blocks the writer.\n\
- Workloads run in private network namespaces made for each run; retransmit runs use a veth pair with offloads off and nftables random drops in the input hook of both ends."
    );
    s
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
