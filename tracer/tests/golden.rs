//! Every view over the committed recording, text and JSON, gives exactly
//! the bytes in `fixtures/golden/` (made before the pipeline was redesigned
//! around one door and typed records; see its README). Root-free.
//!
//! After an intended change of output, `GOLDEN_UPDATE=1 cargo test -p
//! tracer --test golden` rewrites the files; review the diff and say so in
//! the commit.

use std::path::Path;

use clap::Parser as _;
use tracer::{
    cli::{Cli, Command},
    pipeline::Pipeline,
    replay::replay_into,
    sinks::Output,
};

mod common;

use common::{FIXTURES, Sink};

/// `tcptrace replay <fixture> ARGS...`, as the binary would run it with
/// standard output not a terminal.
fn replay(args: &str) -> String {
    let recording = format!("{FIXTURES}/recordings/loopback.jsonl");
    let argv = ["tcptrace", "replay", &recording]
        .into_iter()
        .chain(args.split_whitespace());
    let Command::Replay { view, .. } = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not a replay")
    };
    let (v, _) = view.view(false);
    let a = view.common();
    let spec = view.output(false);
    let sink = Sink::default();
    let out = Output::to_writer(&spec, sink.clone()).unwrap();
    let mut p = Pipeline::with_output(v, a.filter.filter(), out);
    let input = std::io::BufReader::new(std::fs::File::open(&recording).unwrap());
    replay_into(input, &mut p).unwrap();
    p.finish().unwrap();
    String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
}

#[test]
fn every_view_replays_byte_for_byte_as_before() {
    let dir = Path::new(FIXTURES).join("golden");
    let list = std::fs::read_to_string(dir.join("ARGS")).unwrap();
    let mut checked = 0;
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let (name, args) = line.split_once(':').unwrap();
        let path = dir.join(format!("{name}.out"));
        let got = replay(args);
        if std::env::var_os("GOLDEN_UPDATE").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap();
        assert!(
            got == want,
            "tcptrace replay loopback.jsonl {args}\n--- want\n{want}\n--- got\n{got}"
        );
        checked += 1;
    }
    assert_eq!(checked, 22);
}
