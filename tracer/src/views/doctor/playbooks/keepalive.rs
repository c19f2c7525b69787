//! `keepalive`: long-idle ESTABLISHED connections that a NAT, a load
//! balancer or a stateful firewall on the path will forget (most drop an
//! idle flow after 350 s or less, AWS's NAT and NLB among them) before
//! anything notices: without `SO_KEEPALIVE` nothing is sent while idle,
//! and with it the first probe comes after `tcp_keepalive_time` (7200 s
//! by default), far too late. The next write then retransmits into the
//! void until `tcp_retries2` runs out (about 15 minutes by default).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::{Examine, Scene, flows_by_tuple};
use crate::{
    event::{Owner, TcpState},
    sockdiag::{SockInfo, TimerKind},
    sysctls::Sysctls,
    views::doctor::finding::{Finding, Playbook, Severity, Subject},
};

/// Idle this long, a flow is at risk: below the idle timeouts of common
/// middleboxes (350 s), so a connection idle past it that is not kept
/// alive sooner is the one that breaks.
const IDLE_MS: u64 = 300_000;
/// The idle timeout of common NATs and load balancers a keepalive must
/// beat.
const MIDDLEBOX_MS: u64 = 350_000;
/// Groups (process and destination) reported at most.
const MAX_FINDINGS: usize = 3;

/// Why an idle connection is at risk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Risk {
    /// No `SO_KEEPALIVE`: nothing is sent while idle.
    NoKeepalive,
    /// Keepalive on, but its next probe comes after the middlebox forgot.
    TooLate,
}

#[derive(Default)]
struct Group {
    owner: Option<Owner>,
    count: u64,
    /// The longest idle time, ms.
    idle_max_ms: u64,
    /// When the late keepalives fire, at the latest (ms of idle at the
    /// first probe).
    probe_at_ms: u64,
}

#[derive(Default)]
pub struct Keepalive;

/// Idle time of a connection: since data last went either way.
fn idle_ms(s: &SockInfo) -> Option<u64> {
    let t = s.tcp?;
    Some(u64::from(t.last_data_recv_ms.min(t.last_data_sent_ms)))
}

/// Whether an idle connection is at risk, and when its next keepalive
/// probe comes (in ms of idle) if it has one.
fn risk(s: &SockInfo) -> Option<(Risk, u64)> {
    if s.state != TcpState::Established {
        return None;
    }
    let idle = idle_ms(s)?;
    if idle < IDLE_MS {
        return None;
    }
    match (s.keepalive, s.timer) {
        (Some(false), _) => Some((Risk::NoKeepalive, 0)),
        (Some(true), Some(t)) if t.kind == TimerKind::Keepalive => {
            let probe_at = idle + u64::from(t.expires_ms);
            (probe_at > MIDDLEBOX_MS).then_some((Risk::TooLate, probe_at))
        }
        _ => None,
    }
}

impl Examine for Keepalive {
    fn examine(&self, scene: &Scene<'_>) -> Vec<Finding> {
        let Some(last) = scene.tables_last else {
            return Vec::new();
        };
        let flows = flows_by_tuple(scene.engine);
        let mut groups: BTreeMap<(Risk, u32, SocketAddr), Group> = BTreeMap::new();
        for s in &last.sockets {
            let Some((risk, probe_at)) = risk(s) else {
                continue;
            };
            let owner = flows
                .get(&super::key(&s.tuple))
                .and_then(|f| f.owner)
                .or(s.owner);
            let to = SocketAddr::new(unmapped(s.tuple.raddr), s.tuple.rport);
            let g = groups
                .entry((risk, owner.map_or(0, |o| o.pid), to))
                .or_default();
            g.owner = g.owner.or(owner);
            g.count += 1;
            g.idle_max_ms = g.idle_max_ms.max(idle_ms(s).unwrap_or(0));
            g.probe_at_ms = g.probe_at_ms.max(probe_at);
        }
        let mut v: Vec<_> = groups.into_iter().collect();
        v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
        v.into_iter()
            .take(MAX_FINDINGS)
            .map(|((risk, _, to), g)| finding(risk, to, &g, scene.sysctls()))
            .collect()
    }
}

