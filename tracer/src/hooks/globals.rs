//! What the kernel programs are told at load time besides the tracepoint
//! layouts: the pre-filter made from the user's filter and the view's
//! wants, the PID namespace to report pids in, and the offsets of the few
//! kernel struct members they follow (from BTF, bounds-checked here before
//! load), plus the syscall plan's tracepoint offsets.

use tracer_common::{
    CongOffsets, KERNEL_OFFSET_MASK, KernelFilter, NetnsOffsets, SKB_OFFSET_MASK, TpOffsets,
};

use super::{Attach, ConnectPlan, Hook, Wants};
use crate::{btf::Btf, event::Family, filter::Filter, tracefs};

/// The kernel pre-filter for `filter` and a view that `wants` these hooks,
/// made here and nowhere else: a superset of [`Filter::matches`] (the
/// kernel cannot see owners, and listeners always pass so accepted sockets
/// can be attributed), with only the transitions the view needs.
pub fn kernel_filter(filter: &Filter, wants: &Wants) -> KernelFilter {
    let mut k = KernelFilter::ANY;
    // IPv4 connections also come on IPv6 sockets (v4-mapped, a dual-stack
    // `[::]` listener's): `-4` cannot be decided by the socket's family.
    k.family = match filter.family {
        None | Some(Family::V4) => 0,
        Some(Family::V6) => tracer_common::AF_INET6,
    };
    let mut ports: Vec<u16> = [&filter.ports, &filter.lports, &filter.rports]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    ports.sort_unstable();
    ports.dedup();
    // More ports than the kernel's list holds: any port passes there.
    if ports.len() <= k.ports.len() {
        k.ports[..ports.len()].copy_from_slice(&ports);
        k.nports = ports.len() as u16;
    }
    k.state_mask = wants.state_mask();
    k
}

/// The PID namespace tcptrace runs in, for the programs to report pids as
/// it sees them (and as `/proc`, which seeds owners, shows them); zero in
/// the initial namespace, where the kernel's pids are already ours.
pub(super) fn own_pid_namespace() -> tracer_common::PidNs {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self/ns/pid") {
        Ok(m) if m.ino() != tracer_common::INIT_PID_NS_INO => tracer_common::PidNs {
            dev: m.dev(),
            ino: m.ino(),
        },
        _ => tracer_common::PidNs::default(),
    }
}

/// Offset from an skb of `TCP_SKB_CB(skb)->tcp_gso_segs`, from kernel BTF,
/// within what the program can address ([`SKB_OFFSET_MASK`]).
pub(super) fn skb_segs_offset(btf: &Btf) -> Result<u32, String> {
    let cb = btf
        .member_offset("sk_buff", "cb")
        .ok_or("BTF has no sk_buff.cb")?;
    let segs = btf
        .member_offset("tcp_skb_cb", "tcp_gso_segs")
        .ok_or("BTF has no tcp_skb_cb.tcp_gso_segs")?;
    checked_skb_offset(cb + segs)
}

/// `off` if a 2-byte read there stays within [`SKB_OFFSET_MASK`].
fn checked_skb_offset(off: u32) -> Result<u32, String> {
    if off + 2 > SKB_OFFSET_MASK + 1 {
        return Err(format!(
            "tcp_gso_segs at skb+{off} is beyond the {} bytes tcptrace's program can address",
            SKB_OFFSET_MASK + 1
        ));
    }
    Ok(off)
}

/// Where the programs find a socket's (and a device's) network namespace,
/// from kernel BTF: `sk->__sk_common.skc_net.net->ns.inum`, and for a
/// reset sent for no socket `skb->dev->nd_net.net->ns.inum`. The socket
/// chain is required (without it every event's namespace is 0, which is
/// what a kernel without network namespaces would give); the skb chain is
/// optional (such resets then carry 0).
pub fn netns_offsets(btf: &Btf) -> Result<NetnsOffsets, String> {
    let at = |ty: &str, path: &[&str]| -> Result<u32, String> {
        let off = btf
            .member_path_offset(ty, path)
            .ok_or_else(|| format!("BTF has no {ty}.{}", path.join(".")))?;
        checked_kernel_offset(off, ty, path)
    };
    let mut o = NetnsOffsets::ABSENT;
    o.sk_net = at("sock", &["__sk_common", "skc_net", "net"])?;
    o.net_inum = at("net", &["ns", "inum"])?;
    if let (Ok(dev), Ok(net)) = (
        at("sk_buff", &["dev"]),
        at("net_device", &["nd_net", "net"]),
    ) {
        (o.skb_dev, o.dev_net) = (dev, net);
    }
    Ok(o)
}

/// Where the retransmit program reads a socket's congestion state, from
/// kernel BTF: `inet_connection_sock.icsk_ca_state` (a bitfield) and
/// `icsk_pending`, both inside one 4-byte read.
pub fn cong_offsets(btf: &Btf) -> Result<CongOffsets, String> {
    let bits = |m: &str| {
        btf.member_bits("inet_connection_sock", &[m])
            .ok_or_else(|| format!("BTF has no inet_connection_sock.{m}"))
    };
    let (ca, ca_bits) = bits("icsk_ca_state")?;
    let (pending, _) = bits("icsk_pending")?;
    cong_layout(ca, ca_bits, pending)
}

