//! Harness for tcptrace's privileged integration tests: private network
//! namespaces that clean up after themselves, code run inside them on named
//! threads, nftables rules, the kernel's own counters, and the real
//! `tcptrace` binary run as a child whose JSON output is collected.
//!
//! Every test needs root (BPF and namespaces). Without it a test fails with
//! a sentence saying so: it never passes silently.

pub mod kernel;
pub mod netns;
pub mod tracer;

pub use netns::NetNs;
pub use tracer::Tracer;

use std::{
    sync::atomic::{AtomicU16, Ordering},
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

/// Our process id, as the tracer reports owners.
pub fn our_pid() -> u64 {
    u64::from(std::process::id())
}
