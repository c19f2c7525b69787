//! The filter options every view takes (`-p`, `--comm`, `--port`, `-L`,
//! `-D`, `-4`/`-6`, `--netns`, `--cgroup`) and the [`Filter`] they make. Pids and
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
    /// Only sockets whose owner is in this cgroup or one below it: its
    /// path in the unified hierarchy as /proc/PID/cgroup writes it
    /// (/system.slice/nginx.service), or its directory
    /// (/sys/fs/cgroup/system.slice/nginx.service). The `cgroup` of JSON
    /// records.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
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
            cgroup: self
                .cgroup
                .as_deref()
                .map(|p| crate::cgroups::Wanted::new(p, crate::cgroups::unified_root().as_deref())),
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

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::cli::{Cli, Command, ViewCommand};
    use crate::{event::Comm, filter::Filter, sinks::time::TimeMode};

    fn parse(args: &[&str]) -> Result<ViewCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("tcptrace").chain(args.iter().copied()))?;
        match cli.command {
            Command::View(v) => Ok(v),
            _ => panic!("not a view"),
        }
    }

    fn filter(args: &[&str]) -> Filter {
        parse(args).unwrap().common().filter.filter()
    }

    #[test]
    fn lists_of_pids_and_ports() {
        let f = filter(&["states", "-p", "1,2", "-p", "3", "-L", "80,443"]);
        assert_eq!((f.pids, f.lports), (vec![1, 2, 3], vec![80, 443]));
        let f = filter(&[
            "retrans",
            "--port",
            "80",
            "--port",
            "8080,9090",
            "-D",
            "5432",
        ]);
        assert_eq!((f.ports, f.rports), (vec![80, 8080, 9090], vec![5432]));
        let f = filter(&["top", "--pid", "7", "--lport", "22", "--rport", "1,2"]);
        assert_eq!(
            (f.pids, f.lports, f.rports),
            (vec![7], vec![22], vec![1, 2])
        );
        for (args, needle) in [
            (&["states", "-p", "1,x"][..], "not a process id"),
            (&["states", "-L", "80,70000"][..], "not a port"),
            (&["states", "--port", "80,"][..], "not a port"),
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(e.to_string().contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn comm_is_exact_and_at_most_15_bytes() {
        let f = filter(&["connect", "--comm", "nginx"]);
        assert_eq!(f.comm, Some(Comm::from_bytes(b"nginx")));
        let e = parse(&["connect", "--comm", "a-very-long-process-name"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("give 'a-very-long-pro'"), "{e}");
        assert_eq!(
            parse(&["connect", "--comm", ""]).unwrap_err().exit_code(),
            2
        );
    }

    #[test]
    fn time_clock_for_text() {
        let time = |args: &[&str]| parse(args).unwrap().output(false).time;
        assert_eq!(time(&["states"]), TimeMode::Utc);
        assert_eq!(time(&["states", "--time", "local"]), TimeMode::Local);
        assert_eq!(time(&["top", "--time", "relative"]), TimeMode::Relative);
        assert_eq!(
            parse(&["states", "--time", "cet"]).unwrap_err().exit_code(),
            2
        );
    }
}
