//! Command-line interface: subcommands, options, and their validation.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

mod every;
mod filter;
mod parse;

pub use every::Every;
pub use filter::FilterArgs;
pub(crate) use parse::*;

use crate::{
    event::{RetransKind, TcpState},
    hooks::connect::{Choice, ConnectPlan},
    hooks::state_hook::{self, StateHook},
    sinks::{Mode, OutputSpec, QUEUE_BYTES, time::TimeMode},
    views::{
        View,
        connect::Connect,
        hist::{Hist, Metric},
        resets::Resets,
        retrans::Retrans,
        states::States,
        top::Top,
    },
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

/// Watch the Linux TCP stack from inside the kernel.
#[derive(Debug, Parser)]
#[command(name = "tcptrace", version, about, after_help = EXAMPLES)]
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

/// The views, live or over a recording.
#[derive(Debug, Subcommand)]
pub enum ViewCommand {
    /// Live retransmissions (rto, fast, tlp, syn, synack) with the owning
    /// process, the flow and its TCP state.
    ///
    /// Kinds: rto (after a retransmission timeout), fast (fast recovery),
    /// tlp (tail-loss probe), syn, synack; data where the kernel does not
    /// tell.
    #[command(
        after_help = "Examples:\n  sudo tcptrace retrans\n  sudo tcptrace retrans --rport 443 --json\n  sudo tcptrace retrans --kind rto,tlp -p 1234 --duration 60\n  sudo tcptrace retrans --failed      also attempts that sent nothing (6.17+)\n  sudo tcptrace retrans -p 1234 -p 5678 --port 80,443\n  sudo tcptrace retrans --comm postgres --time relative\n  sudo tcptrace retrans --cgroup /system.slice/nginx.service"
    )]
    Retrans(RetransArgs),
    /// Live TCP state transitions with the time spent in the previous state.
    #[command(
        after_help = "Examples:\n  sudo tcptrace states\n  sudo tcptrace states --lport 8080 -c 100\n  sudo tcptrace states -6 --json\n  sudo tcptrace states -L 80,443 --time local\n  sudo tcptrace states -4   IPv4, also on dual-stack [::] sockets\n  sudo tcptrace states --cgroup /user.slice --json"
    )]
    States(StreamArgs),
    /// Connection attempts: owner, destination, handshake latency or the
    /// error (ECONNREFUSED, ETIMEDOUT, EADDRNOTAVAIL, ...).
    #[command(
        after_help = "Examples:\n  sudo tcptrace connect\n  sudo tcptrace connect --min-ms 100\n  sudo tcptrace connect --rport 5432 --json\n  sudo tcptrace connect -D 80,443 --comm curl\n  sudo tcptrace connect --cgroup /kubepods.slice --json   pods only, with their container ids"
    )]
    Connect(ConnectArgs),
    /// Resets sent and received, with the socket's state and the kernel's
    /// reason.
    #[command(
        after_help = "Examples:\n  sudo tcptrace resets\n  sudo tcptrace resets --lport 80 --json\n  sudo tcptrace resets -p 1234,5678 --time relative"
    )]
    Resets(StreamArgs),
    /// Handshake-latency (or, with --rtt, RTT) histograms per destination
    /// or per flow, with p50/p90/p99/max.
    #[command(
        after_help = "Examples:\n  sudo tcptrace hist --duration 30\n  sudo tcptrace hist --interval 10 --rport 443\n  sudo tcptrace hist 10 6 --rport 443   every 10 s, 6 rounds\n  sudo tcptrace hist -c 1               one round of one second\n  sudo tcptrace hist --rtt --per-flow --duration 10"
    )]
    Hist(HistArgs),
    /// A refreshing per-flow table with a census of sockets per state.
    #[command(
        after_help = "Examples:\n  sudo tcptrace top\n  sudo tcptrace top --sort latency --port 443\n  sudo tcptrace top --group owner --state CLOSE_WAIT,FIN_WAIT2\n  sudo tcptrace top --group port --json --limit 0\n  sudo tcptrace top --json --interval 5 --rtt\n  sudo tcptrace top 1 10                every second, 10 times\n  sudo tcptrace top --comm nginx -p 1234,5678\n  sudo tcptrace top --cgroup /system.slice/docker.service\n\nOn a terminal: q quits, r/l/a sort by retransmits/latency/age, s cycles\nthe state filter through the states in the census, g cycles the grouping\n(owner, remote, port, none), p pauses. Not on a terminal (or with -c),\none table per refresh, appended."
    )]
    Top(TopArgs),
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
    /// Size of the kernel's event buffer, a power of two from 64K to 1G
    /// (default 4M, about 60 ms of a 700 000 events/s storm). Larger rides
    /// out longer stalls of tcptrace; smaller uses less memory (the buffer
    /// is mapped twice, so it counts twice in RSS). Live only.
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
    /// Watch state transitions through this hook only (tp_btf or
    /// tracepoint) instead of the BTF tracepoint where the kernel allows
    /// it and the classic one elsewhere; fails if it cannot attach. For
    /// testing each. Live only.
    #[arg(long, value_name = "HOOK", value_parser = parse_state_hook)]
    pub state_hook: Option<StateHook>,
}

