//! Events the kernel never gave our programs: a BPF tracing program does
//! not run nested on one CPU (a softirq's state change arriving while the
//! program is handling a state change in process context is skipped). The
//! kernel counts these per program (`recursion_misses` of
//! `bpf_prog_info`, Linux 5.12+); we read and report them as lost, less
//! those the BTF programs' second programs handled (see
//! `tracer-ebpf/src/nested.rs`): a second program's own misses are not
//! losses (the first ran then), and its `NESTED_CAUGHT` count is the
//! first one's misses it made up for.

use std::os::fd::{AsFd, AsRawFd};

use aya::{Ebpf, maps::PerCpuArray};
use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_info};

use super::HOOKS;

/// The kernel's two counts of nested events: runs it skipped (the sum of
/// `recursion_misses` over the loaded programs but the nested ones) and
/// the skipped events the nested programs handled (`NESTED_CAUGHT`), read
/// in that order. The kernel bumps a miss first and its catch a few
/// hundred nanoseconds later, on the same CPU; [`Nested::lost`] says how
/// to take the difference.
pub fn recursion_misses(bpf: &Ebpf) -> Nested {
    let missed: u64 = bpf
        .programs()
        .filter(|(name, _)| {
            !HOOKS
                .iter()
                .any(|h| h.btf.is_some_and(|b| b.nested == *name))
        })
        .filter_map(|(_, p)| p.fd().ok().map(|fd| prog_misses(fd.as_fd().as_raw_fd())))
        .sum();
    Nested {
        missed,
        caught: caught(bpf),
    }
}

/// One look at the kernel's nested-event counters (see
/// [`recursion_misses`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nested {
    pub missed: u64,
    pub caught: u64,
}

impl Nested {
    /// Events skipped and not made up for, as far as two looks can tell:
    /// the misses of the `earlier` look less the catches of this one.
    /// A look that falls between a miss and its catch (the CPU taken
    /// away from the nested program in between: an interrupt, or the
    /// hypervisor descheduling the vCPU) sees the miss and not yet the
    /// catch; counted at once, that is a loss that is not one, and the
    /// reader keeps the highest count it reported. Misses from the look
    /// before have had a whole interval to be caught. A catch without a
    /// miss (the rare repeat, see `tracer-ebpf/src/nested.rs`) can only
    /// make this one too few.
    pub fn lost(self, earlier: Nested) -> u64 {
        earlier.missed.saturating_sub(self.caught)
    }
}

/// Events the nested programs handled, every pair's slot summed (0 when
/// none is loaded).
fn caught(bpf: &Ebpf) -> u64 {
    bpf.map("NESTED_CAUGHT")
        .and_then(|m| PerCpuArray::<_, u64>::try_from(m).ok())
        .map_or(0, |a| {
            a.iter()
                .filter_map(Result::ok)
                .map(|v| v.iter().sum::<u64>())
                .sum()
        })
}

fn prog_misses(fd: i32) -> u64 {
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // Writing a union field is safe: these are plain integers.
    attr.info.bpf_fd = fd as u32;
    attr.info.info_len = size_of::<bpf_prog_info>() as u32;
    attr.info.info = (&raw mut info) as u64;
    // SAFETY: BPF_OBJ_GET_INFO_BY_FD reads `attr` and writes at most
    // `info_len` bytes into `info`, both alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            &raw mut attr,
            size_of::<bpf_attr>(),
        )
    };
    if rc == 0 { info.recursion_misses } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::Nested;

    fn n(missed: u64, caught: u64) -> Nested {
        Nested { missed, caught }
    }

    #[test]
    fn a_miss_seen_before_its_catch_is_not_a_loss() {
        // Look 1 between a miss and its catch, look 2 after the catch.
        let (start, look1, look2) = (n(0, 0), n(1, 0), n(1, 1));
        assert_eq!(look1.lost(start), 0);
        assert_eq!(look2.lost(look1), 0);
        // Taken at once (look1 against itself) it would have been one.
        assert_eq!(look1.lost(look1), 1);
    }

    #[test]
    fn a_miss_never_caught_is_a_loss_one_look_later() {
        let (start, look1, look2) = (n(3, 3), n(4, 3), n(4, 3));
        assert_eq!(look1.lost(start), 0);
        assert_eq!(look2.lost(look1), 1);
    }

    #[test]
    fn a_repeat_can_only_hide_a_loss() {
        // A catch without a miss, then a miss never caught.
        assert_eq!(n(5, 6).lost(n(5, 5)), 0);
        assert_eq!(n(6, 6).lost(n(6, 6)), 0);
    }
}
