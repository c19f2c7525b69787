//! Smoothed RTT per socket, aggregated in the kernel.
//!
//! `tcp_probe` fires for every incoming segment of an established
//! connection, far too often for one event each. Each sample goes into a
//! per-socket log2 histogram in the `RTT` map, which user space reads
//! periodically. Attached only when a view asks for RTT (`--rtt`).
//!
//! match-tracepoint: tcp:tcp_probe (`srtt` in µs since 5.x:
//! `tp->srtt_us >> 3`). The fields it needs and reads are its row of the
//! hook table (`tracer/src/hooks/table.rs`).

use aya_ebpf::{
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};
use tracer_common::{RTT_SLOTS, RttHist, TpOffsets, hook, log2_slot};

use crate::emit::{Outcome, done, field, opt_field, want, wanted};
use crate::global::Global;

#[unsafe(no_mangle)]
static PROBE_TP: Global<TpOffsets> = Global::new(TpOffsets::ABSENT);

/// Histograms by socket address; LRU so that sockets whose close we did not
/// clean up make room by themselves.
#[map(name = "RTT")]
static RTT: LruHashMap<u64, RttHist> = LruHashMap::with_max_entries(65536, 0);

/// Non-zero when user space attached `tcp_probe` (set at load).
#[unsafe(no_mangle)]
static RTT_ON: Global<u8> = Global::new(0);

/// Drops the histogram of a socket address that is starting a new life.
#[inline(always)]
pub fn forget(sk: u64) {
    if RTT_ON.load() != 0 {
        let _ = RTT.remove(sk);
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
    let sk = field::<u64>(ctx, off.skaddr)?;
    let srtt = field::<u32>(ctx, off.srtt)?;
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
            let mut h = RttHist {
                slots: [0; RTT_SLOTS],
                count: 1,
                sum_us: u64::from(srtt),
                last_us: srtt,
                _pad: 0,
            };
            h.slots[slot] = 1;
            let _ = RTT.insert(sk, h, 0);
        }
    }
    Ok(())
}
