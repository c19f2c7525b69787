//! The rows of the hook table ([`super::table`]): every kernel program
//! tcptrace has, where it attaches, which views need it and which
//! tracepoint fields it reads. Kept apart from the table's types and
//! queries so that each reads in one sitting.

use tracer_common::{hook, names};

use super::ConnectPlan;
use super::table::{Attach, BtfForm, Hook, Layout, Need};
use crate::tracefs::TpField;

use TpField as F;

/// The BTF form of the hook on `tracepoint`: its two kernel programs are
/// named after it (`nested::btf_pair!` in tracer-ebpf), `<tracepoint>_btf`
/// and `<tracepoint>_btf_nested`.
macro_rules! btf_form {
    ($tp:literal) => {
        Some(BtfForm {
            program: concat!($tp, "_btf"),
            nested: concat!($tp, "_btf_nested"),
            tracepoint: $tp,
        })
    };
}

/// Addresses and family of the TCP tracepoints, read when present (older
/// kernels lack `family` and store IPv4 v4-mapped in the v6 fields).
const FLOW_OPTIONAL: &[TpField] = &[F::Family, F::Saddr, F::Daddr, F::SaddrV6, F::DaddrV6];
/// Ports and socket of the TCP tracepoints.
const FLOW: &[TpField] = &[F::Sport, F::Dport, F::Skaddr];

