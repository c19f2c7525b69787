//! `close_wait_leak`: sockets the peer closed and the application never
//! did. A socket enters CLOSE_WAIT when the peer's FIN arrives and leaves
//! it only when the application calls `close()`; one that stays there for
//! seconds belongs to code that read EOF and forgot the socket. Per
//! process and service (the listener it accepted on, or the destination
//! it connected to): how many, how old (oldest, median), the growth over
//! the session, the bytes left unread, and the process's descriptors
//! against its limit (each leaked socket holds one until `EMFILE`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use super::{Examine, Scene, flows_by_tuple, median};
use crate::{
    counters::Tables,
    event::{Owner, TcpState},
    sockdiag::SockInfo,
    views::doctor::finding::{Finding, Playbook, Severity, Subject},
};

/// Seconds in CLOSE_WAIT that make a socket stuck: an application that
/// reads EOF closes within milliseconds, so 3 s is far beyond any request
/// still being finished.
const STUCK_S: f64 = 3.0;
/// Stuck sockets of one process and service before it is a warning (a
/// snapshot may catch a few in the act of closing, never this many old).
const WARN_STUCK: usize = 5;
/// Stuck sockets that make it critical, or the share of the descriptor
/// limit in use: the process is heading for `EMFILE`.
const CRIT_STUCK: usize = 200;
const CRIT_FD_SHARE: f64 = 0.8;
/// Processes reported at most (the worst first).
const MAX_FINDINGS: usize = 3;

/// Where the leaked sockets lead: the port a listener accepted them on,
/// or the destination the process connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Service {
    Listener(u16),
    Dest(IpAddr, u16),
}

#[derive(Default)]
struct Group {
    owner: Option<Owner>,
    count: usize,
    /// Ages in seconds of the sockets whose age is known, and whether
    /// some are only known to be at least that old (in CLOSE_WAIT when
    /// the session began).
    ages: Vec<f64>,
    lower_bound: bool,
    unread: u64,
    unread_socks: usize,
    at_start: usize,
}

impl Group {
    fn stuck(&self) -> usize {
        self.ages.iter().filter(|&&a| a >= STUCK_S).count()
    }
}

#[derive(Default)]
pub struct CloseWaitLeak;

impl Examine for CloseWaitLeak {
    fn examine(&self, scene: &Scene<'_>) -> Vec<Finding> {
        let Some(last) = scene.tables_last else {
            return Vec::new();
        };
        let groups = groups(scene, last);
        let mut bad: Vec<((u32, Service), Group)> = groups
            .into_iter()
            .filter(|(_, g)| g.stuck() >= WARN_STUCK)
            .collect();
        bad.sort_by(|a, b| b.1.stuck().cmp(&a.1.stuck()).then(a.0.cmp(&b.0)));
        bad.into_iter()
            .take(MAX_FINDINGS)
            .map(|((_, service), g)| finding(scene, last, service, &g))
            .collect()
    }
}

fn service(s: &SockInfo, listening: &HashSet<u16>) -> Service {
    if listening.contains(&s.tuple.lport) {
        Service::Listener(s.tuple.lport)
    } else {
        Service::Dest(s.tuple.raddr, s.tuple.rport)
    }
}

fn listening(t: &Tables) -> HashSet<u16> {
    t.sockets
        .iter()
        .filter(|s| s.state == TcpState::Listen)
        .map(|s| s.tuple.lport)
        .collect()
}

fn close_wait(t: &Tables) -> impl Iterator<Item = &SockInfo> {
    t.sockets.iter().filter(|s| s.state == TcpState::CloseWait)
}

/// The CLOSE_WAIT sockets at the end by process (pid, 0 if unknown) and
/// service, with what is known of their ages.
fn groups(scene: &Scene<'_>, last: &Tables) -> BTreeMap<(u32, Service), Group> {
    let flows = flows_by_tuple(scene.engine);
    let mut listen = listening(last);
    let mut at_start: HashMap<(u32, Service), usize> = HashMap::new();
    let mut old: HashSet<u64> = HashSet::new();
    if let Some(first) = scene.tables_first {
        listen.extend(listening(first));
        for s in close_wait(first) {
            let pid = s.owner.map_or(0, |o| o.pid);
            *at_start.entry((pid, service(s, &listen))).or_default() += 1;
            if s.inode != 0 {
                old.insert(s.inode);
            }
        }
    }
    let mut out: BTreeMap<(u32, Service), Group> = BTreeMap::new();
    for s in close_wait(last) {
        let flow = flows.get(&super::key(&s.tuple)).copied();
        // The engine's owner names the thread that listened or connected;
        // the descriptor walk only the process.
        let owner = flow.and_then(|f| f.owner).or(s.owner);
        let key = (owner.map_or(0, |o| o.pid), service(s, &listen));
        let g = out.entry(key).or_default();
        g.owner = g.owner.or(owner);
        g.count += 1;
        g.unread += u64::from(s.recv_q);
        g.unread_socks += usize::from(s.recv_q > 0);
        let seen = flow
            .filter(|f| f.state == TcpState::CloseWait)
            .map(|f| scene.now_ns.saturating_sub(f.since_ns) as f64 / 1e9);
        let was_there = s.inode != 0 && old.contains(&s.inode);
        match (seen, was_there) {
            (Some(a), false) => g.ages.push(a),
            (a, true) => {
                g.ages.push(a.unwrap_or(0.0).max(scene.duration_s));
                g.lower_bound = true;
            }
            (None, false) => {}
        }
    }
    for (k, g) in &mut out {
        g.at_start = at_start.get(k).copied().unwrap_or(0);
    }
    out
}

