//! Command-line interface: the commands and the options they share (how
//! long a run lasts, where records go); the views' own subcommands are in
//! `views.rs`, the value parsers in `parse.rs`.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

mod every;
mod filter;
mod parse;
mod views;

pub use every::Every;
pub use filter::FilterArgs;
pub(crate) use parse::*;
pub use views::{ConnectArgs, HistArgs, RetransArgs, StreamArgs, TopArgs, ViewCommand};

use crate::{
    hooks::connect::{Choice, ConnectPlan},
    hooks::forms::{self, Form},
    sinks::{Mode, OutputSpec, QUEUE_BYTES},
};

const EXAMPLES: &str = "\
Examples:
  sudo tcptrace retrans               live retransmits: owner, flow, state
  sudo tcptrace retrans --port 443 -c 20
  sudo tcptrace states --pid 1234     transitions of one process's sockets
  sudo tcptrace states -p 1,2 -L 80,443   two processes, local port 80 or 443
  sudo tcptrace resets --comm nginx   sockets of processes named exactly nginx
  sudo tcptrace connect --time local  times in the local zone (or relative)
  sudo tcptrace states --json | jq .  JSON Lines for a log pipeline
  sudo tcptrace connect --min-ms 100  slow or failed connects, with errno
  sudo tcptrace top --sort retrans    per-flow table under a census of states
  sudo tcptrace top --group owner --state CLOSE_WAIT
  sudo tcptrace top 5 12              every 5 s, 12 times (INTERVAL COUNT)
  sudo tcptrace hist --duration 30    handshake latency per destination
  sudo tcptrace hist 10 6 -D 443      every 10 s, 6 rounds, remote port 443
  sudo tcptrace record -o x.jsonl     for `tcptrace replay x.jsonl top` later
  sudo tcptrace check                 what this kernel allows, hooks chosen
  tcptrace stat 5                     the kernel's TCP counters every 5 s
  sudo tcptrace doctor                what is wrong, and the knob to turn

Exit status: 0 on success (also when the output pipe closes), 1 on errors,
2 on usage errors; doctor: 3 a warning, 4 a critical finding.";

/// `--version`: a debug build says so (its user space runs several times
/// slower, and a storm can outrun it where the release build loses nothing).
const VERSION: &str = if cfg!(debug_assertions) {
    concat!(env!("CARGO_PKG_VERSION"), " (debug build)")
} else {
    env!("CARGO_PKG_VERSION")
};

/// Watch the Linux TCP stack from inside the kernel.
#[derive(Debug, Parser)]
#[command(name = "tcptrace", version = VERSION, about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    View(ViewCommand),
    /// Record the decoded event stream to a file (JSON Lines with a header)
    /// for `tcptrace replay` here or on another host.
    #[command(
        after_help = "Examples:\n  sudo tcptrace record -o incident.jsonl --duration 60\n  sudo tcptrace record -o web.jsonl --port 443 --rtt\n  tcptrace replay incident.jsonl top --sort retrans"
    )]
    Record(RecordArgs),
    /// Run a view over a recording, with the output it would have given live.
    #[command(
        after_help = "Examples:\n  tcptrace replay incident.jsonl retrans\n  tcptrace replay incident.jsonl hist --json\n  tcptrace replay incident.jsonl top --port 443"
    )]
    Replay {
        /// The recording (`-` for standard input).
        file: PathBuf,
        #[command(subcommand)]
        view: ViewCommand,
    },
    /// The kernel's own TCP counters every INTERVAL seconds (no eBPF):
    /// opens, failed attempts, resets, segments in and out, retransmitted
    /// segments and the retransmission rate, retransmits by kind,
    /// listen-queue overflows, sockets per state.
    #[command(after_help = STAT_HELP)]
    Stat(StatArgs),
    /// Report what this kernel allows (BTF, tracefs, lockdown, each hook)
    /// and the hook plan tcptrace would use; exits non-zero if the core
    /// tracepoints cannot be attached.
    Check {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Watch for a while, then say what is wrong and what to change: the
    /// playbooks from symptom to evidence to the setting.
    #[command(after_help = crate::doctor::EXAMPLES)]
    Doctor(Box<crate::doctor::DoctorArgs>),
    /// Run headless until stopped: a JSON log and Prometheus metrics.
    #[command(after_help = crate::agent::EXAMPLES)]
    Agent(Box<crate::agent::AgentArgs>),
    /// Man pages and shell completions (`cargo xtask install` uses it).
    #[command(hide = true)]
    Generate(crate::generate::GenerateArgs),
}

const STAT_HELP: &str = "\
Columns, per second over the interval (counters as nstat names them):
  actv pasv   TcpActiveOpens, TcpPassiveOpens    fail  TcpAttemptFails
  estr        TcpEstabResets                     iseg  TcpInSegs
  oseg        TcpOutSegs                         retr  TcpRetransSegs
  retr%       TcpRetransSegs / TcpOutSegs in percent
  ierr        TcpInErrs                          orst  TcpOutRsts
  rto         TcpExtTCPTimeouts (RTO events)     fast  TcpExtTCPFastRetrans
  sstr        TcpExtTCPSlowStartRetrans          tlp   TcpExtTCPLossProbes
  syn         TcpExtTCPSynRetrans                ovfl  TcpExtListenOverflows
  drop        TcpExtListenDrops
  estab tw orphan   sockets ESTABLISHED or CLOSE_WAIT, in TIME_WAIT, orphaned
