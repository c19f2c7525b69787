//! What the running kernel does, for expectations that differ between
//! kernels (the suite runs on the host's 6.18 and, through `cargo xtask
//! kernels`, on Debian 12's 6.1 and 6.12 in virtual machines). Each
//! difference is named here once, with what was seen where.

use std::path::Path;

/// The running kernel's `(major, minor)`.
pub fn version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Whether this kernel's tracepoint `group:name` has the field `field`
/// (read from its format file; tcptrace mounts tracefs if needed, and so
/// do the VMs of `cargo xtask kernels`).
pub fn tracepoint_has(group: &str, name: &str, field: &str) -> bool {
    let format = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .map(|root| {
            Path::new(root)
                .join("events")
                .join(group)
                .join(name)
                .join("format")
        })
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|| panic!("no format file for {group}:{name}: is tracefs mounted?"));
    format
        .lines()
        .filter(|l| l.trim_start().starts_with("field:"))
        .any(|l| {
            let decl = l.split(';').next().unwrap_or_default();
            let decl = decl.split('[').next().unwrap_or_default();
            decl.rsplit([' ', '*']).next() == Some(field)
        })
}

/// Whether an accepted socket's first transition, `LISTEN -> SYN_RECV`,
/// already carries its peer's address and port. Older kernels fire it in
/// `inet_csk_clone_lock()` on the fresh clone of the listener, before the
/// peer is copied in from the request: the record then has the listener's
/// tuple (remote `0.0.0.0:0` or `:::0`); 6.18 copies the addresses first.
/// `None` for the kernels in between, where no run has looked.
pub fn child_starts_with_peer() -> Option<bool> {
    match version() {
        v if v <= (6, 12) => Some(false), // seen on 6.1 and 6.12
        v if v >= (6, 18) => Some(true),  // seen on 6.18
        _ => None,
    }
}

/// Whether `tcp_send_reset` fires for a RST sent in reply to a segment
/// that matched no socket. Before 6.10 it fired only for resets sent on
/// behalf of a socket (seen on 6.1); 6.10 made it fire for every RST and
/// added the `reason` field in the same series, so the field tells.
pub fn no_socket_resets_traced() -> bool {
    tracepoint_has("tcp", "tcp_send_reset", "reason")
}

/// Whether tcptrace tells retransmit kinds apart (`rto`, `fast`, `tlp`
/// instead of `data`) here: it reads the socket's congestion state at
/// offsets from the kernel's BTF, which Debian's 6.1 and 6.12 and the
/// host's 6.18 all have (same layout: `icsk_ca_state` a 5-bit bitfield,
/// `icsk_pending` two bytes on). Without `/sys/kernel/btf/vmlinux` every
/// data retransmit is `data`.
pub fn retrans_kinds_known() -> bool {
    Path::new("/sys/kernel/btf/vmlinux").exists()
}

/// Whether `tcp_retransmit_skb` also fires for attempts that failed
/// (Linux 6.17+, which added its `err` field); before, they are not seen.
pub fn failed_retransmits_traced() -> bool {
    tracepoint_has("tcp", "tcp_retransmit_skb", "err")
}
