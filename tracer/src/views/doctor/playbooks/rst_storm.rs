//! `rst_storm`: resets sent and received per service port and peer, with
//! the kernel's reasons and the processes whose sockets they hit.
//!
//! What is an alarm: on one (port, peer), at least [`WARN_RESETS`]
//! connections reset, more than [`WARN_PER_S`] a second, and at least
//! [`WARN_SHARE`] of the connections the namespace opened in the window.
//! A connection reset counts once even when both its ends are watched
//! (the larger of the resets sent and received), and the connections
//! opened are the larger of ΔActiveOpens and ΔPassiveOpens (a loopback
//! connection is in both; with none opened, the share does not hold an
//! alarm back). So a health checker that connects and aborts with
//! SO_LINGER 0 once a second, or a few resets among a busy port's
//! connections, is normal life.
//! Refused connects made here (a RST received in SYN_SENT, and the
//! NO_SOCKET reset this namespace sent them) are `connect_failures`'s:
//! counted here only as what they are, never alarmed on twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use super::{Examine, Scene};
use crate::{
    counters::Counter,
    engine::Annotated,
    event::{EventKind, Owner, TcpState},
    views::{
        Context,
        doctor::finding::{Finding, Playbook, Severity, Subject},
    },
};

/// Connections reset on one (port, peer), and per second, before a
/// warning (a health checker aborts once a second or less).
const WARN_RESETS: u64 = 20;
const WARN_PER_S: f64 = 2.0;
/// Their share of the connections opened in the window.
const WARN_SHARE: f64 = 0.1;
/// Per second and share that make it critical: most connections on the
/// port end in a reset.
const CRIT_PER_S: f64 = 5.0;
const CRIT_SHARE: f64 = 0.5;
const MAX_FINDINGS: usize = 3;
/// (port, peer) pairs tracked at most, and client sockets remembered (to
/// tell which end of a connection is the service's).
const MAX_KEYS: usize = 4096;
const MAX_CLIENTS: usize = 65_536;

/// The service's port (ours if we are the server, theirs if we connected)
/// and the peer's address.
type Key = (u16, IpAddr);

#[derive(Default)]
struct Resets {
    sent: u64,
    recv: u64,
    /// Whether the port is ours (we are the server) or theirs.
    local: bool,
    /// Sent, by the kernel's reason ("" when it gave none).
    reasons: HashMap<String, u64>,
    /// Received, by the socket's state then.
    states: HashMap<TcpState, u64>,
    /// The processes whose sockets sent them, and received them.
    senders: HashMap<Owner, u64>,
    receivers: HashMap<Owner, u64>,
    /// NO_SOCKET resets sent to a peer whose connect was refused here.
    refused_sent: u64,
}

#[derive(Default)]
pub struct RstStorm {
    keys: HashMap<Key, Resets>,
    /// Sockets that connected (client ends), oldest first, bounded.
    clients: HashSet<u64>,
    order: VecDeque<u64>,
    /// Refused connects made here, by (destination port, client address):
    /// their NO_SOCKET reset was this namespace's too.
    refused: HashMap<Key, u64>,
    /// Received resets that refused a connect here (connect_failures').
    refused_recv: u64,
}

impl RstStorm {
    fn client(&mut self, sock: u64) {
        if self.clients.insert(sock) {
            self.order.push_back(sock);
            if self.order.len() > MAX_CLIENTS
                && let Some(old) = self.order.pop_front()
            {
                self.clients.remove(&old);
            }
        }
    }
}

impl Examine for RstStorm {
    fn on_event(&mut self, a: &Annotated, cx: &Context) {
        let ev = &a.event;
        let t = ev.tuple.unmapped();
        let sent = match ev.kind {
            EventKind::State {
                new: TcpState::SynSent,
                ..
            } => {
                self.client(ev.sock);
                return;
            }
            EventKind::ResetSent { reason, .. } => Some(reason),
            EventKind::ResetRecv if a.state == Some(TcpState::SynSent) => {
                // A refused connect: connect_failures says it.
                self.refused_recv += 1;
                *self.refused.entry((t.rport, t.laddr)).or_default() += 1;
                return;
            }
            EventKind::ResetRecv => None,
            _ => return,
        };
        let local = ev.sock == 0 || !self.clients.contains(&ev.sock);
        let key = (if local { t.lport } else { t.rport }, t.raddr);
        if !self.keys.contains_key(&key) && self.keys.len() >= MAX_KEYS {
            return;
        }
        let r = self.keys.entry(key).or_default();
        r.local |= local;
        match sent {
            Some(reason) => {
                r.sent += 1;
                let name = reason.map_or(String::new(), |c| {
                    cx.reset_reason(c)
                        .map_or(format!("reason {c}"), str::to_string)
                });
                *r.reasons.entry(name).or_default() += 1;
            }
            None => {
                r.recv += 1;
                if let Some(s) = a.state {
                    *r.states.entry(s).or_default() += 1;
                }
            }
        }
        if let Some(o) = a.owner {
            let by = if sent.is_some() {
                &mut r.senders
            } else {
                &mut r.receivers
            };
            *by.entry(o).or_default() += 1;
        }
    }

