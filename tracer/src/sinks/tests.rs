//! What the user sees: each view's records through the text and JSON
//! renderers (schemas, columns, escapes), and the output's accounting of
//! what it could not write.

use std::io::Write;

use super::{Mode, Output, OutputSpec, testing::capture};
use crate::{
    engine::{
        Annotated, Engine,
        tests::{outcome, owner, retrans, state, tuple},
    },
    event::{Clock, RetransKind, TcpState::*},
    record::Start,
    views::{
        Columns, Emit, View,
        connect::Connect,
        retrans::Retrans,
        states::States,
        testing::context,
        top::{SortBy, Top},
    },
};

/// A start whose clock puts monotonic zero at 2026-11-22T12:00:00Z.
fn start() -> Start {
    Start {
        clock: Clock::with_offset(1_795_348_800_000_000_000),
        ..Start::default()
    }
}

/// Runs `f` against an output in `mode` and returns what it wrote.
fn render(mode: Mode, f: impl FnOnce(&mut dyn Emit)) -> String {
    let (mut out, got) = capture(mode, None);
    out.start(&start(), Columns::None);
    f(&mut out);
    out.close().unwrap();
    got.text()
}

fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

#[test]
fn json_schema_of_a_transition() {
    let a = Annotated {
        event: state(
            2_000_000_000,
            1,
            tuple(40000, 80),
            owner(5, "x"),
            SynSent,
            Established,
        ),
        owner: Some(owner(42, "curl")),
        prev_state_ns: Some(1_500_000),
        state: None,
    };
    let line = render(Mode::Json, |out| States.on_event(&a, &context(), out));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        keys(&v),
        [
            "cgroup",
            "comm",
            "family",
            "laddr",
            "lport",
            "netns",
            "new",
            "old",
            "pid",
            "prev_state_us",
            "raddr",
            "rport",
            "ts",
            "type"
        ]
    );
    assert_eq!(v["type"], "state");
    assert_eq!(v["ts"], "2026-11-22T12:00:02.000000Z");
    assert_eq!(
        (v["pid"].as_u64(), v["comm"].as_str()),
        (Some(42), Some("curl"))
    );
    assert_eq!(
        (v["family"].as_str(), v["laddr"].as_str()),
        (Some("ipv4"), Some("127.0.0.1"))
    );
    assert_eq!(
        (v["lport"].as_u64(), v["rport"].as_u64()),
        (Some(40000), Some(80))
    );
    assert_eq!(
        (v["old"].as_str(), v["new"].as_str()),
        (Some("SYN_SENT"), Some("ESTABLISHED"))
    );
    assert_eq!(v["prev_state_us"], 1500);
}

#[test]
fn unknown_owner_and_duration_are_null_and_dash() {
    let a = Annotated {
        event: state(1, 1, tuple(1, 2), owner(5, "x"), Close, SynSent),
        owner: None,
        prev_state_ns: None,
        state: None,
    };
    let json = render(Mode::Json, |out| States.on_event(&a, &context(), out));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["pid"].is_null() && v["comm"].is_null() && v["prev_state_us"].is_null());
    let text = render(Mode::Text, |out| States.on_event(&a, &context(), out));
    assert!(text.contains("CLOSE -> SYN_SENT"), "{text}");
    assert!(text.trim_end().ends_with('-'), "{text}");
}

