//! `tcptrace record`: every decoded event (and RTT snapshot) as a line of
//! the recording format ([`crate::record`]) or, with `--binary`, as a
//! binary frame; after a header.

use super::{Context, View};
use crate::{
    engine::{Annotated, flows::Rtt},
    hooks::{Report, Wants},
    record::{FORMAT, FORMAT_BINARY, Header, Line, RttLine, frame},
    sinks::Output,
};

pub struct Record {
    pub wants: Wants,
    /// Events as binary frames (format 2).
    pub binary: bool,
}

impl Record {
    /// The header for a recording made with `report` now.
    pub fn header(&self, report: &Report, cx: &Context, now_ns: u64) -> Header {
        Header {
            format: if self.binary { FORMAT_BINARY } else { FORMAT },
            tcptrace: env!("CARGO_PKG_VERSION").into(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            hooks: report
                .hooks
                .iter()
                .filter(|h| h.result.is_ok())
                .map(|h| h.hook.clone())
                .collect(),
            connect_plan: report.connect.map(|c| c.name().to_string()),
            start: cx.clock.rfc3339(now_ns).to_string(),
            clock_offset_ns: cx.clock.offset_ns() as i64,
            reset_reasons: report.reset_reasons.clone(),
        }
    }

    fn line(out: &mut Output, line: &Line) {
        // Serializing our own types into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out.buf, line);
        out.buf.push(b'\n');
    }
}

impl View for Record {
    fn engine_config(&self) -> crate::engine::Config {
        crate::engine::Config::streaming()
    }

    fn wants(&self) -> Wants {
        self.wants
    }

    fn start(&mut self, report: &Report, cx: &Context, out: &mut Output) {
        let h = self.header(report, cx, crate::sinks::format::Clock::monotonic_now());
        Self::line(out, &Line::Header(h));
        out.flush_blocking();
    }

    fn on_event(&mut self, a: &Annotated, out: &mut Output, _cx: &Context) -> bool {
        if self.binary {
            frame::encode(&mut out.buf, &a.event);
        } else {
            Self::line(out, &Line::Event(a.event));
        }
        out.record_done();
        true
    }

    fn on_rtt(&mut self, sock: u64, now_ns: u64, rtt: &Rtt, out: &mut Output) {
        Self::line(out, &Line::Rtt(RttLine::new(now_ns, sock, rtt)));
    }
}
