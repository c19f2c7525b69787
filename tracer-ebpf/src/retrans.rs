//! Retransmissions: data, FIN and SYN segments, and SYN-ACKs.
//!
//! match-tracepoint: tcp:tcp_retransmit_skb (`state` since 4.16, `family`
//!   since 5.x, `err` since 6.17: then the tracepoint also fires for failed
//!   attempts, which are not retransmissions on the wire and are sent with
//!   their error). It fires inside `__tcp_retransmit_skb`, so also for the
//!   tail-loss probe, which calls that directly.
//! The socket's congestion state is read with the record (one 4-byte read,
//! see [`CongOffsets`]): user space tells an RTO from a fast retransmit
//! and a loss probe by it.
//! match-tracepoint: tcp:tcp_retransmit_synack (`skaddr` is the listener,
//!   `req` the request socket, which user space never sees as a flow).
//! The fields each needs and reads are their rows of the hook table
//! (`tracer/src/hooks/rows.rs`). `retrans_btf.rs` is the first on the
//! BTF tracepoint, which user space prefers where the kernel allows it.

use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::tracepoint, programs::TracePointContext};
use tracer_common::{
    ABSENT, CongOffsets, KERNEL_OFFSET_MASK, NO_OFFSET, SKB_OFFSET_MASK, SkbSegsOffset, TpOffsets,
    cong, hook, kind,
};

use crate::emit::{Outcome, Skip, TCP_SYN_RECV, done, field, flow_event, opt_field, submit};
use crate::global::Global;
use crate::netns;

#[unsafe(no_mangle)]
static RETRANS_TP: Global<TpOffsets> = Global::new(TpOffsets::ABSENT);
#[unsafe(no_mangle)]
static SYNACK_TP: Global<TpOffsets> = Global::new(TpOffsets::ABSENT);
/// match-struct: struct sk_buff { ... char cb[48]; ... }
/// match-struct: struct tcp_skb_cb { __u32 seq; __u32 end_seq; union { struct { u16 tcp_gso_segs; ...
/// Resolved from BTF by user space; [`ABSENT`] when it could not be.
#[unsafe(no_mangle)]
static SKB_SEGS_OFF: Global<SkbSegsOffset> = Global::new(ABSENT as u32);
/// Resolved from BTF by user space; `at` is [`NO_OFFSET`] when it could
/// not be (then `cong` stays 0).
#[unsafe(no_mangle)]
static CONG_OFF: Global<CongOffsets> = Global::new(CongOffsets::ABSENT);

/// The socket's congestion state and whether the loss-probe timer is the
/// pending one, packed as [`cong`] says; 0 when unknown.
#[inline(always)]
pub fn congestion(sk: u64) -> Result<u8, Skip> {
    let off = CONG_OFF.load();
    if off.at == NO_OFFSET || sk == 0 {
        return Ok(0);
    }
    // SAFETY: checked read of kernel memory.
    let w = unsafe {
        bpf_probe_read_kernel((sk + u64::from(off.at & KERNEL_OFFSET_MASK)) as *const u32)
    }
    .map_err(|_| Skip::Unreadable)?;
    let ca = (w >> (off.ca_shift & 31)) as u8 & cong::STATE;
    let pending = (w >> (off.pending_shift & 31)) as u8;
    let probe = if pending == cong::ICSK_TIME_LOSS_PROBE {
        cong::LOSS_PROBE
    } else {
        0
    };
    Ok(cong::KNOWN | probe | ca)
}

/// Segments in the retransmitted skb: the kernel adds this, not 1, to
/// RetransSegs. 0 when unknown: no BTF offset (which `tcptrace check`
/// reports), or, counted as unreadable, no `skbaddr` or a failed read.
#[inline(always)]
fn segments(ctx: &TracePointContext, off: &TpOffsets) -> Result<u16, Skip> {
    let segs_off = SKB_SEGS_OFF.load();
    if segs_off == ABSENT as u32 {
        return Ok(0);
    }
    let skb = field::<u64>(ctx, off.skbaddr)?;
    // SAFETY: checked read of kernel memory.
    unsafe { bpf_probe_read_kernel((skb + u64::from(segs_off & SKB_OFFSET_MASK)) as *const u16) }
        .map_err(|_| Skip::Unreadable)
}

/// Segments in `skb`, a buffer the verifier knows by its BTF type (the
/// BTF program's argument): a plain load. 0 when unknown.
#[inline(always)]
pub fn segs_at(skb: *const u8) -> u16 {
    let segs_off = SKB_SEGS_OFF.load();
    if segs_off == ABSENT as u32 || skb.is_null() {
        return 0;
    }
    crate::btf_sock::at::<u16>(skb, segs_off & SKB_OFFSET_MASK)
}

#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    done(hook::RETRANSMIT_SKB, try_retrans(&ctx))
}

#[tracepoint]
pub fn tcp_retransmit_synack(ctx: TracePointContext) -> u32 {
    done(hook::RETRANSMIT_SYNACK, try_synack(&ctx))
}

fn try_retrans(ctx: &TracePointContext) -> Outcome {
    let off = RETRANS_TP.load();
    // A failed attempt (6.17+): nothing left the host and RetransSegs does
    // not count it; sent with its error, user space keeps it apart.
    let err = opt_field::<i32>(ctx, off.err)?.unwrap_or(0);
    let mut ev = flow_event(ctx, &off, kind::RETRANS, hook::RETRANSMIT_SKB, false)?;
    ev.skaddr = field::<u64>(ctx, off.skaddr)?;
    ev.state = opt_field::<i32>(ctx, off.newstate)?.unwrap_or(0) as u8;
    ev.errno = (err.unsigned_abs() & 0xffff) as u16;
    let cg = congestion(ev.skaddr);
    if let Ok(c) = cg {
        ev.cong = c;
    }
    // Sent even without its segment count or namespace, which are then
    // unknown.
    let segs = segments(ctx, &off);
    if let Ok(n) = segs {
        ev.segs = n;
    }
    let found = netns::of_sock(ev.skaddr);
    let ns = netns::set(&mut ev, found);
    submit(&ev);
    segs.map(drop).and(cg.map(drop)).and(ns)
}

fn try_synack(ctx: &TracePointContext) -> Outcome {
    let off = SYNACK_TP.load();
    let mut ev = flow_event(ctx, &off, kind::RETRANS, hook::RETRANSMIT_SYNACK, false)?;
    // The listener: a request socket's namespace is its listener's.
    ev.skaddr = field::<u64>(ctx, off.skaddr)?;
    ev.state = TCP_SYN_RECV;
    ev.segs = 1;
    let found = netns::of_sock(ev.skaddr);
    let ns = netns::set(&mut ev, found);
    submit(&ev);
    ns
}
