//! Binary event frames (`tcptrace record --binary`): one event in a fixed
//! [`LEN`]-byte frame instead of a ~250-byte JSON line, so a recording is
//! a third of the size and replays several times faster (no JSON to
//! parse). Everything else in a binary recording (header, RTT snapshots,
//! lost counts) stays a JSON line: a frame starts with [`MARKER`], which
//! no JSON line starts with, so a reader tells them apart by one byte.
//!
//! Layout, little-endian:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 1 | [`MARKER`] |
//! | 1 | 1 | kind: 1 state, 2 retrans, 3 reset sent, 4 reset received, 5 socket error, 6 connect error (`tracer_common::kind`, which the kernel's records share) |
//! | 2 | 1 | family: 4 or 6 |
//! | 3 | 1 | `a`: old state; retransmit state; reset state (0 = none) |
//! | 4 | 1 | `b`: new state; retransmit kind (0 data, 1 SYN, 2 SYN-ACK, 3 RTO, 4 fast, 5 TLP) |
//! | 5 | 1 | flags: bit 0 segs present, bit 1 reason present, bit 2 retransmit failed (errno at 16) |
//! | 6 | 2 | local port |
//! | 8 | 2 | remote port |
//! | 10 | 2 | segs |
//! | 12 | 4 | task pid |
//! | 16 | 4 | errno (also of a failed retransmit), or reset reason |
//! | 20 | 8 | timestamp, CLOCK_MONOTONIC ns |
//! | 28 | 8 | socket |
//! | 36 | 16 | local address (IPv4 in the first 4 bytes) |
//! | 52 | 16 | remote address |
//! | 68 | 16 | task comm, NUL-padded |
//! | 84 | 4 | network namespace inode (0: unknown) |
//! | 88 | 8 | the task's cgroup v2 id (0: unknown) |
//!
//! Format 2 recordings (before the namespace) have 84-byte frames, read
//! with namespace 0; format 3 ones (before the cgroup) 88-byte frames,
//! read with cgroup 0.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;
use tracer_common::kind;

use crate::event::{CgroupId, Comm, Event, EventKind, Family, Owner, RetransKind, TcpState, Tuple};

/// First byte of a frame (never the first byte of a JSON line).
pub const MARKER: u8 = 0xE7;
/// Bytes in a frame, marker included (recording format 4).
pub const LEN: usize = 96;
/// Bytes in a frame of recording format 3, which had no cgroup.
pub const LEN_FORMAT_3: usize = 88;
/// Bytes in a frame of recording format 2, which had no namespace.
pub const LEN_FORMAT_2: usize = 84;

/// Bytes in a frame of a binary recording of `format` (2 to 4).
pub fn len(format: u32) -> usize {
    match format {
        2 => LEN_FORMAT_2,
        3 => LEN_FORMAT_3,
        _ => LEN,
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("not an event frame (first byte {0:#04x})")]
    Marker(u8),
    #[error("unknown event kind {0}")]
    Kind(u8),
    #[error("unknown address family {0}")]
    Family(u8),
    #[error("unknown TCP state {0}")]
    State(u8),
    #[error("unknown retransmit kind {0}")]
    RetransKind(u8),
    #[error("a frame of {0} bytes")]
    Len(usize),
}

/// Appends `ev` as one frame.
pub fn encode(out: &mut Vec<u8>, ev: &Event) {
    let mut f = [0u8; LEN];
    f[0] = MARKER;
    let (k, a, b, flags, segs, val) = match ev.kind {
        EventKind::State { old, new } => (kind::STATE, old as u8, new as u8, 0, 0, 0),
        EventKind::Retrans {
            state,
            kind: k,
            segs,
            failed,
        } => (
            kind::RETRANS,
            state as u8,
            retrans_kind_byte(k),
            u8::from(segs.is_some()) | u8::from(failed.is_some()) << 2,
            segs.unwrap_or(0),
            failed.unwrap_or(0),
        ),
        EventKind::ResetSent { state, reason } => (
            kind::RESET_SENT,
            state.map_or(0, |s| s as u8),
            0,
            u8::from(reason.is_some()) << 1,
            0,
            reason.unwrap_or(0) as i32,
        ),
        EventKind::ResetRecv => (kind::RESET_RECV, 0, 0, 0, 0, 0),
        EventKind::SockError { errno } => (kind::SOCK_ERROR, 0, 0, 0, 0, errno),
        EventKind::ConnectError { errno } => (kind::CONNECT_ERROR, 0, 0, 0, 0, errno),
    };
    let t = &ev.tuple;
    f[1] = k;
    f[2] = match t.family {
        Family::V4 => 4,
        Family::V6 => 6,
    };
    f[3] = a;
    f[4] = b;
    f[5] = flags;
    f[6..8].copy_from_slice(&t.lport.to_le_bytes());
    f[8..10].copy_from_slice(&t.rport.to_le_bytes());
    f[10..12].copy_from_slice(&segs.to_le_bytes());
    f[12..16].copy_from_slice(&ev.task.pid.to_le_bytes());
    f[16..20].copy_from_slice(&val.to_le_bytes());
    f[20..28].copy_from_slice(&ev.ts_ns.to_le_bytes());
    f[28..36].copy_from_slice(&ev.sock.to_le_bytes());
    f[36..52].copy_from_slice(&addr_bytes(t.laddr));
    f[52..68].copy_from_slice(&addr_bytes(t.raddr));
    f[68..84].copy_from_slice(ev.task.comm.raw());
    f[84..88].copy_from_slice(&t.netns.to_le_bytes());
    f[88..96].copy_from_slice(&ev.task.cgroup.get().to_le_bytes());
    out.extend_from_slice(&f);
}

