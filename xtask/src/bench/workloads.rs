//! The workloads, and one run of a (workload, configuration) pair: fresh
//! namespaces, the configuration attached, the workload, the drain, and
//! what the kernel counted meanwhile. Idle is apart: every idle
//! configuration runs at once, since an idle agent does not disturb another.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context as _, Result, bail};
use harness::NetNs;

use super::{
    configs::{Config, LOSS, STEADY, STORM, Watch},
    extras::Calibration,
    host::{self, veth_pair},
    tracers::{Running, Sample, Tools},
};

#[derive(Clone, Copy, Debug)]
pub enum Load {
    /// `count` loopback connect/accept/close cycles, closed with FIN or RST.
    Storm { count: u64, rst: bool },
    /// Eight bulk flows over a veth pair for `secs`, `percent` % of the
    /// segments dropped in each direction.
    Loss { percent: u32, secs: f64 },
    /// `rate` connections/s and two bulk flows on loopback for `secs`.
    Steady { rate: u64, secs: f64 },
}

pub struct Workload {
    pub name: String,
    /// `STORM`, `LOSS` or `STEADY`: which configurations run under it.
    pub family: u8,
    pub load: Load,
}

/// How big the workloads are: `--quick` is a smoke test of every path.
pub struct Sizes {
    pub storm: u64,
    pub loss: &'static [u32],
    pub loss_secs: f64,
    pub steady_secs: f64,
    pub idle_secs: f64,
    /// Live sockets of the memory workload.
    pub flows: u64,
}

pub fn sizes(quick: bool) -> Sizes {
    if quick {
        Sizes {
            storm: 3_000,
            loss: &[10],
            loss_secs: 1.0,
            steady_secs: 1.0,
            idle_secs: 3.0,
            flows: 10_000,
        }
    } else {
        Sizes {
            storm: 50_000,
            loss: &[1, 10, 30],
            loss_secs: 2.0,
            steady_secs: 3.0,
            idle_secs: 20.0,
            flows: 100_000,
        }
    }
}

pub fn workloads(z: &Sizes) -> Vec<Workload> {
    let mut w = Vec::new();
    for (name, rst) in [("storm FIN", false), ("storm RST", true)] {
        w.push(Workload {
            name: name.into(),
            family: STORM,
            load: Load::Storm {
                count: z.storm,
                rst,
            },
        });
    }
    for &percent in z.loss {
        w.push(Workload {
            name: format!("retransmit {percent} %"),
            family: LOSS,
            load: Load::Loss {
                percent,
                secs: z.loss_secs,
            },
        });
    }
    w.push(Workload {
        name: "steady".into(),
        family: STEADY,
        load: Load::Steady {
            rate: 1_000,
            secs: z.steady_secs,
        },
    });
    // TODO(replay): a workload that replays a recorded production capture
    // through each view belongs here once captures are checked in; today
    // `extras::replay` replays a storm recorded by the run itself.
    w
}

/// One run of one configuration under one workload.
#[derive(Clone, Debug)]
pub struct Run {
    pub workload: String,
    pub config: &'static Config,
    pub round: usize,
    /// Work per second: connections (storm) or megabytes (bulk flows).
    pub rate: f64,
    pub unit: &'static str,
    pub sample: Sample,
    /// What the configuration should have seen: state transitions from the
    /// calibration, or the namespaces' `RetransSegs`.
    pub expected: Option<f64>,
    /// Events the workload made in the kernel (the denominator of CPU per
    /// event, the same for every configuration of a workload).
    pub kernel_events: Option<f64>,
    /// Other tracers on the host during the run.
    pub foreign: Vec<String>,
}

pub struct Bench {
    pub tools: Tools,
    /// This binary, which is also the workload generator.
    pub xtask: PathBuf,
    pub calibration: Option<Calibration>,
    port: u16,
}

impl Bench {
    pub fn new(tools: Tools) -> Result<Self> {
        Ok(Self {
            tools,
            xtask: std::env::current_exe()?,
            calibration: None,
            // A port per run, away from the ephemeral range of the host.
            port: 20_000 + (std::process::id() % 5_000) as u16,
        })
    }

    pub fn next_port(&mut self) -> u16 {
        self.port += 1;
        self.port
    }

