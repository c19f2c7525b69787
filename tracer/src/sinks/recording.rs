//! The recording renderer: the input stream as `tcptrace replay` reads it
//! back ([`crate::record`]): a header made from the pipeline's start, then
//! events (JSON lines, or binary frames with `--binary`) and RTT
//! snapshots; lost counts are written by the output like any `lost` line.
//!
//! A recording is meant to leave the host, so it never holds a kernel
//! address: each socket is named by a keyed hash of its `struct sock`
//! address, with a random key per recording (the same socket has the same
//! name throughout one recording and no name can be turned back into an
//! address; 0, "no socket", stays 0).

use std::hash::{BuildHasher, RandomState};

use super::format::{Clock, ClockFmt};
use crate::{
    record::{CgroupLine, FORMAT, FORMAT_BINARY, Header, Line, RttLine, SeedsLine, Start, frame},
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

/// The line naming cgroup `id`.
pub fn cgroup(b: &mut Vec<u8>, id: u64, path: &str) {
    line(
        b,
        &Line::Cgroup(CgroupLine {
            id,
            path: path.to_owned(),
        }),
    );
}

fn line(b: &mut Vec<u8>, l: &Line) {
    // Serializing our own types into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *b, l);
    b.push(b'\n');
}

/// Writes records of the input stream with sockets renamed.
#[derive(Debug, Default)]
pub struct Recorder {
    /// SipHash with a random key: sockets' names in this recording.
    key: RandomState,
}

impl Recorder {
    /// The recording's name of a kernel socket.
    pub fn sock(&self, sock: u64) -> u64 {
        match sock {
            0 => 0,
            // Never 0, which means "no socket".
            s => self.key.hash_one(s).max(1),
        }
    }

    /// Appends one record of the input stream.
    pub fn render(&self, b: &mut Vec<u8>, _clock: &Clock, rec: &Rec<'_>, binary: bool) {
        match *rec {
            Rec::Event(ev) => {
                let mut ev = *ev;
                ev.sock = self.sock(ev.sock);
                if binary {
                    frame::encode(b, &ev);
                } else {
                    line(b, &Line::Event(ev));
                }
            }
            Rec::Rtt { ts_ns, sock, rtt } => {
                line(b, &Line::Rtt(RttLine::new(ts_ns, self.sock(sock), rtt)));
            }
            Rec::Seeds(s) => {
                for l in SeedsLine::split(s) {
                    line(b, &Line::Seeds(l));
                }
            }
            _ => {}
        }
    }
}
