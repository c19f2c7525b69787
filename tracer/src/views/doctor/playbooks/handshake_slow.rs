//! `handshake_slow`: per destination, the handshakes (SYN_SENT to
//! ESTABLISHED, from the connect outcomes) whose p99 stands far above
//! their median. A step of about 1 s (or 3 s: 1 + 2) above the median is
//! the SYN retransmission timeout: the first SYN (or SYN-ACK) was lost
//! and resent, so the time is a lost packet, not a slow server.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{Examine, Scene};
use crate::{
    engine::flows::ConnectOutcome,
    event::Owner,
    views::doctor::finding::{Finding, Playbook, Severity, Subject},
};

/// Successful handshakes a destination needs before its p99 means
/// anything.
const MIN_CONNECTS: usize = 20;
/// A slow handshake: at least this much above the median (the initial
/// SYN RTO is 1 s; a slow server or a long path stays far below).
const STEP_NS: u64 = 900_000_000;
/// Slow handshakes before it is a warning (one lost SYN is normal life),
/// and the share of them that makes it critical (one connect in ten
/// waits a second or more).
const WARN_SLOW: u64 = 2;
const CRIT_SHARE: f64 = 0.1;
/// Destinations reported at most, and tracked at most.
const MAX_FINDINGS: usize = 3;
const MAX_DESTS: usize = 512;
/// Handshake times kept per destination: an exact p99 of the first
/// 2 000 (a longer storm is judged on those), and at most 8 MB of them
/// in all.
const MAX_SAMPLES: usize = 2_000;

#[derive(Default)]
struct Dest {
    ns: Vec<u64>,
    /// Owners of the slow handshakes.
    slow_owners: HashMap<Owner, u64>,
}

#[derive(Default)]
pub struct HandshakeSlow {
    dests: HashMap<SocketAddr, Dest>,
}

