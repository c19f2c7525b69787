//! Command-line interface: subcommands, options, and their validation.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    event::Family,
    filter::Filter,
    hooks::connect::{Choice, ConnectPlan},
    hooks::state_hook::{self, StateHook},
    sinks::{Mode, OutputSpec, QUEUE_BYTES},
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
  sudo tcptrace retrans                 live retransmits with owner, flow and state
  sudo tcptrace retrans --port 443 -c 20
  sudo tcptrace states --pid 1234       state transitions of one process's sockets
  sudo tcptrace states --json | jq .    JSON Lines for a log pipeline
  sudo tcptrace connect --min-ms 100    slow or failed connects, with errno
  sudo tcptrace top --sort retrans      per-flow table with a census of socket states
  sudo tcptrace hist --duration 30      handshake latency histograms per destination
  sudo tcptrace record -o x.jsonl       capture for `tcptrace replay x.jsonl top` elsewhere
  sudo tcptrace check                   what this kernel allows, and the hooks chosen

Exit status: 0 on success (also when the output pipe closes), 1 on errors,
2 on usage errors.";

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
    /// Report what this kernel allows (BTF, tracefs, lockdown, each hook)
    /// and the hook plan tcptrace would use; exits non-zero if the core
    /// tracepoints cannot be attached.
    Check {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Man pages and shell completions (`cargo xtask install` uses it).
    #[command(hide = true)]
    Generate(crate::generate::GenerateArgs),
}

/// The views, live or over a recording.
#[derive(Debug, Subcommand)]
pub enum ViewCommand {
    /// Live retransmissions (data, SYN, SYN-ACK) with the owning process,
    /// the flow and its TCP state.
    #[command(
        after_help = "Examples:\n  sudo tcptrace retrans\n  sudo tcptrace retrans --rport 443 --json\n  sudo tcptrace retrans -p 1234 --duration 60"
    )]
    Retrans(StreamArgs),
    /// Live TCP state transitions with the time spent in the previous state.
    #[command(
        after_help = "Examples:\n  sudo tcptrace states\n  sudo tcptrace states --lport 8080 -c 100\n  sudo tcptrace states -6 --json"
    )]
    States(StreamArgs),
    /// Connection attempts: owner, destination, handshake latency or the
    /// error (ECONNREFUSED, ETIMEDOUT, EADDRNOTAVAIL, ...).
    #[command(
        after_help = "Examples:\n  sudo tcptrace connect\n  sudo tcptrace connect --min-ms 100\n  sudo tcptrace connect --rport 5432 --json"
    )]
    Connect(ConnectArgs),
    /// Resets sent and received, with the socket's state and the kernel's
    /// reason.
    #[command(
        after_help = "Examples:\n  sudo tcptrace resets\n  sudo tcptrace resets --lport 80 --json"
    )]
    Resets(StreamArgs),
    /// Handshake-latency (or, with --rtt, RTT) histograms per destination
    /// or per flow, with p50/p90/p99/max.
    #[command(
        after_help = "Examples:\n  sudo tcptrace hist --duration 30\n  sudo tcptrace hist --interval 10 --rport 443\n  sudo tcptrace hist --rtt --per-flow --duration 10"
    )]
    Hist(HistArgs),
    /// A refreshing per-flow table with a census of sockets per state.
    #[command(
        after_help = "Examples:\n  sudo tcptrace top\n  sudo tcptrace top --sort latency --port 443\n  sudo tcptrace top --json --interval 5 --rtt"
    )]
    Top(TopArgs),
}

/// Which flows: the filters every view takes.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only sockets owned by this process id.
    #[arg(short, long, value_parser = parse_pid, allow_negative_numbers = true)]
    pub pid: Option<u32>,
    /// Only flows with this local or remote port.
    #[arg(long, value_parser = parse_port, allow_negative_numbers = true)]
    pub port: Option<u16>,
    /// Only flows with this local port.
    #[arg(long, value_parser = parse_port, allow_negative_numbers = true)]
    pub lport: Option<u16>,
    /// Only flows with this remote port.
    #[arg(long, value_parser = parse_port, allow_negative_numbers = true)]
    pub rport: Option<u16>,
    /// Only IPv4.
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Only IPv6.
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,
    /// Only sockets in this network namespace: a path to its file
    /// (/run/netns/NAME, /proc/PID/ns/net), a process id (its namespace),
    /// or the namespace's inode number (the `netns` of JSON records).
    #[arg(long, value_name = "PATH|PID|INODE", value_parser = crate::filter::resolve_netns)]
    pub netns: Option<u32>,
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
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub run: RunArgs,
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
    /// Print (and start over) every SECS seconds, besides at the end.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true)]
    pub interval: Option<Duration>,
}

