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

/// Kinds of [`WireEvent`].
pub mod kind {
    /// `sock:inet_sock_set_state` for a TCP socket.
    pub const STATE: u8 = 1;
    /// `tcp:tcp_retransmit_skb` (data, FIN or SYN; the state tells which).
    pub const RETRANS: u8 = 2;
    /// `tcp:tcp_retransmit_synack` (the socket is the listener).
    pub const RETRANS_SYNACK: u8 = 3;
    /// A `connect()` on an inet socket failed (any hook of the connect plan).
    pub const CONNECT: u8 = 4;
    /// `tcp:tcp_send_reset`: we sent a RST (`skaddr` 0 when no socket).
    pub const RESET_SENT: u8 = 5;
    /// `tcp:tcp_receive_reset`: a RST arrived for a socket.
    pub const RESET_RECV: u8 = 6;
    /// `sock:inet_sk_error_report` for a TCP socket (no socket identity).
    pub const SOCK_ERROR: u8 = 7;
}

/// One event from the kernel, as it crosses the ring buffer.
///
/// Addresses are in network byte order (IPv4 in the first four bytes, the
/// rest zero); ports are in host byte order, as the tracepoints store them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Kernel address of the `struct sock`, used only as an identity; 0 when
    /// unknown (a connect seen only through the syscall hooks that failed
    /// before the socket reached SYN_SENT).
    pub skaddr: u64,
    /// `bpf_get_current_pid_tgid()` when the event fired: tgid in the high
    /// half. Meaningful only for events in process context.
    pub pid_tgid: u64,
    /// `bpf_get_current_comm()` when the event fired, NUL-padded.
    pub comm: [u8; 16],
    /// Local address.
    pub saddr: [u8; 16],
    /// Remote address.
    pub daddr: [u8; 16],
    /// Local port, host byte order.
    pub sport: u16,
    /// Remote port, host byte order.
    pub dport: u16,
    /// One of [`kind`].
    pub kind: u8,
    /// `AF_INET`/`AF_INET6` truncated to a byte; 0 when the kernel did not say.
    pub family: u8,
    /// Previous TCP state (STATE only).
    pub oldstate: u8,
    /// New TCP state (STATE), or the socket's state (RETRANS, RESET_SENT;
    /// 0 when unknown).
    pub newstate: u8,
    /// RETRANS: segments in the retransmitted skb (what the kernel adds to
    /// RetransSegs), or 0 when unknown; RETRANS_SYNACK: 1.
    /// CONNECT: the return value (a negative errno).
    /// RESET_SENT: the kernel's reset reason (`enum sk_rst_reason`), or -1
    /// when the kernel has none. SOCK_ERROR: the error (positive errno).
    pub ret: i32,
    /// Explicit padding; always zero.
    pub _pad: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<WireEvent>() == 88);
const _: () = assert!(core::mem::align_of::<WireEvent>() == 8);

/// Marks a tracepoint field that this kernel's format file does not have.
pub const ABSENT: u16 = u16::MAX;

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
    pub const CONNECTS: &str = "CONNECTS";
    pub const FILTER: &str = "FILTER";
    pub const STATE_TP: &str = "STATE_TP";
    pub const RETRANS_TP: &str = "RETRANS_TP";
    pub const SYNACK_TP: &str = "SYNACK_TP";
    pub const CONNECT_ENTER_TP: &str = "CONNECT_ENTER_TP";
    pub const CONNECT_EXIT_TP: &str = "CONNECT_EXIT_TP";
    pub const SKB_SEGS_OFF: &str = "SKB_SEGS_OFF";
    pub const SEND_RESET_TP: &str = "SEND_RESET_TP";
    pub const RECV_RESET_TP: &str = "RECV_RESET_TP";
    pub const ERROR_TP: &str = "ERROR_TP";
    pub const PROBE_TP: &str = "PROBE_TP";
    pub const RTT: &str = "RTT";
    pub const RTT_ON: &str = "RTT_ON";
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
    unsafe impl aya::Pod for super::RttHist {}
}
