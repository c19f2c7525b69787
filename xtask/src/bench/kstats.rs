//! The kernel's own cost of a configuration's BPF programs: with run-time
//! statistics on, every program counts the nanoseconds it ran
//! (`run_time_ns`), its runs (`run_cnt`) and the runs the kernel skipped
//! because a program was already running on that CPU (`recursion_misses`).
//! A process's programs are found through its fds: `/proc/PID/fdinfo/N`
//! of a program (or link) fd has `prog_id:`, and a program fd also carries
//! the three counters.
//!
//! Statistics are turned on with `BPF_ENABLE_STATS`, which holds them on
//! while its fd is open: the kernel turns them off again when the bench
//! exits, however it exits (error, panic, Ctrl-C), and the
//! `kernel.bpf_stats_enabled` sysctl is left as it was.

use std::{collections::BTreeMap, fs, os::fd::OwnedFd};

use anyhow::{Context as _, Result};

/// Keeps run-time statistics on while it lives.
pub struct StatsOn {
    _fd: OwnedFd,
}

pub fn enable() -> Result<StatsOn> {
    let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("turning on BPF run-time statistics (BPF_ENABLE_STATS)")?;
    Ok(StatsOn { _fd: fd })
}

/// One program's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub run_ns: u64,
    pub runs: u64,
    pub misses: u64,
}

/// The counters of every program a process holds, by program id.
pub type Snapshot = BTreeMap<u32, Counters>;

/// What the programs of a configuration did between two snapshots.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelCost {
    /// Nanoseconds all its programs ran.
    pub run_ns: u64,
    /// Their runs (hits of every hook, wanted or not).
    pub runs: u64,
    /// Runs the kernel skipped because a BPF program was already running
    /// on that CPU.
    pub misses: u64,
    /// How many programs.
    pub progs: usize,
}

fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

/// Parses one fdinfo file: `None` unless it is a program fd with counters.
fn parse(fdinfo: &str) -> Option<(u32, Counters)> {
    let id = field(fdinfo, "prog_id:")? as u32;
    Some((
        id,
        Counters {
            run_ns: field(fdinfo, "run_time_ns:")?,
            runs: field(fdinfo, "run_cnt:")?,
            misses: field(fdinfo, "recursion_misses:").unwrap_or(0),
        },
    ))
}

/// The programs `pid` holds now (link fds have `prog_id` but no counters
/// and are passed over: the program fd of the same id has them).
pub fn snapshot(pid: u32) -> Snapshot {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Snapshot::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| parse(&fs::read_to_string(e.path()).ok()?))
        .collect()
}

/// What happened between `before` and `after` (programs loaded in between
/// count from zero).
pub fn delta(before: &Snapshot, after: &Snapshot) -> KernelCost {
    let mut k = KernelCost::default();
    for (id, a) in after {
        let b = before.get(id).copied().unwrap_or_default();
        k.run_ns += a.run_ns.saturating_sub(b.run_ns);
        k.runs += a.runs.saturating_sub(b.runs);
        k.misses += a.misses.saturating_sub(b.misses);
        k.progs += 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_fdinfo_is_parsed_and_links_are_passed_over() {
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2071\nprog_type:\t5\nprog_jited:\t1\nprog_tag:\tabc\nmemlock:\t4096\nprog_id:\t42\nrun_time_ns:\t1500\nrun_cnt:\t10\nrecursion_misses:\t2\nverified_insns:\t99\n";
        let link = "pos:\t0\nflags:\t02000000\nlink_type:\tperf\nlink_id:\t7\nprog_tag:\tabc\nprog_id:\t42\n";
        assert_eq!(
            parse(prog),
            Some((
                42,
                Counters {
                    run_ns: 1500,
                    runs: 10,
                    misses: 2
                }
            ))
        );
        assert_eq!(parse(link), None);
        assert_eq!(parse("pos:\t0\n"), None);
    }

    #[test]
    fn delta_sums_programs_and_counts_new_ones_from_zero() {
        let c = |run_ns, runs, misses| Counters {
            run_ns,
            runs,
            misses,
        };
        let before = Snapshot::from([(1, c(100, 1, 0))]);
        let after = Snapshot::from([(1, c(600, 6, 1)), (2, c(50, 2, 0))]);
        let k = delta(&before, &after);
        assert_eq!((k.run_ns, k.runs, k.misses, k.progs), (550, 7, 1, 2));
    }
}
