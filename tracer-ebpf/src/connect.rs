//! Connection attempts: what `connect()` on an inet socket returned.
//!
//! Three interchangeable hook families; user space loads the first that
//! this kernel accepts (see `tracer::hooks::plan`):
//!
//! 1. fexit on the TCP connect functions. One program each sees the socket,
//!    the destination and the return value, so it needs no state.
//!    match-proto: int tcp_v4_connect(struct sock *sk, struct sockaddr *uaddr, int addr_len);
//!    match-proto: static int tcp_v6_connect(struct sock *sk, struct sockaddr *uaddr, int addr_len);
//! 2. kprobe + kretprobe on the same functions: the entry stashes socket and
//!    destination per thread in `CONNECTS`, the return emits.
//! 3. `syscalls:sys_enter_connect` + `sys_exit_connect`: the entry stashes the
//!    user's sockaddr; the socket is learned from the CLOSE -> SYN_SENT
//!    transition that `connect()` makes in between (see `state.rs`); a
//!    successful connect of a non-TCP socket (a UDP "connect") never gets
//!    one and is dropped.
//!
//! Only failures are emitted (a return other than 0 and -EINPROGRESS): a
//! successful attempt is already visible as SYN_SENT -> ESTABLISHED.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel, bpf_probe_read_user},
    macros::{fexit, kprobe, kretprobe, map, tracepoint},
    maps::HashMap,
    programs::{FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};
use tracer_common::{AF_INET, AF_INET6, TpOffsets, kind};

use crate::emit::{field, new_event, submit, wanted};

const EINPROGRESS: i32 = 115;

#[unsafe(no_mangle)]
static CONNECT_ENTER_TP: TpOffsets = TpOffsets::ABSENT;
#[unsafe(no_mangle)]
static CONNECT_EXIT_TP: TpOffsets = TpOffsets::ABSENT;

/// A connect between entry and return.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pending {
    skaddr: u64,
    daddr: [u8; 16],
    dport: u16,
    family: u16,
    _pad: [u8; 4],
}

/// Pending connects by `pid_tgid` (kprobe and syscall plans).
#[map(name = "CONNECTS")]
static CONNECTS: HashMap<u64, Pending> = HashMap::with_max_entries(16384, 0);

/// Reads a sockaddr_in / sockaddr_in6: family, port (network order) and
/// address. `read` is the kernel or the user reader.
#[inline(always)]
fn sockaddr(addr: u64, read: impl Fn(u64, &mut [u8; 24]) -> Option<()>) -> Option<Pending> {
    // sockaddr_in6 up to the address: family(2) port(2) flowinfo(4) addr(16).
    let mut raw = [0u8; 24];
    read(addr, &mut raw)?;
    let family = u16::from_ne_bytes([raw[0], raw[1]]);
    let dport = u16::from_be_bytes([raw[2], raw[3]]);
    let mut daddr = [0u8; 16];
    match family {
        AF_INET => daddr[..4].copy_from_slice(&raw[4..8]),
        AF_INET6 => daddr.copy_from_slice(&raw[8..24]),
        _ => return None,
    }
    Some(Pending {
        skaddr: 0,
        daddr,
        dport,
        family,
        _pad: [0; 4],
    })
}

fn read_kernel(addr: u64, out: &mut [u8; 24]) -> Option<()> {
    // SAFETY: checked read of kernel memory.
    *out = unsafe { bpf_probe_read_kernel(addr as *const [u8; 24]) }.ok()?;
    Some(())
}

fn read_user(addr: u64, out: &mut [u8; 24]) -> Option<()> {
    // SAFETY: checked read of user memory. A sockaddr_in is only 16 bytes;
    // the rest is read but unused for AF_INET.
    *out = unsafe { bpf_probe_read_user(addr as *const [u8; 24]) }.ok()?;
    Some(())
}

/// Emits a failed connect.
#[inline(always)]
fn finish(p: &Pending, ret: i32) {
    if ret == 0 || ret == -EINPROGRESS || !wanted(p.family, 0, p.dport) {
        return;
    }
    let mut ev = new_event(kind::CONNECT);
    ev.skaddr = p.skaddr;
    ev.daddr = p.daddr;
    ev.dport = p.dport;
    ev.family = p.family as u8;
    ev.ret = ret;
    submit(&ev);
}

/// Called from the state program on CLOSE -> SYN_SENT, in connect()'s
/// process context: the pending syscall-level connect now has a TCP socket.
#[inline(always)]
pub fn bind_socket(skaddr: u64) {
    let key = bpf_get_current_pid_tgid();
    if let Some(p) = CONNECTS.get_ptr_mut(key) {
        // SAFETY: our own map entry, only this thread touches it.
        unsafe { (*p).skaddr = skaddr };
    }
}

// ---- plan 1: fexit -------------------------------------------------------

#[fexit(function = "tcp_v4_connect")]
pub fn fexit_tcp_v4_connect(ctx: FExitContext) -> u32 {
    fexit_connect(&ctx);
    0
}

#[fexit(function = "tcp_v6_connect")]
pub fn fexit_tcp_v6_connect(ctx: FExitContext) -> u32 {
    fexit_connect(&ctx);
    0
}

fn fexit_connect(ctx: &FExitContext) -> Option<()> {
    let sk: u64 = ctx.arg(0);
    let uaddr: u64 = ctx.arg(1);
    let ret: i32 = ctx.ret().ok()?;
    let mut p = sockaddr(uaddr, read_kernel)?;
    p.skaddr = sk;
    finish(&p, ret);
    Some(())
}

// ---- plan 2: kprobe + kretprobe -------------------------------------------

#[kprobe]
pub fn kprobe_tcp_connect(ctx: ProbeContext) -> u32 {
    let _ = try_kprobe(&ctx);
    0
}

fn try_kprobe(ctx: &ProbeContext) -> Option<()> {
    let sk: u64 = ctx.arg(0)?;
    let uaddr: u64 = ctx.arg(1)?;
    let mut p = sockaddr(uaddr, read_kernel)?;
    p.skaddr = sk;
    CONNECTS.insert(bpf_get_current_pid_tgid(), p, 0).ok()
}

#[kretprobe]
pub fn kretprobe_tcp_connect(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret();
    take_and_finish(ret as i32);
    0
}

// ---- plan 3: connect() syscall tracepoints ---------------------------------
// match-tracepoint: syscalls:sys_enter_connect (fd, uservaddr, addrlen)
// match-tracepoint: syscalls:sys_exit_connect (ret)

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let _ = try_sys_enter(&ctx);
    0
}

fn try_sys_enter(ctx: &TracePointContext) -> Option<()> {
    // SAFETY: a plain global that user space rewrites before load.
    let off = unsafe { core::ptr::read_volatile(&CONNECT_ENTER_TP) };
    let uaddr = field::<u64>(ctx, off.uservaddr)?;
    let p = sockaddr(uaddr, read_user)?;
    CONNECTS.insert(bpf_get_current_pid_tgid(), p, 0).ok()
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    // SAFETY: as above.
    let off = unsafe { core::ptr::read_volatile(&CONNECT_EXIT_TP) };
    if let Some(ret) = field::<i64>(&ctx, off.ret) {
        take_and_finish(ret as i32);
    }
    0
}

#[inline(always)]
fn take_and_finish(ret: i32) {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: read-only copy of our own entry.
    let Some(p) = (unsafe { CONNECTS.get(key) }).copied() else {
        return;
    };
    let _ = CONNECTS.remove(key);
    if p.skaddr != 0 {
        finish(&p, ret);
    }
}
