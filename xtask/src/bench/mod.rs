//! `cargo xtask bench`: tcptrace against no tracer, bpftrace and
//! libbpf-tools on the same workloads, interleaved round-robin so drift hits
//! every configuration alike; ratios against the baseline of the same
//! invocation; the report goes to BENCHMARKS.md and bench/results.json.
//!
//! Workloads (each in fresh private network namespaces): a loopback
//! connect/accept/close storm with FIN and with RST closes; a retransmit
//! storm over a veth pair with nftables random drops at 1, 10 and 30 %; a
//! steady load (paced connections plus two bulk flows); the agent idle;
//! replay of a recorded storm through each view.

mod netns;
mod report;
mod tracers;
pub mod worker;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use netns::{NetNs, veth_pair};
use report::{Goal, Run, Summary, median};
use tracers::{Running, config};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Small counts and one round: about a minute, for a smoke test.
    #[arg(long)]
    pub quick: bool,
    /// Rounds of the interleaved matrix (default 3, or 1 with --quick).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Only workloads whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
}

#[derive(Clone, Copy, Debug)]
enum Load {
    Storm { count: u64, rst: bool },
    Loss { percent: u32, bytes: u64 },
    Steady { rate: u64, secs: u64 },
    Idle { secs: u64 },
}

struct Workload {
    name: String,
    load: Load,
    configs: Vec<&'static str>,
}

const STORM_CONFIGS: &[&str] = &[
    "none",
    "tcptrace states",
    "tcptrace states --json",
    "tcptrace retrans",
    "tcptrace retrans --json",
    "tcptrace connect --json",
    "tcptrace top --json",
    "bpftrace states count",
    "bpftrace states printf",
    "libbpf-tools tcpstates",
];
const LOSS_CONFIGS: &[&str] = &[
    "none",
    "tcptrace retrans",
    "tcptrace retrans --json",
    "tcptrace top --json",
    "bpftrace retrans count",
    "bpftrace retrans printf",
];
const STEADY_CONFIGS: &[&str] = &[
    "none",
    "tcptrace states --json",
    "tcptrace retrans --json",
    "tcptrace top --json",
    "bpftrace states count",
    "libbpf-tools tcpstates",
];
const IDLE_CONFIGS: &[&str] = &["tcptrace states", "tcptrace retrans", "tcptrace top --json"];

fn workloads(quick: bool) -> Vec<Workload> {
    let storm = if quick { 5_000 } else { 40_000 };
    let scale = if quick { 4 } else { 1 };
    let mut w = vec![
        Workload {
            name: "storm FIN".into(),
            load: Load::Storm {
                count: storm,
                rst: false,
            },
            configs: STORM_CONFIGS.to_vec(),
        },
        Workload {
            name: "storm RST".into(),
            load: Load::Storm {
                count: storm,
                rst: true,
            },
            configs: STORM_CONFIGS.to_vec(),
        },
    ];
    for (percent, bytes) in [(1, 4 << 20), (10, 1 << 20), (30, 128 << 10)] {
        w.push(Workload {
            name: format!("retransmit {percent} %"),
            load: Load::Loss {
                percent,
                bytes: bytes / scale,
            },
            configs: LOSS_CONFIGS.to_vec(),
        });
    }
    w.push(Workload {
        name: "steady".into(),
        load: Load::Steady {
            rate: 1_000,
            secs: if quick { 2 } else { 5 },
        },
        configs: STEADY_CONFIGS.to_vec(),
    });
    w.push(Workload {
        name: "idle".into(),
        load: Load::Idle {
            secs: if quick { 3 } else { 10 },
        },
        configs: IDLE_CONFIGS.to_vec(),
    });
    w
}

/// Installs the peers when missing.
fn ensure_tools() -> Result<()> {
    let missing: Vec<&str> = [
        ("bpftrace", "bpftrace"),
        ("tcpstates", "libbpf-tools"),
        ("nft", "nftables"),
        ("ethtool", "ethtool"),
    ]
    .into_iter()
    .filter(|(bin, _)| {
        Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
    })
    .map(|(_, pkg)| pkg)
    .collect();
    if !missing.is_empty() {
        eprintln!("bench: installing {}", missing.join(" "));
        let st = Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        if !st.success() {
            bail!("could not install {}", missing.join(" "));
        }
    }
    Ok(())
}

struct Bench {
    root: PathBuf,
    tcptrace: PathBuf,
    xtask: PathBuf,
    port: u16,
}

