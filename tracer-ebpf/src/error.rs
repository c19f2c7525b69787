//! Socket errors reported to their owner (ECONNREFUSED, ETIMEDOUT,
//! EHOSTUNREACH, ECONNRESET, ...), which is how non-blocking connects learn
//! that they failed.
//!
//! match-tracepoint: sock:inet_sk_error_report
//!   (error, sport, dport, family, protocol, saddr[4], daddr[4], saddr_v6,
//!    daddr_v6); since 5.15. No socket address: user space matches by tuple.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{IPPROTO_TCP, TpOffsets, kind};

use crate::emit::{addresses, field, new_event, submit, wanted};

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
    let sport = field::<u16>(ctx, off.sport)?;
    let dport = field::<u16>(ctx, off.dport)?;
    let family = field::<u16>(ctx, off.family).unwrap_or(0);
    if !wanted(family, sport, dport) {
        return None;
    }
    let mut ev = new_event(kind::SOCK_ERROR);
    ev.sport = sport;
    ev.dport = dport;
    ev.family = family as u8;
    ev.ret = field::<i32>(ctx, off.error)?;
    addresses(
        ctx,
        &mut ev,
        family,
        (off.saddr, off.daddr),
        (off.saddr_v6, off.daddr_v6),
    );
    submit(&ev);
    Some(())
}
