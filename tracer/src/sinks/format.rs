//! Formatting pieces shared by the views: timestamps, addresses, JSON
//! strings, and the `lost` record.

use std::{
    io::Write,
    net::IpAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::put;
use crate::{
    engine::Annotated,
    event::{Family, Owner, Tuple},
};

/// Converts kernel CLOCK_MONOTONIC timestamps to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall-clock nanoseconds since the epoch at monotonic zero.
    offset_ns: i128,
}

impl Clock {
    /// Reads both clocks now.
    pub fn now() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let mono = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        Self {
            offset_ns: wall - mono,
        }
    }

    /// A clock whose monotonic zero is the epoch plus `offset_ns` (replay, tests).
    pub fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Wall-clock nanoseconds at monotonic zero.
    pub fn offset_ns(&self) -> i128 {
        self.offset_ns
    }

    /// Current CLOCK_MONOTONIC in nanoseconds.
    pub fn monotonic_now() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    pub fn wall(&self, mono_ns: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.wall_ns(mono_ns))
    }

    /// Wall-clock nanoseconds since the epoch.
    pub fn wall_ns(&self, mono_ns: u64) -> u64 {
        (mono_ns as i128 + self.offset_ns).clamp(0, u64::MAX as i128) as u64
    }

    /// Appends RFC 3339 with microseconds, UTC: `2026-11-22T12:30:01.123456Z`.
    pub fn put_rfc3339(&self, out: &mut Vec<u8>, mono_ns: u64) {
        put::rfc3339_micros(out, self.wall_ns(mono_ns));
    }

    /// Appends `HH:MM:SS.uuuuuu` UTC, for text output.
    pub fn put_time_of_day(&self, out: &mut Vec<u8>, mono_ns: u64) {
        put::time_of_day(out, self.wall_ns(mono_ns));
    }

    /// [`Self::put_rfc3339`] as a string.
    pub fn rfc3339(&self, mono_ns: u64) -> String {
        to_string(|o| self.put_rfc3339(o, mono_ns))
    }

    /// [`Self::put_time_of_day`] as a string.
    pub fn time_of_day(&self, mono_ns: u64) -> String {
        to_string(|o| self.put_time_of_day(o, mono_ns))
    }
}

/// What `f` appends, as a string (for output that is not per event).
fn to_string(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut v = Vec::with_capacity(32);
    f(&mut v);
    String::from_utf8(v).unwrap_or_default()
}

/// `addr:port`, with brackets for IPv6.
pub fn endpoint(addr: IpAddr, port: u16) -> String {
    to_string(|o| put::endpoint(o, addr, port))
}

/// `4` or `6`, for text output.
pub fn ip_version(f: Family) -> char {
    match f {
        Family::V4 => '4',
        Family::V6 => '6',
    }
}

/// A JSON string literal.
pub fn json_str(out: &mut Vec<u8>, s: &str) {
    put::json_str(out, s.as_bytes());
}

/// The fields every per-flow JSON record shares, from `"ts"` to `"rport"`,
/// each followed by a comma: `"ts":..,"pid":..,"comm":..,"family":..,
/// "laddr":..,"lport":..,"raddr":..,"rport":..,`.
pub fn json_flow(out: &mut Vec<u8>, clock: &Clock, ts_ns: u64, t: &Tuple, owner: Option<&Owner>) {
    out.extend_from_slice(b"\"ts\":\"");
    clock.put_rfc3339(out, ts_ns);
    out.extend_from_slice(b"\",");
    json_owner(out, owner);
    out.extend_from_slice(b",\"family\":\"");
    out.extend_from_slice(t.family.name().as_bytes());
    out.extend_from_slice(b"\",\"laddr\":\"");
    put::ip(out, t.laddr);
    out.extend_from_slice(b"\",\"lport\":");
    put::int(out, t.lport);
    out.extend_from_slice(b",\"raddr\":\"");
    put::ip(out, t.raddr);
    out.extend_from_slice(b"\",\"rport\":");
    put::int(out, t.rport);
    out.push(b',');
}

