//! `top`'s cuts as data: the order of rows, the state filter, the
//! roll-ups and their rates, the counts the footer is made of, keys
//! through the pipeline, and `--count`.

use super::*;
use crate::{
    engine::tests::{owner, retrans, state, tuple},
    event::{RetransKind, TcpState::*},
    pipeline::{Input, Pipeline},
    sinks::{Mode, testing::capture, top_table},
    views::testing::context,
};

const S: u64 = 1_000_000_000;

/// An engine with 3 CLOSE_WAIT sockets of python3[30089] (a server's,
/// accepted from its listener), 5 FIN_WAIT2 orphans nobody owns (first
/// seen mid-life), and a closed client of curl[7] with 4 retransmits.
fn leak() -> Engine {
    let mut e = Engine::default();
    let py = owner(30089, "python3");
    e.process(&state(1, 1, tuple(8080, 0), py, Close, Listen));
    for i in 0..3u16 {
        let s = 10 + u64::from(i);
        let t = tuple(8080, 40_000 + i);
        e.process(&state(10 + s, s, t, py, Listen, SynRecv));
        e.process(&state(20 + s, s, t, py, SynRecv, Established));
        e.process(&state(30 + s, s, t, py, Established, CloseWait));
    }
    for i in 0..5u16 {
        let s = 100 + u64::from(i);
        let t = tuple(50_000 + i, 9000);
        e.process(&state(
            100 + s,
            s,
            t,
            owner(0, "swapper/0"),
            FinWait1,
            FinWait2,
        ));
    }
    let curl = owner(7, "curl");
    let t = tuple(45_000, 443);
    e.process(&state(300, 200, t, curl, Close, SynSent));
    e.process(&state(400, 200, t, curl, SynSent, Established));
    for n in 0..4 {
        e.process(&retrans(
            500 + n,
            200,
            t,
            curl,
            Established,
            RetransKind::Data,
        ));
    }
    e.process(&state(600, 200, t, curl, Established, Close));
    e
}

fn top(limit: usize) -> Top {
    Top::new(SortBy::Retrans, S, limit, false, false)
}

#[test]
fn ownerless_and_closed_rows_come_last_and_the_footer_counts_all() {
    let e = leak();
    let r = top(4).report(&e, 2 * S, &context());
    let states: Vec<_> = r
        .rows
        .iter()
        .map(|r| (r.state, r.owner.map(|o| o.pid)))
        .collect();
    assert_eq!(
        states,
        [
            (Listen, Some(30089)),
            (CloseWait, Some(30089)),
            (CloseWait, Some(30089)),
            (CloseWait, Some(30089))
        ]
    );
    assert_eq!((r.total_flows, r.matching_flows), (10, 10));
    assert_eq!(top_table::footer(&r, r.rows.len()), "4 of 10 flows");
    // All of them: the process's sockets, then the orphans, then the
    // closed client (with the most retransmits, yet last).
    let r = top(0).report(&e, 2 * S, &context());
    assert_eq!(r.rows.len(), 10, "--limit 0 is all");
    assert_eq!(r.rows[3].state, CloseWait);
    assert!(
        r.rows[4..9]
            .iter()
            .all(|r| r.owner.is_none() && r.state == FinWait2)
    );
    assert_eq!((r.rows[9].owner.unwrap().pid, r.rows[9].retrans), (7, 4));
}

#[test]
fn the_state_filter_cuts_rows_not_the_census() {
    let e = leak();
    let mut t = top(25);
    t.states = vec![CloseWait, FinWait2];
    let r = t.report(&e, 2 * S, &context());
    assert_eq!((r.total_flows, r.matching_flows, r.rows.len()), (10, 8, 8));
    assert!(
        r.rows
            .iter()
            .all(|r| matches!(r.state, CloseWait | FinWait2))
    );
    assert!(r.census.contains(&(Listen, 1)), "{:?}", r.census);
    assert_eq!(
        top_table::footer(&r, 5),
        "5 of 8 flows in CLOSE_WAIT,FIN_WAIT2 (10 in all)"
    );
}

