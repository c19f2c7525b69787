//! The filter options every view takes (`-p`, `--comm`, `--port`, `-L`,
//! `-D`, `-4`/`-6`, `--netns`) and the [`Filter`] they make. Pids and
//! ports take lists, as a comma-separated value (`-p 1,2`), by giving the
//! option again (`-p 1 -p 2`), or both.

use clap::Args;

use super::{parse_pid, parse_port};
use crate::{
    event::{Comm, Family},
    filter::Filter,
};

/// Which flows: the filters every view takes.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only sockets owned by these process ids (comma-separated, or the
    /// option again).
    #[arg(short, long = "pid", value_name = "PID", value_parser = parse_pid, value_delimiter = ',', allow_negative_numbers = true)]
    pub pids: Vec<u32>,
    /// Only sockets whose owner's command name is exactly NAME (as
    /// `/proc/PID/comm` and `ps -o comm` show it, at most 15 bytes).
    #[arg(long, value_name = "NAME", value_parser = parse_comm)]
    pub comm: Option<Comm>,
    /// Only flows with one of these ports on either side.
    #[arg(long = "port", value_name = "PORT", value_parser = parse_port, value_delimiter = ',', allow_negative_numbers = true)]
    pub ports: Vec<u16>,
    /// Only flows with one of these local ports.
    #[arg(short = 'L', long = "lport", value_name = "PORT", value_parser = parse_port, value_delimiter = ',', allow_negative_numbers = true)]
    pub lports: Vec<u16>,
    /// Only flows with one of these remote ports.
    #[arg(short = 'D', long = "rport", value_name = "PORT", value_parser = parse_port, value_delimiter = ',', allow_negative_numbers = true)]
    pub rports: Vec<u16>,
    /// Only IPv4 (also IPv4 connections on IPv6 sockets, `::ffff:a.b.c.d`).
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

impl FilterArgs {
    pub fn filter(&self) -> Filter {
        Filter {
            pids: self.pids.clone(),
            comm: self.comm,
            ports: self.ports.clone(),
            lports: self.lports.clone(),
            rports: self.rports.clone(),
            family: match (self.ipv4, self.ipv6) {
                (true, _) => Some(Family::V4),
                (_, true) => Some(Family::V6),
                _ => None,
            },
            netns: self.netns,
        }
    }
}

/// The longest command name the kernel keeps (`TASK_COMM_LEN` - 1).
const COMM_MAX: usize = 15;

fn parse_comm(s: &str) -> Result<Comm, String> {
    match s.len() {
        0 => Err("give a command name, e.g. --comm nginx".into()),
        n if n > COMM_MAX => Err(format!(
            "'{s}' is longer than a command name can be: the kernel keeps {COMM_MAX} bytes, give '{}'",
            String::from_utf8_lossy(&s.as_bytes()[..COMM_MAX])
        )),
        _ => Ok(Comm::from_bytes(s.as_bytes())),
    }
}
