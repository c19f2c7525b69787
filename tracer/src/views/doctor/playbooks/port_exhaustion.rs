//! `port_exhaustion`: connections toward one destination (address and
//! port) that use up the ephemeral ports. Each outgoing connection takes
//! a local port from `ip_local_port_range` for as long as its socket
//! lives, TIME_WAIT included (60 s after an active close); a client that
//! opens a connection per request runs out, and `connect()` fails with
//! EADDRNOTAVAIL. This playbook owns EADDRNOTAVAIL (`connect_failures`
//! leaves it out): per destination, the ports held at the end against
//! the range, the failed connects and who made them, and the churn.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use super::{Examine, Scene};
use crate::{
    engine::flows::ConnectOutcome,
    event::{Owner, TcpState},
    sockdiag::SockInfo,
    views::doctor::finding::{Finding, Playbook, Severity, Subject},
};

/// The share of the range one destination may hold before it is a
/// warning, and before it is critical. Half the range is far beyond
/// pooled or keep-alive traffic; at 90 % a burst fails.
const WARN_SHARE: f64 = 0.5;
const CRIT_SHARE: f64 = 0.9;
/// Connects that failed with EADDRNOTAVAIL before it is critical: every
/// one is a request that failed for want of a port.
const CRIT_EADDRNOTAVAIL: u64 = 1;
/// Destinations reported at most, and tracked at most.
const MAX_FINDINGS: usize = 3;
const MAX_DESTS: usize = 4096;

#[derive(Default)]
struct Dest {
    attempts: u64,
    no_port: u64,
    /// Who got EADDRNOTAVAIL, and who connected at all.
    no_port_owners: HashMap<Owner, u64>,
    owners: HashMap<Owner, u64>,
}

/// The ports held toward one destination at the end.
#[derive(Default)]
struct Held {
    count: u64,
    time_wait: u64,
    /// The local address that holds most.
    laddr: Option<IpAddr>,
}

#[derive(Default)]
pub struct PortExhaustion {
    dests: HashMap<SocketAddr, Dest>,
}

impl Examine for PortExhaustion {
    fn on_connect(&mut self, o: &ConnectOutcome) {
        let to = SocketAddr::new(o.tuple.raddr, o.tuple.rport);
        if !self.dests.contains_key(&to) && self.dests.len() >= MAX_DESTS {
            return;
        }
        let d = self.dests.entry(to).or_default();
        d.attempts += 1;
        if let Some(owner) = o.owner {
            *d.owners.entry(owner).or_default() += 1;
        }
        if o.errno == Some(libc::EADDRNOTAVAIL) {
            d.no_port += 1;
            if let Some(owner) = o.owner {
                *d.no_port_owners.entry(owner).or_default() += 1;
            }
        }
    }

    fn examine(&self, scene: &Scene<'_>) -> Vec<Finding> {
        let (Some(last), Some(sys)) = (scene.tables_last, scene.sysctls()) else {
            return Vec::new();
        };
        let (low, high) = sys.ip_local_port_range;
        let range = sys.ephemeral_ports();
        let held = held(&last.sockets, low, high);
        let mut dests: HashSet<SocketAddr> = held.keys().copied().collect();
        dests.extend(
            self.dests
                .iter()
                .filter(|(_, d)| d.no_port > 0)
                .map(|(a, _)| *a),
        );
        let mut bad: Vec<(SocketAddr, u64, u64)> = dests
            .into_iter()
            .map(|to| {
                let h = held.get(&to).map_or(0, |h| h.count);
                let n = self.dests.get(&to).map_or(0, |d| d.no_port);
                (to, h, n)
            })
            .filter(|&(_, h, n)| n > 0 || h as f64 >= WARN_SHARE * f64::from(range))
            .collect();
        bad.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));
        let none = Held::default();
        bad.into_iter()
            .take(MAX_FINDINGS)
            .map(|(to, _, _)| {
                let d = self.dests.get(&to);
                let h = held.get(&to).unwrap_or(&none);
                finding(scene, sys, to, h, d)
            })
            .collect()
    }
}

