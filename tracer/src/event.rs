//! The typed, validated events that everything after decoding works on.
//!
//! Built from wire records by [`crate::wire`]; owned, `Copy`, with addresses
//! as `IpAddr`. Nothing past this point knows about kernel layouts.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// TCP states, numbered as the kernel numbers them (`include/net/tcp_states.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    NewSynRecv = 12,
}

impl TcpState {
    pub const ALL: [TcpState; 12] = [
        Self::Established,
        Self::SynSent,
        Self::SynRecv,
        Self::FinWait1,
        Self::FinWait2,
        Self::TimeWait,
        Self::Close,
        Self::CloseWait,
        Self::LastAck,
        Self::Listen,
        Self::Closing,
        Self::NewSynRecv,
    ];

    /// The kernel's name without the `TCP_` prefix, e.g. `SYN_SENT`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Established => "ESTABLISHED",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait1 => "FIN_WAIT1",
            Self::FinWait2 => "FIN_WAIT2",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::Listen => "LISTEN",
            Self::Closing => "CLOSING",
            Self::NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

impl TryFrom<u8> for TcpState {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        Self::ALL
            .get((v as usize).wrapping_sub(1))
            .copied()
            .ok_or(v)
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// IP version of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The JSON spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::V4 => "ipv4",
            Self::V6 => "ipv6",
        }
    }
}

/// A flow as seen from the local socket, in its network namespace: the
/// same addresses and ports in two namespaces are two flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tuple {
    pub family: Family,
    pub laddr: IpAddr,
    pub lport: u16,
    pub raddr: IpAddr,
    pub rport: u16,
    /// The socket's network namespace: its inode number, as
    /// `/proc/<pid>/ns/net` shows it. 0 when unknown (a kernel whose BTF
    /// does not say where it is, an event that names no socket, a
    /// recording made before tcptrace read it).
    #[serde(default)]
    pub netns: u32,
}

impl Tuple {
    /// Whether `self` and `other` can be the same flow: equal, or equal
    /// but for a namespace one of them does not know (0; an error report
    /// names no socket, so it never knows).
    pub fn same_flow(&self, other: &Tuple) -> bool {
        self == other
            || ((self.netns == 0 || other.netns == 0)
                && Tuple { netns: 0, ..*self } == Tuple { netns: 0, ..*other })
    }

    /// The flow as IPv4 when it is an IPv4 connection on an IPv6 socket
    /// (a dual-stack `[::]` listener's accepted sockets, a v6 socket
    /// connecting to `::ffff:a.b.c.d`): both addresses v4-mapped (or one
    /// of them unspecified). Filters and output take flows this way, so
    /// `-4` shows them and addresses read `a.b.c.d`; the engine keeps the
    /// kernel's form, which its listeners are filed under.
    pub fn unmapped(&self) -> Tuple {
        let (IpAddr::V6(l), IpAddr::V6(r)) = (self.laddr, self.raddr) else {
            return *self;
        };
        let v4 = |a: Ipv6Addr| {
            a.to_ipv4_mapped()
                .or_else(|| a.is_unspecified().then_some(Ipv4Addr::UNSPECIFIED))
        };
        match (v4(l), v4(r)) {
            (Some(l4), Some(r4)) if !(l.is_unspecified() && r.is_unspecified()) => Tuple {
                family: Family::V4,
                laddr: IpAddr::V4(l4),
                raddr: IpAddr::V4(r4),
                ..*self
            },
            _ => *self,
        }
    }

    pub fn unspecified(family: Family) -> IpAddr {
        match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

/// A task's command name (`comm`), at most 15 bytes; stored inline so that
/// decoding allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Comm([u8; 16]);

impl Comm {
    pub fn from_bytes(raw: &[u8]) -> Self {
        let mut b = [0u8; 16];
        let n = raw
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(raw.len())
            .min(15);
        b[..n].copy_from_slice(&raw[..n]);
        Self(b)
    }

    /// The 16 bytes as the kernel gave them, NUL-padded.
    pub fn raw(&self) -> &[u8; 16] {
        &self.0
    }

    /// The name's bytes, without the NUL padding.
    pub fn bytes(&self) -> &[u8] {
        let n = self.0.iter().position(|&c| c == 0).unwrap_or(16);
        &self.0[..n]
    }

    /// Lossy UTF-8 text of the name.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.bytes())
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.as_str())
    }
}

impl Serialize for Comm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_str())
    }
}

impl<'de> Deserialize<'de> for Comm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::from_bytes(s.as_bytes()))
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

pub use crate::cgroups::CgroupId;

/// The process a socket belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub comm: Comm,
    /// The id of the process's cgroup in the unified (v2) hierarchy (the
    /// inode number of its directory); 0 when unknown (a recording from
    /// before tcptrace read it). Its path comes through
    /// [`crate::pipeline::Input::Cgroup`].
    #[serde(default, skip_serializing_if = "CgroupId::is_unknown")]
    pub cgroup: CgroupId,
}