    /// Runs `xtask bench-worker ARGS`; returns its JSON report.
    pub fn worker(&self, args: &[String]) -> Result<serde_json::Value> {
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
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    pub fn storm_args(ns: &NetNs, port: u16, count: u64, rst: bool) -> Vec<String> {
        let mut a: Vec<String> = ["storm", "--ns", &ns.name, "--port"]
            .map(String::from)
            .to_vec();
        a.extend([port.to_string(), "--count".into(), count.to_string()]);
        if rst {
            a.push("--rst".into());
        }
        a
    }

    pub fn run(&mut self, w: &Workload, cfg: &'static Config, round: usize) -> Result<Run> {
        let mut foreign = host::wait_for_quiet(20);
        let port = self.next_port();
        let stop = |t: Option<Running>| {
            t.map(Running::stop)
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let num = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
        let (rate, unit, sample, expected, kernel_events) = match w.load {
            Load::Storm { count, rst } => {
                let ns = host::netns("storm");
                let t = Running::start(cfg, port, &self.tools)?;
                let v = self.worker(&Self::storm_args(&ns, port, count, rst))?;
                let retrans = ns.counter("Tcp", "RetransSegs") as f64;
                let s = stop(t)?;
                let transitions = self
                    .calibration
                    .as_ref()
                    .map(|c| c.expected(rst, num(&v, "conns")));
                let expected = match cfg.watch {
                    Watch::States => transitions,
                    Watch::Retrans => Some(retrans),
                    _ => None,
                };
                (
                    num(&v, "ops") / num(&v, "secs"),
                    "conn/s",
                    s,
                    expected,
                    transitions,
                )
            }
            Load::Loss { percent, secs } => {
                let (a, b) = veth_pair("loss");
                a.random_drop(port, percent);
                b.random_drop(port, percent);
                let segs = || a.counter("Tcp", "RetransSegs") + b.counter("Tcp", "RetransSegs");
                let before = segs();
                let t = Running::start(cfg, port, &self.tools)?;
                let v = self.worker(&[
                    "bulk".into(),
                    "--client-ns".into(),
                    a.name.clone(),
                    "--server-ns".into(),
                    b.name.clone(),
                    "--port".into(),
                    port.to_string(),
                    "--flows".into(),
                    "8".into(),
                    "--secs".into(),
                    secs.to_string(),
                ])?;
                let kernel = settle(|| Ok(segs()))? - before;
                let s = stop(t)?;
                let kernel = Some(kernel as f64);
                let expected = (cfg.watch == Watch::Retrans).then_some(kernel).flatten();
                (
                    num(&v, "ops") / num(&v, "secs") / 1e6,
                    "MB/s",
                    s,
                    expected,
                    kernel,
                )
            }
            Load::Steady { rate, secs } => {
                let ns = host::netns("steady");
                let t = Running::start(cfg, port, &self.tools)?;
                let v = self.worker(&[
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
                let retrans = ns.counter("Tcp", "RetransSegs") as f64;
                let s = stop(t)?;
                // The paced connections and the two bulk flows all close
                // with a FIN, the client first.
                let transitions = self
                    .calibration
                    .as_ref()
                    .map(|c| c.expected(false, num(&v, "conns") + 2.0));
                let expected = match cfg.watch {
                    Watch::States => transitions,
                    Watch::Retrans => Some(retrans),
                    _ => None,
                };
                (
                    num(&v, "ops") / num(&v, "secs") / 1e6,
                    "MB/s",
                    s,
                    expected,
                    transitions,
                )
            }
        };
        for f in host::foreign_tracers() {
            if !foreign.contains(&f) {
                foreign.push(f);
            }
        }
        Ok(Run {
            workload: w.name.clone(),
            config: cfg,
            round,
            rate,
            unit,
            sample,
            expected,
            kernel_events,
            foreign,
        })
    }

    /// Every idle configuration at once for `secs`: CPU and RSS of the
    /// agent alone.
    pub fn idle(&mut self, cfgs: &[&'static Config], secs: f64) -> Result<Vec<Run>> {
        let foreign = host::wait_for_quiet(20);
        let mut running = Vec::new();
        for &cfg in cfgs {
            let port = self.next_port();
            if let Some(t) = Running::start(cfg, port, &self.tools)? {
                running.push((cfg, t));
            }
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        running
            .into_iter()
            .map(|(cfg, t)| {
                let sample = t.stop()?;
                Ok(Run {
                    workload: "idle".into(),
                    config: cfg,
                    round: 0,
                    rate: sample.cpu_secs / sample.wall_secs * 100.0,
                    unit: "% of a core",
                    sample,
                    expected: None,
                    kernel_events: None,
                    foreign: foreign.clone(),
                })
            })
            .collect()
    }
}

/// Reads a counter until it has not moved for 300 ms (at most 3 s), so the
/// closing segments' retransmissions are in it.
fn settle(read: impl Fn() -> Result<u64>) -> Result<u64> {
    let mut last = read()?;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        let now = read()?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(last)
}
