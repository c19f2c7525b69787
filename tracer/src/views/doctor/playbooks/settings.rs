//! `settings`: the namespace's TCP settings, each said in what it means
//! (seconds, sockets), and flagged only where what the session saw makes
//! it hurt: SYNs retransmitted while a connect to a dead host hangs for a
//! minute or more; established connections timing out while a dead peer
//! takes a quarter of an hour to notice; listen-queue overflows without
//! SYN cookies, or answered with resets; orphans piling up in FIN_WAIT2
//! for a long `tcp_fin_timeout`. (The port range, `tcp_tw_reuse` and
//! `somaxconn` are judged where they bite: `port_exhaustion` and
//! `listen_overflow`; the keepalive triple in `keepalive`.)

use super::{Examine, Scene};
use crate::{
    counters::Counter,
    engine::Annotated,
    event::{EventKind, RetransKind, TcpState, Tuple},
    sysctls::Sysctls,
    views::{
        Context,
        doctor::finding::{Finding, Playbook, Severity},
    },
};

/// A connect that may hang this long on a dead host is too long for a
/// service calling another (its own timeout should fire first, and most
/// clients set none).
const CONNECT_LONG_MS: u64 = 60_000;
/// A dead peer noticed only after this long holds a request (and its
/// thread, its memory) that long.
const DEAD_PEER_LONG_MS: u64 = 300_000;
/// Orphans in FIN_WAIT2 worth a word about `tcp_fin_timeout`.
const FIN_WAIT2_MANY: u64 = 1_000;
/// `tcp_fin_timeout` above the default (60 s) is the contradiction.
const FIN_TIMEOUT_LONG_S: u32 = 60;

/// SYNs of one connect sent again before it counts as a connect to a
/// dead host (one lost SYN is loss; unanswered for 3 s and more is not).
const SYN_RETRIES_DEAD: u8 = 2;
/// Connects tracked at most.
const MAX_SOCKS: usize = 65_536;

#[derive(Default)]
pub struct Settings {
    /// Retransmission timeouts of established connections (not of
    /// handshakes, which `tcp_syn_retries` governs).
    rto_established: u64,
    /// SYN retransmits per connecting socket, by socket and tuple (the
    /// memory of one failed connect is soon the next one's).
    syn_retrans: std::collections::HashMap<(u64, Tuple), u8>,
}

impl Settings {
    /// Connects whose SYN went unanswered long enough to be a dead host.
    fn dead_host_connects(&self) -> u64 {
        self.syn_retrans
            .values()
            .filter(|&&n| n >= SYN_RETRIES_DEAD)
            .count() as u64
    }
}

impl Examine for Settings {
    fn on_event(&mut self, a: &Annotated, _cx: &Context) {
        if let EventKind::Retrans {
            kind: RetransKind::Syn,
            failed: None,
            ..
        } = a.event.kind
            && let key = (a.event.sock, a.event.tuple)
            && (self.syn_retrans.len() < MAX_SOCKS || self.syn_retrans.contains_key(&key))
        {
            let n = self.syn_retrans.entry(key).or_default();
            *n = n.saturating_add(1);
        }
        if let EventKind::Retrans {
            kind: RetransKind::Rto,
            state: TcpState::Established,
            failed: None,
            ..
        } = a.event.kind
        {
            self.rto_established += 1;
        }
    }