/// [`CongOffsets`] for `icsk_ca_state` at bit `ca` (`ca_bits` wide, 0 if
/// not a bitfield: a byte) and `icsk_pending` at bit `pending`.
fn cong_layout(ca: u32, ca_bits: u32, pending: u32) -> Result<CongOffsets, String> {
    let at = ca / 8;
    let ca_bits = if ca_bits == 0 { 8 } else { ca_bits };
    let (ca_shift, pending_shift) = (ca - at * 8, pending.wrapping_sub(at * 8));
    if !pending.is_multiple_of(8)
        || pending < at * 8
        || pending_shift + 8 > 32
        || ca_shift + ca_bits > 32
    {
        return Err(format!(
            "icsk_ca_state (bit {ca}) and icsk_pending (bit {pending}) are not within 4 bytes"
        ));
    }
    checked_kernel_offset(at, "inet_connection_sock", &["icsk_ca_state"])?;
    Ok(CongOffsets {
        at,
        ca_shift: ca_shift as u8,
        ca_bits: ca_bits as u8,
        pending_shift: pending_shift as u8,
        _pad: 0,
    })
}

/// `off` if an 8-byte read there stays within [`KERNEL_OFFSET_MASK`].
fn checked_kernel_offset(off: u32, ty: &str, path: &[&str]) -> Result<u32, String> {
    if off + 8 > KERNEL_OFFSET_MASK + 1 {
        return Err(format!(
            "{ty}.{} at +{off} is beyond the {} bytes tcptrace's programs can address",
            path.join("."),
            KERNEL_OFFSET_MASK + 1
        ));
    }
    Ok(off)
}

/// Offsets of the syscall plan's tracepoints, by global.
pub(super) fn syscall_offsets(
    root: &std::path::Path,
) -> Result<Vec<(&'static str, TpOffsets)>, String> {
    Hook::of_plan(ConnectPlan::Syscalls)
        .map(|hook| {
            let Attach::Tracepoint {
                group,
                name,
                offsets,
            } = hook.attach
            else {
                return Err(format!("{} is not a tracepoint", hook.program));
            };
            let f = tracefs::read_format(root, group, name).map_err(|e| e.to_string())?;
            let o = hook
                .offsets(&f)
                .map_err(|e| format!("{group}:{name} {e}"))?;
            Ok((offsets, o))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skb_offset_bound() {
        assert_eq!(checked_skb_offset(40 + 4), Ok(44));
        assert_eq!(checked_skb_offset(4094), Ok(4094));
        let e = checked_skb_offset(4095).unwrap_err();
        assert!(e.contains("beyond the 4096 bytes"), "{e}");
    }

    #[test]
    fn netns_offsets_of_this_kernel() {
        let btf = Btf::from_sys_fs().expect("this project's machines have kernel BTF");
        let o = netns_offsets(&btf).unwrap();
        assert!(o.sk_net < 256 && o.net_inum < 1024, "{o:?}");
        assert_ne!(o.skb_dev, tracer_common::NO_OFFSET, "{o:?}");
        assert_ne!(o.dev_net, tracer_common::NO_OFFSET, "{o:?}");
        let e = checked_kernel_offset(65_530, "net", &["ns", "inum"]).unwrap_err();
        assert!(e.contains("net.ns.inum at +65530 is beyond"), "{e}");
    }

    #[test]
    fn congestion_state_offsets() {
        let btf = Btf::from_sys_fs().expect("this project's machines have kernel BTF");
        let o = cong_offsets(&btf).unwrap();
        // 6.1 to 6.18: the bitfield starts a byte, icsk_pending two bytes on.
        assert_eq!(
            (o.ca_shift, o.ca_bits, o.pending_shift),
            (0, 5, 16),
            "{o:?}"
        );
        assert_eq!(
            cong_layout(8 * 100 + 3, 5, 8 * 102),
            Ok(CongOffsets {
                at: 100,
                ca_shift: 3,
                ca_bits: 5,
                pending_shift: 16,
                _pad: 0
            })
        );
        assert!(cong_layout(800, 5, 800 + 64).is_err());
        assert!(cong_layout(800, 5, 700).is_err());
    }

    #[test]
    fn kernel_prefilter_from_the_filter_and_the_wants() {
        let f = Filter {
            ports: vec![80],
            lports: vec![80],
            rports: vec![443],
            family: Some(Family::V6),
            ..Filter::default()
        };
        let k = kernel_filter(&f, &Wants::FLOWS);
        assert_eq!(k.nports, 2);
        assert_eq!(&k.ports[..2], &[80, 443]);
        assert_eq!(k.family, tracer_common::AF_INET6);
        // IPv4 may come on IPv6 sockets; more ports than fit pass all.
        let f = Filter {
            ports: vec![1, 2, 3, 4, 5],
            family: Some(Family::V4),
            ..Filter::default()
        };
        let k = kernel_filter(&f, &Wants::FLOWS);
        assert_eq!((k.family, k.nports), (0, 0));
        assert_eq!(
            kernel_filter(&Filter::default(), &Wants::FLOWS),
            KernelFilter::ANY
        );
        // Owner-only views get the transitions that attribute owners:
        // SYN_SENT=2, SYN_RECV=3, CLOSE=7, LISTEN=10.
        let w = Wants {
            owners_only: true,
            ..Wants::default()
        };
        assert_eq!(
            kernel_filter(&Filter::default(), &w).state_mask,
            (1 << 2) | (1 << 3) | (1 << 7) | (1 << 10)
        );
    }
}
