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

/// Runs the kernel skipped and no program made up for: the sum of
/// `recursion_misses` over the loaded programs but the nested ones, less
/// what they caught (read after the misses, so that a transition caught
/// between the two reads shows as one loss too few for a moment, never as
/// one too many).
pub fn recursion_misses(bpf: &Ebpf) -> u64 {
    let missed: u64 = bpf
        .programs()
        .filter(|(name, _)| {
            !HOOKS
                .iter()
                .any(|h| h.btf.is_some_and(|b| b.nested == *name))
        })
        .filter_map(|(_, p)| p.fd().ok().map(|fd| prog_misses(fd.as_fd().as_raw_fd())))
        .sum();
    missed.saturating_sub(caught(bpf))
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
