//! The TCP socket tables of a network namespace as the kernel's
//! NETLINK_SOCK_DIAG interface gives them (what `ss` reads), for `tcptrace
//! doctor`: every TCP socket, IPv4 and IPv6, with its queues, the timer it
//! has armed and when that fires, what `tcp_info` says about idle time,
//! RTT and retransmits, and the process holding it. Unlike
//! `/proc/net/tcp`, listeners come with the backlog the application
//! asked for (as capped by `net.core.somaxconn`), so an accept queue can
//! be told full or not.
//!
//! One [`snapshot`] is one dump of the tables: the doctor takes one when
//! it starts watching and one when it stops, and compares.

mod netlink;

use std::collections::HashSet;

use anyhow::Result;

use crate::event::{Owner, TcpState, Tuple};

/// One TCP socket, as the kernel described it at the time of the dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockInfo {
    /// The kernel's state. A connection that is still only a request
    /// (SYN received, SYN-ACK sent, not yet accepted by the handshake's
    /// last ACK) is `NewSynRecv`, which `ss` shows as `SYN-RECV`.
    pub state: TcpState,
    /// Addresses and ports as the kernel keeps them (an IPv4 peer of a
    /// dual-stack IPv6 socket is `::ffff:a.b.c.d`), and the namespace.
    pub tuple: Tuple,
    /// The socket's inode (`socket:[N]` in `/proc/PID/fd`); 0 for TIME_WAIT
    /// and request sockets, which no process holds.
    pub inode: u64,
    /// The owner's user id.
    pub uid: u32,
    /// Bytes received and not yet read by the application; for a
    /// listener, connections waiting in its accept queue (see
    /// [`Self::accept_queue`]). `ss`'s `Recv-Q`.
    pub recv_q: u32,
    /// Bytes sent and not yet acknowledged by the peer; for a listener,
    /// the backlog (see [`Self::backlog`]). `ss`'s `Send-Q`.
    pub send_q: u32,
    /// The timer the socket has armed, if any.
    pub timer: Option<Timer>,
    /// What `tcp_info` says; absent for TIME_WAIT and request sockets.
    pub tcp: Option<TcpInfo>,
    /// Whether the socket has `SO_KEEPALIVE` set, where the kernel says it:
    /// an ESTABLISHED socket arms its keepalive timer exactly when it has
    /// the option, unless a retransmit or zero-window probe timer (which
    /// take precedence in the dump) is armed instead. `None` where that
    /// cannot be told (other states, another timer armed).
    pub keepalive: Option<bool>,
    /// The process holding the socket, from `/proc/PID/fd` (`None` for
    /// sockets no process holds, or whose holder we may not see).
    pub owner: Option<Owner>,
}

impl SockInfo {
    /// For a listener, the connections waiting to be accepted
    /// (`sk_ack_backlog`).
    pub fn accept_queue(&self) -> Option<u32> {
        (self.state == TcpState::Listen).then_some(self.recv_q)
    }

    /// For a listener, the backlog the application passed to `listen()` as
    /// capped by `net.core.somaxconn` (`sk_max_ack_backlog`): the accept
    /// queue overflows when it holds more than this.
    pub fn backlog(&self) -> Option<u32> {
        (self.state == TcpState::Listen).then_some(self.send_q)
    }
}

/// What a socket's armed timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// Retransmission (also the loss probe and RACK's reordering timer,
    /// and a request socket's SYN-ACK retransmission).
    Retransmit,
    /// Keepalive (or an orphan's FIN_WAIT2 timeout: same kernel timer).
    Keepalive,
    /// The end of TIME_WAIT.
    TimeWait,
    /// Zero-window probe (the peer advertises no room).
    Probe,
}

impl TimerKind {
    /// The name `ss -o` gives it: `on`, `keepalive`, `timewait`, `persist`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Retransmit => "on",
            Self::Keepalive => "keepalive",
            Self::TimeWait => "timewait",
            Self::Probe => "persist",
        }
    }
}