    fn examine(&self, scene: &Scene<'_>) -> Vec<Finding> {
        let Some(sys) = scene.sysctls() else {
            return Vec::new();
        };
        let d = |c| scene.delta(c).unwrap_or(0);
        let fin_wait2 = scene
            .last
            .and_then(|c| {
                c.census
                    .iter()
                    .find(|(s, _)| *s == TcpState::FinWait2)
                    .map(|(_, n)| *n)
            })
            .unwrap_or(0);
        [
            syn_retries(sys, self.dead_host_connects(), d(Counter::TcpSynRetrans)),
            retries2(sys, self.rto_established, d(Counter::EstabResets)),
            overflow(sys, d(Counter::ListenOverflows)),
            fin_timeout(sys, fin_wait2),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

fn secs(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// Connects went unanswered for seconds, and each connect to a dead host
/// hangs this long.
fn syn_retries(sys: &Sysctls, dead: u64, syn_retrans: u64) -> Option<Finding> {
    let timeout = sys.connect_timeout_ms();
    if dead == 0 || timeout < CONNECT_LONG_MS {
        return None;
    }
    let linear = sys
        .tcp_syn_linear_timeouts
        .map_or(String::new(), |l| format!(", tcp_syn_linear_timeouts={l}"));
    Some(
        Finding::new(
            Playbook::Settings,
            Severity::Warning,
            format!(
                "{dead} connects unanswered for seconds, and a connect to a dead host hangs {} (tcp_syn_retries={})",
                secs(timeout),
                sys.tcp_syn_retries
            ),
        )
        .fact(
            "tcp_syn_retries",
            sys.tcp_syn_retries,
            format!(
                "net.ipv4.tcp_syn_retries={}{linear}: the kernel gives up on a connect after {} (flagged from {})",
                sys.tcp_syn_retries,
                secs(timeout),
                secs(CONNECT_LONG_MS)
            ),
        )
        .fact("connect_timeout_ms", timeout, String::new())
        .fact(
            "unanswered_connects",
            dead,
            format!(
                "{dead} connects whose SYN was sent {SYN_RETRIES_DEAD} times or more without an answer; {syn_retrans} SYNs retransmitted in all (TcpExtTCPSynRetrans)"
            ),
        )
        .fact("syn_retrans", syn_retrans, String::new())
        .cause("Connects to a host that does not answer (down, firewalled, a wrong address) each hold the caller for the whole SYN retry schedule.")
        .action("`sudo tcptrace connect` and `tcptrace retrans --kind syn` show who connects where; give that client a connect timeout.")
        .fix(format!(
            "Set a connect timeout in the client; or lower the host's default: `sysctl -w net.ipv4.tcp_syn_retries=3` (now {}; 3 gives up after about 15 s without linear timeouts).",
            sys.tcp_syn_retries
        )),
    )
}

/// Established connections timed out to silent peers, which take this
/// long to be declared dead.
fn retries2(sys: &Sysctls, timeouts: u64, estab_resets: u64) -> Option<Finding> {
    let dead = sys.dead_peer_timeout_ms();
    if timeouts == 0 || dead < DEAD_PEER_LONG_MS {
        return None;
    }
    Some(
        Finding::new(
            Playbook::Settings,
            Severity::Warning,
            format!(
                "retransmission timeouts seen, and a dead peer is noticed only after {} (tcp_retries2={})",
                secs(dead),
                sys.tcp_retries2
            ),
        )
        .fact(
            "tcp_retries2",
            sys.tcp_retries2,
            format!(
                "net.ipv4.tcp_retries2={}: an established connection to a silent peer retransmits for about {} before the kernel gives up (flagged from {})",
                sys.tcp_retries2,
                secs(dead),
                secs(DEAD_PEER_LONG_MS)
            ),
        )
        .fact("dead_peer_timeout_ms", dead, String::new())
        .fact(
            "rto_established",
            timeouts,
            format!("{timeouts} segments of established connections retransmitted after a timeout in the session, {estab_resets} established connections reset"),
        )
        .cause("While a peer is silent (crashed, partitioned, a black-holing middlebox), requests on its connections hang until tcp_retries2 runs out.")
        .action("`sudo tcptrace retrans --kind rto` names the flows timing out and their owners.")
        .fix(format!(
            "Use TCP_USER_TIMEOUT or an application timeout on those connections; or `sysctl -w net.ipv4.tcp_retries2=8` (now {}; 8 gives up after about 100 s).",
            sys.tcp_retries2
        )),
    )
}

/// Listen queues overflowed while SYN cookies are off, or the overflow
/// is answered with resets.
fn overflow(sys: &Sysctls, overflows: u64) -> Option<Finding> {
    if overflows == 0 || (sys.tcp_syncookies != 0 && sys.tcp_abort_on_overflow == 0) {
        return None;
    }
    let mut f = Finding::new(
        Playbook::Settings,
        Severity::Warning,
        format!(
            "listen queues overflowed {overflows} times with tcp_syncookies={} and tcp_abort_on_overflow={}",
            sys.tcp_syncookies, sys.tcp_abort_on_overflow
        ),
    )
    .fact(
        "listen_overflows",
        overflows,
        format!("{overflows} listen-queue overflows in the session (TcpExtListenOverflows)"),
    )
    .fact(
        "tcp_syncookies",
        sys.tcp_syncookies,
        format!(
            "net.ipv4.tcp_syncookies={}: {}",
            sys.tcp_syncookies,
            if sys.tcp_syncookies == 0 {
                "a full SYN queue drops new connections"
            } else {
                "SYN cookies answer when the SYN queue is full"
            }
        ),
    )
    .fact(
        "tcp_abort_on_overflow",
        sys.tcp_abort_on_overflow,
        format!(
            "net.ipv4.tcp_abort_on_overflow={}: {}",
            sys.tcp_abort_on_overflow,
            if sys.tcp_abort_on_overflow == 0 {
                "a full accept queue drops the handshake's last ACK (the client retries)"
            } else {
                "a full accept queue resets the client (it sees ECONNRESET at once)"
            }
        ),
    );
    f = f
        .cause("A listener's accept queue was full (see listen_overflow); these settings decide whether the client waits and retries, or fails.")
        .action("See the listen_overflow finding for the listener and its owner; `ss -ltn` shows each queue against its backlog.")
        .fix(format!(
            "Keep `net.ipv4.tcp_syncookies=1` (now {}) and `net.ipv4.tcp_abort_on_overflow=0` (now {}) unless clients are built to retry on reset; the lasting fix is a listener that accepts faster or a larger backlog.",
            sys.tcp_syncookies, sys.tcp_abort_on_overflow
        ));
    Some(f)
}

/// Many orphans wait in FIN_WAIT2 for a long `tcp_fin_timeout`.
fn fin_timeout(sys: &Sysctls, fin_wait2: u64) -> Option<Finding> {
    if fin_wait2 < FIN_WAIT2_MANY || sys.tcp_fin_timeout <= FIN_TIMEOUT_LONG_S {
        return None;
    }
    Some(
        Finding::new(
            Playbook::Settings,
            Severity::Warning,
            format!(
                "{fin_wait2} sockets in FIN_WAIT2 with tcp_fin_timeout={} s",
                sys.tcp_fin_timeout
            ),
        )
        .fact(
            "fin_wait2",
            fin_wait2,
            format!("{fin_wait2} sockets in FIN_WAIT2 at the end (flagged from {FIN_WAIT2_MANY})"),
        )
        .fact(
            "tcp_fin_timeout",
            sys.tcp_fin_timeout,
            format!(
                "net.ipv4.tcp_fin_timeout={} s: how long an orphan waits for the peer's FIN (default 60)",
                sys.tcp_fin_timeout
            ),
        )
        .cause("This side closed; the peers never finished their side, and each orphan waits tcp_fin_timeout for them.")
        .action("`ss -tan state fin-wait-2` shows the peers that do not close.")
        .fix(format!(
            "`sysctl -w net.ipv4.tcp_fin_timeout=60` (now {}), and find why those peers do not close.",
            sys.tcp_fin_timeout
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys() -> Sysctls {
        Sysctls {
            tcp_syn_retries: 6,
            tcp_retries2: 15,
            tcp_syncookies: 1,
            tcp_fin_timeout: 60,
            ..Sysctls::default()
        }
    }

    /// Two failed connects one after the other in the same socket memory,
    /// each with one lost SYN: loss, not a dead host.
    #[test]
    fn a_reused_socket_address_is_two_connects() {
        use crate::engine::tests::{owner, retrans, tuple};
        let (mut b, cx) = (Settings::default(), crate::views::testing::context());
        for (i, lport) in [40001, 40002].into_iter().enumerate() {
            let e = retrans(
                i as u64,
                7,
                tuple(lport, 80),
                owner(9, "curl"),
                TcpState::SynSent,
                RetransKind::Syn,
            );
            let a = Annotated {
                owner: Some(e.task),
                event: e,
                prev_state_ns: None,
                state: None,
            };
            b.on_event(&a, &cx);
        }
        assert_eq!(b.dead_host_connects(), 0);
    }

    #[test]
    fn quiet_without_a_contradiction() {
        let s = sys();
        assert!(
            syn_retries(&s, 0, 5).is_none(),
            "SYNs lost, none unanswered"
        );
        assert!(retries2(&s, 0, 0).is_none(), "no timeout seen");
        assert!(overflow(&s, 3).is_none(), "cookies on, no abort");
        assert!(fin_timeout(&s, 5000).is_none(), "default fin timeout");
        let short = Sysctls {
            tcp_syn_retries: 2,
            tcp_retries2: 5,
            ..sys()
        };
        assert!(syn_retries(&short, 9, 20).is_none(), "a short schedule");
        assert!(retries2(&short, 9, 0).is_none(), "a short schedule");
    }

    #[test]
    fn each_contradiction_is_said_in_seconds() {
        let s = sys();
        let f = syn_retries(&s, 2, 4).unwrap();
        assert!(f.summary.contains("127 s"), "{}", f.summary);
        let f = retries2(&s, 2, 0).unwrap();
        assert!(f.summary.contains("924.6 s"), "{}", f.summary);
        let off = Sysctls {
            tcp_syncookies: 0,
            ..sys()
        };
        assert!(overflow(&off, 3).unwrap().fix.contains("now 0"));
        let long = Sysctls {
            tcp_fin_timeout: 600,
            ..sys()
        };
        assert!(fin_timeout(&long, 5000).is_some());
    }
}
