//! The recording renderer: the input stream as `tcptrace replay` reads it
//! back ([`crate::record`]): a header made from the pipeline's start, then
//! events (JSON lines, or binary frames with `--binary`) and RTT
//! snapshots; lost counts are written by the output like any `lost` line.

use super::format::{Clock, ClockFmt};
use crate::{
    record::{FORMAT, FORMAT_BINARY, Header, Line, RttLine, Start, frame},
    views::records::Rec,
};

/// The header line of a recording that starts with `start`.
pub fn header(b: &mut Vec<u8>, start: &Start, binary: bool) {
    let h = Header {
        format: if binary { FORMAT_BINARY } else { FORMAT },
        tcptrace: env!("CARGO_PKG_VERSION").into(),
        kernel: start.kernel.clone(),
        hooks: start.hooks.clone(),
        connect_plan: start.connect_plan.clone(),
        start: start.clock.rfc3339(start.ts_ns),
        clock_offset_ns: start.clock.offset_ns() as i64,
        reset_reasons: start.reset_reasons.clone(),
    };
    line(b, &Line::Header(h));
}

fn line(b: &mut Vec<u8>, l: &Line) {
    // Serializing our own types into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *b, l);
    b.push(b'\n');
}

/// Appends one record of the input stream.
pub fn render(b: &mut Vec<u8>, _clock: &Clock, rec: &Rec<'_>, binary: bool) {
    match *rec {
        Rec::Event(ev) if binary => frame::encode(b, ev),
        Rec::Event(ev) => line(b, &Line::Event(*ev)),
        Rec::Rtt { ts_ns, sock, rtt } => line(b, &Line::Rtt(RttLine::new(ts_ns, sock, rtt))),
        _ => {}
    }
}