/// A socket's armed timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    pub kind: TimerKind,
    /// Milliseconds until it fires (0 if it is due).
    pub expires_ms: u32,
    /// Retransmissions so far for `Retransmit` (`icsk_retransmits`, a
    /// request's SYN-ACKs sent again); probes sent without an answer for
    /// `Keepalive` and `Probe`; 0 for `TimeWait`. `ss -o`'s last figure.
    pub count: u8,
}

/// The part of the kernel's `struct tcp_info` the doctor uses. Every field
/// here has been in the structure since Linux 2.6, at fixed offsets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// Milliseconds since data was last received (idle time).
    pub last_data_recv_ms: u32,
    /// Milliseconds since data was last sent.
    pub last_data_sent_ms: u32,
    /// Milliseconds since an acknowledgement was last received.
    pub last_ack_recv_ms: u32,
    /// Smoothed round-trip time and its variation, microseconds.
    pub rtt_us: u32,
    pub rttvar_us: u32,
    /// The retransmission timeout now, microseconds.
    pub rto_us: u32,
    /// Retransmission timeouts in a row, now (0 once acknowledged).
    pub retransmits: u8,
    /// Unanswered zero-window or keepalive probes.
    pub probes: u8,
    /// The exponential backoff of the RTO now.
    pub backoff: u8,
    /// Segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// Segments sent and not yet acknowledged (a listener: its accept
    /// queue).
    pub unacked: u32,
    /// Segments thought lost.
    pub lost: u32,
}

/// Every TCP socket (IPv4 and IPv6, all states, request sockets included)
/// of the network namespace `netns` names (as `--netns` takes it: a path
/// such as `/run/netns/NAME`, a process id, or an inode; `None`: ours),
/// with the processes holding them. Another namespace needs
/// `CAP_SYS_ADMIN`; our own needs no privilege (owners are then only
/// found among the processes we may look into).
pub fn snapshot(netns: Option<&str>) -> Result<Vec<SockInfo>> {
    let mut socks = crate::counters::netns::run_in(netns, netlink::dump)?;
    let inodes: HashSet<u64> = socks.iter().map(|s| s.inode).filter(|&i| i != 0).collect();
    let owners = crate::procnet::holders(|i| inodes.contains(&i));
    for s in &mut socks {
        s.owner = owners.get(&s.inode).copied();
    }
    Ok(socks)
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::{TcpListener, TcpStream},
        time::Duration,
    };

    use super::*;

    /// Root-free, in our own namespace: a listener with a connection it
    /// has not accepted, one it has, and unread bytes on the latter.
    #[test]
    fn sees_our_own_sockets() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut a = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut b, _) = l.accept().unwrap();
        let _waiting = TcpStream::connect(("127.0.0.1", port)).unwrap();
        a.write_all(b"hello").unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut one = [0u8; 1];
        b.read_exact(&mut one).unwrap(); // the other 4 bytes stay queued
        let socks = snapshot(None).unwrap();
        let me = std::process::id();
        let listener = socks
            .iter()
            .find(|s| s.state == TcpState::Listen && s.tuple.lport == port)
            .expect("our listener");
        assert_eq!(listener.accept_queue(), Some(1));
        // std's listen() asks for 128; somaxconn (4096 by default) allows it.
        assert_eq!(listener.backlog(), Some(128));
        assert_eq!(listener.owner.map(|o| o.pid), Some(me));
        assert_ne!(listener.inode, 0);
        let server = socks
            .iter()
            .find(|s| {
                s.state == TcpState::Established
                    && s.tuple.lport == port
                    && s.tuple.rport == a.local_addr().unwrap().port()
            })
            .expect("the accepted socket");
        assert_eq!(server.recv_q, 4);
        assert_eq!(server.owner.map(|o| o.pid), Some(me));
        assert_eq!(server.keepalive, Some(false));
        assert_eq!(
            server.tuple.netns,
            crate::counters::netns::own_inode().unwrap()
        );
        let info = server.tcp.expect("tcp_info of an established socket");
        assert!(info.rtt_us > 0, "{info:?}");
        assert!(server.accept_queue().is_none() && server.backlog().is_none());
    }
}
