//! One dump of the TCP tables over NETLINK_SOCK_DIAG (`inet_diag`), and
//! the decoding of each answer into a [`SockInfo`]. The framing and the
//! fixed header come from `netlink-packet-sock-diag`; two things it does
//! not keep are read from the message itself, at offsets the kernel's UAPI
//! fixes: the time left in TIME_WAIT (the crate keeps only that the timer
//! is armed) and the few `tcp_info` fields we use (its full parser wants
//! the whole structure of recent kernels and fails on shorter ones).

use anyhow::{Context as _, Result, anyhow, bail};
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, IPPROTO_TCP, SockDiagMessage,
    inet::{
        ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags, Timer as Raw, nlas::Nla,
    },
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use super::{SockInfo, TcpInfo, Timer, TimerKind};
use crate::event::{Family, TcpState, Tuple};

/// Every state, request sockets (`TCP_NEW_SYN_RECV`, 12) included.
const ALL_STATES: u32 = (1 << 13) - 1;
/// `struct nlmsghdr`.
const NLMSG_HDR: usize = 16;
/// `idiag_expires` in `struct inet_diag_msg`: family, state, timer,
/// retrans (4 bytes), then `struct inet_diag_sockid` (48).
const EXPIRES_AT: usize = 4 + 48;

/// Dumps the TCP sockets of the calling thread's network namespace (inode
/// `netns`), without owners.
pub(super) fn dump(netns: u32) -> Result<Vec<SockInfo>> {
    let mut socket =
        Socket::new(NETLINK_SOCK_DIAG).context("opening a NETLINK_SOCK_DIAG socket")?;
    socket.bind_auto().context("binding the sock_diag socket")?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .context("connecting the sock_diag socket")?;
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        request(&socket, family)?;
        receive(&socket, netns, &mut out)?;
    }
    Ok(out)
}

fn request(socket: &Socket, family: u8) -> Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::INFO,
            states: StateFlags::from_bits_retain(ALL_STATES),
            socket_id: if family == AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket
        .send(&buf, 0)
        .context("sending the sock_diag request")?;
    Ok(())
}

/// Reads the answers to one dump request until the kernel says it is done.
fn receive(socket: &Socket, netns: u32, out: &mut Vec<SockInfo>) -> Result<()> {
    // The kernel fills datagrams of up to 32 KiB for a dump (more only if
    // we offered a larger buffer before): one always fits.
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        let n = socket
            .recv(&mut buf, 0)
            .context("reading the sock_diag answer")?;
        if n == 0 {
            bail!("the sock_diag socket closed before the dump was done");
        }
        let mut at = 0;
        while at + NLMSG_HDR <= buf.len() {
            let bytes = &buf[at..];
            let msg = NetlinkMessage::<SockDiagMessage>::deserialize(bytes)
                .map_err(|e| anyhow!("a sock_diag answer does not parse: {e}"))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => {
                    return Err(e.to_io()).context("the kernel refused the sock_diag dump");
                }
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    out.extend(decode(&r, &bytes[NLMSG_HDR..len.min(bytes.len())], netns));
                }
                _ => {}
            }
            if len < NLMSG_HDR {
                bail!("a sock_diag answer has a length of {len}");
            }
            at += len.next_multiple_of(4);
        }
    }
}

/// One answer: `r` as the crate parsed it, `raw` the same message's
/// payload (for what the crate does not keep). `None` for a state this
/// program does not know.
pub(super) fn decode(r: &InetResponse, raw: &[u8], netns: u32) -> Option<SockInfo> {
    let h = &r.header;
    let state = TcpState::try_from(h.state).ok()?;
    let family = if h.family == AF_INET6 {
        Family::V6
    } else {
        Family::V4
    };
    let id = &h.socket_id;
    let tuple = Tuple {
        family,
        laddr: id.source_address,
        lport: id.source_port,
        raddr: id.destination_address,
        rport: id.destination_port,
        netns,
    };
    let timer = h.timer.as_ref().map(|t| match *t {
        Raw::Retransmit(d, n) => Timer {
            kind: TimerKind::Retransmit,
            expires_ms: millis(d),
            count: n,
        },
        Raw::KeepAlive(d) => Timer {
            kind: TimerKind::Keepalive,
            expires_ms: millis(d),
            count: retrans_byte(raw),
        },
        Raw::TimeWait => Timer {
            kind: TimerKind::TimeWait,
            expires_ms: raw
                .get(EXPIRES_AT..EXPIRES_AT + 4)
                .map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap_or_default())),
            count: 0,
        },
        Raw::Probe(d) => Timer {
            kind: TimerKind::Probe,
            expires_ms: millis(d),
            count: retrans_byte(raw),
        },
    });
    let tcp = r.nlas.iter().find_map(|n| match n {
        Nla::TcpInfo(b) => tcp_info(b),
        _ => None,
    });
    let keepalive = (state == TcpState::Established)
        .then_some(timer.map(|t| t.kind))
        .and_then(|k| match k {
            None => Some(false),
            Some(TimerKind::Keepalive) => Some(true),
            Some(_) => None,
        });
    Some(SockInfo {
        state,
        tuple,
        inode: u64::from(h.inode),
        uid: h.uid,
        recv_q: h.recv_queue,
        send_q: h.send_queue,
        timer,
        tcp,
        keepalive,
        owner: None,
    })
}

