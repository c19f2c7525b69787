//! `tcptrace retrans`: one record per retransmitted segment (data, SYN,
//! SYN-ACK), with the owning process, the flow and the TCP state.

use super::{Context, View};
use crate::{
    engine::Annotated,
    event::EventKind,
    hooks::Wants,
    sinks::{
        Mode, Output,
        format::{TEXT_FLOW_HEADER, json_flow_fields, text_flow_columns},
        put,
    },
};

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

    fn text_header(&self) -> Option<String> {
        Some(format!(
            "{TEXT_FLOW_HEADER}{:<12} {:<6} SEGS",
            "STATE", "KIND"
        ))
    }

    fn on_event(&mut self, a: &Annotated, out: &mut Output, cx: &Context) -> bool {
        let clock = &cx.clock;
        let EventKind::Retrans { state, kind, segs } = a.event.kind else {
            return false;
        };
        match out.mode {
            Mode::Json => {
                out.buf.extend_from_slice(b"{\"type\":\"retrans\",");
                json_flow_fields(&mut out.buf, clock, a);
                let b = &mut out.buf;
                b.extend_from_slice(b"\"state\":\"");
                b.extend_from_slice(state.name().as_bytes());
                b.extend_from_slice(b"\",\"kind\":\"");
                b.extend_from_slice(kind.name().as_bytes());
                b.extend_from_slice(b"\",\"segs\":");
                match segs {
                    Some(n) => put::int(b, n),
                    None => b.extend_from_slice(b"null"),
                }
                b.extend_from_slice(b"}\n");
            }
            Mode::Text => {
                let b = &mut out.buf;
                text_flow_columns(b, clock, a);
                put::column(b, state.name(), 12);
                b.push(b' ');
                put::column(b, kind.name(), 6);
                b.push(b' ');
                match segs {
                    Some(n) => put::int(b, n),
                    None => b.push(b'-'),
                }
                b.push(b'\n');
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
        engine::tests::{owner, retrans, tuple},
        event::{RetransKind, TcpState},
        views::testing::render,
    };

    #[test]
    fn json_schema_of_a_retransmit() {
        let a = Annotated {
            event: retrans(
                1,
                1,
                tuple(40000, 443),
                owner(0, "swapper/0"),
                TcpState::SynSent,
                RetransKind::Syn,
            ),
            owner: Some(owner(42, "curl")),
            prev_state_ns: None,
        };
        let cx = crate::views::tests::context();
        let line = render(Mode::Json, |out| {
            assert!(Retrans.on_event(&a, out, &cx));
        });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "comm", "family", "kind", "laddr", "lport", "pid", "raddr", "rport", "segs",
                "state", "ts", "type"
            ]
        );
        assert_eq!(
            (v["type"].as_str(), v["kind"].as_str(), v["state"].as_str()),
            (Some("retrans"), Some("syn"), Some("SYN_SENT"))
        );
        assert_eq!((v["pid"].as_u64(), v["segs"].as_u64()), (Some(42), Some(1)));
    }
}
