//! Resets sent and received.
//!
//! match-tracepoint: tcp:tcp_send_reset (`skaddr` NULL for a reset to a
//!   packet with no socket; `reason` since 6.10; since 6.x `saddr`/`daddr`
//!   are sockaddr_in/in6 blobs from the sender's point of view, older
//!   kernels store sport/dport/saddr[4]/daddr[4]/saddr_v6/daddr_v6 as the
//!   other TCP tracepoints do; both layouts are handled through the offsets;
//!   `skbaddr`, read when present, gives the namespace of a reset for no
//!   socket).
//! match-tracepoint: tcp:tcp_receive_reset
//! The fields each needs and reads are their rows of the hook table
//! (`tracer/src/hooks/rows.rs`).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{ABSENT, NO_REASON, TpOffsets, hook, kind};

use crate::global::Global;
use crate::{
    emit::{Outcome, done, field, flow_event, new_event, opt_field, submit, want, wanted},
    netns, sockaddr,
};

#[unsafe(no_mangle)]
static SEND_RESET_TP: Global<TpOffsets> = Global::new(TpOffsets::ABSENT);
#[unsafe(no_mangle)]
static RECV_RESET_TP: Global<TpOffsets> = Global::new(TpOffsets::ABSENT);

#[tracepoint]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    done(hook::SEND_RESET, try_send(&ctx))
}

#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    done(hook::RECEIVE_RESET, try_recv(&ctx))
}

fn try_send(ctx: &TracePointContext) -> Outcome {
    let off = SEND_RESET_TP.load();
    let mut ev = if off.sa_saddr != ABSENT {
        let src = sockaddr::parse(&field(ctx, off.sa_saddr)?)?;
        let dst = sockaddr::parse(&field(ctx, off.sa_daddr)?)?;
        want(wanted(src.family, src.port, dst.port))?;
        let mut ev = new_event(kind::RESET_SENT, hook::SEND_RESET);
        ev.family = src.family as u8;
        ev.sport = src.port;
        ev.saddr = src.addr;
        ev.dport = dst.port;
        ev.daddr = dst.addr;
        ev
    } else {
        // Older kernels: ports and addresses as in the other TCP tracepoints.
        flow_event(ctx, &off, kind::RESET_SENT, hook::SEND_RESET, false)?
    };
    ev.skaddr = opt_field::<u64>(ctx, off.skaddr)?.unwrap_or(0);
    ev.state = opt_field::<i32>(ctx, off.newstate)?.unwrap_or(0) as u8;
    ev.reason = match opt_field::<i32>(ctx, off.reason)? {
        Some(r) if (0..i32::from(NO_REASON)).contains(&r) => r as u16,
        _ => NO_REASON,
    };
    // No socket (a segment for a closed port): the namespace of the device
    // the segment came in on, which is the one the kernel answers from.
    let found = if ev.skaddr != 0 {
        netns::of_sock(ev.skaddr)
    } else {
        match opt_field::<u64>(ctx, off.skbaddr)? {
            Some(skb) => netns::of_skb(skb),
            None => Ok(0),
        }
    };
    let ns = netns::set(&mut ev, found);
    submit(&ev);
    ns
}

fn try_recv(ctx: &TracePointContext) -> Outcome {
    let off = RECV_RESET_TP.load();
    let mut ev = flow_event(ctx, &off, kind::RESET_RECV, hook::RECEIVE_RESET, false)?;
    ev.skaddr = field::<u64>(ctx, off.skaddr)?;
    let found = netns::of_sock(ev.skaddr);
    let ns = netns::set(&mut ev, found);
    submit(&ev);
    ns
}
