//! Each record's JSON schema, namespaces included.

use super::*;

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
