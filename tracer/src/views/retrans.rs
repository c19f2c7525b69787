//! `tcptrace retrans`: one record per retransmitted buffer (data, SYN,
//! SYN-ACK), with the owning process, the flow and the TCP state.

use super::{
    Columns, Context, Emit, View,
    records::{FlowRef, Rec},
};
use crate::{engine::Annotated, event::EventKind, hooks::Wants};

#[derive(Debug, Default)]
pub struct Retrans;

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

    fn on_event(&mut self, a: &Annotated, _cx: &Context, out: &mut dyn Emit) {
        if let EventKind::Retrans { state, kind, segs } = a.event.kind {
            out.emit(&Rec::Retrans {
                flow: FlowRef::of(a),
                state,
                kind,
                segs,
            });
        }
    }
}
