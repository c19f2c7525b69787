//! The ring buffer, the lost-event and unreadable-field counters, the
//! load-time filter, and the helpers every program uses to read fields and
//! to fill and submit a record.
//!
//! Every program is a thin entry that hands its `try_` body's [`Outcome`]
//! to [`done`]: the body says why it sent nothing (or sent an event with a
//! field unknown), and `done` counts the unreadable ones per hook, so that
//! a field that stops being readable on some kernel is a number user space
//! reports, not silence.

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::bpf_pidns_info,
    btf_maps::{ArrayOfMaps, RingBuf},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_ns_current_pid_tgid,
        bpf_ktime_get_ns,
        generated::{bpf_get_current_comm, bpf_get_smp_processor_id, bpf_ringbuf_query},
    },
    macros::{btf_map, map},
    maps::PerCpuArray,
    programs::TracePointContext,
};
use tracer_common::{
    ABSENT, KernelFilter, PidNs, TP_OFFSET_MASK, TpOffsets, WireEvent, hook,
    ringbuf::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
};

use crate::global::Global;

/// The inner map's template size. User space makes the real rings, of
/// the size it chose (the kernel does not compare an inner ring's size
/// with its template's), and puts one in every CPU's slot.
const TEMPLATE_BYTES: usize = 4096;

/// The event rings: slot `n` holds the ring CPU `n` writes to (user space
/// gives each CPU its own, or lets a few share one when the ring budget is
/// small; see `tracer::hooks::rings`). One ring for all CPUs made their
/// reserves contend for its lock: a program that only reserves and submits
/// cost 215 ns per transition in a loopback FIN storm on two CPUs with one
/// shared ring, 93 ns with a ring per CPU (the kernel's bpf_stats). Slots
/// past the host's CPUs are never read; user space sets the array's size.
/// The size of each ring (user space makes them all alike): a constant
/// to the verifier, where `bpf_ringbuf_query(BPF_RB_RING_SIZE)` would be
/// a helper call per record.
#[unsafe(no_mangle)]
static RING_BYTES: Global<u64> = Global::new(TEMPLATE_BYTES as u64);

#[btf_map]
static EVENTS: ArrayOfMaps<RingBuf<WireEvent, TEMPLATE_BYTES>, { tracer_common::MAX_CPUS }> =
    ArrayOfMaps::new();

/// Reserve failures (ring full), per CPU; user space sums and reports them.
#[map(name = "LOST")]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Events skipped, or sent with a field unknown, because a field they
/// needed could not be read: per CPU, one count per [`hook`] id, all in
/// one value (user space reads them with one lookup a second, not one per
/// hook). Touched only on that failure path.
#[map(name = "UNREADABLE")]
static UNREADABLE: PerCpuArray<[u64; hook::SLOTS as usize]> = PerCpuArray::with_max_entries(1, 0);

#[unsafe(no_mangle)]
static FILTER: Global<KernelFilter> = Global::new(KernelFilter::ANY);

/// The PID namespace pids are reported in (all zero: the initial one).
#[unsafe(no_mangle)]
static PIDNS: Global<PidNs> = Global::new(PidNs { dev: 0, ino: 0 });

/// The current process id as tcptrace's PID namespace sees it: the
/// kernel's own in the initial namespace (one helper call); translated
/// otherwise, 0 for a task that namespace cannot see.
#[inline(always)]
fn current_pid() -> u32 {
    let ns = PIDNS.load();
    if ns.ino == 0 {
        return (bpf_get_current_pid_tgid() >> 32) as u32;
    }
    let mut info = bpf_pidns_info { pid: 0, tgid: 0 };
    // SAFETY: `info` is a valid out-parameter of the size given.
    let r = unsafe {
        bpf_get_ns_current_pid_tgid(
            ns.dev,
            ns.ino,
            &mut info,
            core::mem::size_of::<bpf_pidns_info>() as u32,
        )
    };
    if r == 0 { info.tgid } else { 0 }
}

pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_SYN_RECV: u8 = 3;
pub const TCP_CLOSE: u8 = 7;
pub const TCP_LISTEN: u8 = 10;

/// Why a program's body sent nothing, or sent an event with a field unknown.
pub enum Skip {
    /// Nothing to send: filtered out, not TCP, not a failure, no pending
    /// connect to finish.
    Unwanted,
    /// A field the event needed was absent on this kernel or could not be
    /// read (a failed `bpf_probe_read_*`). Counted in `UNREADABLE`.
    Unreadable,
    /// A map had no room (the pending-connect table). Not counted: the
    /// table holds 16 384 concurrent connects.
    NoRoom,
}

