//! The real `tcptrace` binary as a child process: started, waited for until
//! its programs are attached, its output watched while it runs, stopped
//! with a signal, its JSON Lines parsed (or its bytes kept as they are).

use std::{
    io::Read,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{Receiver, Sender, channel},
    },
    thread::JoinHandle,
    time::Duration,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

use crate::wait_until;

/// Path of the binary under test: `TCPTRACE_BIN` (set by `cargo xtask
/// test`: the release build on the host, the debug build in the VMs),
/// else the workspace's debug build.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TCPTRACE_BIN") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/tcptrace");
    assert!(
        p.exists(),
        "{} does not exist: build it first (`cargo xtask test` does)",
        p.display()
    );
    p
}

/// Whether the binary under test is an optimised build (its `--version`
/// does not say "debug build").
pub fn optimised() -> bool {
    static OPTIMISED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OPTIMISED.get_or_init(|| {
        let out = output(&["--version"]);
        assert!(out.status.success(), "tcptrace --version failed");
        !String::from_utf8_lossy(&out.stdout).contains("debug build")
    })
}

/// A connect hook plan (`tcptrace --connect-plan`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Fexit,
    Kprobe,
    Syscalls,
}

impl Plan {
    pub const ALL: [Plan; 3] = [Plan::Fexit, Plan::Kprobe, Plan::Syscalls];

    /// Its `--connect-plan` name.
    pub fn arg(self) -> &'static str {
        match self {
            Self::Fexit => "fexit",
            Self::Kprobe => "kprobe",
            Self::Syscalls => "syscalls",
        }
    }

    /// How its full name (`connect_plan` in `check` and recordings) starts.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Fexit => "fexit",
            Self::Kprobe => "kprobe",
            Self::Syscalls => "tracepoints syscalls",
        }
    }
}

/// The connect plan every live tcptrace of this run is told to use:
/// `TCPTRACE_CONNECT_PLAN` (set by `cargo xtask kernels` to run the
/// connect tests once per plan the kernel allows); `None`: tcptrace's own
/// choice.
pub fn forced_plan() -> Option<Plan> {
    let v = std::env::var("TCPTRACE_CONNECT_PLAN").ok()?;
    Some(
        Plan::ALL
            .into_iter()
            .find(|p| p.arg() == v)
            .unwrap_or_else(|| panic!("TCPTRACE_CONNECT_PLAN={v}: not fexit, kprobe or syscalls")),
    )
}

/// Runs tcptrace to completion with `args`; returns what it printed as it is.
pub fn output(args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .output()
        .expect("running tcptrace")
}

/// Runs tcptrace to completion with `args`; returns status, stdout, stderr.
pub fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let out = output(args);
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running tcptrace.
pub struct Tracer {
    args: Vec<String>,
    child: Child,
    /// Everything read from its standard output so far.
    stdout: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    /// While held, nothing is read from its standard output.
    gate: Option<Sender<()>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Tracer {
    /// Starts `tcptrace ARGS` (with the [`forced_plan`], if any) and waits
    /// until it says it is watching.
    pub fn start(args: &[&str]) -> Self {
        Self::spawn(args, false)
    }

    /// [`Tracer::start`], but nothing is read from its standard output
    /// (a reader that stalls) until [`Tracer::resume_reading`] or the end.
    pub fn start_stalled(args: &[&str]) -> Self {
        Self::spawn(args, true)
    }

    fn spawn(args: &[&str], stalled: bool) -> Self {
        let mut cmd = Command::new(binary());
        cmd.args(args);
        if let Some(plan) = forced_plan() {
            cmd.args(["--connect-plan", plan.arg()]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tcptrace");
        let (gate, wait) = if stalled {
            let (tx, rx) = channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            read_all(child.stdout.take().unwrap(), stdout.clone(), wait),
            read_all(child.stderr.take().unwrap(), stderr.clone(), None),
        ];
        let mut t = Self {
            args: args.iter().map(|a| a.to_string()).collect(),
            child,
            stdout,
            readers,
            gate,
            stderr,
        };
        // Start-up loads and verifies a dozen programs: seconds under an
        // emulated guest's one CPU on a busy host (20 s was not enough once).
        let ready = wait_until(Duration::from_secs(60), || {
            t.stderr().contains("watching") || t.child.try_wait().ok().flatten().is_some()
        });
        assert!(
            ready && t.stderr().contains("watching"),
            "tcptrace {args:?} did not start: {}",
            t.stderr()
        );
        // tcptrace prints "watching" a moment before it installs its
        // SIGINT/SIGTERM handlers; a signal sent in between kills it
        // without the final flush. Wait until it catches both.
        let pid = t.pid();
        assert!(
            wait_until(Duration::from_secs(5), || catches(
                pid,
                &[Signal::SIGINT, Signal::SIGTERM]
            )),
            "tcptrace {args:?} said it was watching but does not catch SIGINT and SIGTERM"
        );
        t
    }

    /// The process id of tcptrace.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until tcptrace has read the sockets from before start-up
    /// (its `tcptrace-seed` thread has ended). Events wait for those seeds
    /// at most 150 ms; on a slow machine (a VM under emulation) reading
    /// /proc takes longer, and a test about owners seeded from /proc must
    /// not race it.
    pub fn wait_seeded(&self) {
        let tasks = format!("/proc/{}/task", self.child.id());
        let seeding = || {
            std::fs::read_dir(&tasks).is_ok_and(|d| {
                d.flatten().any(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim_end() == "tcptrace-seed")
                })
            })
        };
        assert!(
            wait_until(Duration::from_secs(20), || !seeding()),
            "tcptrace did not finish reading /proc within 20 s"
        );
    }

    /// What it printed on standard error so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Starts reading the output of a [`Tracer::start_stalled`].
    pub fn resume_reading(&mut self) {
        self.gate = None;
    }

    /// The JSON records of the whole lines printed so far.
    pub fn records(&self) -> Vec<Value> {
        let out = self.stdout.lock().unwrap();
        let whole = out.rsplitn(2, |&b| b == b'\n').nth(1).unwrap_or_default();
        json_lines(whole, &self.stderr())
    }

    /// Waits at most `limit` until the records printed so far satisfy
    /// `done`, and returns them; fails the test, saying `what` it waited
    /// for, if they never do.
    pub fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let (ok, recs) = self.settle(limit, done);
        let tail: Vec<String> = recs
            .iter()
            .skip(recs.len().saturating_sub(20))
            .map(Value::to_string)
            .collect();
        assert!(
            ok,
            "tcptrace {:?} did not print {what} within {limit:?}; it printed {} records, the last:\n{}\nstderr: {}",
            self.args,
            recs.len(),
            tail.join("\n"),
            self.stderr()
        );
        recs
    }

