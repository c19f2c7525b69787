//! The `tcptrace` binary: parse arguments, put together the pipeline (a
//! view and an output), run a source into it (the live kernel or a
//! recording), and map errors to exit codes (2 usage, 1 failure, 0
//! otherwise, including a closed output pipe).

use std::{io::IsTerminal, process::ExitCode};

use anyhow::Result;
use clap::Parser as _;
use tracer::{
    cli::{Cli, Command},
    counters::{self, source::StatOptions},
    filter::Filter,
    hooks::Wants,
    live::{self, RunOptions},
    pipeline::Pipeline,
    replay,
    sinks::{Mode, OutputSpec},
    views::{check, record::Record, stat::Stat},
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
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracer::stderr::say(format_args!("error: {e:#}"));
            ExitCode::from(1)
        }
    }
}

/// Keys from the terminal, when `top` is drawn on it (the output has put
/// it in raw mode by now).
fn keys(mode: Mode) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<tracer::keys::Key>>> {
    Ok(match mode {
        Mode::Screen => Some(tracer::keys::read_terminal()?),
        _ => None,
    })
}

/// Runs a command; `Ok` holds the exit status (1: a failure already
/// explained; the doctor's 3 and 4: what it found).
fn run(command: Command) -> Result<u8> {
    match command {
        Command::View(v) => {
            let terminal = std::io::stdout().is_terminal();
            let (view, what) = v.view(terminal);
            let a = v.common();
            let mode = v.mode(terminal);
            let p = Pipeline::new(view, a.filter.filter(), &v.output(terminal))?;
            live::run(
                p,
                RunOptions {
                    duration: a.run.duration,
                    ring_bytes: a.run.ring_size,
                    connect: a.run.connect_choice(),
                    forms: a.run.form_choice(),
                    what,
                    keys: keys(mode)?,
                    reopen: None,
                },
            )?;
        }
        Command::Record(r) => {
            let view = Record {
                wants: Wants {
                    rtt: r.rtt,
                    ..Wants::FLOWS
                },
            };
            let spec = OutputSpec {
                path: r.output.clone(),
                force: r.force,
                ..r.run.output(Mode::Recording { binary: r.binary })
            };
            let p = Pipeline::new(Box::new(view), r.filter.filter(), &spec)?;
            live::run(
                p,
                RunOptions {
                    duration: r.run.duration,
                    ring_bytes: r.run.ring_size,
                    connect: r.run.connect_choice(),
                    forms: r.run.form_choice(),
                    what: "TCP events for a recording",
                    keys: None,
                    reopen: None,
                },
            )?;
        }
        Command::Replay { file, view } => {
            let terminal = std::io::stdout().is_terminal();
            let (v, _) = view.view(terminal);
            let mode = view.mode(terminal);
            let p = Pipeline::new(v, view.common().filter.filter(), &view.output(terminal))?;
            replay::run(&file, p, keys(mode)?)?;
        }
        Command::Check { json } => return Ok(if check::run(json)? { 0 } else { 1 }),
        Command::Agent(a) => tracer::agent::run(&a)?,
        Command::Doctor(d) => return Ok(tracer::doctor::run(&d)?.exit_code()),
        Command::Generate(g) => tracer::generate::run(&g)?,
        // No eBPF: only the kernel's counters.
        Command::Stat(s) => {
            let spec = OutputSpec {
                count: s.count(),
                ..OutputSpec::stdout(if s.json { Mode::Json } else { Mode::Text })
            };
            let p = Pipeline::new(Box::new(Stat::default()), Filter::default(), &spec)?;
            counters::source::run(
                p,
                StatOptions {
                    interval: s.interval(),
                    duration: s.duration,
                    netns: s.netns.clone(),
                },
            )?;
        }
    }
    Ok(0)
}
