//! How text output shows time (`--time utc|local|relative`): the time
//! column of each line, its header, and the date line printed before the
//! first line of a new day, so that a log that crosses midnight is not
//! ambiguous. JSON always carries RFC 3339 UTC (`ts`), whatever `--time`.

use std::{cell::Cell, io::Write as _};

use super::put;
use crate::event::Clock;

/// Which clock the text time column shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeMode {
    /// Time of day, UTC (the default).
    #[default]
    Utc,
    /// Time of day in the local time zone (`TZ`, `/etc/localtime`).
    Local,
    /// Seconds since the start of the run (or of the recording's first
    /// record), with microseconds.
    Relative,
}

/// Width of the time column.
pub const TIME_WIDTH: usize = 15;

const NS: u64 = 1_000_000_000;
const DAY_NS: u64 = 86_400 * NS;

/// The time column of a text output: a [`Clock`] shown as `--time` asks.
#[derive(Clone, Debug)]
pub struct TextClock {
    clock: Clock,
    mode: TimeMode,
    /// Monotonic time that relative times count from (set by the start,
    /// or by the first time shown when the start does not know it).
    base_ns: Cell<Option<u64>>,
    /// The local zone's offset from UTC in seconds, for the hour it was
    /// last asked about: `(hour since the epoch, offset)`.
    local: Cell<(u64, i64)>,
    /// A fixed offset instead of the local zone's (tests).
    fixed_offset_s: Option<i64>,
}

impl Default for TextClock {
    fn default() -> Self {
        Self::new(Clock::default(), TimeMode::Utc, 0)
    }
}

impl TextClock {
    /// Times of `clock` shown in `mode`; relative times count from
    /// `start_ns` (0: from the first time shown).
    pub fn new(clock: Clock, mode: TimeMode, start_ns: u64) -> Self {
        Self {
            clock,
            mode,
            base_ns: Cell::new((start_ns != 0).then_some(start_ns)),
            local: Cell::new((u64::MAX, 0)),
            fixed_offset_s: None,
        }
    }

    /// Local time at a fixed offset from UTC (tests: the process's zone
    /// cannot be changed reliably once read).
    #[cfg(test)]
    pub fn with_offset_s(clock: Clock, offset_s: i64) -> Self {
        Self {
            fixed_offset_s: Some(offset_s),
            ..Self::new(clock, TimeMode::Local, 0)
        }
    }

    /// The column's header, aligned as its values are.
    pub fn header(&self) -> String {
        match self.mode {
            TimeMode::Utc => format!("{:<TIME_WIDTH$}", "TIME(UTC)"),
            TimeMode::Local => format!("{:<TIME_WIDTH$}", "TIME(LOCAL)"),
            TimeMode::Relative => format!("{:>TIME_WIDTH$}", "TIME(s)"),
        }
    }

    /// Appends the time column for monotonic `mono_ns`.
    pub fn put(&self, out: &mut Vec<u8>, mono_ns: u64) {
        match self.mode {
            TimeMode::Relative => {
                let base = *self.base_ns.get().get_or_insert(mono_ns);
                self.base_ns.set(Some(base));
                let d = mono_ns.saturating_sub(base);
                let _ = write!(
                    out,
                    "{:>w$}.{:06}",
                    d / NS,
                    d / 1000 % 1_000_000,
                    w = TIME_WIDTH - 7
                );
            }
            _ => put::time_of_day(out, self.shown_ns(mono_ns)),
        }
    }

    /// The time column as a string.
    pub fn time(&self, mono_ns: u64) -> String {
        let mut v = Vec::with_capacity(TIME_WIDTH);
        self.put(&mut v, mono_ns);
        String::from_utf8(v).unwrap_or_default()
    }

    /// The day (since the epoch, in the zone shown) of `mono_ns`; `None`
    /// for relative times, which need no date.
    pub fn day(&self, mono_ns: u64) -> Option<u64> {
        (self.mode != TimeMode::Relative).then(|| self.shown_ns(mono_ns) / DAY_NS)
    }

    /// Appends the line that says a new day began: `-- 2026-11-30 --`.
    pub fn put_date_line(&self, out: &mut Vec<u8>, mono_ns: u64) {
        out.extend_from_slice(b"-- ");
        let mut v = Vec::with_capacity(32);
        put::rfc3339_micros(&mut v, self.shown_ns(mono_ns));
        out.extend_from_slice(&v[..10]);
        out.extend_from_slice(b" --\n");
    }

