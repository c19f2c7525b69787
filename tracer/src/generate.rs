//! `tcptrace generate`: the man pages and shell completions, made from the
//! command-line definition itself (so they never drift from `--help`).
//! `cargo xtask install` runs it to put them in place.

use std::{io::Write, path::Path};

use anyhow::{Context as _, Result};
use clap::{Args, CommandFactory as _, Subcommand};
use clap_complete::Shell;

use crate::cli::Cli;

/// What `tcptrace generate` writes.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub what: Generate,
}

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// Man pages in section 8: tcptrace.8 and one tcptrace-SUBCOMMAND.8
    /// per subcommand, written into DIR.
    Man { dir: std::path::PathBuf },
    /// A completion script for SHELL on standard output.
    Completions { shell: Shell },
}

/// Runs `tcptrace generate`.
pub fn run(args: &GenerateArgs) -> Result<()> {
    match &args.what {
        Generate::Man { dir } => man_pages(dir),
        Generate::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            completions(*shell, &mut out)?;
            out.flush().context("writing the completion script")
        }
    }
}

/// Writes tcptrace.8 and tcptrace-SUB.8 for every visible subcommand
/// (nested ones too: tcptrace-replay-top.8). clap_mangen's own
/// `generate_to` fixes section 1; tcptrace needs root, so section 8.
pub fn man_pages(dir: &Path) -> Result<()> {
    fn write(cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub.clone(), dir)?;
        }
        clap_mangen::Man::new(cmd)
            .section("8")
            .generate_to(dir)
            .map(drop)
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = command().disable_help_subcommand(true);
    cmd.build();
    write(cmd, dir).with_context(|| format!("writing man pages into {}", dir.display()))
}

/// Writes the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) -> Result<()> {
    let mut cmd = command();
    clap_complete::generate(shell, &mut cmd, "tcptrace", out);
    Ok(())
}

/// The CLI definition (`generate` itself is hidden there), with the
/// one-line summary a man page's NAME section wants.
fn command() -> clap::Command {
    Cli::command().about("watch the Linux TCP stack from inside the kernel")
}