#[test]
fn json_schema_of_a_retransmit() {
    let a = Annotated {
        event: retrans(
            1,
            1,
            tuple(40000, 443),
            owner(0, "swapper/0"),
            SynSent,
            RetransKind::Syn,
        ),
        owner: Some(owner(42, "curl")),
        prev_state_ns: None,
        state: None,
    };
    let line = render(Mode::Json, |out| {
        Retrans::default().on_event(&a, &context(), out)
    });
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        keys(&v),
        [
            "cgroup", "comm", "family", "kind", "laddr", "lport", "netns", "pid", "raddr", "rport",
            "segs", "state", "ts", "type"
        ]
    );
    // After `rport`, as in every per-flow record.
    assert!(line.contains(r#""rport":443,"netns":0,"#), "{line}");
    assert_eq!(
        (v["type"].as_str(), v["kind"].as_str(), v["state"].as_str()),
        (Some("retrans"), Some("syn"), Some("SYN_SENT"))
    );
    assert_eq!((v["pid"].as_u64(), v["segs"].as_u64()), (Some(42), Some(1)));
}

/// A failed attempt (6.17+): in JSON with `"failed"` and 0 segments; in
/// text only with `--failed`; `--kind` keeps the kinds asked for.
#[test]
fn failed_retransmits_and_the_kind_filter() {
    let mut ev = retrans(
        1,
        1,
        tuple(40000, 443),
        owner(42, "curl"),
        Established,
        RetransKind::Fast,
    );
    let fast = Annotated {
        event: ev,
        owner: Some(owner(42, "curl")),
        prev_state_ns: None,
        state: None,
    };
    if let crate::event::EventKind::Retrans { failed, .. } = &mut ev.kind {
        *failed = Some(16);
    }
    let busy = Annotated { event: ev, ..fast };
    let all = |failed| Retrans::new(Vec::new(), failed);
    let line = render(Mode::Json, |out| all(true).on_event(&busy, &context(), out));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["segs"].as_u64(), v["failed"].as_str()),
        (Some("fast"), Some(0), Some("EBUSY"))
    );
    let line = render(Mode::Json, |out| all(true).on_event(&fast, &context(), out));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(v.get("failed").is_none(), "{line}");
    assert_eq!(v["kind"], "fast");
    assert_eq!(
        render(Mode::Text, |out| all(false).on_event(
            &busy,
            &context(),
            out
        )),
        ""
    );
    let text = render(Mode::Text, |out| all(true).on_event(&busy, &context(), out));
    assert!(text.contains("fast   0 failed:EBUSY"), "{text}");
    let only = |k| Retrans::new(vec![k, RetransKind::Tlp], false);
    let shown = |k| render(Mode::Text, |out| only(k).on_event(&fast, &context(), out));
    assert!(shown(RetransKind::Fast).contains("fast   1"));
    assert_eq!(shown(RetransKind::Rto), "");
}

#[test]
fn json_connect_success_and_failure() {
    let text = render(Mode::Json, |out| {
        let mut v = Connect::default();
        v.on_connect(&outcome(Some(1_500_000), None), &context(), out);
        v.on_connect(&outcome(None, Some(111)), &context(), out);
    });
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "connect");
    assert_eq!(lines[0]["handshake_us"], 1500);
    assert!(lines[0]["error"].is_null());
    assert!(lines[1]["handshake_us"].is_null());
    assert_eq!(lines[1]["error"], "ECONNREFUSED");
    assert_eq!(lines[1]["pid"], 7);
}

#[test]
fn top_census_and_sorted_flows_in_json() {
    let mut e = Engine::default();
    let c = owner(1, "c");
    e.process(&state(1_000, 1, tuple(0, 80), c, Close, SynSent));
    e.process(&state(2_000, 1, tuple(1, 80), c, SynSent, Established));
    e.process(&state(3_000, 2, tuple(0, 80), c, Close, SynSent));
    e.process(&state(4_000, 2, tuple(2, 80), c, SynSent, Established));
    e.process(&retrans(
        5_000,
        2,
        tuple(2, 80),
        c,
        Established,
        RetransKind::Data,
    ));
    for kind in [RetransKind::Fast, RetransKind::Fast, RetransKind::Rto] {
        e.process(&retrans(5_500, 2, tuple(2, 80), c, Established, kind));
    }
    let mut busy = retrans(5_600, 2, tuple(2, 80), c, Established, RetransKind::Fast);
    if let crate::event::EventKind::Retrans { failed, .. } = &mut busy.kind {
        *failed = Some(16);
    }
    e.process(&busy);
    e.process(&state(6_000, 3, tuple(3, 80), c, Established, CloseWait));
    let mut top = Top::new(SortBy::Retrans, 1_000_000_000, 10, false, false);
    let text = render(Mode::Json, |out| top.finish(&e, 10_000, &context(), out));
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["type"], "top");
    assert_eq!(v["census"]["ESTABLISHED"], 2);
    assert_eq!(v["census"]["CLOSE_WAIT"], 1);
    let flows = v["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 3);
    assert_eq!(flows[0]["lport"], 2, "most retransmits first");
    assert_eq!(
        flows[0]["retrans"], 4,
        "the failed attempt is no retransmit"
    );
    assert_eq!(flows[0]["retrans_segs"], 4);
    assert_eq!(
        flows[0]["retrans_by_kind"],
        serde_json::json!({"data": 1, "rto": 1, "fast": 2})
    );
    assert_eq!(flows[0]["retrans_failed"], 1);
    let text = render(Mode::Text, |out| top.finish(&e, 10_000, &context(), out));
    assert!(
        text.contains("\nretransmits: data=1 rto=1 fast=2 failed=1\n"),
        "{text}"
    );
    assert_eq!(flows[1]["retrans_by_kind"], serde_json::json!({}));
    assert_eq!(flows[0]["handshake_us"], 1);
    assert_eq!(flows[0]["role"], "client");
    assert_eq!(v["transitions"]["SYN_SENT->ESTABLISHED"], 2);
}

