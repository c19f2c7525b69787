//! A flow's fields read from the `struct sock *` a BTF tracepoint hands
//! its program, as the classic tracepoints' `TP_fast_assign` fills them:
//! family = sk->sk_family, sport = ntohs(inet->inet_sport),
//! dport = ntohs(inet->inet_dport), saddr/daddr = inet->inet_saddr /
//! inet_daddr (skc_rcv_saddr/skc_daddr), saddr_v6/daddr_v6 =
//! sk->sk_v6_rcv_saddr/sk_v6_daddr. The fields are plain loads: the
//! verifier knows the socket's type from BTF, and the offsets, from
//! `SOCK_OFF` (a read-only global user space fills from the kernel's
//! BTF), are constants to it. User space loads the BTF programs only when
//! it found them all.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use tracer_common::{AF_INET, KERNEL_OFFSET_MASK, SockOffsets, WireEvent};

use crate::{
    emit::{Skip, addr_v4, addr_words, bare_event},
    global::Global,
};

#[unsafe(no_mangle)]
static SOCK_OFF: Global<SockOffsets> = Global::new(SockOffsets::ABSENT);

/// The offsets of the socket's fields.
#[inline(always)]
pub fn offsets() -> SockOffsets {
    SOCK_OFF.load()
}

/// A `T` at `off` bytes into `base`, a pointer the verifier knows by its
/// BTF type: a load it checks against that type (a fault reads as zero).
#[inline(always)]
pub fn at<T>(base: *const u8, off: u32) -> T {
    // SAFETY: `base` is a tracepoint's BTF-typed argument (or a pointer
    // loaded from one); the verifier checks the access against its BTF
    // type and turns a faulting load into a zero.
    unsafe { core::ptr::read_volatile(base.add((off & KERNEL_OFFSET_MASK) as usize) as *const T) }
}

/// This event's socket in two words: its address pair (`skc_addrpair`)
/// and its port pair (`skc_portpair`) in the high half of the second,
/// for [`crate::nested`]; the caller puts what happened in the low half.
/// Not the socket's address: the verifier does not let a program compare
/// a pointer it was handed with a number.
#[inline(always)]
pub fn hit(sk: *const u8, what: u32) -> [u64; 2] {
    let o = offsets();
    [
        at::<u64>(sk, o.daddr),
        (u64::from(at::<u32>(sk, o.dport)) << 32) | u64::from(what),
    ]
}

/// The source port, destination port and family, host order.
/// `inet_sk(sk)->inet_sport` lies past `struct sock` (in the `struct
/// inet_sock` around it), where the verifier's BTF check of `sk` does not
/// reach: read through the helper.
#[inline(always)]
pub fn ports(sk: *const u8) -> Result<(u16, u16, u16), Skip> {
    let o = offsets();
    // SAFETY: a checked read of kernel memory.
    let sport = unsafe {
        bpf_probe_read_kernel(sk.add((o.sport & KERNEL_OFFSET_MASK) as usize) as *const u16)
    }
    .map_err(|_| Skip::Unreadable)?;
    Ok((
        u16::from_be(sport),
        u16::from_be(at::<u16>(sk, o.dport)),
        at::<u16>(sk, o.family),
    ))
}

/// A record of `kind` from `hook` with the flow's ports, family and
/// addresses (addresses in network order, copied as words).
#[inline(always)]
pub fn flow_event(
    sk: *const u8,
    (sport, dport, family): (u16, u16, u16),
    kind: u8,
    hook: u8,
) -> WireEvent {
    let o = offsets();
    let mut ev = bare_event(kind, hook);
    ev.sport = sport;
    ev.dport = dport;
    ev.family = family as u8;
    if family == AF_INET {
        ev.saddr = addr_v4(at::<u32>(sk, o.saddr).to_ne_bytes());
        ev.daddr = addr_v4(at::<u32>(sk, o.daddr).to_ne_bytes());
    } else {
        ev.saddr = addr_words([at(sk, o.saddr_v6), at(sk, o.saddr_v6 + 8)]);
        ev.daddr = addr_words([at(sk, o.daddr_v6), at(sk, o.daddr_v6 + 8)]);
    }
    ev
}

/// [`ports`] and [`flow_event`] for any socket the kernel may hand a
/// tracepoint: a timewait or request socket (TIME_WAIT, NEW_SYN_RECV) has
/// only the `sock_common` part, so its local port is `skc_num`, not
/// `inet_sport` (the same port, host order).
#[inline(always)]
pub fn any_flow_event(sk: *const u8, state: u8, kind: u8, hook: u8) -> Result<WireEvent, Skip> {
    const TCP_TIME_WAIT: u8 = 6;
    const TCP_NEW_SYN_RECV: u8 = 12;
    let o = offsets();
    let flow = if state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV {
        (
            at::<u16>(sk, o.num),
            u16::from_be(at::<u16>(sk, o.dport)),
            at::<u16>(sk, o.family),
        )
    } else {
        ports(sk)?
    };
    Ok(flow_event(sk, flow, kind, hook))
}
