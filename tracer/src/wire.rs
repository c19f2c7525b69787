//! Decoding of kernel wire records into [`Event`]s: validation of kinds and
//! states, address families (including IPv4 stored as v4-mapped IPv6 by
//! kernels whose tracepoints lack `family`), comm, and the kind of a
//! retransmit from the socket's congestion state ([`retrans_kind`]).
//! Kinds are numbered as in the binary recording frames
//! (`tracer_common::kind`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;
use tracer_common::{AF_INET, AF_INET6, NO_REASON, WireEvent, cong, hook, kind};

use crate::event::{CgroupId, Comm, Event, EventKind, Family, Owner, RetransKind, TcpState, Tuple};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes, expected {expected}", expected = size_of::<WireEvent>())]
    Size(usize),
    #[error("unknown event kind {0}")]
    Kind(u8),
    #[error("unknown TCP state {0}")]
    State(u8),
    #[error("unknown address family {0}")]
    Family(u8),
}

/// Reads a wire record from the bytes of a ring-buffer item.
pub fn read_record(bytes: &[u8]) -> Result<WireEvent, DecodeError> {
    if bytes.len() != size_of::<WireEvent>() {
        return Err(DecodeError::Size(bytes.len()));
    }
    // SAFETY: length checked; WireEvent is plain old data, any bit pattern is
    // valid; read_unaligned copes with the ring's 8-byte alignment or less.
    Ok(unsafe { bytes.as_ptr().cast::<WireEvent>().read_unaligned() })
}

/// Validates and converts one record.
pub fn decode(w: &WireEvent) -> Result<Event, DecodeError> {
    let (family, laddr, raddr) = addresses(w)?;
    let state = |s: u8| TcpState::try_from(s).map_err(DecodeError::State);
    let kind = match w.kind {
        kind::STATE => EventKind::State {
            old: state(w.old_state)?,
            new: state(w.state)?,
        },
        kind::RETRANS => {
            let st = state(w.state)?;
            EventKind::Retrans {
                state: st,
                kind: retrans_kind(w.hook, st, w.cong),
                // 0: unknown.
                segs: (w.segs > 0).then_some(w.segs),
                failed: (w.errno != 0).then_some(i32::from(w.errno)),
            }
        }
        kind::CONNECT_ERROR => EventKind::ConnectError {
            errno: i32::from(w.errno),
        },
        kind::RESET_SENT => EventKind::ResetSent {
            state: TcpState::try_from(w.state).ok(),
            reason: (w.reason != NO_REASON).then_some(u32::from(w.reason)),
        },
        kind::RESET_RECV => EventKind::ResetRecv,
        kind::SOCK_ERROR => EventKind::SockError {
            errno: i32::from(w.errno),
        },
        k => return Err(DecodeError::Kind(k)),
    };
    Ok(Event {
        ts_ns: w.ts_ns,
        sock: w.skaddr,
        tuple: Tuple {
            family,
            laddr,
            lport: w.sport,
            raddr,
            rport: w.dport,
            netns: w.netns,
        },
        task: Owner {
            pid: w.pid,
            comm: Comm::from_bytes(&w.comm),
            cgroup: CgroupId::new(w.cgroup),
        },
        kind,
    })
}

/// Why a buffer was sent again, from the program that saw it, the TCP
/// state and the congestion state ([`cong`]) when the kernel sent it:
///
/// - a SYN-ACK (`tcp_retransmit_synack`), or a SYN (SYN_SENT);
/// - Loss state: `rto`. The retransmission timer puts the socket there
///   (`tcp_enter_loss`) before it resends the head, and the slow-start
///   retransmits that follow (TcpExt TCPSlowStartRetrans) stay in it;
/// - Open or CWR with the loss-probe timer pending: `tlp`.
///   `tcp_send_loss_probe` runs from that timer, only in those states,
///   and clears `icsk_pending` only after the probe is sent;
/// - any other state (Recovery, Disorder, CWR, Open): `fast`, as the
///   kernel counts them in TCPFastRetrans (every retransmit outside Loss
///   that `tcp_xmit_retransmit_queue` sends);
/// - congestion state unknown: `data`.
pub fn retrans_kind(hook: u8, state: TcpState, c: u8) -> RetransKind {
    if hook == hook::RETRANSMIT_SYNACK {
        return RetransKind::SynAck;
    }
    if state == TcpState::SynSent {
        return RetransKind::Syn;
    }
    if c & cong::KNOWN == 0 {
        return RetransKind::Data;
    }
    match c & cong::STATE {
        cong::LOSS => RetransKind::Rto,
        cong::OPEN | cong::CWR if c & cong::LOSS_PROBE != 0 => RetransKind::Tlp,
        _ => RetransKind::Fast,
    }
}

