//! Flow tables: flows side by side in one `Vec`, found through a small
//! index. The live flows are found by socket; the flows seeded from /proc
//! (no socket known yet) by a 64-bit hash of their tuple.
//!
//! A `HashMap<u64, Flow>` spreads 100 000 flows over 131 072 buckets of
//! 144 bytes, touching every page; here flows fill a `Vec` front to back
//! (glibc grows a large block with mremap, without a copy) and the index
//! costs 16 bytes a bucket. Removal moves the last flow into the hole.

use std::hash::BuildHasher;

use foldhash::{HashMap, fast::RandomState};

use super::flows::Flow;
use crate::event::Tuple;

/// How a table finds a flow.
pub trait Key {
    /// The flow's key (for a tuple: its hash).
    fn key(&self, f: &Flow) -> u64;
}

/// By socket.
#[derive(Debug, Default)]
pub struct BySock;

impl Key for BySock {
    fn key(&self, f: &Flow) -> u64 {
        f.sock
    }
}

/// By tuple, through a per-process seeded hash: two tuples of one hash
/// (odds of 1 in 10^9 for 100 000 flows) would make the second a miss.
#[derive(Debug, Default)]
pub struct ByTuple(RandomState);

impl ByTuple {
    pub fn hash(&self, t: &Tuple) -> u64 {
        self.0.hash_one(t)
    }
}

impl Key for ByTuple {
    fn key(&self, f: &Flow) -> u64 {
        self.hash(&f.tuple)
    }
}

#[derive(Debug, Default)]
pub struct FlowTable<K: Key> {
    keys: K,
    /// Key -> position in `flows`.
    index: HashMap<u64, u32>,
    flows: Vec<Flow>,
}

impl<K: Key> FlowTable<K> {
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    fn at(&self, key: u64) -> Option<usize> {
        self.index.get(&key).map(|&i| i as usize)
    }

    /// Adds `flow`, replacing a flow of the same key.
    pub fn insert(&mut self, flow: Flow) {
        let key = self.keys.key(&flow);
        match self.at(key) {
            Some(i) => self.flows[i] = flow,
            None => {
                self.index.insert(key, self.flows.len() as u32);
                self.flows.push(flow);
            }
        }
    }

    fn remove_key(&mut self, key: u64) -> Option<Flow> {
        let i = self.index.remove(&key)? as usize;
        let flow = self.flows.swap_remove(i);
        if let Some(moved) = self.flows.get(i) {
            self.index.insert(self.keys.key(moved), i as u32);
        }
        // After a storm, give the memory back.
        if self.flows.capacity() > 4096 && self.flows.len() < self.flows.capacity() / 4 {
            self.flows.shrink_to(self.flows.capacity() / 2);
            self.index.shrink_to_fit();
        }
        Some(flow)
    }

    pub fn values(&self) -> impl Iterator<Item = &Flow> {
        self.flows.iter()
    }

    /// Any one flow, removed (for eviction).
    pub fn pop(&mut self) -> Option<Flow> {
        let key = self.keys.key(self.flows.last()?);
        self.remove_key(key)
    }
}

impl FlowTable<BySock> {
    pub fn contains_key(&self, sock: &u64) -> bool {
        self.index.contains_key(sock)
    }

    pub fn get(&self, sock: &u64) -> Option<&Flow> {
        self.at(*sock).map(|i| &self.flows[i])
    }

    pub fn get_mut(&mut self, sock: &u64) -> Option<&mut Flow> {
        self.at(*sock).map(|i| &mut self.flows[i])
    }

    pub fn remove(&mut self, sock: &u64) -> Option<Flow> {
        self.remove_key(*sock)
    }
}

impl FlowTable<ByTuple> {
    /// The flow of tuple `t` (checked: a hash collision is a miss). Asked
    /// for every new socket, so an empty table does not hash.
    pub fn get(&self, t: &Tuple) -> Option<&Flow> {
        if self.flows.is_empty() {
            return None;
        }
        self.at(self.keys.hash(t))
            .map(|i| &self.flows[i])
            .filter(|f| f.tuple == *t)
    }

    pub fn get_mut(&mut self, t: &Tuple) -> Option<&mut Flow> {
        if self.flows.is_empty() {
            return None;
        }
        self.at(self.keys.hash(t))
            .map(|i| &mut self.flows[i])
            .filter(|f| f.tuple == *t)
    }

    pub fn remove(&mut self, t: &Tuple) -> Option<Flow> {
        if self.flows.is_empty() {
            return None;
        }
        let key = self.keys.hash(t);
        let i = self.at(key)?;
        if self.flows[i].tuple != *t {
            return None;
        }
        self.remove_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{engine::tests::tuple, event::TcpState};

    #[test]
    fn insert_get_remove_keep_the_index_right() {
        let mut t = FlowTable::<BySock>::default();
        for s in 1..=10_000u64 {
            t.insert(Flow::new(s, tuple(s as u16, 80), TcpState::Established, s));
        }
        // Remove every other one: each removal moves the last flow.
        for s in (1..=10_000u64).step_by(2) {
            assert_eq!(t.remove(&s).map(|f| f.sock), Some(s));
        }
        assert!(t.remove(&1).is_none());
        assert_eq!(t.len(), 5_000);
        for s in 1..=10_000u64 {
            assert_eq!(t.get(&s).map(|f| f.sock), (s % 2 == 0).then_some(s), "{s}");
        }
        t.get_mut(&2).unwrap().state = TcpState::CloseWait;
        t.insert(Flow::new(2, tuple(2, 80), TcpState::Listen, 0));
        assert_eq!(
            (t.len(), t.get(&2).unwrap().state),
            (5_000, TcpState::Listen)
        );
        assert_eq!(t.values().count(), 5_000);
        assert!(t.pop().is_some());
        assert_eq!(t.len(), 4_999);
    }

    #[test]
    fn seeded_flows_by_tuple() {
        let mut t = FlowTable::<ByTuple>::default();
        for p in 1..=1_000u16 {
            t.insert(Flow::new(0, tuple(p, 80), TcpState::Established, 0));
        }
        assert_eq!(t.get(&tuple(7, 80)).map(|f| f.tuple.lport), Some(7));
        assert!(t.get(&tuple(7, 81)).is_none());
        assert_eq!(t.remove(&tuple(7, 80)).map(|f| f.tuple.lport), Some(7));
        assert!(t.remove(&tuple(7, 80)).is_none());
        assert_eq!(t.len(), 999);
        assert!(
            (1..=1_000u16)
                .filter(|&p| p != 7)
                .all(|p| t.get(&tuple(p, 80)).is_some())
        );
    }
}