impl Bench {
    fn next_port(&mut self) -> u16 {
        self.port += 1;
        self.port
    }

    /// Runs the worker with `args`; returns its (ops, secs).
    fn worker(&self, args: &[String]) -> Result<(f64, f64)> {
        let out = Command::new(&self.xtask)
            .arg("bench-worker")
            .args(args)
            .output()
            .context("running the workload")?;
        if !out.status.success() {
            bail!(
                "workload {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok((
            v["ops"].as_f64().unwrap_or(0.0),
            v["secs"].as_f64().unwrap_or(1.0),
        ))
    }

    fn run_one(&mut self, w: &Workload, cfg_name: &str, round: usize) -> Result<Run> {
        let cfg = config(cfg_name);
        let port = self.next_port();
        let (rate, unit, sample, kernel) = match w.load {
            Load::Storm { count, rst } => {
                let ns = NetNs::new("storm")?;
                let t = Running::start(cfg, port, &self.tcptrace, &self.root)?;
                let mut args = vec![
                    "storm".to_string(),
                    "--ns".into(),
                    ns.name.clone(),
                    "--port".into(),
                    port.to_string(),
                    "--count".into(),
                    count.to_string(),
                ];
                if rst {
                    args.push("--rst".into());
                }
                let (ops, secs) = self.worker(&args)?;
                // Closing handshakes still run in softirq after the last
                // connect returns: let them land before stopping.
                std::thread::sleep(Duration::from_millis(500));
                let s = t.map(Running::stop).transpose()?.unwrap_or_default();
                (ops / secs, "conn", s, None)
            }
            Load::Loss { percent, bytes } => {
                let (a, b) = veth_pair("loss")?;
                a.random_drop(port, percent)?;
                b.random_drop(port, percent)?;
                let before = a.retrans_segs()? + b.retrans_segs()?;
                let t = Running::start(cfg, port, &self.tcptrace, &self.root)?;
                let (ops, secs) = self.worker(&[
                    "bulk".into(),
                    "--client-ns".into(),
                    a.name.clone(),
                    "--server-ns".into(),
                    b.name.clone(),
                    "--port".into(),
                    port.to_string(),
                    "--flows".into(),
                    "8".into(),
                    "--bytes".into(),
                    bytes.to_string(),
                    "--secs".into(),
                    "5".into(),
                ])?;
                // Let closing FINs finish their retransmissions.
                std::thread::sleep(Duration::from_millis(300));
                let kernel = a.retrans_segs()? + b.retrans_segs()? - before;
                let s = t.map(Running::stop).transpose()?.unwrap_or_default();
                (ops / secs, "B", s, Some(kernel))
            }
            Load::Steady { rate, secs } => {
                let ns = NetNs::new("steady")?;
                let t = Running::start(cfg, port, &self.tcptrace, &self.root)?;
                let (ops, secs) = self.worker(&[
                    "steady".into(),
                    "--ns".into(),
                    ns.name.clone(),
                    "--port".into(),
                    port.to_string(),
                    "--rate".into(),
                    rate.to_string(),
                    "--secs".into(),
                    secs.to_string(),
                ])?;
                let s = t.map(Running::stop).transpose()?.unwrap_or_default();
                (ops / secs, "B", s, None)
            }
            Load::Idle { secs } => {
                let t = Running::start(cfg, port, &self.tcptrace, &self.root)?;
                std::thread::sleep(Duration::from_secs(secs));
                let s = t.map(Running::stop).transpose()?.unwrap_or_default();
                // Rate: the fraction of one core the agent used.
                (s.cpu_secs / secs as f64 * 100.0, "%core", s, None)
            }
        };
        Ok(Run {
            workload: w.name.clone(),
            config: cfg_name.to_string(),
            round,
            rate,
            unit,
            sample,
            kernel,
        })
    }

    /// Time from spawning `tcptrace states --json` to its first event while
    /// connections are being made.
    fn first_event_ms(&mut self, tries: usize) -> Result<Vec<f64>> {
        let mut v = Vec::new();
        for _ in 0..tries {
            let ns = NetNs::new("first")?;
            let port = self.next_port();
            let mut load = Command::new(&self.xtask)
                .args([
                    "bench-worker",
                    "steady",
                    "--ns",
                    &ns.name,
                    "--port",
                    &port.to_string(),
                    "--rate",
                    "2000",
                    "--secs",
                    "3",
                ])
                .stdout(std::process::Stdio::null())
                .spawn()?;
            std::thread::sleep(Duration::from_millis(200));
            let t = Running::start(
                config("tcptrace states --json"),
                port,
                &self.tcptrace,
                &self.root,
            )?
            .expect("a tracer");
            let deadline = Instant::now() + Duration::from_secs(5);
            while !t.has_event() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            v.push(t.started.elapsed().as_secs_f64() * 1e3);
            t.stop()?;
            let _ = load.wait();
        }
        Ok(v)
    }

