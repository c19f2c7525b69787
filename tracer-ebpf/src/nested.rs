//! Events the kernel skipped for a BTF program because it was already
//! running on the CPU, handled by a second program on the same hook.
//!
//! A BTF tracepoint program is skipped for an event that fires while it
//! counts as running on that CPU (`recursion_misses`: a softirq's event
//! arriving while the program handles one in process context; 1 264 of
//! 1.5 million state transitions in the bench's FIN storm on a 2-CPU VM).
//! A second program on the same tracepoint is a separate program to the
//! kernel, so it is not skipped then. The first writes the event it
//! handles (a [`Hit`]) in its per-CPU slot before anything else; the
//! second, called after it for the same event, returns at once when the
//! slot holds this event, and otherwise does the work, counted in
//! `NESTED_CAUGHT` (user space subtracts them from the first programs'
//! misses).
//!
//! One case sends an event twice: a nested event in the second program's
//! first instructions (before it reads the slot) runs the first program,
//! which overwrites the slot, while the second is skipped; the second
//! then handles its own event again (2 in 100 012 state transitions once
//! in a 6.1 guest under emulation, none in the storms on this machine;
//! user space drops a state record's repeat). Not a stack of the events
//! under way, popped by the second program: a first program nested in
//! the second's last instructions pushed an event no second program
//! popped, and a later skipped event with the same pairs (every new
//! connection's LISTEN -> SYN_RECV carries its listener's) was taken for
//! it: 21 of a million transitions lost in the bench's FIN storm. Not a
//! "busy" flag raised around the work: the kernel counts the first
//! program as running from before its first instruction to after its
//! last, and a flag missed the events that came in between, most of a
//! run's at times (30 of 31 once).

use aya_ebpf::{macros::map, maps::PerCpuArray};

/// An event as the pair compares it: two words that differ between any
/// two events a CPU may see in a row (a socket's address and port pairs
/// with what happened to it).
pub type Hit = [u64; 2];

/// The pairs, each with its own slot: a retransmit arriving while the
/// first state program runs must not overwrite the transition it handles.
pub const STATE: u32 = 0;
pub const RETRANS: u32 = 1;
pub const SEND_RESET: u32 = 2;
pub const RECEIVE_RESET: u32 = 3;
pub const PROBE: u32 = 4;
pub const ERROR_REPORT: u32 = 5;
pub const SYNACK: u32 = 6;
const PAIRS: u32 = 7;

/// Per CPU and pair: the event the first program last began to handle.
#[map(name = "LAST_HIT")]
static LAST_HIT: PerCpuArray<Hit> = PerCpuArray::with_max_entries(PAIRS, 0);

/// Per CPU and pair: events the second program handled because the first
/// had not (each one of its recursion misses). A slot per pair: one
/// pair's second program may interrupt another's increment.
#[map(name = "NESTED_CAUGHT")]
static NESTED_CAUGHT: PerCpuArray<u64> = PerCpuArray::with_max_entries(PAIRS, 0);

/// The first program's first step: note the event it handles.
#[inline(always)]
pub fn begin(pair: u32, hit: Hit) {
    if let Some(last) = LAST_HIT.get_ptr_mut(pair) {
        // SAFETY: this CPU's slot; volatile, so that it is written before
        // the work (the second program reads it, possibly from an
        // interrupt in the middle of this run).
        unsafe { core::ptr::write_volatile(last, hit) };
    }
}

/// The second program's test: whether the first skipped this event (then
/// it is counted, and the caller handles it).
#[inline(always)]
pub fn skipped(pair: u32, hit: Hit) -> bool {
    let Some(last) = LAST_HIT.get_ptr(pair) else {
        return false;
    };
    // SAFETY: this CPU's slot, written only by the first program.
    if unsafe { core::ptr::read_volatile(last) } == hit {
        return false;
    }
    if let Some(n) = NESTED_CAUGHT.get_ptr_mut(pair) {
        // SAFETY: this CPU's slot of this pair; only this program (which
        // does not nest in itself) writes it.
        unsafe { *n += 1 };
    }
    true
}

/// The two programs of a BTF hook: `$first` notes the event (its [`Hit`],
/// from `$hit`) and handles it; `$second`, attached after it, handles it
/// only when the first was skipped for it. `$work` and `$work_nested`
/// handle an event (closures over the context; the state hook's marks
/// its second program's records). Both report to `emit::done` under
/// `$hook`. User space names the two programs in its hook table
/// (`tracer/src/hooks/rows.rs`).
macro_rules! btf_pair {
    (
        tracepoint: $tp:tt,
        programs: ($first:ident, $second:ident),
        pair: $pair:expr,
        hook: $hook:expr,
        hit: $hit:expr,
        work: $work:expr,
        work_nested: $work_nested:expr $(,)?
    ) => {
        #[aya_ebpf::macros::btf_tracepoint(function = $tp)]
        pub fn $first(ctx: aya_ebpf::programs::BtfTracePointContext) -> u32 {
            $crate::nested::begin($pair, ($hit)(&ctx));
            $crate::emit::done($hook, ($work)(&ctx))
        }

        #[aya_ebpf::macros::btf_tracepoint(function = $tp)]
        pub fn $second(ctx: aya_ebpf::programs::BtfTracePointContext) -> u32 {
            if !$crate::nested::skipped($pair, ($hit)(&ctx)) {
                return 0;
            }
            $crate::emit::done($hook, ($work_nested)(&ctx))
        }
    };
    (
        tracepoint: $tp:tt,
        programs: ($first:ident, $second:ident),
        pair: $pair:expr,
        hook: $hook:expr,
        hit: $hit:expr,
        work: $work:expr $(,)?
    ) => {
        $crate::nested::btf_pair! {
            tracepoint: $tp,
            programs: ($first, $second),
            pair: $pair,
            hook: $hook,
            hit: $hit,
            work: $work,
            work_nested: $work,
        }
    };
}
pub(crate) use btf_pair;
