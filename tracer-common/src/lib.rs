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
/// the hook table (`tracer::hooks::table::HOOKS`). Carried in
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
    /// [`NO_REASON`] when the kernel has none (before 6.10).
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

/// [`WireEvent::cong`]: the socket's congestion-avoidance state
/// (`inet_csk(sk)->icsk_ca_state`, `enum tcp_ca_state`) and whether the
/// tail-loss-probe timer is the one pending (`icsk_pending`), packed in a
/// byte.
pub mod cong {
    /// Set when the rest was read (the byte is 0 otherwise).
    pub const KNOWN: u8 = 0x80;
    /// `icsk_pending == ICSK_TIME_LOSS_PROBE`: the retransmit is sent from
    /// the loss-probe timer (`tcp_send_loss_probe`) unless the state says
    /// otherwise.
    pub const LOSS_PROBE: u8 = 0x40;
    /// Mask of the `enum tcp_ca_state` value.
    pub const STATE: u8 = 0x07;
    /// `enum tcp_ca_state` (include/net/tcp.h, unchanged since 2.6).
    pub const OPEN: u8 = 0;
    pub const DISORDER: u8 = 1;
    pub const CWR: u8 = 2;
    pub const RECOVERY: u8 = 3;
    pub const LOSS: u8 = 4;
    /// match-define: include/net/inet_connection_sock.h
    /// `#define ICSK_TIME_LOSS_PROBE 5` (since 4.10; 3.10-4.9 had it too).
    pub const ICSK_TIME_LOSS_PROBE: u8 = 5;
}

/// Where the retransmit program finds a socket's congestion state, from
/// the kernel's BTF: a 4-byte read at `sk + at` holds `icsk_ca_state` (a
/// bitfield of `ca_bits` bits from bit `ca_shift`) and `icsk_pending` (a
/// byte from bit `pending_shift`). `at` is [`NO_OFFSET`] when unknown;
/// retransmits then carry `cong` 0 (kind `data`). User space checks that
/// both fit the read; the program keeps the state's low three bits
/// ([`cong::STATE`]), all that its five values use.
///
/// match-struct: struct inet_connection_sock { ... __u8 icsk_ca_state:5,
///   icsk_ca_initialized:1, ...; __u8 icsk_retransmits; __u8 icsk_pending; ... }
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CongOffsets {
    pub at: u32,
    pub ca_shift: u8,
    pub ca_bits: u8,
    pub pending_shift: u8,
    pub _pad: u8,
}

const _: () = assert!(core::mem::size_of::<CongOffsets>() == 8);

impl CongOffsets {
    /// Nothing known: retransmits carry no congestion state.
    pub const ABSENT: Self = Self {
        at: NO_OFFSET,
        ca_shift: 0,
        ca_bits: 0,
        pending_shift: 0,
        _pad: 0,
    };
}

/// Marks a tracepoint field that this kernel's format file does not have.
pub const ABSENT: u16 = u16::MAX;

/// The programs read a tracepoint field at `offset & TP_OFFSET_MASK`: a
/// bound the verifier can see, so no offset can reach more than 1 KiB past
/// the start of the record (TCP's tracepoint records are under 200 bytes).
/// User space refuses, before load, a format whose field ends beyond it.
pub const TP_OFFSET_MASK: u16 = 0x3ff;

/// The retransmit program reads `skb + (SKB_SEGS_OFF & SKB_OFFSET_MASK)`:
/// `struct sk_buff` is about 240 bytes, so 4 KiB bounds the read well past
/// any real member. User space refuses a larger BTF offset before load.
pub const SKB_OFFSET_MASK: u32 = 0xfff;

/// Byte offsets of the fields one tracepoint's programs read, taken from
/// `/sys/kernel/tracing/events/<group>/<name>/format` at start-up and handed
/// to the programs as a load-time global. A field the kernel lacks is
/// [`ABSENT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpOffsets {
    pub skaddr: u16,
    pub oldstate: u16,
    /// `newstate` of `inet_sock_set_state`, `state` of `tcp_retransmit_skb`.
    pub newstate: u16,
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub protocol: u16,
    pub saddr: u16,
    pub daddr: u16,
    pub saddr_v6: u16,
    pub daddr_v6: u16,
    pub err: u16,
    /// `uservaddr` of `sys_enter_connect`.
    pub uservaddr: u16,
    /// `ret` of `sys_exit_connect`.
    pub ret: u16,
    /// `skbaddr` of `tcp_retransmit_skb`.
    pub skbaddr: u16,
    /// `saddr` / `daddr` as `struct sockaddr_in6` blobs (`tcp_send_reset`,
    /// `tcp_probe`).
    pub sa_saddr: u16,
    pub sa_daddr: u16,
    /// `reason` of `tcp_send_reset`.
    pub reason: u16,
    /// `error` of `inet_sk_error_report`.
    pub error: u16,
    /// `srtt` (µs) of `tcp_probe`.
    pub srtt: u16,
    pub _pad: [u16; 4],
}

