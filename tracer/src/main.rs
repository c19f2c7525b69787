//! The `tcptrace` binary: parse arguments, build the view, run it live or
//! over a recording, and map errors to exit codes (2 usage, 1 failure, 0
//! otherwise, including a closed output pipe).

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser as _;
use tracer::{
    cli::{Cli, Command, ViewCommand},
    live::{self, RunOptions},
    replay::{self, ReplayOptions},
    sinks::Mode,
    views::{
        View, check,
        connect::Connect,
        hist::{Hist, Metric},
        record::Record,
        resets::Resets,
        retrans::Retrans,
        states::States,
        top::Top,
    },
};

fn main() -> ExitCode {
    tracer::memory::tune();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with status 0; usage errors to
            // stderr with status 2.
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let result = match cli.command {
        Command::View(v) => {
            let (mut view, what) = build(&v);
            let a = v.common();
            live::run(
                view.as_mut(),
                RunOptions {
                    filter: a.filter.filter(),
                    mode: mode(a.json),
                    duration: a.run.duration,
                    count: a.run.count,
                    ring_bytes: a.run.ring_size,
                    what,
                    output: None,
                },
            )
        }
        Command::Record(r) => {
            let mut view = Record {
                wants: tracer::hooks::Wants {
                    rtt: r.rtt,
                    ..tracer::hooks::Wants::FLOWS
                },
                binary: r.binary,
            };
            live::run(
                &mut view,
                RunOptions {
                    filter: r.filter.filter(),
                    mode: Mode::Json,
                    duration: r.run.duration,
                    count: r.run.count,
                    ring_bytes: r.run.ring_size,
                    what: "TCP events for a recording",
                    output: r.output,
                },
            )
        }
        Command::Replay { file, view } => {
            let (mut v, _) = build(&view);
            let a = view.common();
            replay::run(
                &file,
                v.as_mut(),
                ReplayOptions {
                    filter: a.filter.filter(),
                    mode: mode(a.json),
                    count: a.run.count,
                },
            )
        }
        Command::Check { json } => match check::run(json) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcptrace: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn mode(json: bool) -> Mode {
    if json { Mode::Json } else { Mode::Text }
}

/// The view for a subcommand, and what the start-up message says it watches.
fn build(v: &ViewCommand) -> (Box<dyn View>, &'static str) {
    let secs = |d: std::time::Duration| d.as_nanos() as u64;
    match v {
        ViewCommand::Retrans(_) => (Box::new(Retrans), "TCP retransmits"),
        ViewCommand::States(_) => (Box::new(States), "TCP state transitions"),
        ViewCommand::Connect(a) => (
            Box::new(Connect {
                min_ns: (a.min_ms.unwrap_or(0.0) * 1e6) as u64,
            }),
            "TCP connection attempts",
        ),
        ViewCommand::Resets(_) => (Box::new(Resets), "TCP resets"),
        ViewCommand::Hist(a) => (
            Box::new(Hist::new(
                if a.rtt {
                    Metric::Rtt
                } else {
                    Metric::Handshake
                },
                a.per_flow,
                a.interval.map(secs),
            )),
            if a.rtt {
                "TCP round-trip times"
            } else {
                "TCP handshake latency"
            },
        ),
        ViewCommand::Top(a) => {
            let mut top = Top::new(
                a.sort,
                secs(a.interval),
                a.limit,
                !a.common.json && std::io::stdout().is_terminal(),
                a.rtt,
            );
            top.linger_ns = secs(a.linger);
            (Box::new(top), "TCP flows")
        }
    }
}
