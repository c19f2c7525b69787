//! The user's filters (`--pid`, `--port`, `--lport`, `--rport`, `-4`/`-6`),
//! applied exactly in user space by the pipeline (once, with one rule).
//! The kernel's coarser pre-filter is derived from it in
//! [`crate::hooks::kernel_filter`].

use crate::{
    engine::{Annotated, flows::Flow},
    event::{Family, Owner, Tuple},
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Owner process id.
    pub pid: Option<u32>,
    /// Local or remote port.
    pub port: Option<u16>,
    pub lport: Option<u16>,
    pub rport: Option<u16>,
    pub family: Option<Family>,
}

impl Filter {
    /// Whether an annotated event passes.
    pub fn matches(&self, a: &Annotated) -> bool {
        self.matches_flow(&a.event.tuple, a.owner.as_ref())
    }

    /// Whether a flow the engine keeps passes (`top`, `hist --rtt`).
    pub fn keeps(&self, f: &Flow) -> bool {
        self.matches_flow(&f.tuple, f.owner.as_ref())
    }

    /// Whether a flow (tuple and owner) passes: the one rule every event,
    /// outcome, seed and table row is held to. A local port of 0 means
    /// "not known yet" (a connect before its port was chosen, or that
    /// never got one): it matches `--port` by the remote side only, and
    /// never `--lport`.
    pub fn matches_flow(&self, t: &Tuple, owner: Option<&Owner>) -> bool {
        let lport_known = t.lport != 0;
        if let Some(pid) = self.pid
            && owner.map(|o| o.pid) != Some(pid)
        {
            return false;
        }
        if let Some(p) = self.port
            && !(t.rport == p || (lport_known && t.lport == p))
        {
            return false;
        }
        if let Some(p) = self.lport
            && !(lport_known && t.lport == p)
        {
            return false;
        }
        if let Some(p) = self.rport
            && t.rport != p
        {
            return false;
        }
        if let Some(f) = self.family
            && t.family != f
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{
        Annotated,
        tests::{owner, state, tuple},
    };
    use crate::event::TcpState::*;

    fn ann(lport: u16, rport: u16, pid: Option<u32>) -> Annotated {
        Annotated {
            event: state(1, 1, tuple(lport, rport), owner(1, "x"), Close, SynSent),
            owner: pid.map(|p| owner(p, "x")),
            prev_state_ns: None,
        }
    }

    #[test]
    fn ports_and_pids() {
        let f = Filter {
            port: Some(80),
            ..Filter::default()
        };
        assert!(f.matches(&ann(80, 5000, None)));
        assert!(f.matches(&ann(5000, 80, None)));
        assert!(!f.matches(&ann(5000, 81, None)));

        let f = Filter {
            lport: Some(80),
            ..Filter::default()
        };
        assert!(f.matches(&ann(80, 5000, None)));
        assert!(!f.matches(&ann(5000, 80, None)));

        let f = Filter {
            rport: Some(80),
            pid: Some(7),
            ..Filter::default()
        };
        assert!(f.matches(&ann(5000, 80, Some(7))));
        assert!(!f.matches(&ann(5000, 80, Some(8))));
        assert!(
            !f.matches(&ann(5000, 80, None)),
            "unknown owner never matches a pid"
        );
    }

    #[test]
    fn family() {
        let f = Filter {
            family: Some(Family::V6),
            ..Filter::default()
        };
        assert!(!f.matches(&ann(1, 2, None)));
    }
}
