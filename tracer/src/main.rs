//! The `tcptrace` binary: parse arguments, run the subcommand, map errors
//! to exit codes (2 usage, 1 failure, 0 otherwise, including a closed pipe).

use std::process::ExitCode;

use clap::Parser as _;
use tracer::{
    cli::{Cli, Command, StreamArgs},
    hooks::Wants,
    live::{self, RunOptions},
    sinks::Mode,
    views::{View, check, retrans::Retrans, states::States},
};

fn main() -> ExitCode {
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
        Command::Retrans(a) => stream(&mut Retrans, &a, "TCP retransmits", true),
        Command::States(a) => stream(&mut States, &a, "TCP state transitions", false),
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

fn stream(
    view: &mut dyn View,
    a: &StreamArgs,
    what: &'static str,
    retrans: bool,
) -> anyhow::Result<()> {
    live::run(
        view,
        RunOptions {
            filter: a.filter(),
            mode: if a.json { Mode::Json } else { Mode::Text },
            duration: a.duration,
            count: a.count,
            wants: Wants {
                retrans,
                connect: false,
            },
            what,
        },
    )
}
