//! The command line as users type it: what parses, what is refused and
//! what each command means.

use super::*;
use crate::event::{RetransKind, TcpState};
use clap::CommandFactory;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("tcptrace").chain(args.iter().copied()))
}

#[test]
fn cli_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn filters_from_flags() {
    let Command::View(ViewCommand::Retrans(a)) =
        parse(&["retrans", "--port", "443", "-6", "-p", "7", "-c", "3"])
            .unwrap()
            .command
    else {
        panic!("wrong subcommand")
    };
    let f = a.common.filter.filter();
    assert_eq!(
        (f.ports, f.pids, f.family),
        (vec![443], vec![7], Some(crate::event::Family::V6))
    );
    assert_eq!(a.common.run.count, Some(3));
    let Command::View(ViewCommand::Retrans(a)) =
        parse(&["retrans", "--kind", "rto,fast", "--kind", "tlp", "--failed"])
            .unwrap()
            .command
    else {
        panic!("wrong subcommand")
    };
    use RetransKind::*;
    assert_eq!((a.kind, a.failed), (vec![Rto, Fast, Tlp], true));
    let e = parse(&["retrans", "--kind", "slow"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'slow' is not a retransmit kind"), "{e}");
    let Command::Replay { view, .. } = parse(&[
        "replay", "x.jsonl", "top", "--sort", "latency", "--port", "80",
    ])
    .unwrap()
    .command
    else {
        panic!("wrong subcommand")
    };
    assert_eq!(view.common().filter.ports, [80]);
    let Command::View(ViewCommand::Top(a)) =
        parse(&["top", "--netns", "4026532001"]).unwrap().command
    else {
        panic!("wrong subcommand")
    };
    assert_eq!(a.common.filter.filter().netns, Some(4_026_532_001));
}

#[test]
fn stat_takes_interval_and_count_positionally() {
    let stat = |args: &[&str]| match parse(args).unwrap().command {
        Command::Stat(s) => s,
        c => panic!("not stat: {c:?}"),
    };
    let s = stat(&["stat"]);
    assert_eq!(s.interval(), Duration::from_secs(1));
    assert_eq!(s.count(), None);
    let s = stat(&["stat", "0.5", "3", "--json"]);
    assert_eq!(s.interval(), Duration::from_millis(500));
    assert_eq!(s.count(), Some(3));
    assert!(s.json);
    let s = stat(&["stat", "--interval", "2", "-c", "4"]);
    assert_eq!((s.interval(), s.count()), (Duration::from_secs(2), Some(4)));
    let s = stat(&["stat", "--netns", "/proc/self/ns/net", "2"]);
    assert_eq!(s.netns.as_deref(), Some("/proc/self/ns/net"));
    for (args, needle) in [
        (&["stat", "0"][..], "not a duration"),
        (&["stat", "-1"][..], "not a duration"),
        (&["stat", "1", "0"][..], "not a count"),
        (&["stat", "1", "2", "3"][..], "unexpected argument"),
        (
            &["stat", "--netns", "/nonexistent"][..],
            "network namespace",
        ),
        (
            &["stat", "--netns", "/proc/self/ns/mnt"][..],
            "not a network namespace",
        ),
    ] {
        let e = parse(args).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{args:?}");
        assert!(e.to_string().contains(needle), "{args:?}: {e}");
    }
}

#[test]
fn bad_values_are_usage_errors_with_a_sentence() {
    for (args, needle) in [
        (&["states", "--port", "70000"][..], "not a port"),
        (&["states", "--pid", "-1"][..], "not a process id"),
        (&["states", "-p", "abc"][..], "not a process id"),
        (&["states", "--duration", "0"][..], "not a duration"),
        (&["states", "-c", "0"][..], "not a count"),
        (&["states", "-c", "-5"][..], "not a count"),
        (&["states", "--duration", "-1"][..], "not a duration"),
        (&["states", "--duration", "1e19"][..], "not a duration"),
        (&["states", "--duration", "1.85e19"][..], "not a duration"),
        (&["states", "--duration", "NaN"][..], "not a duration"),
        (&["hist", "--interval", "1e20"][..], "not a duration"),
        (&["top", "--linger", "1e20"][..], "not a duration"),
        (&["top", "--interval", "inf"][..], "not a duration"),
        (
            &["connect", "--min-ms", "-3"][..],
            "not a number of milliseconds",
        ),
        (&["states", "-p", "999999999"][..], "pid_max"),
        (&["states", "--output-queue", "1K"][..], "output queue"),
        (&["states", "--ring-size", "3M"][..], "power of two"),
        (&["states", "--ring-size", "32K"][..], "power of two"),
        (&["record", "--ring-size", "2T"][..], "power of two"),
        (
            &["states", "--netns", "/nonexistent"][..],
            "network namespace",
        ),
        (
            &["top", "--netns", "/proc/self/ns/mnt"][..],
            "not a network namespace",
        ),
        (
            &["connect", "--connect-plan", "ebpf"][..],
            "not a connect plan: use one of fexit, kprobe, syscalls",
        ),
    ] {
        let e = parse(args).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{args:?}");
        assert!(e.to_string().contains(needle), "{args:?}: {e}");
    }
    for (arg, bytes) in [
        ("64K", 65_536),
        ("8M", 8 << 20),
        ("1G", 1 << 30),
        ("1048576", 1 << 20),
    ] {
        assert_eq!(parse_ring_size(arg), Ok(bytes), "{arg}");
    }
    let Command::Record(r) = parse(&["record", "--connect-plan", "kprobe"])
        .unwrap()
        .command
    else {
        panic!("not record");
    };
    assert_eq!(r.run.connect_choice(), Choice::Only(ConnectPlan::Kprobe));
    assert_eq!(r.run.form_choice(), forms::Choice::First);
    let Command::View(v) = parse(&["states", "--hook-type", "tracepoint"])
        .unwrap()
        .command
    else {
        panic!("not a view");
    };
    assert_eq!(
        v.common().run.form_choice(),
        forms::Choice::Only(Form::Tracepoint)
    );
    // The name it had when only state transitions had two forms.
    let Command::View(v) = parse(&["states", "--state-hook", "tp_btf"])
        .unwrap()
        .command
    else {
        panic!("not a view");
    };
    assert_eq!(v.common().run.form_choice(), forms::Choice::Only(Form::Btf));
    assert!(parse(&["states", "--hook-type", "kprobe"]).is_err());
    assert_eq!(parse(&["states", "-4", "-6"]).unwrap_err().exit_code(), 2);
    assert_eq!(parse(&["bogus"]).unwrap_err().exit_code(), 2);
}

#[test]
fn top_takes_states_a_grouping_and_limit_0() {
    let Command::View(ViewCommand::Top(a)) = parse(&[
        "top",
        "--state",
        "close-wait,SYN_RECV",
        "--group",
        "owner",
        "--limit",
        "0",
    ])
    .unwrap()
    .command
    else {
        panic!("wrong subcommand")
    };
    assert_eq!(a.state, [TcpState::CloseWait, TcpState::SynRecv]);
    assert_eq!(a.group, Some(crate::views::top::GroupBy::Owner));
    assert_eq!(a.limit, Some(0));
    // A screen only on a terminal, in text, without --count.
    assert!(a.screen(true) && !a.screen(false));
    let Command::View(v) = parse(&["top", "-c", "3"]).unwrap().command else {
        panic!("wrong subcommand")
    };
    assert_eq!(v.mode(true), Mode::Text);
    let e = parse(&["top", "--state", "OPEN"]).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("not a TCP state"), "{e}");
}
