//! The views' subcommands (`retrans`, `states`, `connect`, `resets`,
//! `hist`, `top`, live or over a recording), their options, and the view,
//! output mode and rounds each command means.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::{Every, FilterArgs, RunArgs, parse::*};
use crate::{
    event::{RetransKind, TcpState},
    sinks::{Mode, OutputSpec, time::TimeMode},
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
