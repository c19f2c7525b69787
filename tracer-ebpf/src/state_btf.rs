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
//! Nested transitions: a second program on the same tracepoint,
//! `_nested`, handles those the kernel skipped this one for (see
//! `nested.rs`).

use aya_ebpf::programs::BtfTracePointContext;
use tracer_common::{FROM_NESTED, IPPROTO_TCP, hook, kind};

use crate::{
    btf_sock::{self, at},
    emit::{Outcome, Skip, want, wanted},
    nested, netns,
    state::{Gate, finish},
};

/// This call's transition, for [`nested`]: the socket's pairs and the
/// old and new states.
#[inline(always)]
fn hit(ctx: &BtfTracePointContext) -> nested::Hit {
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    btf_sock::hit(ctx.arg(0), ((old as u32 & 0xff) << 8) | (new as u32 & 0xff))
}

nested::btf_pair! {
    tracepoint: "inet_sock_set_state",
    programs: (inet_sock_set_state_btf, inet_sock_set_state_btf_nested),
    pair: nested::STATE,
    hook: hook::STATE,
    hit: hit,
    work: |ctx| try_state(ctx, false),
    work_nested: |ctx| try_state(ctx, true),
}

/// `nested`: called from the second program (its records say so, see
/// [`FROM_NESTED`]).
fn try_state(ctx: &BtfTracePointContext, nested: bool) -> Outcome {
    let o = btf_sock::offsets();
    let sk: *const u8 = ctx.arg(0);
    if sk.is_null() {
        return Err(Skip::Unreadable);
    }
    // Also fires for SCTP and MPTCP sockets.
    want(at::<u16>(sk, o.protocol) == IPPROTO_TCP)?;
    let old_state: i32 = ctx.arg(1);
    let state: i32 = ctx.arg(2);
    let gate = Gate::new(old_state as u8, state as u8)?;
    let flow = btf_sock::ports(sk)?;
    if !gate.listener {
        want(wanted(flow.2, flow.0, flow.1))?;
    }
    let mut ev = btf_sock::flow_event(sk, flow, kind::STATE, hook::STATE);
    if nested {
        ev.reason = FROM_NESTED;
    }
    finish(&mut ev, sk as u64, netns::of_btf_sock(sk), &gate)
}
