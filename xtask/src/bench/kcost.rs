//! The kernel-cost part of the report: per workload and configuration, the
//! nanoseconds its BPF programs ran per event the workload made (median
//! over the rounds), beside bpftrace's in-kernel count and the floor; and
//! the goal that tcptrace's streaming views cost at most twice the count.

use std::fmt::Write as _;

use super::{
    configs::CONFIGS,
    report::{Goal, median},
    workloads::Run,
};

/// The peer every ratio is against, and the floor.
const COUNT: &str = "bpftrace states count";
const FLOOR: &str = "floor reserve+submit";
/// The fixed cost of a program under bpf_stats, and of one clock read.
const EMPTY: &str = "bpftrace empty program";
const CLOCK: &str = "bpftrace clock read";
/// Views with a goal: kernel ns per state event ≤ `MAX_RATIO` × `COUNT`.
const GOAL_VIEWS: [&str; 2] = ["tcptrace states", "tcptrace retrans"];
const MAX_RATIO: f64 = 2.0;

/// One (workload, configuration) with kernel figures.
pub struct Cost {
    pub workload: String,
    pub config: &'static str,
    /// Kernel ns per event the workload made: median, min, max.
    pub ns: f64,
    pub ns_min: f64,
    pub ns_max: f64,
    /// Program runs per event the workload made (hooks it filters out
    /// included), median.
    pub hits: f64,
    /// Runs skipped because a BPF program was already running on the CPU,
    /// over every round.
    pub misses: u64,
    pub progs: usize,
}

/// Workloads in run order, configurations in table order.
pub fn costs(runs: &[Run]) -> Vec<Cost> {
    let mut workloads: Vec<&str> = Vec::new();
    for r in runs {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    let mut out = Vec::new();
    for w in workloads {
        for cfg in CONFIGS {
            let rs: Vec<(&Run, f64)> = runs
                .iter()
                .filter(|r| r.workload == w && r.config.name == cfg.name)
                .filter_map(|r| Some((r, r.kernel_events.filter(|k| *k > 0.0)?)))
                .filter(|(r, _)| r.sample.kernel.is_some_and(|k| k.progs > 0))
                .collect();
            if rs.is_empty() {
                continue;
            }
            let per = |f: &dyn Fn(&Run) -> u64| -> Vec<f64> {
                rs.iter().map(|(r, k)| f(r) as f64 / k).collect()
            };
            let k = |r: &Run| r.sample.kernel.unwrap_or_default();
            let ns = per(&|r| k(r).run_ns);
            out.push(Cost {
                workload: w.to_string(),
                config: cfg.name,
                ns: median(ns.clone()),
                ns_min: ns.iter().copied().fold(f64::INFINITY, f64::min),
                ns_max: ns.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                hits: median(per(&|r| k(r).runs)),
                misses: rs.iter().map(|(r, _)| k(r).misses).sum(),
                progs: rs.iter().map(|(r, _)| k(r).progs).max().unwrap_or(0),
            });
        }
    }
    out
}

fn of<'a>(c: &'a [Cost], workload: &str, config: &str) -> Option<&'a Cost> {
    c.iter()
        .find(|x| x.workload == workload && x.config == config)
}

/// `x` over the same workload's `peer`, as "N.NNx".
fn ratio(c: &[Cost], x: &Cost, peer: &str) -> Option<f64> {
    of(c, &x.workload, peer)
        .filter(|p| p.ns > 0.0)
        .map(|p| x.ns / p.ns)
}

pub fn goals(runs: &[Run]) -> Vec<Goal> {
    let c = costs(runs);
    let mut g = Vec::new();
    for view in GOAL_VIEWS {
        let xs: Vec<(&Cost, f64)> = c
            .iter()
            .filter(|x| x.workload.starts_with("storm") && x.config == view)
            .filter_map(|x| Some((x, ratio(&c, x, COUNT)?)))
            .collect();
        if xs.is_empty() {
            continue;
        }
        let measured: Vec<String> = xs
            .iter()
            .map(|(x, r)| {
                format!(
                    "{}: {:.0} ns, {r:.2}x",
                    x.workload.trim_start_matches("storm "),
                    x.ns
                )
            })
            .collect();
        g.push(Goal {
            what: format!(
                "kernel ns per state event, `{view}`: ≤ {MAX_RATIO:.1}x bpftrace's in-kernel count (storms; `bpf_stats`, median of the rounds)"
            ),
            measured: measured.join("; "),
            met: Some(xs.iter().all(|(_, r)| *r <= MAX_RATIO)),
        });
    }
    g
}