/// What a program's body did: `Ok` when it sent its event (or had nothing
/// to say that needs counting).
pub type Outcome = Result<(), Skip>;

/// Ends a program: counts an unreadable field for `hook`. Programs return 0.
#[inline(always)]
pub fn done(hook: u8, outcome: Outcome) -> u32 {
    if let Err(Skip::Unreadable) = outcome
        && let Some(counts) = UNREADABLE.get_ptr_mut(0)
        && u32::from(hook) < hook::SLOTS
    {
        // SAFETY: this CPU's value, a map value alive for the run; the
        // index is checked just above.
        unsafe { bump(&raw mut (*counts)[usize::from(hook)]) };
    }
    0
}

/// Adds one to a per-CPU counter in one instruction (an atomic add). A
/// plain `+= 1` is a load, an add and a store: a program nested in
/// another on the same CPU (a BTF hook's second program, called from an
/// interrupt while the first counts) can bump the counter in between,
/// and the outer store then writes its increment over the inner one.
/// The intrinsic, as the BPF target has no compare-and-swap and so no
/// `AtomicU64::fetch_add`; its result unused, LLVM emits the plain
/// `lock +=` every kernel with BPF has.
///
/// # Safety
/// `n` points at an 8-aligned `u64` that lives for the run (a map value).
#[inline(always)]
unsafe fn bump(n: *mut u64) {
    use core::intrinsics::{AtomicOrdering::Relaxed, atomic_xadd};
    // SAFETY: as the caller promises.
    unsafe { atomic_xadd::<u64, u64, { Relaxed }>(n, 1) };
}

/// Whether a transition into `newstate` is wanted at all.
#[inline(always)]
pub fn wanted_state(newstate: u8) -> bool {
    let mask = FILTER.load().state_mask;
    mask == 0 || (newstate < 16 && mask & (1u16 << newstate) != 0)
}