    fn examine(&self, scene: &Scene<'_>) -> Vec<Finding> {
        let opened = match (
            scene.delta(Counter::ActiveOpens),
            scene.delta(Counter::PassiveOpens),
        ) {
            (Some(a), Some(p)) => Some(a.max(p)),
            _ => None,
        };
        let secs = scene.duration_s.max(1.0);
        let mut bad: Vec<(Key, Resets, u64)> = Vec::new();
        for (key, r) in &self.keys {
            // Resets this namespace sent to its own refused connects.
            let refused = self.refused.get(key).copied().unwrap_or(0);
            let no_socket = r.reasons.get("NO_SOCKET").copied().unwrap_or(0);
            let own = refused.min(no_socket);
            // Connections reset: each is one RST sent, or received, or
            // both when both ends are here.
            let n = (r.sent - own).max(r.recv);
            let share = opened
                .filter(|&o| o > 0)
                .map_or(1.0, |o| n as f64 / o as f64);
            if n >= WARN_RESETS && n as f64 / secs > WARN_PER_S && share >= WARN_SHARE {
                let mut r2 = Resets {
                    sent: r.sent - own,
                    recv: r.recv,
                    local: r.local,
                    reasons: r.reasons.clone(),
                    states: r.states.clone(),
                    senders: r.senders.clone(),
                    receivers: r.receivers.clone(),
                    refused_sent: own,
                };
                if own > 0 {
                    *r2.reasons.entry("NO_SOCKET".into()).or_default() -= own;
                    r2.reasons.retain(|_, n| *n > 0);
                }
                bad.push((*key, r2, n));
            }
        }
        bad.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        bad.into_iter()
            .take(MAX_FINDINGS)
            .map(|(key, r, n)| finding(key, &r, n, opened, secs))
            .collect()
    }
}

