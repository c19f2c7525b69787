//! `xtask kernels-guest`: what runs on the kernel under test (inside the
//! VM, or on the host): `tcptrace check --json`, the privileged test
//! binaries single-threaded, then the connect tests again under every other
//! connect plan the kernel allows; one result line at the end, which the
//! host side reads from the VM's console.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

/// The line that carries the result (then JSON).
pub const RESULT: &str = "TCPTRACE-KERNELS-RESULT ";

/// Options of the hidden `kernels-guest` task.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// The tcptrace binary.
    #[arg(long)]
    pub bin: PathBuf,
    /// A privileged test binary (repeated).
    #[arg(long = "test")]
    pub tests: Vec<PathBuf>,
    /// Test binaries (by file-name prefix) that are run again under each
    /// connect plan the kernel allows besides the one tcptrace chooses.
    #[arg(long = "per-plan")]
    pub per_plan: Vec<String>,
    /// Test name filters (and libtest `--skip PATTERN`s).
    #[arg(trailing_var_arg = true)]
    pub filter: Vec<String>,
}

/// Passed and failed tests of one or more test binaries.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    passed: u64,
    failed: u64,
}

/// Runs one test binary, its output passed through; counts its results.
fn run_tests(opts: &Opts, test: &PathBuf, plan: Option<&str>, failures: &mut Vec<String>) -> Count {
    let mut c = Command::new(test);
    c.arg("--test-threads=1")
        .args(&opts.filter)
        .env("TCPTRACE_BIN", &opts.bin)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(p) = plan {
        c.env("TCPTRACE_CONNECT_PLAN", p);
    }
    let name = test
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut count = Count::default();
    let Ok(mut child) = c.spawn() else {
        failures.push(format!("{name}: could not start"));
        count.failed += 1;
        return count;
    };
    let out = child.stdout.take().expect("piped");
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        println!("{line}");
        // `test NAME ... ok` / `... FAILED`.
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((test_name, result)) = rest.rsplit_once(" ... ")
        {
            if result.ends_with("ok") {
                count.passed += 1;
            } else if result.contains("FAILED") {
                count.failed += 1;
                let under = plan.map(|p| format!(" (plan {p})")).unwrap_or_default();
                failures.push(format!("{test_name}{under}"));
            }
        }
    }
    let status = child.wait();
    if !status.as_ref().is_ok_and(|s| s.success()) && count.failed == 0 {
        failures.push(format!("{name}: exited with {status:?}"));
        count.failed += 1;
    }
    count
}

/// What `tcptrace check --json` said, and its exit status.
fn check(bin: &PathBuf) -> (Option<i32>, Value) {
    let out = Command::new(bin).args(["check", "--json"]).output();
    match out {
        Ok(o) => (
            o.status.code(),
            serde_json::from_slice(&o.stdout).unwrap_or_else(
                |_| json!({"error": String::from_utf8_lossy(&o.stderr).trim().to_string()}),
            ),
        ),
        Err(e) => (None, json!({"error": e.to_string()})),
    }
}

pub fn run(opts: Opts) -> Result<()> {
    hold_cmdline_recording();
    let (check_rc, report) = check(&opts.bin);
    println!("kernels-guest: tcptrace check exited with {check_rc:?}");
    let allowed: Vec<String> = report["connect_plans"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["ok"] == true)
                .filter_map(|p| p["plan"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    // tcptrace's own choice is the first plan that works.
    let default_plan = allowed.first().cloned();
    let mut failures = Vec::new();
    let mut suite = Count::default();
    for t in &opts.tests {
        let c = run_tests(&opts, t, None, &mut failures);
        suite.passed += c.passed;
        suite.failed += c.failed;
    }
    // The connect tests once more under each other plan this kernel allows.
    let mut plans = Vec::new();
    if let Some(d) = &default_plan {
        plans.push(
            json!({"plan": d, "passed": suite.passed, "failed": suite.failed, "default": true}),
        );
    }
    for plan in allowed.iter().filter(|p| Some(*p) != default_plan.as_ref()) {
        let mut count = Count::default();
        for t in opts.tests.iter().filter(|t| {
            t.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                opts.per_plan.iter().any(|p| n.starts_with(p.as_str()))
            })
        }) {
            println!("kernels-guest: {} under connect plan {plan}", t.display());
            let c = run_tests(&opts, t, Some(plan), &mut failures);
            count.passed += c.passed;
            count.failed += c.failed;
        }
        plans.push(
            json!({"plan": plan, "passed": count.passed, "failed": count.failed, "default": false}),
        );
    }
    let result = json!({
        "kernel": report["kernel"],
        "check_rc": check_rc,
        "check": report,
        "passed": suite.passed,
        "failed": suite.failed,
        "plans": plans,
        "failures": failures,
    });
    println!(
        "{RESULT}{}",
        serde_json::to_string(&result).context("encoding the result")?
    );
    Ok(())
}

/// Keeps ftrace's comm recording on for the whole guest run, so that the
/// tests' own tracefs instances (the non-BPF peer, `tests/src/ftrace.rs`)
/// do not turn it on and off: each time, the kernel live-patches
/// `__schedule` (the recording hooks `sched_switch`), and under qemu's
/// TCG a 6.1 guest hung in that patching's int3 handler (RCU stalls, the
/// run hit its time limit). One instance with one event that tests never
/// make fire (an OOM kill) holds the recording; the guest is thrown
/// away with it. Best effort: without tracefs the tests say so.
fn hold_cmdline_recording() {
    let dir = std::path::Path::new("/sys/kernel/tracing/instances/tcptrace-guest");
    let held = std::fs::create_dir_all(dir).is_ok()
        && ["oom/mark_victim", "sock/inet_sk_error_report"]
            .iter()
            .any(|e| std::fs::write(dir.join("events").join(e).join("enable"), "1").is_ok());
    println!("kernels-guest: ftrace comm recording held for the run: {held}");
}
