//! Resets sent and received.
//!
//! match-tracepoint: tcp:tcp_send_reset
//!   (skbaddr, skaddr (may be NULL: a reset for a packet with no socket),
//!    state, reason (6.10+), saddr[28], daddr[28] as sockaddr_in/in6 blobs
//!    from the sender's point of view). Older kernels store
//!   sport/dport/saddr[4]/daddr[4]/saddr_v6/daddr_v6 instead; both layouts
//!   are handled through the offsets.
//! match-tracepoint: tcp:tcp_receive_reset
//!   (skaddr, sport, dport, family, saddr[4], daddr[4], saddr_v6, daddr_v6).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{AF_INET, AF_INET6, TpOffsets, WireEvent, kind};

use crate::emit::{field, flow_event, new_event, submit, wanted};

#[unsafe(no_mangle)]
static SEND_RESET_TP: TpOffsets = TpOffsets::ABSENT;
#[unsafe(no_mangle)]
static RECV_RESET_TP: TpOffsets = TpOffsets::ABSENT;

#[tracepoint]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    let _ = try_send(&ctx);
    0
}

#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let _ = try_recv(&ctx);
    0
}

/// Reads a sockaddr_in / sockaddr_in6 blob: family, port (network order in
/// the blob) and address into `addr`.
#[inline(always)]
fn sockaddr(ctx: &TracePointContext, off: u16, addr: &mut [u8; 16]) -> Option<(u16, u16)> {
    let raw = field::<[u8; 24]>(ctx, off)?;
    let family = u16::from_ne_bytes([raw[0], raw[1]]);
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    match family {
        AF_INET => addr[..4].copy_from_slice(&raw[4..8]),
        AF_INET6 => addr.copy_from_slice(&raw[8..24]),
        _ => return None,
    }
    Some((family, port))
}

fn try_send(ctx: &TracePointContext) -> Option<()> {
    // SAFETY: a plain global that user space rewrites before load.
    let off = unsafe { core::ptr::read_volatile(&SEND_RESET_TP) };
    let mut ev: WireEvent = new_event(kind::RESET_SENT);
    let family = if let Some((f, sport)) = sockaddr(ctx, off.sa_saddr, &mut ev.saddr) {
        let (_, dport) = sockaddr(ctx, off.sa_daddr, &mut ev.daddr)?;
        if !wanted(f, sport, dport) {
            return None;
        }
        ev.sport = sport;
        ev.dport = dport;
        f
    } else {
        // Older kernels: ports and addresses as in the other TCP tracepoints.
        ev = flow_event(ctx, &off, kind::RESET_SENT, false)?;
        u16::from(ev.family)
    };
    ev.family = family as u8;
    ev.skaddr = field::<u64>(ctx, off.skaddr).unwrap_or(0);
    ev.newstate = field::<i32>(ctx, off.newstate).unwrap_or(0) as u8;
    ev.ret = field::<i32>(ctx, off.reason).unwrap_or(-1);
    submit(&ev);
    Some(())
}

fn try_recv(ctx: &TracePointContext) -> Option<()> {
    // SAFETY: a plain global that user space rewrites before load.
    let off = unsafe { core::ptr::read_volatile(&RECV_RESET_TP) };
    let mut ev = flow_event(ctx, &off, kind::RESET_RECV, false)?;
    ev.skaddr = field::<u64>(ctx, off.skaddr)?;
    submit(&ev);
    Some(())
}
