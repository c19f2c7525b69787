//! Flows on their way out: closed flows that linger (for `top`, and for
//! events that come after the close), inferred TIME_WAITs, and which live
//! flow goes first when the table is full.
//!
//! Both lists are ordered by end time, so letting flows go is popping
//! fronts.

use std::collections::VecDeque;

use super::{
    config::{Config, KEEP_CLOSED, RECENT},
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
    /// [`Config::keep_closed`] of each list.
    pub fn sweep(&mut self, now: u64, cfg: &Config) {
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
                && oldest(flows).is_none()
                && seeded.pop().is_none()
            {
                break;
            }
            evicted += 1;
        }
        evicted
    }
}

/// Removes and returns the live flow that has been in its state longest.
fn oldest(flows: &mut FlowTable<BySock>) -> Option<Flow> {
    let sock = flows.values().min_by_key(|f| f.since_ns)?.sock;
    flows.remove(&sock)
}