    /// Records a storm, then replays it through each view; events/s.
    fn replay(&mut self, count: u64) -> Result<Vec<(String, f64, u64)>> {
        let ns = NetNs::new("rec")?;
        let port = self.next_port();
        let file = "/dev/shm/ttbench-record.jsonl";
        let mut rec = Command::new(&self.tcptrace)
            .args(["record", "-o", file, "--port", &port.to_string()])
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        std::thread::sleep(Duration::from_secs(2));
        self.worker(&[
            "storm".into(),
            "--ns".into(),
            ns.name.clone(),
            "--port".into(),
            port.to_string(),
            "--count".into(),
            count.to_string(),
        ])?;
        std::thread::sleep(Duration::from_millis(200));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(rec.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        rec.wait()?;
        let events = std::fs::read_to_string(file)?
            .lines()
            .filter(|l| l.starts_with("{\"type\":\"event\""))
            .count() as u64;
        let mut out = Vec::new();
        for view in ["states", "retrans", "connect", "resets", "hist", "top"] {
            let start = Instant::now();
            let st = Command::new(&self.tcptrace)
                .args(["replay", file, view, "--json"])
                .stdout(std::process::Stdio::null())
                .status()?;
            if !st.success() {
                bail!("replay {view} failed");
            }
            out.push((
                view.to_string(),
                events as f64 / start.elapsed().as_secs_f64(),
                events,
            ));
        }
        let _ = std::fs::remove_file(file);
        Ok(out)
    }
}

fn machine(root: &Path) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
                    / 1024
                    / 1024
            })
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let commit = Command::new("git")
        .args([
            "-C",
            &root.display().to_string(),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    // SAFETY: no preconditions.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    format!(
        "Machine: {cores} × {cpu}, {mem} GiB; kernel {}; commit {commit}.",
        kernel.trim()
    )
}

fn goals(s: &[Summary], first_ms: f64, replay: &[(String, f64, u64)]) -> Vec<Goal> {
    let find = |w: &str, c: &str| s.iter().find(|x| x.workload == w && x.config == c);
    let mut g = Vec::new();
    for c in ["tcptrace states", "tcptrace retrans"] {
        for w in ["storm FIN", "storm RST"] {
            if let Some(x) = find(w, c) {
                let slow = x.slowdown_pct.unwrap_or(f64::NAN);
                g.push(Goal {
                    what: format!("{w}: `{c}` slowdown ≤ 5 % with 0 lost"),
                    measured: format!("{slow:+.1} %, {} lost", x.lost),
                    met: Some(slow <= 5.0 && x.lost == 0),
                });
            }
        }
    }
    let stream: Vec<&Summary> = s
        .iter()
        .filter(|x| {
            x.workload.starts_with("storm")
                && (x.config.starts_with("tcptrace states")
                    || x.config.starts_with("tcptrace retrans"))
        })
        .filter(|x| x.events.unwrap_or(0.0) > 0.0)
        .collect();
    if let Some(worst) = stream
        .iter()
        .filter_map(|x| x.cpu_us_per_event)
        .reduce(f64::max)
    {
        g.push(Goal {
            what: "user-space CPU ≤ 0.3 µs per event (streaming views, storm)".into(),
            measured: format!("worst {worst:.2} µs"),
            met: Some(worst <= 0.3),
        });
    }
    if let Some(peak) = s
        .iter()
        .filter(|x| x.config.starts_with("tcptrace"))
        .map(|x| x.rss_peak_mb)
        .reduce(f64::max)
    {
        g.push(Goal {
            what: "RSS ≤ 30 MB (peak over every tcptrace run)".into(),
            measured: format!("{peak:.1} MB"),
            met: Some(peak <= 30.0),
        });
    }
    g.push(Goal {
        what: "RSS ≤ 30 MB with 100 000 live flows".into(),
        measured: "no workload holds 100 000 flows yet".into(),
        met: None,
    });
    if let Some(idle) = s
        .iter()
        .filter(|x| x.workload == "idle")
        .map(|x| x.rate)
        .reduce(f64::max)
    {
        g.push(Goal {
            what: "idle CPU < 0.1 % of a core".into(),
            measured: format!("worst {idle:.3} %"),
            met: Some(idle < 0.1),
        });
    }
    g.push(Goal {
        what: "first event within 300 ms of start".into(),
        measured: format!("median {first_ms:.0} ms"),
        met: Some(first_ms <= 300.0),
    });
    if let Some(best) = replay.iter().map(|r| r.1).reduce(f64::max) {
        g.push(Goal {
            what: "replay ≥ 5 M events/s on one core (engine path)".into(),
            measured: format!(
                "best view {:.2} M events/s, JSON decoding included",
                best / 1e6
            ),
            met: Some(best >= 5e6),
        });
    }
    g
}

