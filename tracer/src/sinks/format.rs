//! Formatting pieces shared by the renderers: timestamps, addresses, the
//! flow columns, JSON strings, and the `lost` record.

use std::{io::Write, net::IpAddr};

use super::{put, time::TextClock};
pub use crate::event::Clock;
use crate::{
    cgroups::Names,
    event::{Family, Owner, Tuple},
};

/// Wall-clock formatting of a [`Clock`]'s times.
pub trait ClockFmt {
    /// Appends RFC 3339 with microseconds, UTC: `2026-11-22T12:30:01.123456Z`.
    fn put_rfc3339(&self, out: &mut Vec<u8>, mono_ns: u64);
    /// Appends `HH:MM:SS.uuuuuu` UTC, for text output.
    fn put_time_of_day(&self, out: &mut Vec<u8>, mono_ns: u64);
    /// [`Self::put_rfc3339`] as a string.
    fn rfc3339(&self, mono_ns: u64) -> String {
        to_string(|o| self.put_rfc3339(o, mono_ns))
    }
    /// [`Self::put_time_of_day`] as a string.
    fn time_of_day(&self, mono_ns: u64) -> String {
        to_string(|o| self.put_time_of_day(o, mono_ns))
    }
}

impl ClockFmt for Clock {
    fn put_rfc3339(&self, out: &mut Vec<u8>, mono_ns: u64) {
        put::rfc3339_micros(out, self.wall_ns(mono_ns));
    }

    fn put_time_of_day(&self, out: &mut Vec<u8>, mono_ns: u64) {
        put::time_of_day(out, self.wall_ns(mono_ns));
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

/// The fields every per-flow JSON record shares, from `"ts"` to `"netns"`,
/// each followed by a comma: `"ts":..,"pid":..,"comm":..,"family":..,
/// "laddr":..,"lport":..,"raddr":..,"rport":..,"netns":..,`.
pub fn json_flow(
    out: &mut Vec<u8>,
    clock: &Clock,
    cg: &Names,
    ts_ns: u64,
    t: &Tuple,
    owner: Option<&Owner>,
) {
    let t = &t.unmapped();
    out.extend_from_slice(b"\"ts\":\"");
    clock.put_rfc3339(out, ts_ns);
    out.extend_from_slice(b"\",");
    json_owner(out, cg, owner);
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
    out.extend_from_slice(b",\"netns\":");
    put::int(out, t.netns);
    out.push(b',');
}

/// `"pid":..,"comm":..,"cgroup":..` (nulls when unknown), then
/// `"container"` and `"unit"` when the cgroup's path names them, without
/// a trailing comma. `cg` names the owner's cgroup.
pub fn json_owner(out: &mut Vec<u8>, cg: &Names, owner: Option<&Owner>) {
    match owner {
        Some(o) => {
            out.extend_from_slice(b"\"pid\":");
            put::int(out, o.pid);
            out.extend_from_slice(b",\"comm\":");
            put::json_str(out, o.comm.bytes());
            out.extend_from_slice(b",\"cgroup\":");
            match cg.get(&o.cgroup.get()) {
                Some(c) => {
                    put::json_str(out, c.path.as_bytes());
                    for (key, v) in [("container", &c.container), ("unit", &c.unit)] {
                        if let Some(v) = v {
                            let _ = write!(out, ",\"{key}\":");
                            put::json_str(out, v.as_bytes());
                        }
                    }
                }
                None => out.extend_from_slice(b"null"),
            }
        }
        None => out.extend_from_slice(b"\"pid\":null,\"comm\":null,\"cgroup\":null"),
    }
}

/// Widths of the flow columns of text output, for headers and rows alike
/// (each column is followed by one space).
pub mod width {
    pub const PID: usize = 7;
    pub const COMM: usize = 15;
    /// `4` or `6` and a space: the header says `IP`.
    pub const IP: usize = 2;
    /// `addr:port`, an IPv4 one at most (IPv6 ones push what follows).
    pub const ADDR: usize = 23;
    pub const NETNS: usize = 10;
}

/// The time, owner and flow columns of a text line, and the namespace
/// column with `netns` (see [`text_netns_header`]).
pub fn text_flow(
    out: &mut Vec<u8>,
    clock: &TextClock,
    ts_ns: u64,
    t: &Tuple,
    owner: Option<&Owner>,
    netns: bool,
) {
    clock.put(out, ts_ns);
    out.push(b' ');
    text_owner(out, owner);
    let t = t.unmapped();
    let at = out.len();
    out.push(ip_version(t.family) as u8);
    put::pad_right(out, at, width::IP);
    out.push(b' ');
    for (addr, port) in [(t.laddr, t.lport), (t.raddr, t.rport)] {
        let at = out.len();
        put::endpoint(out, addr, port);
        put::pad_right(out, at, width::ADDR);
        out.push(b' ');
    }
    if netns {
        put_netns(out, t.netns);
        out.push(b' ');
    }
}

/// The PID and COMM columns (`-` when the owner is unknown), each
/// followed by a space.
pub fn text_owner(out: &mut Vec<u8>, owner: Option<&Owner>) {
    let at = out.len();
    match owner {
        Some(o) => put::int(out, o.pid),
        None => out.push(b'-'),
    }
    put::pad_left(out, at, width::PID);
    out.push(b' ');
    let at = out.len();
    match owner {
        Some(o) => super::escape::text(out, o.comm.bytes(), 16),
        None => out.push(b'-'),
    }
    put::pad_right_chars(out, at, width::COMM);
    out.push(b' ');
}

/// A namespace's inode in its column, `-` when unknown.
pub fn put_netns(out: &mut Vec<u8>, netns: u32) {
    let at = out.len();
    match netns {
        0 => out.push(b'-'),
        n => put::int(out, n),
    }
    put::pad_right(out, at, width::NETNS);
}

/// The column that follows the flow columns once records from more
/// than one network namespace have been shown (the output prints the
/// header again with it at that point, and every later line has it).
pub fn text_netns_header() -> String {
    format!("{:<w$} ", "NETNS", w = width::NETNS)
}

/// The header of the owner and flow columns, without the time: `PID COMM
/// IP LOCAL REMOTE `, as [`text_owner`] and [`text_flow`] fill them.
pub fn text_owner_flow_header() -> String {
    use width::*;
    format!(
        "{:>PID$} {:<COMM$} {:<IP$} {:<ADDR$} {:<ADDR$} ",
        "PID", "COMM", "IP", "LOCAL", "REMOTE"
    )
}

/// The header matching [`text_flow`], with the time column `clock` shows.
pub fn text_flow_header(clock: &TextClock) -> String {
    format!("{} {}", clock.header(), text_owner_flow_header())
}

pub use crate::event::errno_name;

/// `{"type":"lost","ts":..,"count":N,"source":..}` and a newline.
pub fn lost_json(out: &mut Vec<u8>, clock: &Clock, now_ns: u64, count: u64, source: &str) {
    out.extend_from_slice(b"{\"type\":\"lost\",\"ts\":\"");
    clock.put_rfc3339(out, now_ns);
    let _ = write!(out, "\",\"count\":{count},\"source\":");
    put::json_str(out, source.as_bytes());
    out.extend_from_slice(b"}\n");
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
