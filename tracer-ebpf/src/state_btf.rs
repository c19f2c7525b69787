//! TCP state transitions from the BTF tracepoint: the same transitions as
//! `state.rs`, at a lower cost per event. The kernel calls it with the
//! tracepoint's arguments, without first filling the classic tracepoint's
//! record, and skips it only when this very program is already running on
//! the CPU (a classic tracepoint program is skipped whenever *any*
//! kprobe or tracepoint BPF program is running there, another tool's
//! included). The socket's fields are plain loads from the `struct sock`
//! the kernel hands over: the verifier knows its type from BTF, and the
//! offsets, in a read-only global, are constants to it.
//!
//! match-btf-tracepoint: inet_sock_set_state
//! match-proto: TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)
//! Fields as `TP_fast_assign` of include/trace/events/sock.h fills them:
//! family = sk->sk_family, protocol = sk->sk_protocol,
//! sport = ntohs(inet->inet_sport), dport = ntohs(inet->inet_dport),
//! saddr/daddr = inet->inet_saddr/inet_daddr (skc_rcv_saddr/skc_daddr),
//! saddr_v6/daddr_v6 = sk->sk_v6_rcv_saddr/sk_v6_daddr. Offsets from BTF
//! through `SOCK_OFF`; user space uses this program only when it found
//! them all.
//!
//! Nested transitions: the kernel skips this program for a transition that
//! fires while it counts as running on the CPU (`recursion_misses`; 1 264
//! of 1.5 million transitions in the bench's FIN storm on a 2-CPU VM). A
//! second program on the same tracepoint, `_nested`, is a separate program
//! to the kernel, so it is not skipped then. The first writes the
//! transition it handles (socket, old and new state) in a per-CPU slot,
//! `LAST_HIT`, before anything else; the second, called after it for the
//! same transition, returns at once when the slot holds this transition,
//! and otherwise does the work, counted in `NESTED_CAUGHT` (user space
//! subtracts them from the first program's misses). One case sends a
//! transition twice: a nested transition in the second program's first
//! instructions (before it reads the slot) runs the first program, which
//! overwrites the slot, while the second is skipped; the second then
//! handles its own transition again (2 in 100 012 once in a 6.1 guest under
//! emulation, none in the storms on this machine). Not a "busy" flag
//! raised around the work: the kernel counts the first program as running
//! from before its first instruction to after its last, and a flag
//! missed the transitions that came in between, most of a run's at times
//! (30 of 31 once).

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{btf_tracepoint, map},
    maps::PerCpuArray,
    programs::BtfTracePointContext,
};
use tracer_common::{
    AF_INET, FROM_NESTED, IPPROTO_TCP, KERNEL_OFFSET_MASK, SockOffsets, hook, kind,
};

use crate::{
    emit::{Outcome, Skip, addr_v4, addr_words, bare_event, done, want, wanted},
    global::Global,
    netns,
    state::{Gate, finish},
};

#[unsafe(no_mangle)]
static SOCK_OFF: Global<SockOffsets> = Global::new(SockOffsets::ABSENT);

/// Per CPU: the transition `inet_sock_set_state_btf` last began to
/// handle there, as [`hit`] gives it.
#[map(name = "LAST_HIT")]
static LAST_HIT: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU: transitions `inet_sock_set_state_btf_nested` handled because
/// the first program had not (each one of its recursion misses).
#[map(name = "NESTED_CAUGHT")]
static NESTED_CAUGHT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// This call's transition: the socket's address pair (`skc_addrpair`),
/// its port pair (`skc_portpair`) and the old and new states. Not the
/// socket's address: the verifier does not let a program compare a
/// pointer it was handed with a number.
#[inline(always)]
fn hit(ctx: &BtfTracePointContext) -> [u64; 2] {
    let o = SOCK_OFF.load();
    let sk: *const u8 = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    let states = ((old as u64 & 0xff) << 8) | (new as u64 & 0xff);
    [
        at::<u64>(sk, o.daddr),
        (u64::from(at::<u32>(sk, o.dport)) << 16) | states,
    ]
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_btf(ctx: BtfTracePointContext) -> u32 {
    if let Some(last) = LAST_HIT.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; volatile, so that it is written before
        // the work (the second program reads it, possibly from an
        // interrupt in the middle of this run).
        unsafe { core::ptr::write_volatile(last, hit(&ctx)) };
    }
    done(hook::STATE, try_state(&ctx, false))
}

