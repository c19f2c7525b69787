//! What the harness reads from the host: a process's CPU time, RSS and
//! context switches from /proc, the machine's description, other tracers
//! that would skew a run, the peers' binaries (installed when missing), a
//! lock so two `cargo xtask bench` never measure each other, and network
//! namespaces for the workloads (the tests' [`harness::netns`], tuned for
//! connection storms).

use std::{
    fs::{self, File},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use harness::NetNs;

/// CPU time of every thread of `pid`, in nanoseconds (the scheduler's own
/// accounting in `schedstat`, so a 10 s idle run is measured to the
/// microsecond rather than to the 10 ms tick of `/proc/<pid>/stat`).
pub fn cpu_ns(pid: u32) -> u64 {
    sum_tasks(pid, |task| {
        fs::read_to_string(task.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    })
}

/// Context switches (voluntary and not) of every thread of `pid`: how often
/// it woke up.
pub fn switches(pid: u32) -> u64 {
    sum_tasks(pid, |task| {
        fs::read_to_string(task.join("status"))
            .map(|s| {
                s.lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0)
    })
}

fn sum_tasks(pid: u32, f: impl Fn(&Path) -> u64) -> u64 {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.filter_map(Result::ok).map(|e| f(&e.path())).sum())
        .unwrap_or(0)
}

/// A `kB` field of `/proc/<pid>/status` (`VmHWM:`, `VmRSS:`).
pub fn status_kb(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Tracers on the host that are not ours: their programs run on the same
/// tracepoints and their CPU competes with the workload.
pub fn foreign_tracers() -> Vec<String> {
    let me = std::process::id().to_string();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let pid = e.file_name().into_string().ok()?;
            pid.parse::<u32>().ok()?;
            let comm = fs::read_to_string(e.path().join("comm")).ok()?;
            let comm = comm.trim();
            if !matches!(comm, "tcptrace" | "bpftrace" | "tcpstates") {
                return None;
            }
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            let mut f = stat.rsplit_once(')')?.1.split_whitespace();
            let (state, ppid) = (f.next()?, f.next()?);
            // A zombie has detached its programs already.
            (ppid != me && state != "Z").then(|| format!("{comm}[{pid}]"))
        })
        .collect()
}

/// Waits (up to `secs`) for other tracers to go; returns those still there.
pub fn wait_for_quiet(secs: u64) -> Vec<String> {
    let mut warned = false;
    for _ in 0..secs * 10 {
        let f = foreign_tracers();
        if f.is_empty() {
            return f;
        }
        if !warned {
            eprintln!(
                "bench: waiting up to {secs} s for other tracers to end: {}",
                f.join(" ")
            );
            warned = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    foreign_tracers()
}

/// Held for the whole run: a second `cargo xtask bench` waits for the first
/// instead of measuring it.
pub struct Lock {
    _file: File,
}

pub fn lock() -> Result<Lock> {
    let f = File::create("/run/lock/tcptrace-bench.lock")
        .or_else(|_| File::create("/tmp/tcptrace-bench.lock"))
        .context("creating the bench lock file")?;
    // SAFETY: a valid open fd.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!("bench: another `cargo xtask bench` is running; waiting for it to finish");
        // SAFETY: as above; blocks until the other run ends.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("could not take the bench lock");
        }
    }
    Ok(Lock { _file: f })
}

/// A private network namespace for many short connections (every port,
/// TIME_WAIT sockets reused, deep accept queues), removed on drop.
pub fn netns(tag: &str) -> NetNs {
    let ns = NetNs::new(tag);
    ns.many_connections();
    ns
}

/// Two such namespaces joined by a veth pair with offloads off:
/// 10.201.0.1 (the first) and 10.201.0.2 (the second).
pub fn veth_pair(tag: &str) -> (NetNs, NetNs) {
    let (a, b) = harness::netns::veth_pair(tag);
    a.many_connections();
    b.many_connections();
    (a, b)
}

fn have(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs the peers and the workload tools when missing (not part of
/// `setup`: only the benchmarks need them); returns the path of
/// libbpf-tools' `tcpstates`, which Debian may install outside PATH.
pub fn ensure_tools() -> Result<PathBuf> {
    let missing: Vec<&str> = [
        ("bpftrace", "bpftrace"),
        ("nft", "nftables"),
        ("ethtool", "ethtool"),
        ("ip", "iproute2"),
        // Compiles the floor peer (bench/peers/floor.bpf.c).
        ("clang", "clang"),
    ]
    .into_iter()
    .filter(|(bin, _)| !have(bin))
    .map(|(_, pkg)| pkg)
    .chain(tcpstates().is_none().then_some("libbpf-tools"))
    .collect();
    if !missing.is_empty() {
        eprintln!("bench: installing {}", missing.join(" "));
        let mut c = Command::new("apt-get");
        c.args(["update", "-q"]);
        crate::check(c)?;
        let mut c = Command::new("apt-get");
        c.args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive");
        crate::check(c)?;
    }
    tcpstates().context("libbpf-tools is installed but has no tcpstates")
}

fn tcpstates() -> Option<PathBuf> {
    let out = Command::new("dpkg")
        .args(["-L", "libbpf-tools"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .find(|p| p.file_name().is_some_and(|n| n == "tcpstates") && p.is_file())
}

/// Mounts tracefs when a fresh boot left it unmounted (bpftrace and
/// tcptrace attach tracepoints through it).
pub fn ensure_tracefs() {
    if !Path::new("/sys/kernel/tracing/events").exists() {
        let _ = Command::new("mount")
            .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
            .status();
    }
}

fn first_field(path: &str, key: &str) -> Option<String> {
    fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// The machine, kernel and commit, for the report.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cores: i64,
    pub cpu: String,
    pub mem_gib: f64,
    pub kernel: String,
    pub commit: String,
    /// Uncommitted changes under the crates that make the binary.
    pub dirty: bool,
}

pub fn machine(root: &Path) -> Machine {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let mem_kb: f64 = first_field("/proc/meminfo", "MemTotal")
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    Machine {
        // SAFETY: no preconditions.
        cores: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) },
        cpu: first_field("/proc/cpuinfo", "model name").unwrap_or_default(),
        mem_gib: mem_kb / (1024.0 * 1024.0),
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        commit: git(&["rev-parse", "--short", "HEAD"]),
        dirty: !git(&[
            "status",
            "--porcelain",
            "--",
            "tracer",
            "tracer-ebpf",
            "tracer-common",
        ])
        .is_empty(),
    }
}