fn unmapped(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

fn finding(risk: Risk, to: SocketAddr, g: &Group, sys: Option<&Sysctls>) -> Finding {
    let who = g.owner.map_or("an unknown process".to_string(), |o| {
        format!("{} (pid {})", o.comm.as_str(), o.pid)
    });
    let n = g.count;
    let s = if n == 1 { "" } else { "s" };
    let idle_s = g.idle_max_ms / 1000;
    let summary = match risk {
        Risk::NoKeepalive => {
            format!("{n} connection{s} of {who} to {to} idle up to {idle_s} s without keepalive")
        }
        Risk::TooLate => format!(
            "{n} connection{s} of {who} to {to} idle up to {idle_s} s; the first keepalive comes only after {} s",
            g.probe_at_ms / 1000
        ),
    };
    let mut f = Finding::new(Playbook::Keepalive, Severity::Warning, summary)
        .fact(
            "idle_connections",
            n,
            format!(
                "{n} ESTABLISHED connection{s} idle {} s or more (a NAT or load balancer commonly forgets a flow after {} s)",
                IDLE_MS / 1000,
                MIDDLEBOX_MS / 1000
            ),
        )
        .fact("idle_max_s", idle_s, format!("the longest idle: {idle_s} s"));
    if risk == Risk::TooLate {
        f = f.fact(
            "first_probe_s",
            g.probe_at_ms / 1000,
            format!(
                "keepalive is on, but its first probe comes at {} s of idle",
                g.probe_at_ms / 1000
            ),
        );
    }
    if let Some(sys) = sys {
        f = f
            .fact(
                "tcp_keepalive_time",
                sys.tcp_keepalive_time,
                format!(
                    "net.ipv4.tcp_keepalive_time={} s, intvl={} s, probes={}: a dead peer of a kept-alive connection is noticed after {} s",
                    sys.tcp_keepalive_time,
                    sys.tcp_keepalive_intvl,
                    sys.tcp_keepalive_probes,
                    sys.keepalive_detection_ms() / 1000
                ),
            )
            .fact(
                "tcp_retries2",
                sys.tcp_retries2,
                format!(
                    "net.ipv4.tcp_retries2={}: a write on a forgotten flow retransmits for about {} s before it fails",
                    sys.tcp_retries2,
                    sys.dead_peer_timeout_ms() / 1000
                ),
            );
    }
    let mut subject = g.owner.as_ref().map(Subject::owner).unwrap_or_default();
    subject.raddr = Some(to.ip());
    subject.rport = Some(to.port());
    subject.count = Some(n);
    let keepidle = "TCP_KEEPIDLE 60, TCP_KEEPINTVL 10, TCP_KEEPCNT 5";
    f.subject(subject)
        .cause(match risk {
            Risk::NoKeepalive => "Nothing is sent on these connections while idle; a middlebox on the path drops its state for them, and the next request hangs until tcp_retries2 gives up (or is reset).",
            Risk::TooLate => "Keepalive is on, but its first probe comes after a middlebox on the path has already forgotten the flow.",
        })
        .action(format!(
            "`ss -tnoi state established dst {}` shows their timers and idle times (lastrcv, lastsnd).",
            to.ip()
        ))
        .fix(format!(
            "In {who}: set SO_KEEPALIVE with {keepidle} on these sockets (or close idle pooled connections sooner than {} s); host-wide, `sysctl -w net.ipv4.tcp_keepalive_time=120` helps only sockets that set SO_KEEPALIVE{}.",
            MIDDLEBOX_MS / 1000,
            sys.map_or(String::new(), |s| format!(" (now {})", s.tcp_keepalive_time))
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockdiag::{TcpInfo, Timer};

    fn sock(idle_s: u32, keepalive: Option<bool>, timer: Option<Timer>) -> SockInfo {
        SockInfo {
            state: TcpState::Established,
            tuple: crate::event::Tuple {
                family: crate::event::Family::V4,
                laddr: "10.0.0.1".parse().unwrap(),
                lport: 40000,
                raddr: "10.0.0.2".parse().unwrap(),
                rport: 5432,
                netns: 0,
            },
            inode: 7,
            uid: 0,
            recv_q: 0,
            send_q: 0,
            timer,
            tcp: Some(TcpInfo {
                last_data_recv_ms: idle_s * 1000,
                last_data_sent_ms: idle_s * 1000 + 5,
                ..TcpInfo::default()
            }),
            keepalive,
            owner: None,
        }
    }

    #[test]
    fn idle_without_keepalive_is_at_risk_and_busy_is_not() {
        assert_eq!(
            risk(&sock(400, Some(false), None)),
            Some((Risk::NoKeepalive, 0))
        );
        assert_eq!(risk(&sock(30, Some(false), None)), None, "not idle long");
        assert_eq!(risk(&sock(400, None, None)), None, "cannot tell");
    }

    #[test]
    fn keepalive_that_fires_too_late_is_at_risk() {
        let t = |ms| Timer {
            kind: TimerKind::Keepalive,
            expires_ms: ms,
            count: 0,
        };
        // 7200 s default: the probe comes at 7200 s of idle.
        assert_eq!(
            risk(&sock(400, Some(true), Some(t(6_800_000)))),
            Some((Risk::TooLate, 7_200_000))
        );
        // Idle 320 s with the next probe in 10 s: at 330 s, in time.
        assert_eq!(risk(&sock(320, Some(true), Some(t(10_000)))), None);
    }
}
