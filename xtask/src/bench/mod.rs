//! `cargo xtask bench`: tcptrace against no tracer, bpftrace and
//! libbpf-tools on the same workloads in one invocation, interleaved
//! round-robin so that drift hits every configuration alike, with ratios
//! against the baseline of the same invocation. Prints the report and
//! writes it to BENCHMARKS.md and bench/results.json (a full, unfiltered
//! run) or to target/bench/ (`--quick`, `--only`).
//!
//! - `configs`: the configurations, one line each;
//! - `workloads`: storms, retransmit storms, steady load, idle, and one run;
//! - `worker`: the workload generators (`xtask bench-worker`);
//! - `tracers`: a configuration as a child process, its CPU, RSS and counts;
//! - `extras`: calibration of expected events, start-up, replay;
//! - `callgrind`: replay's instructions per event (repeatable under load);
//! - `flows`: memory with 100 000 live flows;
//! - `host`: /proc, tools, the machine, namespaces (the tests' own);
//! - `kstats`, `floor`: the kernel's own cost of each configuration's BPF
//!   programs (`bpf_stats`), and the floor peer it is compared with;
//! - `report`, `kcost`: medians, goals, markdown and JSON.

mod callgrind;
mod configs;
mod extras;
pub mod floor;
mod flows;
pub mod host;
mod kcost;
mod kstats;
mod markdown;
mod report;
mod tracers;
pub mod worker;
mod workloads;

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use configs::{CONFIGS, Config, IDLE};
use report::Results;
use tracers::Tools;
use workloads::{Bench, Workload, sizes};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Small counts and one round: about a minute, a smoke test of every
    /// path (its numbers are not for the report).
    #[arg(long)]
    pub quick: bool,
    /// Rounds of the interleaved matrix (default 3, or 1 with --quick).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Only runs whose "WORKLOAD / CONFIGURATION" matches this regular
    /// expression, e.g. `storm` or `retrans.*json` (each selected workload
    /// keeps its baseline; `first event` and `replay` are names too).
    #[arg(long, value_name = "REGEX")]
    pub only: Option<String>,
}

/// What `--only` selects.
struct Select(Option<regex_lite::Regex>);

impl Select {
    fn wants(&self, workload: &str, config: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|re| re.is_match(&format!("{workload} / {config}")))
    }

    /// The configurations of `w` that run: the selected ones, and the
    /// baseline when any is.
    fn configs(&self, w: &Workload) -> Vec<&'static Config> {
        let chosen: Vec<&'static Config> = CONFIGS
            .iter()
            .filter(|c| c.under & w.family != 0 && self.wants(&w.name, c.name))
            .collect();
        if chosen.is_empty() {
            return Vec::new();
        }
        CONFIGS
            .iter()
            .filter(|c| {
                c.under & w.family != 0
                    && (c.name == "none" || chosen.iter().any(|x| x.name == c.name))
            })
            .collect()
    }
}

