//! Smoothed RTT from the BTF tracepoint: the same samples as `rtt.rs`'s
//! `tcp_probe`, read from the socket the kernel hands over instead of the
//! classic record (which the kernel fills for every segment before a
//! program runs: addresses as two sockaddr blobs, eleven more fields), and
//! skipped only when this very program is already running on the CPU. The
//! classic program shares one per-CPU guard with every kprobe and
//! tracepoint program on the host: the soak lost tens of thousands of
//! samples beside two other tracers. A second program takes the samples
//! this one is skipped for (see `nested.rs`).
//!
//! match-btf-tracepoint: tcp_probe
//! match-proto: TP_PROTO(struct sock *sk, const struct sk_buff *skb)
//! Fields as `TP_fast_assign` of include/trace/events/tcp.h fills them:
//! the ports and family as `btf_sock.rs` says, srtt = tp->srtt_us >> 3.
//! The socket is the kernel's own pointer, on every kernel (6.1's classic
//! record has no `skaddr`; this program needs no tuple map).

use aya_ebpf::{helpers::bpf_probe_read_kernel, programs::BtfTracePointContext};
use tracer_common::{KERNEL_OFFSET_MASK, NO_OFFSET, ProbeArgs, SKB_OFFSET_MASK, hook};

use crate::{
    btf_sock::{self, at},
    emit::{Outcome, Skip, want, wanted},
    global::Global,
    nested, rtt,
};

#[unsafe(no_mangle)]
static PROBE_ARGS: Global<ProbeArgs> = Global::new(ProbeArgs::ABSENT);

/// This call's segment, for [`nested`]: the socket's pairs and the
/// segment's first sequence number. Two samples the pair must tell apart
/// are of two sockets (one nests in the other's, which holds its lock),
/// so the socket's pairs alone almost always do.
#[inline(always)]
fn hit(ctx: &BtfTracePointContext) -> nested::Hit {
    let off = PROBE_ARGS.load().skb_seq;
    let skb: *const u8 = ctx.arg(1);
    let seq = if off == NO_OFFSET || skb.is_null() {
        0
    } else {
        at::<u32>(skb, off & SKB_OFFSET_MASK)
    };
    btf_sock::hit(ctx.arg(0), seq)
}

nested::btf_pair! {
    tracepoint: "tcp_probe",
    programs: (tcp_probe_btf, tcp_probe_btf_nested),
    pair: nested::PROBE,
    hook: hook::PROBE,
    hit: hit,
    work: try_probe,
}

fn try_probe(ctx: &BtfTracePointContext) -> Outcome {
    let sk: *const u8 = ctx.arg(0);
    if sk.is_null() {
        return Err(Skip::Unreadable);
    }
    let (sport, dport, family) = btf_sock::ports(sk)?;
    want(wanted(family, sport, dport))?;
    // `srtt_us` lies past `struct sock` (in the `tcp_sock` around it),
    // where the verifier's BTF check of `sk` does not reach: read
    // through the helper.
    let off = PROBE_ARGS.load().srtt_us & KERNEL_OFFSET_MASK;
    // SAFETY: a checked read of kernel memory.
    let srtt_us = unsafe { bpf_probe_read_kernel(sk.add(off as usize) as *const u32) }
        .map_err(|_| Skip::Unreadable)?;
    rtt::record(sk as u64, srtt_us >> 3);
    Ok(())
}
