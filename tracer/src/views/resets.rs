//! `tcptrace resets`: one record per RST sent or received, with the
//! socket's state and the kernel's reason.

use super::{
    Columns, Context, Emit, View,
    records::{Direction, FlowRef, Reason, Rec},
};
use crate::{engine::Annotated, event::EventKind, hooks::Wants};

#[derive(Debug, Default)]
pub struct Resets;

impl View for Resets {
    fn engine_config(&self) -> crate::engine::Config {
        crate::engine::Config::streaming()
    }

    fn wants(&self) -> Wants {
        Wants {
            resets: true,
            owners_only: true,
            ..Wants::default()
        }
    }

    fn columns(&self) -> Columns {
        Columns::Resets
    }

    fn on_event(&mut self, a: &Annotated, cx: &Context, out: &mut dyn Emit) {
        if let Some(r) = record(a, cx) {
            out.emit(&r);
        }
    }
}

/// The record of a reset event (`None` for other events).
pub(super) fn record<'a>(a: &'a Annotated, cx: &'a Context) -> Option<Rec<'a>> {
    let (direction, state, reason) = match a.event.kind {
        EventKind::ResetSent { state, reason } => (
            Direction::Sent,
            state,
            reason.map(|r| cx.reset_reason(r).map_or(Reason::Code(r), Reason::Named)),
        ),
        EventKind::ResetRecv => (Direction::Received, None, None),
        _ => return None,
    };
    Some(Rec::Reset {
        flow: FlowRef::of(a),
        direction,
        state,
        reason,
    })
}
