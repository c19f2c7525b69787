//! `tcptrace doctor`: one live session of [`views::doctor`] (the events,
//! the kernel's counters, the engine's sockets) for `--duration`, then the
//! findings worst first and a verdict whose status is the exit status.

use std::time::Duration;

use anyhow::Result;
use clap::Args;

use crate::{
    cli::FilterArgs,
    live::{self, RunOptions},
    pipeline::Pipeline,
    sinks::{Mode, OutputSpec},
    views::doctor::{self, Doctor, finding::Status, playbooks::Options},
};

pub const EXAMPLES: &str = "\
Examples:
  sudo tcptrace doctor                    watch 10 s, then the findings
  sudo tcptrace doctor --duration 60      a longer look at a rare problem
  sudo tcptrace doctor --netns /run/netns/blue
  sudo tcptrace doctor --port 8080        that service's sockets only
  sudo tcptrace doctor --json | jq 'select(.type == \"finding\")'
  sudo tcptrace doctor --wan              retransmission rates judged for a WAN
  sudo tcptrace doctor --json | jq 'select(.playbook == \"close_wait_leak\")'
  sudo tcptrace doctor --json | jq 'select(.playbook == \"rst_storm\").evidence'

Playbooks: listen_overflow, port_exhaustion, close_wait_leak,
retrans_spike, rst_storm, handshake_slow, connect_failures, keepalive,
settings. Each finding says the symptom, the evidence (with thresholds),
who (processes, listeners, destinations), the likely cause, what to do
now and the lasting fix.

Exit status: 0 healthy (no finding), 3 at least one warning, 4 at least
one critical finding, 1 error, 2 usage error.";

/// `tcptrace doctor`.
#[derive(Debug, Args, Clone)]
pub struct DoctorArgs {
    /// Watch this many seconds before judging.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = crate::cli::parse_secs, allow_negative_numbers = true)]
    pub duration: Duration,
    /// JSON Lines: one `finding` record each, then a `doctor` record.
    #[arg(long)]
    pub json: bool,
    /// Judge retransmission rates by the WAN line (0.5 %) instead of the
    /// LAN one (0.01 %).
    #[arg(long)]
    pub wan: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Runs one session; the status says how it ended.
pub fn run(a: &DoctorArgs) -> Result<Status> {
    let view = Doctor::new(Options { wan: a.wan });
    let status = view.status_cell();
    let mode = if a.json { Mode::Json } else { Mode::Text };
    let p = Pipeline::new(Box::new(view), a.filter.filter(), &OutputSpec::stdout(mode))?;
    live::run(
        p,
        RunOptions {
            duration: Some(a.duration),
            ring_bytes: None,
            connect: crate::hooks::connect::Choice::First,
            forms: crate::hooks::forms::Choice::First,
            what: "the TCP stack for the doctor's playbooks",
            keys: None,
            reopen: None,
        },
    )?;
    Ok(doctor::status_of(&status))
}