#[test]
fn latency_puts_flows_without_a_handshake_last() {
    let mut e = Engine::default();
    let c = owner(1, "c");
    e.process(&state(1, 1, tuple(0, 80), c, Close, SynSent));
    e.process(&state(2, 2, tuple(0, 81), c, Close, SynSent));
    e.process(&state(500, 2, tuple(2, 81), c, SynSent, Established));
    e.process(&state(3, 3, tuple(0, 82), c, Close, SynSent));
    e.process(&state(100, 3, tuple(3, 82), c, SynSent, Established));
    let mut t = top(0);
    t.sort = SortBy::Latency;
    let r = t.report(&e, S, &context());
    let order: Vec<_> = r
        .rows
        .iter()
        .map(|r| (r.tuple.rport, r.handshake_ns))
        .collect();
    assert_eq!(order, [(81, Some(498)), (82, Some(97)), (80, None)]);
}

#[test]
fn groups_by_owner_with_counts_per_state_growth_and_rates() {
    let mut e = leak();
    let mut t = top(25);
    t.group = Some(GroupBy::Owner);
    let cx = context();
    let mut out = crate::views::testing::Collect::default();
    // The first look (at 1 s) covers the run since its start (0 s).
    t.on_tick(&e, 0, &cx, &mut out);
    t.on_tick(&e, S, &cx, &mut out);
    // Three more CLOSE_WAIT and two retransmitted segments within 20 s.
    let py = owner(30089, "python3");
    for i in 3..6u16 {
        let s = 10 + u64::from(i);
        let tp = tuple(8080, 40_000 + i);
        e.process(&state(2 * S + s, s, tp, py, Listen, SynRecv));
        e.process(&state(2 * S + 20 + s, s, tp, py, SynRecv, Established));
        e.process(&state(2 * S + 30 + s, s, tp, py, Established, CloseWait));
    }
    let tp = tuple(8080, 40_000);
    e.process(&retrans(3 * S, 10, tp, py, CloseWait, RetransKind::Data));
    e.process(&retrans(
        3 * S + 1,
        10,
        tp,
        py,
        CloseWait,
        RetransKind::Data,
    ));
    t.on_tick(&e, 21 * S, &cx, &mut out);
    let r = t.report(&e, 21 * S, &cx);
    assert_eq!(r.group, Some(GroupBy::Owner));
    let names: Vec<String> = r
        .groups
        .iter()
        .map(|g| top_table::group_name(g, false))
        .collect();
    assert_eq!(
        names,
        ["python3[30089]", "curl[7]", "(no owner)"],
        "{:?}",
        r.groups
    );
    let py = &r.groups[0];
    assert_eq!(py.flows, 7, "the listener and six accepted");
    assert_eq!(
        top_table::group_states(py),
        "CLOSE_WAIT 6 (+9/min), LISTEN 1"
    );
    // Over the last interval (1 s to 21 s): 3 new connections, 2
    // retransmitted segments.
    assert!((py.new_per_s - 3.0 / 20.0).abs() < 1e-9, "{}", py.new_per_s);
    assert!((py.retrans_segs_per_s - 0.1).abs() < 1e-9);
    assert_eq!(r.groups[2].states, [(FinWait2, 5, Some(0.0))]);
    assert_eq!(
        top_table::footer(&r, 3),
        "3 of 3 groups by owner of 13 flows"
    );
    // The same flows by service port: 8080 (the server side) and 443.
    t.group = Some(GroupBy::Port);
    let r = t.report(&e, 21 * S, &cx);
    let ports: Vec<String> = r
        .groups
        .iter()
        .map(|g| top_table::group_name(g, false))
        .collect();
    assert!(ports.contains(&":8080".to_string()) && ports.contains(&":443".to_string()));
}

#[test]
fn json_says_how_many_flows_there_are_and_never_cuts_silently() {
    let e = leak();
    let (mut out, got) = capture(Mode::Json, None);
    top(2).finish(&e, 2 * S, &context(), &mut out);
    top(0).finish(&e, 2 * S, &context(), &mut out);
    out.close().unwrap();
    let v: Vec<serde_json::Value> = got
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v[0]["flows"].as_array().unwrap().len(), 2);
    assert_eq!(v[0]["total_flows"], 10);
    assert_eq!(v[0]["matching_flows"], 10);
    assert_eq!(v[1]["flows"].as_array().unwrap().len(), 10);
    assert_eq!(v[1]["group"], serde_json::Value::Null);
}

