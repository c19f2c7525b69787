//! The socket playbooks over made-up tables (root-free): what normal life
//! looks like gives no finding; each fault, past its line, gives one.

use std::net::{IpAddr, Ipv4Addr};

use super::{Scene, all};
use crate::{
    counters::{Counter, Counters, Tables},
    engine::{Config, Engine},
    event::{Comm, Family, Owner, TcpState, Tuple},
    sockdiag::SockInfo,
    sysctls::Sysctls,
    views::{
        doctor::finding::{Finding, Playbook, Severity},
        testing::context,
    },
};

fn server() -> Owner {
    Owner {
        pid: 42,
        comm: Comm::from_bytes(b"server"),
        cgroup: Default::default(),
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn sock(state: TcpState, lport: u16, raddr: IpAddr, rport: u16, inode: u64) -> SockInfo {
    SockInfo {
        state,
        tuple: Tuple {
            family: Family::V4,
            laddr: ip(1),
            lport,
            raddr,
            rport,
            netns: 7,
        },
        inode,
        uid: 0,
        recv_q: 0,
        send_q: 0,
        timer: None,
        tcp: None,
        keepalive: None,
        owner: (inode != 0).then(server),
    }
}

fn listener(port: u16, queue: u32, backlog: u32) -> SockInfo {
    SockInfo {
        recv_q: queue,
        send_q: backlog,
        ..sock(
            TcpState::Listen,
            port,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            0,
            1,
        )
    }
}

fn sysctls() -> Sysctls {
    Sysctls {
        netns: 7,
        tcp_syn_retries: 6,
        tcp_syn_linear_timeouts: Some(4),
        tcp_synack_retries: 5,
        tcp_retries2: 15,
        tcp_keepalive_time: 7200,
        tcp_keepalive_intvl: 75,
        tcp_keepalive_probes: 9,
        tcp_tw_reuse: 2,
        somaxconn: 4096,
        tcp_max_syn_backlog: 2048,
        ip_local_port_range: (40_000, 40_099),
        tcp_fin_timeout: 60,
        tcp_syncookies: 1,
        tcp_abort_on_overflow: 0,
        tcp_rto_max_ms: None,
    }
}

fn tables(sockets: Vec<SockInfo>) -> Tables {
    Tables {
        sockets,
        sysctls: Some(sysctls()),
        fds: Vec::new(),
    }
}

fn counters(ts_s: u64, overflows: u64) -> Counters {
    let mut c = Counters {
        ts_ns: ts_s * 1_000_000_000,
        netns: 7,
        ..Counters::default()
    };
    c.values[Counter::ListenOverflows as usize] = Some(overflows);
    c.values[Counter::ListenDrops as usize] = Some(overflows);
    c
}

/// Every playbook's findings over a 10 s session between `first` and
/// `last`, with `overflows` ListenOverflows in it.
fn examine(first: Vec<SockInfo>, last: Vec<SockInfo>, overflows: u64) -> Vec<Finding> {
    let engine = Engine::new(Config::default());
    let (t0, t1) = (tables(first), tables(last));
    let (c0, c1) = (counters(100, 0), counters(110, overflows));
    let cx = context();
    let scene = Scene {
        engine: &engine,
        now_ns: c1.ts_ns,
        duration_s: 10.0,
        first: Some(&c0),
        last: Some(&c1),
        tables_first: Some(&t0),
        tables_last: Some(&t1),
        cx: &cx,
        wan: false,
    };
    all(Default::default())
        .iter()
        .flat_map(|b| b.examine(&scene))
        .collect()
}

/// A listener with a few connections waiting, a few TIME_WAITs toward
/// one destination, one CLOSE_WAIT caught between EOF and close().
fn normal_life() -> Vec<SockInfo> {
    let mut v = vec![listener(80, 3, 4096)];
    v.extend((0..5).map(|i| sock(TcpState::TimeWait, 40_000 + i, ip(9), 5432, 0)));
    v.push(sock(TcpState::CloseWait, 80, ip(3), 50_000, 77));
    v.push(sock(TcpState::Established, 80, ip(3), 50_001, 78));
    v
}

#[test]
fn normal_life_gives_no_finding() {
    assert_eq!(examine(normal_life(), normal_life(), 0), []);
    // A CLOSE_WAIT that came and went between the snapshots, and one new
    // at the end: none is known to be old.
    let mut last = normal_life();
    last.retain(|s| s.state != TcpState::CloseWait);
    last.push(sock(TcpState::CloseWait, 80, ip(3), 50_002, 79));
    assert_eq!(examine(normal_life(), last, 0), []);
}

#[test]
fn close_wait_sockets_there_all_along_are_a_leak() {
    let leak: Vec<SockInfo> = (0..6)
        .map(|i| {
            sock(
                TcpState::CloseWait,
                80,
                ip(3),
                51_000 + i,
                100 + u64::from(i),
            )
        })
        .collect();
    let mut first = normal_life();
    first.extend(leak[..5].iter().copied());
    let mut last = normal_life();
    last.extend(leak.iter().copied());
    let f = examine(first, last, 0);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (f[0].playbook, f[0].severity),
        (Playbook::CloseWaitLeak, Severity::Warning)
    );
    // 5 there all along (at least the session, 10 s), 1 new (age unknown:
    // no engine flow): 5 stuck, the line, plus normal life's 1.
    assert!(
        f[0].summary
            .contains("7 in CLOSE_WAIT on port 80, oldest at least 10 s"),
        "{}",
        f[0].summary
    );
    assert_eq!(f[0].subjects[0].pid, Some(42));
    assert_eq!(f[0].subjects[0].lport, Some(80));
}

#[test]
fn a_full_accept_queue_with_drops_is_an_overflow() {
    let mut last = normal_life();
    last[0] = listener(80, 5, 4);
    // Drops and a full queue: the listener is named.
    let f = examine(normal_life(), last.clone(), 7);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (f[0].playbook, f[0].severity),
        (Playbook::ListenOverflow, Severity::Warning)
    );
    assert_eq!(f[0].subjects[0].lport, Some(80));
    // Many drops: critical.
    assert_eq!(
        examine(normal_life(), last, 50)[0].severity,
        Severity::Critical
    );
    // Drops and no queue seen full: the fullest listener is the suspect.
    let f = examine(normal_life(), normal_life(), 2);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].playbook, Playbook::ListenOverflow);
}

#[test]
fn half_the_ephemeral_range_toward_one_destination_is_exhaustion() {
    // 100 ports in the range; 60 held toward 10.0.0.9:5432.
    let mut last = normal_life();
    last.extend((5..60).map(|i| sock(TcpState::TimeWait, 40_000 + i, ip(9), 5432, 0)));
    let f = examine(normal_life(), last.clone(), 0);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (f[0].playbook, f[0].severity),
        (Playbook::PortExhaustion, Severity::Warning)
    );
    assert_eq!(f[0].subjects[0].rport, Some(5432));
    // Ports outside the range (bound explicitly) do not count.
    let mut outside = normal_life();
    outside.extend((0..60).map(|i| sock(TcpState::TimeWait, 30_000 + i, ip(9), 5432, 0)));
    assert_eq!(examine(normal_life(), outside, 0), []);
}