/// Client-side sockets (local port in the range, not a listener's) per
/// destination.
fn held(socks: &[SockInfo], low: u16, high: u16) -> BTreeMap<SocketAddr, Held> {
    let listening: HashSet<u16> = socks
        .iter()
        .filter(|s| s.state == TcpState::Listen)
        .map(|s| s.tuple.lport)
        .collect();
    let mut by_laddr: BTreeMap<(SocketAddr, IpAddr), (u64, u64)> = BTreeMap::new();
    for s in socks {
        let t = &s.tuple;
        if s.state == TcpState::Listen
            || !(low..=high).contains(&t.lport)
            || listening.contains(&t.lport)
        {
            continue;
        }
        let e = by_laddr
            .entry((SocketAddr::new(t.raddr, t.rport), t.laddr))
            .or_default();
        e.0 += 1;
        e.1 += u64::from(s.state == TcpState::TimeWait);
    }
    // The kernel picks a port per (local address, destination); the
    // address that holds most is the one that runs out first.
    let mut out: BTreeMap<SocketAddr, Held> = BTreeMap::new();
    for ((to, laddr), (n, tw)) in by_laddr {
        let h = out.entry(to).or_default();
        if n > h.count {
            *h = Held {
                count: n,
                time_wait: tw,
                laddr: Some(laddr),
            };
        }
    }
    out
}

fn finding(
    scene: &Scene<'_>,
    sys: &crate::sysctls::Sysctls,
    to: SocketAddr,
    h: &Held,
    d: Option<&Dest>,
) -> Finding {
    let (low, high) = sys.ip_local_port_range;
    let range = sys.ephemeral_ports();
    let no_port = d.map_or(0, |d| d.no_port);
    let share = h.count as f64 / f64::from(range.max(1));
    let severity = if no_port >= CRIT_EADDRNOTAVAIL || share >= CRIT_SHARE {
        Severity::Critical
    } else {
        Severity::Warning
    };
    // Churn: the connections made (a failed one holds no port).
    let made = d.map_or(0, |d| d.attempts - d.no_port);
    let rate = made as f64 / scene.duration_s.max(1.0);
    let summary = if no_port > 0 {
        format!("Out of local ports toward {to}: {no_port} connects failed with EADDRNOTAVAIL")
    } else {
        format!(
            "Local ports toward {to} running out: {} of {range} in use",
            h.count
        )
    };
    let mut f = Finding::new(Playbook::PortExhaustion, severity, summary)
        .fact(
            "held",
            h.count,
            format!(
                "{} local ports held toward {to}{}, {} of them in TIME_WAIT, of the {range} in net.ipv4.ip_local_port_range {low}-{high} ({:.0} %; warning at {:.0} %, critical at {:.0} % or at {CRIT_EADDRNOTAVAIL} EADDRNOTAVAIL)",
                h.count,
                h.laddr.map_or(String::new(), |a| format!(" from {a}")),
                h.time_wait,
                share * 100.0,
                WARN_SHARE * 100.0,
                CRIT_SHARE * 100.0
            ),
        )
        .fact("time_wait", h.time_wait, String::new())
        .fact("range", range, String::new())
        .fact(
            "eaddrnotavail",
            no_port,
            format!("{no_port} connects failed with EADDRNOTAVAIL (no free local port)"),
        )
        .fact(
            "connects_per_s",
            (rate * 10.0).round() / 10.0,
            format!(
                "{made} new connections in {:.0} s ({rate:.1}/s): at that rate and 60 s of TIME_WAIT each, {:.0} ports are needed",
                scene.duration_s,
                rate * 60.0
            ),
        )
        .fact(
            "tcp_tw_reuse",
            sys.tcp_tw_reuse,
            format!(
                "net.ipv4.tcp_tw_reuse = {} ({})",
                sys.tcp_tw_reuse,
                match sys.tcp_tw_reuse {
                    0 => "off: a port in TIME_WAIT is not reused",
                    1 => "on: outgoing connections reuse TIME_WAIT ports",
                    _ => "loopback only",
                }
            ),
        )
        .subject(Subject {
            laddr: h.laddr,
            raddr: Some(to.ip()),
            rport: Some(to.port()),
            count: Some(h.count),
            ..Subject::default()
        });
    if let Some(d) = d {
        let who = if d.no_port_owners.is_empty() {
            &d.owners
        } else {
            &d.no_port_owners
        };
        for s in Subject::owners(who.iter().map(|(o, n)| (o, *n)), 3) {
            f = f.subject(s);
        }
    }
    let (ip, port) = (to.ip(), to.port());
    f.cause(format!(
        "The client opens a new connection toward {to} for each request and closes it first, so every port stays in TIME_WAIT for 60 s after use; {range} ports last {:.0} s at this rate.",
        f64::from(range) / rate.max(0.1)
    ))
    .action(format!(
        "`ss -tan state time-wait dst {ip} and dport = :{port} | wc -l` counts the ports held; `sudo tcptrace connect --rport {port}` shows who connects. Slow the client or spread it over more destination addresses now."
    ))
    .fix(format!(
        "Reuse connections (a pool, HTTP keep-alive). Widen net.ipv4.ip_local_port_range (now {low} {high}, {range} ports; e.g. 1024 65000) and set net.ipv4.tcp_tw_reuse=1 (now {}) for outgoing connections.",
        sys.tcp_tw_reuse
    ))
}
