//! One configuration running as a child process: started and waited for
//! until its programs are attached, then, after the workload, left to drain,
//! sampled (CPU, wakeups, RSS) and stopped with SIGINT. Its output goes to a
//! tmpfs file (like /dev/null it never blocks, unlike /dev/null it can be
//! counted) and is counted once it has exited.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{
    configs::{Config, Kind, Watch},
    host,
    kstats::{self, KernelCost, Snapshot},
};

/// Where the programs under test are.
pub struct Tools {
    pub tcptrace: PathBuf,
    pub tcpstates: PathBuf,
    /// `bench/peers`.
    pub peers: PathBuf,
    /// This binary (`bench-worker floor` loads the floor).
    pub xtask: PathBuf,
    /// The compiled floor program.
    pub floor: PathBuf,
}

/// A started configuration.
pub struct Running {
    child: Child,
    cfg: &'static Config,
    port: u16,
    out: PathBuf,
    err: PathBuf,
    /// When it was spawned.
    pub started: Instant,
    /// From spawn to attached.
    pub ready_after: Duration,
    attached_at: Instant,
    cpu_at_ready: u64,
    switches_at_ready: u64,
    progs_at_ready: Snapshot,
}

/// What a configuration did during one run.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// CPU seconds (user + system, all threads) from attached to drained:
    /// start-up and exit are left out.
    pub cpu_secs: f64,
    /// Wall-clock seconds of that span.
    pub wall_secs: f64,
    /// CPU seconds of the whole process (wait4), start-up and exit included.
    pub cpu_total_secs: f64,
    /// Context switches over the sampled span.
    pub wakeups: u64,
    /// Output events counted (only for configurations that print one per
    /// event, or count in the kernel).
    pub events: Option<u64>,
    /// Retransmissions: the segments they held (tcptrace's `segs`, the
    /// peers' `tcp_gso_segs`), the unit of `RetransSegs`.
    pub segs: Option<u64>,
    /// Events the tool itself reported lost, by its reason.
    pub lost_by: BTreeMap<String, u64>,
    pub rss_peak_kb: u64,
    pub rss_kb: u64,
    pub ready_ms: f64,
    /// It ignored SIGINT for 20 s and was killed (its count may be short).
    pub killed: bool,
    /// What its BPF programs cost the kernel over the sampled span.
    pub kernel: Option<KernelCost>,
}

impl Sample {
    pub fn lost(&self) -> u64 {
        self.lost_by.values().sum()
    }
}

/// Whether a process holds an fd whose link target contains `what`, and how
/// many.
fn fds(pid: u32, what: &str) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| fs::read_link(e.path()).ok())
                .filter(|l| l.to_string_lossy().contains(what))
                .count()
        })
        .unwrap_or(0)
}

