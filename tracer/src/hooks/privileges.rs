//! The privilege check done before anything is loaded, so that a missing
//! capability gets a sentence instead of an EPERM from deep inside aya, and
//! the locked-memory limit that older kernels charge BPF maps to.

use std::fs;

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

/// Lifts RLIMIT_MEMLOCK, which kernels before 5.11 charge BPF maps against
/// (the 4 MiB ring alone exceeds the usual 64 KiB default there); later
/// kernels account BPF memory to the cgroup and ignore it. As aya's
/// examples do: try, and carry on if not allowed (no CAP_SYS_RESOURCE).
/// `Err` only on a kernel that charges it and when it stays limited: the
/// limit in force, for the message if the load then fails.
pub fn raise_memlock() -> Result<(), String> {
    let r = lift_memlock();
    if r.is_err()
        && !charges_memlock(&fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default())
    {
        return Ok(());
    }
    r
}

/// Whether a kernel of this release (`uname -r`) charges BPF memory to
/// RLIMIT_MEMLOCK: before 5.11. Unknown: assume it does.
fn charges_memlock(release: &str) -> bool {
    let mut parts = release.trim().split(['.', '-']);
    let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok());
    match (next(), next()) {
        (Some(major), Some(minor)) => (major, minor) < (5, 11),
        _ => true,
    }
}

fn lift_memlock() -> Result<(), String> {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit for the call's duration.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } == 0 {
        return Ok(());
    }
    // SAFETY: all-zero is a valid rlimit; getrlimit fills it in.
    let mut now: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut now) } != 0 {
        return Err("unknown".into());
    }
    // Without the privilege to lift it, the soft limit can still rise to
    // the hard one.
    if now.rlim_cur < now.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: now.rlim_max,
            rlim_max: now.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } == 0 {
            now = raised;
        }
    }
    if now.rlim_cur == libc::RLIM_INFINITY {
        Ok(())
    } else {
        Err(format!("{} KiB", now.rlim_cur / 1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_kernels_charge_memlock() {
        assert!(charges_memlock("5.10.0-28-amd64"));
        assert!(charges_memlock("4.19.0"));
        assert!(!charges_memlock("5.11.0"));
        assert!(!charges_memlock("6.18.44-fc-v769\n"));
        assert!(charges_memlock("garbage"));
    }
}
