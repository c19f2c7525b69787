//! `tcptrace retrans`: one record per retransmitted buffer (data, SYN,
//! SYN-ACK; an RTO, a fast retransmit or a loss probe), with the owning
//! process, the flow and the TCP state; failed attempts (Linux 6.17+) as
//! records of their own when asked for, never as retransmits.
//! Live, the run ends with a summary: retransmitted segments per second
//! and as a percentage of segments sent, from the namespace's own
//! counters over the run, beside what tcptrace itself showed.

use super::{
    Columns, Context, Emit, View,
    records::{FlowRef, Rec, RetransSummary},
};
use crate::{
    counters::{Counters, rates::Rates},
    engine::{Annotated, Engine},
    event::{EventKind, RetransKind},
    hooks::Wants,
};

#[derive(Debug, Default)]
pub struct Retrans {
    /// Only these kinds (`--kind`); all when empty.
    pub kinds: Vec<RetransKind>,
    /// Report failed attempts too (`--failed`, and always in JSON).
    pub failed: bool,
    /// Records shown, and the segments in them.
    records: u64,
    segs: u64,
    /// The namespace's counters at the start and the latest reading.
    first: Option<Counters>,
    last: Option<Counters>,
}

impl Retrans {
    /// Only `kinds` (all when empty), failed attempts too when `failed`.
    pub fn new(kinds: Vec<RetransKind>, failed: bool) -> Self {
        Self {
            kinds,
            failed,
            ..Self::default()
        }
    }
}

impl View for Retrans {
    fn engine_config(&self) -> crate::engine::Config {
        crate::engine::Config::streaming()
    }

    fn wants(&self) -> Wants {
        Wants {
            retrans: true,
            owners_only: true,
            ..Wants::default()
        }
    }

    fn columns(&self) -> Columns {
        Columns::Retrans
    }

    fn counters(&self) -> Option<crate::counters::Reading> {
        Some(crate::counters::Reading::Counters)
    }

    fn on_event(&mut self, a: &Annotated, _cx: &Context, out: &mut dyn Emit) {
        if let EventKind::Retrans {
            state,
            kind,
            segs,
            failed,
        } = a.event.kind
        {
            if (failed.is_some() && !self.failed)
                || !(self.kinds.is_empty() || self.kinds.contains(&kind))
            {
                return;
            }
            out.emit(&Rec::Retrans {
                flow: FlowRef::of(a),
                state,
                kind,
                segs,
                failed,
            });
            self.records += 1;
            self.segs += segs.map_or(0, u64::from);
        }
    }

    fn on_counters(&mut self, c: &Counters, _out: &mut dyn Emit) {
        if self.first.is_none() {
            self.first = Some(c.clone());
        }
        self.last = Some(c.clone());
    }

    fn finish(&mut self, _engine: &Engine, _now_ns: u64, _cx: &Context, out: &mut dyn Emit) {
        // No counters (a replay): no summary, rather than zeros.
        if let (Some(first), Some(last)) = (&self.first, &self.last)
            && last.ts_ns > first.ts_ns
        {
            out.emit(&Rec::Summary(&RetransSummary {
                records: self.records,
                segs: self.segs,
                rates: Rates::between(first, last),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        counters::Counter,
        engine::{
            Annotated, Engine,
            tests::{owner, tuple},
        },
        event::{RetransKind, TcpState},
        views::testing::{Collect, context},
    };

    fn retrans(segs: u16) -> Annotated {
        let mut event = crate::engine::tests::retrans(
            1,
            1,
            tuple(5000, 80),
            owner(0, "x"),
            TcpState::Established,
            RetransKind::Data,
        );
        if let crate::event::EventKind::Retrans { segs: s, .. } = &mut event.kind {
            *s = Some(segs);
        }
        Annotated {
            event,
            owner: None,
            prev_state_ns: None,
            state: None,
        }
    }

    #[test]
    fn a_summary_only_with_counters() {
        let engine = Engine::new(crate::engine::Config::default());
        // A replay: no counters, no summary (not zeros).
        let mut v = Retrans::default();
        let mut out = Collect::default();
        v.on_event(&retrans(2), &context(), &mut out);
        v.finish(&engine, 9, &context(), &mut out);
        assert_eq!(out.0.len(), 1, "{:?}", out.0);
        // Live: first and last readings.
        let mut v = Retrans::default();
        let mut out = Collect::default();
        let mut c = Counters::default();
        c.values[Counter::RetransSegs as usize] = Some(10);
        v.on_counters(&c, &mut out);
        v.on_event(&retrans(2), &context(), &mut out);
        v.on_event(&retrans(1), &context(), &mut out);
        c.ts_ns = 2_000_000_000;
        c.values[Counter::RetransSegs as usize] = Some(13);
        v.on_counters(&c, &mut out);
        v.finish(&engine, 9, &context(), &mut out);
        let last = out.0.last().unwrap();
        assert!(
            last.starts_with("Summary(RetransSummary { records: 2, segs: 3"),
            "{last}"
        );
        assert!(
            last.contains("deltas: [None, None, None, None, None, None, Some(3)"),
            "{last}"
        );
    }
}