/// `"pid":..,"comm":..` (nulls when unknown), without a trailing comma.
pub fn json_owner(out: &mut Vec<u8>, owner: Option<&Owner>) {
    match owner {
        Some(o) => {
            out.extend_from_slice(b"\"pid\":");
            put::int(out, o.pid);
            out.extend_from_slice(b",\"comm\":");
            put::json_str(out, o.comm.bytes());
        }
        None => out.extend_from_slice(b"\"pid\":null,\"comm\":null"),
    }
}

/// [`json_flow`] for an annotated event.
pub fn json_flow_fields(out: &mut Vec<u8>, clock: &Clock, a: &Annotated) {
    json_flow(out, clock, a.event.ts_ns, &a.event.tuple, a.owner.as_ref());
}

/// The time, owner and flow columns of a text line.
pub fn text_flow(out: &mut Vec<u8>, clock: &Clock, ts_ns: u64, t: &Tuple, owner: Option<&Owner>) {
    clock.put_time_of_day(out, ts_ns);
    out.push(b' ');
    let at = out.len();
    match owner {
        Some(o) => put::int(out, o.pid),
        None => out.push(b'-'),
    }
    put::pad_left(out, at, 7);
    out.push(b' ');
    let at = out.len();
    match owner {
        Some(o) => match std::str::from_utf8(o.comm.bytes()) {
            Ok(s) => out.extend_from_slice(s.as_bytes()),
            Err(_) => out.extend_from_slice(o.comm.as_str().as_bytes()),
        },
        None => out.push(b'-'),
    }
    put::pad_right_chars(out, at, 15);
    out.push(b' ');
    out.push(ip_version(t.family) as u8);
    out.push(b' ');
    for (addr, port) in [(t.laddr, t.lport), (t.raddr, t.rport)] {
        let at = out.len();
        put::endpoint(out, addr, port);
        put::pad_right(out, at, 23);
        out.push(b' ');
    }
}

/// [`text_flow`] for an annotated event.
pub fn text_flow_columns(out: &mut Vec<u8>, clock: &Clock, a: &Annotated) {
    text_flow(out, clock, a.event.ts_ns, &a.event.tuple, a.owner.as_ref());
}

/// The header matching [`text_flow_columns`].
pub const TEXT_FLOW_HEADER: &str =
    "TIME(UTC)           PID COMM            IP LOCAL                   REMOTE                  ";

/// The kernel's name of an errno (`ECONNREFUSED`), or `errno N`.
pub fn errno_name(n: i32) -> String {
    let e = nix::errno::Errno::from_raw(n);
    if e == nix::errno::Errno::UnknownErrno {
        format!("errno {n}")
    } else {
        format!("{e:?}")
    }
}

/// `{"type":"lost","ts":..,"count":N,"source":..}` and a newline.
pub fn lost_json(out: &mut Vec<u8>, clock: &Clock, now_ns: u64, count: u64, source: &str) {
    out.extend_from_slice(b"{\"type\":\"lost\",\"ts\":\"");
    clock.put_rfc3339(out, now_ns);
    let _ = writeln!(out, "\",\"count\":{count},\"source\":\"{source}\"}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_endpoints_and_times() {
        assert_eq!(endpoint("10.0.0.1".parse().unwrap(), 80), "10.0.0.1:80");
        assert_eq!(endpoint("::1".parse().unwrap(), 443), "[::1]:443");
        // Monotonic 1 s after an epoch offset of 2026-11-22T12:00:00Z.
        let c = Clock::with_offset(1_795_348_800_000_000_000);
        assert_eq!(
            c.rfc3339(1_000_001_000).to_string(),
            "2026-11-22T12:00:01.000001Z"
        );
        assert_eq!(c.time_of_day(1_000_001_000), "12:00:01.000001");
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(111), "ECONNREFUSED");
        assert_eq!(errno_name(99), "EADDRNOTAVAIL");
        assert_eq!(errno_name(110), "ETIMEDOUT");
        assert_eq!(errno_name(100_000), "errno 100000");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut v = Vec::new();
        json_str(&mut v, "a\"b\\c");
        assert_eq!(String::from_utf8(v).unwrap(), r#""a\"b\\c""#);
    }
}
