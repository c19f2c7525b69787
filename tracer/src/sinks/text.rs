//! The human renderer: fixed-width columns for the streaming views, the
//! histograms as bars, and the `top` table. The network namespace shows
//! only when more than one is involved: a NETNS column in the streaming
//! views from the record that brings a second namespace on (the output
//! prints the header again there), and in a `top` table or a round of
//! histograms that spans several. Per-event records are written
//! with the allocation-free pieces of [`put`]; text from elsewhere (process
//! names, reset reasons) goes through [`escape`].

use std::io::Write;

use super::{
    counters, escape,
    format::{
        endpoint, errno_name, ip_version, put_netns, text_flow, text_flow_header, text_netns_header,
    },
    put,
    time::TextClock,
    top_table,
};
use crate::views::{
    hist::group_name,
    records::{Columns, FlowRef, HistReport, Metric, Reason, Rec, TopReport},
};

/// Reset reasons longer than this are cut (the kernel's longest is 30).
const REASON_CHARS: usize = 48;

/// The column header for a view's records, if it has one; with the NETNS
/// column if `netns`, and the time column `clock` shows.
pub fn header(columns: Columns, netns: bool, clock: &TextClock) -> Option<String> {
    let mut flow = text_flow_header(clock);
    if netns {
        flow.push_str(&text_netns_header());
    }
    Some(match columns {
        Columns::Retrans => format!("{flow}{:<12} {:<6} SEGS", "STATE", "KIND"),
        Columns::States => format!("{flow}{:>11}    {:<11} {:>10}", "OLD", "NEW", "PREV_MS"),
        Columns::Connect => format!("{flow}LAT(ms)/ERROR"),
        Columns::Resets => format!("{flow}{:<4} {:<12} REASON", "DIR", "STATE"),
        Columns::None => return None,
    })
}

/// Appends one record as text, with the NETNS column if `netns`.
/// Recording-only records render nothing.
pub fn render(b: &mut Vec<u8>, clock: &TextClock, rec: &Rec<'_>, netns: bool) {
    let flow = |b: &mut Vec<u8>, f: &FlowRef<'_>| {
        text_flow(b, clock, f.ts_ns, f.tuple, f.owner, netns);
    };
    match *rec {
        Rec::State {
            flow: ref f,
            old,
            new,
            prev_state_ns,
        } => {
            flow(b, f);
            let at = b.len();
            b.extend_from_slice(old.name().as_bytes());
            put::pad_left(b, at, 11);
            b.extend_from_slice(b" -> ");
            let at = b.len();
            b.extend_from_slice(new.name().as_bytes());
            put::pad_right(b, at, 11);
            b.push(b' ');
            let at = b.len();
            match prev_state_ns {
                Some(ns) => put::millis3(b, ns),
                None => b.push(b'-'),
            }
            put::pad_left(b, at, 10);
            b.push(b'\n');
        }
        Rec::Retrans {
            flow: ref f,
            state,
            kind,
            segs,
            failed,
        } => {
            flow(b, f);
            put::column(b, state.name(), 12);
            b.push(b' ');
            put::column(b, kind.name(), 6);
            b.push(b' ');
            match (failed, segs) {
                // Nothing sent: the error instead of a segment count.
                (Some(e), _) => {
                    b.extend_from_slice(b"0 failed:");
                    b.extend_from_slice(errno_name(e).as_bytes());
                }
                (None, Some(n)) => put::int(b, n),
                (None, None) => b.push(b'-'),
            }
            b.push(b'\n');
        }
        Rec::Connect(o) => {
            text_flow(b, clock, o.ts_ns, &o.tuple, o.owner.as_ref(), netns);
            match (o.latency_ns, o.failed()) {
                (Some(l), _) => {
                    let _ = writeln!(b, "{:.3}", l as f64 / 1e6);
                }
                (None, true) => {
                    let e = o.errno.map_or_else(|| "unknown".to_string(), errno_name);
                    let _ = writeln!(b, "{e}");
                }
                (None, false) => b.push(b'\n'),
            }
        }
        Rec::Reset {
            flow: ref f,
            direction,
            state,
            reason,
        } => {
            flow(b, f);
            let dir = match direction {
                crate::views::records::Direction::Sent => "out",
                crate::views::records::Direction::Received => "in",
            };
            let _ = write!(b, "{dir:<4} {:<12} ", state.map_or("-", |s| s.name()));
            match reason {
                Some(Reason::Named(r)) => escape::text(b, r.as_bytes(), REASON_CHARS),
                Some(Reason::Code(n)) => put::int(b, n),
                None => b.push(b'-'),
            }
            b.push(b'\n');
        }
        Rec::Hist(h) => hist(b, h),
        Rec::Top(t) => top(b, clock, t),
        Rec::Stat(s) => counters::stat_text(b, clock, s),
        Rec::Summary(s) => counters::summary_text(b, s),
        Rec::Finding(f) => super::findings::finding_text(b, f),
        Rec::Doctor(v) => super::findings::verdict_text(b, v),
        Rec::Event(_) | Rec::Rtt { .. } | Rec::Seeds(_) | Rec::Census { .. } => {}
    }
}

/// Which network namespaces the records shown so far were in: enough to
/// know when a second one comes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Namespaces {
    /// The first known one (0: none yet).
    first: u32,
    /// More than one has been seen: lines carry the NETNS column.
    pub many: bool,
}

impl Namespaces {
    /// Takes a record's namespace; true when it is the second one seen
    /// (the header is then printed again, with NETNS).
    pub fn see(&mut self, netns: Option<u32>) -> bool {
        match netns {
            _ if self.many => false,
            None | Some(0) => false,
            Some(n) if self.first == 0 => {
                self.first = n;
                false
            }
            Some(n) => {
                self.many = n != self.first;
                self.many
            }
        }
    }
}

