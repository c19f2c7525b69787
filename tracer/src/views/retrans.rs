//! `tcptrace retrans`: one record per retransmitted buffer (data, SYN,
//! SYN-ACK; an RTO, a fast retransmit or a loss probe), with the owning
//! process, the flow and the TCP state; failed attempts (Linux 6.17+) as
//! records of their own when asked for, never as retransmits.

use super::{
    Columns, Context, Emit, View,
    records::{FlowRef, Rec},
};
use crate::{
    engine::Annotated,
    event::{EventKind, RetransKind},
    hooks::Wants,
};

#[derive(Debug, Default)]
pub struct Retrans {
    /// Only these kinds (`--kind`); all when empty.
    pub kinds: Vec<RetransKind>,
    /// Report failed attempts too (`--failed`, and always in JSON).
    pub failed: bool,
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
        }
    }
}