/// Every program of the kernel object, in attach order.
pub const HOOKS: &[Hook] = &[
    Hook {
        id: hook::STATE,
        program: "inet_sock_set_state",
        attach: Attach::Tracepoint {
            group: "sock",
            name: "inet_sock_set_state",
            offsets: names::STATE_TP,
        },
        need: Need::Always,
        btf: btf_form!("inet_sock_set_state"),
        layouts: &[Layout::new(
            &[F::Skaddr, F::Sport, F::Dport, F::Oldstate, F::Newstate],
            &[
                F::Protocol,
                F::Family,
                F::Saddr,
                F::Daddr,
                F::SaddrV6,
                F::DaddrV6,
            ],
        )],
    },
    Hook {
        id: hook::RETRANSMIT_SKB,
        program: "tcp_retransmit_skb",
        attach: Attach::Tracepoint {
            group: "tcp",
            name: "tcp_retransmit_skb",
            offsets: names::RETRANS_TP,
        },
        need: Need::Retrans,
        btf: btf_form!("tcp_retransmit_skb"),
        layouts: &[Layout::new(
            FLOW,
            &[
                F::Newstate,
                F::Err,
                F::Skbaddr,
                F::Family,
                F::Saddr,
                F::Daddr,
                F::SaddrV6,
                F::DaddrV6,
            ],
        )],
    },
    Hook {
        id: hook::RETRANSMIT_SYNACK,
        program: "tcp_retransmit_synack",
        attach: Attach::Tracepoint {
            group: "tcp",
            name: "tcp_retransmit_synack",
            offsets: names::SYNACK_TP,
        },
        need: Need::Retrans,
        btf: btf_form!("tcp_retransmit_synack"),
        layouts: &[Layout::new(FLOW, FLOW_OPTIONAL)],
    },
    Hook {
        id: hook::SEND_RESET,
        program: "tcp_send_reset",
        attach: Attach::Tracepoint {
            group: "tcp",
            name: "tcp_send_reset",
            offsets: names::SEND_RESET_TP,
        },
        need: Need::Resets,
        btf: btf_form!("tcp_send_reset"),
        // 6.x: sockaddr blobs; older: ports and addresses as elsewhere.
        // `skbaddr`: the namespace of a reset sent for no socket.
        layouts: &[
            Layout::new(
                &[F::SaSaddr, F::SaDaddr],
                &[F::Skaddr, F::Newstate, F::Reason, F::Skbaddr],
            ),
            Layout::new(
                FLOW,
                &[
                    F::Newstate,
                    F::Reason,
                    F::Skbaddr,
                    F::Family,
                    F::Saddr,
                    F::Daddr,
                    F::SaddrV6,
                    F::DaddrV6,
                ],
            ),
        ],
    },
    Hook {
        id: hook::RECEIVE_RESET,
        program: "tcp_receive_reset",
        attach: Attach::Tracepoint {
            group: "tcp",
            name: "tcp_receive_reset",
            offsets: names::RECV_RESET_TP,
        },
        need: Need::Resets,
        btf: btf_form!("tcp_receive_reset"),
        layouts: &[Layout::new(FLOW, FLOW_OPTIONAL)],
    },
    Hook {
        id: hook::ERROR_REPORT,
        program: "inet_sk_error_report",
        attach: Attach::Tracepoint {
            group: "sock",
            name: "inet_sk_error_report",
            offsets: names::ERROR_TP,
        },
        need: Need::Errors,
        btf: btf_form!("inet_sk_error_report"),
        layouts: &[Layout::new(
            &[F::Error, F::Protocol, F::Sport, F::Dport],
            FLOW_OPTIONAL,
        )],
    },
    Hook {
        id: hook::PROBE,
        program: "tcp_probe",
        attach: Attach::Tracepoint {
            group: "tcp",
            name: "tcp_probe",
            offsets: names::PROBE_TP,
        },
        need: Need::Rtt,
        btf: btf_form!("tcp_probe"),
        // Newer kernels name the socket (`skaddr`); older ones (6.1) only
        // its addresses, as sockaddr blobs: the classic program then finds
        // the socket by tuple (`tracer_common::rtt_mode::BY_TUPLE`). The
        // BTF form gets the socket itself.
        layouts: &[
            Layout::new(&[F::Skaddr, F::Srtt, F::Sport, F::Dport], &[F::Family]),
            Layout::new(
                &[F::SaSaddr, F::SaDaddr, F::Srtt, F::Sport, F::Dport],
                &[F::Family, F::Skaddr],
            ),
        ],
    },
    Hook {
        id: hook::FEXIT_V4_CONNECT,
        program: "fexit_tcp_v4_connect",
        attach: Attach::Fexit("tcp_v4_connect"),
        need: Need::Connect(ConnectPlan::Fexit),
        btf: None,
        layouts: &[],
    },
    Hook {
        id: hook::FEXIT_V6_CONNECT,
        program: "fexit_tcp_v6_connect",
        attach: Attach::Fexit("tcp_v6_connect"),
        need: Need::Connect(ConnectPlan::Fexit),
        btf: None,
        layouts: &[],
    },
    Hook {
        id: hook::KPROBE_CONNECT,
        program: "kprobe_tcp_connect",
        attach: Attach::Kprobe(&["tcp_v4_connect", "tcp_v6_connect"]),
        need: Need::Connect(ConnectPlan::Kprobe),
        btf: None,
        layouts: &[],
    },
    Hook {
        id: hook::KRETPROBE_CONNECT,
        program: "kretprobe_tcp_connect",
        attach: Attach::Kretprobe(&["tcp_v4_connect", "tcp_v6_connect"]),
        need: Need::Connect(ConnectPlan::Kprobe),
        btf: None,
        layouts: &[],
    },
    Hook {
        id: hook::CONNECT_ENTER,
        program: "sys_enter_connect",
        attach: Attach::Tracepoint {
            group: "syscalls",
            name: "sys_enter_connect",
            offsets: names::CONNECT_ENTER_TP,
        },
        need: Need::Connect(ConnectPlan::Syscalls),
        btf: None,
        layouts: &[Layout::new(&[F::Uservaddr], &[])],
    },
    Hook {
        id: hook::CONNECT_EXIT,
        program: "sys_exit_connect",
        attach: Attach::Tracepoint {
            group: "syscalls",
            name: "sys_exit_connect",
            offsets: names::CONNECT_EXIT_TP,
        },
        need: Need::Connect(ConnectPlan::Syscalls),
        btf: None,
        layouts: &[Layout::new(&[F::Ret], &[])],
    },
];