/// The same transition, when the kernel skipped `inet_sock_set_state_btf`
/// for it (see the module's doc).
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_btf_nested(ctx: BtfTracePointContext) -> u32 {
    let Some(last) = LAST_HIT.get_ptr(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot, written only by the first program.
    if unsafe { core::ptr::read_volatile(last) } == hit(&ctx) {
        return 0;
    }
    if let Some(n) = NESTED_CAUGHT.get_ptr_mut(0) {
        // SAFETY: per-CPU slot; the first program never touches it.
        unsafe { *n += 1 };
    }
    done(hook::STATE, try_state(&ctx, true))
}

/// A `T` at `off` bytes into the socket: a load the verifier checks
/// against the socket's BTF type (a fault reads as zero).
#[inline(always)]
fn at<T>(sk: *const u8, off: u32) -> T {
    // SAFETY: `sk` is the tracepoint's `struct sock *`; the verifier
    // checks the access against its BTF type and turns a faulting load
    // into a zero.
    unsafe { core::ptr::read_volatile(sk.add((off & KERNEL_OFFSET_MASK) as usize) as *const T) }
}

/// `inet_sk(sk)->inet_sport` at `off`.
#[inline(always)]
fn inet_sport(sk: *const u8, off: u32) -> Result<u16, Skip> {
    // SAFETY: a checked read of kernel memory.
    unsafe { bpf_probe_read_kernel(sk.add((off & KERNEL_OFFSET_MASK) as usize) as *const u16) }
        .map_err(|_| Skip::Unreadable)
}

/// `nested`: called from the second program (its records say so, see
/// [`FROM_NESTED`]).
fn try_state(ctx: &BtfTracePointContext, nested: bool) -> Outcome {
    let o = SOCK_OFF.load();
    let sk: *const u8 = ctx.arg(0);
    if sk.is_null() {
        return Err(Skip::Unreadable);
    }
    // Also fires for SCTP and MPTCP sockets.
    want(at::<u16>(sk, o.protocol) == IPPROTO_TCP)?;
    let old_state: i32 = ctx.arg(1);
    let state: i32 = ctx.arg(2);
    let gate = Gate::new(old_state as u8, state as u8)?;
    // `inet_sport` lies past `struct sock` (in the `struct inet_sock`
    // around it), where the verifier's BTF check of `sk` does not reach:
    // read through the helper.
    let sport = u16::from_be(inet_sport(sk, o.sport)?);
    let dport = u16::from_be(at::<u16>(sk, o.dport));
    let family = at::<u16>(sk, o.family);
    if !gate.listener {
        want(wanted(family, sport, dport))?;
    }
    let mut ev = bare_event(kind::STATE, hook::STATE);
    ev.sport = sport;
    ev.dport = dport;
    ev.family = family as u8;
    // Addresses stay in network order: copied as words, byte for byte.
    if family == AF_INET {
        ev.saddr = addr_v4(at::<u32>(sk, o.saddr).to_ne_bytes());
        ev.daddr = addr_v4(at::<u32>(sk, o.daddr).to_ne_bytes());
    } else {
        ev.saddr = addr_words([at(sk, o.saddr_v6), at(sk, o.saddr_v6 + 8)]);
        ev.daddr = addr_words([at(sk, o.daddr_v6), at(sk, o.daddr_v6 + 8)]);
    }
    if nested {
        ev.reason = FROM_NESTED;
    }
    finish(&mut ev, sk as u64, netns::of_btf_sock(sk), &gate)
}
