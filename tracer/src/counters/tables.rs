//! What a reading carries beyond the counters when a view asks for
//! [`super::Reading::Tables`] (the doctor): the namespace's socket tables
//! with their queues, timers and owners ([`crate::sockdiag`]), its TCP
//! sysctls ([`crate::sysctls`]), and how many descriptors each process
//! holding a socket has open against its limit. Reading them walks every
//! process's descriptors, so the live source takes them only at the
//! start and the end of a run, never on the periodic readings.

use std::collections::BTreeSet;

use crate::{sockdiag::SockInfo, sysctls::Sysctls};

/// One process's descriptors: how many are open, and its soft limit
/// (`RLIMIT_NOFILE`; `None`: unlimited or unreadable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdUse {
    pub pid: u32,
    pub open: u64,
    pub limit: Option<u64>,
}

/// See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    /// Every TCP socket of the namespace (empty if the dump failed).
    pub sockets: Vec<SockInfo>,
    /// The namespace's settings (`None` if they could not be read).
    pub sysctls: Option<Sysctls>,
    /// The processes holding the sockets, by pid.
    pub fds: Vec<FdUse>,
}

impl Tables {
    /// Reads them on the calling thread's network namespace (the counter
    /// reader's thread, which has entered the watched one: the threads
    /// `sockdiag` and `sysctls` start from it are born there too). Best
    /// effort, as the census: what cannot be read is left empty.
    pub fn read() -> Self {
        let sockets = crate::sockdiag::snapshot(None).unwrap_or_default();
        let sysctls = crate::sysctls::read(None).ok();
        let pids: BTreeSet<u32> = sockets
            .iter()
            .filter_map(|s| s.owner)
            .map(|o| o.pid)
            .collect();
        let fds = pids.into_iter().filter_map(fd_use).collect();
        Self {
            sockets,
            sysctls,
            fds,
        }
    }

    /// Keeps the sockets `keep` wants, and the descriptor counts of the
    /// processes that still hold one of them.
    pub fn retain_sockets(&mut self, keep: impl Fn(&SockInfo) -> bool) {
        self.sockets.retain(|s| keep(s));
        let pids: BTreeSet<u32> = self
            .sockets
            .iter()
            .filter_map(|s| s.owner)
            .map(|o| o.pid)
            .collect();
        self.fds.retain(|f| pids.contains(&f.pid));
    }

    /// The descriptors of process `pid`, if it held a socket.
    pub fn fd_use(&self, pid: u32) -> Option<&FdUse> {
        self.fds.iter().find(|f| f.pid == pid)
    }
}

fn fd_use(pid: u32) -> Option<FdUse> {
    let p = procfs::process::Process::new(pid as i32).ok()?;
    let open = p.fd_count().ok()? as u64;
    let limit = p
        .limits()
        .ok()
        .and_then(|l| match l.max_open_files.soft_limit {
            procfs::process::LimitValue::Value(v) => Some(v),
            procfs::process::LimitValue::Unlimited => None,
        });
    Some(FdUse { pid, open, limit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_sockets_sysctls_and_descriptors() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = Tables::read();
        assert!(t.sockets.iter().any(|s| s.tuple.lport == port));
        assert!(t.sysctls.is_some_and(|s| s.somaxconn > 0));
        let me = t.fd_use(std::process::id()).expect("we hold a socket");
        assert!(me.open >= 1, "{me:?}");
        assert!(me.limit.is_none_or(|l| l >= me.open), "{me:?}");
    }
}
