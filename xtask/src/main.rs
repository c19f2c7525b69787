//! Project tasks: `cargo xtask setup|build|run|install|test|lint|kernels|fuzz|soak|bench`.
//!
//! `build`, `run` and `test` run `setup` first when something it installs is
//! missing, so a fresh machine needs nothing but cargo.

mod bench;
mod fuzz;
mod install;
mod kernels;
mod setup;
mod soak;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "tcptrace project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build and the tests need (idempotent): rust-src for
    /// nightly, bpf-linker 0.10.1, and Debian packages (nftables, iproute2, ethtool, util-linux, tmux).
    Setup,
    /// Build tcptrace with its kernel programs.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, then run tcptrace as root with the given arguments.
    Run {
        #[arg(long)]
        release: bool,
        /// Arguments for tcptrace, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// fmt and clippy checks, root-free unit tests, then the privileged
    /// integration tests (as root, single-threaded) against the release
    /// build of tcptrace, then, when this machine can run VMs, against the
    /// debug build on Debian 12's 6.1 and 6.12 (see `kernels`), and a short
    /// fuzz run.
    Test {
        /// Skip the fmt/clippy checks.
        #[arg(long)]
        no_lint: bool,
        /// Only this machine's kernel: skip the 6.1 and 6.12 VMs.
        #[arg(long)]
        host_only: bool,
        /// Only tests whose name contains this.
        filter: Option<String>,
    },
    /// Build the release tcptrace and install it with its man pages and
    /// shell completions (bash, zsh, fish) under --prefix (/usr/local).
    Install(install::Opts),
    /// cargo fmt --check and clippy (user space and kernel crate).
    Lint,
    /// As root: the release tcptrace for MINUTES under churn, loss, a
    /// stalling reader and signals; reports RSS growth, records and lost
    /// counts (not part of `test`).
    Soak {
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
    },
    /// Fuzz the parsers of untrusted input (installs cargo-fuzz if missing).
    Fuzz {
        /// Seconds in all, split between the targets.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// The privileged suite and `tcptrace check` on Debian 12's kernels
    /// (6.1, 6.12) in VMs (qemu + virtme-ng, installed when missing; the
    /// kernel packages are cached in target/kernels) and on the host; one
    /// table: kernel, connect plan, tests passed/failed, time. As root.
    Kernels(kernels::Opts),
    /// The driver inside a VM (used by `kernels`).
    #[command(hide = true)]
    KernelsGuest(kernels::guest::Opts),
    /// Benchmarks against no tracer, bpftrace and libbpf-tools (as root);
    /// writes BENCHMARKS.md and bench/results.json.
    Bench(bench::Opts),
    /// A benchmark workload (used by `bench`).
    #[command(hide = true, subcommand)]
    BenchWorker(bench::worker::Work),
}

fn main() -> ExitCode {
    match run(Cli::parse().task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> Result<()> {
    match task {
        Task::Setup => setup::run(true),
        Task::Build { release } => build(release).map(drop),
        Task::Run { release, args } => {
            let bin = build(release)?;
            let mut cmd = as_root(&bin);
            cmd.args(&args);
            let status = cmd.status().context("running tcptrace")?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Task::Test {
            no_lint,
            host_only,
            filter,
        } => {
            test(no_lint, host_only, filter.clone())?;
            // A short fuzz run of every parser of untrusted input, from the
            // committed seeds (the whole suite, not a filtered run).
            if filter.is_none() {
                fuzz::run(FUZZ_SECONDS_IN_TEST)?;
            }
            Ok(())
        }
        Task::Install(opts) => install::run(&opts, &build(true)?),
        Task::Kernels(opts) => kernels::run(opts),
        Task::KernelsGuest(opts) => kernels::guest::run(opts),
        Task::Fuzz { seconds } => fuzz::run(seconds),
        Task::Soak { minutes } => {
            let bin = build(true)?;
            soak::run(minutes, bin, &root_dir())
        }
        Task::Lint => {
            setup::run(false)?;
            lint()
        }
        Task::Bench(opts) => {
            let bin = build(true)?;
            bench::run(opts, &root_dir(), bin)
        }
        Task::BenchWorker(w) => bench::worker::run(w),
    }
}

/// How long `test` fuzzes, in all.
const FUZZ_SECONDS_IN_TEST: u64 = 60;

fn root_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root_dir());
    c
}

pub(crate) fn check(mut cmd: Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// `program` as root: directly when we are root, else through sudo.
fn as_root(program: &Path) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-E", "--"]).arg(program);
        c
    }
}

/// Builds tcptrace; returns the binary's path.
fn build(release: bool) -> Result<PathBuf> {
    setup::run(false)?;
    let mut c = cargo();
    c.args(["build", "--package", "tracer", "--bin", "tcptrace"]);
    if release {
        c.arg("--release");
    }
    check(c)?;
    Ok(root_dir()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("tcptrace"))
}

fn lint() -> Result<()> {
    let mut c = cargo();
    c.args(["fmt", "--all", "--", "--check"]);
    check(c)?;
    // Every user-space crate, the privileged tests too (they are not a
    // default member).
    let mut c = cargo();
    c.args([
        "clippy",
        "--workspace",
        "--exclude",
        "tracer-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    check(c)?;
    // The fuzz targets are their own workspace (nightly only): checked here
    // so that an API change breaks the lint in minutes, not the fuzz run at
    // the end of a 40-minute CI.
    let mut c = Command::new("rustup");
    c.current_dir(root_dir().join("fuzz"));
    c.args(["run", "nightly", "cargo", "check", "--bins", "--quiet"]);
    c.env_remove("RUSTC").env_remove("RUSTUP_TOOLCHAIN");
    c.env("AYA_BUILD_SKIP", "1");
    check(c)?;
    // The kernel crate only builds for the BPF target.
    let mut c = Command::new("rustup");
    c.current_dir(root_dir());
    c.args([
        "run",
        "nightly",
        "cargo",
        "clippy",
        "--package",
        "tracer-ebpf",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]);
    c.env_remove("RUSTC").env_remove("RUSTUP_TOOLCHAIN");
    check(c)
}

fn test(no_lint: bool, host_only: bool, filter: Option<String>) -> Result<()> {
    setup::run(false)?;
    if !no_lint {
        lint()?;
    }
    // Root-free unit tests of every crate but the privileged one.
    let mut c = cargo();
    c.args([
        "test",
        "--workspace",
        "--exclude",
        "tests",
        "--exclude",
        "tracer-ebpf",
    ]);
    if let Some(f) = &filter {
        c.arg(f);
    }
    check(c)?;
    // The privileged integration tests drive the real binary: here the
    // release build (what users run); the VMs below run the debug build
    // (assertions on), so each build meets the suite once.
    let bin = build(true)?;
    let mut c = cargo();
    c.args(["test", "--package", "tests", "--no-run"]);
    check(c)?;
    if !is_root() {
        eprintln!(
            "xtask: the integration tests load BPF programs and create network namespaces: running them through sudo"
        );
    }
    eprintln!("xtask: privileged tests against {}", bin.display());
    let mut c = if is_root() {
        cargo()
    } else {
        let mut c = Command::new("sudo");
        c.args([
            "-E",
            "env",
            &format!("PATH={}", std::env::var("PATH").unwrap_or_default()),
            "cargo",
        ]);
        c.current_dir(root_dir());
        c
    };
    // Every privileged test binary runs even if an earlier one fails.
    c.args([
        "test",
        "--package",
        "tests",
        "--no-fail-fast",
        "--",
        "--test-threads=1",
    ]);
    if let Some(f) = &filter {
        c.arg(f);
    }
    c.env("TCPTRACE_BIN", &bin);
    check(c).with_context(|| format!("privileged tests failed against {}", bin.display()))?;
    if host_only {
        eprintln!("xtask: --host-only: not running the suite on 6.1 and 6.12 in VMs");
        return Ok(());
    }
    // The same suite on Debian 12's kernels, in VMs, against the debug
    // build.
    kernels::for_test(false, filter.as_deref())
}
