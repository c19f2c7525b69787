//! Connect outcomes: for each connection attempt, its latency or why it
//! failed, for the `connect` and `hist` views.
//!
//! Success is plain (SYN_SENT -> ESTABLISHED). Failure is not: the
//! kernel's error report names a tuple but no socket and comes before or
//! after SYN_SENT -> CLOSE depending on the version, and a connect that
//! fails before sending a SYN (no free port) tells its errno only through
//! the connect hook, after the state change. So a failure is reported
//! once its errno is known, or once [`Config::pending_connect_ns`] has
//! passed without one, and each attempt once only. The state of that
//! wait is here, in [`Outcomes`]; what belongs to one flow (reported yet,
//! its errno, since when it waits) stays on the flow.
//!
//! [`Config::pending_connect_ns`]: super::Config::pending_connect_ns

// Keys are tuples, chosen in part by remote peers: see `mod.rs`.
use foldhash::HashMap;

use super::{
    Engine,
    config::{ERROR_KEEP_NS, MAX_ERRORS},
    flows::{ConnectOutcome, Flow},
};
use crate::event::{Event, Owner, Tuple};

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct Outcomes {
    /// Sockets whose failed connect waits for an errno; their flows stay
    /// live, marked with when it failed, until it comes or the wait ends.
    pending: Vec<u64>,
    /// Errors reported for a tuple before its connect failed, with their
    /// time and namespace. Keyed by the tuple without its namespace: an
    /// error report names no socket, so its namespace is 0 (unknown).
    errors: HashMap<Tuple, (i32, u64, u32)>,
    /// Outcomes not taken yet.
    done: Vec<ConnectOutcome>,
}

impl Outcomes {
    /// SYN_SENT -> ESTABLISHED of live flow `f` at `ts`: the attempt
    /// succeeded. Its outcome, once, if this run saw the SYN (else the
    /// latency is unknown); the caller passes it to [`Self::report`] once
    /// `f` is let go (taking the flow again would cost a lookup on the
    /// path of every connection).
    pub fn connected(f: &mut Flow, ts: u64) -> Option<ConnectOutcome> {
        let latency = f.handshake_ns.get()?;
        if f.outcome_done {
            return None;
        }
        f.outcome_done = true;
        Some(ConnectOutcome {
            ts_ns: ts,
            sock: f.sock,
            tuple: f.tuple,
            owner: f.owner,
            latency_ns: Some(latency),
            errno: None,
        })
    }

    pub fn report(&mut self, outcome: Option<ConnectOutcome>) {
        self.done.extend(outcome);
    }

    /// Forgets error reports that no failed connect claimed in time.
    pub fn forget_errors(&mut self, now: u64) {
        self.errors
            .retain(|_, (_, ts, _)| now.saturating_sub(*ts) < ERROR_KEEP_NS);
    }
}

impl Engine {
    /// Resolves every pending connect now (end of input).
    pub fn finish(&mut self) {
        for sock in std::mem::take(&mut self.outcomes.pending) {
            self.fail(sock, None);
        }
    }

    /// Connection outcomes since the last call.
    pub fn take_outcomes(&mut self) -> Vec<ConnectOutcome> {
        std::mem::take(&mut self.outcomes.done)
    }

    /// SYN_SENT -> CLOSE of `ev`'s live flow: the attempt failed. With its
    /// errno already known (from the connect hook or an error report) it is
    /// reported and closed now; else it waits.
    pub(super) fn connect_failed(&mut self, ev: &Event) {
        let error = self.flows.get(&ev.sock).and_then(|f| f.extra().error);
        let key = Tuple {
            netns: 0,
            ..ev.tuple
        };
        let errno = error.or_else(|| match self.outcomes.errors.get(&key) {
            Some(&(e, _, netns)) if netns == 0 || netns == ev.tuple.netns => {
                self.outcomes.errors.remove(&key);
                Some(e)
            }
            _ => None,
        });
        match errno {
            Some(e) => {
                self.resolve_failure(ev.sock, Some(e));
                self.close(ev.sock, ev.ts_ns);
            }
            None => {
                // The connect hook may still tell why (EADDRNOTAVAIL).
                if let Some(f) = self.flows.get_mut(&ev.sock) {
                    f.extra_mut().pending_fail_ns = Some(ev.ts_ns);
                }
                self.outcomes.pending.push(ev.sock);
            }
        }
    }

