//! User-space cost without noise: the instructions a command executes,
//! counted by valgrind's callgrind (the same on a busy or an idle
//! machine, unlike CPU time). The replay measurement uses it for
//! instructions per event: a recorded storm minus its header alone (the
//! fixed cost of starting, parsing options and the header), divided by
//! the storm's events.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// Instructions executed by `cmd args` (its output discarded).
pub fn instructions(cmd: &Path, args: &[&str]) -> Result<u64> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running valgrind (apt-get install valgrind)")?;
    if !out.status.success() {
        bail!(
            "{} {} under callgrind failed with {}",
            cmd.display(),
            args.join(" "),
            out.status
        );
    }
    collected(&String::from_utf8_lossy(&out.stderr))
        .context("callgrind printed no `Collected :` line")
}

/// The count in callgrind's `==PID== Collected : N` line.
fn collected(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        l.split_once("Collected :")
            .and_then(|(_, n)| n.trim().parse().ok())
    })
}

/// Instructions per event of `tcptrace replay FILE VIEW --json` over
/// `file` (holding `events` events), net of a replay of its header alone.
pub fn per_event(tcptrace: &Path, file: &Path, view: &str, events: u64) -> Result<f64> {
    let header_only = file.with_extension("header");
    let raw = std::fs::read(file)?;
    let end = raw
        .iter()
        .position(|&b| b == b'\n')
        .map_or(raw.len(), |i| i + 1);
    std::fs::write(&header_only, &raw[..end])?;
    let run = |f: &Path| {
        let f = f.to_string_lossy();
        instructions(tcptrace, &["replay", &f, view, "--json"])
    };
    let fixed = run(&header_only);
    let _ = std::fs::remove_file(&header_only);
    let full = run(file)?;
    Ok(full.saturating_sub(fixed?) as f64 / events.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_collected_line() {
        let e = "==17507== Events    : Ir\n==17507== Collected : 1400708\n==17507==\n";
        assert_eq!(collected(e), Some(1_400_708));
        assert_eq!(collected("nothing"), None);
    }
}
