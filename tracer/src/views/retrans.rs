//! `tcptrace retrans`: one record per retransmitted segment (data, SYN,
//! SYN-ACK), with the owning process, the flow and the TCP state.

use std::io::Write;

use super::View;
use crate::{
    engine::Annotated,
    event::EventKind,
    sinks::{
        Mode, Output,
        format::{Clock, TEXT_FLOW_HEADER, json_flow_fields, text_flow_columns},
    },
};

#[derive(Debug, Default)]
pub struct Retrans;

impl View for Retrans {
    fn text_header(&self) -> Option<String> {
        Some(format!(
            "{TEXT_FLOW_HEADER}{:<12} {:<6} SEGS",
            "STATE", "KIND"
        ))
    }

    fn on_event(&mut self, a: &Annotated, out: &mut Output, clock: &Clock) -> bool {
        let EventKind::Retrans { state, kind, segs } = a.event.kind else {
            return false;
        };
        match out.mode {
            Mode::Json => {
                out.buf.extend_from_slice(b"{\"type\":\"retrans\",");
                json_flow_fields(&mut out.buf, clock, a);
                let _ = write!(
                    out.buf,
                    "\"state\":\"{}\",\"kind\":\"{}\",\"segs\":",
                    state.name(),
                    kind.name()
                );
                match segs {
                    Some(n) => {
                        let _ = writeln!(out.buf, "{n}}}");
                    }
                    None => out.buf.extend_from_slice(b"null}\n"),
                }
            }
            Mode::Text => {
                text_flow_columns(&mut out.buf, clock, a);
                let segs = segs.map_or_else(|| "-".to_string(), |n| n.to_string());
                let _ = writeln!(out.buf, "{:<12} {:<6} {segs}", state.name(), kind.name());
            }
        }
        out.record_done();
        true
    }
}