    /// Waits at most `limit` until the records printed so far satisfy
    /// `done`; returns whether they did, and the records.
    pub fn settle(
        &self,
        limit: Duration,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> (bool, Vec<Value>) {
        let mut recs = Vec::new();
        let ok = wait_until(limit, || {
            recs = self.records();
            done(&recs)
        });
        (ok, recs)
    }

    /// Sends `sig`, waits for exit, and returns what it printed, as it is.
    pub fn finish(mut self, sig: Signal) -> Finished {
        self.gate = None;
        let _ = kill(Pid::from_raw(self.child.id() as i32), sig);
        let mut status = None;
        wait_until(Duration::from_secs(10), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        let Some(status) = status else {
            let _ = self.child.kill();
            panic!(
                "tcptrace {:?} did not exit within 10 s of {sig}: {}",
                self.args,
                self.stderr()
            );
        };
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        Finished {
            status,
            stdout: std::mem::take(&mut *self.stdout.lock().unwrap()),
            stderr: self.stderr(),
        }
    }

    /// Sends `sig`, waits for exit, and returns the JSON records printed.
    pub fn stop_with(self, sig: Signal) -> (ExitStatus, Vec<Value>) {
        let f = self.finish(sig);
        (f.status, json_lines(&f.stdout, &f.stderr))
    }

    /// Waits for tcptrace to end by itself (`--count`, `--duration`).
    pub fn wait_exit(mut self, limit: Duration) -> (ExitStatus, Vec<Value>) {
        if !wait_until(limit, || self.child.try_wait().ok().flatten().is_some()) {
            panic!(
                "tcptrace did not end by itself within {limit:?}: {}",
                self.stderr()
            );
        }
        self.stop_with(Signal::SIGCONT)
    }

    /// Stops with SIGINT, asserts a clean exit, returns the records.
    pub fn stop(self) -> Vec<Value> {
        let (status, records) = self.stop_with(Signal::SIGINT);
        assert!(status.success(), "tcptrace exited with {status}");
        records
    }

    /// Stops with SIGINT, asserts a clean exit, returns what it printed.
    pub fn stop_raw(self) -> Finished {
        let f = self.finish(Signal::SIGINT);
        assert!(
            f.status.success(),
            "tcptrace exited with {}: {}",
            f.status,
            f.stderr
        );
        f
    }
}

/// What a tcptrace that has ended printed.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.gate = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether process `pid` has handlers for all of `signals` (`SigCgt` in
/// /proc/PID/status: bit N-1 for signal N).
fn catches(pid: u32, signals: &[Signal]) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let caught = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or(0);
    signals.iter().all(|&s| caught & (1 << (s as i32 - 1)) != 0)
}

/// Reads `from` to its end into `into`, once `gate` (if any) opens.
fn read_all(
    mut from: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
    gate: Option<Receiver<()>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        if let Some(g) = gate {
            // Opened by dropping the sender.
            let _ = g.recv();
        }
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

/// Parses JSON Lines; fails the test on a line that is not JSON.
pub fn json_lines(bytes: &[u8], stderr: &str) -> Vec<Value> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!(
                    "not JSON ({e}): {:?}\nstderr: {stderr}",
                    String::from_utf8_lossy(l)
                )
            })
        })
        .collect()
}

/// Records of one `type`.
pub fn of_type<'a>(records: &'a [Value], ty: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == ty).collect()
}

/// Retransmit attempts that failed after the kernel had counted them
/// (Linux 6.17+ traces failures): `__tcp_retransmit_skb` adds to
/// `RetransSegs` (and `TCPSynRetrans`) before it transmits, so an error
/// from the transmit itself is counted there though nothing left; only
/// `EBUSY` (still queued on the host), `EAGAIN` (zero window) and `ENOMEM`
/// come back before the count. tcptrace says these records' segments are
/// 0, so a sum check allows up to two segments for each.
pub fn failed_after_count(records: &[Value]) -> u64 {
    of_type(records, "retrans")
        .into_iter()
        .filter(|r| {
            r.get("failed")
                .and_then(Value::as_str)
                .is_some_and(|e| !matches!(e, "EBUSY" | "EAGAIN" | "ENOMEM"))
        })
        .count() as u64
}

/// The sum of the `count` of every `lost` record, and of those from `source`.
pub fn lost(records: &[Value], source: &str) -> (u64, u64) {
    let mut all = 0;
    let mut from = 0;
    for r in of_type(records, "lost") {
        let n = r["count"].as_u64().unwrap_or_else(|| panic!("{r}"));
        all += n;
        if r["source"] == source {
            from += n;
        }
    }
    (all, from)
}
