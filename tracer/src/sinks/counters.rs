//! Rendering of what the kernel's counters say: `tcptrace stat`'s
//! intervals (text: two sar-like lines of per-second rates under a header
//! repeated every [`HEADER_EVERY`] intervals; JSON: one record with each
//! counter's growth under its kernel name in snake case), the rates line
//! of `top`, and the summary at the end of `retrans`.

use std::io::Write;

use super::{
    format::{Clock, ClockFmt},
    time::TextClock,
};
use crate::{
    counters::{Counter, rates::Rates},
    views::records::{RetransSummary, StatReport},
};

/// The text header comes again after this many intervals, as in `sar`.
pub const HEADER_EVERY: u64 = 20;

/// A rate or count in at most 6 characters: one decimal under 100,
/// whole numbers up to 999999, then k and M; `-` when unknown.
fn num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x < 100.0 => format!("{x:.1}"),
        Some(x) if x < 999_999.5 => format!("{x:.0}"),
        Some(x) if x < 99_999_500.0 => format!("{:.0}k", x / 1e3),
        Some(x) => format!("{:.0}M", x / 1e6),
    }
}

/// A percentage with two decimals, `-` when unknown.
fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |p| format!("{p:.2}"))
}

/// The first text line's counters (per second), after TIME.
const LINE1: [(&str, Counter); 7] = [
    ("actv/s", Counter::ActiveOpens),
    ("pasv/s", Counter::PassiveOpens),
    ("fail/s", Counter::AttemptFails),
    ("estr/s", Counter::EstabResets),
    ("iseg/s", Counter::InSegs),
    ("oseg/s", Counter::OutSegs),
    ("retr/s", Counter::RetransSegs),
];
/// The first line ends with `retr%`, then these.
const LINE1_END: [(&str, Counter); 2] = [("ierr/s", Counter::InErrs), ("orst/s", Counter::OutRsts)];
/// The second line's counters (per second), then `estab tw orphan`.
const LINE2: [(&str, Counter); 7] = [
    ("rto/s", Counter::TcpTimeouts),
    ("fast/s", Counter::TcpFastRetrans),
    ("sstr/s", Counter::TcpSlowStartRetrans),
    ("tlp/s", Counter::TcpLossProbes),
    ("syn/s", Counter::TcpSynRetrans),
    ("ovfl/s", Counter::ListenOverflows),
    ("drop/s", Counter::ListenDrops),
];

/// One interval of `stat` as two text lines (78 columns), with the header
/// first when it is due.
pub fn stat_text(b: &mut Vec<u8>, clock: &TextClock, s: &StatReport) {
    if s.seq.is_multiple_of(HEADER_EVERY) {
        if s.seq > 0 {
            b.push(b'\n');
        }
        let _ = write!(b, "{:<8}", "TIME");
        for (h, _) in LINE1 {
            let _ = write!(b, " {h:>6}");
        }
        let _ = write!(b, " {:>6}", "retr%");
        for (h, _) in LINE1_END {
            let _ = write!(b, " {h:>6}");
        }
        let _ = write!(b, "\n{:<8}", "");
        for (h, _) in LINE2 {
            let _ = write!(b, " {h:>6}");
        }
        let _ = writeln!(b, " {:>6} {:>6} {:>6}", "estab", "tw", "orphan");
    }
    let r = &s.rates;
    // HH:MM:SS of the interval's end (in the zone `--time` asks for).
    let t = clock.time(r.ts_ns);
    let t = t.trim_start();
    let _ = write!(b, "{:<8}", t.get(..8).unwrap_or(t));
    for (_, c) in LINE1 {
        let _ = write!(b, " {:>6}", num(r.per_s(c)));
    }
    let _ = write!(b, " {:>6}", pct(r.retrans_rate_pct()));
    for (_, c) in LINE1_END {
        let _ = write!(b, " {:>6}", num(r.per_s(c)));
    }
    let _ = write!(b, "\n{:<8}", "");
    for (_, c) in LINE2 {
        let _ = write!(b, " {:>6}", num(r.per_s(c)));
    }
    let gauge = |v: Option<u64>| match v {
        Some(n) if n < 100 => n.to_string(),
        v => num(v.map(|n| n as f64)),
    };
    let _ = writeln!(
        b,
        " {:>6} {:>6} {:>6}",
        gauge(s.curr_estab),
        gauge(s.sockstat.tw),
        gauge(s.sockstat.orphan)
    );
}

