//! What the kinds of retransmit say, for `retrans_spike`: the kernel's
//! own split (the TcpExt counters' growth), the dominant kind, and the
//! cause, what to do now and the lasting fix for each.

use std::net::IpAddr;

use super::Scene;
use crate::{counters::Counter, event::RetransKind, views::doctor::finding::Finding};

/// Segments per kind, in [`RetransKind::ALL`]'s order.
pub(super) type ByKind = [u64; RetransKind::ALL.len()];

pub(super) fn slot(k: RetransKind) -> usize {
    RetransKind::ALL.iter().position(|&x| x == k).unwrap_or(0)
}

/// The kernel's own split (TcpExt counters' growth).
pub(super) struct KernelKinds {
    fast: Option<u64>,
    slow_start: Option<u64>,
    timeouts: Option<u64>,
    probes: Option<u64>,
    syn: Option<u64>,
}

impl KernelKinds {
    pub(super) fn of(scene: &Scene<'_>) -> Self {
        Self {
            fast: scene.delta(Counter::TcpFastRetrans),
            slow_start: scene.delta(Counter::TcpSlowStartRetrans),
            timeouts: scene.delta(Counter::TcpTimeouts),
            probes: scene.delta(Counter::TcpLossProbes),
            syn: scene.delta(Counter::TcpSynRetrans),
        }
    }

    /// The kind the counters say most of, when no event said any (a
    /// retransmit on an unfiltered flow, events lost).
    pub(super) fn dominant(&self) -> Option<RetransKind> {
        let mut k = ByKind::default();
        k[slot(RetransKind::Fast)] = self.fast.unwrap_or(0);
        k[slot(RetransKind::Rto)] = self.slow_start.unwrap_or(0) + self.timeouts.unwrap_or(0);
        k[slot(RetransKind::Tlp)] = self.probes.unwrap_or(0);
        k[slot(RetransKind::Syn)] = self.syn.unwrap_or(0);
        dominant(&k)
    }

    pub(super) fn facts(&self, f: Finding) -> Finding {
        let pairs = [
            ("TCPFastRetrans", self.fast),
            ("TCPSlowStartRetrans", self.slow_start),
            ("TCPTimeouts", self.timeouts),
            ("TCPLossProbes", self.probes),
            ("TCPSynRetrans", self.syn),
        ];
        let json: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .filter_map(|(n, v)| Some((n.to_string(), (*v)?.into())))
            .collect();
        if json.is_empty() {
            return f;
        }
        let text: Vec<String> = json.iter().map(|(n, v)| format!("{n} {v}")).collect();
        f.fact(
            "kernel",
            json,
            format!("the kernel's counters: {}", text.join(", ")),
        )
    }
}

pub(super) fn dominant(k: &ByKind) -> Option<RetransKind> {
    let (i, &n) = k.iter().enumerate().rev().max_by_key(|&(_, n)| *n)?;
    (n > 0).then(|| RetransKind::ALL[i])
}

/// What a kind of retransmit says, for the symptom line.
pub(super) fn meaning(k: RetransKind) -> &'static str {
    match k {
        RetransKind::Rto => "timeouts (RTO): a silent peer or a black hole",
        RetransKind::Fast => "fast retransmits: loss on the path",
        RetransKind::Tlp => "tail-loss probes: loss on the path",
        RetransKind::Syn => "SYN retransmits: lost handshakes",
        RetransKind::SynAck => "SYN-ACK retransmits: lost handshakes",
        RetransKind::Data => "data (kind unknown here)",
    }
}

/// Cause, what to do now and the lasting fix, by the dominant kind.
pub(super) fn advice(kind: Option<RetransKind>, peer: Option<IpAddr>) -> (String, String, String) {
    let dst = peer.map_or(String::new(), |p| format!(" dst {p}"));
    match kind {
        Some(RetransKind::Rto) => (
            "Mostly timeouts (RTO): segments went unanswered for whole retransmission timeouts, so the peer or the path went silent rather than losing single packets: a dead or frozen peer, a firewall or NAT that dropped the flow's state, an MTU black hole (large segments dropped, ICMP blocked), a link down.".into(),
            format!("`ss -tni state established{dst}` shows each flow's timer:(on,...) and retrans:N; `ping -M do -s 1472 ADDR` tests the path MTU; `sudo tcptrace retrans --kind rto` shows the timeouts as they happen."),
            "Fix the hop that drops (firewall or NAT state timeouts, the MTU; net.ipv4.tcp_mtu_probing=1 lets TCP find a smaller MSS). A dead peer is given up on only after net.ipv4.tcp_retries2 retries (see `sysctl net.ipv4.tcp_retries2`, 15 is about 15 min): set TCP_USER_TIMEOUT in the application to fail over sooner.".into(),
        ),
        Some(RetransKind::Fast | RetransKind::Tlp) => (
            "Mostly fast retransmits and loss probes: segments are lost on the path while the ACKs of later ones still arrive, i.e. loss, not silence: a congested link or queue, a policer, a bad cable, NIC or driver.".into(),
            "`ip -s link` and `ethtool -S DEV | grep -i -e drop -e err` for drops on this host; `mtr -T ADDR` for the hop; `sudo tcptrace retrans --kind fast` for the flows as they lose.".into(),
            "Remove the loss where it happens (link errors, a full queue: shape or add capacity, a policer's rate). On a lossy WAN use BBR (`sysctl net.ipv4.tcp_congestion_control`) which does not take loss for congestion.".into(),
        ),
        Some(RetransKind::Syn | RetransKind::SynAck) => (
            "Mostly SYN or SYN-ACK retransmits: handshakes are dropped, by a firewall, a full SYN or accept queue at the server (see listen_overflow), or loss on the path.".into(),
            "`sudo tcptrace retrans --kind syn` names the destinations; `nstat -az TcpExtListenDrops TcpExtListenOverflows` on the server.".into(),
            "Let the SYNs through (firewall rules, the server's backlog: net.core.somaxconn and the listen() backlog); each lost SYN costs the client a 1 s timeout.".into(),
        ),
        _ => (
            "Segments are retransmitted above the line: loss or silence on the path (the kind could not be told on this kernel).".into(),
            "`nstat -az TcpExtTCPTimeouts TcpExtTCPFastRetrans TcpExtTCPLossProbes` tells timeouts from fast retransmits; `ss -tni` shows the flows' retrans:N.".into(),
            "Find and remove the loss on the path (link errors, a full queue, a firewall).".into(),
        ),
    }
}
