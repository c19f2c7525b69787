//! `connect_failures`: connection attempts that fail, per destination, by
//! errno and by the process that made them. Refused means nothing listens
//! (or a firewall rejects); timed out means SYNs went unanswered (a drop,
//! a dead host). EADDRNOTAVAIL (no local port was free) is left to
//! `port_exhaustion`, which says it with the ports held and the range, so
//! the operator is not told the same thing twice.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{Examine, Scene};
use crate::{
    engine::flows::ConnectOutcome,
    event::{Owner, errno_name},
    views::doctor::finding::{Finding, Playbook, Severity, Subject},
};

/// Failures to one destination before it is a warning, and the share of
/// attempts they must be (a rare refused connect is normal life).
const WARN_FAILURES: u64 = 3;
const WARN_SHARE: f64 = 0.05;
/// Failures, and share, that make it critical: the service is unreachable.
const CRIT_FAILURES: u64 = 20;
const CRIT_SHARE: f64 = 0.5;
/// Destinations reported at most (the worst first).
const MAX_FINDINGS: usize = 3;
/// Destinations tracked at most (a scan must not grow memory).
const MAX_DESTS: usize = 4096;

#[derive(Default)]
struct Dest {
    attempts: u64,
    /// Failures by errno (0: the kernel did not say).
    errors: HashMap<i32, u64>,
    /// Failed attempts by process.
    owners: HashMap<Owner, u64>,
}

impl Dest {
    fn failures(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[derive(Default)]
pub struct ConnectFailures {
    dests: HashMap<SocketAddr, Dest>,
}

impl Examine for ConnectFailures {
    fn on_connect(&mut self, o: &ConnectOutcome) {
        if o.errno == Some(libc::EADDRNOTAVAIL) {
            return;
        }
        let to = SocketAddr::new(o.tuple.raddr, o.tuple.rport);
        if !self.dests.contains_key(&to) && self.dests.len() >= MAX_DESTS {
            return;
        }
        let d = self.dests.entry(to).or_default();
        d.attempts += 1;
        if o.failed() {
            *d.errors.entry(o.errno.unwrap_or(0)).or_default() += 1;
            if let Some(owner) = o.owner {
                *d.owners.entry(owner).or_default() += 1;
            }
        }
    }

    fn examine(&self, scene: &Scene<'_>) -> Vec<Finding> {
        let mut bad: Vec<(&SocketAddr, &Dest)> = self
            .dests
            .iter()
            .filter(|(_, d)| {
                let f = d.failures();
                f >= WARN_FAILURES && f as f64 >= WARN_SHARE * d.attempts as f64
            })
            .collect();
        bad.sort_by(|a, b| b.1.failures().cmp(&a.1.failures()).then(a.0.cmp(b.0)));
        bad.into_iter()
            .take(MAX_FINDINGS)
            .map(|(to, d)| finding(to, d, scene.duration_s))
            .collect()
    }
}

fn finding(to: &SocketAddr, d: &Dest, secs: f64) -> Finding {
    let failures = d.failures();
    let share = failures as f64 / d.attempts.max(1) as f64;
    let severity = if failures >= CRIT_FAILURES && share >= CRIT_SHARE {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let mut errors: Vec<(i32, u64)> = d.errors.iter().map(|(e, n)| (*e, *n)).collect();
    errors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let (main_errno, _) = errors[0];
    let name = |e: i32| {
        if e == 0 {
            "unknown".to_string()
        } else {
            errno_name(e)
        }
    };
    let by_errno: serde_json::Map<String, serde_json::Value> = errors
        .iter()
        .map(|(e, n)| (name(*e), (*n).into()))
        .collect();
    let listed: Vec<String> = errors
        .iter()
        .map(|(e, n)| format!("{n} {}", name(*e)))
        .collect();
    let mut f = Finding::new(
        Playbook::ConnectFailures,
        severity,
        format!(
            "{failures} of {} connects to {to} failed ({})",
            d.attempts,
            name(main_errno)
        ),
    )
    .fact(
        "failures",
        failures,
        format!(
            "{failures} failed of {} attempts in {secs:.0} s ({:.0} %; warning at {WARN_FAILURES} and {:.0} %, critical at {CRIT_FAILURES} and {:.0} %)",
            d.attempts,
            share * 100.0,
            WARN_SHARE * 100.0,
            CRIT_SHARE * 100.0
        ),
    )
    .fact("attempts", d.attempts, String::new())
    .fact("by_errno", by_errno, format!("by error: {}", listed.join(", ")))
    .subject(Subject {
        raddr: Some(to.ip()),
        rport: Some(to.port()),
        count: Some(failures),
        ..Subject::default()
    });
    for s in Subject::owners(d.owners.iter().map(|(o, n)| (o, *n)), 3) {
        f = f.subject(s);
    }
    let (cause, action, fix) = advice(main_errno, to);
    f.cause(cause).action(action).fix(fix)
}

/// Cause, what to do now, and the lasting fix, by the commonest errno.
fn advice(errno: i32, to: &SocketAddr) -> (String, String, String) {
    let port = to.port();
    match errno {
        libc::ECONNREFUSED => (
            format!("Nothing listens on {to} (the host answered the SYN with a reset), or a firewall rejects with resets."),
            format!("On {}: `ss -ltn 'sport = :{port}'` shows whether the service listens; check it is running and bound to this address.", to.ip()),
            "Point the client at the right address and port, or start the service; a client should back off and retry with jitter, not loop.".to_string(),
        ),
        libc::ETIMEDOUT => (
            format!("SYNs to {to} went unanswered: a firewall drops them, the host is down, or the route is wrong."),
            format!("`sudo tcptrace retrans --kind syn --rport {port}` shows the SYN retries; check the path (`ip route get {}`, firewall rules).", to.ip()),
            "Fix the path or the destination; the client's connect timeout (net.ipv4.tcp_syn_retries, or its own) bounds how long each attempt hangs.".to_string(),
        ),
        libc::EADDRNOTAVAIL => (
            "No local port was free for this destination: the ephemeral range is used up (see port_exhaustion).".to_string(),
            format!("`ss -tan state time-wait dst {}` counts the ports held; pool or keep connections alive instead of opening one per request.", to.ip()),
            "Widen net.ipv4.ip_local_port_range, enable net.ipv4.tcp_tw_reuse=1 for outgoing connections, and reuse connections in the client.".to_string(),
        ),
        libc::ENETUNREACH | libc::EHOSTUNREACH => (
            format!("No route to {}: the routing table or a neighbour (ARP/ND) fails.", to.ip()),
            format!("`ip route get {}` and `ip neigh` on this host.", to.ip()),
            "Fix the route or the interface; check ICMP unreachables from the path.".to_string(),
        ),
        _ => (
            "Connection attempts fail; the errno says how.".to_string(),
            format!("`sudo tcptrace connect --rport {port}` shows each attempt with its errno and owner."),
            "Fix what the errno names, at the destination or on the path.".to_string(),
        ),
    }
}