pub fn run(opts: Opts, root: &Path, tcptrace: PathBuf) -> Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the benchmarks load BPF programs and create network namespaces: run `sudo cargo xtask bench`"
        );
    }
    let select = Select(
        opts.only
            .as_deref()
            .map(regex_lite::Regex::new)
            .transpose()
            .context("--only is not a valid regular expression")?,
    );
    let _lock = host::lock()?;
    harness::netns::remove_stale();
    let tcpstates = host::ensure_tools()?;
    host::ensure_tracefs();
    let peers = root.join("bench/peers");
    let floor = floor::build(&peers, &root.join("target/bench"))?;
    // On for the whole run; the kernel turns it off when we exit.
    let _stats = kstats::enable()?;
    let mut b = Bench::new(Tools {
        tcptrace,
        tcpstates,
        peers,
        xtask: std::env::current_exe()?,
        floor,
    })?;
    let z = sizes(opts.quick);
    let rounds = opts.rounds.unwrap_or(if opts.quick { 1 } else { 3 }).max(1);
    let started = Instant::now();
    let matrix: Vec<(Workload, Vec<&'static Config>)> = workloads::workloads(&z)
        .into_iter()
        .map(|w| {
            let c = select.configs(&w);
            (w, c)
        })
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if matrix.iter().any(|(w, _)| w.family != configs::LOSS) {
        eprintln!("bench: calibrating the expected number of state transitions");
        let c = extras::calibrate(&mut b)?;
        eprintln!(
            "bench: a loopback connection makes {:.2} transitions closed by FIN, {:.2} by RST",
            c.fin.per_conn, c.rst.per_conn
        );
        b.calibration = Some(c);
    }
    let mut runs = Vec::new();
    for round in 0..rounds {
        for (w, cfgs) in &matrix {
            // Rotate the order each round so no configuration always runs
            // first (or right after the same neighbour).
            for i in 0..cfgs.len() {
                let cfg = cfgs[(i + round) % cfgs.len()];
                let t = Instant::now();
                let r = b.run(w, cfg, round)?;
                eprintln!(
                    "bench: {:>4.1} s round {}/{rounds} {:<16} {:<24} {:>10.1} {:<6} events {:>8} expected {:>8} lost {}{}",
                    t.elapsed().as_secs_f64(),
                    round + 1,
                    w.name,
                    cfg.name,
                    r.rate,
                    r.unit,
                    r.sample
                        .segs
                        .or(r.sample.events)
                        .map_or("-".into(), |v| v.to_string()),
                    r.expected.map_or("-".into(), |v| format!("{v:.0}")),
                    r.sample.lost(),
                    if r.foreign.is_empty() {
                        String::new()
                    } else {
                        format!("  (other tracers: {})", r.foreign.join(" "))
                    }
                );
                runs.push(r);
            }
        }
    }
    let idle: Vec<&'static Config> = CONFIGS
        .iter()
        .filter(|c| c.under & IDLE != 0 && select.wants("idle", c.name))
        .collect();
    if !idle.is_empty() {
        eprintln!("bench: idle for {} s", z.idle_secs);
        runs.extend(b.idle(&idle, z.idle_secs)?);
    }
    let startup = if select.wants("first event", "tcptrace states --json") {
        eprintln!("bench: time to first event");
        extras::startup(&mut b, if opts.quick { 2 } else { 5 })?
    } else {
        Vec::new()
    };
    let replay = if select.wants("replay", "tcptrace replay") {
        eprintln!("bench: replay");
        extras::replay(&mut b, z.storm)?
    } else {
        Vec::new()
    };
    let flows = if select.wants("flows", "tcptrace top --json") {
        eprintln!("bench: memory with {} live sockets", z.flows);
        flows::flows(&mut b, z.flows)?
    } else {
        Vec::new()
    };
    let machine = host::machine(root);
    let summaries = report::summarize(&runs);
    let results = Results {
        machine: &machine,
        rounds,
        quick: opts.quick,
        secs: started.elapsed().as_secs_f64(),
        runs: &runs,
        summaries: &summaries,
        calibration: b.calibration.as_ref(),
        startup: &startup,
        replay: &replay,
        flows: &flows,
    };
    let goals = report::goals(&results);
    let md = report::markdown(&results, &goals);
    let raw = serde_json::to_string_pretty(&report::raw_json(&results))?;
    println!("{md}");
    let (md_path, json_path) = if opts.quick || opts.only.is_some() {
        let dir = root.join("target/bench");
        std::fs::create_dir_all(&dir)?;
        (dir.join("BENCHMARKS.md"), dir.join("results.json"))
    } else {
        (root.join("BENCHMARKS.md"), root.join("bench/results.json"))
    };
    std::fs::write(&md_path, md)?;
    std::fs::write(&json_path, raw + "\n")?;
    eprintln!(
        "bench: wrote {} and {} in {:.0} s",
        md_path.display(),
        json_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
