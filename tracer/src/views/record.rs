//! `tcptrace record`: every input event that passes the filter, and every
//! RTT snapshot, as they came; the recording sink writes them (with the
//! header and lost counts the pipeline hands it) in the recording format
//! ([`crate::record`]).

use super::{Context, Emit, View, records::Rec};
use crate::{
    engine::{Annotated, flows::Rtt},
    hooks::Wants,
};

pub struct Record {
    pub wants: Wants,
}

impl View for Record {
    fn engine_config(&self) -> crate::engine::Config {
        crate::engine::Config::streaming()
    }

    fn wants(&self) -> Wants {
        self.wants
    }

    fn on_event(&mut self, a: &Annotated, _cx: &Context, out: &mut dyn Emit) {
        out.emit(&Rec::Event(&a.event));
    }

    fn on_rtt(&mut self, sock: u64, now_ns: u64, rtt: &Rtt, out: &mut dyn Emit) {
        out.emit(&Rec::Rtt {
            ts_ns: now_ns,
            sock,
            rtt,
        });
    }
}
