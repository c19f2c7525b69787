//! The privilege check done before anything is loaded, so that a missing
//! capability or a low file limit gets a sentence instead of an EPERM or
//! EMFILE from deep inside aya, and the locked-memory limit that older
//! kernels charge BPF maps to.

use std::fs;

use anyhow::{Result, bail};

const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// File descriptors a run needs at most: programs, maps, links, perf
/// events, the ring, the output, `/proc` while seeding.
const FDS_NEEDED: u64 = 64;

/// Fails with what to do unless the effective capabilities allow loading
/// programs (CAP_BPF) and attaching them to tracepoints (CAP_PERFMON), or
/// CAP_SYS_ADMIN covers both. Root without them (a container, `setpriv`)
/// is told which one is missing, not handed an EPERM from deep inside the
/// loader. Also makes sure enough file descriptors can be opened.
pub fn check() -> Result<()> {
    let caps = effective_caps().unwrap_or(0);
    if let Some(missing) = missing_caps(caps) {
        // SAFETY: no preconditions.
        let who = if unsafe { libc::geteuid() } == 0 {
            "runs as root but lacks"
        } else {
            "lacks"
        };
        bail!(
            "tcptrace needs root, or CAP_BPF (to load its kernel programs) and CAP_PERFMON (to attach them to tracepoints), or CAP_SYS_ADMIN; this process {who} {missing}: run it with sudo, or grant the missing capabilities"
        );
    }
    raise_nofile()
}

/// A warning when sockets from before start-up may lack their owners:
/// finding a socket's process means reading `/proc/PID/fd`, which the
/// kernel allows for another user's process only with CAP_SYS_PTRACE.
pub fn seeding_warning() -> Option<&'static str> {
    let caps = effective_caps().unwrap_or(0);
    (caps & (1u64 << CAP_SYS_PTRACE) == 0).then_some(
        "without CAP_SYS_PTRACE, sockets that existed before start-up and belong to other users' processes show no owner (reading /proc/PID/fd needs it)",
    )
}

/// Why attaching a tracepoint may have been refused although CAP_PERFMON
/// is held: Debian's and Ubuntu's kernels give `kernel.perf_event_paranoid`
/// a level 3 (their default) that upstream lacks, at which
/// `perf_event_open` needs CAP_SYS_ADMIN. A sentence to append to the
/// attach error, when that is the case.
pub fn attach_hint() -> Option<String> {
    let caps = effective_caps().unwrap_or(0);
    if caps & (1u64 << CAP_SYS_ADMIN) != 0 {
        return None;
    }
    let level: i32 = fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (level >= 3).then(|| {
        format!(
            " (kernel.perf_event_paranoid is {level}, which on Debian's and Ubuntu's kernels lets only CAP_SYS_ADMIN attach tracepoints: run as root with every capability, grant CAP_SYS_ADMIN, or `sysctl kernel.perf_event_paranoid=2`)"
        )
    })
}

/// The capabilities `caps` (a CapEff mask) lacks, as words, if any.
fn missing_caps(caps: u64) -> Option<String> {
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return None;
    }
    Some(
        match (has(CAP_BPF), has(CAP_PERFMON)) {
            (false, false) => "CAP_BPF and CAP_PERFMON",
            (false, true) => "CAP_BPF",
            _ => "CAP_PERFMON",
        }
        .to_string(),
    )
}

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Raises the soft limit on open files to the hard one, and fails with a
/// sentence when even that is too low (`ulimit -n 12` otherwise surfaces
/// as a missing tracefs or a missing capability).
fn raise_nofile() -> Result<()> {
    // SAFETY: all-zero is a valid rlimit; getrlimit fills it in.
    let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid rlimit for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Ok(());
    }
    if r.rlim_cur < r.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            r = raised;
        }
    }
    if r.rlim_cur < FDS_NEEDED {
        bail!(
            "tcptrace needs at least {FDS_NEEDED} open files and this process may open {} (`ulimit -n`): raise the limit and try again",
            r.rlim_cur
        );
    }
    Ok(())
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
    fn names_the_missing_capability() {
        let cap = |c: u32| 1u64 << c;
        assert_eq!(missing_caps(cap(CAP_BPF) | cap(CAP_PERFMON)), None);
        assert_eq!(missing_caps(cap(CAP_SYS_ADMIN)), None);
        assert_eq!(missing_caps(cap(CAP_BPF)).as_deref(), Some("CAP_PERFMON"));
        assert_eq!(missing_caps(cap(CAP_PERFMON)).as_deref(), Some("CAP_BPF"));
        assert_eq!(missing_caps(0).as_deref(), Some("CAP_BPF and CAP_PERFMON"));
    }

    #[test]
    fn which_kernels_charge_memlock() {
        assert!(charges_memlock("5.10.0-28-amd64"));
        assert!(charges_memlock("4.19.0"));
        assert!(!charges_memlock("5.11.0"));
        assert!(!charges_memlock("6.18.44-fc-v769\n"));
        assert!(charges_memlock("garbage"));
    }
}
