//! Unit tests of the engine, one file per part, and the event builders
//! that tests elsewhere in the crate import from here.

mod machine;
mod outcomes;
mod retire;
mod seeding;

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::event::{Comm, Family, RetransKind, Tuple};

pub fn owner(pid: u32, comm: &str) -> Owner {
    Owner {
        pid,
        comm: Comm::from_bytes(comm.as_bytes()),
        cgroup: Default::default(),
    }
}

pub fn tuple(lport: u16, rport: u16) -> Tuple {
    Tuple {
        family: Family::V4,
        laddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        lport,
        raddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        rport,
        netns: 0,
    }
}

pub fn state(ts: u64, sock: u64, t: Tuple, task: Owner, old: TcpState, new: TcpState) -> Event {
    Event {
        ts_ns: ts,
        sock,
        tuple: t,
        task,
        kind: EventKind::State { old, new },
    }
}

/// A connect outcome of `curl` (pid 7) to port 80 at 1 µs.
pub fn outcome(latency_ns: Option<u64>, errno: Option<i32>) -> flows::ConnectOutcome {
    flows::ConnectOutcome {
        ts_ns: 1_000,
        sock: 1,
        tuple: tuple(40000, 80),
        owner: Some(owner(7, "curl")),
        latency_ns,
        errno,
    }
}

pub fn retrans(
    ts: u64,
    sock: u64,
    t: Tuple,
    task: Owner,
    st: TcpState,
    kind: RetransKind,
) -> Event {
    Event {
        ts_ns: ts,
        sock,
        tuple: t,
        task,
        kind: EventKind::Retrans {
            state: st,
            kind,
            segs: Some(1),
            failed: None,
        },
    }
}

fn ev(ts: u64, sock: u64, t: Tuple, kind: EventKind) -> Event {
    Event {
        ts_ns: ts,
        sock,
        tuple: t,
        task: owner(0, "swapper/0"),
        kind,
    }
}
