//! The user's filters (`--pid`, `--comm`, `--port`, `--lport`, `--rport`,
//! `-4`/`-6`, `--netns`, `--cgroup`), applied exactly in user space by the pipeline
//! (once, with one rule). Pids and ports are lists: any of them matches. The kernel's coarser pre-filter is derived from it in
//! [`crate::hooks::kernel_filter`]. A namespace given as a path or a
//! process is resolved to its inode here ([`resolve_netns`]), or opened
//! for reading its counters ([`open_netns`]).

use std::{fs::File, os::unix::fs::MetadataExt as _, path::Path};

use crate::{
    engine::{Annotated, flows::Flow},
    event::{Comm, Family, Owner, Tuple},
};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Owner process ids (any; empty: any owner).
    pub pids: Vec<u32>,
    /// The owner's command name, exactly (as `/proc/PID/comm` shows it).
    pub comm: Option<Comm>,
    /// Local or remote ports (any; empty: any port).
    pub ports: Vec<u16>,
    pub lports: Vec<u16>,
    pub rports: Vec<u16>,
    /// IPv4 or IPv6; a v4-mapped flow on an IPv6 socket is IPv4.
    pub family: Option<Family>,
    /// Network namespace, by inode.
    pub netns: Option<u32>,
    /// The owner's cgroup, or one below it (`--cgroup`).
    pub cgroup: Option<crate::cgroups::Wanted>,
}

impl Filter {
    /// Whether an annotated event passes.
    pub fn matches(&self, a: &Annotated) -> bool {
        self.matches_flow(&a.event.tuple, a.owner.as_ref())
    }

    /// Whether a flow the engine keeps passes (`top`, `hist --rtt`).
    pub fn keeps(&self, f: &Flow) -> bool {
        self.matches_flow(&f.tuple, f.owner.as_ref())
    }

    /// Whether a flow (tuple and owner) passes: the one rule every event,
    /// outcome, seed and table row is held to. A local port of 0 means
    /// "not known yet" (a connect before its port was chosen, or that
    /// never got one): it matches `--port` by the remote side only, and
    /// never `--lport`.
    pub fn matches_flow(&self, t: &Tuple, owner: Option<&Owner>) -> bool {
        let lport_known = t.lport != 0;
        // An empty list lets everything through; else one of it must match.
        let any =
            |list: &[u16], ok: &dyn Fn(u16) -> bool| list.is_empty() || list.iter().any(|&p| ok(p));
        if !(self.pids.is_empty() || owner.is_some_and(|o| self.pids.contains(&o.pid))) {
            return false;
        }
        if let Some(c) = &self.comm
            && owner.map(|o| o.comm) != Some(*c)
        {
            return false;
        }
        if !any(&self.ports, &|p| {
            t.rport == p || (lport_known && t.lport == p)
        }) || !any(&self.lports, &|p| lport_known && t.lport == p)
            || !any(&self.rports, &|p| t.rport == p)
        {
            return false;
        }
        // An IPv4 connection on an IPv6 socket is IPv4 (`Tuple::unmapped`).
        if let Some(f) = self.family
            && t.unmapped().family != f
        {
            return false;
        }
        if let Some(n) = self.netns
            && t.netns != n
        {
            return false;
        }
        if let Some(c) = &self.cgroup
            && !owner.is_some_and(|o| c.has(o.cgroup.get()))
        {
            return false;
        }
        true
    }

    /// Cgroup `id` is named `path` (the pipeline learned it).
    pub fn learn_cgroup(&mut self, id: u64, path: &str) {
        if let Some(c) = &mut self.cgroup {
            c.learn(id, path);
        }
    }

    /// Cgroup `id` is gone.
    pub fn forget_cgroup(&mut self, id: u64) {
        if let Some(c) = &mut self.cgroup {
            c.forget(id);
        }
    }
}

/// The largest process id any Linux hands out (`PID_MAX_LIMIT` on 64-bit):
/// a larger number given to `--netns` is an inode (the kernel numbers
/// namespaces from 0xEFFFFFF9 on, far above it).
const PID_MAX_LIMIT: u64 = 4_194_304;

