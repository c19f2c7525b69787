//! What two readings of a namespace's counters say about the time between
//! them: how much each counter grew, per second, and the retransmission
//! rate (`RetransSegs` over `OutSegs`, as `nstat` and `sar -n ETCP` users
//! compute it). A counter that went down (the namespace's counters were
//! reset, or a 32-bit kernel's counter wrapped: its width is not known
//! here) has no delta, never a huge one; a zero denominator gives no
//! rate, never NaN.

use super::{Counter, Counters, N};

/// The counters' growth between two readings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    /// CLOCK_MONOTONIC nanoseconds of the later reading.
    pub ts_ns: u64,
    /// Nanoseconds between the readings.
    pub interval_ns: u64,
    /// The namespace, by inode.
    pub netns: u32,
    /// Growth of each [`Counter`] by index (`None`: unknown on one side,
    /// or it went down).
    pub deltas: [Option<u64>; N],
}

impl Rates {
    /// From `earlier` to `later` (readings of one namespace).
    pub fn between(earlier: &Counters, later: &Counters) -> Self {
        let mut deltas = [None; N];
        for (d, (a, b)) in deltas
            .iter_mut()
            .zip(earlier.values.iter().zip(later.values.iter()))
        {
            *d = match (a, b) {
                (Some(a), Some(b)) => b.checked_sub(*a),
                _ => None,
            };
        }
        Self {
            ts_ns: later.ts_ns,
            interval_ns: later.ts_ns.saturating_sub(earlier.ts_ns),
            netns: later.netns,
            deltas,
        }
    }

    /// How much `c` grew.
    pub fn delta(&self, c: Counter) -> Option<u64> {
        self.deltas[c as usize]
    }

    /// Seconds between the readings.
    pub fn interval_s(&self) -> f64 {
        self.interval_ns as f64 / 1e9
    }

    /// `c` per second (`None` if unknown or no time passed).
    pub fn per_s(&self, c: Counter) -> Option<f64> {
        let d = self.delta(c)?;
        (self.interval_ns > 0).then(|| d as f64 / self.interval_s())
    }

    /// Retransmitted segments as a percentage of segments sent (`None`
    /// when nothing was sent).
    pub fn retrans_rate_pct(&self) -> Option<f64> {
        let sent = self.delta(Counter::OutSegs)?;
        let retrans = self.delta(Counter::RetransSegs)?;
        (sent > 0).then(|| retrans as f64 * 100.0 / sent as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(ts_ns: u64, retrans: Option<u64>, out: Option<u64>) -> Counters {
        let mut c = Counters {
            ts_ns,
            netns: 7,
            ..Counters::default()
        };
        c.values[Counter::RetransSegs as usize] = retrans;
        c.values[Counter::OutSegs as usize] = out;
        c.values[Counter::ActiveOpens as usize] = Some(ts_ns / 1_000_000);
        c
    }

    #[test]
    fn deltas_rates_and_percentages() {
        let r = Rates::between(
            &reading(1_000_000_000, Some(100), Some(10_000)),
            &reading(3_000_000_000, Some(161), Some(11_431)),
        );
        assert_eq!(r.interval_ns, 2_000_000_000);
        assert_eq!(r.delta(Counter::RetransSegs), Some(61));
        assert_eq!(r.per_s(Counter::RetransSegs), Some(30.5));
        assert_eq!(r.per_s(Counter::ActiveOpens), Some(1000.0));
        let pct = r.retrans_rate_pct().unwrap();
        assert!((pct - 61.0 * 100.0 / 1431.0).abs() < 1e-9, "{pct}");
        assert_eq!(r.netns, 7);
        assert_eq!(r.ts_ns, 3_000_000_000);
    }

    #[test]
    fn a_counter_that_went_down_has_no_delta() {
        // Reset (or a 32-bit wrap): unknown, not 2^64 - 5.
        let r = Rates::between(
            &reading(0, Some(u64::from(u32::MAX) - 2), Some(10)),
            &reading(1_000_000_000, Some(3), Some(20)),
        );
        assert_eq!(r.delta(Counter::RetransSegs), None);
        assert_eq!(r.per_s(Counter::RetransSegs), None);
        assert_eq!(r.retrans_rate_pct(), None);
        assert_eq!(r.delta(Counter::OutSegs), Some(10));
        // At the top of the range a reading that grew still counts.
        let r = Rates::between(
            &reading(0, Some(u64::MAX - 1), Some(0)),
            &reading(1, Some(u64::MAX), Some(0)),
        );
        assert_eq!(r.delta(Counter::RetransSegs), Some(1));
    }

    #[test]
    fn zero_denominators_give_no_rate_never_nan() {
        // Nothing sent: no percentage.
        let r = Rates::between(
            &reading(0, Some(5), Some(10)),
            &reading(1_000_000_000, Some(5), Some(10)),
        );
        assert_eq!(r.retrans_rate_pct(), None);
        assert_eq!(r.per_s(Counter::RetransSegs), Some(0.0));
        // No time passed: no rate.
        let r = Rates::between(&reading(5, Some(1), Some(1)), &reading(5, Some(2), Some(3)));
        assert_eq!(r.per_s(Counter::RetransSegs), None);
        assert_eq!(r.retrans_rate_pct(), Some(50.0));
        // A counter this kernel lacks.
        let r = Rates::between(&reading(0, None, Some(1)), &reading(1, Some(2), Some(3)));
        assert_eq!(r.delta(Counter::RetransSegs), None);
        assert_eq!(r.retrans_rate_pct(), None);
        // The clock never runs backwards here, but if it did: no rate.
        let r = Rates::between(&reading(9, Some(1), Some(1)), &reading(5, Some(2), Some(3)));
        assert_eq!(r.interval_ns, 0);
        assert_eq!(r.per_s(Counter::OutSegs), None);
    }
}