/// The retransmit kind's byte on disk: values are added, never renumbered.
fn retrans_kind_byte(k: RetransKind) -> u8 {
    match k {
        RetransKind::Data => 0,
        RetransKind::Syn => 1,
        RetransKind::SynAck => 2,
        RetransKind::Rto => 3,
        RetransKind::Fast => 4,
        RetransKind::Tlp => 5,
    }
}

fn addr_bytes(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => {
            let mut b = [0; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        IpAddr::V6(a) => a.octets(),
    }
}

fn addr(family: Family, b: &[u8]) -> IpAddr {
    let b: [u8; 16] = b.try_into().expect("16 bytes");
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(b)),
    }
}

fn state(v: u8) -> Result<TcpState, FrameError> {
    TcpState::try_from(v).map_err(FrameError::State)
}

/// Reads one frame: [`LEN`] bytes, or [`LEN_FORMAT_3`] or
/// [`LEN_FORMAT_2`] of an older recording.
pub fn decode(f: &[u8]) -> Result<Event, FrameError> {
    if ![LEN, LEN_FORMAT_3, LEN_FORMAT_2].contains(&f.len()) {
        return Err(FrameError::Len(f.len()));
    }
    if f[0] != MARKER {
        return Err(FrameError::Marker(f[0]));
    }
    let u16_at = |i: usize| u16::from_le_bytes([f[i], f[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(f[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(f[i..i + 8].try_into().expect("8 bytes"));
    let (a, b, flags) = (f[3], f[4], f[5]);
    let val = u32_at(16);
    let kind = match f[1] {
        kind::STATE => EventKind::State {
            old: state(a)?,
            new: state(b)?,
        },
        kind::RETRANS => EventKind::Retrans {
            state: state(a)?,
            kind: RetransKind::ALL
                .into_iter()
                .find(|&k| retrans_kind_byte(k) == b)
                .ok_or(FrameError::RetransKind(b))?,
            segs: (flags & 1 != 0).then(|| u16_at(10)),
            failed: (flags & 4 != 0).then_some(val as i32),
        },
        kind::RESET_SENT => EventKind::ResetSent {
            state: if a == 0 { None } else { Some(state(a)?) },
            reason: (flags & 2 != 0).then_some(val),
        },
        kind::RESET_RECV => EventKind::ResetRecv,
        kind::SOCK_ERROR => EventKind::SockError { errno: val as i32 },
        kind::CONNECT_ERROR => EventKind::ConnectError { errno: val as i32 },
        k => return Err(FrameError::Kind(k)),
    };
    let family = match f[2] {
        4 => Family::V4,
        6 => Family::V6,
        x => return Err(FrameError::Family(x)),
    };
    Ok(Event {
        ts_ns: u64_at(20),
        sock: u64_at(28),
        tuple: Tuple {
            family,
            laddr: addr(family, &f[36..52]),
            lport: u16_at(6),
            raddr: addr(family, &f[52..68]),
            rport: u16_at(8),
            netns: if f.len() >= LEN_FORMAT_3 {
                u32_at(84)
            } else {
                0
            },
        },
        task: Owner {
            pid: u32_at(12),
            comm: Comm::from_bytes(&f[68..84]),
            cgroup: CgroupId::new(if f.len() == LEN { u64_at(88) } else { 0 }),
        },
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::{owner, retrans, state as state_ev, tuple};

    fn round_trip(ev: Event) {
        let mut v = Vec::new();
        encode(&mut v, &ev);
        assert_eq!(v.len(), LEN);
        assert_eq!(decode(&v), Ok(ev));
    }

    #[test]
    fn every_kind_round_trips() {
        use TcpState::*;
        let base = state_ev(
            u64::MAX - 1,
            0xffff_8880_0000_0001,
            tuple(65535, 1),
            owner(4_000_000, "fifteen-chars-x"),
            Close,
            SynSent,
        );
        round_trip(base);
        for k in RetransKind::ALL {
            let mut r = retrans(1, 2, tuple(3, 4), owner(5, "a"), FinWait1, k);
            round_trip(r);
            if let EventKind::Retrans { segs, .. } = &mut r.kind {
                *segs = None;
            }
            round_trip(r);
            if let EventKind::Retrans { failed, .. } = &mut r.kind {
                *failed = Some(16);
            }
            round_trip(r);
        }
        for kind in [
            EventKind::ResetSent {
                state: None,
                reason: None,
            },
            EventKind::ResetSent {
                state: Some(Established),
                reason: Some(u32::MAX),
            },
            EventKind::ResetRecv,
            EventKind::SockError { errno: 111 },
            EventKind::ConnectError { errno: 99 },
        ] {
            round_trip(Event { kind, ..base });
        }
        let mut v6 = base;
        v6.tuple = Tuple {
            family: Family::V6,
            laddr: "fe80::1:2".parse().unwrap(),
            lport: 1,
            raddr: "2001:db8::ff".parse().unwrap(),
            rport: 2,
            netns: u32::MAX,
        };
        round_trip(v6);
        let mut ns = base;
        ns.tuple.netns = 4_026_532_000;
        round_trip(ns);
    }

    #[test]
    fn older_frames_read_with_namespace_and_cgroup_0() {
        let mut ev = retrans(
            1,
            2,
            tuple(3, 4),
            owner(5, "a"),
            TcpState::Established,
            RetransKind::Data,
        );
        ev.tuple.netns = 4_026_532_000;
        ev.task.cgroup = CgroupId::new(0x1_0000_2345);
        let mut v = Vec::new();
        encode(&mut v, &ev);
        assert_eq!(decode(&v).unwrap(), ev);
        assert_eq!(len(2), LEN_FORMAT_2);
        assert_eq!(len(3), LEN_FORMAT_3);
        assert_eq!(len(4), LEN);
        // Older frames are this frame without its last bytes: format 3
        // without the cgroup, format 2 also without the namespace.
        let f3 = decode(&v[..LEN_FORMAT_3]).unwrap();
        ev.task.cgroup = CgroupId::default();
        assert_eq!(f3, ev);
        let old = decode(&v[..LEN_FORMAT_2]).unwrap();
        ev.tuple.netns = 0;
        assert_eq!(old, ev);
        assert_eq!(decode(&v[..80]), Err(FrameError::Len(80)));
    }

    #[test]
    fn kind_bytes_on_disk_stay_put() {
        // Recordings on disk carry these values; the kernel's records share
        // them through tracer_common::kind, which must not renumber them.
        let base = state_ev(
            1,
            2,
            tuple(3, 4),
            owner(5, "a"),
            TcpState::Close,
            TcpState::Listen,
        );
        for (kind, byte) in [
            (base.kind, 1),
            (
                retrans(
                    1,
                    2,
                    tuple(3, 4),
                    owner(5, "a"),
                    TcpState::Close,
                    RetransKind::Data,
                )
                .kind,
                2,
            ),
            (
                EventKind::ResetSent {
                    state: None,
                    reason: None,
                },
                3,
            ),
            (EventKind::ResetRecv, 4),
            (EventKind::SockError { errno: 1 }, 5),
            (EventKind::ConnectError { errno: 1 }, 6),
        ] {
            let mut v = Vec::new();
            encode(&mut v, &Event { kind, ..base });
            assert_eq!(v[1], byte, "{kind:?}");
        }
    }

    #[test]
    fn retransmit_kind_bytes_stay_put() {
        let bytes: Vec<u8> = RetransKind::ALL.map(retrans_kind_byte).to_vec();
        assert_eq!(bytes, [0, 1, 2, 3, 4, 5]);
        let ev = retrans(
            1,
            2,
            tuple(3, 4),
            owner(5, "a"),
            TcpState::Established,
            RetransKind::Data,
        );
        let mut v = Vec::new();
        encode(&mut v, &ev);
        v[4] = 6;
        assert_eq!(decode(&v), Err(FrameError::RetransKind(6)));
        // A frame of before failed attempts: flag bit 2 clear, no error.
        v[4] = 4;
        v[5] = 1;
        assert!(matches!(
            decode(&v).unwrap().kind,
            EventKind::Retrans {
                kind: RetransKind::Fast,
                failed: None,
                ..
            }
        ));
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let mut v = Vec::new();
        encode(
            &mut v,
            &retrans(
                1,
                2,
                tuple(3, 4),
                owner(5, "a"),
                TcpState::Close,
                RetransKind::Data,
            ),
        );
        let mut f = v.clone();
        f[1] = 9;
        assert_eq!(decode(&f), Err(FrameError::Kind(9)));
        f[1] = 2;
        f[3] = 13;
        assert_eq!(decode(&f), Err(FrameError::State(13)));
        f[0] = b'{';
        assert_eq!(decode(&f), Err(FrameError::Marker(b'{')));
    }
}