/// Ticks every 10 ms of input time for 10 s (a refresh a second),
/// through the pipeline.
fn run(count: Option<u64>, keys: &[Key]) -> Vec<serde_json::Value> {
    let (out, got) = capture(Mode::Json, count);
    let mut p = Pipeline::with_output(Box::new(top(25)), Default::default(), out);
    p.push(Input::Start(Default::default()));
    for ev in [
        state(1, 1, tuple(8080, 0), owner(5, "srv"), Close, Listen),
        state(2, 2, tuple(0, 8080), owner(6, "cli"), Close, SynSent),
    ] {
        p.push(Input::Event(ev));
    }
    for k in keys {
        p.push(Input::Key(*k));
    }
    let mut now = 0;
    while !p.done() && now < 10 * S {
        now += S / 100;
        p.push(Input::Tick(now));
    }
    p.push(Input::End(now));
    p.finish().unwrap();
    got.text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn count_n_gives_n_tables() {
    for n in 1..=3 {
        assert_eq!(run(Some(n), &[]).len(), n as usize, "-c {n}");
    }
    // Without a count: one per second of input (9 whole seconds after the
    // first tick) and the last.
    assert_eq!(run(None, &[]).len(), 10);
}

#[test]
fn keys_go_through_the_door_to_the_view() {
    // `g` then `s`: a table at each key, grouped by owner, then cut to the
    // first state in the census (ESTABLISHED has none: SYN_SENT).
    let v = run(None, &[Key::Group, Key::State, Key::Sort(SortBy::Age)]);
    assert_eq!(v[0]["group"], "owner");
    assert_eq!(v[1]["states"], serde_json::json!(["SYN_SENT"]));
    assert_eq!(v[1]["flows"].as_array().unwrap().len(), 1);
    assert_eq!(v[1]["matching_flows"], 1);
    assert_eq!(v[1]["total_flows"], 2);
    // `q` ends the run before any refresh, and nothing more is shown.
    assert!(run(None, &[Key::Quit]).is_empty());
}

/// The kernel reuses a closed socket's address for the next one at once:
/// both are in the table (one lingering), and each counts as a new
/// connection with its own retransmits, once.
#[test]
fn rates_tell_a_reused_socket_address_from_its_last_owner() {
    let mut e = Engine::default();
    let c = owner(1, "c");
    let mut t = top(25);
    t.group = Some(GroupBy::Owner);
    let cx = context();
    let mut out = crate::views::testing::Collect::default();
    t.on_tick(&e, 0, &cx, &mut out);
    let mut seen = vec![];
    for (n, port) in [(1, 40_000u16), (2, 40_001)] {
        let at = (n - 1) * S + S / 2;
        e.process(&state(at + 1, 7, tuple(0, 80), c, Close, SynSent));
        e.process(&state(at + 2, 7, tuple(port, 80), c, SynSent, Established));
        e.process(&retrans(
            at + 3,
            7,
            tuple(port, 80),
            c,
            Established,
            RetransKind::Data,
        ));
        e.process(&state(at + 4, 7, tuple(port, 80), c, Established, Close));
        t.on_tick(&e, n * S, &cx, &mut out);
        let r = t.report(&e, n * S, &cx);
        let g = &r.groups[0];
        seen.push((r.total_flows, g.new_per_s, g.retrans_segs_per_s));
    }
    // One new connection with one retransmit each second; both lives of
    // socket 7 in the table at the end.
    assert_eq!(seen, [(1, 1.0, 1.0), (2, 1.0, 1.0)]);
    // Nothing more happened: nothing more is counted.
    t.on_tick(&e, 3 * S, &cx, &mut out);
    let g = &t.report(&e, 3 * S, &cx).groups[0];
    assert_eq!((g.new_per_s, g.retrans_segs_per_s), (0.0, 0.0), "{g:?}");
}