const _: () = assert!(core::mem::size_of::<TpOffsets>() == 48);

impl TpOffsets {
    /// Every field absent: what a program sees if user space set nothing.
    pub const ABSENT: Self = Self {
        skaddr: ABSENT,
        oldstate: ABSENT,
        newstate: ABSENT,
        sport: ABSENT,
        dport: ABSENT,
        family: ABSENT,
        protocol: ABSENT,
        saddr: ABSENT,
        daddr: ABSENT,
        saddr_v6: ABSENT,
        daddr_v6: ABSENT,
        err: ABSENT,
        uservaddr: ABSENT,
        ret: ABSENT,
        skbaddr: ABSENT,
        sa_saddr: ABSENT,
        sa_daddr: ABSENT,
        reason: ABSENT,
        error: ABSENT,
        srtt: ABSENT,
        _pad: [0; 4],
    };
}

/// Byte offset, from a `struct sk_buff *`, of `TCP_SKB_CB(skb)->tcp_gso_segs`
/// (`sk_buff.cb` + `tcp_skb_cb.tcp_gso_segs`, both from the kernel's BTF);
/// [`ABSENT`] when unknown.
pub type SkbSegsOffset = u32;

/// Byte offsets, from the kernel's BTF, of the members the programs follow
/// to a network namespace's inode number, handed over as the load-time
/// global [`names::NETNS_OFF`]; a chain this kernel lacks is [`NO_OFFSET`]
/// in its first member, and its events then carry netns 0.
///
/// From a socket: `*(u64 *)(sk + sk_net)` is its `struct net *`
/// (`sock.__sk_common` + `sock_common.skc_net` + `possible_net_t.net`);
/// from an skb: `*(u64 *)(skb + skb_dev)` is its `struct net_device *`
/// and `*(u64 *)(dev + dev_net)` that device's `struct net *`
/// (`net_device.nd_net` + `possible_net_t.net`); then `*(u32 *)(net +
/// net_inum)` is the inode (`net.ns` + `ns_common.inum`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetnsOffsets {
    pub sk_net: u32,
    pub net_inum: u32,
    pub skb_dev: u32,
    pub dev_net: u32,
}

const _: () = assert!(core::mem::size_of::<NetnsOffsets>() == 16);

/// Where the BTF state program (`tp_btf/inet_sock_set_state`, which gets
/// the `struct sock *` rather than a record) finds what the classic
/// tracepoint's record holds: byte offsets from the socket, resolved from
/// the running kernel's BTF by user space and handed over in the global
/// [`names::SOCK_OFF`]. Byte order as in the kernel: the ports are network
/// order there, the family and protocol host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockOffsets {
    /// `sk->__sk_common.skc_family` (u16).
    pub family: u32,
    /// `sk->sk_protocol` (u16).
    pub protocol: u32,
    /// `inet_sk(sk)->inet_sport` (__be16).
    pub sport: u32,
    /// `sk->__sk_common.skc_dport` (__be16).
    pub dport: u32,
    /// `sk->__sk_common.skc_rcv_saddr` (__be32).
    pub saddr: u32,
    /// `sk->__sk_common.skc_daddr` (__be32).
    pub daddr: u32,
    /// `sk->__sk_common.skc_v6_rcv_saddr` (struct in6_addr).
    pub saddr_v6: u32,
    /// `sk->__sk_common.skc_v6_daddr` (struct in6_addr).
    pub daddr_v6: u32,
}

const _: () = assert!(core::mem::size_of::<SockOffsets>() == 32);

impl SockOffsets {
    /// Nothing known: the BTF state program is not used.
    pub const ABSENT: Self = Self {
        family: NO_OFFSET,
        protocol: NO_OFFSET,
        sport: NO_OFFSET,
        dport: NO_OFFSET,
        saddr: NO_OFFSET,
        daddr: NO_OFFSET,
        saddr_v6: NO_OFFSET,
        daddr_v6: NO_OFFSET,
    };
}

/// The PID namespace pids are reported in: the nsfs device and inode of
/// tcptrace's own (`stat /proc/self/ns/pid`). All zero when tcptrace runs
/// in the initial namespace, where the kernel's pids are already ours;
/// otherwise the programs translate with `bpf_get_ns_current_pid_tgid`
/// (Linux 5.7+), and a task outside that namespace has pid 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidNs {
    pub dev: u64,
    pub ino: u64,
}

