//! Sockets that existed before tracing started, found in /proc.
//!
//! A seed has a tuple but no kernel socket address, so seeded flows wait
//! in their own table, by tuple, until an event names their socket (see
//! `Engine::flow_mut`). Seeding may finish after events have started to
//! flow; what events said is then newer than /proc and wins.

// Keys are tuples, chosen in part by remote peers: see `mod.rs`.
use foldhash::HashMap;

use super::{
    Engine,
    flows::{Flow, Role},
};
use crate::event::{Owner, TcpState, Tuple};

impl Engine {
    /// Records a socket that existed before tracing started, at `now_ns`.
    pub fn seed(&mut self, tuple: Tuple, state: TcpState, owner: Option<Owner>, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        // Listeners lend their owner to the sockets they accept; the other
        // seeds carry theirs in their flow.
        if let Some(o) = owner
            && state == TcpState::Listen
        {
            self.owners.seed(tuple, state, o);
        }
        let mut f = Flow::new(0, tuple, state, 0);
        f.owner = owner;
        if state == TcpState::Listen {
            f.role = Role::Listener;
        }
        if state == TcpState::TimeWait {
            // Its remaining time is unknown: assume a full TIME_WAIT.
            f.end_ns = Some(now_ns.saturating_add(self.cfg.time_wait_ns)).into();
            self.evicted += self.retirement.add(f, &self.cfg);
        } else {
            self.seeded.insert(f);
        }
    }

    /// Records sockets found in /proc while events already flow (seeding
    /// runs beside the ring reader so that it does not delay the first
    /// event). A tuple the engine already follows from events keeps what
    /// the events said, which is at least as new, and only gains the owner
    /// if it had none; so does a tuple in `coming`, events read but not yet
    /// processed (/proc may have been read after them); the rest are
    /// seeded as by [`Self::seed`].
    pub fn seed_late(
        &mut self,
        seeds: impl IntoIterator<Item = (Tuple, TcpState, Option<Owner>)>,
        coming: &foldhash::HashSet<Tuple>,
        now_ns: u64,
    ) {
        // By tuple and whether it is a listener's: on kernels that fire a
        // child's LISTEN -> SYN_RECV before it has its peer's address (6.1,
        // 6.12), the child briefly has its listener's tuple, and is not it.
        let listening = |f: &Flow| f.role == Role::Listener;
        let mut known: HashMap<(Tuple, bool), u64> = HashMap::default();
        known.extend(
            self.flows
                .values()
                .map(|f| ((f.tuple, listening(f)), f.sock)),
        );
        // Closed flows are known too, but have nothing to gain.
        known.extend(self.retirement.iter().map(|f| ((f.tuple, listening(f)), 0)));
        for (tuple, state, owner) in seeds {
            let listener = state == TcpState::Listen;
            match known.get(&(tuple, listener)) {
                // A held event with a listener's tuple may be a child's
                // (above); the listener's own events take its seed over.
                None if coming.contains(&tuple) && !listener => {
                    if let Some(o) = owner {
                        self.owners.seed(tuple, state, o);
                    }
                }
                None => self.seed(tuple, state, owner, now_ns),
                Some(&sock) => {
                    if let (Some(f), Some(o)) = (self.flows.get_mut(&sock), owner)
                        && f.owner.is_none()
                    {
                        f.owner = Some(o);
                    }
                }
            }
        }
    }
}
