//! The `tcptrace` binary: parse arguments, put together the pipeline (a
//! view and an output), run a source into it (the live kernel or a
//! recording), and map errors to exit codes (2 usage, 1 failure, 0
//! otherwise, including a closed output pipe).

use std::{io::IsTerminal, process::ExitCode};

use anyhow::Result;
use clap::Parser as _;
use tracer::{
    cli::{Cli, Command},
    hooks::Wants,
    live::{self, RunOptions},
    pipeline::Pipeline,
    replay,
    sinks::{Mode, OutputSpec},
    views::{check, record::Record},
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
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tcptrace: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn mode(json: bool) -> Mode {
    if json { Mode::Json } else { Mode::Text }
}

/// Runs a command; `Ok(false)` is a failure already explained.
fn run(command: Command) -> Result<bool> {
    match command {
        Command::View(v) => {
            let (view, what) = v.view(std::io::stdout().is_terminal());
            let a = v.common();
            let p = Pipeline::new(view, a.filter.filter(), &a.run.output(mode(a.json)))?;
            live::run(
                p,
                RunOptions {
                    duration: a.run.duration,
                    ring_bytes: a.run.ring_size,
                    connect: a.run.connect_choice(),
                    state: a.run.state_choice(),
                    what,
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
                    state: r.run.state_choice(),
                    what: "TCP events for a recording",
                },
            )?;
        }
        Command::Replay { file, view } => {
            let (v, _) = view.view(std::io::stdout().is_terminal());
            let a = view.common();
            let p = Pipeline::new(v, a.filter.filter(), &a.run.output(mode(a.json)))?;
            replay::run(&file, p)?;
        }
        Command::Check { json } => return check::run(json),
        Command::Generate(g) => tracer::generate::run(&g)?,
    }
    Ok(true)
}
