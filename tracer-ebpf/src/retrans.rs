//! Retransmissions: data, FIN and SYN segments, and SYN-ACKs.
//!
//! match-tracepoint: tcp:tcp_retransmit_skb
//!   (skbaddr, skaddr, state, sport, dport, family, saddr[4], daddr[4],
//!    saddr_v6[16], daddr_v6[16], err); `state` since 4.16, `family` since
//!   5.x, `err` since 6.x (then the tracepoint also fires for failed
//!   attempts, which are not retransmissions on the wire).
//! match-tracepoint: tcp:tcp_retransmit_synack
//!   (skaddr = listener, req, sport, dport, family, saddr[4], daddr[4],
//!    saddr_v6[16], daddr_v6[16]).

use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::tracepoint, programs::TracePointContext};
use tracer_common::{ABSENT, SkbSegsOffset, TpOffsets, kind};

use crate::emit::{TCP_SYN_RECV, field, flow_event, submit};

#[unsafe(no_mangle)]
static RETRANS_TP: TpOffsets = TpOffsets::ABSENT;
#[unsafe(no_mangle)]
static SYNACK_TP: TpOffsets = TpOffsets::ABSENT;
/// match-struct: struct sk_buff { ... char cb[48]; ... }
/// match-struct: struct tcp_skb_cb { __u32 seq; __u32 end_seq; union { struct { u16 tcp_gso_segs; ...
/// Resolved from BTF by user space.
#[unsafe(no_mangle)]
static SKB_SEGS_OFF: SkbSegsOffset = ABSENT as u32;

/// Segments in the retransmitted skb: the kernel adds this, not 1, to
/// RetransSegs. 0 when unknown.
#[inline(always)]
fn segments(ctx: &TracePointContext, off: &TpOffsets) -> i32 {
    // SAFETY: a plain global that user space rewrites before load.
    let segs_off = unsafe { core::ptr::read_volatile(&SKB_SEGS_OFF) };
    if segs_off == ABSENT as u32 {
        return 0;
    }
    let Some(skb) = field::<u64>(ctx, off.skbaddr) else {
        return 0;
    };
    // SAFETY: checked read of kernel memory.
    unsafe { bpf_probe_read_kernel((skb + u64::from(segs_off & 0xfff)) as *const u16) }
        .map_or(0, i32::from)
}

#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    // SAFETY: a plain global that user space rewrites before load.
    let off = unsafe { core::ptr::read_volatile(&RETRANS_TP) };
    let _ = try_retrans(&ctx, &off, kind::RETRANS);
    0
}

#[tracepoint]
pub fn tcp_retransmit_synack(ctx: TracePointContext) -> u32 {
    // SAFETY: as above.
    let off = unsafe { core::ptr::read_volatile(&SYNACK_TP) };
    let _ = try_retrans(&ctx, &off, kind::RETRANS_SYNACK);
    0
}

fn try_retrans(ctx: &TracePointContext, off: &TpOffsets, k: u8) -> Option<()> {
    let err = field::<i32>(ctx, off.err).unwrap_or(0);
    if err != 0 {
        // Nothing left the host; the kernel's RetransSegs does not count it.
        return None;
    }
    let mut ev = flow_event(ctx, off, k, false)?;
    ev.skaddr = field::<u64>(ctx, off.skaddr)?;
    if k == kind::RETRANS_SYNACK {
        ev.newstate = TCP_SYN_RECV;
        ev.ret = 1;
    } else {
        ev.newstate = field::<i32>(ctx, off.newstate).unwrap_or(0) as u8;
        ev.ret = segments(ctx, off);
    }
    submit(&ev);
    Some(())
}
