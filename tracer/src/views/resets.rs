//! `tcptrace resets`: one record per RST sent or received, with the
//! socket's state and the kernel's reason when it gives one.

use std::io::Write;

use super::{Context, View};
use crate::{
    engine::Annotated,
    event::EventKind,
    hooks::Wants,
    sinks::{
        Mode, Output,
        format::{TEXT_FLOW_HEADER, json_flow_fields, text_flow_columns},
    },
};

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

    fn text_header(&self) -> Option<String> {
        Some(format!(
            "{TEXT_FLOW_HEADER}{:<4} {:<12} REASON",
            "DIR", "STATE"
        ))
    }

    fn on_event(&mut self, a: &Annotated, out: &mut Output, cx: &Context) -> bool {
        let (direction, state, reason) = match a.event.kind {
            EventKind::ResetSent { state, reason } => (
                "sent",
                state.map(|s| s.name()),
                reason.map(|r| {
                    cx.reset_reason(r)
                        .map_or_else(|| r.to_string(), str::to_string)
                }),
            ),
            EventKind::ResetRecv => ("received", None, None),
            _ => return false,
        };
        match out.mode {
            Mode::Json => {
                let _ = write!(out.buf, "{{\"type\":\"reset\",");
                json_flow_fields(&mut out.buf, &cx.clock, a);
                let _ = write!(out.buf, "\"direction\":\"{direction}\",\"state\":");
                match state {
                    Some(s) => {
                        let _ = write!(out.buf, "\"{s}\",");
                    }
                    None => out.buf.extend_from_slice(b"null,"),
                }
                match &reason {
                    Some(r) => {
                        let _ = writeln!(out.buf, "\"reason\":\"{r}\"}}");
                    }
                    None => out.buf.extend_from_slice(b"\"reason\":null}\n"),
                }
            }
            Mode::Text => {
                text_flow_columns(&mut out.buf, &cx.clock, a);
                let _ = writeln!(
                    out.buf,
                    "{:<4} {:<12} {}",
                    if direction == "sent" { "out" } else { "in" },
                    state.unwrap_or("-"),
                    reason.as_deref().unwrap_or("-")
                );
            }
        }
        out.record_done();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::tests::{owner, tuple},
        event::{Event, TcpState},
        views::{testing::render, tests::context},
    };

    #[test]
    fn reasons_by_the_kernels_names() {
        let cx = context();
        let ev = |kind| Annotated {
            event: Event {
                ts_ns: 1,
                sock: 0,
                tuple: tuple(80, 5000),
                task: owner(0, "swapper/0"),
                kind,
            },
            owner: None,
            prev_state_ns: None,
        };
        let text = render(Mode::Json, |out| {
            assert!(Resets.on_event(
                &ev(EventKind::ResetSent {
                    state: None,
                    reason: Some(1)
                }),
                out,
                &cx
            ));
            assert!(Resets.on_event(
                &ev(EventKind::ResetSent {
                    state: Some(TcpState::Established),
                    reason: Some(99)
                }),
                out,
                &cx
            ));
            assert!(Resets.on_event(&ev(EventKind::ResetRecv), out, &cx));
        });
        let v: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            (v[0]["direction"].as_str(), v[0]["reason"].as_str()),
            (Some("sent"), Some("NO_SOCKET"))
        );
        assert!(v[0]["state"].is_null());
        assert_eq!(
            (v[1]["state"].as_str(), v[1]["reason"].as_str()),
            (Some("ESTABLISHED"), Some("99"))
        );
        assert_eq!(v[2]["direction"], "received");
    }
}
