//! Installs what the build and the tests need, only when it is missing.

use std::process::Command;

use anyhow::{Result, bail};

use crate::check;

/// bpf-linker 0.11+ wants a system LLVM that Debian 12 lacks; 0.10.1 uses
/// the Rust toolchain's own libLLVM.
const BPF_LINKER: &str = "0.10.1";
/// Debian packages the integration tests use: tmux (`top` in a real
/// terminal); `prometheus` (prometheus and promtool), `rsyslog` and
/// `systemd` (systemd-analyze), the real components the agent tests start.
const PACKAGES: [&str; 8] = [
    "nftables",
    "iproute2",
    "ethtool",
    "util-linux",
    "tmux",
    "prometheus",
    "rsyslog",
    "systemd",
];

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs what is missing; with `verbose`, also says what was present.
pub fn run(verbose: bool) -> Result<()> {
    let say = |s: &str| {
        if verbose {
            eprintln!("setup: {s}");
        }
    };
    // Nightly and its rust-src, for `-Z build-std=core` of the BPF target.
    let toolchains = output("rustup", &["toolchain", "list"]).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("setup: installing the nightly toolchain");
        let mut c = Command::new("rustup");
        c.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
        check(c)?;
    }
    let comps = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .unwrap_or_default();
    // rust-src for build-std; clippy for linting the kernel crate.
    for comp in ["rust-src", "clippy"] {
        if comps.lines().any(|l| l.starts_with(comp)) {
            say(&format!("{comp} for nightly: present"));
        } else {
            eprintln!("setup: adding {comp} to the nightly toolchain");
            let mut c = Command::new("rustup");
            c.args(["component", "add", comp, "--toolchain", "nightly"]);
            check(c)?;
        }
    }
    // bpf-linker at the pinned version.
    let have = output("bpf-linker", &["--version"]).unwrap_or_default();
    if have.contains(BPF_LINKER) {
        say(&format!("bpf-linker {BPF_LINKER}: present"));
    } else {
        eprintln!("setup: installing bpf-linker {BPF_LINKER} (about 80 s)");
        let mut c = Command::new("cargo");
        c.args(["install", &format!("bpf-linker@{BPF_LINKER}"), "--locked"]);
        c.env_remove("RUSTUP_TOOLCHAIN").env_remove("RUSTC");
        check(c)?;
    }
    // Debian packages.
    let missing: Vec<&str> = PACKAGES
        .into_iter()
        .filter(|p| {
            !output("dpkg-query", &["-W", "-f=${Status}", p])
                .is_some_and(|s| s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        say(&format!("Debian packages {}: present", PACKAGES.join(", ")));
    } else if crate::is_root() {
        eprintln!("setup: installing {}", missing.join(" "));
        let mut c = Command::new("apt-get");
        c.arg("update").arg("-q");
        check(c)?;
        let mut c = Command::new("apt-get");
        c.args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive");
        check(c)?;
    } else {
        bail!(
            "missing Debian packages {}: run `sudo apt-get install {}` or `sudo cargo xtask setup`",
            missing.join(", "),
            missing.join(" ")
        );
    }
    Ok(())
}
