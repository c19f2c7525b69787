//! Allocation-free writers for the per-event hot path: integers, IPv4
//! addresses, endpoints, times and padded columns, appended straight to an
//! output batch. `write!` with `{:>7}`-style padding costs several times
//! more per record (formatter machinery, temporary strings); at hundreds of
//! thousands of events a second that was most of tcptrace's CPU.

use std::{
    io::Write,
    net::{IpAddr, Ipv4Addr},
};

/// An integer in decimal.
#[inline]
pub fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n` as at least two digits (`07`); `n` < 100.
#[inline]
fn two(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&[b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]);
}

/// `n` as exactly `width` digits, zero-padded (`n` < 10^width).
#[inline]
fn zeros(out: &mut Vec<u8>, n: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    let mut n = n;
    for b in out[start..].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// A dotted-quad IPv4 address.
#[inline]
pub fn ipv4(out: &mut Vec<u8>, a: Ipv4Addr) {
    // Built on the stack and copied once: four tiny copies of itoa output
    // cost more than the digits.
    let mut b = [0u8; 15];
    let mut n = 0;
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            b[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            b[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            b[n] = b'0' + o / 10 % 10;
            n += 1;
        }
        b[n] = b'0' + o % 10;
        n += 1;
    }
    out.extend_from_slice(&b[..n]);
}

/// An address as `IpAddr`'s `Display` writes it.
#[inline]
pub fn ip(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(a) => ipv4(out, a),
        // Rare and not hot enough to hand-write the RFC 5952 rules.
        IpAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// `addr:port`, with brackets for IPv6.
#[inline]
pub fn endpoint(out: &mut Vec<u8>, a: IpAddr, port: u16) {
    match a {
        IpAddr::V4(a) => ipv4(out, a),
        IpAddr::V6(a) => {
            let _ = write!(out, "[{a}]");
        }
    }
    out.push(b':');
    int(out, port);
}

/// Pads what was written since `start` with spaces on the right to `width`
/// (a left-aligned column, `{:<width}`). Counts bytes: for ASCII text
/// (numbers, addresses, names of ours); see [`pad_right_chars`].
#[inline]
pub fn pad_right(out: &mut Vec<u8>, start: usize, width: usize) {
    let n = out.len() - start;
    if n < width {
        spaces(out, width - n);
    }
}

/// [`pad_right`] counting characters, for text from elsewhere (process
/// names) that may not be ASCII.
#[inline]
pub fn pad_right_chars(out: &mut Vec<u8>, start: usize, width: usize) {
    let n = out[start..].iter().filter(|&&b| b & 0xC0 != 0x80).count();
    if n < width {
        spaces(out, width - n);
    }
}

/// Pads what was written since `start` with spaces on the left to `width`
/// bytes (a right-aligned column of ASCII text, `{:>width}`).
#[inline]
pub fn pad_left(out: &mut Vec<u8>, start: usize, width: usize) {
    let end = out.len();
    let n = end - start;
    if n < width {
        let pad = width - n;
        spaces(out, pad);
        out.copy_within(start..end, start + pad);
        out[start..start + pad].fill(b' ');
    }
}

/// `n` spaces.
#[inline]
fn spaces(out: &mut Vec<u8>, n: usize) {
    const SPACES: [u8; 32] = [b' '; 32];
    match SPACES.get(..n) {
        Some(s) => out.extend_from_slice(s),
        None => out.resize(out.len() + n, b' '),
    }
}

/// `s` left-aligned in a column of `width` characters (`{:<width}`).
#[inline]
pub fn column(out: &mut Vec<u8>, s: &str, width: usize) {
    let at = out.len();
    out.extend_from_slice(s.as_bytes());
    pad_right(out, at, width);
}

/// Nanoseconds as milliseconds with three decimals (`{:.3}` of ms),
/// rounded to the nearest microsecond.
#[inline]
pub fn millis3(out: &mut Vec<u8>, ns: u64) {
    let us = ns.saturating_add(500) / 1000;
    int(out, us / 1000);
    out.push(b'.');
    zeros(out, us % 1000, 3);
}

/// `HH:MM:SS.uuuuuu` of wall-clock nanoseconds since the epoch, UTC.
#[inline]
pub fn time_of_day(out: &mut Vec<u8>, wall_ns: u64) {
    with_second(wall_ns, |p| out.extend_from_slice(&p[11..]));
    zeros(out, wall_ns / 1000 % 1_000_000, 6);
}

/// RFC 3339 with microseconds, UTC (`2026-11-22T12:30:01.123456Z`), of
/// wall-clock nanoseconds since the epoch.
#[inline]
pub fn rfc3339_micros(out: &mut Vec<u8>, wall_ns: u64) {
    with_second(wall_ns, |p| out.extend_from_slice(p));
    zeros(out, wall_ns / 1000 % 1_000_000, 6);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` of the second holding `wall_ns`.