/// The `p`-th percentile (nearest rank) of sorted `v`.
fn percentile(v: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// What one destination's handshakes say.
struct Judged {
    n: usize,
    p50: u64,
    p99: u64,
    max: u64,
    /// Handshakes at least a step above the median, and those of about
    /// 1 s and 3 s above it.
    slow: u64,
    one_s: u64,
    three_s: u64,
}

fn judge(ns: &[u64]) -> Option<Judged> {
    if ns.len() < MIN_CONNECTS {
        return None;
    }
    let mut v = ns.to_vec();
    v.sort_unstable();
    let p50 = percentile(&v, 50.0);
    let above = |x: u64| x.saturating_sub(p50);
    let step =
        |lo: u64, hi: u64| v.iter().filter(|&&x| (lo..hi).contains(&above(x))).count() as u64;
    Some(Judged {
        n: v.len(),
        p50,
        p99: percentile(&v, 99.0),
        max: *v.last()?,
        slow: v.iter().filter(|&&x| above(x) >= STEP_NS).count() as u64,
        one_s: step(STEP_NS, 1_500_000_000),
        three_s: step(2_700_000_000, 3_500_000_000),
    })
}

fn ms(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

impl Examine for HandshakeSlow {
    fn on_connect(&mut self, o: &ConnectOutcome) {
        let Some(lat) = o.latency_ns else { return };
        let t = o.tuple.unmapped();
        let to = SocketAddr::new(t.raddr, t.rport);
        if !self.dests.contains_key(&to) && self.dests.len() >= MAX_DESTS {
            return;
        }
        let d = self.dests.entry(to).or_default();
        if d.ns.len() < MAX_SAMPLES {
            d.ns.push(lat);
        }
        if lat >= STEP_NS
            && let Some(owner) = o.owner
        {
            *d.slow_owners.entry(owner).or_default() += 1;
        }
    }

    fn examine(&self, scene: &Scene<'_>) -> Vec<Finding> {
        let mut bad: Vec<(&SocketAddr, &Dest, Judged)> = self
            .dests
            .iter()
            .filter_map(|(to, d)| Some((to, d, judge(&d.ns)?)))
            .filter(|(_, _, j)| j.slow >= WARN_SLOW)
            .collect();
        bad.sort_by(|a, b| b.2.slow.cmp(&a.2.slow).then(a.0.cmp(b.0)));
        bad.into_iter()
            .take(MAX_FINDINGS)
            .map(|(to, d, j)| finding(to, d, &j, scene.duration_s))
            .collect()
    }
}

fn finding(to: &SocketAddr, d: &Dest, j: &Judged, secs: f64) -> Finding {
    let share = j.slow as f64 / j.n as f64;
    let severity = if share >= CRIT_SHARE {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let step = if j.three_s > j.one_s { "3 s" } else { "1 s" };
    let mut f = Finding::new(
        Playbook::HandshakeSlow,
        severity,
        format!(
            "Handshakes to {to}: p99 {} against a median of {}, a {step} step (lost SYNs)",
            ms(j.p99),
            ms(j.p50)
        ),
    )
    .fact(
        "p50_ms",
        j.p50 as f64 / 1e6,
        format!(
            "{} handshakes in {secs:.0} s: p50 {}, p99 {}, max {}",
            j.n,
            ms(j.p50),
            ms(j.p99),
            ms(j.max)
        ),
    )
    .fact("p99_ms", j.p99 as f64 / 1e6, String::new())
    .fact("max_ms", j.max as f64 / 1e6, String::new())
    .fact("connects", j.n, String::new())
    .fact(
        "slow",
        j.slow,
        format!(
            "{} took 0.9 s or more above the median ({:.0} %; warning at {WARN_SLOW}, critical at {:.0} % of the handshakes): {} about 1 s, {} about 3 s",
            j.slow,
            share * 100.0,
            CRIT_SHARE * 100.0,
            j.one_s,
            j.three_s
        ),
    )
    .fact("step_1s", j.one_s, String::new())
    .fact("step_3s", j.three_s, String::new())
    .subject(Subject {
        raddr: Some(to.ip()),
        rport: Some(to.port()),
        count: Some(j.slow),
        ..Subject::default()
    });
    for s in Subject::owners(d.slow_owners.iter().map(|(o, n)| (o, *n)), 3) {
        f = f.subject(s);
    }
    let port = to.port();
    f.cause(format!(
        "A step of about 1 s (3 s: twice) above the median is the SYN retransmission timeout: the first SYN to {to}, or the SYN-ACK back, was lost and sent again. The server answers fast when the packets arrive; something drops some of them: a full SYN or accept queue at the server (see listen_overflow), a firewall or conntrack table at its limit, loss on the path."
    ))
    .action(format!(
        "`sudo tcptrace retrans --kind syn --rport {port}` shows the SYN retries and their owners; on the server `nstat -az TcpExtListenDrops TcpExtListenOverflows TcpExtTCPReqQFullDrop` and `ss -ltn 'sport = :{port}'` (Recv-Q against Send-Q)."
    ))
    .fix(
        "Remove the drop: raise the server's listen() backlog and net.core.somaxconn / net.ipv4.tcp_max_syn_backlog if its queue overflows, raise nf_conntrack_max if conntrack drops, fix the lossy hop. Clients that cannot wait should time out and retry well under 1 s, or keep connections open (pooling) so fewer handshakes are on the request path.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&v, 99.0), 20);
    }

    #[test]
    fn a_lost_syn_is_a_one_second_step() {
        let mut ns = vec![60_000; 27];
        ns.extend([1_010_000_000, 1_020_000_000, 3_030_000_000]);
        let j = judge(&ns).unwrap();
        assert_eq!(
            (j.n, j.p50, j.slow, j.one_s, j.three_s),
            (30, 60_000, 3, 2, 1)
        );
        assert_eq!(j.p99, 3_030_000_000);
        // Too few to judge; and a fast destination has no step.
        assert!(judge(&ns[..19]).is_none());
        assert_eq!(judge(&[60_000; 40]).unwrap().slow, 0);
    }

    #[test]
    fn a_far_destination_is_not_slow_for_being_far() {
        // A 150 ms path with jitter: no step.
        let ns: Vec<u64> = (0..50).map(|i| 150_000_000 + i * 2_000_000).collect();
        assert_eq!(judge(&ns).unwrap().slow, 0);
    }
}
