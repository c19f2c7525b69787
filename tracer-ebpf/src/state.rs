//! TCP state transitions, from the classic tracepoint; `state_btf.rs` is
//! the same program on the BTF tracepoint, which user space prefers
//! where the kernel allows it. Both end in [`finish`].
//!
//! match-tracepoint: sock:inet_sock_set_state (since Linux 4.16); the
//! fields it needs and reads are its row of the hook table
//! (`tracer/src/hooks/rows.rs`). Offsets come from the format file through
//! `STATE_TP`.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{IPPROTO_TCP, TpOffsets, WireEvent, hook, kind};

use crate::global::Global;
use crate::{
    connect,
    emit::{
        Outcome, TCP_CLOSE, TCP_ESTABLISHED, TCP_LISTEN, TCP_SYN_SENT, done, field, flow_fields,
        opt_field, set_task, submit, want, wanted_state,
    },
    netns, rtt,
    span::Span,
};

#[unsafe(no_mangle)]
static STATE_TP: Global<TpOffsets> = Global::new(TpOffsets::ABSENT);

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    done(hook::STATE, try_state(&ctx))
}

fn try_state(ctx: &TracePointContext) -> Outcome {
    let off = STATE_TP.load();
    // One copy of the record instead of a helper call per field.
    let ctx = &Span::read(ctx);
    // Also fires for SCTP and MPTCP sockets.
    if let Some(proto) = opt_field::<u16>(ctx, off.protocol)? {
        want(proto == IPPROTO_TCP)?;
    }
    let old_state = field::<i32>(ctx, off.oldstate)? as u8;
    let state = field::<i32>(ctx, off.newstate)? as u8;
    let gate = Gate::new(old_state, state)?;
    let mut ev = flow_fields(ctx, &off, kind::STATE, hook::STATE, gate.listener)?;
    let skaddr = field::<u64>(ctx, off.skaddr)?;
    finish(&mut ev, skaddr, netns::of_sock(skaddr), &gate)
}

/// Which transitions are sent at all.
pub struct Gate {
    old_state: u8,
    state: u8,
    /// To or from LISTEN: sent whatever the filter (accepted sockets learn
    /// their owner from their listener).
    pub listener: bool,
    rtt_track: bool,
}

impl Gate {
    /// [`Skip::Unwanted`](crate::emit::Skip) unless the view wants the
    /// transition (or RTT tracking needs it).
    #[inline(always)]
    pub fn new(old_state: u8, state: u8) -> Result<Self, crate::emit::Skip> {
        let listener = old_state == TCP_LISTEN || state == TCP_LISTEN;
        // RTT by tuple (kernels whose tcp_probe has no skaddr) follows every
        // socket into ESTABLISHED and CLOSE, whatever the view's mask.
        let rtt_track = rtt::by_tuple() && (state == TCP_ESTABLISHED || state == TCP_CLOSE);
        want(listener || rtt_track || wanted_state(state))?;
        Ok(Self {
            old_state,
            state,
            listener,
            rtt_track,
        })
    }
}

/// The part both programs share, once `ev` holds the flow's ports,
/// family and addresses: the task where it names the owner, the
/// pending-connect and RTT tables, the namespace (`netns`, as read by
/// the caller), and the submit.
#[inline(always)]
pub fn finish(
    ev: &mut WireEvent,
    skaddr: u64,
    netns: Result<u32, crate::emit::Skip>,
    gate: &Gate,
) -> Outcome {
    let (old_state, state) = (gate.old_state, gate.state);
    // The task is the socket's owner only inside connect() (CLOSE ->
    // SYN_SENT) and listen(); elsewhere it is whoever the CPU was running
    // (softirq, the peer), which user space ignores: not read at all.
    if (old_state == TCP_CLOSE && state == TCP_SYN_SENT) || state == TCP_LISTEN {
        set_task(ev);
    }
    if state == TCP_SYN_SENT {
        // In process context of connect(): tell a pending connect its socket.
        connect::bind_socket(skaddr);
    }
    if old_state == TCP_CLOSE || (old_state == TCP_LISTEN && state != TCP_CLOSE) {
        // A new socket (or a new life of one) at this address: its RTT
        // histogram starts empty.
        rtt::forget(skaddr);
    }
    ev.skaddr = skaddr;
    ev.old_state = old_state;
    ev.state = state;
    // Sent even when the namespace cannot be read (it is then 0).
    let ns = netns::set(ev, netns);
    if gate.rtt_track {
        rtt::track(ev, state == TCP_ESTABLISHED);
        want(gate.listener || wanted_state(state))?;
    }
    submit(ev);
    ns
}