fn hist(b: &mut Vec<u8>, h: &HistReport) {
    if h.groups.is_empty() {
        let what = match h.metric {
            Metric::Handshake => "handshake latency",
            Metric::Rtt => "RTT",
        };
        let _ = writeln!(b, "no {what} samples\n");
        return;
    }
    let netns = h.groups.iter().any(|g| g.netns != h.groups[0].netns);
    for g in &h.groups {
        let ms = |us: u64| us as f64 / 1000.0;
        let _ = writeln!(
            b,
            "{} {}{}: {} samples, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            if h.per_flow { "flow" } else { "destination" },
            group_name(g.local, g.remote),
            if netns {
                format!(" (netns {})", g.netns)
            } else {
                String::new()
            },
            g.count,
            ms(g.p50_us),
            ms(g.p90_us),
            ms(g.p99_us),
            ms(g.max_us)
        );
        let _ = writeln!(b, "{:>20}         : count     distribution", "usecs");
        let peak = g.buckets.iter().map(|x| x.2).max().unwrap_or(1).max(1);
        for &(lo, hi, n) in &g.buckets {
            let stars = (n * 40).div_ceil(peak) as usize;
            let _ = writeln!(
                b,
                "{lo:>12} -> {hi:<12} : {n:<9} |{:<40}|",
                "*".repeat(stars.min(40))
            );
        }
        b.push(b'\n');
    }
}

/// `retransmits: rto=1 fast=3 ...` over the rows shown, when there are
/// any (the per-flow split is in `--json`).
fn retrans_kinds(b: &mut Vec<u8>, t: &TopReport) {
    let mut sum = crate::engine::flows::RetransCounts::default();
    for r in &t.rows {
        sum.merge(&r.retrans_by_kind);
    }
    if sum.total() == 0 && sum.failed == 0 {
        return;
    }
    b.extend_from_slice(b"retransmits:");
    for (k, n) in sum.by_kind() {
        let _ = write!(b, " {}={n}", k.name());
    }
    if sum.failed > 0 {
        let _ = write!(b, " failed={}", sum.failed);
    }
    b.push(b'\n');
}

/// One `top` table, appended after the last (a terminal gets the screen
/// sink instead: no escape codes here, ever).
fn top(b: &mut Vec<u8>, clock: &TextClock, t: &TopReport) {
    b.push(b'\n');
    let _ = write!(b, "{} sockets:", clock.time(t.ts_ns).trim_start());
    for (s, n) in &t.census {
        let _ = write!(b, " {}={n}", s.name());
    }
    b.push(b'\n');
    if let Some(r) = &t.rates {
        counters::top_rates_text(b, r);
    }
    // More than one namespace: its census line each, and a NETNS column.
    let netns = t.census_by_netns.len() > 1
        || t.rows
            .iter()
            .any(|r| r.tuple.netns != t.rows[0].tuple.netns);
    if netns {
        for (ns, census) in &t.census_by_netns {
            b.extend_from_slice(b"  netns ");
            put_netns(b, *ns);
            b.push(b':');
            for (s, n) in census {
                let _ = write!(b, " {}={n}", s.name());
            }
            b.push(b'\n');
        }
    }
    retrans_kinds(b, t);
    if t.group.is_some() {
        let (head, rows) = top_table::group_lines(t, GROUP_WIDTH);
        for l in std::iter::once(head).chain(rows) {
            let _ = writeln!(b, "{}", l.trim_end());
        }
        let _ = writeln!(b, "{}", top_table::footer(t, t.groups.len()));
        return;
    }
    let _ = writeln!(
        b,
        "{:>7} {:<15} IP {:<23} {:<23} {}{:<11} {:<8} {:>8} {:>5} {:>7} {:>9}{}",
        "PID",
        "COMM",
        "LOCAL",
        "REMOTE",
        if netns {
            text_netns_header()
        } else {
            String::new()
        },
        "STATE",
        "ROLE",
        "AGE(s)",
        "RETR",
        "RST o/i",
        "HS(ms)",
        if t.rtt { "   RTT(ms)" } else { "" }
    );
    let ms =
        |ns: Option<u64>| ns.map_or_else(|| "-".to_string(), |n| format!("{:.3}", n as f64 / 1e6));
    for f in &t.rows {
        let tuple = f.tuple.unmapped();
        let (pid, comm) = f.owner.map_or_else(
            || ("-".to_string(), "-".to_string()),
            |o| (o.pid.to_string(), escape::to_string(o.comm.bytes(), 16)),
        );
        let _ = write!(
            b,
            "{pid:>7} {comm:<15} {}  {:<23} {:<23} ",
            ip_version(tuple.family),
            endpoint(tuple.laddr, tuple.lport),
            endpoint(tuple.raddr, tuple.rport),
        );
        if netns {
            put_netns(b, f.tuple.netns);
            b.push(b' ');
        }
        let _ = write!(
            b,
            "{:<11} {:<8} {:>8} {:>5} {:>7} {:>9}",
            f.state.name(),
            f.role.name(),
            f.age_ms
                .map_or_else(|| "-".to_string(), |ms| format!("{:.1}", ms as f64 / 1e3)),
            f.retrans,
            format!("{}/{}", f.resets_sent, f.resets_recv),
            ms(f.handshake_ns),
        );
        if t.rtt {
            let _ = write!(b, " {:>9}", ms(f.rtt_us.map(|us| us * 1000)));
        }
        b.push(b'\n');
    }
    let _ = writeln!(b, "{}", top_table::footer(t, t.rows.len()));
}

/// Text output is not fitted to a terminal: a group row may be this wide
/// (its states last).
const GROUP_WIDTH: usize = 200;
