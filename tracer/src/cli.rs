//! Command-line interface: subcommands, options, and their validation.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::{event::Family, filter::Filter};

const EXAMPLES: &str = "\
Examples:
  sudo tcptrace retrans                 live retransmits with owner, flow and state
  sudo tcptrace retrans --port 443 -c 20
  sudo tcptrace states --pid 1234       state transitions of one process's sockets
  sudo tcptrace states --json | jq .    JSON Lines for a log pipeline
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
    /// Report what this kernel allows (BTF, tracefs, lockdown, each hook)
    /// and the hook plan tcptrace would use; exits non-zero if the core
    /// tracepoints cannot be attached.
    Check {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Options of the streaming views.
#[derive(Debug, Args, Clone)]
pub struct StreamArgs {
    /// JSON Lines instead of text (schema in the README).
    #[arg(long)]
    pub json: bool,
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
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Stop after this many records.
    #[arg(short, long, value_name = "N", value_parser = parse_count)]
    pub count: Option<u64>,
}

impl StreamArgs {
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
        }
    }
}

fn parse_pid(s: &str) -> Result<u32, String> {
    match s.parse::<i64>() {
        Ok(p) if p > 0 && p <= i64::from(u32::MAX) => Ok(p as u32),
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
        Ok(v) if v > 0.0 && v.is_finite() => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!(
            "'{s}' is not a duration; give a positive number of seconds"
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
        let Command::Retrans(a) = parse(&["retrans", "--port", "443", "-6", "-p", "7", "-c", "3"])
            .unwrap()
            .command
        else {
            panic!("wrong subcommand")
        };
        let f = a.filter();
        assert_eq!(
            (f.port, f.pid, f.family),
            (Some(443), Some(7), Some(Family::V6))
        );
        assert_eq!(a.count, Some(3));
    }

    #[test]
    fn bad_values_are_usage_errors_with_a_sentence() {
        for (args, needle) in [
            (&["states", "--port", "70000"][..], "not a port"),
            (&["states", "--pid", "-1"][..], "not a process id"),
            (&["states", "-p", "abc"][..], "not a process id"),
            (&["states", "--duration", "0"][..], "not a duration"),
            (&["states", "-c", "0"][..], "not a count"),
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(e.to_string().contains(needle), "{args:?}: {e}");
        }
        assert_eq!(parse(&["states", "-4", "-6"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["bogus"]).unwrap_err().exit_code(), 2);
    }
}
