//! Socket errors reported to their owner (ECONNREFUSED, ETIMEDOUT,
//! EHOSTUNREACH, ECONNRESET, ...), which is how non-blocking connects learn
//! that they failed.
//!
//! match-tracepoint: sock:inet_sk_error_report
//!   (error, sport, dport, family, protocol, saddr[4], daddr[4], saddr_v6,
//!    daddr_v6); since 5.15. No socket address: user space matches by tuple.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{IPPROTO_TCP, TpOffsets, kind};

use crate::emit::{field, flow_event, submit};

#[unsafe(no_mangle)]
static ERROR_TP: TpOffsets = TpOffsets::ABSENT;

#[tracepoint]
pub fn inet_sk_error_report(ctx: TracePointContext) -> u32 {
    let _ = try_error(&ctx);
    0
}

fn try_error(ctx: &TracePointContext) -> Option<()> {
    // SAFETY: a plain global that user space rewrites before load.
    let off = unsafe { core::ptr::read_volatile(&ERROR_TP) };
    if field::<u16>(ctx, off.protocol)? != IPPROTO_TCP {
        return None;
    }
    let mut ev = flow_event(ctx, &off, kind::SOCK_ERROR, false)?;
    ev.ret = field::<i32>(ctx, off.error)?;
    submit(&ev);
    Some(())
}