fn millis(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// `idiag_retrans`, which the crate keeps only for the retransmit timer.
fn retrans_byte(raw: &[u8]) -> u8 {
    raw.get(3).copied().unwrap_or(0)
}

/// The fields of `struct tcp_info` (`include/uapi/linux/tcp.h`) we use;
/// `None` if the kernel sent less than the structure of Linux 2.6.
pub(super) fn tcp_info(b: &[u8]) -> Option<TcpInfo> {
    let u8_at = |i: usize| b.get(i).copied();
    let u32_at = |i: usize| Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?));
    Some(TcpInfo {
        retransmits: u8_at(2)?,
        probes: u8_at(3)?,
        backoff: u8_at(4)?,
        rto_us: u32_at(8)?,
        unacked: u32_at(24)?,
        lost: u32_at(32)?,
        last_data_sent_ms: u32_at(44)?,
        last_data_recv_ms: u32_at(52)?,
        last_ack_recv_ms: u32_at(56)?,
        rtt_us: u32_at(68)?,
        rttvar_us: u32_at(72)?,
        total_retrans: u32_at(100)?,
    })
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::Emitable as _;
    use netlink_packet_sock_diag::inet::InetResponseHeader;

    use super::*;

    fn response(state: u8, timer: Option<Raw>, nlas: Vec<Nla>) -> (InetResponse, Vec<u8>) {
        let mut socket_id = SocketId::new_v4();
        socket_id.source_port = 8080;
        socket_id.destination_port = 40000;
        socket_id.source_address = "127.0.0.1".parse().unwrap();
        socket_id.destination_address = std::net::Ipv4Addr::UNSPECIFIED.into();
        let r = InetResponse {
            header: InetResponseHeader {
                family: AF_INET,
                state,
                timer,
                socket_id,
                recv_queue: 5,
                send_queue: 3,
                uid: 1000,
                inode: 4242,
            },
            nlas: nlas.into_iter().collect(),
        };
        let mut raw = vec![0; r.buffer_len()];
        r.emit(&mut raw);
        (r, raw)
    }

    #[test]
    fn decodes_a_listener() {
        let (r, raw) = response(10, None, vec![]);
        let s = decode(&r, &raw, 7).unwrap();
        assert_eq!(s.state, TcpState::Listen);
        assert_eq!((s.accept_queue(), s.backlog()), (Some(5), Some(3)));
        assert_eq!(
            (s.tuple.lport, s.tuple.rport, s.tuple.netns),
            (8080, 40000, 7)
        );
        assert_eq!(
            (s.inode, s.uid, s.timer, s.keepalive),
            (4242, 1000, None, None)
        );
    }

    #[test]
    fn decodes_timers_and_keepalive() {
        let ms = std::time::Duration::from_millis;
        let (r, raw) = response(1, Some(Raw::KeepAlive(ms(7_199_000))), vec![]);
        let s = decode(&r, &raw, 0).unwrap();
        assert_eq!(
            s.timer,
            Some(Timer {
                kind: TimerKind::Keepalive,
                expires_ms: 7_199_000,
                count: 0
            })
        );
        assert_eq!(s.keepalive, Some(true));
        let (r, raw) = response(1, Some(Raw::Retransmit(ms(200), 2)), vec![]);
        let s = decode(&r, &raw, 0).unwrap();
        assert_eq!(
            s.timer.map(|t| (t.kind, t.expires_ms, t.count)),
            Some((TimerKind::Retransmit, 200, 2))
        );
        assert_eq!(s.keepalive, None);
        let (r, raw) = response(1, None, vec![]);
        assert_eq!(decode(&r, &raw, 0).unwrap().keepalive, Some(false));
        // TIME_WAIT's time left is read from the message itself.
        let (r, mut raw) = response(6, Some(Raw::TimeWait), vec![]);
        raw[EXPIRES_AT..EXPIRES_AT + 4].copy_from_slice(&59_000u32.to_ne_bytes());
        let s = decode(&r, &raw, 0).unwrap();
        assert_eq!(
            s.timer.map(|t| (t.kind, t.expires_ms)),
            Some((TimerKind::TimeWait, 59_000))
        );
        // A state this program does not know is left out.
        let (r, raw) = response(13, None, vec![]);
        assert!(decode(&r, &raw, 0).is_none());
    }

    #[test]
    fn reads_tcp_info_fields_at_their_offsets() {
        let mut b = vec![0u8; 104];
        b[2] = 3; // retransmits
        b[4] = 2; // backoff
        let put =
            |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        put(&mut b, 8, 1_600_000); // rto
        put(&mut b, 44, 10); // last_data_sent
        put(&mut b, 52, 2_345); // last_data_recv
        put(&mut b, 68, 31); // rtt
        put(&mut b, 100, 9); // total_retrans
        let (r, raw) = response(1, None, vec![Nla::TcpInfo(b.clone())]);
        let t = decode(&r, &raw, 0).unwrap().tcp.unwrap();
        assert_eq!(
            (t.retransmits, t.backoff, t.rto_us, t.last_data_sent_ms),
            (3, 2, 1_600_000, 10)
        );
        assert_eq!(
            (t.last_data_recv_ms, t.rtt_us, t.total_retrans),
            (2_345, 31, 9)
        );
        assert!(tcp_info(&b[..100]).is_none());
    }
}