/// The same tuple in two namespaces: `netns` tells them apart in JSON,
/// and `top` has a census per namespace beside the total.
#[test]
fn namespaces_in_json() {
    let (a, b) = (4_026_532_001, 4_026_532_002);
    let listener = |netns| crate::event::Tuple {
        netns,
        ..tuple(8080, 0)
    };
    let mut e = Engine::default();
    e.process(&state(1, 1, listener(a), owner(1, "a"), Close, Listen));
    e.process(&state(2, 2, listener(b), owner(2, "b"), Close, Listen));
    e.process(&state(
        3,
        3,
        tuple(8080, 4000),
        owner(9, "c"),
        Listen,
        SynRecv,
    ));
    let ann = Annotated {
        event: state(1, 1, listener(a), owner(1, "a"), Close, Listen),
        owner: Some(owner(1, "a")),
        prev_state_ns: None,
        state: None,
    };
    let line = render(Mode::Json, |out| States.on_event(&ann, &context(), out));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["netns"], 4_026_532_001u64);
    let mut top = Top::new(SortBy::Age, 1_000_000_000, 10, false, false);
    let text = render(Mode::Json, |out| top.finish(&e, 10, &context(), out));
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["census"]["LISTEN"], 2);
    let by = &v["census_by_netns"];
    assert_eq!(by["4026532001"]["LISTEN"], 1, "{v:#}");
    assert_eq!(by["4026532002"]["LISTEN"], 1, "{v:#}");
    assert_eq!(by["0"]["SYN_RECV"], 1, "{v:#}");
    let netns: Vec<u64> = v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["netns"].as_u64().unwrap())
        .collect();
    assert_eq!(netns, [4_026_532_001, 4_026_532_002, 0]);
}

/// Text shows the namespace only once there is more than one: the stream
/// gets the header again with a NETNS column when the second comes, and
/// every later line has the column, under its header.
#[test]
fn text_grows_a_netns_column_at_the_second_namespace() {
    let at = |ts, netns| Annotated {
        event: state(
            ts,
            ts,
            crate::event::Tuple {
                netns,
                ..tuple(40000, 80)
            },
            owner(5, "x"),
            SynSent,
            Established,
        ),
        owner: Some(owner(5, "x")),
        prev_state_ns: Some(1_000),
        state: None,
    };
    let (mut out, got) = capture(Mode::Text, None);
    out.start(&start(), States.columns());
    for (ts, netns) in [(1, 7), (2, 0), (3, 7), (4, 4_026_532_001), (5, 7)] {
        States.on_event(&at(ts, netns), &context(), &mut out);
    }
    out.close().unwrap();
    let text = got.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert!(lines[0].starts_with("TIME(UTC)") && !lines[0].contains("NETNS"));
    assert!(!lines[1].contains(" 7 "), "{text}");
    // The second namespace: the header again, with NETNS.
    assert!(lines[4].starts_with("TIME(UTC)"), "{text}");
    // The column comes right after REMOTE (23 characters and a space), in
    // the header and in the lines alike; the rest moves by its width.
    let after_remote = |line: &str, remote: &str| line.find(remote).unwrap() + 24;
    let h = after_remote(lines[0], "REMOTE");
    assert_eq!(
        lines[4],
        format!("{}NETNS      {}", &lines[0][..h], &lines[0][h..]),
        "{text}"
    );
    let k = after_remote(lines[1], "127.0.0.1:80");
    for (line, netns) in [(lines[5], "4026532001"), (lines[6], "7")] {
        assert_eq!(
            line,
            format!("{}{netns:<10} {}", &lines[1][..k], &lines[1][k..]),
            "{text}"
        );
    }
    // JSON needs none of this: every record has `netns`.
}

