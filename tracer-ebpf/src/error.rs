//! Socket errors reported to their owner (ECONNREFUSED, ETIMEDOUT,
//! EHOSTUNREACH, ECONNRESET, ...), which is how non-blocking connects learn
//! that they failed.
//!
//! match-tracepoint: sock:inet_sk_error_report (since 5.15; no socket
//! address: user space matches by tuple). The fields it needs and reads are
//! its row of the hook table (`tracer/src/hooks/rows.rs`).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{IPPROTO_TCP, TpOffsets, hook, kind};

use crate::emit::{Outcome, done, field, flow_event, submit, want};
use crate::global::Global;

#[unsafe(no_mangle)]
static ERROR_TP: Global<TpOffsets> = Global::new(TpOffsets::ABSENT);

#[tracepoint]
pub fn inet_sk_error_report(ctx: TracePointContext) -> u32 {
    done(hook::ERROR_REPORT, try_error(&ctx))
}

fn try_error(ctx: &TracePointContext) -> Outcome {
    let off = ERROR_TP.load();
    want(field::<u16>(ctx, off.protocol)? == IPPROTO_TCP)?;
    let mut ev = flow_event(ctx, &off, kind::SOCK_ERROR, hook::ERROR_REPORT, false)?;
    ev.errno = field::<i32>(ctx, off.error)? as u16;
    submit(&ev);
    Ok(())
}
