//! `tcptrace agent`: every stream record at once (transitions, retransmits,
//! resets, connection outcomes), a census of sockets per state every
//! second and, with `--rtt`, the kernel's RTT histograms. The output sends
//! them all to the metrics and the record types asked for to the log.

use super::{
    Context, Emit, View,
    records::{FlowRef, Rec},
};
use crate::{
    engine::{
        Annotated, Engine,
        flows::{ConnectOutcome, Rtt},
    },
    event::{EventKind, TcpState},
    hooks::Wants,
};

/// How often the census is taken (event time).
const CENSUS_EVERY_NS: u64 = 1_000_000_000;

#[derive(Debug, Default)]
pub struct Agent {
    /// Also read per-socket RTT histograms (costs per received segment).
    pub rtt: bool,
    last_census_ns: Option<u64>,
}

impl Agent {
    pub fn new(rtt: bool) -> Self {
        Self {
            rtt,
            last_census_ns: None,
        }
    }

    fn census(&mut self, engine: &Engine, now_ns: u64, cx: &Context, out: &mut dyn Emit) {
        let states: Vec<(TcpState, u64)> =
            engine.census(|f| cx.filter.keeps(f)).into_iter().collect();
        out.emit(&Rec::Census {
            ts_ns: now_ns,
            states: &states,
        });
        self.last_census_ns = Some(now_ns);
    }
}

impl View for Agent {
    fn engine_config(&self) -> crate::engine::Config {
        // The census needs the flow table and inferred TIME_WAIT; nobody
        // looks at closed flows.
        crate::engine::Config {
            linger_ns: 0,
            ..crate::engine::Config::default()
        }
    }

    fn wants(&self) -> Wants {
        Wants {
            rtt: self.rtt,
            ..Wants::FLOWS
        }
    }

    fn on_event(&mut self, a: &Annotated, cx: &Context, out: &mut dyn Emit) {
        let flow = FlowRef::of(a);
        match a.event.kind {
            EventKind::State { old, new } => out.emit(&Rec::State {
                flow,
                old,
                new,
                prev_state_ns: a.prev_state_ns,
            }),
            EventKind::Retrans {
                state,
                kind,
                segs,
                failed,
            } => out.emit(&Rec::Retrans {
                flow,
                state,
                kind,
                segs,
                failed,
            }),
            EventKind::ResetSent { .. } | EventKind::ResetRecv => {
                if let Some(r) = super::resets::record(a, cx) {
                    out.emit(&r);
                }
            }
            _ => {}
        }
    }

    fn on_connect(&mut self, o: &ConnectOutcome, _cx: &Context, out: &mut dyn Emit) {
        out.emit(&Rec::Connect(o));
    }

    fn on_rtt(&mut self, sock: u64, now_ns: u64, rtt: &Rtt, out: &mut dyn Emit) {
        out.emit(&Rec::Rtt {
            ts_ns: now_ns,
            sock,
            rtt,
        });
    }

    fn on_tick(&mut self, engine: &Engine, now_ns: u64, cx: &Context, out: &mut dyn Emit) {
        if self
            .last_census_ns
            .is_none_or(|t| now_ns >= t + CENSUS_EVERY_NS)
        {
            self.census(engine, now_ns, cx, out);
        }
    }

    fn finish(&mut self, engine: &Engine, now_ns: u64, cx: &Context, out: &mut dyn Emit) {
        self.census(engine, now_ns, cx, out);
    }
}
