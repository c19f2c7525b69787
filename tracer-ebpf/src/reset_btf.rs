//! Resets sent and received, from the BTF tracepoints: the same records
//! as `reset.rs`, read from the socket (or, for a reset sent for no
//! socket, from the segment it answers) instead of the classic record, and
//! skipped only when this very program is already running on the CPU (the
//! classic programs share one per-CPU guard with every kprobe and
//! tracepoint program on the host: a reset sent in softirq while, say, the
//! `connect()` syscall program ran was lost). A second program on each
//! handles those it is skipped for (see `nested.rs`).
//!
//! match-btf-tracepoint: tcp_send_reset
//! match-proto: TP_PROTO(const struct sock *sk, const struct sk_buff *skb)
//! (6.10+: TP_PROTO(const struct sock *sk, const struct sk_buff *skb,
//! const enum sk_rst_reason reason); `sk` may then be NULL, a reset for a
//! segment no socket took, or a timewait or request socket)
//! match-btf-tracepoint: tcp_receive_reset
//! match-proto: TP_PROTO(struct sock *sk)
//! Fields as `TP_fast_assign` of include/trace/events/tcp.h fills them:
//! the socket's flow (`btf_sock.rs`), else the segment's, reversed (the
//! reset goes back to its sender); state = sk->sk_state; reason = reason.
//! No task: user space names the owner from the flow.

use aya_ebpf::{helpers::bpf_probe_read_kernel, programs::BtfTracePointContext};
use tracer_common::{AF_INET, AF_INET6, NO_OFFSET, NO_REASON, ResetArgs, WireEvent, hook, kind};

use crate::{
    btf_sock::{self, at},
    emit::{Outcome, Skip, addr_v4, bare_event, submit, want, wanted},
    global::Global,
    nested, netns,
};

#[unsafe(no_mangle)]
static RESET_ARGS: Global<ResetArgs> = Global::new(ResetArgs::ABSENT);

/// A checked read of kernel memory at `addr`.
#[inline(always)]
fn read<T>(addr: u64) -> Result<T, Skip> {
    // SAFETY: bpf_probe_read_kernel checks the address.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.map_err(|_| Skip::Unreadable)
}

/// Where `skb`'s IP and TCP headers are (0 when unknown).
#[inline(always)]
fn headers(skb: *const u8) -> (u64, u64) {
    let a = RESET_ARGS.load();
    if skb.is_null()
        || a.skb_head == NO_OFFSET
        || a.skb_network_header == NO_OFFSET
        || a.skb_transport_header == NO_OFFSET
    {
        return (0, 0);
    }
    let head = at::<u64>(skb, a.skb_head);
    (
        head + u64::from(at::<u16>(skb, a.skb_network_header)),
        head + u64::from(at::<u16>(skb, a.skb_transport_header)),
    )
}

/// This call's reset, for [`nested`]: the answered segment's ports,
/// sequence and acknowledgment numbers, or, for a reset not answering a
/// segment (an abort), the socket's pairs.
#[inline(always)]
fn send_hit(ctx: &BtfTracePointContext) -> nested::Hit {
    let (_, th) = headers(ctx.arg(1));
    if th != 0
        && let Ok(words) = read::<[u64; 2]>(th)
    {
        return words;
    }
    let sk: *const u8 = ctx.arg(0);
    if sk.is_null() {
        return [0, 0];
    }
    btf_sock::hit(sk, 0)
}

nested::btf_pair! {
    tracepoint: "tcp_send_reset",
    programs: (tcp_send_reset_btf, tcp_send_reset_btf_nested),
    pair: nested::SEND_RESET,
    hook: hook::SEND_RESET,
    hit: send_hit,
    work: try_send,
}

nested::btf_pair! {
    tracepoint: "tcp_receive_reset",
    programs: (tcp_receive_reset_btf, tcp_receive_reset_btf_nested),
    pair: nested::RECEIVE_RESET,
    hook: hook::RECEIVE_RESET,
    hit: |ctx: &BtfTracePointContext| btf_sock::hit(ctx.arg(0), 0),
    work: try_recv,
}

/// The flow of a reset sent for no socket: the answered segment's,
/// reversed.
#[inline(always)]
fn segment_flow(skb: *const u8) -> Result<WireEvent, Skip> {
    let (ip, th) = headers(skb);
    if ip == 0 {
        return Err(Skip::Unreadable);
    }
    let ports = read::<[u8; 4]>(th)?;
    let mut ev = bare_event(kind::RESET_SENT, hook::SEND_RESET);
    ev.sport = u16::from_be_bytes([ports[2], ports[3]]);
    ev.dport = u16::from_be_bytes([ports[0], ports[1]]);
    match read::<u8>(ip)? >> 4 {
        4 => {
            ev.family = AF_INET as u8;
            ev.saddr = addr_v4(read::<[u8; 4]>(ip + 16)?);
            ev.daddr = addr_v4(read::<[u8; 4]>(ip + 12)?);
        }
        6 => {
            ev.family = AF_INET6 as u8;
            ev.saddr = read::<[u8; 16]>(ip + 24)?;
            ev.daddr = read::<[u8; 16]>(ip + 8)?;
        }
        _ => return Err(Skip::Unreadable),
    }
    Ok(ev)
}

fn try_send(ctx: &BtfTracePointContext) -> Outcome {
    let sk: *const u8 = ctx.arg(0);
    let skb: *const u8 = ctx.arg(1);
    let o = btf_sock::offsets();
    let (mut ev, found) = if sk.is_null() {
        // The namespace of the device the segment came in on, which is
        // the one the kernel answers from.
        (segment_flow(skb)?, netns::of_skb(skb as u64))
    } else {
        let state = at::<u8>(sk, o.state);
        let mut ev = btf_sock::any_flow_event(sk, state, kind::RESET_SENT, hook::SEND_RESET)?;
        ev.skaddr = sk as u64;
        ev.state = state;
        (ev, netns::of_btf_sock(sk))
    };
    want(wanted(u16::from(ev.family), ev.sport, ev.dport))?;
    ev.reason = NO_REASON;
    if RESET_ARGS.load().has_reason != 0 {
        let r: u32 = ctx.arg(2);
        if r < u32::from(NO_REASON) {
            ev.reason = r as u16;
        }
    }
    let ns = netns::set(&mut ev, found);
    submit(&ev);
    ns
}

fn try_recv(ctx: &BtfTracePointContext) -> Outcome {
    let sk: *const u8 = ctx.arg(0);
    if sk.is_null() {
        return Err(Skip::Unreadable);
    }
    let state = at::<u8>(sk, btf_sock::offsets().state);
    let mut ev = btf_sock::any_flow_event(sk, state, kind::RESET_RECV, hook::RECEIVE_RESET)?;
    want(wanted(u16::from(ev.family), ev.sport, ev.dport))?;
    ev.skaddr = sk as u64;
    let ns = netns::set(&mut ev, netns::of_btf_sock(sk));
    submit(&ev);
    ns
}