fn addresses(w: &WireEvent) -> Result<(Family, IpAddr, IpAddr), DecodeError> {
    let v4 = |a: &[u8; 16]| IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]));
    let v6 = |a: &[u8; 16]| Ipv6Addr::from(*a);
    match u16::from(w.family) {
        AF_INET => Ok((Family::V4, v4(&w.saddr), v4(&w.daddr))),
        AF_INET6 => Ok((
            Family::V6,
            IpAddr::V6(v6(&w.saddr)),
            IpAddr::V6(v6(&w.daddr)),
        )),
        // The kernel did not say: IPv4 arrives v4-mapped in the v6 fields.
        0 => {
            let (s, d) = (v6(&w.saddr), v6(&w.daddr));
            match (s.to_ipv4_mapped(), d.to_ipv4_mapped()) {
                (Some(s), Some(d)) => Ok((Family::V4, IpAddr::V4(s), IpAddr::V4(d))),
                _ => Ok((Family::V6, IpAddr::V6(s), IpAddr::V6(d))),
            }
        }
        _ => Err(DecodeError::Family(w.family)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, family: u8) -> WireEvent {
        WireEvent {
            ts_ns: 42,
            skaddr: 0xffff_8880_1234_5678,
            cgroup: 7781,
            comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
            saddr: [0; 16],
            daddr: [0; 16],
            pid: 1234,
            netns: 4026531833,
            sport: 43210,
            dport: 443,
            segs: 0,
            errno: 0,
            reason: 0,
            kind,
            hook: match kind {
                kind::STATE => hook::STATE,
                kind::RETRANS => hook::RETRANSMIT_SKB,
                kind::RESET_SENT => hook::SEND_RESET,
                kind::RESET_RECV => hook::RECEIVE_RESET,
                kind::SOCK_ERROR => hook::ERROR_REPORT,
                _ => hook::CONNECT_EXIT,
            },
            family,
            old_state: 7,
            state: 2,
            cong: 0,
        }
    }

    /// A SYN-ACK retransmit record, as `tcp_retransmit_synack` sends it.
    fn synack() -> WireEvent {
        let mut w = record(kind::RETRANS, 2);
        w.hook = hook::RETRANSMIT_SYNACK;
        w.state = 3;
        w.segs = 1;
        w
    }

    #[test]
    fn decodes_ipv4_state_change() {
        let mut w = record(kind::STATE, 2);
        w.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        w.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let e = decode(&w).unwrap();
        assert_eq!(e.tuple.family, Family::V4);
        assert_eq!(e.tuple.laddr.to_string(), "10.0.0.1");
        assert_eq!(e.tuple.raddr.to_string(), "10.0.0.2");
        assert_eq!((e.tuple.lport, e.tuple.rport), (43210, 443));
        assert_eq!(e.tuple.netns, 4026531833);
        assert_eq!(e.task.pid, 1234);
        assert_eq!(e.task.cgroup.get(), 7781);
        assert_eq!(e.task.comm.as_str(), "curl");
        assert_eq!(
            e.kind,
            EventKind::State {
                old: TcpState::Close,
                new: TcpState::SynSent
            }
        );
    }

    #[test]
    fn decodes_ipv6_and_v4_mapped_without_family() {
        let mut w = record(kind::RETRANS, 10);
        w.saddr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        w.daddr = Ipv6Addr::LOCALHOST.octets();
        w.state = 1;
        w.segs = 0;
        let e = decode(&w).unwrap();
        assert_eq!(e.tuple.family, Family::V6);
        assert_eq!(e.tuple.laddr.to_string(), "2001:db8::1");
        assert_eq!(e.tuple.raddr.to_string(), "::1");
        assert!(matches!(
            e.kind,
            EventKind::Retrans {
                kind: RetransKind::Data,
                state: TcpState::Established,
                segs: None,
                failed: None,
            }
        ));

        // An older kernel without `family`: IPv4 arrives v4-mapped.
        w.family = 0;
        w.saddr = Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped().octets();
        w.daddr = Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets();
        let e = decode(&w).unwrap();
        assert_eq!(e.tuple.family, Family::V4);
        assert_eq!(e.tuple.laddr.to_string(), "192.0.2.1");
        assert_eq!(e.tuple.raddr.to_string(), "127.0.0.1");
    }

    #[test]
    fn syn_retransmit_is_told_by_state() {
        let w = record(kind::RETRANS, 2); // state 2 = SYN_SENT
        let e = decode(&w).unwrap();
        assert!(matches!(
            e.kind,
            EventKind::Retrans {
                kind: RetransKind::Syn,
                ..
            }
        ));
        let e = decode(&synack()).unwrap();
        assert!(matches!(
            e.kind,
            EventKind::Retrans {
                kind: RetransKind::SynAck,
                ..
            }
        ));
    }

    #[test]
    fn retransmit_kind_from_the_congestion_state() {
        let kind_of = |state: u8, c: u8| {
            let mut w = record(kind::RETRANS, 2);
            w.state = state;
            w.cong = c;
            match decode(&w).unwrap().kind {
                EventKind::Retrans { kind, .. } => kind,
                k => panic!("{k:?}"),
            }
        };
        let known = cong::KNOWN;
        let probe = cong::KNOWN | cong::LOSS_PROBE;
        assert_eq!(kind_of(1, 0), RetransKind::Data, "unknown");
        assert_eq!(kind_of(1, known | cong::LOSS), RetransKind::Rto);
        assert_eq!(kind_of(4, probe | cong::LOSS), RetransKind::Rto);
        assert_eq!(kind_of(1, known | cong::RECOVERY), RetransKind::Fast);
        assert_eq!(kind_of(1, probe | cong::RECOVERY), RetransKind::Fast);
        assert_eq!(kind_of(1, known | cong::DISORDER), RetransKind::Fast);
        assert_eq!(kind_of(1, known | cong::CWR), RetransKind::Fast);
        assert_eq!(kind_of(1, known | cong::OPEN), RetransKind::Fast);
        assert_eq!(kind_of(1, probe | cong::OPEN), RetransKind::Tlp);
        assert_eq!(kind_of(8, probe | cong::CWR), RetransKind::Tlp);
        // SYN_SENT: a SYN whatever the congestion state (Loss, after the
        // SYN's RTO).
        assert_eq!(kind_of(2, known | cong::LOSS), RetransKind::Syn);
        let mut w = synack();
        w.cong = known | cong::LOSS;
        assert!(matches!(
            decode(&w).unwrap().kind,
            EventKind::Retrans {
                kind: RetransKind::SynAck,
                ..
            }
        ));
    }

    #[test]
    fn failed_retransmits_carry_their_error() {
        // As 6.17+ sends a failed attempt: err -16 (EBUSY) made positive.
        let mut w = record(kind::RETRANS, 2);
        w.state = 1;
        w.segs = 1;
        w.errno = 16;
        w.cong = cong::KNOWN | cong::RECOVERY;
        assert_eq!(
            decode(&w).unwrap().kind,
            EventKind::Retrans {
                state: TcpState::Established,
                kind: RetransKind::Fast,
                segs: Some(1),
                failed: Some(16),
            }
        );
        w.errno = 0;
        assert!(matches!(
            decode(&w).unwrap().kind,
            EventKind::Retrans { failed: None, .. }
        ));
    }

    #[test]
    fn retransmit_segment_counts() {
        let mut w = record(kind::RETRANS, 2);
        w.state = 1;
        w.segs = 2;
        assert!(matches!(
            decode(&w).unwrap().kind,
            EventKind::Retrans { segs: Some(2), .. }
        ));
        assert!(matches!(
            decode(&synack()).unwrap().kind,
            EventKind::Retrans { segs: Some(1), .. }
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(read_record(&[0; 10]), Err(DecodeError::Size(10)));
        assert_eq!(decode(&record(99, 2)), Err(DecodeError::Kind(99)));
        let mut w = record(kind::STATE, 2);
        w.state = 40;
        assert_eq!(decode(&w), Err(DecodeError::State(40)));
        assert_eq!(decode(&record(kind::STATE, 7)), Err(DecodeError::Family(7)));
    }

    #[test]
    fn resets_and_errors() {
        let mut w = record(kind::RESET_SENT, 2);
        w.state = 0;
        w.reason = 1;
        assert_eq!(
            decode(&w).unwrap().kind,
            EventKind::ResetSent {
                state: None,
                reason: Some(1)
            }
        );
        w.state = 1;
        w.reason = NO_REASON;
        assert_eq!(
            decode(&w).unwrap().kind,
            EventKind::ResetSent {
                state: Some(TcpState::Established),
                reason: None
            }
        );
        assert_eq!(
            decode(&record(kind::RESET_RECV, 2)).unwrap().kind,
            EventKind::ResetRecv
        );
        let mut w = record(kind::SOCK_ERROR, 10);
        w.errno = 111;
        assert_eq!(
            decode(&w).unwrap().kind,
            EventKind::SockError { errno: 111 }
        );
    }

    #[test]
    fn connect_error_is_positive_errno() {
        let mut w = record(kind::CONNECT_ERROR, 2);
        w.errno = 111;
        assert_eq!(
            decode(&w).unwrap().kind,
            EventKind::ConnectError { errno: 111 }
        );
    }

    #[test]
    fn round_trips_through_bytes() {
        let w = record(kind::STATE, 2);
        // SAFETY: WireEvent is plain old data.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&w as *const WireEvent).cast::<u8>(),
                size_of::<WireEvent>(),
            )
        };
        assert_eq!(read_record(bytes).unwrap(), w);
    }
}
