//! The TCP settings of a network namespace (`/proc/sys/net/...` as seen
//! from inside it) that decide how long connects, dead peers and
//! keepalives take, how deep accept and SYN queues may grow and how many
//! ephemeral ports there are, with what they mean for an operator
//! ([`model`]). For `tcptrace doctor`, which reads them when it starts and
//! when it stops.

pub mod model;

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use serde::Serialize;

/// The settings, as the kernel of the namespace has them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sysctls {
    /// The namespace, by inode.
    pub netns: u32,
    /// `net.ipv4.tcp_syn_retries`: SYN retransmissions before `connect()`
    /// gives up.
    pub tcp_syn_retries: u32,
    /// `net.ipv4.tcp_syn_linear_timeouts` (Linux 6.5+; `None` where the
    /// kernel lacks it, which behaves as 0): SYN retransmissions at a
    /// fixed 1 s before backing off, on top of `tcp_syn_retries`.
    pub tcp_syn_linear_timeouts: Option<u32>,
    /// `net.ipv4.tcp_synack_retries`: SYN-ACK retransmissions before a
    /// listener drops a half-open connection.
    pub tcp_synack_retries: u32,
    /// `net.ipv4.tcp_retries2`: how long an established connection
    /// retransmits to a silent peer (see [`model::dead_peer_timeout_ms`]).
    pub tcp_retries2: u32,
    /// `net.ipv4.tcp_keepalive_time`, seconds of silence before the
    /// first keepalive probe.
    pub tcp_keepalive_time: u32,
    /// `net.ipv4.tcp_keepalive_intvl`, seconds between probes.
    pub tcp_keepalive_intvl: u32,
    /// `net.ipv4.tcp_keepalive_probes`, unanswered probes before the
    /// connection is dropped.
    pub tcp_keepalive_probes: u32,
    /// `net.ipv4.tcp_tw_reuse`: 0 off, 1 on, 2 loopback only.
    pub tcp_tw_reuse: u32,
    /// `net.core.somaxconn`: the largest accept queue `listen()` gets.
    pub somaxconn: u32,
    /// `net.ipv4.tcp_max_syn_backlog`: half-open connections a listener
    /// keeps (without SYN cookies).
    pub tcp_max_syn_backlog: u32,
    /// `net.ipv4.ip_local_port_range`, both ends included.
    pub ip_local_port_range: (u16, u16),
    /// `net.ipv4.tcp_fin_timeout`, seconds an orphaned connection stays
    /// in FIN_WAIT2.
    pub tcp_fin_timeout: u32,
    /// `net.ipv4.tcp_syncookies`: 0 never, 1 when the SYN queue
    /// overflows, 2 always.
    pub tcp_syncookies: u32,
    /// `net.ipv4.tcp_abort_on_overflow`: 1 resets connections a full
    /// accept queue cannot take, 0 drops their ACK (the client retries).
    pub tcp_abort_on_overflow: u32,
    /// `net.ipv4.tcp_rto_max_ms` (Linux 6.15+; `None` where the kernel
    /// lacks it, which behaves as 120000): the largest RTO.
    pub tcp_rto_max_ms: Option<u32>,
}

impl Sysctls {
    /// The largest RTO, in ms.
    pub fn rto_max_ms(&self) -> u64 {
        self.tcp_rto_max_ms.map_or(model::RTO_MAX_MS, u64::from)
    }

    /// How long `connect()` to a peer that never answers waits before
    /// `ETIMEDOUT`, in ms.
    pub fn connect_timeout_ms(&self) -> u64 {
        model::connect_timeout_ms(
            self.tcp_syn_retries,
            self.tcp_syn_linear_timeouts.unwrap_or(0),
            self.rto_max_ms(),
        )
    }

    /// About how long an established connection retransmits to a peer
    /// that went silent before it is dropped, in ms.
    pub fn dead_peer_timeout_ms(&self) -> u64 {
        model::dead_peer_timeout_ms(self.tcp_retries2, self.rto_max_ms())
    }

    /// How long an idle `SO_KEEPALIVE` connection takes to notice that its
    /// peer is gone, in ms.
    pub fn keepalive_detection_ms(&self) -> u64 {
        model::keepalive_detection_ms(
            self.tcp_keepalive_time,
            self.tcp_keepalive_intvl,
            self.tcp_keepalive_probes,
        )
    }

    /// Ephemeral ports per destination address and port.
    pub fn ephemeral_ports(&self) -> u32 {
        let (low, high) = self.ip_local_port_range;
        model::ephemeral_ports(low, high)
    }
}

/// The settings of the network namespace `netns` names (as `--netns`
/// takes it: a path, a process id or an inode; `None`: ours). Reading
/// another namespace needs `CAP_SYS_ADMIN`.
pub fn read(netns: Option<&str>) -> Result<Sysctls> {
    crate::counters::netns::run_in(netns, |inode| from_dir(Path::new("/proc/sys"), inode))
}

