//! Events the kernel never gave our programs: a BPF tracing program does
//! not run nested on one CPU (a softirq's state change arriving while the
//! program is handling a state change in process context is skipped). The
//! kernel counts these per program (`recursion_misses` of
//! `bpf_prog_info`, Linux 5.12+); we read and report them as lost.

use std::os::fd::{AsFd, AsRawFd};

use aya::Ebpf;
use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_info};

/// Sum of `recursion_misses` over the loaded programs.
pub fn recursion_misses(bpf: &Ebpf) -> u64 {
    bpf.programs()
        .filter_map(|(_, p)| p.fd().ok().map(|fd| prog_misses(fd.as_fd().as_raw_fd())))
        .sum()
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
