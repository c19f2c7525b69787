//! Socket errors from the BTF tracepoint: the same records as `error.rs`'s
//! `inet_sk_error_report`, read from the socket the kernel hands over
//! instead of the classic record, and skipped only when this very program
//! is already running on the CPU (the classic program shares one per-CPU
//! guard with every kprobe and tracepoint program on the host; a reset
//! received in softirq reports ECONNRESET while another program may be
//! running). A second program handles those it is skipped for (see
//! `nested.rs`).
//!
//! match-btf-tracepoint: inet_sk_error_report
//! match-proto: TP_PROTO(const struct sock *sk)
//! Fields as `TP_fast_assign` of include/trace/events/sock.h fills them:
//! the flow as `btf_sock.rs` says, error = sk->sk_err, protocol =
//! sk->sk_protocol. The record is the classic one's: no socket address
//! and namespace 0 (user space matches an error to its connect by tuple,
//! as it does for the classic record), and the task that was running.

use aya_ebpf::programs::BtfTracePointContext;
use tracer_common::{IPPROTO_TCP, hook, kind};

use crate::{
    btf_sock::{self, at},
    emit::{Outcome, Skip, set_task, submit, want, wanted},
    nested,
};

/// This call's error, for [`nested`]: the socket's pairs and its error.
#[inline(always)]
fn hit(ctx: &BtfTracePointContext) -> nested::Hit {
    let sk: *const u8 = ctx.arg(0);
    btf_sock::hit(sk, at::<i32>(sk, btf_sock::offsets().err) as u32)
}

nested::btf_pair! {
    tracepoint: "inet_sk_error_report",
    programs: (inet_sk_error_report_btf, inet_sk_error_report_btf_nested),
    pair: nested::ERROR_REPORT,
    hook: hook::ERROR_REPORT,
    hit: hit,
    work: try_error,
}

fn try_error(ctx: &BtfTracePointContext) -> Outcome {
    let sk: *const u8 = ctx.arg(0);
    if sk.is_null() {
        return Err(Skip::Unreadable);
    }
    let o = btf_sock::offsets();
    want(at::<u16>(sk, o.protocol) == IPPROTO_TCP)?;
    let flow = btf_sock::ports(sk)?;
    want(wanted(flow.2, flow.0, flow.1))?;
    let mut ev = btf_sock::flow_event(sk, flow, kind::SOCK_ERROR, hook::ERROR_REPORT);
    set_task(&mut ev);
    ev.errno = at::<i32>(sk, o.err) as u16;
    submit(&ev);
    Ok(())
}