--json gives each counter's growth over the interval under its kernel name
in snake case (retrans_segs, tcp_fast_retrans, ...), with interval_s.

Examples:
  tcptrace stat                          every second until Ctrl-C
  tcptrace stat 10 6                     six 10-second intervals
  sudo tcptrace stat --netns /run/netns/blue 1 --json
  sudo tcptrace stat --netns 4321        the namespace of process 4321";

/// `tcptrace stat`.
#[derive(Debug, Args, Clone)]
pub struct StatArgs {
    #[command(flatten)]
    pub every: Every,
    /// Seconds between reports (as INTERVAL; default 1).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true)]
    pub interval: Option<Duration>,
    /// Stop after this many reports (as COUNT).
    #[arg(short, long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub count: Option<u64>,
    /// JSON Lines instead of text (schema in the README).
    #[arg(long)]
    pub json: bool,
    /// Read this network namespace's counters instead of our own: a path
    /// to its file (/run/netns/NAME, /proc/PID/ns/net), a process id, or
    /// the namespace's inode (needs CAP_SYS_ADMIN to enter it).
    #[arg(long, value_name = "PATH|PID|INODE", value_parser = parse_netns_arg)]
    pub netns: Option<String>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
}

impl StatArgs {
    /// `INTERVAL`, else `--interval`, else a second.
    pub fn interval(&self) -> Duration {
        self.every
            .interval(self.interval)
            .unwrap_or(Duration::from_secs(1))
    }

    /// `COUNT`, else `-c`.
    pub fn count(&self) -> Option<u64> {
        self.every.count(self.count)
    }
}

/// A `--netns` checked as the views check it, kept as given (to be
/// opened and entered when the run starts).
fn parse_netns_arg(s: &str) -> Result<String, String> {
    crate::filter::resolve_netns(s).map(|_| s.to_string())
}

/// How long a live run lasts.
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Stop after this many seconds (live only).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    /// Stop after this many records.
    #[arg(short, long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub count: Option<u64>,
    /// Size of the kernel's event buffers, all CPUs together, a power of
    /// two from 64K to 1G (default 4M, about 60 ms of a 700 000 events/s
    /// storm). Split into a ring per CPU, or per few CPUs when each would
    /// get less than 256K. Larger rides out longer stalls of tcptrace;
    /// smaller uses less memory (the rings are mapped twice, so they
    /// count twice in RSS). Live only.
    #[arg(long, value_name = "BYTES", value_parser = parse_ring_size)]
    pub ring_size: Option<u32>,
    /// Output waiting for a slow reader at most, in bytes (default 4M);
    /// past it records are dropped, counted and reported as `lost`
    /// (source `output`), so memory stays bounded when the reader stalls.
    #[arg(long, value_name = "BYTES", value_parser = parse_queue_size)]
    pub output_queue: Option<usize>,
    /// Watch connect() through this hook plan only (fexit, kprobe or
    /// syscalls) instead of the first of them this kernel allows; fails
    /// if it cannot attach. For testing each plan. Live only.
    #[arg(long, value_name = "PLAN", value_parser = parse_connect_plan)]
    pub connect_plan: Option<ConnectPlan>,
    /// Watch state transitions and retransmits through this type of hook
    /// only (tp_btf or tracepoint) instead of the BTF tracepoint where the
    /// kernel allows it and the classic one elsewhere; fails if it cannot
    /// attach. For testing each. Live only.
    #[arg(long, alias = "state-hook", value_name = "TYPE", value_parser = parse_hook_type)]
    pub hook_type: Option<Form>,
}

impl RunArgs {
    /// Which hook forms a live run tries.
    pub fn form_choice(&self) -> forms::Choice {
        self.hook_type
            .map_or(forms::Choice::First, forms::Choice::Only)
    }

    /// Which connect plans a live run tries.
    pub fn connect_choice(&self) -> Choice {
        self.connect_plan.map_or(Choice::First, Choice::Only)
    }

    /// Where records go: standard output in `mode`.
    pub fn output(&self, mode: Mode) -> OutputSpec {
        OutputSpec {
            queue_bytes: self.output_queue.unwrap_or(QUEUE_BYTES),
            count: self.count,
            ..OutputSpec::stdout(mode)
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct RecordArgs {
    /// Write the recording here (default: standard output). The file is
    /// created readable by its owner only; an existing file or a symbolic
    /// link is refused unless --force.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite the --output file if it exists.
    #[arg(long, requires = "output")]
    pub force: bool,
    /// Also record per-socket RTT histograms.
    #[arg(long)]
    pub rtt: bool,
    /// Write events as 96-byte binary frames instead of JSON lines: a third
    /// of the size and several times faster to replay (the header, RTT and
    /// lost records stay JSON lines; `head -1` still shows the header).
    #[arg(long)]
    pub binary: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[cfg(test)]
mod tests;