pub fn run(opts: Opts, root: &Path, tcptrace: PathBuf) -> Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the benchmarks load BPF programs and create network namespaces: run `sudo cargo xtask bench`"
        );
    }
    ensure_tools()?;
    // Mounts tracefs if needed (bpftrace wants it too).
    let _ = Command::new(&tcptrace).args(["check", "--json"]).output();
    let mut b = Bench {
        root: root.to_path_buf(),
        tcptrace,
        xtask: std::env::current_exe()?,
        port: 30_000 + (std::process::id() % 10_000) as u16,
    };
    let rounds = opts.rounds.unwrap_or(if opts.quick { 1 } else { 3 });
    let all: Vec<Workload> = workloads(opts.quick)
        .into_iter()
        .filter(|w| {
            opts.only
                .as_ref()
                .is_none_or(|o| w.name.contains(o.as_str()))
        })
        .collect();
    let mut runs = Vec::new();
    let started = Instant::now();
    for round in 0..rounds {
        for w in &all {
            // Rotate the order each round so no configuration always runs first.
            let n = w.configs.len();
            for i in 0..n {
                let cfg = w.configs[(i + round) % n];
                let r = b.run_one(w, cfg, round)?;
                eprintln!(
                    "bench: round {} {:<16} {:<26} {:>12.0} {}/s  events {:?} kernel {:?} lost {}",
                    round + 1,
                    w.name,
                    cfg,
                    r.rate,
                    r.unit,
                    r.sample.events,
                    r.kernel,
                    r.sample.lost
                );
                runs.push(r);
            }
        }
    }
    let first = b.first_event_ms(if opts.quick { 2 } else { 5 })?;
    let replay = b.replay(if opts.quick { 5_000 } else { 40_000 })?;
    let mut summaries = report::summarize(&runs);
    // Expected events of the storm views: what the bpftrace counter saw.
    for w in ["storm FIN", "storm RST"] {
        let expected = summaries
            .iter()
            .find(|x| x.workload == w && x.config == "bpftrace states count")
            .and_then(|x| x.events);
        for x in summaries
            .iter_mut()
            .filter(|x| x.workload == w && x.config.contains("states"))
        {
            x.expected = expected;
        }
    }
    let first_ms = median(first.clone());
    let goals = goals(&summaries, first_ms, &replay);
    let m = machine(root);
    let mut extra = String::from(
        "\n## Replay of a recorded storm (one core)\n\n| view | events | events/s |\n| --- | --- | --- |\n",
    );
    for (v, rate, n) in &replay {
        extra.push_str(&format!("| {v} | {n} | {:.2} M |\n", rate / 1e6));
    }
    extra.push_str(&format!(
        "\nFirst event after start: {first:.0?} ms (median {first_ms:.0} ms).\n\nThe storm's `events seen / kernel` for the states views compares with the in-kernel bpftrace count of the same run set; for the retransmit workloads, the kernel column is the namespaces' RetransSegs (segments; tcptrace counts records, which may hold several segments). Whole run: {:.0} s, {rounds} round(s).\n",
        started.elapsed().as_secs_f64()
    ));
    let md = report::markdown(&m, &summaries, &goals, &extra);
    println!("{md}");
    if !opts.quick && opts.only.is_none() {
        std::fs::write(root.join("BENCHMARKS.md"), &md)?;
        let raw = report::raw_json(
            &m,
            &runs,
            json!({"first_event_ms": first, "replay": replay}),
        );
        std::fs::write(
            root.join("bench/results.json"),
            serde_json::to_string_pretty(&raw)?,
        )?;
        eprintln!("bench: wrote BENCHMARKS.md and bench/results.json");
    }
    Ok(())
}
