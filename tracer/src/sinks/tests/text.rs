//! Text columns, the namespace column, top's text table and escapes.

use super::*;

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
