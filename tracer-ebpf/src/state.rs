//! TCP state transitions.
//!
//! match-tracepoint: sock:inet_sock_set_state
//!   (skaddr, oldstate, newstate, sport, dport, family, protocol,
//!    saddr[4], daddr[4], saddr_v6[16], daddr_v6[16]); since Linux 4.16.
//! Offsets come from the format file through `STATE_TP`.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{IPPROTO_TCP, TpOffsets, WireEvent, kind};

use crate::{
    connect,
    emit::{TCP_CLOSE, TCP_LISTEN, TCP_SYN_SENT, field, flow_event, submit, wanted_state},
    rtt,
};

#[unsafe(no_mangle)]
static STATE_TP: TpOffsets = TpOffsets::ABSENT;

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = try_state(&ctx);
    0
}

fn try_state(ctx: &TracePointContext) -> Option<()> {
    // SAFETY: a plain global that user space rewrites before load.
    let off = unsafe { core::ptr::read_volatile(&STATE_TP) };
    // Also fires for SCTP and MPTCP sockets.
    if let Some(proto) = field::<u16>(ctx, off.protocol)
        && proto != IPPROTO_TCP
    {
        return None;
    }
    let oldstate = field::<i32>(ctx, off.oldstate)? as u8;
    let newstate = field::<i32>(ctx, off.newstate)? as u8;
    let listener = oldstate == TCP_LISTEN || newstate == TCP_LISTEN;
    if !listener && !wanted_state(newstate) {
        return None;
    }
    let mut ev: WireEvent = flow_event(ctx, &off, kind::STATE, listener)?;
    let skaddr = field::<u64>(ctx, off.skaddr)?;
    if newstate == TCP_SYN_SENT {
        // In process context of connect(): tell a pending connect its socket.
        connect::bind_socket(skaddr);
    }
    if oldstate == TCP_CLOSE || (oldstate == TCP_LISTEN && newstate != TCP_CLOSE) {
        // A new socket (or a new life of one) at this address: its RTT
        // histogram starts empty.
        rtt::forget(skaddr);
    }
    ev.skaddr = skaddr;
    ev.oldstate = oldstate;
    ev.newstate = newstate;
    submit(&ev);
    Some(())
}
