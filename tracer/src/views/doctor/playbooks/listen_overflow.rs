//! `listen_overflow`: listeners whose accept queue overflows. A completed
//! handshake waits in the listener's accept queue until the application
//! calls `accept()`; the queue holds the backlog the application passed
//! to `listen()` (capped by `net.core.somaxconn`), and once it is full
//! the kernel drops new SYNs and the handshakes' last ACKs
//! (ListenOverflows, ListenDrops): clients see connects that take 1 s,
//! 3 s, 7 s (SYN retransmits) or time out. Per listener (port, owner):
//! the queue against its backlog and `somaxconn`, the half-open requests
//! against `tcp_max_syn_backlog`, the SYN-ACKs sent again, and the
//! namespace's drop counters. The counters are the namespace's; they are
//! laid on the listeners whose queue was full (`skb:kfree_skb` reasons,
//! which could name the listener of each drop, are not read yet).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::{Examine, Scene, flows_by_tuple, key};
use crate::{
    counters::{Counter, Tables},
    engine::Annotated,
    event::{EventKind, Owner, RetransKind, TcpState},
    views::{
        Context,
        doctor::finding::{Finding, Playbook, Severity, Subject},
    },
};

/// Drops (ListenOverflows + ListenDrops growth) that make it critical: a
/// few a session may be a blip at a burst, this many is clients failing.
const CRIT_DROPS: u64 = 50;
/// Listeners reported at most; ports tracked at most for SYN-ACKs.
const MAX_FINDINGS: usize = 3;
const MAX_PORTS: usize = 4096;

/// One listener as the tables showed it.
#[derive(Clone, Copy)]
struct Listener {
    laddr: IpAddr,
    port: u16,
    queue: u32,
    backlog: u32,
    owner: Option<Owner>,
    /// The most the queue held in either snapshot, and whether it was
    /// full (the kernel's `sk_acceptq_is_full`: more than the backlog).
    peak: u32,
    full: bool,
}

#[derive(Default)]
pub struct ListenOverflow {
    /// SYN-ACKs sent again, by listening port.
    synack: HashMap<u16, u64>,
}

impl Examine for ListenOverflow {
    fn on_event(&mut self, a: &Annotated, _cx: &Context) {
        if let EventKind::Retrans {
            kind: RetransKind::SynAck,
            failed: None,
            ..
        } = a.event.kind
        {
            let port = a.event.tuple.lport;
            if self.synack.contains_key(&port) || self.synack.len() < MAX_PORTS {
                *self.synack.entry(port).or_default() += 1;
            }
        }
    }

    fn examine(&self, scene: &Scene<'_>) -> Vec<Finding> {
        let Some(last) = scene.tables_last else {
            return Vec::new();
        };
        let drops = scene.delta(Counter::ListenOverflows).unwrap_or(0);
        let listen_drops = scene.delta(Counter::ListenDrops).unwrap_or(0);
        let listeners = listeners(scene, last);
        let mut bad: Vec<&Listener> = listeners.values().filter(|l| l.full).collect();
        // Drops with no listener seen full (it filled and drained between
        // the snapshots): the fullest listeners are the suspects.
        if bad.is_empty() && drops + listen_drops > 0 {
            let most = listeners.values().map(|l| l.peak).max().unwrap_or(0);
            bad = listeners
                .values()
                .filter(|l| l.peak == most && most > 0)
                .collect();
        }
        bad.sort_by(|a, b| b.peak.cmp(&a.peak).then(a.port.cmp(&b.port)));
        let n = bad.len() as u64;
        bad.into_iter()
            .take(MAX_FINDINGS)
            .map(|l| {
                let half_open = last
                    .sockets
                    .iter()
                    .filter(|s| s.state == TcpState::NewSynRecv && s.tuple.lport == l.port)
                    .count();
                finding(
                    scene,
                    l,
                    n,
                    (drops, listen_drops),
                    half_open,
                    self.synack.get(&l.port).copied().unwrap_or(0),
                )
            })
            .collect()
    }
}

