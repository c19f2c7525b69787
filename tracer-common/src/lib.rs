//! Wire records shared by tcptrace's kernel programs (`tracer-ebpf`) and its
//! user space (`tracer`).
//!
//! Everything here is `#[repr(C)]`, fixed-size, without `bool` or hidden
//! padding, and its size is asserted at compile time so both sides agree on
//! the layout. These are transport records, not output types: user space
//! validates them into `tracer::event::Event` before anything else sees them.
#![no_std]

/// `AF_INET` as the kernel spells it.
pub const AF_INET: u16 = 2;
/// `AF_INET6` as the kernel spells it.
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;

/// What happened: the kind of a [`WireEvent`], numbered as the kind byte of
/// the binary recording frames (`tracer::record::frame`), which are on disk
/// and so fix these values.
pub mod kind {
    /// `sock:inet_sock_set_state` for a TCP socket.
    pub const STATE: u8 = 1;
    /// A retransmitted segment (`tcp:tcp_retransmit_skb`: data, FIN or SYN)
    /// or SYN-ACK (`tcp:tcp_retransmit_synack`); `WireEvent::hook` tells
    /// which.
    pub const RETRANS: u8 = 2;
    /// `tcp:tcp_send_reset`: we sent a RST (`skaddr` 0 when no socket).
    pub const RESET_SENT: u8 = 3;
    /// `tcp:tcp_receive_reset`: a RST arrived for a socket.
    pub const RESET_RECV: u8 = 4;
    /// `sock:inet_sk_error_report` for a TCP socket (no socket identity).
    pub const SOCK_ERROR: u8 = 5;
    /// A `connect()` on an inet socket failed (any hook of the connect plan).
    pub const CONNECT_ERROR: u8 = 6;
}

/// Which kernel program fired: one id per program, the `id` column of
/// the hook table (`tracer::hooks::HOOKS`). Carried in
/// [`WireEvent::hook`] and used as the index of the per-hook
/// [`names::UNREADABLE`] counters.
pub mod hook {
    pub const STATE: u8 = 0;
    pub const RETRANSMIT_SKB: u8 = 1;
    pub const RETRANSMIT_SYNACK: u8 = 2;
    pub const SEND_RESET: u8 = 3;
    pub const RECEIVE_RESET: u8 = 4;
    pub const ERROR_REPORT: u8 = 5;
    pub const PROBE: u8 = 6;
    pub const CONNECT_ENTER: u8 = 7;
    pub const CONNECT_EXIT: u8 = 8;
    pub const FEXIT_V4_CONNECT: u8 = 9;
    pub const FEXIT_V6_CONNECT: u8 = 10;
    pub const KPROBE_CONNECT: u8 = 11;
    pub const KRETPROBE_CONNECT: u8 = 12;
    /// Entries of the per-hook counters (room for a few more hooks).
    pub const SLOTS: u32 = 16;
}

/// [`WireEvent::reason`] when the kernel gave no reset reason (its
/// `enum sk_rst_reason` has a few dozen values).
pub const NO_REASON: u16 = u16::MAX;