#[test]
fn top_text_shows_namespaces_when_there_are_several() {
    let mut e = Engine::default();
    let listener = |netns| crate::event::Tuple {
        netns,
        ..tuple(8080, 0)
    };
    e.process(&state(1, 1, listener(11), owner(1, "a"), Close, Listen));
    let mut top = Top::new(SortBy::Age, 1, 10, false, false);
    let one = render(Mode::Text, |out| top.finish(&e, 2, &context(), out));
    assert!(!one.contains("NETNS") && !one.contains("netns"), "{one}");
    e.process(&state(2, 2, listener(22), owner(2, "b"), Close, Listen));
    let two = render(Mode::Text, |out| top.finish(&e, 3, &context(), out));
    assert!(two.contains("sockets: LISTEN=2"), "{two}");
    assert!(two.contains("  netns 11        : LISTEN=1"), "{two}");
    assert!(two.contains("  netns 22        : LISTEN=1"), "{two}");
    let header = two.lines().find(|l| l.contains("PID")).unwrap();
    let col = header.find("NETNS").unwrap();
    assert_eq!(col, header.find("REMOTE").unwrap() + 24, "{two}");
    let rows: Vec<&str> = two.lines().filter(|l| l.contains("LISTEN ")).collect();
    assert_eq!(rows.len(), 2, "{two}");
    assert_eq!(&rows[0][col..col + 3], "11 ", "{two}");
    assert_eq!(&rows[1][col..col + 3], "22 ", "{two}");
    assert_eq!(
        rows[0].find("LISTEN").unwrap(),
        header.find("STATE").unwrap()
    );
}

#[test]
fn top_text_table_has_a_census_line() {
    let mut e = Engine::default();
    e.process(&state(
        1,
        1,
        tuple(1, 80),
        owner(1, "c"),
        SynSent,
        Established,
    ));
    let mut top = Top::new(SortBy::Age, 1, 10, false, true);
    let text = render(Mode::Text, |out| top.finish(&e, 2, &context(), out));
    assert!(text.contains("sockets: ESTABLISHED=1"), "{text}");
    assert!(text.contains("RTT(ms)"), "{text}");
}

/// A process may name itself anything (`prctl(PR_SET_NAME)`): no text
/// output may pass its control characters to the terminal.
#[test]
fn hostile_process_names_are_escaped_in_every_text_view() {
    let evil = owner(66, "\x1b[31mev\nil\u{202e}");
    let ev = state(1, 1, tuple(1, 80), evil, Close, SynSent);
    let a = Annotated {
        event: ev,
        owner: Some(evil),
        prev_state_ns: None,
        state: None,
    };
    let mut e = Engine::default();
    e.process(&state(1, 1, tuple(0, 80), evil, Close, SynSent));
    let text = render(Mode::Text, |out| {
        States.on_event(&a, &context(), out);
        Connect::default().on_connect(&outcome(None, Some(111)), &context(), out);
        Top::new(SortBy::Age, 1, 10, false, false).finish(&e, 2, &context(), out);
    });
    for bad in ['\x1b', '\u{202e}', '\r', '\x07'] {
        assert!(!text.contains(bad), "{bad:?} in {text:?}");
    }
    // Lines are the records' own: no forged line starts with "il".
    assert!(!text.lines().any(|l| l.starts_with("il")), "{text}");
    assert!(text.contains("\\e[31mev\\nil"), "{text}");
    // JSON escapes them its own way.
    let json = render(Mode::Json, |out| States.on_event(&a, &context(), out));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["comm"], "\x1b[31mev\nil\u{202e}");
}

/// A writer that takes nothing until released, like a reader that stopped.
struct Stalled(
    std::sync::mpsc::Receiver<()>,
    Vec<u8>,
    std::sync::mpsc::Sender<Vec<u8>>,
);
impl Write for Stalled {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.recv();
        self.1.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.2.send(std::mem::take(&mut self.1));
        Ok(())
    }
}

