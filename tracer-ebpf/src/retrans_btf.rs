//! Retransmissions from the BTF tracepoints: the same records as
//! `retrans.rs`'s `tcp_retransmit_skb` and `tcp_retransmit_synack`, read
//! from the socket and buffer (or request socket) the kernel hands over
//! instead of the classic record, and skipped only
//! when this very program is already running on the CPU (the classic
//! program shares one per-CPU guard with every kprobe and tracepoint
//! program on the host: 128-177 of 445 000 retransmits skipped in the
//! bench's 10 % loss workload). A second program handles those it is
//! skipped for (see `nested.rs`).
//!
//! match-btf-tracepoint: tcp_retransmit_skb
//! match-proto: TP_PROTO(const struct sock *sk, const struct sk_buff *skb)
//! (6.17+: TP_PROTO(const struct sock *sk, const struct sk_buff *skb, int err))
//! Fields as `TP_fast_assign` of include/trace/events/tcp.h fills them: the
//! flow as `btf_sock.rs` says, state = sk->sk_state, err = err. No task:
//! retransmits come mostly from softirq, and user space names the owner
//! from the flow's state transitions.
//!
//! match-btf-tracepoint: tcp_retransmit_synack
//! match-proto: TP_PROTO(const struct sock *sk, const struct request_sock *req)
//! Fields: family = sk->sk_family (the listener's), sport =
//! ireq->ir_num, dport = ntohs(ireq->ir_rmt_port), addresses =
//! ireq->ir_loc_addr/ir_rmt_addr (v6: ir_v6_loc_addr/ir_v6_rmt_addr),
//! where `ir_*` name the request socket's `sock_common` members
//! (skc_num, skc_dport, skc_rcv_saddr, skc_daddr, ...): the offsets of
//! `SOCK_OFF` read them as they read a full socket's.

use aya_ebpf::programs::BtfTracePointContext;
use tracer_common::{NO_OFFSET, RetransArgs, SKB_OFFSET_MASK, hook, kind};

use crate::{
    btf_sock::{self, at},
    emit::{Outcome, Skip, TCP_SYN_RECV, submit, want, wanted},
    global::Global,
    nested, netns,
    retrans::{congestion, segs_at},
};

#[unsafe(no_mangle)]
static RETRANS_ARGS: Global<RetransArgs> = Global::new(RetransArgs::ABSENT);

/// This call's retransmit, for [`nested`]: the socket's pairs and the
/// buffer's first sequence number.
#[inline(always)]
fn hit(ctx: &BtfTracePointContext) -> nested::Hit {
    let args = RETRANS_ARGS.load();
    let skb: *const u8 = ctx.arg(1);
    let seq = if args.skb_seq == NO_OFFSET || skb.is_null() {
        0
    } else {
        at::<u32>(skb, args.skb_seq & SKB_OFFSET_MASK)
    };
    btf_sock::hit(ctx.arg(0), seq)
}

nested::btf_pair! {
    tracepoint: "tcp_retransmit_skb",
    programs: (tcp_retransmit_skb_btf, tcp_retransmit_skb_btf_nested),
    pair: nested::RETRANS,
    hook: hook::RETRANSMIT_SKB,
    hit: hit,
    work: try_retrans,
}

fn try_retrans(ctx: &BtfTracePointContext) -> Outcome {
    let sk: *const u8 = ctx.arg(0);
    let skb: *const u8 = ctx.arg(1);
    if sk.is_null() {
        return Err(Skip::Unreadable);
    }
    // A failed attempt (6.17+): nothing left the host and RetransSegs does
    // not count it; sent with its error, user space keeps it apart.
    let err: i32 = if RETRANS_ARGS.load().has_err != 0 {
        ctx.arg(2)
    } else {
        0
    };
    let flow = btf_sock::ports(sk)?;
    want(wanted(flow.2, flow.0, flow.1))?;
    let mut ev = btf_sock::flow_event(sk, flow, kind::RETRANS, hook::RETRANSMIT_SKB);
    ev.skaddr = sk as u64;
    ev.state = at::<u8>(sk, btf_sock::offsets().state);
    ev.errno = (err.unsigned_abs() & 0xffff) as u16;
    // Sent even without its congestion state, segment count or
    // namespace, which are then unknown.
    let cg = congestion(ev.skaddr);
    if let Ok(c) = cg {
        ev.cong = c;
    }
    let segs = segs_at(skb);
    ev.segs = segs;
    let ns = netns::set(&mut ev, netns::of_btf_sock(sk));
    submit(&ev);
    cg.map(drop).and(ns)
}

/// This call's SYN-ACK, for [`nested`]: the request socket's pairs.
#[inline(always)]
fn synack_hit(ctx: &BtfTracePointContext) -> nested::Hit {
    btf_sock::hit(ctx.arg(1), 0)
}

nested::btf_pair! {
    tracepoint: "tcp_retransmit_synack",
    programs: (tcp_retransmit_synack_btf, tcp_retransmit_synack_btf_nested),
    pair: nested::SYNACK,
    hook: hook::RETRANSMIT_SYNACK,
    hit: synack_hit,
    work: try_synack,
}

fn try_synack(ctx: &BtfTracePointContext) -> Outcome {
    let sk: *const u8 = ctx.arg(0);
    let req: *const u8 = ctx.arg(1);
    if sk.is_null() || req.is_null() {
        return Err(Skip::Unreadable);
    }
    let o = btf_sock::offsets();
    let family = at::<u16>(sk, o.family);
    let sport = at::<u16>(req, o.num);
    let dport = u16::from_be(at::<u16>(req, o.dport));
    want(wanted(family, sport, dport))?;
    let mut ev = btf_sock::flow_event(
        req,
        (sport, dport, family),
        kind::RETRANS,
        hook::RETRANSMIT_SYNACK,
    );
    // The listener: a request socket's namespace is its listener's.
    ev.skaddr = sk as u64;
    ev.state = TCP_SYN_RECV;
    ev.segs = 1;
    let ns = netns::set(&mut ev, netns::of_btf_sock(sk));
    submit(&ev);
    ns
}
