//! The table of live flows: the flows side by side in one `Vec`, found by
//! socket through a small index.
//!
//! A `HashMap<u64, Flow>` spreads 100 000 flows over 131 072 buckets of
//! 144 bytes, touching every page; here flows fill a `Vec` front to back
//! (glibc grows a large block with mremap, without a copy) and the index
//! costs 16 bytes a bucket. Removal moves the last flow into the hole.

use foldhash::HashMap;

use super::flows::Flow;

#[derive(Debug, Default)]
pub struct FlowTable {
    /// Socket -> position in `flows`.
    index: HashMap<u64, u32>,
    flows: Vec<Flow>,
}

impl FlowTable {
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn contains_key(&self, sock: &u64) -> bool {
        self.index.contains_key(sock)
    }

    pub fn get(&self, sock: &u64) -> Option<&Flow> {
        self.index.get(sock).map(|&i| &self.flows[i as usize])
    }

    pub fn get_mut(&mut self, sock: &u64) -> Option<&mut Flow> {
        self.index.get(sock).map(|&i| &mut self.flows[i as usize])
    }

    /// Adds `flow` under its socket, replacing a flow of the same socket.
    pub fn insert(&mut self, flow: Flow) {
        match self.index.get(&flow.sock) {
            Some(&i) => self.flows[i as usize] = flow,
            None => {
                self.index.insert(flow.sock, self.flows.len() as u32);
                self.flows.push(flow);
            }
        }
    }

    pub fn remove(&mut self, sock: &u64) -> Option<Flow> {
        let i = self.index.remove(sock)? as usize;
        let flow = self.flows.swap_remove(i);
        if let Some(moved) = self.flows.get(i) {
            self.index.insert(moved.sock, i as u32);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{engine::tests::tuple, event::TcpState};

    #[test]
    fn insert_get_remove_keep_the_index_right() {
        let mut t = FlowTable::default();
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
    }
}