/// One event from the kernel, as it crosses the ring buffer.
///
/// Every field has one meaning; a field that does not apply to a kind is
/// zero. Addresses are in network byte order (IPv4 in the first four
/// bytes, the rest zero); ports are in host byte order, as the tracepoints
/// store them; the rest is in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Kernel address of the `struct sock`, used only as an identity; 0 when
    /// unknown (a connect seen only through the syscall hooks that failed
    /// before the socket reached SYN_SENT, a reset sent for no socket).
    pub skaddr: u64,
    /// `bpf_get_current_cgroup_id()` when the event fired: the id of the
    /// task's cgroup in the unified (v2) hierarchy, the inode number of
    /// its directory there. Meaningful only in process context, as `pid`.
    pub cgroup: u64,
    /// `bpf_get_current_comm()` when the event fired, NUL-padded.
    pub comm: [u8; 16],
    /// Local address.
    pub saddr: [u8; 16],
    /// Remote address.
    pub daddr: [u8; 16],
    /// Process id (tgid, the high half of `bpf_get_current_pid_tgid()`)
    /// when the event fired. Meaningful only in process context.
    pub pid: u32,
    /// The socket's network namespace: the inode number of its `struct
    /// net` (`sk->__sk_common.skc_net.net->ns.inum`, what
    /// `/proc/<pid>/ns/net` shows), read through [`NetnsOffsets`]; for a
    /// reset sent for no socket, that of the device the segment came in
    /// on. 0 when unknown: this kernel's BTF lacks the members, the read
    /// failed, or the record names no socket (SOCK_ERROR).
    pub netns: u32,
    /// Local port, host byte order.
    pub sport: u16,
    /// Remote port, host byte order.
    pub dport: u16,
    /// RETRANS: segments in the retransmitted skb (what the kernel adds to
    /// RetransSegs), 0 when unknown; 1 for a SYN-ACK.
    pub segs: u16,
    /// CONNECT_ERROR, SOCK_ERROR: the error, a positive errno (the
    /// kernel's are below 4096). RETRANS: 0, or the error of a failed
    /// attempt (`err` of `tcp_retransmit_skb`, Linux 6.17+), positive.
    pub errno: u16,
    /// RESET_SENT: the kernel's reset reason (`enum sk_rst_reason`), or
    /// [`NO_REASON`] when the kernel has none (before 6.10). STATE:
    /// [`FROM_NESTED`] when the second state program sent it.
    pub reason: u16,
    /// One of [`kind`].
    pub kind: u8,
    /// The program that sent it, one of [`hook`].
    pub hook: u8,
    /// `AF_INET`/`AF_INET6` truncated to a byte; 0 when the kernel did not say.
    pub family: u8,
    /// STATE: the state the socket left.
    pub old_state: u8,
    /// The socket's TCP state when the event fired (STATE: the state it
    /// entered; RETRANS, RESET_SENT: its state then, 0 when unknown).
    pub state: u8,
    /// RETRANS from `tcp_retransmit_skb`: the socket's congestion state
    /// when it fired, packed as [`cong`] says; 0 when unknown, and for
    /// every other kind.
    pub cong: u8,
}

const _: () = assert!(core::mem::size_of::<WireEvent>() == 96);
const _: () = assert!(core::mem::align_of::<WireEvent>() == 8);

mod offsets;
mod rtt;

pub use offsets::*;
pub use rtt::*;

/// Load-time pre-filter applied in the kernel to cut volume. It is a
/// superset of what the user asked for; user space applies the exact filter.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFilter {
    /// 0 for any, else `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// How many of `ports` are in use; 0 means any port.
    pub nports: u16,
    /// An event passes if its local or remote port is one of these.
    /// Transitions into or out of LISTEN always pass (they are rare and
    /// needed to attribute accepted sockets).
    pub ports: [u16; 4],
    /// State transitions are sent only if bit `newstate` is set; 0 sends
    /// all. Views that need transitions only to know owners (retransmits,
    /// resets) skip the rest, which in a connection storm is most of them.
    pub state_mask: u16,
    pub _pad: u16,
}

const _: () = assert!(core::mem::size_of::<KernelFilter>() == 16);

impl KernelFilter {
    pub const ANY: Self = Self {
        family: 0,
        nports: 0,
        ports: [0; 4],
        state_mask: 0,
        _pad: 0,
    };
}

/// `reason` of a state record the second BTF state program sent (a
/// transition the first was skipped for; rarely, one it had sent: user
/// space drops such a repeat).
pub const FROM_NESTED: u16 = 1;

/// Slots in the kernel's array of event rings (one per CPU id): the most
/// CPUs tcptrace can run on. User space sets the array's real size to the
/// host's possible CPUs at load, and refuses a host with more.
pub const MAX_CPUS: usize = 4096;

