//! `tcptrace stat`: the kernel's own TCP counters of one network
//! namespace, one record per interval: each counter's growth (opens,
//! failed attempts, resets, segments in and out, retransmitted segments
//! and their split by kind, listen-queue overflows), the retransmission
//! rate, and sockets per state at the interval's end. No eBPF: the
//! source is [`crate::counters::source`].

use super::{
    Emit, View,
    records::{Rec, StatReport},
};
use crate::{
    counters::{Counters, rates::Rates},
    hooks::Wants,
};

#[derive(Debug, Default)]
pub struct Stat {
    last: Option<Counters>,
    seq: u64,
}

impl View for Stat {
    fn wants(&self) -> Wants {
        Wants::default()
    }

    fn counters(&self) -> Option<crate::counters::Reading> {
        Some(crate::counters::Reading::Census)
    }

    fn on_counters(&mut self, c: &Counters, out: &mut dyn Emit) {
        if let Some(prev) = self.last.replace(c.clone()) {
            out.emit(&Rec::Stat(&StatReport {
                rates: Rates::between(&prev, c),
                curr_estab: c.curr_estab,
                sockstat: c.sockstat,
                census: c.census.clone(),
                seq: self.seq,
            }));
            self.seq += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{counters::Counter, views::testing::Collect};

    #[test]
    fn one_record_per_interval_after_the_first_reading() {
        let mut v = Stat::default();
        let mut out = Collect::default();
        let mut c = Counters {
            ts_ns: 1_000_000_000,
            ..Counters::default()
        };
        c.values[Counter::OutSegs as usize] = Some(100);
        v.on_counters(&c, &mut out);
        assert!(out.0.is_empty(), "a baseline, not an interval");
        c.ts_ns = 2_000_000_000;
        c.values[Counter::OutSegs as usize] = Some(150);
        v.on_counters(&c, &mut out);
        c.ts_ns = 3_000_000_000;
        v.on_counters(&c, &mut out);
        assert_eq!(out.0.len(), 2);
        assert!(out.0[0].contains("seq: 0"), "{}", out.0[0]);
        assert!(out.0[1].contains("seq: 1"), "{}", out.0[1]);
    }
}