/// `ioctl(fd, NS_GET_NSTYPE)` (`_IO(0xb7, 0x3)`): the kind of namespace a
/// file of nsfs is.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// A network namespace named as `--netns` takes it: a path to its file of
/// nsfs (`/run/netns/NAME`, `/proc/PID/ns/net`, a bind mount), a process
/// id (whose namespace is meant), or the namespace's inode number (as
/// `ls -i`, `lsns -t net` or tcptrace's own `netns` field show it).
pub fn resolve_netns(arg: &str) -> Result<u32, String> {
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = arg
            .parse()
            .map_err(|_| format!("'{arg}' is not a process id nor a namespace inode"))?;
        if n > PID_MAX_LIMIT {
            return u32::try_from(n)
                .map_err(|_| format!("'{arg}' is not a namespace inode: inodes are 32-bit"));
        }
        return netns_of_pid(n as u32);
    }
    netns_of_path(Path::new(arg))
}

/// The network namespace of process `pid`.
pub fn netns_of_pid(pid: u32) -> Result<u32, String> {
    let path = format!("/proc/{pid}/ns/net");
    std::fs::metadata(&path)
        .map(|m| m.ino() as u32)
        .map_err(|e| format!("no network namespace for process {pid} ({path}: {e})"))
}

/// The namespace whose nsfs file is at `path`, checked to be a network
/// namespace.
fn netns_of_path(path: &Path) -> Result<u32, String> {
    open_netns_path(path).map(|(_, inode)| inode)
}

/// A network namespace named as `--netns` takes it, opened (to enter it
/// with `setns`, or to keep it from going away), and its inode. An inode
/// is looked for among the namespaces `ip netns` names (`/run/netns`) and
/// those of every thread (`/proc/PID/task/TID/ns/net`); one that none of
/// them is in cannot be opened.
pub fn open_netns(arg: &str) -> Result<(File, u32), String> {
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit()) {
        // Says what is wrong with the number, if anything.
        let inode = resolve_netns(arg)?;
        if arg.parse::<u64>().is_ok_and(|n| n <= PID_MAX_LIMIT) {
            return open_netns_path(Path::new(&format!("/proc/{arg}/ns/net")));
        }
        return open_netns_inode(inode);
    }
    open_netns_path(Path::new(arg))
}

