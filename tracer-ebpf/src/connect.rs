//! Connection attempts: what `connect()` on an inet socket returned.
//!
//! Three interchangeable hook families; user space loads the first that
//! this kernel accepts (see `tracer::hooks::connect`):
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
//!    match-tracepoint: syscalls:sys_enter_connect
//!    match-tracepoint: syscalls:sys_exit_connect
//!
//! Only failures are emitted (a return other than 0 and -EINPROGRESS): a
//! successful attempt is already visible as SYN_SENT -> ESTABLISHED.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fexit, kprobe, kretprobe, map, tracepoint},
    maps::HashMap,
    programs::{FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};
use tracer_common::{TpOffsets, hook, kind};

use crate::global::Global;
use crate::{
    emit::{Outcome, Skip, done, field, new_event, submit, want, wanted},
    netns,
    sockaddr::{self, SockAddr},
};

const EINPROGRESS: i32 = 115;

#[unsafe(no_mangle)]
static CONNECT_ENTER_TP: Global<TpOffsets> = Global::new(TpOffsets::ABSENT);
#[unsafe(no_mangle)]
static CONNECT_EXIT_TP: Global<TpOffsets> = Global::new(TpOffsets::ABSENT);

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

impl Pending {
    #[inline(always)]
    fn new(skaddr: u64, to: SockAddr) -> Self {
        Self {
            skaddr,
            daddr: to.addr,
            dport: to.port,
            family: to.family,
            _pad: [0; 4],
        }
    }
}

/// Pending connects by `pid_tgid` (kprobe and syscall plans).
#[map(name = "CONNECTS")]
static CONNECTS: HashMap<u64, Pending> = HashMap::with_max_entries(16384, 0);

/// Emits a failed connect.
#[inline(always)]
fn finish(p: &Pending, ret: i32, hook_id: u8) -> Outcome {
    want(ret != 0 && ret != -EINPROGRESS && wanted(p.family, 0, p.dport))?;
    let mut ev = new_event(kind::CONNECT_ERROR, hook_id);
    ev.skaddr = p.skaddr;
    ev.daddr = p.daddr;
    ev.dport = p.dport;
    ev.family = p.family as u8;
    ev.errno = ret.wrapping_neg() as u16;
    // From the socket in every plan: the syscall plan learned it from the
    // CLOSE -> SYN_SENT transition, and the caller's descriptor keeps it
    // alive until connect() returns.
    let ns = netns::set(&mut ev, netns::of_sock(p.skaddr));
    submit(&ev);
    ns
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
    done(
        hook::FEXIT_V4_CONNECT,
        fexit_connect(&ctx, hook::FEXIT_V4_CONNECT),
    )
}

#[fexit(function = "tcp_v6_connect")]
pub fn fexit_tcp_v6_connect(ctx: FExitContext) -> u32 {
    done(
        hook::FEXIT_V6_CONNECT,
        fexit_connect(&ctx, hook::FEXIT_V6_CONNECT),
    )
}

fn fexit_connect(ctx: &FExitContext, hook_id: u8) -> Outcome {
    let sk: u64 = ctx.arg(0);
    let uaddr: u64 = ctx.arg(1);
    let ret: i32 = ctx.ret().map_err(|_| Skip::Unreadable)?;
    let to = sockaddr::kernel(uaddr)?;
    finish(&Pending::new(sk, to), ret, hook_id)
}

// ---- plan 2: kprobe + kretprobe -------------------------------------------

#[kprobe]
pub fn kprobe_tcp_connect(ctx: ProbeContext) -> u32 {
    done(hook::KPROBE_CONNECT, try_kprobe(&ctx))
}

fn try_kprobe(ctx: &ProbeContext) -> Outcome {
    let sk: u64 = ctx.arg(0).ok_or(Skip::Unreadable)?;
    let uaddr: u64 = ctx.arg(1).ok_or(Skip::Unreadable)?;
    let to = sockaddr::kernel(uaddr)?;
    stash(Pending::new(sk, to))
}

#[kretprobe]
pub fn kretprobe_tcp_connect(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret();
    done(
        hook::KRETPROBE_CONNECT,
        take_and_finish(ret as i32, hook::KRETPROBE_CONNECT),
    )
}

// ---- plan 3: connect() syscall tracepoints ---------------------------------

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    done(hook::CONNECT_ENTER, try_sys_enter(&ctx))
}

fn try_sys_enter(ctx: &TracePointContext) -> Outcome {
    let off = CONNECT_ENTER_TP.load();
    let uaddr = field::<u64>(ctx, off.uservaddr)?;
    // A caller's bad pointer (the connect fails with EFAULT) or a page not
    // present counts as unreadable too.
    let to = sockaddr::user(uaddr)?;
    stash(Pending::new(0, to))
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    done(hook::CONNECT_EXIT, try_sys_exit(&ctx))
}

fn try_sys_exit(ctx: &TracePointContext) -> Outcome {
    let off = CONNECT_EXIT_TP.load();
    let ret = field::<i64>(ctx, off.ret)?;
    take_and_finish(ret as i32, hook::CONNECT_EXIT)
}

#[inline(always)]
fn stash(p: Pending) -> Outcome {
    CONNECTS
        .insert(bpf_get_current_pid_tgid(), p, 0)
        .map_err(|_| Skip::NoRoom)
}

#[inline(always)]
fn take_and_finish(ret: i32, hook_id: u8) -> Outcome {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: read-only copy of our own entry.
    let p = unsafe { CONNECTS.get(key) }
        .copied()
        .ok_or(Skip::Unwanted)?;
    let _ = CONNECTS.remove(key);
    // No socket: not a TCP connect (a Unix or UDP socket's).
    want(p.skaddr != 0)?;
    finish(&p, ret, hook_id)
}
