//! One test over every view's text: each column of a header sits over
//! the values of its rows (left-aligned columns start where their header
//! starts, right-aligned ones end where it ends), for every kind of
//! record, with and without the NETNS column, for each `--time` clock.

use super::{
    text::{self, header},
    time::{TextClock, TimeMode},
};
use crate::{
    engine::{
        Engine,
        flows::ConnectOutcome,
        tests::{owner, state, tuple},
    },
    event::{Clock, RetransKind, TcpState::*},
    views::{
        Columns, Emit, Rec, View,
        records::{Direction, FlowRef, Reason},
        testing::context,
        top::{SortBy, Top},
    },
};

/// `(start, end)` of each run of non-spaces. Headers of several words
/// (`RST o/i`) are one column.
fn tokens(line: &str) -> Vec<(usize, usize)> {
    let line = line.replace("RST o/i", "RST_o/i");
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices().chain([(line.len(), ' ')]) {
        match (c == ' ', start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Every header column has a value under it, starting or ending with it.
fn assert_aligned(header: &str, row: &str) {
    let row_tokens = tokens(row);
    for (s, e) in tokens(header) {
        assert!(
            row_tokens.iter().any(|&(rs, re)| rs == s || re == e),
            "column {:?} has no value under it:\n{header}\n{row}",
            &header[s..e]
        );
    }
}

/// A record of each kind the streaming views print.
fn with_each_record(f: &mut dyn FnMut(Columns, &Rec<'_>)) {
    let t = tuple(56356, 7999);
    let o = owner(1213, "python3");
    let flow = FlowRef {
        ts_ns: 1_000,
        tuple: &t,
        owner: Some(&o),
    };
    let outcome = ConnectOutcome {
        ts_ns: 1_000,
        sock: 1,
        tuple: t,
        owner: Some(o),
        latency_ns: Some(234_000),
        errno: None,
    };
    let failed = ConnectOutcome {
        latency_ns: None,
        errno: Some(111),
        owner: None,
        ..outcome
    };
    let recs = [
        (
            Columns::States,
            Rec::State {
                flow,
                old: SynSent,
                new: Established,
                prev_state_ns: Some(1_500_000),
            },
        ),
        (
            Columns::Retrans,
            Rec::Retrans {
                flow,
                state: Established,
                kind: RetransKind::Data,
                segs: Some(3),
                failed: None,
            },
        ),
        (Columns::Connect, Rec::Connect(&outcome)),
        (Columns::Connect, Rec::Connect(&failed)),
        (
            Columns::Resets,
            Rec::Reset {
                flow,
                direction: Direction::Received,
                state: Some(Established),
                reason: Some(Reason::Named("TCP_ABORT_ON_CLOSE")),
            },
        ),
    ];
    for (c, r) in &recs {
        f(*c, r);
    }
}

#[test]
fn every_column_sits_under_its_header() {
    let clock = Clock::with_offset(1_795_348_800_000_000_000);
    for time in [TimeMode::Utc, TimeMode::Local, TimeMode::Relative] {
        let clock = TextClock::new(clock, time, 1);
        for netns in [false, true] {
            let mut checked = 0;
            with_each_record(&mut |columns, rec| {
                let h = header(columns, netns, &clock).unwrap();
                let mut row = Vec::new();
                text::render(&mut row, &clock, rec, netns);
                assert_aligned(h.trim_end(), String::from_utf8(row).unwrap().trim_end());
                checked += 1;
            });
            assert_eq!(checked, 5);
        }
    }
}

#[test]
fn every_column_of_top_sits_under_its_header() {
    // Two namespaces (the NETNS column) and one; with and without RTT.
    for (netns, rtt) in [(false, false), (true, true), (false, true)] {
        let mut e = Engine::default();
        let t = |lport, ns| crate::event::Tuple {
            netns: ns,
            ..tuple(lport, 80)
        };
        e.process(&state(1, 1, t(0, 11), owner(7, "curl"), Close, SynSent));
        e.process(&state(
            2,
            1,
            t(4000, 11),
            owner(0, "x"),
            SynSent,
            Established,
        ));
        let other = if netns { 22 } else { 11 };
        e.process(&state(3, 2, t(8080, other), owner(9, "srv"), Close, Listen));
        let mut top = Top::new(SortBy::Age, 1, 10, false, rtt);
        let mut recs = Vec::new();
        struct Keep<'a>(&'a mut Vec<u8>);
        impl Emit for Keep<'_> {
            fn emit(&mut self, rec: &Rec<'_>) {
                text::render(self.0, &TextClock::default(), rec, false);
            }
        }
        top.finish(&e, 10, &context(), &mut Keep(&mut recs));
        let text = String::from_utf8(recs).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let at = lines.iter().position(|l| l.contains(" PID ")).unwrap();
        // The rows, then the footer (`2 of 2 flows`).
        let rows = &lines[at + 1..lines.len() - 1];
        assert_eq!(rows.len(), 2, "{text}");
        assert_eq!(lines.last(), Some(&"2 of 2 flows"), "{text}");
        assert_eq!(lines[at].contains("NETNS"), netns, "{text}");
        for row in rows {
            assert_aligned(lines[at], row);
        }
    }
}
