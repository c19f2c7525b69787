//! `tcptrace states`: one record per TCP state transition, with the time
//! the socket spent in the state it left.

use super::{
    Columns, Context, Emit, View,
    records::{FlowRef, Rec},
};
use crate::{engine::Annotated, event::EventKind, hooks::Wants};

#[derive(Debug, Default)]
pub struct States;

impl View for States {
    fn engine_config(&self) -> crate::engine::Config {
        crate::engine::Config::streaming()
    }

    fn wants(&self) -> Wants {
        Wants::default()
    }

    fn columns(&self) -> Columns {
        Columns::States
    }

    fn on_event(&mut self, a: &Annotated, _cx: &Context, out: &mut dyn Emit) {
        if let EventKind::State { old, new } = a.event.kind {
            out.emit(&Rec::State {
                flow: FlowRef::of(a),
                old,
                new,
                prev_state_ns: a.prev_state_ns,
            });
        }
    }
}