/// What kind of segment was sent again, and why. Told apart by the
/// socket's congestion state when the kernel retransmitted (see
/// [`crate::wire`]); `Data` only where that could not be read (a
/// recording made before tcptrace read it, a kernel whose BTF lacks it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetransKind {
    /// Data or FIN on an open connection, why unknown.
    Data,
    /// The client's SYN.
    Syn,
    /// The server's SYN-ACK.
    SynAck,
    /// Data or FIN sent in the Loss state: the retransmission timer fired
    /// (the peer or the path was silent for a whole RTO), and the
    /// slow-start retransmits that follow it.
    Rto,
    /// Data or FIN sent in fast recovery (Recovery, Disorder, CWR): loss
    /// told by duplicate ACKs or SACKs while the connection keeps going.
    Fast,
    /// A tail-loss probe: the last segment sent again because the tail of
    /// the flight went unacknowledged for about two RTTs.
    Tlp,
}

impl RetransKind {
    pub const ALL: [RetransKind; 6] = [
        Self::Data,
        Self::Syn,
        Self::SynAck,
        Self::Rto,
        Self::Fast,
        Self::Tlp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Syn => "syn",
            Self::SynAck => "synack",
            Self::Rto => "rto",
            Self::Fast => "fast",
            Self::Tlp => "tlp",
        }
    }

    /// The kind named `name` (as [`Self::name`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The socket moved from `old` to `new`.
    State { old: TcpState, new: TcpState },
    /// A segment was retransmitted while the socket was in `state`. `segs`
    /// is how many segments the retransmitted buffer held (what the kernel
    /// adds to RetransSegs); `None` when this kernel did not let us read it.
    /// `failed` is the error (positive errno) of an attempt that sent
    /// nothing (Linux 6.17+: EBUSY, EAGAIN, EHOSTUNREACH, ENOMEM...); such
    /// an attempt is no retransmitted segment.
    Retrans {
        state: TcpState,
        kind: RetransKind,
        segs: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failed: Option<i32>,
    },
    /// `connect()` failed with this errno (positive); the tuple's remote side
    /// is the destination asked for, its local side unknown.
    ConnectError { errno: i32 },
    /// We sent a RST. `sock` is 0 when no socket matched the segment
    /// answered (a closed port); `state` is the socket's, when there is one;
    /// `reason` is the kernel's `enum sk_rst_reason` value, when it has one.
    ResetSent {
        state: Option<TcpState>,
        reason: Option<u32>,
    },
    /// A RST arrived for the socket.
    ResetRecv,
    /// The kernel reported an error to the socket's owner (positive errno:
    /// ECONNREFUSED, ETIMEDOUT, ...). `sock` is 0: match by tuple.
    SockError { errno: i32 },
}

/// One decoded event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds, from the kernel.
    pub ts_ns: u64,
    /// Identity of the kernel socket (its address); 0 when unknown.
    pub sock: u64,
    pub tuple: Tuple,
    /// The task on the CPU when the event fired. It owns the socket only in
    /// process context (connect, listen); see [`crate::engine::owners`].
    pub task: Owner,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Converts kernel CLOCK_MONOTONIC timestamps (every event's time) to
/// wall-clock time; the sinks format it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    /// Wall-clock nanoseconds since the epoch at monotonic zero.
    offset_ns: i128,
}

impl Clock {
    /// Reads both clocks now.
    pub fn now() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let mono = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        Self {
            offset_ns: wall - mono,
        }
    }

    /// A clock whose monotonic zero is the epoch plus `offset_ns` (replay, tests).
    pub fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Wall-clock nanoseconds at monotonic zero.
    pub fn offset_ns(&self) -> i128 {
        self.offset_ns
    }

    /// Current CLOCK_MONOTONIC in nanoseconds.
    pub fn monotonic_now() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    pub fn wall(&self, mono_ns: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.wall_ns(mono_ns))
    }

    /// Wall-clock nanoseconds since the epoch.
    pub fn wall_ns(&self, mono_ns: u64) -> u64 {
        (mono_ns as i128 + self.offset_ns).clamp(0, u64::MAX as i128) as u64
    }
}

/// The kernel's name of an errno (`ECONNREFUSED`), or `errno N`.
pub fn errno_name(n: i32) -> String {
    let e = nix::errno::Errno::from_raw(n);
    if e == nix::errno::Errno::UnknownErrno {
        format!("errno {n}")
    } else {
        format!("{e:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(l: &str, r: &str) -> Tuple {
        Tuple {
            family: Family::V6,
            laddr: l.parse().unwrap(),
            lport: 8080,
            raddr: r.parse().unwrap(),
            rport: 40000,
            netns: 7,
        }
    }

    #[test]
    fn v4_mapped_flows_are_ipv4() {
        let u = t("::ffff:127.0.0.1", "::ffff:10.0.0.2").unmapped();
        assert_eq!(u.family, Family::V4);
        assert_eq!(
            (u.laddr.to_string(), u.raddr.to_string(), u.lport, u.netns),
            ("127.0.0.1".into(), "10.0.0.2".into(), 8080, 7)
        );
        // A v6 socket connecting to a v4-mapped address, before its bind.
        let u = t("::", "::ffff:10.0.0.2").unmapped();
        assert_eq!(
            (u.family, u.laddr.to_string()),
            (Family::V4, "0.0.0.0".into())
        );
        // A dual-stack listener, and real IPv6, stay IPv6.
        for (l, r) in [
            ("::", "::"),
            ("::1", "::1"),
            ("::ffff:1.2.3.4", "2001:db8::1"),
        ] {
            assert_eq!(t(l, r).unmapped(), t(l, r), "{l} {r}");
        }
    }
}
