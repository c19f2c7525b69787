//! The configurations under test: no tracer, tcptrace views, bpftrace peer
//! scripts, libbpf-tools `tcpstates`. Each runs as a child writing to a
//! tmpfs file; its CPU time after start-up, peak and final RSS, events seen
//! and events lost are read when it stops.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// What runs.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    None,
    /// tcptrace with these arguments (the workload's `--port` is added).
    Tcptrace(&'static [&'static str]),
    /// bpftrace with this script under bench/peers (port as `$1`).
    Bpftrace(&'static str),
    /// libbpf-tools tcpstates (no port filter: its -L/-D filters AND).
    Tcpstates,
}

#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub name: &'static str,
    pub kind: Kind,
    /// Whether its output lines are events (stream views and peers).
    pub counts_events: bool,
}

/// Every configuration; workloads pick theirs by name.
pub const CONFIGS: &[Config] = &[
    Config {
        name: "none",
        kind: Kind::None,
        counts_events: false,
    },
    Config {
        name: "tcptrace states",
        kind: Kind::Tcptrace(&["states"]),
        counts_events: true,
    },
    Config {
        name: "tcptrace states --json",
        kind: Kind::Tcptrace(&["states", "--json"]),
        counts_events: true,
    },
    Config {
        name: "tcptrace retrans",
        kind: Kind::Tcptrace(&["retrans"]),
        counts_events: true,
    },
    Config {
        name: "tcptrace retrans --json",
        kind: Kind::Tcptrace(&["retrans", "--json"]),
        counts_events: true,
    },
    Config {
        name: "tcptrace connect --json",
        kind: Kind::Tcptrace(&["connect", "--json"]),
        counts_events: false,
    },
    Config {
        name: "tcptrace top --json",
        kind: Kind::Tcptrace(&["top", "--json"]),
        counts_events: false,
    },
    Config {
        name: "bpftrace states count",
        kind: Kind::Bpftrace("states-count.bt"),
        counts_events: true,
    },
    Config {
        name: "bpftrace states printf",
        kind: Kind::Bpftrace("states-printf.bt"),
        counts_events: true,
    },
    Config {
        name: "bpftrace retrans count",
        kind: Kind::Bpftrace("retrans-count.bt"),
        counts_events: true,
    },
    Config {
        name: "bpftrace retrans printf",
        kind: Kind::Bpftrace("retrans-printf.bt"),
        counts_events: true,
    },
    Config {
        name: "libbpf-tools tcpstates",
        kind: Kind::Tcpstates,
        counts_events: true,
    },
];

pub fn config(name: &str) -> Config {
    *CONFIGS
        .iter()
        .find(|c| c.name == name)
        .expect("known configuration")
}

/// A started tracer.
pub struct Running {
    child: Child,
    cfg: Config,
    out: PathBuf,
    err: PathBuf,
    cpu_at_ready: f64,
    pub started: Instant,
    pub ready_after: Duration,
}

/// What a tracer did during the workload.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub cpu_secs: f64,
    pub events: Option<u64>,
    pub lost: u64,
    pub rss_peak_kb: u64,
    pub rss_kb: u64,
}

fn ticks_per_sec() -> f64 {
    // SAFETY: no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// utime + stime of a live process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat; index 11 and 12 after the comm.
    (t(11) + t(12)) / ticks_per_sec()
}

