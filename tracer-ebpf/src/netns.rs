//! The network namespace of a socket (or of the device a segment came in
//! on), as the inode number `/proc/<pid>/ns/net` shows: every event
//! carries it, so that the same tuple in two namespaces is two flows.
//!
//! match-struct: struct sock { struct sock_common __sk_common; ... }
//! match-struct: struct sock_common { ... possible_net_t skc_net; ... }
//! match-struct: typedef struct { struct net *net; } possible_net_t;
//! match-struct: struct net { ... struct ns_common ns; ... }
//! match-struct: struct ns_common { ... unsigned int inum; ... }
//! match-struct: struct sk_buff { ... struct net_device *dev; ... }
//! match-struct: struct net_device { ... possible_net_t nd_net; ... }
//! Offsets resolved from this kernel's BTF by user space
//! (`tracer::hooks::netns_offsets`); a kernel without them gets
//! [`NetnsOffsets::ABSENT`] and every event carries 0.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use tracer_common::{KERNEL_OFFSET_MASK, NO_OFFSET, NetnsOffsets, WireEvent};

use crate::{emit::Skip, global::Global};

#[unsafe(no_mangle)]
static NETNS_OFF: Global<NetnsOffsets> = Global::new(NetnsOffsets::ABSENT);

#[inline(always)]
fn read<T>(base: u64, off: u32) -> Result<T, Skip> {
    // SAFETY: checked read of kernel memory.
    unsafe { bpf_probe_read_kernel((base + u64::from(off & KERNEL_OFFSET_MASK)) as *const T) }
        .map_err(|_| Skip::Unreadable)
}

/// The inode of a `struct net *`.
#[inline(always)]
fn inum(net: u64, off: &NetnsOffsets) -> Result<u32, Skip> {
    if net == 0 {
        return Err(Skip::Unreadable);
    }
    read::<u32>(net, off.net_inum)
}

/// The namespace of socket `sk`: 0 when this kernel's BTF did not say
/// where it is; unreadable when the read fails.
#[inline(always)]
pub fn of_sock(sk: u64) -> Result<u32, Skip> {
    let off = NETNS_OFF.load();
    if off.sk_net == NO_OFFSET || off.net_inum == NO_OFFSET || sk == 0 {
        return Ok(0);
    }
    inum(read::<u64>(sk, off.sk_net)?, &off)
}

/// [`of_sock`] for a socket pointer the verifier knows by its BTF type
/// (the BTF state program's argument): plain loads, no helper call. The
/// offsets are constants to the verifier (a read-only global), which checks
/// each load against the types and turns a faulting one into a zero.
#[inline(always)]
pub fn of_btf_sock(sk: *const u8) -> Result<u32, Skip> {
    let off = NETNS_OFF.load();
    if off.sk_net == NO_OFFSET || off.net_inum == NO_OFFSET || sk.is_null() {
        return Ok(0);
    }
    // SAFETY: see above; `sk` is the tracepoint's `struct sock *`.
    let net = unsafe {
        core::ptr::read_volatile(
            sk.add((off.sk_net & KERNEL_OFFSET_MASK) as usize) as *const *const u8
        )
    };
    if net.is_null() {
        return Err(Skip::Unreadable);
    }
    // SAFETY: `net` is a `struct net *` loaded from the socket.
    Ok(unsafe {
        core::ptr::read_volatile(net.add((off.net_inum & KERNEL_OFFSET_MASK) as usize) as *const u32)
    })
}

/// The namespace of the device `skb` came in on (a reset sent for a
/// segment that matched no socket): 0 when unknown, as [`of_sock`].
#[inline(always)]
pub fn of_skb(skb: u64) -> Result<u32, Skip> {
    let off = NETNS_OFF.load();
    if off.skb_dev == NO_OFFSET || off.dev_net == NO_OFFSET || off.net_inum == NO_OFFSET || skb == 0
    {
        return Ok(0);
    }
    let dev = read::<u64>(skb, off.skb_dev)?;
    if dev == 0 {
        return Err(Skip::Unreadable);
    }
    inum(read::<u64>(dev, off.dev_net)?, &off)
}

/// Puts the namespace `found` into `ev` (0 when it could not be read, which
/// is passed on so that the program counts it as unreadable after sending
/// the event anyway).
#[inline(always)]
pub fn set(ev: &mut WireEvent, found: Result<u32, Skip>) -> Result<(), Skip> {
    ev.netns = *found.as_ref().unwrap_or(&0);
    found.map(drop)
}
