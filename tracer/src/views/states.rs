//! `tcptrace states`: one record per TCP state transition, with the time
//! the socket spent in the state it left.

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
pub struct States;

impl View for States {
    fn engine_config(&self) -> crate::engine::Config {
        crate::engine::Config::streaming()
    }

    fn wants(&self) -> Wants {
        Wants::default()
    }

    fn text_header(&self) -> Option<String> {
        Some(format!(
            "{TEXT_FLOW_HEADER}{:>11}    {:<11} {:>10}",
            "OLD", "NEW", "PREV_MS"
        ))
    }

    fn on_event(&mut self, a: &Annotated, out: &mut Output, cx: &Context) -> bool {
        let clock = &cx.clock;
        let EventKind::State { old, new } = a.event.kind else {
            return false;
        };
        match out.mode {
            Mode::Json => {
                out.buf.extend_from_slice(b"{\"type\":\"state\",");
                json_flow_fields(&mut out.buf, clock, a);
                let b = &mut out.buf;
                b.extend_from_slice(b"\"old\":\"");
                b.extend_from_slice(old.name().as_bytes());
                b.extend_from_slice(b"\",\"new\":\"");
                b.extend_from_slice(new.name().as_bytes());
                b.extend_from_slice(b"\",\"prev_state_us\":");
                match a.prev_state_ns {
                    Some(ns) => put::int(b, ns / 1000),
                    None => b.extend_from_slice(b"null"),
                }
                b.extend_from_slice(b"}\n");
            }
            Mode::Text => {
                let b = &mut out.buf;
                text_flow_columns(b, clock, a);
                let at = b.len();
                b.extend_from_slice(old.name().as_bytes());
                put::pad_left(b, at, 11);
                b.extend_from_slice(b" -> ");
                let at = b.len();
                b.extend_from_slice(new.name().as_bytes());
                put::pad_right(b, at, 11);
                b.push(b' ');
                let at = b.len();
                match a.prev_state_ns {
                    Some(ns) => put::millis3(b, ns),
                    None => b.push(b'-'),
                }
                put::pad_left(b, at, 10);
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
        engine::tests::{owner, state, tuple},
        event::TcpState::*,
        sinks::Mode,
    };

    fn render(mode: Mode, a: &Annotated) -> String {
        let cx = crate::views::tests::context();
        crate::views::testing::render(mode, |out| {
            assert!(States.on_event(a, out, &cx));
        })
    }

    #[test]
    fn json_schema_of_a_transition() {
        let a = Annotated {
            event: state(
                2_000_000_000,
                1,
                tuple(40000, 80),
                owner(5, "x"),
                SynSent,
                Established,
            ),
            owner: Some(owner(42, "curl")),
            prev_state_ns: Some(1_500_000),
        };
        let line = render(Mode::Json, &a);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "type",
            "ts",
            "pid",
            "comm",
            "family",
            "laddr",
            "lport",
            "raddr",
            "rport",
            "old",
            "new",
            "prev_state_us",
        ];
        want.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, want);
        assert_eq!(v["type"], "state");
        assert_eq!(v["ts"], "2026-11-22T12:00:02.000000Z");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["comm"], "curl");
        assert_eq!(v["family"], "ipv4");
        assert_eq!(v["laddr"], "127.0.0.1");
        assert_eq!(v["lport"], 40000);
        assert_eq!(v["rport"], 80);
        assert_eq!(v["old"], "SYN_SENT");
        assert_eq!(v["new"], "ESTABLISHED");
        assert_eq!(v["prev_state_us"], 1500);
    }

    #[test]
    fn unknown_owner_and_duration_are_null_and_dash() {
        let a = Annotated {
            event: state(1, 1, tuple(1, 2), owner(5, "x"), Close, SynSent),
            owner: None,
            prev_state_ns: None,
        };
        let v: serde_json::Value = serde_json::from_str(&render(Mode::Json, &a)).unwrap();
        assert!(v["pid"].is_null() && v["comm"].is_null() && v["prev_state_us"].is_null());
        let text = render(Mode::Text, &a);
        assert!(text.contains("CLOSE -> SYN_SENT"), "{text}");
        assert!(text.trim_end().ends_with('-'), "{text}");
    }
}
