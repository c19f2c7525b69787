//! The ring buffer, the lost-event counter, the load-time filter and the
//! helpers every program uses to fill and submit a record.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::map,
    maps::{PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use tracer_common::{
    ABSENT, KernelFilter, TpOffsets, WireEvent,
    ringbuf::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE},
};

/// Ring size in the object; user space sets the real one at load
/// (`--ring-size`, default `tracer::hooks::RING_BYTES`).
const RING_BYTES: u32 = 4 << 20;

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Reserve failures (ring full), per CPU; user space sums and reports them.
#[map(name = "LOST")]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[unsafe(no_mangle)]
static FILTER: KernelFilter = KernelFilter::ANY;

pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_SYN_RECV: u8 = 3;
pub const TCP_CLOSE: u8 = 7;
pub const TCP_LISTEN: u8 = 10;

/// The load-time filter (read volatile so the compiler cannot fold the
/// default in).
#[inline(always)]
fn filter() -> KernelFilter {
    // SAFETY: a plain global that user space rewrites before load.
    unsafe { core::ptr::read_volatile(&FILTER) }
}

/// Whether a transition into `newstate` is wanted at all.
#[inline(always)]
pub fn wanted_state(newstate: u8) -> bool {
    let mask = filter().state_mask;
    mask == 0 || (newstate < 16 && mask & (1u16 << newstate) != 0)
}

/// Whether an event with this family and these ports passes the pre-filter.
#[inline(always)]
pub fn wanted(family: u16, sport: u16, dport: u16) -> bool {
    let f = filter();
    if f.family != 0 && family != 0 && f.family != family {
        return false;
    }
    if f.nports == 0 {
        return true;
    }
    let mut i = 0;
    while i < 4 {
        if (i as u16) < f.nports && (f.ports[i] == sport || f.ports[i] == dport) {
            return true;
        }
        i += 1;
    }
    false
}

/// A record with time, current task and comm filled in.
#[inline(always)]
pub fn new_event(kind: u8) -> WireEvent {
    WireEvent {
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        skaddr: 0,
        pid_tgid: bpf_get_current_pid_tgid(),
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        saddr: [0; 16],
        daddr: [0; 16],
        sport: 0,
        dport: 0,
        kind,
        family: 0,
        oldstate: 0,
        newstate: 0,
        ret: 0,
        _pad: [0; 4],
    }
}

/// Submits `ev` without waking the reader, unless the ring is more than a
/// quarter full; counts a loss when the ring has no room.
#[inline(always)]
pub fn submit(ev: &WireEvent) {
    match EVENTS.reserve::<WireEvent>(0) {
        Some(mut entry) => {
            entry.write(*ev);
            let avail = EVENTS.query(BPF_RB_AVAIL_DATA);
            let size = EVENTS.query(BPF_RB_RING_SIZE);
            let flags = if avail > size / 4 {
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            };
            entry.submit(flags);
        }
        None => {
            if let Some(n) = LOST.get_ptr_mut(0) {
                // SAFETY: per-CPU slot, no concurrent writer on this CPU.
                unsafe { *n += 1 };
            }
        }
    }
}

/// Reads a `T` at `off` in the tracepoint record, or `None` when the field
/// is absent on this kernel or unreadable.
#[inline(always)]
pub fn field<T>(ctx: &TracePointContext, off: u16) -> Option<T> {
    if off == ABSENT {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address; the offset comes from
    // this kernel's format file.
    unsafe { ctx.read_at::<T>(off as usize & 0x3ff).ok() }
}

/// A record of `kind` with the flow fields read from a tracepoint that uses
/// the TCP tracepoints' names (sport, dport, family, saddr/daddr,
/// saddr_v6/daddr_v6), or `None` when the pre-filter rejects it (unless
/// `always`) or the ports are unreadable.
#[inline(always)]
pub fn flow_event(
    ctx: &TracePointContext,
    off: &TpOffsets,
    kind: u8,
    always: bool,
) -> Option<WireEvent> {
    let sport = field::<u16>(ctx, off.sport)?;
    let dport = field::<u16>(ctx, off.dport)?;
    let family = field::<u16>(ctx, off.family).unwrap_or(0);
    if !always && !wanted(family, sport, dport) {
        return None;
    }
    let mut ev = new_event(kind);
    ev.sport = sport;
    ev.dport = dport;
    ev.family = family as u8;
    addresses(
        ctx,
        &mut ev,
        family,
        (off.saddr, off.daddr),
        (off.saddr_v6, off.daddr_v6),
    );
    Some(ev)
}

/// Reads the address pair of a TCP tracepoint into `ev`: the v4 fields for
/// AF_INET, else the v6 fields (older kernels without `family` store IPv4 as
/// v4-mapped IPv6 there, and user space unmaps it).
#[inline(always)]
pub fn addresses(
    ctx: &TracePointContext,
    ev: &mut WireEvent,
    family: u16,
    v4: (u16, u16),
    v6: (u16, u16),
) {
    if family == tracer_common::AF_INET {
        if let Some(a) = field::<[u8; 4]>(ctx, v4.0) {
            ev.saddr[..4].copy_from_slice(&a);
        }
        if let Some(a) = field::<[u8; 4]>(ctx, v4.1) {
            ev.daddr[..4].copy_from_slice(&a);
        }
    } else {
        if let Some(a) = field::<[u8; 16]>(ctx, v6.0) {
            ev.saddr = a;
        }
        if let Some(a) = field::<[u8; 16]>(ctx, v6.1) {
            ev.daddr = a;
        }
    }
}