/// The network namespace `inode`, opened through a file that names it.
pub fn open_netns_inode(inode: u32) -> Result<(File, u32), String> {
    let named = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    let tasks = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|p| {
            p.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .flat_map(|p| {
            std::fs::read_dir(p.path().join("task"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|t| t.path().join("ns/net"))
        });
    for path in named.chain(tasks) {
        if std::fs::metadata(&path).is_ok_and(|m| m.ino() == u64::from(inode))
            && let Ok(found) = open_netns_path(&path)
            && found.1 == inode
        {
            return Ok(found);
        }
    }
    Err(format!(
        "no process is in network namespace {inode} and /run/netns does not name it; give it as a path or a process id"
    ))
}

/// [`netns_of_path`], with the file opened.
fn open_netns_path(path: &Path) -> Result<(File, u32), String> {
    let shown = path.display();
    let f = File::open(path).map_err(|e| {
        format!(
            "'{shown}': {e}; give a network namespace as a path (/run/netns/NAME, /proc/PID/ns/net), a process id or an inode"
        )
    })?;
    // SAFETY: a valid open descriptor; the request takes no argument.
    let kind = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&f), NS_GET_NSTYPE as _) };
    if kind == -1 {
        return Err(format!(
            "'{shown}' is not a namespace file (such as /run/netns/NAME or /proc/PID/ns/net)"
        ));
    }
    if kind != libc::CLONE_NEWNET {
        return Err(format!(
            "'{shown}' is a namespace of another kind, not a network namespace"
        ));
    }
    let m = f.metadata().map_err(|e| format!("'{shown}': {e}"))?;
    Ok((f, m.ino() as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{
        Annotated,
        tests::{owner, state, tuple},
    };
    use crate::event::TcpState::*;

    fn ann(lport: u16, rport: u16, pid: Option<u32>) -> Annotated {
        Annotated {
            event: state(1, 1, tuple(lport, rport), owner(1, "x"), Close, SynSent),
            owner: pid.map(|p| owner(p, "x")),
            prev_state_ns: None,
            state: None,
        }
    }

    #[test]
    fn ports_and_pids() {
        let f = Filter {
            ports: vec![80],
            ..Filter::default()
        };
        assert!(f.matches(&ann(80, 5000, None)));
        assert!(f.matches(&ann(5000, 80, None)));
        assert!(!f.matches(&ann(5000, 81, None)));

        let f = Filter {
            lports: vec![80],
            ..Filter::default()
        };
        assert!(f.matches(&ann(80, 5000, None)));
        assert!(!f.matches(&ann(5000, 80, None)));

        let f = Filter {
            rports: vec![80],
            pids: vec![7],
            ..Filter::default()
        };
        assert!(f.matches(&ann(5000, 80, Some(7))));
        assert!(!f.matches(&ann(5000, 80, Some(8))));
        assert!(
            !f.matches(&ann(5000, 80, None)),
            "unknown owner never matches a pid"
        );
    }

    #[test]
    fn lists_of_ports_and_pids_and_a_comm() {
        let f = Filter {
            ports: vec![80, 443],
            pids: vec![7, 9],
            ..Filter::default()
        };
        assert!(f.matches(&ann(80, 5000, Some(7))));
        assert!(f.matches(&ann(5000, 443, Some(9))));
        assert!(!f.matches(&ann(5000, 444, Some(9))));
        assert!(!f.matches(&ann(80, 5000, Some(8))));
        let f = Filter {
            lports: vec![22, 80],
            rports: vec![5000, 5001],
            ..Filter::default()
        };
        assert!(f.matches(&ann(80, 5001, None)));
        assert!(!f.matches(&ann(81, 5001, None)));
        assert!(!f.matches(&ann(80, 5002, None)));
        // --comm: the owner's name, exactly.
        let f = Filter {
            comm: Some(Comm::from_bytes(b"x")),
            ..Filter::default()
        };
        assert!(f.matches(&ann(1, 2, Some(1))));
        let f = Filter {
            comm: Some(Comm::from_bytes(b"xy")),
            ..Filter::default()
        };
        assert!(!f.matches(&ann(1, 2, Some(1))), "not a prefix match");
        assert!(!f.matches(&ann(1, 2, None)), "unknown owner never matches");
    }

    #[test]
    fn v4_mapped_flows_are_ipv4() {
        let mut a = ann(8080, 40000, None);
        a.event.tuple.family = Family::V6;
        a.event.tuple.laddr = "::ffff:127.0.0.1".parse().unwrap();
        a.event.tuple.raddr = "::ffff:127.0.0.1".parse().unwrap();
        let only = |family| Filter {
            family: Some(family),
            ..Filter::default()
        };
        assert!(only(Family::V4).matches(&a));
        assert!(!only(Family::V6).matches(&a));
        a.event.tuple.raddr = "::1".parse().unwrap();
        a.event.tuple.laddr = "::1".parse().unwrap();
        assert!(!only(Family::V4).matches(&a));
    }

    #[test]
    fn namespaces() {
        let mut a = ann(80, 5000, Some(7));
        a.event.tuple.netns = 4_026_532_001;
        let f = |netns| Filter {
            netns: Some(netns),
            ..Filter::default()
        };
        assert!(f(4_026_532_001).matches(&a));
        assert!(!f(4_026_532_002).matches(&a));
        assert!(Filter::default().matches(&a));
        // Unknown (0) is no namespace the user can ask for.
        a.event.tuple.netns = 0;
        assert!(!f(4_026_532_001).matches(&a));
        let flow = crate::engine::flows::Flow::new(1, a.event.tuple, Established, 0);
        assert!(!f(4_026_532_001).keeps(&flow));
    }

    #[test]
    fn namespaces_by_path_pid_and_inode() {
        let ours = std::fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
        let me = std::process::id().to_string();
        assert_eq!(resolve_netns(&me), Ok(ours));
        assert_eq!(resolve_netns("/proc/self/ns/net"), Ok(ours));
        assert_eq!(resolve_netns(&ours.to_string()), Ok(ours));
        assert_eq!(resolve_netns("4026532999"), Ok(4_026_532_999));
        let e = resolve_netns("/proc/self/ns/uts").unwrap_err();
        assert!(e.contains("another kind"), "{e}");
        let e = resolve_netns("/etc/hostname").unwrap_err();
        assert!(e.contains("not a namespace file"), "{e}");
        let e = resolve_netns("/nonexistent/x").unwrap_err();
        assert!(e.contains("give a network namespace as a path"), "{e}");
        let e = resolve_netns("99999999999").unwrap_err();
        assert!(e.contains("32-bit"), "{e}");
        // A pid that does not exist (above this host's pid_max, below the
        // kernel's ceiling).
        let e = resolve_netns("4194304").unwrap_err();
        assert!(
            e.contains("no network namespace for process 4194304"),
            "{e}"
        );
    }

    #[test]
    fn family() {
        let f = Filter {
            family: Some(Family::V6),
            ..Filter::default()
        };
        assert!(!f.matches(&ann(1, 2, None)));
    }
}