pub fn markdown(runs: &[Run], s: &mut String) {
    let c = costs(runs);
    if c.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Kernel cost per event\n\nMeasured by the kernel itself: with BPF run-time statistics on (`BPF_ENABLE_STATS`, the kernel's `bpf_stats_enabled`), every program counts the time it runs. Each configuration's programs are found through its process's fds (`/proc/PID/fdinfo`: `prog_id`, `run_time_ns`, `run_cnt`, `recursion_misses`); the sum of their `run_time_ns` from attached to drained is divided by the state transitions the workload made (the same denominator for every configuration). The VM's noise (other builds on the host, the storm's own rate) hardly moves it, unlike the slowdown. `{COUNT}` is `bench/peers/states-count.bt`; `{FLOOR}` is `bench/peers/floor.bpf.c`: reserve and submit a 96-byte record per transition, no field read, no filter (it runs on every transition of the host, so its runs per event may exceed 1). `{EMPTY}` (`bench/peers/states-empty.bt`) is a program that does nothing: what bpf_stats charges any program per run (it times each run with the kernel's clock); `{CLOCK}` (`states-clock.bt`) adds one `bpf_ktime_get_ns`.\n"
    );
    let _ = writeln!(
        s,
        "| workload | configuration | kernel ns/event, median (min–max) | ÷ bpftrace count | ÷ floor | program runs/event | skipped (nested) | programs |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for x in &c {
        let r = |peer| ratio(&c, x, peer).map_or("-".into(), |v| format!("{v:.2}x"));
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} ({:.0}–{:.0}) | {} | {} | {:.2} | {} | {} |",
            x.workload,
            x.config,
            x.ns,
            x.ns_min,
            x.ns_max,
            r(COUNT),
            r(FLOOR),
            x.hits,
            x.misses,
            x.progs
        );
    }
    for b in bounds(&c) {
        let _ = writeln!(
            s,
            "\n{}: a record costs at least {:.0} ns here = {:.2}x `{COUNT}`: the floor's {:.0} (one program, reserve, submit), a timestamp (the clock-read program's {:.0} less the empty program's {:.0}) and the second program of the nested pair (the empty program's {:.0} again), before a field is read.",
            b.workload, b.ns, b.ratio, b.floor, b.clock, b.empty, b.empty,
        );
    }
}

/// What a design of two programs per event (the nested pair), a
/// timestamp and a record per event cannot cost less than, per storm:
/// the floor, plus a clock read over the empty program, plus the empty
/// program once more for the second program.
pub struct Bound {
    pub workload: String,
    pub floor: f64,
    pub empty: f64,
    pub clock: f64,
    pub ns: f64,
    /// `ns` over `COUNT`.
    pub ratio: f64,
}

fn bounds(c: &[Cost]) -> Vec<Bound> {
    c.iter()
        .filter(|x| x.config == COUNT)
        .filter_map(|k| {
            let w = &k.workload;
            let (floor, empty, clock) = (
                of(c, w, FLOOR)?.ns,
                of(c, w, EMPTY)?.ns,
                of(c, w, CLOCK)?.ns,
            );
            let ns = floor + clock;
            (k.ns > 0.0).then(|| Bound {
                workload: w.clone(),
                floor,
                empty,
                clock,
                ns,
                ratio: ns / k.ns,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{configs::config, kstats::KernelCost, tracers::Sample};

    fn run(c: &str, round: usize, run_ns: u64) -> Run {
        Run {
            workload: "storm FIN".into(),
            config: config(c),
            round,
            rate: 1.0,
            unit: "conn/s",
            sample: Sample {
                kernel: Some(KernelCost {
                    run_ns,
                    runs: 2000,
                    misses: 1,
                    progs: 3,
                }),
                ..Sample::default()
            },
            expected: None,
            kernel_events: Some(1000.0),
            foreign: Vec::new(),
        }
    }

    #[test]
    fn medians_per_event_and_ratio_goal() {
        let runs = [
            run(COUNT, 0, 100_000),
            run("tcptrace states", 0, 150_000),
            run(COUNT, 1, 100_000),
            run("tcptrace states", 1, 250_000),
            run("tcptrace states", 2, 190_000),
        ];
        let c = costs(&runs);
        let s = of(&c, "storm FIN", "tcptrace states").unwrap();
        assert_eq!((s.ns, s.ns_min, s.ns_max), (190.0, 150.0, 250.0));
        assert_eq!((s.hits, s.misses, s.progs), (2.0, 3, 3));
        let g = goals(&runs);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].met, Some(true));
        assert!(g[0].measured.contains("1.90x"), "{}", g[0].measured);
    }

    #[test]
    fn the_design_bound_is_the_floor_and_a_clock_read() {
        let runs = [
            run(COUNT, 0, 114_000),
            run(FLOOR, 0, 162_000),
            run(EMPTY, 0, 61_000),
            run(CLOCK, 0, 105_000),
        ];
        let b = bounds(&costs(&runs));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].ns, 267.0);
        assert!((b[0].ratio - 267.0 / 114.0).abs() < 1e-9);
        let mut s = String::new();
        markdown(&runs, &mut s);
        assert!(s.contains("at least 267 ns here = 2.34x"), "{s}");
        assert!(
            s.contains("the clock-read program's 105 less the empty program's 61"),
            "{s}"
        );
    }
}
