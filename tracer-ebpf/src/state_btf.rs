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

use aya_ebpf::{
    helpers::bpf_probe_read_kernel, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use tracer_common::{AF_INET, IPPROTO_TCP, KERNEL_OFFSET_MASK, SockOffsets, hook, kind};

use crate::{
    emit::{Outcome, Skip, addr_v4, addr_words, bare_event, done, want, wanted},
    global::Global,
    netns,
    state::{Gate, finish},
};

#[unsafe(no_mangle)]
static SOCK_OFF: Global<SockOffsets> = Global::new(SockOffsets::ABSENT);

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_btf(ctx: BtfTracePointContext) -> u32 {
    done(hook::STATE, try_state(&ctx))
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

fn try_state(ctx: &BtfTracePointContext) -> Outcome {
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
    finish(&mut ev, sk as u64, netns::of_btf_sock(sk), &gate)
}
