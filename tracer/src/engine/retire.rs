//! Flows on their way out: closed flows that linger (for `top`, and for
//! events that come after the close), inferred TIME_WAITs, and which live
//! flow goes first when the table is full.
//!
//! Both lists are ordered by end time, so letting flows go is popping
//! fronts. Eviction must not scan a million live flows per new socket
//! (a storm at the cap would be quadratic), nor cost memory or time per
//! event below the cap, where the engine nearly always is: see [`Oldest`].

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
};

use super::{
    config::{Config, EVICT_ONE_IN, KEEP_CLOSED, RECENT},
    flows::Flow,
    table::{BySock, ByTuple, FlowTable},
};
use crate::event::TcpState;

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct Retirement {
    /// Closed flows, oldest first.
    closed: VecDeque<Flow>,
    /// Flows in an inferred TIME_WAIT, oldest first (apart so that both
    /// lists stay ordered by end time).
    time_wait: VecDeque<Flow>,
    oldest: Oldest,
}

impl Retirement {
    /// Takes a flow that has ended (its `end_ns` set); returns how many
    /// closed flows went to make room for it.
    pub fn add(&mut self, f: Flow, cfg: &Config) -> u64 {
        if f.state == TcpState::TimeWait {
            self.time_wait.push_back(f);
            return 0;
        }
        self.closed.push_back(f);
        if self.closed.len() > cfg.closed_cap() {
            self.closed.pop_front();
            return 1;
        }
        0
    }

    pub fn len(&self) -> usize {
        self.closed.len() + self.time_wait.len()
    }

    /// Inferred TIME_WAITs, then closed flows, each oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.time_wait.iter().chain(self.closed.iter())
    }

    /// Where in the closed list the flow of `sock` is, among the last
    /// [`RECENT`] closed (a late event of a socket closed long ago is more
    /// likely a new socket at the same address).
    pub fn recent(&self, sock: u64) -> Option<usize> {
        let recent = self.closed.len().saturating_sub(RECENT);
        (recent..self.closed.len())
            .rev()
            .find(|&i| self.closed[i].sock == sock)
    }

    pub fn closed(&self, i: usize) -> &Flow {
        &self.closed[i]
    }

    pub fn closed_at(&mut self, i: usize) -> &mut Flow {
        &mut self.closed[i]
    }

    /// The flow of `sock` among the last [`KEEP_CLOSED`] of each list, for
    /// what the kernel reports about a socket after it closed.
    pub fn late(&mut self, sock: u64) -> Option<&mut Flow> {
        let recent = self.closed.len().saturating_sub(KEEP_CLOSED);
        self.closed
            .range_mut(recent..)
            .chain(self.time_wait.iter_mut().rev().take(KEEP_CLOSED))
            .rev()
            .find(|f| f.sock == sock)
    }

    /// Lets ended flows go once they have lingered, keeping the last
    /// [`Config::keep_closed`] of each list; frees the eviction picks once
    /// the table (`live` flows, seeded included) is far from full.
    pub fn sweep(&mut self, now: u64, cfg: &Config, live: usize) {
        let linger = cfg.linger_ns;
        for list in [&mut self.closed, &mut self.time_wait] {
            while list.len() > cfg.keep_closed
                && list
                    .front()
                    .is_some_and(|f| f.end_ns.get().unwrap_or(0).saturating_add(linger) <= now)
            {
                list.pop_front();
            }
        }
        if live + self.len() < cfg.max_flows / 2 {
            self.oldest.clear();
        }
    }

    /// A live flow entered its current state at `since_ns` (or was first
    /// seen then): called on every change of a live flow's `since_ns`.
    #[inline]
    pub fn touch(&mut self, sock: u64, since_ns: u64) {
        self.oldest.touch(sock, since_ns);
    }

    /// Keeps the number of flows under `max_flows` before one is added:
    /// closed flows go first, then inferred TIME_WAITs, then the live flow
    /// that has been in its state longest, then seeded ones. Returns how
    /// many went.
    pub fn make_room(
        &mut self,
        flows: &mut FlowTable<BySock>,
        seeded: &mut FlowTable<ByTuple>,
        max_flows: usize,
    ) -> u64 {
        let mut evicted = 0;
        while flows.len() + seeded.len() + self.len() >= max_flows {
            if self.closed.pop_front().is_none()
                && self.time_wait.pop_front().is_none()
                && self.oldest.evict(flows).is_none()
                && seeded.pop().is_none()
            {
                break;
            }
            evicted += 1;
        }
        evicted
    }
}

/// Which live flow has been in its state longest, without a scan of the
/// table per eviction nor a heap entry per flow.
///
/// When a live flow must go, one scan picks the oldest `1/EVICT_ONE_IN` of
/// the table (by `since_ns`) into a small min-heap, and evictions pop it
/// until it runs dry: O(EVICT_ONE_IN) flows scanned per eviction,
/// amortised, plus O(log n) for the pop. A pick goes stale when its flow
/// closes or changes state (its `since_ns` no longer matches) and is then
/// skipped. Every live flow not picked entered its state at or after
/// `floor`, so only a flow touched with an older time (one taken over from
/// a /proc seed, or an event far out of order) needs to join the picks for
/// the next eviction to be the oldest of all; below the cap `floor` is 0
/// and a touch is one comparison.
#[derive(Debug, Default)]
struct Oldest {
    /// `(since_ns, sock)` of the picked flows, least first.
    picks: BinaryHeap<Reverse<(u64, u64)>>,
    /// No live flow outside `picks` entered its state before this.
    floor: u64,
}

impl Oldest {
    #[inline]
    fn touch(&mut self, sock: u64, since_ns: u64) {
        if since_ns < self.floor {
            self.picks.push(Reverse((since_ns, sock)));
        }
    }

    /// Removes and returns the live flow that has been in its state longest.
    fn evict(&mut self, flows: &mut FlowTable<BySock>) -> Option<Flow> {
        loop {
            while let Some(Reverse((since, sock))) = self.picks.pop() {
                if flows.get(&sock).is_some_and(|f| f.since_ns == since) {
                    return flows.remove(&sock);
                }
            }
            self.floor = 0;
            if flows.len() == 0 {
                return None;
            }
            self.pick(flows);
        }
    }

    /// Picks the oldest `1/EVICT_ONE_IN` of `flows`, in one pass that keeps
    /// the picks so far in a max-heap (most flows lose to its top at once).
    fn pick(&mut self, flows: &FlowTable<BySock>) {
        let n = (flows.len() / EVICT_ONE_IN).max(1);
        let mut best: BinaryHeap<(u64, u64)> = BinaryHeap::with_capacity(n);
        for f in flows.values() {
            let e = (f.since_ns, f.sock);
            if best.len() < n {
                best.push(e);
            } else if let Some(mut top) = best.peek_mut()
                && e < *top
            {
                *top = e;
            }
        }
        self.floor = best.peek().map_or(0, |&(since, _)| since);
        self.picks = best.into_iter().map(Reverse).collect();
    }

    /// Frees the picks: the next eviction scans again.
    fn clear(&mut self) {
        if self.floor != 0 || self.picks.capacity() != 0 {
            *self = Self::default();
        }
    }
}