fn status_kb(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

impl Running {
    /// Starts `cfg` watching `port`; `None` for the baseline.
    pub fn start(cfg: Config, port: u16, tcptrace: &Path, root: &Path) -> Result<Option<Self>> {
        let mut cmd = match cfg.kind {
            Kind::None => return Ok(None),
            Kind::Tcptrace(args) => {
                let mut c = Command::new(tcptrace);
                c.args(args).args(["--port", &port.to_string()]);
                c
            }
            Kind::Bpftrace(script) => {
                let mut c = Command::new("bpftrace");
                c.arg(root.join("bench/peers").join(script))
                    .arg(port.to_string());
                c
            }
            Kind::Tcpstates => Command::new("tcpstates"),
        };
        let tag = cfg.name.replace([' ', '-'], "_");
        let out = PathBuf::from(format!("/dev/shm/ttbench-{tag}.out"));
        let err = PathBuf::from(format!("/dev/shm/ttbench-{tag}.err"));
        let started = Instant::now();
        let child = cmd
            .stdout(fs::File::create(&out)?)
            .stderr(fs::File::create(&err)?)
            .spawn()
            .with_context(|| format!("starting {}", cfg.name))?;
        let mut r = Self {
            child,
            cfg,
            out,
            err,
            cpu_at_ready: 0.0,
            started,
            ready_after: Duration::ZERO,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !r.ready() {
            if Instant::now() > deadline || r.child.try_wait()?.is_some() {
                let err = fs::read_to_string(&r.err).unwrap_or_default();
                let _ = r.child.kill();
                let _ = r.child.wait();
                bail!("{} did not start: {err}", cfg.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        r.ready_after = started.elapsed();
        r.cpu_at_ready = cpu_secs(r.child.id());
        Ok(Some(r))
    }

    fn ready(&self) -> bool {
        let text = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        match self.cfg.kind {
            Kind::None => true,
            Kind::Tcptrace(_) => text(&self.err).contains("watching"),
            Kind::Bpftrace(_) => text(&self.out).contains("Attaching"),
            // Its stdout is block-buffered into the file: give it the time
            // its start-up takes here instead.
            Kind::Tcpstates => self.started.elapsed() > Duration::from_millis(1500),
        }
    }

    /// The first line of output after the ready marker, if any yet.
    pub fn has_event(&self) -> bool {
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        match self.cfg.kind {
            Kind::Tcptrace(args) if args.contains(&"--json") => text.lines().next().is_some(),
            _ => text.lines().nth(1).is_some(),
        }
    }

    /// Stops the tracer (SIGINT, so it flushes) and reads what it did.
    pub fn stop(mut self) -> Result<Sample> {
        let pid = self.child.id();
        let rss_peak_kb = status_kb(pid, "VmHWM:");
        let rss_kb = status_kb(pid, "VmRSS:");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        // wait4 for the child's whole CPU time, final drain included.
        let mut status = 0;
        // SAFETY: zeroed rusage is a valid out-parameter.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // A printf peer may still be writing out its backlog: give it time,
        // then stop it hard (its count is then what it had written).
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut killed = false;
        loop {
            // SAFETY: valid pointers; WNOHANG polls.
            let r = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut ru) };
            if r == pid as i32 {
                break;
            }
            if Instant::now() > deadline && !killed {
                eprintln!(
                    "bench: {} did not stop within 60 s of SIGINT; killing it",
                    self.cfg.name
                );
                let _ = self.child.kill();
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let total = tv(ru.ru_utime) + tv(ru.ru_stime);
        let out = fs::read_to_string(&self.out).unwrap_or_default();
        let err = fs::read_to_string(&self.err).unwrap_or_default();
        let _ = fs::remove_file(&self.out);
        let _ = fs::remove_file(&self.err);
        let (events, lost) = self.count(&out, &err);
        Ok(Sample {
            cpu_secs: (total - self.cpu_at_ready).max(0.0),
            events: self.cfg.counts_events.then_some(events),
            lost,
            // Not ru_maxrss: it counts pages shared with the harness before exec.
            rss_peak_kb,
            rss_kb,
        })
    }

    fn count(&self, out: &str, err: &str) -> (u64, u64) {
        // "lost N events" in any tool's stderr.
        let text_lost: u64 = err
            .lines()
            .filter_map(|l| {
                let i = l.find("lost ")?;
                l[i + 5..].split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum();
        match self.cfg.kind {
            Kind::None => (0, 0),
            Kind::Tcptrace(args) if args.contains(&"--json") => {
                let mut events = 0;
                let mut lost = 0;
                for l in out.lines() {
                    if l.starts_with("{\"type\":\"lost\"") {
                        lost += serde_json::from_str::<serde_json::Value>(l)
                            .ok()
                            .and_then(|v| v["count"].as_u64())
                            .unwrap_or(0);
                    } else {
                        events += 1;
                    }
                }
                (events, lost)
            }
            // Text: a header line, then one line per event.
            Kind::Tcptrace(_) | Kind::Tcpstates => {
                (out.lines().count().saturating_sub(1) as u64, text_lost)
            }
            Kind::Bpftrace(script) if script.ends_with("count.bt") => {
                let n = out
                    .lines()
                    .find_map(|l| l.strip_prefix("@events: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                (n, 0)
            }
            Kind::Bpftrace(_) => {
                let n = out
                    .lines()
                    .skip_while(|l| !l.starts_with("Attaching"))
                    .skip(1)
                    .filter(|l| !l.trim().is_empty())
                    .count() as u64;
                (n, text_lost)
            }
        }
    }
}