/// `top`'s rates line.
pub fn top_rates_text(b: &mut Vec<u8>, r: &Rates) {
    let opens = match (
        r.per_s(Counter::ActiveOpens),
        r.per_s(Counter::PassiveOpens),
    ) {
        (Some(a), Some(p)) => Some(a + p),
        _ => None,
    };
    let _ = writeln!(
        b,
        "tcp: {} retrans/s = {} % of {} segs/s sent, {} conns/s, {} RSTs/s sent",
        num(r.per_s(Counter::RetransSegs)),
        pct(r.retrans_rate_pct()),
        num(r.per_s(Counter::OutSegs)),
        num(opens),
        num(r.per_s(Counter::OutRsts)),
    );
}

/// `retrans`'s summary: two lines.
pub fn summary_text(b: &mut Vec<u8>, s: &RetransSummary) {
    let r = &s.rates;
    let _ = writeln!(
        b,
        "summary: {} retransmitted segments/s = {} % of {} segments sent/s ({:.1} s)",
        num(r.per_s(Counter::RetransSegs)),
        pct(r.retrans_rate_pct()),
        num(r.per_s(Counter::OutSegs)),
        r.interval_s(),
    );
    let _ = writeln!(
        b,
        "summary: {} retransmits shown ({} segments); RetransSegs grew by {}",
        s.records,
        s.segs,
        r.delta(Counter::RetransSegs)
            .map_or_else(|| "-".into(), |d| d.to_string()),
    );
}

/// `null` or the number.
fn opt_u64(b: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(n) => {
            let _ = write!(b, "{n}");
        }
        None => b.extend_from_slice(b"null"),
    }
}

/// `null` or the number, to 4 decimals (never NaN: rates say `None`).
fn opt_f64(b: &mut Vec<u8>, v: Option<f64>) {
    match v.filter(|x| x.is_finite()) {
        Some(x) => {
            let _ = write!(b, "{}", (x * 1e4).round() / 1e4);
        }
        None => b.extend_from_slice(b"null"),
    }
}

/// The fields of a [`Rates`], each followed by a comma but the last:
/// `"interval_s":..,"netns":..,"active_opens":..,...,"retrans_rate_pct":..,"retrans_segs_per_s":..`.
fn rates_fields(b: &mut Vec<u8>, r: &Rates) {
    let _ = write!(b, "\"interval_s\":");
    opt_f64(b, Some(r.interval_s()));
    let _ = write!(b, ",\"netns\":{}", r.netns);
    for c in Counter::ALL {
        let _ = write!(b, ",\"{}\":", c.json());
        opt_u64(b, r.delta(c));
    }
    b.extend_from_slice(b",\"retrans_rate_pct\":");
    opt_f64(b, r.retrans_rate_pct());
    b.extend_from_slice(b",\"retrans_segs_per_s\":");
    opt_f64(b, r.per_s(Counter::RetransSegs));
}

/// `,"rates":{...}` of a `top` record.
pub fn top_rates_json(b: &mut Vec<u8>, r: &Rates) {
    b.extend_from_slice(b",\"rates\":{");
    rates_fields(b, r);
    b.push(b'}');
}

/// One `stat` record.
pub fn stat_json(b: &mut Vec<u8>, clock: &Clock, s: &StatReport) {
    let _ = write!(
        b,
        "{{\"type\":\"stat\",\"ts\":\"{}\",",
        clock.rfc3339(s.rates.ts_ns)
    );
    rates_fields(b, &s.rates);
    b.extend_from_slice(b",\"curr_estab\":");
    opt_u64(b, s.curr_estab);
    let k = &s.sockstat;
    for (name, v) in [
        ("inuse", k.inuse),
        ("inuse6", k.inuse6),
        ("orphan", k.orphan),
        ("tw", k.tw),
        ("alloc", k.alloc),
        ("mem", k.mem),
    ] {
        let _ = write!(
            b,
            "{}\"{name}\":",
            if name == "inuse" {
                ",\"sockstat\":{"
            } else {
                ","
            }
        );
        opt_u64(b, v);
    }
    b.extend_from_slice(b"},\"census\":{");
    for (i, (st, n)) in s.census.iter().enumerate() {
        let _ = write!(b, "{}\"{}\":{n}", if i > 0 { "," } else { "" }, st.name());
    }
    b.extend_from_slice(b"}}\n");
}