impl RunArgs {
    /// Which state hooks a live run tries.
    pub fn state_choice(&self) -> state_hook::Choice {
        self.state_hook
            .map_or(state_hook::Choice::First, state_hook::Choice::Only)
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

/// Options of every view.
#[derive(Debug, Args, Clone, Default)]
pub struct StreamArgs {
    /// JSON Lines instead of text (schema in the README).
    #[arg(long)]
    pub json: bool,
    /// How text shows times: time of day in UTC (default) or in the local
    /// zone, or seconds since the start. A line saying the date comes
    /// before the first line of each new day. JSON `ts` is always UTC.
    #[arg(long, value_enum, value_name = "CLOCK", default_value = "utc")]
    pub time: TimeMode,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RetransArgs {
    #[command(flatten)]
    pub common: StreamArgs,
    /// Only these kinds, comma-separated: rto, fast, tlp, syn, synack,
    /// data.
    #[arg(long, value_name = "KINDS", value_delimiter = ',', value_parser = parse_retrans_kind)]
    pub kind: Vec<RetransKind>,
    /// Also show attempts the kernel could not send (Linux 6.17+: EBUSY,
    /// still queued on the host; EAGAIN, ENOMEM, EHOSTUNREACH...), never
    /// counted as retransmitted segments. JSON always has them, with
    /// `"failed"`.
    #[arg(long)]
    pub failed: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: StreamArgs,
    /// Only successful connects at least this slow (failures always show).
    #[arg(long, value_name = "MS", value_parser = parse_ms, allow_negative_numbers = true)]
    pub min_ms: Option<f64>,
}

#[derive(Debug, Args, Clone)]
pub struct HistArgs {
    #[command(flatten)]
    pub common: StreamArgs,
    /// One histogram per flow instead of per destination.
    #[arg(long)]
    pub per_flow: bool,
    /// Smoothed RTT from tcp_probe instead of handshake latency (costs a
    /// map update per received segment).
    #[arg(long)]
    pub rtt: bool,
    /// Print (and start over) every SECS seconds, besides at the end
    /// (with -c and no interval: every second).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true)]
    pub interval: Option<Duration>,
    #[command(flatten)]
    pub every: Every,
}

#[derive(Debug, Args, Clone)]
pub struct TopArgs {
    #[command(flatten)]
    pub common: StreamArgs,
    /// Sort order (flows nobody owns, closed ones and TIME_WAIT always
    /// come after the rest; `latency` puts flows without a handshake last).
    #[arg(long, value_enum, default_value = "retrans")]
    pub sort: crate::views::top::SortBy,
    /// Refresh every SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true, default_value = "1")]
    pub interval: Duration,
    /// Rows at most; 0 for all of them. Default: 25, or as many as fit on
    /// the terminal.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Only flows in these states (e.g. CLOSE_WAIT or close_wait,
    /// SYN_RECV,ESTABLISHED); the census still counts them all.
    #[arg(long, value_name = "STATE[,STATE]", value_delimiter = ',', value_parser = parse_state)]
    pub state: Vec<TcpState>,
    /// One row per owner, remote host or service port, with its sockets per
    /// state (and their growth per minute) and new connections,
    /// retransmitted segments and resets per second.
    #[arg(long, value_enum, value_name = "BY")]
    pub group: Option<crate::views::top::GroupBy>,
    /// Show each flow's smoothed RTT (costs a map update per received segment).
    #[arg(long)]
    pub rtt: bool,
    /// Keep closed flows in the table this long.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true, default_value = "10")]
    pub linger: Duration,
    #[command(flatten)]
    pub every: Every,
}

impl TopArgs {
    /// `top` is drawn on a screen: standard output is a terminal, text,
    /// and no `--count` (a fixed number of tables is a batch run whose
    /// tables stay on the terminal afterwards).
    pub fn screen(&self, stdout_is_terminal: bool) -> bool {
        stdout_is_terminal && !self.common.json && self.every.count(self.common.run.count).is_none()
    }
}

/// A TCP state by its name (`CLOSE_WAIT`, `close-wait`).
fn parse_state(s: &str) -> Result<TcpState, String> {
    let want = s.trim().to_ascii_uppercase().replace('-', "_");
    TcpState::ALL
        .into_iter()
        .find(|st| st.name() == want)
        .ok_or_else(|| {
            let names: Vec<&str> = TcpState::ALL.iter().map(|s| s.name()).collect();
            format!("'{s}' is not a TCP state; use one of {}", names.join(", "))
        })
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

impl ViewCommand {
    /// The view this command runs, and what the start-up message says it
    /// watches.
    pub fn view(&self, stdout_is_terminal: bool) -> (Box<dyn View>, &'static str) {
        let ns = |d: Duration| d.as_nanos() as u64;
        match self {
            Self::Retrans(a) => (
                Box::new(Retrans::new(a.kind.clone(), a.failed || a.common.json)),
                "TCP retransmits",
            ),
            Self::States(_) => (Box::new(States), "TCP state transitions"),
            Self::Connect(a) => (
                Box::new(Connect {
                    min_ns: (a.min_ms.unwrap_or(0.0) * 1e6) as u64,
                }),
                "TCP connection attempts",
            ),
            Self::Resets(_) => (Box::new(Resets), "TCP resets"),
            Self::Hist(a) => (
                Box::new(Hist::new(
                    if a.rtt {
                        Metric::Rtt
                    } else {
                        Metric::Handshake
                    },
                    a.per_flow,
                    self.interval().map(ns),
                )),
                if a.rtt {
                    "TCP round-trip times"
                } else {
                    "TCP handshake latency"
                },
            ),
            Self::Top(a) => {
                let screen = a.screen(stdout_is_terminal);
                // On a screen the rows are cut to what fits; a cap keeps
                // the work of a refresh bounded on a host with 100 000 flows.
                let limit = a.limit.unwrap_or(if screen { SCREEN_ROWS } else { 25 });
                let interval = a.every.interval(Some(a.interval)).unwrap_or(a.interval);
                let mut top = Top::new(a.sort, ns(interval), limit, screen, a.rtt);
                top.linger_ns = ns(a.linger);
                top.states.clone_from(&a.state);
                top.group = a.group;
                (Box::new(top), "TCP flows")
            }
        }
    }

    /// The interval of a view that prints in rounds: `INTERVAL`, else
    /// `--interval`; `hist` with a count and neither prints every second
    /// (`-c N` is N rounds).
    pub fn interval(&self) -> Option<Duration> {
        match self {
            Self::Hist(a) => a
                .every
                .interval(a.interval)
                .or_else(|| self.count().map(|_| Duration::from_secs(1))),
            Self::Top(a) => a.every.interval(Some(a.interval)),
            _ => None,
        }
    }

    /// `COUNT`, else `-c`.
    pub fn count(&self) -> Option<u64> {
        let flag = self.common().run.count;
        match self {
            Self::Hist(a) => a.every.count(flag),
            Self::Top(a) => a.every.count(flag),
            _ => flag,
        }
    }

    /// Where the view's records go: standard output, text, JSON or a
    /// screen, with the count and the clock asked for.
    pub fn output(&self, stdout_is_terminal: bool) -> OutputSpec {
        let a = self.common();
        OutputSpec {
            count: self.count(),
            time: a.time,
            ..a.run.output(self.mode(stdout_is_terminal))
        }
    }

    /// The output mode: `json`, or a screen for `top` on a terminal.
    pub fn mode(&self, stdout_is_terminal: bool) -> Mode {
        match self {
            Self::Top(a) if a.screen(stdout_is_terminal) => Mode::Screen,
            _ if self.common().json => Mode::Json,
            _ => Mode::Text,
        }
    }

    /// The options every view has.
    pub fn common(&self) -> &StreamArgs {
        match self {
            Self::States(a) | Self::Resets(a) => a,
            Self::Retrans(a) => &a.common,
            Self::Connect(a) => &a.common,
            Self::Hist(a) => &a.common,
            Self::Top(a) => &a.common,
        }
    }
}

/// Rows `top` makes at most for a screen (no screen is taller).
const SCREEN_ROWS: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(r.run.state_choice(), state_hook::Choice::First);
        let Command::View(v) = parse(&["states", "--state-hook", "tracepoint"])
            .unwrap()
            .command
        else {
            panic!("not a view");
        };
        assert_eq!(
            v.common().run.state_choice(),
            state_hook::Choice::Only(StateHook::Tracepoint)
        );
        assert!(parse(&["states", "--state-hook", "kprobe"]).is_err());
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
}