/// The listeners of both snapshots by (address, port), as at the end,
/// with the fullest their queue was.
fn listeners(scene: &Scene<'_>, last: &Tables) -> BTreeMap<(IpAddr, u16), Listener> {
    let flows = flows_by_tuple(scene.engine);
    let mut out: BTreeMap<(IpAddr, u16), Listener> = BTreeMap::new();
    for t in scene.tables_first.into_iter().chain([last]) {
        for s in t.sockets.iter().filter(|s| s.state == TcpState::Listen) {
            let (queue, backlog) = (s.recv_q, s.send_q);
            let owner = flows.get(&key(&s.tuple)).and_then(|f| f.owner).or(s.owner);
            let full = queue > backlog;
            let e = out
                .entry((s.tuple.laddr, s.tuple.lport))
                .or_insert(Listener {
                    laddr: s.tuple.laddr,
                    port: s.tuple.lport,
                    queue,
                    backlog,
                    owner,
                    peak: queue,
                    full,
                });
            (e.queue, e.backlog) = (queue, backlog);
            e.owner = owner.or(e.owner);
            e.peak = e.peak.max(queue);
            e.full |= full;
        }
    }
    out
}

fn finding(
    scene: &Scene<'_>,
    l: &Listener,
    suspects: u64,
    (overflows, drops): (u64, u64),
    half_open: usize,
    synack: u64,
) -> Finding {
    let sys = scene.sysctls();
    let total = overflows.max(drops);
    let severity = if total >= CRIT_DROPS {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let who = l.owner.map_or(String::new(), |o| {
        format!(" of pid {} ({})", o.pid, o.comm.as_str())
    });
    let secs = scene.duration_s;
    let mut f = Finding::new(
        Playbook::ListenOverflow,
        severity,
        format!(
            "The accept queue of port {}{who} overflows: {total} connections dropped",
            l.port
        ),
    )
    .fact(
        "accept_queue",
        l.peak,
        format!(
            "accept queue: {} waiting at the end, {} at most, backlog {} (full above it)",
            l.queue, l.peak, l.backlog
        ),
    )
    .fact("backlog", l.backlog, String::new());
    if let Some(s) = sys {
        f = f.fact(
            "somaxconn",
            s.somaxconn,
            format!(
                "the backlog is what the application passed to listen(){}; net.core.somaxconn = {} caps it",
                if l.backlog >= s.somaxconn {
                    " or more"
                } else {
                    ""
                },
                s.somaxconn
            ),
        );
    }
    f = f
        .fact(
            "listen_overflows",
            overflows,
            format!(
                "ListenOverflows +{overflows}, ListenDrops +{drops} in {secs:.0} s (warning at 1, critical at {CRIT_DROPS}; the namespace's counters{})",
                if suspects > 1 {
                    format!(", shared by {suspects} full listeners")
                } else {
                    String::new()
                }
            ),
        )
        .fact("listen_drops", drops, String::new())
        .fact(
            "synack_retrans",
            synack,
            if synack == 0 {
                format!("no SYN-ACK sent again on port {}: the SYNs were dropped before a handshake began", l.port)
            } else {
                format!("{synack} SYN-ACKs sent again on port {} (a handshake's last ACK dropped, or lost)", l.port)
            },
        )
        .fact(
            "half_open",
            half_open,
            format!(
                "{half_open} half-open (SYN_RECV) at the end{}",
                sys.map_or(String::new(), |s| format!(
                    ", of net.ipv4.tcp_max_syn_backlog {}",
                    s.tcp_max_syn_backlog
                ))
            ),
        );
    let mut subject = l.owner.as_ref().map(Subject::owner).unwrap_or_default();
    subject.laddr = Some(l.laddr);
    subject.lport = Some(l.port);
    let pid = l.owner.map_or("PID".to_string(), |o| o.pid.to_string());
    let cap = sys.map_or(String::new(), |s| format!(" (now {})", s.somaxconn));
    f.subject(subject.with_count(total))
        .cause(format!(
            "The application does not accept() as fast as connections complete on port {}: its accept loop is blocked or too slow, or the backlog ({}) is too small for the bursts it gets.",
            l.port, l.backlog
        ))
        .action(format!(
            "`ss -ltn 'sport = :{}'` shows Recv-Q (waiting) against Send-Q (backlog); `nstat -az TcpExtListenOverflows TcpExtListenDrops` shows the drops; look at what the accepting thread of pid {pid} is doing (`cat /proc/{pid}/task/*/wchan`, a stack dump).",
            l.port
        ))
        .fix(format!(
            "Accept faster (a dedicated accept thread, more workers) and pass a larger backlog to listen() (e.g. 4096); net.core.somaxconn{cap} must be at least that large, as it caps every backlog."
        ))
}
