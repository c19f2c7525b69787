//! A private network namespace, created with `ip netns add` and removed on
//! drop, with helpers to run commands and Rust code inside it.

use std::{
    fs::File,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use nix::sched::{CloneFlags, setns};

/// See the module documentation.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// Creates `tt-<tag>-<pid>-<n>` with `lo` up.
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tt-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.sh(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Loopback with 1500-byte MTU and no segmentation offloads, so one skb
    /// is one segment and the kernel's RetransSegs counts what the
    /// `tcp_retransmit_skb` tracepoint sees.
    pub fn small_segments(&self) -> &Self {
        self.sh(&["ip", "link", "set", "lo", "mtu", "1500"]);
        self.sh(&[
            "ethtool", "-K", "lo", "tso", "off", "gso", "off", "gro", "off",
        ]);
        self
    }

    /// Runs a command inside the namespace; panics unless it succeeds.
    pub fn sh(&self, args: &[&str]) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        run(&mut c)
    }

    /// Loads an nftables ruleset inside the namespace.
    pub fn nft(&self, ruleset: &str) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawning nft (is the nftables package installed? `cargo xtask setup`)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        let st = child.wait().unwrap();
        assert!(st.success(), "nft rejected:\n{ruleset}");
    }

    /// A counter from the namespace's `/proc/net/snmp` or `/proc/net/netstat`
    /// (e.g. `("Tcp", "RetransSegs")`, `("TcpExt", "TCPSynRetrans")`).
    pub fn counter(&self, group: &str, name: &str) -> u64 {
        for file in ["/proc/net/snmp", "/proc/net/netstat"] {
            let out = self.sh(&["cat", file]);
            let text = String::from_utf8_lossy(&out.stdout);
            let prefix = format!("{group}:");
            let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
            if let (Some(h), Some(v)) = (lines.next(), lines.next())
                && let Some(i) = h.split_whitespace().position(|x| x == name)
            {
                return v.split_whitespace().nth(i).unwrap().parse().unwrap();
            }
        }
        panic!("no counter {group}:{name} in the namespace's /proc/net/snmp or netstat")
    }

    /// Runs `f` on a new thread named `thread` (its comm, as tcptrace will
    /// report it) that has entered this namespace.
    pub fn spawn<R: Send + 'static>(
        &self,
        thread: &str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<R> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                let fd = File::open(&path).expect("opening the namespace");
                setns(&fd, CloneFlags::CLONE_NEWNET).expect("entering the namespace");
                f()
            })
            .expect("spawning a thread")
    }

    /// [`NetNs::spawn`] and wait for the result.
    pub fn run<R: Send + 'static>(
        &self,
        thread: &str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> R {
        self.spawn(thread, f)
            .join()
            .expect("thread in namespace panicked")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(c: &mut Command) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("running {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