/// The `summary` record of `retrans`.
pub fn summary_json(b: &mut Vec<u8>, clock: &Clock, s: &RetransSummary) {
    let _ = write!(
        b,
        "{{\"type\":\"summary\",\"ts\":\"{}\",\"view\":\"retrans\",\"records\":{},\"segs\":{},",
        clock.rfc3339(s.rates.ts_ns),
        s.records,
        s.segs
    );
    rates_fields(b, &s.rates);
    b.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> TextClock {
        TextClock::new(Clock::with_offset(0), crate::sinks::time::TimeMode::Utc, 0)
    }
    use crate::{counters::Counters, event::TcpState};

    fn rates() -> Rates {
        let mut a = Counters::default();
        let mut z = Counters {
            ts_ns: 2_000_000_000,
            netns: 4_026_531_833,
            ..Counters::default()
        };
        for c in Counter::ALL {
            a.values[c as usize] = Some(1000);
            z.values[c as usize] = Some(1000 + 2 * (c as u64 + 1));
        }
        z.values[Counter::OutSegs as usize] = Some(1000 + 2862);
        z.values[Counter::RetransSegs as usize] = Some(1000 + 123);
        z.values[Counter::ListenDrops as usize] = None;
        Rates::between(&a, &z)
    }

    #[test]
    fn numbers_fit_six_columns() {
        assert_eq!(num(None), "-");
        assert_eq!(num(Some(0.0)), "0.0");
        assert_eq!(num(Some(61.66)), "61.7");
        assert_eq!(num(Some(1431.0)), "1431");
        assert_eq!(num(Some(999_999.0)), "999999");
        assert_eq!(num(Some(1_234_567.0)), "1235k");
        assert_eq!(num(Some(3e9)), "3000M");
        assert_eq!(pct(None), "-");
    }

    #[test]
    fn stat_text_is_two_lines_of_78_columns() {
        let s = StatReport {
            rates: rates(),
            curr_estab: Some(12),
            sockstat: crate::counters::SockStat {
                tw: Some(3),
                ..Default::default()
            },
            census: vec![],
            seq: 0,
        };
        let mut b = Vec::new();
        stat_text(&mut b, &utc(), &s);
        let text = String::from_utf8(b).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines.iter().all(|l| l.len() <= 78), "{text}");
        assert!(lines[0].starts_with("TIME     actv/s pasv/s"), "{text}");
        // 123 retransmitted of 2862 sent in 2 s.
        assert!(lines[2].contains(" 61.5   4.30 "), "{text}");
        assert!(lines[2].starts_with("00:00:02"), "{text}");
        // ListenDrops unknown; orphans unknown.
        assert!(lines[3].ends_with("     -     12      3      -"), "{text}");
        let mut b = Vec::new();
        stat_text(
            &mut b,
            &utc(),
            &StatReport {
                seq: 1,
                ..s.clone()
            },
        );
        assert_eq!(String::from_utf8(b).unwrap().lines().count(), 2);
    }

    #[test]
    fn json_has_kernel_names_and_no_nan() {
        let s = StatReport {
            rates: rates(),
            curr_estab: None,
            sockstat: Default::default(),
            census: vec![(TcpState::Listen, 2)],
            seq: 0,
        };
        let mut b = Vec::new();
        stat_json(&mut b, &Clock::with_offset(0), &s);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["type"], "stat");
        assert_eq!(v["interval_s"], 2.0);
        assert_eq!(v["netns"], 4_026_531_833u64);
        assert_eq!(v["retrans_segs"], 123);
        assert_eq!(v["out_segs"], 2862);
        assert_eq!(v["tcp_fast_retrans"], 22);
        assert_eq!(v["listen_drops"], serde_json::Value::Null);
        assert_eq!(v["retrans_rate_pct"], 4.2977);
        assert_eq!(v["retrans_segs_per_s"], 61.5);
        assert_eq!(v["census"]["LISTEN"], 2);
        assert_eq!(v["sockstat"]["tw"], serde_json::Value::Null);
        // Nothing sent: null, not NaN (which is not JSON).
        let mut r = rates();
        r.deltas[Counter::OutSegs as usize] = Some(0);
        let mut b = Vec::new();
        summary_json(
            &mut b,
            &Clock::with_offset(0),
            &RetransSummary {
                records: 3,
                segs: 4,
                rates: r,
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["retrans_rate_pct"], serde_json::Value::Null);
        assert_eq!(
            (v["records"].as_u64(), v["segs"].as_u64()),
            (Some(3), Some(4))
        );
    }

    #[test]
    fn rates_line_and_summary_fit_80_columns() {
        let mut b = Vec::new();
        top_rates_text(&mut b, &rates());
        summary_text(
            &mut b,
            &RetransSummary {
                records: 100,
                segs: 123,
                rates: rates(),
            },
        );
        let text = String::from_utf8(b).unwrap();
        assert!(text.lines().all(|l| l.len() <= 80), "{text}");
        assert!(
            text.starts_with("tcp: 61.5 retrans/s = 4.30 % of 1431 segs/s sent,"),
            "{text}"
        );
        assert!(text.contains("RetransSegs grew by 123"), "{text}");
    }
}
