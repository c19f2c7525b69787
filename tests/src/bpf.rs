//! The BPF objects a process holds, from its `/proc/PID/fdinfo`, and
//! whether an object still exists anywhere in the kernel, asked by id with
//! `bpf(BPF_*_GET_FD_BY_ID)` (what `bpftool prog show id N` does, without
//! needing bpftool).

use std::collections::BTreeSet;

/// Kinds of BPF objects, with the fdinfo key that names their id and the
/// `bpf()` command that opens one by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Prog,
    Map,
    Link,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Prog => "prog_id:",
            Kind::Map => "map_id:",
            Kind::Link => "link_id:",
        }
    }

    fn get_fd_by_id(self) -> libc::c_long {
        // From include/uapi/linux/bpf.h, `enum bpf_cmd`.
        match self {
            Kind::Prog => 13, // BPF_PROG_GET_FD_BY_ID
            Kind::Map => 14,  // BPF_MAP_GET_FD_BY_ID
            Kind::Link => 30, // BPF_LINK_GET_FD_BY_ID
        }
    }
}

/// Every `(kind, id)` named in the fdinfo of `pid`'s open files: program
/// and link fds both name their program, link fds their link, map fds
/// their map.
pub fn held_by(pid: u32) -> BTreeSet<(Kind, u32)> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids = BTreeSet::new();
    for e in std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(Result::ok)
    {
        // An fd may close while we read.
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for line in text.lines() {
            for kind in [Kind::Prog, Kind::Map, Kind::Link] {
                if let Some(v) = line.strip_prefix(kind.key()) {
                    ids.insert((kind, v.trim().parse().expect("a numeric id")));
                }
            }
        }
    }
    ids
}

/// Whether the object still exists (needs CAP_SYS_ADMIN: run as root).
pub fn exists(kind: Kind, id: u32) -> bool {
    // The `*_GET_FD_BY_ID` member of `union bpf_attr`: id, next_id,
    // open_flags.
    let attr: [u32; 3] = [id, 0, 0];
    // SAFETY: `attr` is a valid `bpf_attr` prefix of the size passed; the
    // kernel zero-extends the rest.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            kind.get_fd_by_id(),
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: the kernel just gave us this fd.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    let e = std::io::Error::last_os_error();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::ENOENT),
        "bpf(GET_FD_BY_ID) of {kind:?} {id}: {e}"
    );
    false
}

/// The kernel's `recursion_misses` of program `id` (runs it skipped
/// because a BPF program was already running on that CPU), or `None` if
/// the program is gone.
pub fn recursion_misses(id: u32) -> Option<u64> {
    let attr: [u32; 3] = [id, 0, 0];
    // SAFETY: as in `exists`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            Kind::Prog.get_fd_by_id(),
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd < 0 {
        return None;
    }
    // `struct bpf_prog_info` up to `attach_btf_id` (232 bytes);
    // `recursion_misses` is the u64 at byte 208 (Linux 5.12+).
    let mut info = [0u64; 29];
    // The `info` member of `union bpf_attr`: bpf_fd, info_len, info.
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut get = InfoAttr {
        bpf_fd: fd as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: BPF_OBJ_GET_INFO_BY_FD (15) writes at most `info_len` bytes
    // into `info`; both outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            15,
            &raw mut get,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    // SAFETY: the kernel gave us this fd.
    unsafe { libc::close(fd as i32) };
    (rc == 0).then_some(info[26])
}

/// The sum of `recursion_misses` over the programs `pid` holds.
pub fn recursion_misses_of(pid: u32) -> u64 {
    held_by(pid)
        .into_iter()
        .filter(|(k, _)| *k == Kind::Prog)
        .filter_map(|(_, id)| recursion_misses(id))
        .sum()
}
