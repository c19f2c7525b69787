//! Reading one network namespace's counters, ours or another's. A thread
//! of our own (`tcptrace-netns`) enters the namespace once with `setns`
//! and reads `/proc/thread-self/net/...` there on request: procfs shows
//! each thread its own namespace's files. This works for a namespace no
//! process is in (`ip netns add` with nothing started), keeps the
//! namespace open (the same one for the whole run, even if it is
//! re-created under the same name), and never reaches into another
//! process's `/proc` entry, which may go away. Entering a namespace needs
//! `CAP_SYS_ADMIN`; our own namespace needs nothing. [`run_in`] does the
//! same for one piece of work (the socket tables and sysctls of `doctor`).

use std::{
    fs::File,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::Path,
    sync::mpsc::{Receiver, SyncSender, sync_channel},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::{Counters, Reading};
use crate::event::Clock;

/// See the module documentation.
pub struct Reader {
    ask: SyncSender<Reading>,
    answer: Receiver<Result<Counters>>,
    /// The namespace, by inode.
    pub netns: u32,
}

impl Reader {
    /// Our own namespace.
    pub fn own() -> Result<Self> {
        Self::start(None, own_inode()?)
    }

    /// The namespace `--netns` names (a path, a process id or an inode).
    pub fn open(arg: &str) -> Result<Self> {
        let (file, inode) = crate::filter::open_netns(arg).map_err(|e| anyhow!(e))?;
        Self::enter(file, inode)
    }

    /// The namespace with this inode (`--netns` of the views, which keep
    /// only the inode).
    pub fn by_inode(inode: u32) -> Result<Self> {
        if own_inode()? == inode {
            return Self::own();
        }
        let (file, inode) = crate::filter::open_netns_inode(inode).map_err(|e| anyhow!(e))?;
        Self::enter(file, inode)
    }

    fn enter(file: File, inode: u32) -> Result<Self> {
        if own_inode()? == inode {
            return Self::own();
        }
        Self::start(Some(file), inode)
    }

    fn start(ns: Option<File>, netns: u32) -> Result<Self> {
        let (ask, asked) = sync_channel::<Reading>(1);
        let (tell, answer) = sync_channel(1);
        std::thread::Builder::new()
            .name("tcptrace-netns".into())
            .spawn(move || {
                if let Some(f) = ns
                    && let Err(e) = enter(&f, netns)
                {
                    let _ = tell.send(Err(e));
                    return;
                }
                let net = Path::new("/proc/thread-self/net");
                while let Ok(what) = asked.recv() {
                    let c = Counters::read(net, what).map(|c| Counters {
                        ts_ns: Clock::monotonic_now(),
                        netns,
                        ..c
                    });
                    if tell.send(c).is_err() {
                        break;
                    }
                }
            })
            .context("starting the counter reader")?;
        let r = Self { ask, answer, netns };
        // The first reading says whether the namespace could be entered.
        r.read(Reading::Counters)?;
        Ok(r)
    }

    /// The namespace's counters now, with what `what` asks for.
    pub fn read(&self, what: Reading) -> Result<Counters> {
        if self.ask.send(what).is_err() {
            bail!("the counter reader has stopped");
        }
        self.answer
            .recv()
            .map_err(|_| anyhow!("the counter reader has stopped"))?
    }
}

/// Runs `f` on a thread of its own that has entered the network namespace
/// `netns` names (as `--netns` takes it: a path, a process id or an
/// inode; `None`: ours), and returns what it returned. The thread ends
/// with `f`: what `f` opened there (a netlink socket, a `/proc/sys` file)
/// stays in that namespace wherever it is used later. Our own namespace,
/// however named, is not entered, and needs no privilege.
pub fn run_in<R: Send>(netns: Option<&str>, f: impl FnOnce(u32) -> Result<R> + Send) -> Result<R> {
    let own = own_inode()?;
    let target = match netns {
        None => None,
        Some(arg) => {
            let (file, inode) = crate::filter::open_netns(arg).map_err(|e| anyhow!(e))?;
            (inode != own).then_some((file, inode))
        }
    };
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("tcptrace-netns".into())
            .spawn_scoped(s, move || match target {
                None => f(own),
                Some((file, inode)) => {
                    enter(&file, inode)?;
                    f(inode)
                }
            })
            .context("starting a thread to enter the namespace")?
            .join()
            .map_err(|_| anyhow!("the thread in network namespace panicked"))?
    })
}

/// Moves the calling thread into the namespace `file` opens (inode
/// `netns`, for the message).
fn enter(file: &File, netns: u32) -> Result<()> {
    // SAFETY: a valid open descriptor of a namespace file.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = std::io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::EPERM) {
            ": entering another network namespace needs CAP_SYS_ADMIN (run as root)"
        } else {
            ""
        };
        bail!("cannot enter network namespace {netns}: {e}{hint}");
    }
    Ok(())
}

/// Our own network namespace's inode.
pub fn own_inode() -> Result<u32> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")
        .context("reading our network namespace")?
        .ino() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_namespace_by_any_name() {
        let ours = own_inode().unwrap();
        let a = Reader::own().unwrap();
        let b = Reader::by_inode(ours).unwrap();
        let c = Reader::open(&std::process::id().to_string()).unwrap();
        for r in [&a, &b, &c] {
            assert_eq!(r.netns, ours);
            let x = r.read(Reading::Counters).unwrap();
            let y = r.read(Reading::Counters).unwrap();
            assert_eq!(x.netns, ours);
            assert!(y.ts_ns >= x.ts_ns);
            assert!(x.get(super::super::Counter::OutSegs).is_some());
        }
        let e = Reader::open("/etc/hostname").err().unwrap().to_string();
        assert!(e.contains("not a namespace file"), "{e}");
        let e = Reader::by_inode(4_026_000_001).err().unwrap().to_string();
        assert!(e.contains("no process is in network namespace"), "{e}");
    }
}