/// Under a stalled reader, records out plus records reported lost equal
/// the records produced, and the lost counts reach the output themselves
/// (they ride in the next batch that gets out, not one that is dropped).
#[test]
fn a_stalled_reader_loses_nothing_silently() {
    let (release, gate) = std::sync::mpsc::channel();
    let (tx, rx) = std::sync::mpsc::channel();
    let spec = OutputSpec {
        queue_bytes: 64 << 10,
        ..OutputSpec::stdout(Mode::Json)
    };
    let mut out = Output::to_writer(&spec, Stalled(gate, Vec::new(), tx)).unwrap();
    out.start(&start(), Columns::None);
    let cx = context();
    let produced = 20_000u64;
    for i in 0..produced {
        let a = Annotated {
            event: state(i, i, tuple(1, 80), owner(1, "x"), SynSent, Established),
            owner: None,
            prev_state_ns: None,
            state: None,
        };
        States.on_event(&a, &cx, &mut out);
        if i % 1000 == 0 {
            out.tick(i);
        }
    }
    // Upstream losses are counted the same way.
    out.lost(crate::record::lost::KERNEL, 7);
    out.tick(produced);
    // The reader comes back.
    std::thread::spawn(move || while release.send(()).is_ok() {});
    out.close().unwrap();
    let text: String = rx.iter().map(|b| String::from_utf8(b).unwrap()).collect();
    let mut records = 0;
    let mut lost_output = 0;
    let mut lost_kernel = 0;
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        match (v["type"].as_str(), v["source"].as_str()) {
            (Some("state"), _) => records += 1,
            (Some("lost"), Some("output")) => lost_output += v["count"].as_u64().unwrap(),
            (Some("lost"), Some("kernel")) => lost_kernel += v["count"].as_u64().unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(lost_output > 0, "the queue should have filled");
    assert_eq!(records + lost_output, produced);
    assert_eq!(lost_kernel, 7);
    // About 64 KiB queued at most: a few hundred records, not thousands.
    assert!(
        records < 2_000,
        "{records} records got through a 64 KiB queue"
    );
}

/// A full disk ends the run with an error that says what it cost.
#[test]
fn write_errors_are_errors_and_a_closed_pipe_is_not() {
    struct Fails(std::io::ErrorKind);
    impl Write for Fails {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    for (kind, ok) in [
        (std::io::ErrorKind::StorageFull, false),
        (std::io::ErrorKind::BrokenPipe, true),
    ] {
        let mut out = Output::to_writer(&OutputSpec::stdout(Mode::Json), Fails(kind)).unwrap();
        out.start(&start(), Columns::None);
        let a = Annotated {
            event: state(1, 1, tuple(1, 80), owner(1, "x"), SynSent, Established),
            owner: None,
            prev_state_ns: None,
            state: None,
        };
        States.on_event(&a, &context(), &mut out);
        // Time passes (ticks hand batches over at most every 10 ms).
        std::thread::sleep(std::time::Duration::from_millis(20));
        out.tick(1);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(out.done(), "{kind:?}: the writer stopped");
        let r = out.close();
        assert_eq!(r.is_ok(), ok, "{kind:?}: {r:?}");
        if let Err(e) = r {
            assert!(e.to_string().contains("cannot write the output"), "{e}");
        }
    }
}

/// A recording names sockets by a keyed hash, never by kernel address.
#[test]
fn recordings_hold_no_kernel_addresses() {
    let addr = 0xffff_8881_0a2b_3c40u64;
    let events = [
        state(1, addr, tuple(1, 80), owner(1, "x"), Close, SynSent),
        state(2, addr, tuple(1, 80), owner(1, "x"), SynSent, Established),
        state(3, 0, tuple(1, 80), owner(1, "x"), SynSent, Established),
    ];
    let text = render(Mode::Recording { binary: false }, |out| {
        for ev in &events {
            out.emit(&crate::views::Rec::Event(ev));
        }
    });
    assert!(!text.contains(&addr.to_string()), "{text}");
    let socks: Vec<u64> = text
        .lines()
        .skip(1)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["sock"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(socks.len(), 3, "{text}");
    assert_eq!(socks[0], socks[1], "one socket keeps one name");
    assert_ne!(socks[0], addr);
    assert_eq!(socks[2], 0, "no socket stays no socket");
}
