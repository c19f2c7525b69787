//! `cargo xtask kernels`: the privileged suite and `tcptrace check` on
//! Debian 12's own kernels (6.1, and 6.12 from bookworm-backports) booted
//! in virtual machines, and on the host's kernel; one table at the end.
//!
//! The VMs are qemu under TCG (KVM does not work on these machines)
//! driven by virtme-ng, which boots a kernel over the host's filesystem,
//! read-only (virtme-ng puts writable overlays on /tmp, /etc, /var, and
//! /run is a tmpfs): the binaries built here run there as they are. Inside,
//! `xtask kernels-guest` ([`guest`]) runs check, the tests, and the connect
//! tests once more under every other connect plan the kernel allows, and
//! prints one result line that is read from the VM's console.
//!
//! - `fetch`: qemu, virtme-ng and the kernel packages, cached in
//!   `target/kernels/` between runs;
//! - `guest`: the driver on the kernel under test.

pub mod fetch;
pub mod guest;
mod table;

use table::{Row, details, table};

use std::{
    fs,
    io::{BufRead, BufReader, Write as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{cargo, is_root, root_dir, setup};
use fetch::Series;

/// The test binaries run again under each connect plan (by name prefix):
/// the tests of failed connects and handshakes.
const PER_PLAN: &[&str] = &["flows"];
/// Privileged tests not run in the VMs (libtest `--skip` patterns), only
/// on the host: they exercise user-space components (rsyslog, the log
/// sink under a stalled reader, series caps, the deploy/ files), not the
/// kernel, and cost minutes under TCG (all of them pass on 6.12 in a VM:
/// about 220 s in all). The agent's tests that meet the kernel, Prometheus
/// against `RetransSegs` and the unit's capability set under Debian's
/// `perf_event_paranoid`, still run there.
/// The classic-tracepoint variants of tests whose default here is the BTF
/// form (`--hook-type tracepoint`) run on the host only too: every guest
/// has BTF, and `check` there loads and attaches both forms of every hook.
const HOST_ONLY: &[&str] = &[
    "_classic_tracepoint",
    "agent_rsyslog",
    "agent_series",
    "agent_stalled",
    "agent_deploy_prometheus",
    "agent_deploy_rsyslog",
    "agent_deploy_systemd",
];
/// A VM that has not finished by then is stopped and counted as failed.
/// The guests run under emulation and slow down with the host: 20 to 24
/// minutes side by side on a quiet host, 31 and over 35 on a busy one
/// (2026-11-30, the storm baselines 20 % slower); a hung guest is caught
/// sooner by [`SILENCE_LIMIT`].
const VM_LIMIT: Duration = Duration::from_secs(45 * 60);
/// A run that prints nothing (not even the kernel's console) this long is
/// hung: the slowest test binary under emulation prints within a few
/// minutes.
const SILENCE_LIMIT: Duration = Duration::from_secs(8 * 60);

/// A kernel to run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// Debian 12's kernel, in a VM.
    #[value(name = "6.1")]
    V6_1,
    /// Debian 12's backports kernel, in a VM.
    #[value(name = "6.12")]
    V6_12,
    /// This machine's kernel.
    Host,
}

/// Options of `cargo xtask kernels`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// A kernel to run on (repeatable): `6.1` and `6.12` are Debian 12's,
    /// booted in a VM; `host` is this machine's. Default: all three.
    #[arg(long = "kernel", value_enum)]
    pub kernels: Vec<Which>,
    /// Build the debug profile instead of release (release runs the suite
    /// faster under qemu's emulation, after a longer build).
    #[arg(long)]
    pub debug: bool,
    /// Only tests whose name contains one of these, after `--`.
    #[arg(last = true)]
    pub filter: Vec<String>,
}

/// The binaries under test, built on the host.
pub struct Suite {
    pub tcptrace: PathBuf,
    pub tests: Vec<PathBuf>,
}

fn cache_dir() -> PathBuf {
    root_dir().join("target").join("kernels")
}

/// Builds tcptrace and the privileged test binaries.
pub fn build_suite(release: bool) -> Result<Suite> {
    let tcptrace = crate::build(release)?;
    let mut c = cargo();
    c.args([
        "test",
        "--package",
        "tests",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        c.arg("--release");
    }
    c.stderr(Stdio::inherit());
    let out = c.output().context("building the privileged tests")?;
    if !out.status.success() {
        bail!("building the privileged tests failed");
    }
    let mut tests = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(m) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if m["reason"] == "compiler-artifact"
            && m["target"]["kind"] == serde_json::json!(["test"])
            && let Some(exe) = m["executable"].as_str()
        {
            tests.push(PathBuf::from(exe));
        }
    }
    if tests.is_empty() {
        bail!("cargo built no privileged test binaries");
    }
    tests.sort();
    Ok(Suite { tcptrace, tests })
}

