//! Smoothed RTT per socket, aggregated in the kernel.
//!
//! `tcp_probe` fires for every incoming segment of an established
//! connection, far too often for one event each. Each sample goes into a
//! per-socket log2 histogram in the `RTT` map, which user space reads
//! periodically. Attached only when a view asks for RTT (`--rtt`).
//!
//! match-tracepoint: tcp:tcp_probe (`srtt` in µs since 5.x:
//! `tp->srtt_us >> 3`; `skaddr` only in newer kernels: 6.1 has none, and
//! its samples are matched to their socket by tuple, see [`track`]). The
//! fields it needs and reads are its row of the hook table
//! (`tracer/src/hooks/rows.rs`).

use core::mem::MaybeUninit;

use aya_ebpf::{
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};
use tracer_common::{RTT_SLOTS, RttHist, TpOffsets, WireEvent, hook, log2_slot, rtt_mode};

use crate::emit::{Outcome, Skip, done, field, opt_field, want, wanted, zero_words};
use crate::global::Global;
use crate::sockaddr;

#[unsafe(no_mangle)]
static PROBE_TP: Global<TpOffsets> = Global::new(TpOffsets::ABSENT);

/// Histograms by socket address; LRU so that sockets whose close we did not
/// clean up make room by themselves.
#[map(name = "RTT")]
static RTT: LruHashMap<u64, RttHist> = LruHashMap::with_max_entries(65536, 0);

/// A connection's addresses and ports as both `inet_sock_set_state` and
/// `tcp_probe` give them (local first; IPv4 in the first four bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FlowKey {
    saddr: [u8; 16],
    daddr: [u8; 16],
    sport: u16,
    dport: u16,
    family: u16,
    _pad: u16,
}

/// Established sockets by tuple, for kernels whose `tcp_probe` has no
/// `skaddr` ([`rtt_mode::BY_TUPLE`]); LRU as `RTT`.
#[map(name = "RTT_SOCKS")]
static SOCKS: LruHashMap<FlowKey, u64> = LruHashMap::with_max_entries(65536, 0);

/// [`rtt_mode`]: set at load by user space.
#[unsafe(no_mangle)]
static RTT_ON: Global<u8> = Global::new(rtt_mode::OFF);

/// Drops the histogram of a socket address that is starting a new life.
#[inline(always)]
pub fn forget(sk: u64) {
    if RTT_ON.load() != rtt_mode::OFF {
        let _ = RTT.remove(sk);
    }
}

/// Whether the state program must show [`track`] the transitions into
/// ESTABLISHED and CLOSE.
#[inline(always)]
pub fn by_tuple() -> bool {
    RTT_ON.load() == rtt_mode::BY_TUPLE
}

/// Keeps the tuple -> socket map of [`rtt_mode::BY_TUPLE`]: a socket
/// entering ESTABLISHED (its tuple is complete by then) is added, one
/// entering CLOSE removed.
#[inline(always)]
pub fn track(ev: &WireEvent, established: bool) {
    let key = FlowKey {
        saddr: ev.saddr,
        daddr: ev.daddr,
        sport: ev.sport,
        dport: ev.dport,
        family: u16::from(ev.family),
        _pad: 0,
    };
    if established {
        let _ = SOCKS.insert(key, ev.skaddr, 0);
    } else {
        let _ = SOCKS.remove(key);
    }
}

#[tracepoint]
pub fn tcp_probe(ctx: TracePointContext) -> u32 {
    done(hook::PROBE, try_probe(&ctx))
}

fn try_probe(ctx: &TracePointContext) -> Outcome {
    let off = PROBE_TP.load();
    let sport = field::<u16>(ctx, off.sport)?;
    let dport = field::<u16>(ctx, off.dport)?;
    let family = opt_field::<u16>(ctx, off.family)?.unwrap_or(0);
    want(wanted(family, sport, dport))?;
    let sk = match opt_field::<u64>(ctx, off.skaddr)? {
        Some(sk) => sk,
        None => {
            let src = sockaddr::parse(&field(ctx, off.sa_saddr)?)?;
            let dst = sockaddr::parse(&field(ctx, off.sa_daddr)?)?;
            let key = FlowKey {
                saddr: src.addr,
                daddr: dst.addr,
                sport,
                dport,
                family: src.family,
                _pad: 0,
            };
            // A socket established before start-up is not in the map.
            // SAFETY: read-only copy of a map value.
            unsafe { SOCKS.get(key) }.copied().ok_or(Skip::Unwanted)?
        }
    };
    let srtt = field::<u32>(ctx, off.srtt)?;
    record(sk, srtt);
    Ok(())
}

/// Adds a sample of `srtt` µs to the histogram of socket `sk`.
#[inline(always)]
pub fn record(sk: u64, srtt: u32) {
    let slot = log2_slot(u64::from(srtt), RTT_SLOTS);
    match RTT.get_ptr_mut(sk) {
        Some(h) => {
            // tcp_probe runs in tcp_rcv_established with the socket locked,
            // so updates of one socket's histogram do not race.
            // SAFETY: `h` points into the map value, which lives as long as
            // the entry.
            unsafe {
                (*h).slots[slot] += 1;
                (*h).count += 1;
                (*h).sum_us += u64::from(srtt);
                (*h).last_us = srtt;
            }
        }
        None => {
            // Zeroed by words: `slots: [0; RTT_SLOTS]` is a 128-byte
            // byte-loop `memset` call.
            let mut h = MaybeUninit::<RttHist>::uninit();
            let p = h.as_mut_ptr();
            // SAFETY: `p` is a local `RttHist` (8-aligned, a multiple of 8
            // bytes), then fully initialised: zeroed before the writes.
            let h = unsafe {
                zero_words(p);
                (*p).slots[slot] = 1;
                (*p).count = 1;
                (*p).sum_us = u64::from(srtt);
                (*p).last_us = srtt;
                h.assume_init_ref()
            };
            let _ = RTT.insert(sk, h, 0);
        }
    }
}
