//! The privilege check done before anything is loaded, so that a missing
//! capability gets a sentence instead of an EPERM from deep inside aya.

use anyhow::{Result, bail};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails with what to do unless we are root or hold CAP_BPF and
/// CAP_PERFMON (or CAP_SYS_ADMIN).
pub fn check() -> Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let caps = effective_caps().unwrap_or(0);
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!(
        "tcptrace needs root, or the CAP_BPF and CAP_PERFMON capabilities, to load its kernel programs: run it with sudo"
    )
}

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}