/// Whether an event with this family and these ports passes the pre-filter.
#[inline(always)]
pub fn wanted(family: u16, sport: u16, dport: u16) -> bool {
    let f = FILTER.load();
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

/// `Ok` if wanted, else [`Skip::Unwanted`].
#[inline(always)]
pub fn want(yes: bool) -> Outcome {
    if yes { Ok(()) } else { Err(Skip::Unwanted) }
}

/// A record of `kind` from `hook` with time, current task (pid, comm and
/// cgroup) filled in.
#[inline(always)]
pub fn new_event(kind: u8, hook: u8) -> WireEvent {
    let mut ev = bare_event(kind, hook);
    set_task(&mut ev);
    ev
}

/// A record of `kind` from `hook` with only the time filled in: for
/// events whose task says nothing (softirq, or a peer's context).
#[inline(always)]
pub fn bare_event(kind: u8, hook: u8) -> WireEvent {
    WireEvent {
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        skaddr: 0,
        cgroup: 0,
        comm: [0; 16],
        saddr: [0; 16],
        daddr: [0; 16],
        pid: 0,
        netns: 0,
        sport: 0,
        dport: 0,
        segs: 0,
        errno: 0,
        reason: 0,
        kind,
        hook,
        family: 0,
        old_state: 0,
        state: 0,
        cong: 0,
    }
}

/// Fills in the current task and its comm.
#[inline(always)]
pub fn set_task(ev: &mut WireEvent) {
    ev.comm = current_comm();
    ev.pid = current_pid();
    // SAFETY: helper without preconditions (v2 id; 0 without cgroups).
    ev.cgroup = unsafe { bpf_get_current_cgroup_id() };
}

/// The current task's comm, NUL-padded. Read into an uninitialised
/// temporary: the helper writes all 16 bytes whatever happens (the name
/// padded with zeros, or zeros when it fails), so aya's
/// `bpf_get_current_comm()`, which zeroes its buffer first, costs a
/// byte-loop `memset` call and a stack frame for nothing. Not read straight
/// into the event: its address escaping would keep LLVM from splitting the
/// event into registers (a bigger stack in `inet_sk_error_report`).
#[inline(always)]
fn current_comm() -> [u8; 16] {
    let mut comm = MaybeUninit::<[u8; 16]>::uninit();
    // SAFETY: `comm` is a valid out-parameter of the size given; the
    // kernel fills every byte, success or not (`strscpy_pad`, or `memset`
    // on failure; `strncpy` padding before 4.19).
    unsafe {
        bpf_get_current_comm(comm.as_mut_ptr().cast(), 16);
        comm.assume_init()
    }
}

/// [`WireEvent`] in words.
const WORDS: usize = core::mem::size_of::<WireEvent>() / 8;
const _: () = assert!(WORDS * 8 == core::mem::size_of::<WireEvent>());

/// A record's size in the ring: the event and the ring's 8-byte header.
const SLOT_BYTES: u64 = core::mem::size_of::<WireEvent>() as u64 + 8;

/// Submits `ev` without waking the reader (it drains on a timer), unless
/// the ring is more than a quarter full and this record crossed one of
/// the sixteenths past that quarter; counts a loss when the ring has no
/// room.
///
/// Why only on a crossing: a forced wakeup queues an irq_work, an
/// interrupt on this CPU (a VM exit in a guest), and forcing one per
/// record while the ring stayed above the quarter cost 430-640 ns per
/// state event with a 64 KiB ring against 160-180 with 4 MiB (the kernel's
/// bpf_stats, a loopback storm). One wakeup per sixteenth is enough: the
/// reader, once woken, drains the whole ring. Sixteenths, not only the
/// quarter: records reserved at once on other CPUs can hide one crossing
/// from every CPU (each sees the others' records in `avail`), not twelve.
#[inline(always)]
pub fn submit(ev: &WireEvent) {
    // SAFETY: helper without preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let reserved = EVENTS
        .get(cpu)
        .and_then(|ring| Some((ring, ring.reserve_untyped::<WireEvent>(0)?)));
    match reserved {
        Some((ring, mut entry)) => {
            // Copied a word at a time, volatile: LLVM then cannot merge a
            // run of known zeros in the record (a connect's `saddr`) into a
            // `memset` on the slot, which bpf-linker would link in as a
            // byte-loop call.
            let src = (ev as *const WireEvent).cast::<u64>();
            let dst = entry.as_mut_ptr().cast::<u64>();
            let mut i = 0;
            while i < WORDS {
                // SAFETY: both point at a whole `WireEvent`, 8-aligned (its
                // alignment, asserted in tracer-common; ring slots are
                // 8-aligned) and without padding (96 bytes of fields), so
                // every word is initialised.
                unsafe { core::ptr::write_volatile(dst.add(i), src.add(i).read()) };
                i += 1;
            }
            let ring = (ring as *const RingBuf<WireEvent, TEMPLATE_BYTES>)
                .cast_mut()
                .cast();
            // SAFETY: `ring` is the ring map the record was reserved in.
            let avail = unsafe { bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) };
            let size = RING_BYTES.load();
            let step = size / 16;
            let crossed = step != 0 && avail / step != avail.saturating_sub(SLOT_BYTES) / step;
            let flags = if avail > size / 4 && crossed {
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            };
            entry.submit(flags);
        }
        None => {
            if let Some(n) = LOST.get_ptr_mut(0) {
                // SAFETY: this CPU's value of the map, alive for the run.
                unsafe { bump(n) };
            }
        }
    }
}

/// Where a program reads tracepoint fields from: the record itself
/// (one `bpf_probe_read_kernel` per field) or a [`Span`] copied at once.
pub trait Fields {
    /// Reads a `T` at `off`, which user space checked is within
    /// [`TP_OFFSET_MASK`] and not [`ABSENT`].
    fn get<T>(&self, off: u16) -> Result<T, Skip>;
}

impl Fields for TracePointContext {
    #[inline(always)]
    fn get<T>(&self, off: u16) -> Result<T, Skip> {
        // SAFETY: bpf_probe_read_kernel checks the address; the offset comes
        // from this kernel's format file, and user space checked it fits the
        // mask.
        unsafe { self.read_at::<T>(usize::from(off & TP_OFFSET_MASK)) }
            .map_err(|_| Skip::Unreadable)
    }
}

/// Reads a `T` at `off` in the tracepoint record; unreadable when the
/// field is absent on this kernel or the read fails.
#[inline(always)]
pub fn field<T>(ctx: &impl Fields, off: u16) -> Result<T, Skip> {
    if off == ABSENT {
        return Err(Skip::Unreadable);
    }
    ctx.get(off)
}

