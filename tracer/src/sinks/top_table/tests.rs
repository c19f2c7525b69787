//! The columns of `top`'s tables line up under their headings at every
//! width, and shortened endpoints keep their port.

use super::*;
use crate::{
    engine::{
        Engine,
        tests::{owner, retrans, state, tuple},
    },
    event::{RetransKind, TcpState::*},
    views::{
        testing::context,
        top::{GroupBy, SortBy, Top},
    },
};

fn engine() -> Engine {
    let mut e = Engine::default();
    for (i, name) in ["curl", "a-very-long-nam", "x"].iter().enumerate() {
        let s = i as u64 + 1;
        let mut t = tuple(40_000 + i as u16, 443);
        if i == 1 {
            t.family = crate::event::Family::V6;
            t.laddr = "2001:db8::1".parse().unwrap();
            t.raddr = "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        }
        let o = owner(100 * s as u32, name);
        e.process(&state(s, s, t, o, Close, SynSent));
        e.process(&state(s + 1000, s, t, o, SynSent, Established));
        for n in 0..s * 3 {
            e.process(&retrans(2000 + n, s, t, o, Established, RetransKind::Data));
        }
    }
    e
}

/// Where `needle` starts and ends in `line` (characters), searching
/// from `from`.
fn span(line: &str, needle: &str, from: usize) -> (usize, usize) {
    let chars: Vec<char> = line.chars().collect();
    let n: Vec<char> = needle.chars().collect();
    let at = (from..=chars.len().saturating_sub(n.len()))
        .find(|&i| chars[i..i + n.len()] == n[..])
        .unwrap_or_else(|| panic!("{needle:?} not in {line:?}"));
    (at, at + n.len())
}

#[test]
fn flow_columns_line_up_under_their_headings_at_every_width() {
    let e = engine();
    for rtt in [false, true] {
        let r = Top::new(SortBy::Retrans, 1, 0, true, rtt).report(&e, 5000, &context());
        for width in [60, 80, 100, 132, 200] {
            let (head, rows) = flow_lines(&r, width);
            assert!(head.chars().count() <= width, "{width}: {head}");
            for (row, f) in rows.iter().zip(&r.rows) {
                assert!(row.chars().count() <= width, "{width}: {row}");
                // Left-aligned: the same start; right-aligned: the same end.
                let state = span(&head, "STATE", 0).0;
                assert_eq!(
                    span(row, f.state.name(), 0).0,
                    state,
                    "{width}\n{head}\n{row}"
                );
                let retr = span(&head, "RETR", 0).1;
                let v = f.retrans.to_string();
                assert_eq!(
                    span(row, &v, retr - v.len()).1,
                    retr,
                    "{width}\n{head}\n{row}"
                );
                let pid = f.owner.unwrap().pid.to_string();
                assert_eq!(span(row, &pid, 0).1, span(&head, "PID", 0).1);
                // The endpoints start under LOCAL and REMOTE, the remote
                // one whole or shortened but with its port.
                let local = span(&head, "LOCAL", 0).0;
                let remote = span(&head, "REMOTE", local).0;
                assert_eq!(
                    row.chars().nth(local - 1),
                    Some(' '),
                    "{width}\n{head}\n{row}"
                );
                assert_eq!(
                    row.chars().nth(remote - 1),
                    Some(' '),
                    "{width}\n{head}\n{row}"
                );
                assert!(row.ends_with(":443"), "{width}: {row}");
            }
        }
    }
}

#[test]
fn group_columns_line_up_under_their_headings() {
    let e = engine();
    for by in GroupBy::ALL {
        let mut top = Top::new(SortBy::Retrans, 1, 0, true, false);
        top.group = Some(by);
        let r = top.report(&e, 5000, &context());
        for width in [80, 200] {
            let (head, rows) = group_lines(&r, width);
            for (row, g) in rows.iter().zip(&r.groups) {
                assert!(row.chars().count() <= width, "{row}");
                let flows = span(&head, "FLOWS", 0).1;
                let v = g.flows.to_string();
                assert_eq!(span(row, &v, flows - v.len()).1, flows, "\n{head}\n{row}");
                let states = span(&head, "STATES", 0).0;
                assert_eq!(
                    span(row, "ESTABLISHED", 0).0,
                    states,
                    "{by:?} {width}\n{head}\n{row}"
                );
            }
        }
    }
}

#[test]
fn endpoints_are_shortened_in_the_middle() {
    assert_eq!(fit_endpoint("10.0.0.1:80", 20), "10.0.0.1:80");
    assert_eq!(
        fit_endpoint("[2001:db8::dead:beef]:443", 16),
        "[2001:…beef]:443"
    );
    assert_eq!(
        fit_endpoint("[2001:db8::dead:beef]:443", 16)
            .chars()
            .count(),
        16
    );
    assert_eq!(thousands(3065), "3 065");
    assert_eq!(thousands(1_234_567), "1 234 567");
    assert_eq!(thousands(25), "25");
}