const _: () = assert!(core::mem::size_of::<PidNs>() == 16);

/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`).
pub const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// A [`NetnsOffsets`] member this kernel does not have.
pub const NO_OFFSET: u32 = u32::MAX;

/// The programs read at `base + (offset & KERNEL_OFFSET_MASK)` when they
/// follow [`NetnsOffsets`]: every member they follow sits well inside its
/// struct's first 64 KiB. User space refuses a larger BTF offset before
/// load.
pub const KERNEL_OFFSET_MASK: u32 = 0xffff;

impl NetnsOffsets {
    /// Nothing known: every event carries netns 0.
    pub const ABSENT: Self = Self {
        sk_net: NO_OFFSET,
        net_inum: NO_OFFSET,
        skb_dev: NO_OFFSET,
        dev_net: NO_OFFSET,
    };
}

/// Per-socket smoothed-RTT histogram kept in the kernel by the `tcp_probe`
/// program (one update per incoming segment; no per-packet events).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttHist {
    /// `slots[i]` counts samples with `srtt` in [2^(i-1), 2^i) µs (slot 0: 0 µs).
    pub slots: [u32; RTT_SLOTS],
    /// Samples.
    pub count: u64,
    /// Sum of samples, µs.
    pub sum_us: u64,
    /// The latest sample, µs.
    pub last_us: u32,
    pub _pad: u32,
}

/// Log2 slots of [`RttHist`]: up to 2^31 µs.
pub const RTT_SLOTS: usize = 32;

/// `RTT_ON` (a load-time global): how `tcp_probe` finds a sample's socket.
pub mod rtt_mode {
    /// `tcp_probe` is not attached.
    pub const OFF: u8 = 0;
    /// By the record's `skaddr` (Linux 6.x kernels that have it).
    pub const BY_SOCKET: u8 = 1;
    /// By the record's tuple, mapped to the socket by the state program
    /// when the socket becomes ESTABLISHED (kernels whose `tcp_probe` has
    /// no `skaddr`, such as 6.1).
    pub const BY_TUPLE: u8 = 2;
}

/// The log2 slot of `v` among `slots`: slot 0 holds 0, slot `i` holds
/// [2^(i-1), 2^i - 1], and the last slot everything above. Used by the
/// kernel's RTT histograms and by user space's histograms alike.
///
/// Comparisons rather than `leading_zeros`: for BPF, LLVM expands a count
/// of leading zeros into popcount arithmetic whose range the verifier
/// cannot bound, and then refuses the slot as an index; the bounds of a
/// branch it follows.
#[inline(always)]
pub const fn log2_slot(v: u64, slots: usize) -> usize {
    let mut x = v;
    let mut s = 0;
    if x >= 1 << 32 {
        s += 32;
        x >>= 32;
    }
    if x >= 1 << 16 {
        s += 16;
        x >>= 16;
    }
    if x >= 1 << 8 {
        s += 8;
        x >>= 8;
    }
    if x >= 1 << 4 {
        s += 4;
        x >>= 4;
    }
    if x >= 1 << 2 {
        s += 2;
        x >>= 2;
    }
    if x >= 1 << 1 {
        s += 1;
        x >>= 1;
    }
    // x is 0 (only when v is) or 1.
    s += x as usize;
    if s < slots { s } else { slots - 1 }
}

/// The smallest value in log2 slot `i` (see [`log2_slot`]).
pub const fn slot_low(i: usize) -> u64 {
    if i == 0 { 0 } else { 1 << (i - 1) }
}

/// The largest value in log2 slot `i` (the last slot also holds everything
/// above; see [`log2_slot`]).
pub const fn slot_high(i: usize) -> u64 {
    if i == 0 { 0 } else { (1u64 << i) - 1 }
}

const _: () = assert!(core::mem::size_of::<RttHist>() == 152);

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

/// `bpf_ringbuf_query` flags, and `bpf_ringbuf_submit` flags.
pub mod ringbuf {
    pub const BPF_RB_NO_WAKEUP: u64 = 1;
    pub const BPF_RB_FORCE_WAKEUP: u64 = 2;
    pub const BPF_RB_AVAIL_DATA: u64 = 0;
    pub const BPF_RB_RING_SIZE: u64 = 1;
}

/// Names of maps and globals, shared so neither side can misspell them.
pub mod names {
    pub const EVENTS: &str = "EVENTS";
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