type SecondPrefix = [u8; 20];

thread_local! {
    /// The last second formatted: events come in bursts within a second.
    static SECOND: std::cell::Cell<(u64, SecondPrefix)> =
        const { std::cell::Cell::new((u64::MAX, [0; 20])) };
}

/// Calls `f` with the prefix of `wall_ns`'s second, formatting it only when
/// the second changed since the last call on this thread.
#[inline]
fn with_second(wall_ns: u64, f: impl FnOnce(&SecondPrefix)) {
    let sec = wall_ns / 1_000_000_000;
    SECOND.with(|c| {
        let (cached, mut p) = c.get();
        if cached != sec {
            let mut v = Vec::with_capacity(20);
            let (y, m, d) = civil_from_days((sec / 86_400) as i64);
            zeros(&mut v, y.clamp(0, 9999) as u64, 4);
            v.push(b'-');
            two(&mut v, m);
            v.push(b'-');
            two(&mut v, d);
            v.push(b'T');
            let s = sec % 86_400;
            two(&mut v, s / 3600);
            v.push(b':');
            two(&mut v, s / 60 % 60);
            v.push(b':');
            two(&mut v, s % 60);
            v.push(b'.');
            p.copy_from_slice(&v);
            c.set((sec, p));
        }
        f(&p);
    });
}

/// Year, month, day of a day count since 1970-01-01 in the proleptic
/// Gregorian calendar (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A JSON string literal of `s`: copied as is when nothing needs escaping
/// (process names almost never do), else escaped by serde_json.
#[inline]
pub fn json_str(out: &mut Vec<u8>, s: &[u8]) {
    if s.iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    } else {
        // Serializing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(s));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = b"x".to_vec();
        f(&mut v);
        String::from_utf8(v).unwrap()[1..].to_string()
    }

    #[test]
    fn matches_the_standard_formatting() {
        for a in ["0.0.0.0", "127.0.0.1", "255.255.255.255", "10.20.3.44"] {
            let a: IpAddr = a.parse().unwrap();
            assert_eq!(s(|o| ip(o, a)), a.to_string());
            assert_eq!(s(|o| endpoint(o, a, 65535)), format!("{a}:65535"));
        }
        let v6: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(s(|o| endpoint(o, v6, 80)), "[fe80::1]:80");
        for ns in [0u64, 499, 500, 1_234_567, 999_999_999, 12_345_678_901_234] {
            let want = format!("{:.3}", (ns.saturating_add(500) / 1000) as f64 / 1e3);
            assert_eq!(s(|o| millis3(o, ns)), want, "{ns}");
        }
    }

    #[test]
    fn pads_columns_like_the_formatter() {
        assert_eq!(
            s(|o| {
                let at = o.len();
                o.extend_from_slice(b"42");
                pad_left(o, at, 7);
            }),
            format!("{:>7}", 42)
        );
        assert_eq!(
            s(|o| {
                let at = o.len();
                o.extend_from_slice("añb".as_bytes());
                pad_right_chars(o, at, 6);
            }),
            format!("{:<6}", "añb")
        );
        assert_eq!(
            s(|o| {
                let at = o.len();
                o.extend_from_slice(b"longer than five");
                pad_left(o, at, 5);
            }),
            "longer than five"
        );
    }

    #[test]
    fn times_agree_with_humantime_across_centuries() {
        // Leap days, year ends, the epoch, 2000 and 2100 (not leap).
        for secs in [
            0u64,
            951_782_400,   // 2000-02-29
            1_795_348_800, // 2026-11-22T12:00:00
            1_798_761_599, // 2026-12-31T23:59:59
            4_107_542_400, // 2100-03-01
            4_107_455_999, // 2100-02-28T23:59:59
        ] {
            for sub in [0u64, 1_000, 999_999_000] {
                let ns = secs * 1_000_000_000 + sub;
                let want = humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_nanos(ns))
                    .to_string();
                assert_eq!(s(|o| rfc3339_micros(o, ns)), want);
                assert_eq!(s(|o| time_of_day(o, ns)), want[11..26]);
            }
        }
    }

    #[test]
    fn json_strings_are_escaped_only_when_needed() {
        assert_eq!(s(|o| json_str(o, b"nginx")), "\"nginx\"");
        assert_eq!(s(|o| json_str(o, b"a\"b\\c")), r#""a\"b\\c""#);
        assert_eq!(s(|o| json_str(o, b"t\x01")), r#""t\u0001""#);
    }
}