/// The guest driver's command line.
fn guest_args(suite: &Suite, filter: &[String], vm: bool) -> Result<Vec<String>> {
    let xtask = std::env::current_exe().context("finding the xtask binary")?;
    let mut args = vec![
        xtask.display().to_string(),
        "kernels-guest".into(),
        "--bin".into(),
        suite.tcptrace.display().to_string(),
    ];
    for t in &suite.tests {
        args.extend(["--test".into(), t.display().to_string()]);
    }
    for p in PER_PLAN {
        args.extend(["--per-plan".into(), (*p).to_string()]);
    }
    if !filter.is_empty() || vm {
        args.push("--".into());
        args.extend(filter.iter().cloned());
    }
    if vm {
        for t in HOST_ONLY {
            args.extend(["--skip".into(), (*t).to_string()]);
        }
    }
    Ok(args)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `cmd` (its standard output and error into one pipe) until it
/// ends, `limit` passes, or it prints nothing for [`SILENCE_LIMIT`] (a
/// guest hung at boot or in a test); keeps every line in `log`, passes
/// the lines that are not the kernel's console through to stderr, each
/// after `tag` (the VMs run side by side), and returns the guest's result
/// line.
fn run_logged(mut cmd: Command, log: &Path, tag: &str, limit: Duration) -> Result<Option<Value>> {
    let (reader, writer) = std::io::pipe()?;
    cmd.stdout(writer.try_clone()?)
        .stderr(writer)
        .stdin(Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    drop(cmd); // our copies of the pipe's write end
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    // Milliseconds from `start` to the last line read.
    let last_line = Arc::new(AtomicU64::new(0));
    let watchdog = {
        let done = done.clone();
        let last_line = last_line.clone();
        std::thread::spawn(move || {
            let why = loop {
                if done.load(Ordering::Relaxed) {
                    return None;
                }
                let now = start.elapsed();
                if now >= limit {
                    break format!(
                        "stopped after {} min without finishing",
                        limit.as_secs() / 60
                    );
                }
                let quiet =
                    now.saturating_sub(Duration::from_millis(last_line.load(Ordering::Relaxed)));
                if quiet >= SILENCE_LIMIT {
                    break format!(
                        "stopped: nothing printed for {} min (hung at boot or in a test)",
                        SILENCE_LIMIT.as_secs() / 60
                    );
                }
                std::thread::sleep(Duration::from_millis(500));
            };
            // The whole group: vng and the qemu it started.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            Some(why)
        })
    };
    let mut file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut result = None;
    for line in BufReader::new(reader).lines().map_while(Result::ok) {
        last_line.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        let _ = writeln!(file, "{line}");
        let console = line.starts_with('[')
            && line
                .get(1..14)
                .is_some_and(|t| t.trim_start().starts_with(|c: char| c.is_ascii_digit()));
        if let Some(json) = line.strip_prefix(guest::RESULT) {
            result = serde_json::from_str(json).ok();
        } else if !console {
            eprintln!("  {tag}| {line}");
        }
    }
    let _ = child.wait();
    done.store(true, Ordering::Relaxed);
    if let Some(why) = watchdog.join().ok().flatten() {
        bail!("{why} (log: {})", log.display());
    }
    Ok(result)
}

/// Boots `kernel` and runs the guest driver in it.
fn run_vm(kernel: &fetch::Kernel, vng_bin: &Path, suite: &Suite, filter: &[String]) -> Row {
    let name = format!("{} ({})", kernel.release, kernel.series.name());
    eprintln!("kernels: booting {name} under qemu (TCG)");
    let log = cache_dir().join(format!("{}.log", kernel.series.name()));
    let start = Instant::now();
    let run = || -> Result<Option<Value>> {
        // The arguments go through a file the guest reads (the VM sees
        // this machine's files): on the kernel's command line, where vng
        // puts the script, a suite of 17 test binaries overflowed its 2 KiB
        // and the kernel died at boot ("detected buffer overflow in
        // __fortify_strlen").
        let args = guest_args(suite, filter, true)?;
        let file = cache_dir().join(format!("guest-args-{}", kernel.series.name()));
        fs::write(&file, args[1..].join("\n"))
            .with_context(|| format!("writing {}", file.display()))?;
        let script = format!(
            "xargs -a {} -d '\\n' {}",
            shell_quote(&file.display().to_string()),
            shell_quote(&args[0])
        );
        let mut c = Command::new(vng_bin.join("vng"));
        let path = std::env::var("PATH").unwrap_or_default();
        c.env("PATH", format!("{}:{path}", vng_bin.display()))
            .current_dir(root_dir())
            .arg("--run")
            .arg(&kernel.vmlinuz)
            .args(["--disable-microvm", "--disable-kvm", "--memory", "3G"])
            // Under TCG, 6.12 oopses in sched_clock_cpu with two CPUs.
            .args([
                "--cpus",
                if kernel.series == Series::V6_12 {
                    "1"
                } else {
                    "2"
                },
            ])
            .args(["--verbose", "--exec", &script]);
        run_logged(c, &log, kernel.series.name(), VM_LIMIT)
    };
    let (result, error) = match run() {
        Ok(Some(r)) => (Some(r), None),
        Ok(None) => (
            None,
            Some(format!("the VM gave no result (log: {})", log.display())),
        ),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    Row {
        name,
        result,
        time: start.elapsed(),
        error,
        log,
    }
}

/// Runs the guest driver on this machine's kernel.
fn run_host(suite: &Suite, filter: &[String]) -> Row {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let name = format!("{release} (host)");
    eprintln!("kernels: running on the host's {release}");
    let log = cache_dir().join("host.log");
    let start = Instant::now();
    let run = || -> Result<Option<Value>> {
        let args = guest_args(suite, filter, false)?;
        let mut c = Command::new(&args[0]);
        c.args(&args[1..]).current_dir(root_dir());
        run_logged(c, &log, "host", VM_LIMIT)
    };
    let (result, error) = match run() {
        Ok(Some(r)) => (Some(r), None),
        Ok(None) => (None, Some(format!("no result (log: {})", log.display()))),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    Row {
        name,
        result,
        time: start.elapsed(),
        error,
        log,
    }
}

/// Runs the suite on `which` kernels; prints the table; fails if any
/// kernel failed.
fn matrix(which: &[Which], suite: &Suite, filter: &[String]) -> Result<()> {
    let cache = cache_dir();
    fs::create_dir_all(&cache)?;
    let vms: Vec<Series> = which
        .iter()
        .filter_map(|w| match w {
            Which::V6_1 => Some(Series::V6_1),
            Which::V6_12 => Some(Series::V6_12),
            Which::Host => None,
        })
        .collect();
    let vng = if vms.is_empty() {
        None
    } else {
        Some(fetch::tools(&cache)?)
    };
    // The VMs run side by side (6.12 has one CPU, 6.1 two; under TCG
    // each is bound by its own vCPU threads, so together they take about
    // as long as the slower alone); the host's run comes after, alone, so
    // that its storms do not share the CPUs with an emulator.
    let mut kernels = Vec::new();
    for w in which {
        match w {
            Which::V6_1 => kernels.push(fetch::kernel(&cache, Series::V6_1)?),
            Which::V6_12 => kernels.push(fetch::kernel(&cache, Series::V6_12)?),
            Which::Host => {}
        }
    }
    let mut vm_rows: Vec<Row> = std::thread::scope(|s| {
        let runs: Vec<_> = kernels
            .iter()
            .map(|k| {
                let vng = vng.as_deref().expect("tools");
                s.spawn(move || run_vm(k, vng, suite, filter))
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a VM's thread panicked"))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .rev()
    .collect();
    let mut rows = Vec::new();
    for w in which {
        rows.push(match w {
            Which::Host => run_host(suite, filter),
            Which::V6_1 | Which::V6_12 => vm_rows.pop().expect("one row per VM"),
        });
    }
    let table = table(&rows);
    let details = details(&rows);
    println!("\n{table}{details}");
    let _ = fs::write(cache.join("last-run.md"), format!("{table}{details}"));
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("the suite failed on {}", failed.join(", "));
    }
    Ok(())
}

/// `cargo xtask kernels`.
pub fn run(opts: Opts) -> Result<()> {
    if !is_root() {
        bail!(
            "the kernel matrix installs packages, links /lib/modules and runs the privileged tests: run it as root (`sudo -E cargo xtask kernels`)"
        );
    }
    setup::run(false)?;
    let which = if opts.kernels.is_empty() {
        vec![Which::V6_1, Which::V6_12, Which::Host]
    } else {
        opts.kernels.clone()
    };
    let suite = build_suite(!opts.debug)?;
    matrix(&which, &suite, &opts.filter)
}

/// The VM part of `cargo xtask test`, after the host's run: the suite on
/// 6.1 and 6.12 with the binaries already built, when this machine can
/// run VMs; says plainly why not when it cannot.
pub fn for_test(release: bool, filter: Option<&str>) -> Result<()> {
    if !is_root() {
        eprintln!(
            "xtask: NOT running the kernel matrix (6.1 and 6.12 in VMs): it needs root to install qemu and link /lib/modules; `sudo -E cargo xtask kernels` runs it"
        );
        return Ok(());
    }
    if let Err(e) = fetch::tools(&cache_dir()) {
        eprintln!(
            "xtask: NOT running the kernel matrix (6.1 and 6.12 in VMs): this machine cannot install qemu or virtme-ng: {e:#}"
        );
        return Ok(());
    }
    let suite = build_suite(release)?;
    let filter: Vec<String> = filter.into_iter().map(String::from).collect();
    matrix(&[Which::V6_1, Which::V6_12], &suite, &filter)
}
