//! The agent's one pipeline over the committed recording, root-free: its
//! JSON log holds exactly the lines the four streaming views give (their
//! golden files), `--events` keeps only the types asked for, and the
//! metrics it taps add up to the records.

use std::collections::{BTreeMap, HashSet};

use prometheus_client::{encoding::prometheus_text, registry::Registry};
use tracer::{
    filter::Filter,
    metrics::{self, Metrics},
    pipeline::Pipeline,
    replay::replay_into,
    sinks::{Mode, Output, OutputSpec, tap::Types},
    views::agent::Agent,
};

mod common;

use common::{FIXTURES, Sink};

/// The agent over the fixture: its log and its registry.
fn agent(types: Types) -> (String, Registry) {
    let (m, registry) = Metrics::new(&metrics::Config {
        ports: HashSet::new(),
        extra: Vec::new(),
        max_series: 1000,
        rtt: false,
    });
    let sink = Sink::default();
    let out = Output::to_writer(&OutputSpec::stdout(Mode::Json), sink.clone())
        .unwrap()
        .with_tap(Box::new(m), types);
    let mut p = Pipeline::with_output(Box::new(Agent::new(false)), Filter::default(), out);
    let recording = format!("{FIXTURES}/recordings/loopback.jsonl");
    let input = std::io::BufReader::new(std::fs::File::open(recording).unwrap());
    replay_into(input, &mut p).unwrap();
    p.finish().unwrap();
    let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    (log, registry)
}

fn count_lines(text: &str, into: &mut BTreeMap<String, u32>) {
    for l in text.lines() {
        *into.entry(l.to_string()).or_default() += 1;
    }
}

/// The sum of a metric's series.
fn sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn the_log_is_what_the_four_views_give_and_the_metrics_add_up() {
    let (log, registry) = agent(Types::default());
    let mut got = BTreeMap::new();
    count_lines(&log, &mut got);
    let mut want = BTreeMap::new();
    for view in ["states", "retrans", "resets", "connect"] {
        let golden = format!("{FIXTURES}/golden/{view}.json.out");
        count_lines(&std::fs::read_to_string(golden).unwrap(), &mut want);
    }
    assert_eq!(
        got, want,
        "the agent's log and the views' golden JSON differ"
    );

    let mut body = String::new();
    prometheus_text::encode(&mut body, &registry).unwrap();
    let of = |ty: &str| {
        log.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["type"] == ty)
            .collect::<Vec<_>>()
    };
    let segs: u64 = of("retrans")
        .iter()
        .map(|r| r["segs"].as_u64().unwrap_or(1))
        .sum();
    // (The fixture has no retransmits: 0 = 0; the privileged tests
    // compare with the kernel's RetransSegs.)
    assert_eq!(
        sum(&body, "tcptrace_retransmitted_segments_total"),
        segs as f64
    );
    assert_eq!(
        sum(&body, "tcptrace_transitions_total"),
        of("state").len() as f64
    );
    assert_eq!(
        sum(&body, "tcptrace_resets_total"),
        of("reset").len() as f64
    );
    assert_eq!(
        sum(&body, "tcptrace_connect_attempts_total"),
        of("connect").len() as f64
    );
    let ok = of("connect")
        .iter()
        .filter(|c| c["error"].is_null())
        .count();
    assert_eq!(
        sum(&body, "tcptrace_handshake_duration_seconds_count"),
        ok as f64
    );
    assert_eq!(
        sum(&body, "tcptrace_records_total"),
        log.lines().count() as f64
    );
    // No port is a metrics port here: every endpoint is `other`.
    for l in body.lines().filter(|l| l.contains("port=\"")) {
        assert!(l.contains("port=\"other\""), "{l}");
    }
    assert!(body.contains("tcptrace_build_info{version="));
    // The recording's hook plan: its programs, not its BTF offsets.
    assert!(body.contains("tcptrace_hook_attached{hook=\"sock:inet_sock_set_state\"} 1"));
    assert!(!body.contains("hook=\"BTF"));
}

#[test]
fn events_choose_the_log_not_the_metrics() {
    let (log, registry) = agent(Types::only(vec!["reset", "connect"]));
    let (all, _) = agent(Types::default());
    assert_eq!(log.lines().count(), 4 + 7);
    assert!(
        log.lines()
            .all(|l| l.starts_with("{\"type\":\"reset\"") || l.starts_with("{\"type\":\"connect\"")),
        "{log}"
    );
    let mut body = String::new();
    prometheus_text::encode(&mut body, &registry).unwrap();
    assert_eq!(
        sum(&body, "tcptrace_records_total"),
        all.lines().count() as f64
    );
}
