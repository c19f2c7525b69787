//! Private network namespaces for the workloads, removed on drop, and a
//! veth pair between two of them.

use std::process::Command;

use anyhow::{Result, bail};

pub struct NetNs {
    pub name: String,
}

fn sh(args: &[&str]) -> Result<()> {
    let st = Command::new(args[0]).args(&args[1..]).status()?;
    if !st.success() {
        bail!("{args:?} failed with {st}");
    }
    Ok(())
}

impl NetNs {
    pub fn new(tag: &str) -> Result<Self> {
        let name = format!("ttb-{tag}-{}", std::process::id());
        sh(&["ip", "netns", "add", &name])?;
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        // Many short connections: every port, and TIME_WAIT sockets reused.
        ns.exec(&[
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_local_port_range=1024 65000",
        ])?;
        ns.exec(&["sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=1"])?;
        ns.exec(&["sysctl", "-q", "-w", "net.core.somaxconn=65535"])?;
        ns.exec(&["sysctl", "-q", "-w", "net.ipv4.tcp_max_syn_backlog=65535"])?;
        Ok(ns)
    }

    pub fn exec(&self, args: &[&str]) -> Result<()> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Loads an nftables ruleset.
    pub fn nft(&self, ruleset: &str) -> Result<()> {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()?;
        child.stdin.take().unwrap().write_all(ruleset.as_bytes())?;
        if !child.wait()?.success() {
            bail!("nft rejected {ruleset}");
        }
        Ok(())
    }

    /// `Tcp: RetransSegs` of the namespace.
    pub fn retrans_segs(&self) -> Result<u64> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "cat", "/proc/net/snmp"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines().filter(|l| l.starts_with("Tcp:"));
        let (Some(h), Some(v)) = (lines.next(), lines.next()) else {
            bail!("no Tcp line in /proc/net/snmp");
        };
        let i = h
            .split_whitespace()
            .position(|x| x == "RetransSegs")
            .unwrap_or(0);
        Ok(v.split_whitespace()
            .nth(i)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0))
    }

    /// Drops `percent` % of segments to and from `port` in the input hook.
    pub fn random_drop(&self, port: u16, percent: u32) -> Result<()> {
        self.nft(&format!(
            "table inet loss {{
               chain input {{
                 type filter hook input priority 0; policy accept;
                 tcp dport {port} numgen random mod 100 < {percent} drop
                 tcp sport {port} numgen random mod 100 < {percent} drop
               }}
             }}"
        ))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair with offloads off: 10.201.0.1 (a)
/// and 10.201.0.2 (b).
pub fn veth_pair(tag: &str) -> Result<(NetNs, NetNs)> {
    let a = NetNs::new(&format!("{tag}a"))?;
    let b = NetNs::new(&format!("{tag}b"))?;
    let (va, vb) = (
        format!("tta{}", std::process::id() % 100_000),
        format!("ttb{}", std::process::id() % 100_000),
    );
    sh(&[
        "ip", "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb, "netns",
        &b.name,
    ])?;
    for (ns, dev, addr) in [(&a, &va, "10.201.0.1/24"), (&b, &vb, "10.201.0.2/24")] {
        ns.exec(&["ip", "addr", "add", addr, "dev", dev])?;
        ns.exec(&["ip", "link", "set", dev, "up"])?;
        ns.exec(&[
            "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off",
        ])?;
    }
    Ok((a, b))
}