/// The settings under `root` (`/proc/sys`, or a copy for tests).
fn from_dir(root: &Path, netns: u32) -> Result<Sysctls> {
    let text = |name: &str| -> Result<Option<String>> {
        let path = root.join(name.replace('.', "/"));
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    };
    let optional = |name: &str| -> Result<Option<u32>> {
        text(name)?
            .map(|t| {
                t.trim()
                    .parse()
                    .map_err(|_| anyhow!("{name} is not a number: {:?}", t.trim()))
            })
            .transpose()
    };
    let number = |name: &str| -> Result<u32> {
        optional(name)?.ok_or_else(|| anyhow!("this kernel has no {name}"))
    };
    let range = text("net.ipv4.ip_local_port_range")?
        .ok_or_else(|| anyhow!("this kernel has no net.ipv4.ip_local_port_range"))?;
    let ip_local_port_range = parse_range(&range)
        .ok_or_else(|| anyhow!("net.ipv4.ip_local_port_range does not parse: {range:?}"))?;
    Ok(Sysctls {
        netns,
        tcp_syn_retries: number("net.ipv4.tcp_syn_retries")?,
        tcp_syn_linear_timeouts: optional("net.ipv4.tcp_syn_linear_timeouts")?,
        tcp_synack_retries: number("net.ipv4.tcp_synack_retries")?,
        tcp_retries2: number("net.ipv4.tcp_retries2")?,
        tcp_keepalive_time: number("net.ipv4.tcp_keepalive_time")?,
        tcp_keepalive_intvl: number("net.ipv4.tcp_keepalive_intvl")?,
        tcp_keepalive_probes: number("net.ipv4.tcp_keepalive_probes")?,
        tcp_tw_reuse: number("net.ipv4.tcp_tw_reuse")?,
        somaxconn: number("net.core.somaxconn")?,
        tcp_max_syn_backlog: number("net.ipv4.tcp_max_syn_backlog")?,
        ip_local_port_range,
        tcp_fin_timeout: number("net.ipv4.tcp_fin_timeout")?,
        tcp_syncookies: number("net.ipv4.tcp_syncookies")?,
        tcp_abort_on_overflow: number("net.ipv4.tcp_abort_on_overflow")?,
        tcp_rto_max_ms: optional("net.ipv4.tcp_rto_max_ms")?,
    })
}

/// `32768\t60999`.
fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut w = text.split_whitespace();
    let low = w.next()?.parse().ok()?;
    let high = w.next()?.parse().ok()?;
    w.next().is_none().then_some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `/proc/sys` of our own making: a kernel without the newer knobs.
    #[test]
    fn reads_a_tree_and_absent_knobs_are_none() {
        let root = std::env::temp_dir().join(format!("tcptrace-sysctls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let put = |name: &str, value: &str| {
            let p = root.join(name.replace('.', "/"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, format!("{value}\n")).unwrap();
        };
        for (name, value) in [
            ("net.ipv4.tcp_syn_retries", "6"),
            ("net.ipv4.tcp_synack_retries", "5"),
            ("net.ipv4.tcp_retries2", "15"),
            ("net.ipv4.tcp_keepalive_time", "7200"),
            ("net.ipv4.tcp_keepalive_intvl", "75"),
            ("net.ipv4.tcp_keepalive_probes", "9"),
            ("net.ipv4.tcp_tw_reuse", "2"),
            ("net.core.somaxconn", "4096"),
            ("net.ipv4.tcp_max_syn_backlog", "2048"),
            ("net.ipv4.ip_local_port_range", "32768\t60999"),
            ("net.ipv4.tcp_fin_timeout", "60"),
            ("net.ipv4.tcp_syncookies", "1"),
            ("net.ipv4.tcp_abort_on_overflow", "0"),
        ] {
            put(name, value);
        }
        let s = from_dir(&root, 9).unwrap();
        assert_eq!(
            (s.netns, s.tcp_syn_linear_timeouts, s.tcp_rto_max_ms),
            (9, None, None)
        );
        assert_eq!(s.ip_local_port_range, (32_768, 60_999));
        assert_eq!(s.connect_timeout_ms(), 127_000);
        assert_eq!(s.dead_peer_timeout_ms(), 924_600);
        assert_eq!(s.keepalive_detection_ms(), 7_875_000);
        assert_eq!(s.ephemeral_ports(), 28_232);
        put("net.ipv4.tcp_syn_linear_timeouts", "4");
        let s = from_dir(&root, 9).unwrap();
        assert_eq!(
            (s.tcp_syn_linear_timeouts, s.connect_timeout_ms()),
            (Some(4), 131_000)
        );
        put("net.core.somaxconn", "many");
        let e = from_dir(&root, 9).unwrap_err().to_string();
        assert!(e.contains("net.core.somaxconn is not a number"), "{e}");
        std::fs::remove_file(root.join("net/core/somaxconn")).unwrap();
        let e = from_dir(&root, 9).unwrap_err().to_string();
        assert!(e.contains("this kernel has no net.core.somaxconn"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn reads_our_own_namespace() {
        let s = read(None).unwrap();
        assert_eq!(s.netns, crate::counters::netns::own_inode().unwrap());
        assert!(s.somaxconn > 0 && s.ephemeral_ports() > 0, "{s:?}");
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32_768, 60_999)));
        assert_eq!(parse_range("1024 65535"), Some((1_024, 65_535)));
        assert_eq!(parse_range("1024"), None);
        assert_eq!(parse_range("1 2 3"), None);
        assert_eq!(parse_range("1 70000"), None);
    }
}
