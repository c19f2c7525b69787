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

    /// Every transition, not only those that attribute owners: the state
    /// of a socket that receives a RST is the engine's (the kernel's
    /// `tcp_receive_reset` does not say it).
    fn wants(&self) -> Wants {
        Wants {
            resets: true,
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
            state.or(a.state),
            reason.map(|r| cx.reset_reason(r).map_or(Reason::Code(r), Reason::Named)),
        ),
        EventKind::ResetRecv => (Direction::Received, a.state, None),
        _ => return None,
    };
    Some(Rec::Reset {
        flow: FlowRef::of(a),
        direction,
        state,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::{
            Engine,
            tests::{owner, state, tuple},
        },
        event::{Event, TcpState::*},
        views::testing::{Collect, context},
    };

    fn reset(ts: u64, sock: u64, kind: EventKind, task: crate::event::Owner) -> Event {
        Event {
            kind,
            ..state(ts, sock, tuple(40000, 80), task, Close, Close)
        }
    }

    /// What the view says of `events`, run through the engine.
    fn run(events: &[Event]) -> Vec<String> {
        let (mut engine, mut view, cx) = (Engine::new(Resets.engine_config()), Resets, context());
        let mut out = Collect::default();
        for ev in events {
            let a = engine.process(ev);
            view.on_event(&a, &cx, &mut out);
        }
        out.0
    }

    #[test]
    fn a_received_reset_says_the_sockets_state() {
        let (curl, softirq) = (owner(7, "curl"), owner(0, "swapper/0"));
        let t = tuple(40000, 80);
        let got = run(&[
            state(1, 9, t, curl, Close, SynSent),
            state(2, 9, t, softirq, SynSent, Established),
            reset(3, 9, EventKind::ResetRecv, softirq),
        ]);
        assert_eq!(got.len(), 1);
        assert!(got[0].contains("state: Some(Established)"), "{got:?}");
        assert!(got[0].contains("pid: 7"), "{got:?}");
    }

    #[test]
    fn a_linger0_abort_is_its_closers() {
        // close() with SO_LINGER 0: the socket goes to CLOSE, then sends
        // its RST (reason TCP_ABORT_ON_CLOSE), in the closing process.
        let (curl, softirq) = (owner(7, "curl"), owner(0, "swapper/0"));
        let t = tuple(40000, 80);
        let sent = EventKind::ResetSent {
            state: Some(Close),
            reason: Some(11),
        };
        let got = run(&[
            state(1, 9, t, curl, Close, SynSent),
            state(2, 9, t, softirq, SynSent, Established),
            state(3, 9, t, curl, Established, Close),
            reset(4, 9, sent, curl),
        ]);
        assert_eq!(got.len(), 1);
        assert!(got[0].contains("pid: 7"), "{got:?}");
        assert!(got[0].contains("TCP_ABORT_ON_CLOSE"), "{got:?}");
    }
}