/// `bpf_ringbuf_query` flags, and `bpf_ringbuf_submit` flags.
pub mod ringbuf {
    pub const BPF_RB_NO_WAKEUP: u64 = 1;
    pub const BPF_RB_FORCE_WAKEUP: u64 = 2;
    pub const BPF_RB_AVAIL_DATA: u64 = 0;
}

/// Names of maps and globals, shared so neither side can misspell them.
pub mod names {
    pub const EVENTS: &str = "EVENTS";
    pub const RING_BYTES: &str = "RING_BYTES";
    pub const LOST: &str = "LOST";
    pub const UNREADABLE: &str = "UNREADABLE";
    pub const CONNECTS: &str = "CONNECTS";
    pub const FILTER: &str = "FILTER";
    pub const STATE_TP: &str = "STATE_TP";
    pub const RETRANS_TP: &str = "RETRANS_TP";
    pub const SYNACK_TP: &str = "SYNACK_TP";
    pub const CONNECT_ENTER_TP: &str = "CONNECT_ENTER_TP";
    pub const CONNECT_EXIT_TP: &str = "CONNECT_EXIT_TP";
    pub const SKB_SEGS_OFF: &str = "SKB_SEGS_OFF";
    pub const NETNS_OFF: &str = "NETNS_OFF";
    pub const SOCK_OFF: &str = "SOCK_OFF";
    pub const RETRANS_ARGS: &str = "RETRANS_ARGS";
    pub const RESET_ARGS: &str = "RESET_ARGS";
    pub const PROBE_ARGS: &str = "PROBE_ARGS";
    pub const CONG_OFF: &str = "CONG_OFF";
    pub const PIDNS: &str = "PIDNS";
    pub const SEND_RESET_TP: &str = "SEND_RESET_TP";
    pub const RECV_RESET_TP: &str = "RECV_RESET_TP";
    pub const ERROR_TP: &str = "ERROR_TP";
    pub const PROBE_TP: &str = "PROBE_TP";
    pub const RTT: &str = "RTT";
    pub const RTT_ON: &str = "RTT_ON";
    pub const RTT_SOCKS: &str = "RTT_SOCKS";
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers and arrays, no padding (sizes asserted above).
    unsafe impl aya::Pod for super::WireEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TpOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelFilter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::NetnsOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PidNs {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RetransArgs {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ResetArgs {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProbeArgs {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CongOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RttHist {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_slots() {
        assert_eq!(log2_slot(0, RTT_SLOTS), 0);
        assert_eq!(log2_slot(1, RTT_SLOTS), 1);
        assert_eq!(log2_slot(2, RTT_SLOTS), 2);
        assert_eq!(log2_slot(3, RTT_SLOTS), 2);
        assert_eq!(log2_slot(64, RTT_SLOTS), 7);
        assert_eq!(log2_slot(127, RTT_SLOTS), 7);
        assert_eq!(log2_slot(u64::from(u32::MAX), RTT_SLOTS), RTT_SLOTS - 1);
        assert_eq!(log2_slot(u64::MAX, 64), 63);
        // The bit length, as `leading_zeros` counts it.
        let bits = |v: u64| (64 - v.leading_zeros()) as usize;
        for shift in 0..64 {
            for v in [
                (1u64 << shift) - 1,
                1 << shift,
                (1 << shift) + 1,
                u64::MAX >> shift,
            ] {
                assert_eq!(log2_slot(v, 65), bits(v), "{v}");
                assert_eq!(log2_slot(v, RTT_SLOTS), bits(v).min(RTT_SLOTS - 1), "{v}");
            }
        }
        for v in [0u64, 1, 5, 1000, 1 << 20] {
            let i = log2_slot(v, 64);
            assert!(slot_low(i) <= v && v <= slot_high(i), "{v} in slot {i}");
        }
    }

    #[test]
    fn hook_ids_fit_the_counters() {
        assert!(u32::from(hook::KRETPROBE_CONNECT) < hook::SLOTS);
    }
}