/// Reads a field the event can do without: `None` when this kernel's
/// record lacks it; unreadable only when it is there and the read fails.
#[inline(always)]
pub fn opt_field<T>(ctx: &impl Fields, off: u16) -> Result<Option<T>, Skip> {
    if off == ABSENT {
        return Ok(None);
    }
    ctx.get(off).map(Some)
}

/// A record of `kind` from `hook` with the flow fields read from a
/// tracepoint that uses the TCP tracepoints' names (sport, dport, family,
/// saddr/daddr, saddr_v6/daddr_v6); [`Skip::Unwanted`] when the pre-filter
/// rejects it (unless `always`).
#[inline(always)]
pub fn flow_event(
    ctx: &impl Fields,
    off: &TpOffsets,
    kind: u8,
    hook: u8,
    always: bool,
) -> Result<WireEvent, Skip> {
    let mut ev = flow_fields(ctx, off, kind, hook, always)?;
    set_task(&mut ev);
    Ok(ev)
}

/// [`flow_event`] without the task: for the caller to add only where the
/// task means something.
#[inline(always)]
pub fn flow_fields(
    ctx: &impl Fields,
    off: &TpOffsets,
    kind: u8,
    hook: u8,
    always: bool,
) -> Result<WireEvent, Skip> {
    let sport = field::<u16>(ctx, off.sport)?;
    let dport = field::<u16>(ctx, off.dport)?;
    let family = opt_field::<u16>(ctx, off.family)?.unwrap_or(0);
    if !always {
        want(wanted(family, sport, dport))?;
    }
    let mut ev = bare_event(kind, hook);
    ev.sport = sport;
    ev.dport = dport;
    ev.family = family as u8;
    addresses(ctx, &mut ev, family, off)?;
    Ok(ev)
}

/// Zeroes `*p` a word at a time. Volatile, so that LLVM cannot merge the
/// stores into a `memset`: bpf-linker links `memset` in as a byte loop
/// (about five instructions a byte), called as a subprogram with a stack
/// frame of its own.
///
/// # Safety
/// `p` is valid for writes of a `T` and aligned; `T`'s size (a multiple
/// of 8) and alignment (8 or more) are checked at compile time.
#[inline(always)]
pub unsafe fn zero_words<T>(p: *mut T) {
    const {
        assert!(size_of::<T>().is_multiple_of(8));
        assert!(align_of::<T>() >= 8);
    };
    let w = p.cast::<u64>();
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: within `*p`, 8-aligned (the caller's promise and the
        // checks above).
        unsafe { core::ptr::write_volatile(w.add(i), 0) };
        i += 1;
    }
}

/// 16 address bytes from two words, in memory order.
#[inline(always)]
pub fn addr_words(w: [u64; 2]) -> [u8; 16] {
    // SAFETY: same size, and every bit pattern is a valid `[u8; 16]`.
    unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(w) }
}

/// An IPv4 address as the record stores it: in the first four bytes, the
/// rest zero. Built as two words: zeroing the twelve-byte tail on its own
/// compiles to a call to the linker's byte-loop `memset`.
#[inline(always)]
pub fn addr_v4(a: [u8; 4]) -> [u8; 16] {
    addr_words([u64::from_ne_bytes([a[0], a[1], a[2], a[3], 0, 0, 0, 0]), 0])
}

/// Reads the address pair of a TCP tracepoint into `ev`: the v4 fields for
/// AF_INET, else the v6 fields (older kernels without `family` store IPv4 as
/// v4-mapped IPv6 there, and user space unmaps it).
#[inline(always)]
fn addresses(ctx: &impl Fields, ev: &mut WireEvent, family: u16, off: &TpOffsets) -> Outcome {
    if family == tracer_common::AF_INET {
        if let Some(a) = opt_field::<[u8; 4]>(ctx, off.saddr)? {
            ev.saddr = addr_v4(a);
        }
        if let Some(a) = opt_field::<[u8; 4]>(ctx, off.daddr)? {
            ev.daddr = addr_v4(a);
        }
    } else {
        if let Some(a) = opt_field::<[u8; 16]>(ctx, off.saddr_v6)? {
            ev.saddr = a;
        }
        if let Some(a) = opt_field::<[u8; 16]>(ctx, off.daddr_v6)? {
            ev.daddr = a;
        }
    }
    Ok(())
}