fn text(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

impl Running {
    /// Starts `cfg` watching `port` and waits until it is attached; `None`
    /// for the baseline.
    pub fn start(cfg: &'static Config, port: u16, tools: &Tools) -> Result<Option<Self>> {
        let mut cmd = match cfg.kind {
            Kind::None => return Ok(None),
            Kind::Tcptrace(args) => {
                let mut c = Command::new(&tools.tcptrace);
                c.args(args).args(["--port", &port.to_string()]);
                c
            }
            Kind::Bpftrace(script) => {
                let mut c = Command::new("bpftrace");
                c.arg(tools.peers.join(script)).arg(port.to_string());
                c
            }
            Kind::Tcpstates => Command::new(&tools.tcpstates),
            Kind::Floor => {
                let mut c = Command::new(&tools.xtask);
                c.args(["bench-worker", "floor", "--obj"]).arg(&tools.floor);
                c
            }
        };
        let tag = cfg.name.replace([' ', '-'], "_");
        let out = PathBuf::from(format!("/dev/shm/ttbench-{}-{tag}.out", std::process::id()));
        let err = out.with_extension("err");
        let started = Instant::now();
        let child = cmd
            .stdout(fs::File::create(&out)?)
            .stderr(fs::File::create(&err)?)
            .spawn()
            .with_context(|| format!("starting {}", cfg.name))?;
        let mut r = Self {
            child,
            cfg,
            port,
            out,
            err,
            started,
            ready_after: Duration::ZERO,
            attached_at: started,
            cpu_at_ready: 0,
            switches_at_ready: 0,
            progs_at_ready: Snapshot::new(),
        };
        let deadline = started + Duration::from_secs(30);
        let mut announced: Option<Instant> = None;
        while !r.ready(&mut announced) {
            if Instant::now() > deadline || r.child.try_wait()?.is_some() {
                let _ = r.child.kill();
                let _ = r.child.wait();
                bail!("{} did not start: {}", cfg.name, text(&r.err).trim());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        r.attached_at = Instant::now();
        r.ready_after = r.attached_at - started;
        r.cpu_at_ready = host::cpu_ns(r.child.id());
        r.switches_at_ready = host::switches(r.child.id());
        r.progs_at_ready = kstats::snapshot(r.child.id());
        Ok(Some(r))
    }

    /// Whether the programs are attached. Each tool says so differently.
    fn ready(&self, announced: &mut Option<Instant>) -> bool {
        let pid = self.child.id();
        match self.cfg.kind {
            Kind::None => true,
            // Printed once every program is attached.
            Kind::Tcptrace(_) => text(&self.err).contains("tcptrace: watching"),
            Kind::Floor => text(&self.err).contains("floor: attached"),
            // bpftrace prints "Attaching N probes..." *before* attaching,
            // after opening one perf buffer per CPU; each attached
            // tracepoint then adds a perf event fd.
            Kind::Bpftrace(_) => {
                let out = text(&self.out);
                let Some(n) = out
                    .lines()
                    .find_map(|l| l.strip_prefix("Attaching "))
                    .and_then(|r| r.split_whitespace().next()?.parse::<usize>().ok())
                else {
                    return false;
                };
                let seen = *announced.get_or_insert_with(Instant::now);
                // SAFETY: no preconditions.
                let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as usize;
                fds(pid, "[perf_event]") >= cpus + n || seen.elapsed() > Duration::from_millis(500)
            }
            // tcpstates sets up its perf buffer (and its epoll fd) right
            // after attaching; its stdout is block-buffered, so its header
            // cannot tell us.
            Kind::Tcpstates => fds(pid, "[eventpoll]") > 0,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it has printed so far.
    pub fn output(&self) -> String {
        text(&self.out)
    }

    /// Whether it has printed an event yet (for the time to first event).
    pub fn has_event(&self) -> bool {
        let t = text(&self.out);
        t.lines()
            .any(|l| l.starts_with("{\"type\":\"state\"") || l.starts_with("{\"type\":\"retrans\""))
    }

    /// Waits until its output has not grown for 200 ms (at most 30 s), so
    /// the sample covers draining everything the workload made.
    fn quiesce(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut len = file_len(&self.out);
        let mut still_since = Instant::now();
        while Instant::now() < deadline && still_since.elapsed() < Duration::from_millis(200) {
            std::thread::sleep(Duration::from_millis(20));
            let now = file_len(&self.out);
            if now != len {
                len = now;
                still_since = Instant::now();
            }
        }
    }

    /// Lets it drain, samples it, stops it (SIGINT, so it flushes) and
    /// counts what it printed.
    pub fn stop(mut self) -> Result<Sample> {
        self.quiesce();
        let pid = self.child.id();
        let mut s = Sample {
            cpu_secs: host::cpu_ns(pid).saturating_sub(self.cpu_at_ready) as f64 / 1e9,
            wall_secs: self.attached_at.elapsed().as_secs_f64(),
            wakeups: host::switches(pid).saturating_sub(self.switches_at_ready),
            rss_peak_kb: host::status_kb(pid, "VmHWM:"),
            rss_kb: host::status_kb(pid, "VmRSS:"),
            ready_ms: self.ready_after.as_secs_f64() * 1e3,
            kernel: Some(kstats::delta(&self.progs_at_ready, &kstats::snapshot(pid))),
            ..Sample::default()
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid out-parameter.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // SAFETY: valid pointers; WNOHANG only polls.
            let r = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut ru) };
            if r == pid as i32 || r < 0 {
                break;
            }
            if Instant::now() > deadline && !s.killed {
                eprintln!(
                    "bench: {} did not stop within 20 s of SIGINT; killing it",
                    self.cfg.name
                );
                let _ = self.child.kill();
                s.killed = true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        s.cpu_total_secs = tv(ru.ru_utime) + tv(ru.ru_stime);
        self.count(&mut s)?;
        let _ = fs::remove_file(&self.out);
        let _ = fs::remove_file(&self.err);
        Ok(s)
    }

    fn count(&self, s: &mut Sample) -> Result<()> {
        let lines = BufReader::new(fs::File::open(&self.out)?)
            .lines()
            .map_while(Result::ok);
        let err = text(&self.err);
        let mut events = 0u64;
        let mut segs = 0u64;
        let mut lost = |why: &str, n: u64| {
            if n > 0 {
                *s.lost_by.entry(why.to_string()).or_default() += n;
            }
        };
        // "lost N events: why" (tcptrace text), "lost N events on CPU #c"
        // (libbpf-tools), "N records dropped because the output was too
        // slow" (tcptrace text).
        for l in err.lines() {
            if let Some(i) = l.find("lost ") {
                let n = number(&l[i + 5..]);
                let why = if l.contains("already running") {
                    "kernel-nested"
                } else if l.contains("ring buffer") {
                    "kernel"
                } else {
                    "perf buffer"
                };
                lost(why, n);
            } else if l.contains("records dropped because the output") {
                lost(
                    "output",
                    number(l.trim_start_matches("tcptrace: warning: ")),
                );
            }
        }
        match self.cfg.kind {
            Kind::None | Kind::Floor => {}
            Kind::Tcptrace(args) if args.contains(&"--json") => {
                for l in lines {
                    if l.starts_with("{\"type\":\"lost\"") {
                        let source = field(&l, "\"source\":\"").unwrap_or("?");
                        let source = source.split('"').next().unwrap_or("?").to_string();
                        lost(&source, field(&l, "\"count\":").map_or(0, number));
                    } else if l.starts_with("{\"type\":\"state\"")
                        || l.starts_with("{\"type\":\"retrans\"")
                    {
                        // Not the closing `summary` record: its `segs` is
                        // the run's total (counting it doubled the sum).
                        events += 1;
                        segs += segments(&l, field(&l, "\"segs\":"));
                    }
                }
            }
            Kind::Tcptrace(_) => {
                for l in lines.filter(|l| !l.is_empty() && !l.starts_with("TIME")) {
                    events += 1;
                    segs += segments(&l, l.split_whitespace().last());
                }
            }
            Kind::Bpftrace(script) if script.ends_with("count.bt") => {
                events = lines
                    .filter_map(|l| l.strip_prefix("@events: ").map(number))
                    .sum();
                segs = events;
            }
            Kind::Bpftrace(_) => {
                for l in lines.skip_while(|l| !l.starts_with("Attaching")).skip(1) {
                    // bpftrace reports perf-buffer overruns in its stdout.
                    if let Some(r) = l.strip_prefix("Lost ") {
                        lost("perf buffer", number(r));
                    } else if !l.trim().is_empty() {
                        events += 1;
                        // The retrans scripts print the segments last.
                        segs += l.split_whitespace().last().map_or(1, |v| number(v).max(1));
                    }
                }
            }
            Kind::Tcpstates => {
                // SKADDR PID COMM LADDR LPORT RADDR RPORT OLD -> NEW MS, read
                // from the end because COMM may hold spaces.
                let port = self.port.to_string();
                events = lines
                    .filter(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        f.len() >= 11 && (f[f.len() - 7] == port || f[f.len() - 5] == port)
                    })
                    .count() as u64;
            }
        }
        if matches!(self.cfg.watch, Watch::States | Watch::Retrans) {
            s.events = Some(events);
        }
        if self.cfg.watch == Watch::Retrans {
            s.segs = Some(segs);
        }
        Ok(())
    }
}

/// The text after `key` in `line`.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.find(key).map(|i| &line[i + key.len()..])
}

/// The leading decimal number of `s` (0 if none).
/// The segments a tcptrace retransmit line says were sent, from its
/// `segs` value: none for a failed attempt (nothing left the host, and
/// the kernel's `RetransSegs` does not count it; the line says `failed`),
/// at least one otherwise (a line without a count is one segment).
fn segments(line: &str, segs: Option<&str>) -> u64 {
    // JSON: a `failed` key; text: `0 failed:ERRNO` ends the line.
    if line.contains("\"failed\":") || segs.is_some_and(|v| v.starts_with("failed:")) {
        return 0;
    }
    segs.map_or(1, |v| number(v).max(1))
}

fn number(s: &str) -> u64 {
    let s = s.trim_start();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_retransmit_sent_no_segment() {
        let json =
            r#"{"type":"retrans","state":"ESTABLISHED","kind":"rto","segs":0,"failed":"EBUSY"}"#;
        assert_eq!(segments(json, field(json, "\"segs\":")), 0);
        let json = r#"{"type":"retrans","state":"ESTABLISHED","kind":"rto","segs":3}"#;
        assert_eq!(segments(json, field(json, "\"segs\":")), 3);
        let text = "10:00:00.000 1 x 10.0.0.1:1 10.0.0.2:2 ESTABLISHED  rto    0 failed:EBUSY";
        assert_eq!(segments(text, text.split_whitespace().last()), 0);
        let text = "10:00:00.000 1 x 10.0.0.1:1 10.0.0.2:2 ESTABLISHED  rto    2";
        assert_eq!(segments(text, text.split_whitespace().last()), 2);
        assert_eq!(segments("x -", Some("-")), 1);
        // A process may be called anything.
        let text = "10:00:00.000 1 failed 10.0.0.1:1 10.0.0.2:2 ESTABLISHED  rto    2";
        assert_eq!(segments(text, text.split_whitespace().last()), 2);
    }

    #[test]
    fn numbers_and_fields() {
        assert_eq!(number("12 events"), 12);
        assert_eq!(number("null}"), 0);
        let l = r#"{"type":"lost","ts":"x","count":42,"source":"kernel-nested"}"#;
        assert_eq!(field(l, "\"count\":").map(number), Some(42));
        assert_eq!(
            field(l, "\"source\":\"").and_then(|v| v.split('"').next()),
            Some("kernel-nested")
        );
    }
}