fn finding(scene: &Scene<'_>, last: &Tables, service: Service, g: &Group) -> Finding {
    let stuck = g.stuck();
    let oldest = g.ages.iter().copied().fold(0.0, f64::max);
    let median = median(&g.ages);
    let fds = g.owner.and_then(|o| last.fd_use(o.pid));
    let fd_share = fds.and_then(|f| Some(f.open as f64 / f.limit? as f64));
    let severity = if stuck >= CRIT_STUCK || fd_share.is_some_and(|s| s >= CRIT_FD_SHARE) {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let who = g.owner.map_or("an unknown process".to_string(), |o| {
        format!("pid {} ({})", o.pid, o.comm.as_str())
    });
    let (place, filter) = match service {
        Service::Listener(p) => (format!("port {p}"), format!("sport = :{p}")),
        Service::Dest(a, p) => (
            format!("connections to {}", std::net::SocketAddr::new(a, p)),
            format!("dst {a} and dport = :{p}"),
        ),
    };
    let at_least = if g.lower_bound { "at least " } else { "" };
    let mut f = Finding::new(
        Playbook::CloseWaitLeak,
        severity,
        format!(
            "{who} leaks sockets: {} in CLOSE_WAIT on {place}, oldest {at_least}{oldest:.0} s",
            g.count
        ),
    )
    .fact(
        "close_wait",
        g.count,
        format!(
            "{} sockets in CLOSE_WAIT, {stuck} of them for {STUCK_S:.0} s or more (warning at {WARN_STUCK} stuck, critical at {CRIT_STUCK})",
            g.count
        ),
    )
    .fact("stuck", stuck, String::new())
    .fact(
        "oldest_s",
        round1(oldest),
        format!(
            "ages: oldest {at_least}{oldest:.1} s, median {median:.1} s (an application closes within milliseconds of reading EOF)"
        ),
    )
    .fact("median_s", round1(median), String::new())
    .fact(
        "growth",
        g.count as i64 - g.at_start as i64,
        format!(
            "{} at the start of the {:.0} s watched, {} at the end",
            g.at_start, scene.duration_s, g.count
        ),
    )
    .fact(
        "unread_bytes",
        g.unread,
        if g.unread == 0 {
            "no unread bytes: it read up to EOF and stopped there".to_string()
        } else {
            format!(
                "{} bytes unread in {} of them (`ss` Recv-Q, the FIN counted as one): it stopped reading too",
                g.unread, g.unread_socks
            )
        },
    );
    if let Some(u) = fds {
        let text = match u.limit {
            Some(l) => format!(
                "{} descriptors open of a limit of {l} ({:.0} %; critical at {:.0} %): each leaked socket holds one until accept() fails with EMFILE",
                u.open,
                u.open as f64 * 100.0 / l.max(1) as f64,
                CRIT_FD_SHARE * 100.0
            ),
            None => format!("{} descriptors open (no limit)", u.open),
        };
        f = f
            .fact("fds", u.open, text)
            .fact("fd_limit", u.limit, String::new());
    }
    let mut subject = g.owner.as_ref().map(Subject::owner).unwrap_or_default();
    match service {
        Service::Listener(p) => subject.lport = Some(p),
        Service::Dest(a, p) => (subject.raddr, subject.rport) = (Some(a), Some(p)),
    }
    let pid = g.owner.map_or("PID".to_string(), |o| o.pid.to_string());
    f.subject(subject.with_count(g.count as u64))
        .cause(
            "The application read EOF (the peer closed its side) and never called close() on these sockets: a code path that returns without closing (an error, an exception, a pool that keeps connections the peer dropped). The kernel waits for the application; keepalive and timeouts do not end CLOSE_WAIT.",
        )
        .action(format!(
            "`ss -tanp state close-wait '( {filter} )'` lists them with their owner; `ls /proc/{pid}/fd | wc -l` watches the descriptors grow. Restarting the process frees them now."
        ))
        .fix(
            "In the code: close the socket when read() returns 0 (EOF) or an error, on every path (try/finally, defer, RAII); a pool must drop connections the peer closed. No sysctl helps (tcp_fin_timeout bounds FIN_WAIT2, not CLOSE_WAIT).",
        )
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
