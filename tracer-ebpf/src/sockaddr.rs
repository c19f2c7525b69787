//! The one reader of `struct sockaddr_in` / `sockaddr_in6`, whether it sits
//! in a tracepoint record (`tcp_send_reset`), in kernel memory (the
//! `tcp_v{4,6}_connect` argument) or in the caller's memory (`connect()`'s
//! argument).

use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_user};
use tracer_common::{AF_INET, AF_INET6};

use crate::emit::{Skip, addr_v4, addr_words};

/// Bytes read: a `sockaddr_in6` up to its address, family(2) port(2)
/// flowinfo(4) addr(16). A `sockaddr_in` is 16 bytes; the rest is read but
/// unused for AF_INET.
pub type Raw = [u8; 24];

/// An inet socket address.
pub struct SockAddr {
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    /// Network byte order; IPv4 in the first four bytes.
    pub addr: [u8; 16],
}

/// Parses raw bytes; [`Skip::Unwanted`] for a family other than inet
/// (a `connect()` on a Unix socket, say).
#[inline(always)]
pub fn parse(raw: &Raw) -> Result<SockAddr, Skip> {
    let family = u16::from_ne_bytes([raw[0], raw[1]]);
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    let word = |at: usize| {
        u64::from_ne_bytes([
            raw[at],
            raw[at + 1],
            raw[at + 2],
            raw[at + 3],
            raw[at + 4],
            raw[at + 5],
            raw[at + 6],
            raw[at + 7],
        ])
    };
    let addr = match family {
        AF_INET => addr_v4([raw[4], raw[5], raw[6], raw[7]]),
        AF_INET6 => addr_words([word(8), word(16)]),
        _ => return Err(Skip::Unwanted),
    };
    Ok(SockAddr { family, port, addr })
}

/// Reads and parses a sockaddr in kernel memory.
#[inline(always)]
pub fn kernel(addr: u64) -> Result<SockAddr, Skip> {
    // SAFETY: checked read of kernel memory.
    let raw = unsafe { bpf_probe_read_kernel(addr as *const Raw) }.map_err(|_| Skip::Unreadable)?;
    parse(&raw)
}

/// Reads and parses a sockaddr in the current task's memory.
#[inline(always)]
pub fn user(addr: u64) -> Result<SockAddr, Skip> {
    // SAFETY: checked read of user memory.
    let raw = unsafe { bpf_probe_read_user(addr as *const Raw) }.map_err(|_| Skip::Unreadable)?;
    parse(&raw)
}
