//! What `/proc` knows about sockets that existed before tracing started:
//! the TCP tables of every network namespace (`/proc/<pid>/net/tcp{,6}`,
//! one process per namespace, which `/proc/<pid>/ns/net` names by inode)
//! and which process holds each socket inode (`/proc/<pid>/fd`, also for
//! the socket tables of [`crate::sockdiag`]).

use std::{
    collections::{HashMap, HashSet},
    fs,
    net::SocketAddr,
};

use procfs::{
    net::{TcpNetEntry, TcpState as ProcState},
    process::{FDTarget, Process, all_processes},
};

use crate::event::{Comm, Family, Owner, TcpState, Tuple};

/// A socket found in `/proc`, with the process holding it when known
/// (TIME_WAIT and request sockets have none).
#[derive(Clone, Copy, Debug)]
pub struct Seed {
    pub tuple: Tuple,
    pub state: TcpState,
    pub owner: Option<Owner>,
}

/// Reads every namespace's TCP table and the owners of their inodes. Best
/// effort: processes that exit meanwhile, or that we may not read, are
/// skipped. With `netns`, each tuple carries its namespace's inode (as the
/// kernel's events do); without (the kernel's events carry 0), 0.
pub fn seed(netns: bool) -> Vec<Seed> {
    let Ok(procs) = all_processes() else {
        return Vec::new();
    };
    let procs: Vec<Process> = procs.filter_map(Result::ok).collect();

    // One table per network namespace. A thread may sit in another
    // namespace than its process (setns), so look at every task.
    let mut namespaces = HashSet::new();
    let mut sockets: HashMap<u64, (Tuple, TcpState)> = HashMap::new();
    let mut ownerless = Vec::new();
    for p in &procs {
        let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", p.pid)) else {
            continue;
        };
        for task in tasks.flatten() {
            let dir = task.path();
            let Ok(ns) = fs::read_link(dir.join("ns/net")) else {
                continue;
            };
            let inode = if netns {
                match inode_of_link(&ns.to_string_lossy()) {
                    Some(n) => n,
                    None => continue,
                }
            } else {
                0
            };
            if !namespaces.insert(ns) {
                continue;
            }
            let Ok(t) = Process::new_with_root(dir) else {
                continue;
            };
            for e in t.tcp().into_iter().chain(t.tcp6()).flatten() {
                let (mut tuple, state) = convert(&e);
                tuple.netns = inode;
                if e.inode == 0 {
                    ownerless.push(Seed {
                        tuple,
                        state,
                        owner: None,
                    });
                } else {
                    sockets.insert(e.inode, (tuple, state));
                }
            }
        }
    }
    let mut seeds = ownerless;
    for (inode, owner) in holders_among(&procs, |i| sockets.contains_key(&i)) {
        if let Some((tuple, state)) = sockets.remove(&inode) {
            seeds.push(Seed {
                tuple,
                state,
                owner: Some(owner),
            });
        }
    }
    // Sockets whose holder we could not see still count in the census.
    seeds.extend(sockets.into_values().map(|(tuple, state)| Seed {
        tuple,
        state,
        owner: None,
    }));
    seeds
}

/// The process holding each socket inode that `wanted` accepts, from every
/// process's `/proc/<pid>/fd` (a socket that several processes hold, as
/// after a fork, is named after the first found). Best effort, as [`seed`].
pub fn holders(wanted: impl Fn(u64) -> bool) -> HashMap<u64, Owner> {
    let Ok(procs) = all_processes() else {
        return HashMap::new();
    };
    let procs: Vec<Process> = procs.filter_map(Result::ok).collect();
    holders_among(&procs, wanted)
}

fn holders_among(procs: &[Process], wanted: impl Fn(u64) -> bool) -> HashMap<u64, Owner> {
    let mut found = HashMap::new();
    for p in procs {
        let Ok(fds) = p.fd() else { continue };
        let mut comm = None;
        for fd in fds.flatten() {
            let FDTarget::Socket(inode) = fd.target else {
                continue;
            };
            if !wanted(inode) || found.contains_key(&inode) {
                continue;
            }
            let comm = *comm.get_or_insert_with(|| {
                let raw = fs::read(format!("/proc/{}/comm", p.pid)).unwrap_or_default();
                Comm::from_bytes(raw.strip_suffix(b"\n").unwrap_or(&raw))
            });
            found.insert(
                inode,
                Owner {
                    pid: p.pid as u32,
                    comm,
                },
            );
        }
    }
    found
}

/// The inode in a namespace link's target, `net:[4026531833]`.
fn inode_of_link(target: &str) -> Option<u32> {
    target
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn convert(e: &TcpNetEntry) -> (Tuple, TcpState) {
    let family = match e.local_address {
        SocketAddr::V4(_) => Family::V4,
        SocketAddr::V6(_) => Family::V6,
    };
    let state = match e.state {
        ProcState::Established => TcpState::Established,
        ProcState::SynSent => TcpState::SynSent,
        ProcState::SynRecv => TcpState::SynRecv,
        ProcState::FinWait1 => TcpState::FinWait1,
        ProcState::FinWait2 => TcpState::FinWait2,
        ProcState::TimeWait => TcpState::TimeWait,
        ProcState::Close => TcpState::Close,
        ProcState::CloseWait => TcpState::CloseWait,
        ProcState::LastAck => TcpState::LastAck,
        ProcState::Listen => TcpState::Listen,
        ProcState::Closing => TcpState::Closing,
        ProcState::NewSynRecv => TcpState::NewSynRecv,
    };
    (
        Tuple {
            family,
            laddr: e.local_address.ip(),
            lport: e.local_address.port(),
            raddr: e.remote_address.ip(),
            rport: e.remote_address.port(),
            netns: 0,
        },
        state,
    )
}

/// Parses the text of a `/proc/net/tcp` or `/proc/net/tcp6` table into
/// tuples, states and socket inodes (what [`seed`] reads through procfs;
/// public for the fuzzer, which feeds it arbitrary bytes).
pub fn parse_table(text: &[u8]) -> Vec<(Tuple, TcpState, u64)> {
    use procfs::{ExplicitSystemInfo, FromBufReadSI, net::TcpNetEntries};
    let si = ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    };
    TcpNetEntries::from_buf_read(text, &si)
        .map(|t| {
            t.0.iter()
                .map(|e| {
                    let (tuple, state) = convert(e);
                    (tuple, state, e.inode)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_finds_our_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = std::process::id();
        let ours = crate::filter::netns_of_pid(me).unwrap();
        for netns in [true, false] {
            let seeds = seed(netns);
            let found = seeds
                .iter()
                .find(|s| s.tuple.lport == port && s.state == TcpState::Listen)
                .expect("our listener is in /proc/net/tcp");
            assert_eq!(found.owner.map(|o| o.pid), Some(me));
            assert_eq!(found.tuple.netns, if netns { ours } else { 0 });
        }
    }

    #[test]
    fn namespace_links() {
        assert_eq!(inode_of_link("net:[4026531833]"), Some(4_026_531_833));
        assert_eq!(inode_of_link("mnt:[4026531833]"), None);
        assert_eq!(inode_of_link("net:[x]"), None);
    }

    #[test]
    fn parses_a_table() {
        let text = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
";
        let t = parse_table(text);
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].0.lport, t[0].1, t[0].2),
            (8080, TcpState::Listen, 12345)
        );
        assert!(parse_table(b"\xff\x00garbage").is_empty());
    }
}
