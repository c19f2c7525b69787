//! `cargo xtask fuzz`: runs the cargo-fuzz targets in `fuzz/` (the parsers
//! of what tcptrace does not control: tracefs format files, `/proc/net`
//! tables, recordings in both encodings, kernel records) for a bounded
//! time each, from the committed seeds in `fuzz/seeds/<target>`; findings
//! land in `fuzz/artifacts/<target>` and fail the task.

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{check, root_dir};

/// The targets, each a file in `fuzz/fuzz_targets/`.
pub const TARGETS: [&str; 4] = ["format", "procnet", "replay", "wire"];
/// cargo-fuzz at a version that builds with this machine's toolchains.
const CARGO_FUZZ: &str = "0.13.2";

/// Installs cargo-fuzz if it is missing.
fn setup() -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        eprintln!("fuzz: installing cargo-fuzz {CARGO_FUZZ} (about a minute)");
        let mut c = Command::new("cargo");
        c.args(["install", &format!("cargo-fuzz@{CARGO_FUZZ}"), "--locked"]);
        check(c)?;
    }
    Ok(())
}

/// Runs every target for `seconds` in all (split evenly).
pub fn run(seconds: u64) -> Result<()> {
    setup()?;
    let root = root_dir();
    let each = (seconds / TARGETS.len() as u64).max(1);
    for t in TARGETS {
        eprintln!("fuzz: {t} for {each} s");
        let corpus = root.join("target/fuzz-corpus").join(t);
        std::fs::create_dir_all(&corpus).context("creating the fuzz corpus folder")?;
        let mut c = Command::new("cargo");
        c.current_dir(root.join("fuzz"))
            // Replay needs no kernel programs: skip building them.
            .env("AYA_BUILD_SKIP", "1")
            .args(["+nightly", "fuzz", "run", t])
            .arg(&corpus)
            .arg(root.join("fuzz/seeds").join(t))
            .args([
                "--",
                &format!("-max_total_time={each}"),
                // Recordings and tables are small; bigger inputs only slow
                // the search.
                "-max_len=65536",
                "-rss_limit_mb=2048",
            ]);
        check(c)
            .with_context(|| format!("fuzz target {t} found a failure (see fuzz/artifacts/{t})"))?;
    }
    Ok(())
}
