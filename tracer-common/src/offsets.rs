//! Where the kernel programs find what they read: field offsets of the
//! tracepoints' records (from their format files) and of kernel structs
//! (from BTF), handed over by user space as load-time globals, with the
//! masks that keep every offset within what the verifier accepts.

/// [`crate::WireEvent::cong`]: the socket's congestion-avoidance state
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

/// Where the BTF programs (`tp_btf/inet_sock_set_state`,
/// `tp_btf/tcp_retransmit_skb`, `tp_btf/tcp_send_reset`,
/// `tp_btf/tcp_receive_reset`, `tp_btf/tcp_probe` and
/// `tp_btf/inet_sk_error_report`, which get the `struct sock *` rather than a
/// record) find what the classic tracepoints' records hold: byte offsets from the socket, resolved from
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
    /// `sk->__sk_common.skc_state` (u8).
    pub state: u32,
    /// `sk->__sk_common.skc_num` (u16, the local port in host order: the
    /// one port field that timewait and request sockets share with full
    /// ones).
    pub num: u32,
    /// `sk->sk_err` (int, the error an error report tells the owner).
    pub err: u32,
}

const _: () = assert!(core::mem::size_of::<SockOffsets>() == 44);

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
        state: NO_OFFSET,
        num: NO_OFFSET,
        err: NO_OFFSET,
    };
}

/// What the BTF retransmit program needs besides [`SockOffsets`], from
/// the running kernel's BTF and tracefs (global [`names::RETRANS_ARGS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetransArgs {
    /// `TCP_SKB_CB(skb)->seq`: bytes from the `struct sk_buff`
    /// ([`NO_OFFSET`] when unknown; the first sequence number of the
    /// retransmitted buffer tells two retransmits of a socket apart).
    pub skb_seq: u32,
    /// 1 when the tracepoint has a third argument, `int err` (6.17+).
    pub has_err: u32,
}

const _: () = assert!(core::mem::size_of::<RetransArgs>() == 8);

impl RetransArgs {
    pub const ABSENT: Self = Self {
        skb_seq: NO_OFFSET,
        has_err: 0,
    };
}

/// What the BTF send-reset program needs besides [`SockOffsets`], from
/// the running kernel's BTF and tracefs (global [`names::RESET_ARGS`]):
/// where a buffer's IP and TCP headers are, for a reset sent for no
/// socket (whose flow the kernel takes from the segment it answers).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetArgs {
    /// `skb->head` (a pointer).
    pub skb_head: u32,
    /// `skb->network_header` (u16, from `head`).
    pub skb_network_header: u32,
    /// `skb->transport_header` (u16, from `head`).
    pub skb_transport_header: u32,
    /// 1 when the tracepoint has a third argument, `enum sk_rst_reason
    /// reason` (6.10+).
    pub has_reason: u32,
}

const _: () = assert!(core::mem::size_of::<ResetArgs>() == 16);

impl ResetArgs {
    pub const ABSENT: Self = Self {
        skb_head: NO_OFFSET,
        skb_network_header: NO_OFFSET,
        skb_transport_header: NO_OFFSET,
        has_reason: 0,
    };
}

/// What the BTF RTT program needs besides [`SockOffsets`], from the
/// running kernel's BTF (global [`names::PROBE_ARGS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeArgs {
    /// `tcp_sk(sk)->srtt_us` (u32, eight times the smoothed RTT in µs,
    /// as the classic record's `srtt` is `srtt_us >> 3`): bytes from the
    /// `struct sock`.
    pub srtt_us: u32,
    /// `TCP_SKB_CB(skb)->seq` of the segment that came in ([`NO_OFFSET`]
    /// when unknown), for the nested program's comparison.
    pub skb_seq: u32,
}

const _: () = assert!(core::mem::size_of::<ProbeArgs>() == 8);

impl ProbeArgs {
    pub const ABSENT: Self = Self {
        srtt_us: NO_OFFSET,
        skb_seq: NO_OFFSET,
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