#[derive(Debug, Args, Clone)]
pub struct TopArgs {
    #[command(flatten)]
    pub common: StreamArgs,
    /// Sort order.
    #[arg(long, value_enum, default_value = "retrans")]
    pub sort: crate::views::top::SortBy,
    /// Refresh every SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true, default_value = "1")]
    pub interval: Duration,
    /// Rows at most.
    #[arg(long, default_value_t = 25)]
    pub limit: usize,
    /// Show each flow's smoothed RTT (costs a map update per received segment).
    #[arg(long)]
    pub rtt: bool,
    /// Keep closed flows in the table this long.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true, default_value = "10")]
    pub linger: Duration,
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
    /// Write events as 88-byte binary frames instead of JSON lines: a third
    /// of the size and several times faster to replay (the header, RTT and
    /// lost records stay JSON lines; `head -1` still shows the header).
    #[arg(long)]
    pub binary: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

impl FilterArgs {
    pub fn filter(&self) -> Filter {
        Filter {
            pid: self.pid,
            port: self.port,
            lport: self.lport,
            rport: self.rport,
            family: match (self.ipv4, self.ipv6) {
                (true, _) => Some(Family::V4),
                (_, true) => Some(Family::V6),
                _ => None,
            },
            netns: self.netns,
        }
    }
}

impl ViewCommand {
    /// The view this command runs, and what the start-up message says it
    /// watches.
    pub fn view(&self, stdout_is_terminal: bool) -> (Box<dyn View>, &'static str) {
        let ns = |d: Duration| d.as_nanos() as u64;
        match self {
            Self::Retrans(_) => (Box::new(Retrans), "TCP retransmits"),
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
                    a.interval.map(ns),
                )),
                if a.rtt {
                    "TCP round-trip times"
                } else {
                    "TCP handshake latency"
                },
            ),
            Self::Top(a) => {
                let mut top = Top::new(
                    a.sort,
                    ns(a.interval),
                    a.limit,
                    !a.common.json && stdout_is_terminal,
                    a.rtt,
                );
                top.linger_ns = ns(a.linger);
                (Box::new(top), "TCP flows")
            }
        }
    }

    /// The options every view has.
    pub fn common(&self) -> &StreamArgs {
        match self {
            Self::Retrans(a) | Self::States(a) | Self::Resets(a) => a,
            Self::Connect(a) => &a.common,
            Self::Hist(a) => &a.common,
            Self::Top(a) => &a.common,
        }
    }
}

/// Durations and intervals at most this long (a year): past it a run is
/// a mistake, and `Duration` arithmetic would overflow.
const MAX_SECS: f64 = 366.0 * 86_400.0;

fn parse_ms(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=MAX_SECS * 1e3).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a number of milliseconds; give 0 or more, e.g. 100"
        )),
    }
}

/// The largest process id this kernel hands out.
fn pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        // The kernel's own ceiling (PID_MAX_LIMIT on 64-bit).
        .unwrap_or(4_194_304)
}

fn parse_pid(s: &str) -> Result<u32, String> {
    let max = pid_max();
    match s.parse::<i64>() {
        Ok(p) if p > 0 && p <= i64::from(max) => Ok(p as u32),
        Ok(p) if p > 0 => Err(format!(
            "'{s}' is not a process id: this kernel's largest is {max} (/proc/sys/kernel/pid_max)"
        )),
        _ => Err(format!(
            "'{s}' is not a process id; give a positive number such as 1234 (see `pgrep`)"
        )),
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<i64>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!(
            "'{s}' is not a port; give a number from 1 to 65535"
        )),
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= MAX_SECS => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!(
            "'{s}' is not a duration; give a positive number of seconds, at most a year (31622400)"
        )),
    }
}

/// A size in bytes with an optional unit (`K`, `M`, `G`, binary).
fn bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return None,
    };
    Some(num.parse::<u64>().ok()?.saturating_mul(mult))
}

fn parse_state_hook(s: &str) -> Result<StateHook, String> {
    StateHook::from_short(s).ok_or_else(|| {
        let names: Vec<&str> = StateHook::ORDER.iter().map(|h| h.short()).collect();
        format!("not a state hook: use one of {}", names.join(", "))
    })
}

fn parse_connect_plan(s: &str) -> Result<ConnectPlan, String> {
    ConnectPlan::from_short(s).ok_or_else(|| {
        let names: Vec<&str> = ConnectPlan::ORDER.iter().map(|p| p.short()).collect();
        format!("not a connect plan: use one of {}", names.join(", "))
    })
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    match bytes(s) {
        Some(n) if n.is_power_of_two() && (64 << 10..=1 << 30).contains(&n) => Ok(n as u32),
        _ => Err(format!(
            "'{s}' is not a buffer size; give a power of two from 64K to 1G, e.g. 512K, 8M"
        )),
    }
}

fn parse_queue_size(s: &str) -> Result<usize, String> {
    match bytes(s) {
        Some(n) if (64 << 10..=1 << 30).contains(&n) => Ok(n as usize),
        _ => Err(format!(
            "'{s}' is not an output queue size; give 64K to 1G, e.g. 512K, 16M"
        )),
    }
}

fn parse_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "'{s}' is not a count; give a positive whole number"
        )),
    }
}

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
        let f = a.filter.filter();
        assert_eq!(
            (f.port, f.pid, f.family),
            (Some(443), Some(7), Some(Family::V6))
        );
        assert_eq!(a.run.count, Some(3));
        let Command::Replay { view, .. } = parse(&[
            "replay", "x.jsonl", "top", "--sort", "latency", "--port", "80",
        ])
        .unwrap()
        .command
        else {
            panic!("wrong subcommand")
        };
        assert_eq!(view.common().filter.port, Some(80));
        let Command::View(ViewCommand::Top(a)) =
            parse(&["top", "--netns", "4026532001"]).unwrap().command
        else {
            panic!("wrong subcommand")
        };
        assert_eq!(a.common.filter.filter().netns, Some(4_026_532_001));
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
}
