//! The per-socket RTT histogram the `tcp_probe` program keeps in the
//! kernel, and its log2 slots (shared so both sides bucket alike).

/// Per-socket smoothed-RTT histogram kept in the kernel by the `tcp_probe`
/// program (one update per incoming segment; no per-packet events).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttHist {
    /// `slots[i]` counts samples with `srtt` in [2^(i-1), 2^i) µs (slot 0: 0 µs).
    pub slots: [u32; RTT_SLOTS],
    /// Samples.
    pub count: u64,
    /// Sum of samples, µs.
    pub sum_us: u64,
    /// The latest sample, µs.
    pub last_us: u32,
    pub _pad: u32,
}

/// Log2 slots of [`RttHist`]: up to 2^31 µs.
pub const RTT_SLOTS: usize = 32;

/// `RTT_ON` (a load-time global): how `tcp_probe` finds a sample's socket.
pub mod rtt_mode {
    /// `tcp_probe` is not attached.
    pub const OFF: u8 = 0;
    /// By the record's `skaddr` (Linux 6.x kernels that have it).
    pub const BY_SOCKET: u8 = 1;
    /// By the record's tuple, mapped to the socket by the state program
    /// when the socket becomes ESTABLISHED (kernels whose `tcp_probe` has
    /// no `skaddr`, such as 6.1).
    pub const BY_TUPLE: u8 = 2;
}

/// The log2 slot of `v` among `slots`: slot 0 holds 0, slot `i` holds
/// [2^(i-1), 2^i - 1], and the last slot everything above. Used by the
/// kernel's RTT histograms and by user space's histograms alike.
///
/// Comparisons rather than `leading_zeros`: for BPF, LLVM expands a count
/// of leading zeros into popcount arithmetic whose range the verifier
/// cannot bound, and then refuses the slot as an index; the bounds of a
/// branch it follows.
#[inline(always)]
pub const fn log2_slot(v: u64, slots: usize) -> usize {
    let mut x = v;
    let mut s = 0;
    if x >= 1 << 32 {
        s += 32;
        x >>= 32;
    }
    if x >= 1 << 16 {
        s += 16;
        x >>= 16;
    }
    if x >= 1 << 8 {
        s += 8;
        x >>= 8;
    }
    if x >= 1 << 4 {
        s += 4;
        x >>= 4;
    }
    if x >= 1 << 2 {
        s += 2;
        x >>= 2;
    }
    if x >= 1 << 1 {
        s += 1;
        x >>= 1;
    }
    // x is 0 (only when v is) or 1.
    s += x as usize;
    if s < slots { s } else { slots - 1 }
}

/// The smallest value in log2 slot `i` (see [`log2_slot`]).
pub const fn slot_low(i: usize) -> u64 {
    if i == 0 { 0 } else { 1 << (i - 1) }
}

/// The largest value in log2 slot `i` (the last slot also holds everything
/// above; see [`log2_slot`]).
pub const fn slot_high(i: usize) -> u64 {
    if i == 0 { 0 } else { (1u64 << i) - 1 }
}

const _: () = assert!(core::mem::size_of::<RttHist>() == 152);