    /// Ends the wait of `sock`'s failed connect, if it waits: reported
    /// without an errno, and closed. Returns whether it waited.
    pub(super) fn settle(&mut self, sock: u64) -> bool {
        if !self.outcomes.pending.contains(&sock) {
            return false;
        }
        self.resolve_failure(sock, None);
        true
    }

    /// An error report names no socket: it completes a failed connect of
    /// the same tuple, or waits for one (the kernel reports before or after
    /// SYN_SENT -> CLOSE depending on the version).
    pub(super) fn on_sock_error(&mut self, ev: &Event, errno: i32) {
        let pending = self.outcomes.pending.iter().copied().find(|s| {
            self.flows
                .get(s)
                .is_some_and(|f| f.tuple.same_flow(&ev.tuple))
        });
        match pending {
            Some(sock) => self.resolve_failure(sock, Some(errno)),
            None if self.outcomes.errors.len() < MAX_ERRORS => {
                let key = Tuple {
                    netns: 0,
                    ..ev.tuple
                };
                self.outcomes
                    .errors
                    .insert(key, (errno, ev.ts_ns, ev.tuple.netns));
            }
            None => {}
        }
    }

    /// The connect hook's errno: it completes a waiting failure, or is kept
    /// on the flow for the failure to come, or is an outcome of its own
    /// (the connect failed before the socket changed state).
    pub(super) fn on_connect_error(&mut self, ev: &Event, errno: i32, owner: Option<Owner>) {
        match self.flows.get_mut(&ev.sock) {
            Some(f) if f.outcome_done => {}
            Some(f) if f.extra().pending_fail_ns.is_some() => {
                self.resolve_failure(ev.sock, Some(errno));
            }
            Some(f) => f.extra_mut().error = Some(errno),
            None => {
                // Already closed and reported, or never seen: report unless
                // a lingering flow says it was reported.
                let reported = self
                    .retirement
                    .iter()
                    .any(|f| f.sock == ev.sock && f.outcome_done && ev.sock != 0);
                if !reported {
                    self.outcomes.done.push(ConnectOutcome {
                        ts_ns: ev.ts_ns,
                        sock: ev.sock,
                        tuple: ev.tuple,
                        owner,
                        latency_ns: None,
                        errno: Some(errno),
                    });
                }
            }
        }
    }

    /// Reports the failures that waited [`super::Config::pending_connect_ns`]
    /// in vain.
    pub(super) fn resolve_overdue(&mut self, now: u64) {
        if self.outcomes.pending.is_empty() {
            return;
        }
        let wait = self.cfg.pending_connect_ns;
        let flows = &self.flows;
        let mut due = Vec::new();
        self.outcomes.pending.retain(|&s| {
            let overdue = flows
                .get(&s)
                .and_then(|f| f.extra().pending_fail_ns)
                .is_none_or(|t| now.saturating_sub(t) >= wait);
            if overdue {
                due.push(s);
            }
            !overdue
        });
        for sock in due {
            self.fail(sock, None);
        }
    }

    /// Ends the wait of `sock`, if any, and reports its failure.
    fn resolve_failure(&mut self, sock: u64, errno: Option<i32>) {
        self.outcomes.pending.retain(|&s| s != sock);
        self.fail(sock, errno);
    }

    /// Emits the failed outcome of `sock` (once) and closes it if it was
    /// waiting; `sock` is no longer in `pending`.
    fn fail(&mut self, sock: u64, errno: Option<i32>) {
        let Some(f) = self.flows.get_mut(&sock) else {
            return;
        };
        let was_pending = f.take_pending_fail();
        if !f.outcome_done {
            f.outcome_done = true;
            let errno = f.extra().error.or(errno);
            if errno.is_some() {
                f.extra_mut().error = errno;
            }
            self.outcomes.done.push(ConnectOutcome {
                ts_ns: was_pending.unwrap_or(f.since_ns),
                sock,
                tuple: f.tuple,
                owner: f.owner,
                latency_ns: None,
                errno,
            });
        }
        if let Some(ts) = was_pending {
            self.close(sock, ts);
        }
    }
}
