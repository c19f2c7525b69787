//! The real `tcptrace` binary as a child process: started, waited for until
//! its programs are attached, stopped with a signal, its JSON Lines parsed.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
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
/// test`), else the workspace's debug build.
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

/// Runs tcptrace to completion with `args`; returns status, stdout, stderr.
pub fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(binary())
        .args(args)
        .output()
        .expect("running tcptrace");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running tcptrace.
pub struct Tracer {
    child: Child,
    stdout: Option<JoinHandle<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Tracer {
    /// Starts `tcptrace ARGS` (with the [`forced_plan`], if any) and waits
    /// until it says it is watching.
    pub fn start(args: &[&str]) -> Self {
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
        let out = child.stdout.take().unwrap();
        let stdout =
            std::thread::spawn(move || BufReader::new(out).lines().map_while(Result::ok).collect());
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut t = Self {
            child,
            stdout: Some(stdout),
            stderr,
        };
        let ready = wait_until(Duration::from_secs(20), || {
            t.stderr().contains("watching") || t.child.try_wait().ok().flatten().is_some()
        });
        assert!(
            ready && t.stderr().contains("watching"),
            "tcptrace {args:?} did not start: {}",
            t.stderr()
        );
        t
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

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends `sig`, waits for exit, and returns the JSON records printed.
    pub fn stop_with(mut self, sig: Signal) -> (ExitStatus, Vec<Value>) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), sig);
        let mut status = None;
        wait_until(Duration::from_secs(10), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        let status = match status {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                panic!(
                    "tcptrace did not exit within 10 s of {sig}: {}",
                    self.stderr()
                );
            }
        };
        let lines = self.stdout.take().unwrap().join().unwrap();
        let records = lines
            .iter()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\nstderr: {}", self.stderr()))
            })
            .collect();
        (status, records)
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
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records of one `type`.
pub fn of_type<'a>(records: &'a [Value], ty: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == ty).collect()
}