/// `(name, count)` most first.
fn ranked<K: Clone + Ord>(m: &HashMap<K, u64>) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = m.iter().map(|(k, n)| (k.clone(), *n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn finding(key: Key, r: &Resets, n: u64, opened: Option<u64>, secs: f64) -> Finding {
    let (port, peer) = key;
    let per_s = n as f64 / secs;
    let share = opened.filter(|&o| o > 0).map(|o| n as f64 / o as f64);
    let severity = if per_s >= CRIT_PER_S && share.is_none_or(|s| s >= CRIT_SHARE) {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let reasons = ranked(&r.reasons);
    let top_reason = reasons
        .first()
        .map(|(s, _)| s.clone())
        .filter(|s| !s.is_empty());
    let side = if r.local {
        format!("port {port} with {peer}")
    } else {
        format!("{peer}:{port}")
    };
    let what = match (r.sent, r.recv) {
        (s, 0) => format!("{s} RSTs sent"),
        (0, v) => format!("{v} RSTs received"),
        (s, v) => format!("{s} RSTs sent, {v} received"),
    };
    let mut f = Finding::new(
        Playbook::RstStorm,
        severity,
        format!(
            "{n} connections reset on {side} in {secs:.0} s ({what}){}",
            top_reason
                .as_deref()
                .map_or(String::new(), |r| format!(", mostly {r}"))
        ),
    )
    .fact(
        "resets",
        n,
        format!(
            "{n} connections reset, {per_s:.1}/s, {} (warning at {WARN_RESETS}, over {WARN_PER_S}/s and {:.0} % of the connections opened; critical at {CRIT_PER_S}/s and {:.0} %)",
            match (opened, share) {
                (Some(o), Some(s)) => format!("{:.0} % of the {o} connections opened", s * 100.0),
                _ => "no connection opened".to_string(),
            },
            WARN_SHARE * 100.0,
            CRIT_SHARE * 100.0
        ),
    )
    .fact("sent", r.sent, String::new())
    .fact("received", r.recv, String::new())
    .fact("per_s", (per_s * 10.0).round() / 10.0, String::new());
    if let Some(o) = opened {
        f = f.fact("connections_opened", o, String::new());
    }
    if !reasons.is_empty() {
        let json: serde_json::Map<String, serde_json::Value> = reasons
            .iter()
            .map(|(s, c)| {
                (
                    if s.is_empty() {
                        "unknown".into()
                    } else {
                        s.clone()
                    },
                    (*c).into(),
                )
            })
            .collect();
        let text: Vec<String> = json.iter().map(|(s, c)| format!("{s} {c}")).collect();
        f = f.fact(
            "reasons",
            json,
            format!("sent, by the kernel's reason: {}", text.join(", ")),
        );
    }
    let states = ranked(&r.states);
    if !states.is_empty() {
        let json: serde_json::Map<String, serde_json::Value> = states
            .iter()
            .map(|(s, c)| (s.name().to_string(), (*c).into()))
            .collect();
        let text: Vec<String> = json.iter().map(|(s, c)| format!("{s} {c}")).collect();
        f = f.fact(
            "received_in",
            json,
            format!("received, by the socket's state: {}", text.join(", ")),
        );
    }
    if r.refused_sent > 0 {
        f = f.fact(
            "refused_here",
            r.refused_sent,
            format!(
                "{} more answered connects refused in this namespace (see connect_failures)",
                r.refused_sent
            ),
        );
    }
    let place = if r.local {
        Subject {
            lport: Some(port),
            raddr: Some(peer),
            count: Some(n),
            ..Subject::default()
        }
    } else {
        Subject {
            raddr: Some(peer),
            rport: Some(port),
            count: Some(n),
            ..Subject::default()
        }
    };
    f = f.subject(place);
    let senders = Subject::owners(r.senders.iter().map(|(o, n)| (o, *n)), 3);
    let receivers = Subject::owners(r.receivers.iter().map(|(o, n)| (o, *n)), 2);
    let (sent_by, sent_text) = super::processes(&senders);
    let (recv_by, recv_text) = super::processes(&receivers);
    let mut by = Vec::new();
    if !senders.is_empty() {
        by.push(format!("sent by {sent_text}"));
    }
    if !receivers.is_empty() {
        by.push(format!("received by {recv_text}"));
    }
    if !by.is_empty() {
        f = f.fact(
            "by_process",
            serde_json::json!({"sent": sent_by, "received": recv_by}),
            by.join("; "),
        );
    }
    // Who: the processes that sent them; those that received them when
    // the resets came from elsewhere.
    let who = if senders.is_empty() {
        receivers
    } else {
        senders
    };
    for s in who {
        f = f.subject(s);
    }
    let (cause, action, fix) = advice(top_reason.as_deref(), r, port, peer);
    f.cause(cause).action(action).fix(fix)
}

/// Cause, what to do now and the lasting fix, by the commonest reason.
fn advice(reason: Option<&str>, r: &Resets, port: u16, peer: IpAddr) -> (String, String, String) {
    let capture =
        format!("`tcpdump -ni any 'tcp[tcpflags] & tcp-rst != 0 and port {port} and host {peer}'`");
    match reason {
        Some("NO_SOCKET") => (
            format!("Segments for port {port} found no socket: nothing listens there, or they belong to connections this host already closed (the peer keeps talking after our close, or a load balancer still sends to a port that moved)."),
            format!("`ss -ltn 'sport = :{port}'` shows whether anything listens; {capture} shows what {peer} sends."),
            format!("Start the service on port {port} or stop {peer} from connecting to it (its configuration, the load balancer's backend list); a client should back off, not loop."),
        ),
        Some("TCP_ABORT_ON_CLOSE" | "TCP_ABORT_ON_LINGER" | "TCP_ABORT_ON_DATA" | "TCP_STATE") => (
            "The process closed sockets that still had unread data (or set SO_LINGER 0): the kernel then aborts with a RST instead of a FIN, and the peer sees ECONNRESET mid-exchange.".into(),
            format!("`ss -tnp 'sport = :{port} or dport = :{port}'` shows the owners and their Recv-Q; `strace -f -e trace=close,shutdown,setsockopt -p PID` shows the aborts."),
            "Read the request to its end (or shutdown(SHUT_WR) and drain) before close(), and do not set SO_LINGER 0 on a path that carries data; if aborting is intended, the peer must treat ECONNRESET as the normal end.".into(),
        ),
        Some("TCP_KEEPALIVE_TIMEOUT") => (
            format!("Keepalive probes to {peer} went unanswered: the peer died or a middlebox forgot the connection."),
            format!("{capture}; `ss -tno dst {peer}` shows the keepalive timers."),
            "Find why the peer vanishes (crashes, NAT or firewall idle timeouts shorter than the keepalive).".into(),
        ),
        Some(_) => (
            format!("The kernel reset these connections for the reason shown: segments it did not accept on a connection with {peer} (a NAT or middlebox that reuses ports, sequence numbers out of the window, a connection the other end already forgot)."),
            format!("{capture} shows both sides' segments around the resets."),
            "Fix the middlebox or the peer that sends segments outside the connection (NAT port reuse, state timeouts).".into(),
        ),
        None if r.recv > 0 => (
            format!("{peer} resets the connections: the peer process aborts them (a crash, SO_LINGER 0, closing with unread data) or a middlebox on the way (firewall, load balancer idle timeout) kills them."),
            format!("{capture}; on {peer}, `tcptrace resets --port {port}` gives its reasons."),
            "Fix the aborting peer or the middlebox's timeout; clients should reconnect on ECONNRESET with backoff.".into(),
        ),
        None => (
            "This namespace sends resets without a reason the kernel names.".into(),
            format!("{capture}; `tcptrace resets --port {port}` shows each with its socket's state."),
            "Find the process or path that aborts the connections.".into(),
        ),
    }
}
