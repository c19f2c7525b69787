//! Harness for tcptrace's privileged integration tests: private network
//! namespaces that clean up after themselves (shared with `cargo xtask
//! bench`), code run inside them on named threads, nftables rules, the
//! kernel's own counters, the BPF objects a process holds, and the real
//! `tcptrace` binary run as a child whose output is watched and collected,
//! and real components it feeds (Prometheus, rsyslog) with a scraper's
//! view of `/metrics`.
//!
//! Every test needs root (BPF and namespaces). Without it a test fails with
//! a sentence saying so: it never passes silently.

pub mod bpf;
pub mod daemons;
pub mod doctor;
pub mod ftrace;
pub mod kernel;
pub mod load;
pub mod netns;
pub mod scrape;
pub mod ss;
pub mod tmux;
pub mod tracer;

pub use netns::NetNs;
pub use tracer::Tracer;

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU16, AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// Fails the test unless we are root.
pub fn require_root() {
    // SAFETY: no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests load BPF programs and create network namespaces: run them as root (`cargo xtask test` does)"
    );
}

/// A port unlikely to be used by anything else on the host, different for
/// every call in this process.
pub fn unique_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 2_000) as u16 * 10;
    base + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Polls `f` every 50 ms until it returns true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// Our process id, as the tracer reports owners.
pub fn our_pid() -> u64 {
    u64::from(std::process::id())
}

/// A path in the temporary directory, unique to this process and call,
/// removed on drop.
pub struct TempFile(PathBuf);

impl TempFile {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        Self(std::env::temp_dir().join(format!(
            "tcptrace-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )))
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
