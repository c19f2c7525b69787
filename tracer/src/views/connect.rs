//! `tcptrace connect`: one record per connection attempt: owner,
//! destination, and the handshake latency or the error.

use std::io::Write;

use super::{Context, View};
use crate::{
    engine::flows::ConnectOutcome,
    hooks::Wants,
    sinks::{
        Mode, Output,
        format::{TEXT_FLOW_HEADER, errno_name, json_flow, text_flow},
    },
};

#[derive(Debug, Default)]
pub struct Connect {
    /// Only successful attempts at least this slow (failures always show).
    pub min_ns: u64,
}

impl View for Connect {
    fn engine_config(&self) -> crate::engine::Config {
        crate::engine::Config::streaming()
    }

    fn wants(&self) -> Wants {
        Wants::FLOWS
    }

    fn text_header(&self) -> Option<String> {
        Some(format!("{TEXT_FLOW_HEADER}LAT(ms)/ERROR"))
    }

    fn on_connect(&mut self, o: &ConnectOutcome, out: &mut Output, cx: &Context) -> bool {
        if o.latency_ns.is_some_and(|l| l < self.min_ns) {
            return false;
        }
        let error = o
            .failed()
            .then(|| o.errno.map_or_else(|| "unknown".to_string(), errno_name));
        match out.mode {
            Mode::Json => {
                out.buf.extend_from_slice(b"{\"type\":\"connect\",");
                json_flow(&mut out.buf, &cx.clock, o.ts_ns, &o.tuple, o.owner.as_ref());
                match o.latency_ns {
                    Some(l) => {
                        let _ = write!(out.buf, "\"latency_us\":{},", l / 1000);
                    }
                    None => out.buf.extend_from_slice(b"\"latency_us\":null,"),
                }
                match &error {
                    Some(e) => {
                        let _ = writeln!(out.buf, "\"error\":\"{e}\"}}");
                    }
                    None => out.buf.extend_from_slice(b"\"error\":null}\n"),
                }
            }
            Mode::Text => {
                text_flow(&mut out.buf, &cx.clock, o.ts_ns, &o.tuple, o.owner.as_ref());
                match (o.latency_ns, &error) {
                    (Some(l), _) => {
                        let _ = writeln!(out.buf, "{:.3}", l as f64 / 1e6);
                    }
                    (None, Some(e)) => {
                        let _ = writeln!(out.buf, "{e}");
                    }
                    (None, None) => out.buf.push(b'\n'),
                }
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
        views::{testing::render, tests::context},
    };

    fn outcome(latency_ns: Option<u64>, errno: Option<i32>) -> ConnectOutcome {
        ConnectOutcome {
            ts_ns: 1_000,
            sock: 1,
            tuple: tuple(40000, 80),
            owner: Some(owner(7, "curl")),
            latency_ns,
            errno,
        }
    }

    #[test]
    fn json_success_and_failure() {
        let cx = context();
        let text = render(Mode::Json, |out| {
            let mut v = Connect::default();
            assert!(v.on_connect(&outcome(Some(1_500_000), None), out, &cx));
            assert!(v.on_connect(&outcome(None, Some(111)), out, &cx));
        });
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["type"], "connect");
        assert_eq!(lines[0]["latency_us"], 1500);
        assert!(lines[0]["error"].is_null());
        assert!(lines[1]["latency_us"].is_null());
        assert_eq!(lines[1]["error"], "ECONNREFUSED");
        assert_eq!(lines[1]["pid"], 7);
    }

    #[test]
    fn min_ms_hides_fast_successes_only() {
        let cx = context();
        let mut v = Connect { min_ns: 2_000_000 };
        render(Mode::Text, |out| {
            assert!(!v.on_connect(&outcome(Some(1_000_000), None), out, &cx));
            assert!(v.on_connect(&outcome(Some(3_000_000), None), out, &cx));
            assert!(v.on_connect(&outcome(None, Some(110)), out, &cx));
        });
    }
}