    /// Wall-clock nanoseconds shifted into the zone shown.
    fn shown_ns(&self, mono_ns: u64) -> u64 {
        let wall = self.clock.wall_ns(mono_ns);
        if self.mode != TimeMode::Local {
            return wall;
        }
        let off = self.offset_s(wall / NS);
        (i128::from(wall) + i128::from(off) * i128::from(NS)).clamp(0, i128::from(u64::MAX)) as u64
    }

    /// The local zone's offset from UTC at `secs` since the epoch.
    fn offset_s(&self, secs: u64) -> i64 {
        if let Some(o) = self.fixed_offset_s {
            return o;
        }
        let hour = secs / 3600;
        let (cached, off) = self.local.get();
        if cached == hour {
            return off;
        }
        let t = secs as libc::time_t;
        // SAFETY: a zeroed `tm` is valid; both pointers are valid for the call.
        let off = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            if libc::localtime_r(&t, &mut tm).is_null() {
                0
            } else {
                tm.tm_gmtoff
            }
        };
        self.local.set((hour, off));
        off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Monotonic zero at 2026-11-29T23:59:59Z.
    fn clock() -> Clock {
        Clock::with_offset(1_795_996_799 * i128::from(NS))
    }

    #[test]
    fn utc_local_and_relative() {
        let utc = TextClock::new(clock(), TimeMode::Utc, 0);
        assert_eq!(utc.time(500_000_000), "23:59:59.500000");
        assert_eq!(utc.header(), "TIME(UTC)      ");
        let local = TextClock::with_offset_s(clock(), 3600);
        assert_eq!(local.time(500_000_000), "00:59:59.500000");
        assert_eq!(local.header().trim_end(), "TIME(LOCAL)");
        let rel = TextClock::new(clock(), TimeMode::Relative, 100);
        assert_eq!(rel.time(2_000_000_100), "       2.000000");
        assert_eq!(rel.time(12_345_678_100), "      12.345678");
        assert_eq!(rel.header(), "        TIME(s)");
        // Without a start, the first time shown is zero.
        let rel = TextClock::new(clock(), TimeMode::Relative, 0);
        assert_eq!(rel.time(5 * NS), "       0.000000");
        assert_eq!(rel.time(5 * NS + 1_000), "       0.000001");
        assert_eq!(rel.day(5 * NS), None);
    }

    #[test]
    fn days_change_at_midnight_in_the_zone_shown() {
        let utc = TextClock::new(clock(), TimeMode::Utc, 0);
        assert_ne!(utc.day(0), utc.day(2 * NS));
        let mut v = Vec::new();
        utc.put_date_line(&mut v, 2 * NS);
        assert_eq!(v, b"-- 2026-11-30 --\n");
        // An hour east of UTC, the day turned an hour earlier.
        let local = TextClock::with_offset_s(clock(), 3600);
        assert_eq!(local.day(0), local.day(2 * NS));
        let mut v = Vec::new();
        local.put_date_line(&mut v, 0);
        assert_eq!(v, b"-- 2026-11-30 --\n");
    }

    #[test]
    fn a_run_across_midnight_says_the_date() {
        use crate::{
            engine::tests::{owner, tuple},
            record::Start,
            sinks::{Mode, testing::capture},
            views::{Columns, Emit, Rec, records::FlowRef},
        };
        let (mut out, got) = capture(Mode::Text, None);
        out.start(
            &Start {
                clock: clock(),
                ts_ns: NS / 10,
                ..Start::default()
            },
            Columns::States,
        );
        let t = tuple(40000, 80);
        let o = owner(1, "x");
        for ts in [NS / 2, 3 * NS / 2, 2 * NS, 86_400 * NS + 2 * NS] {
            out.emit(&Rec::State {
                flow: FlowRef {
                    ts_ns: ts,
                    tuple: &t,
                    owner: Some(&o),
                },
                old: crate::event::TcpState::SynSent,
                new: crate::event::TcpState::Established,
                prev_state_ns: None,
            });
        }
        out.close().unwrap();
        let text = got.text();
        let lines: Vec<&str> = text.lines().map(|l| &l[..l.len().min(16)]).collect();
        assert_eq!(
            lines,
            [
                "TIME(UTC)       ",
                "23:59:59.500000 ",
                "-- 2026-11-30 --",
                "00:00:00.500000 ",
                "00:00:01.000000 ",
                "-- 2026-12-01 --",
                "00:00:01.000000 ",
            ],
            "{text}"
        );
    }

    #[test]
    fn the_local_zone_is_read() {
        // Whatever the zone, the offset is whole minutes within a day.
        let local = TextClock::new(clock(), TimeMode::Local, 0);
        let off = local.offset_s(1_795_996_799);
        assert!(off.abs() < 86_400 && off % 60 == 0, "{off}");
    }
}
