//! Loading the kernel programs and attaching them: the embedded object, the
//! privilege check, the tracefs offsets handed over as globals, and the hook
//! plan (which programs are attached, and which connect hooks this kernel
//! accepts).

pub mod connect;
mod misses;
mod privileges;

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use tracer_common::{KernelFilter, TpOffsets, names};

use crate::{
    event::TcpState,
    tracefs::{self, Format},
};
pub use connect::ConnectPlan;

/// Default size of the kernel's event ring buffer: at a storm's 700 000
/// events/s (96 bytes each with the ring's header) about 60 ms of events,
/// while tcptrace drains every 10 ms and is woken at a quarter full.
pub const RING_BYTES: u32 = 4 << 20;

/// The kernel programs, built by `tracer/build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// A tracepoint tcptrace uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tp {
    pub group: &'static str,
    pub name: &'static str,
    /// Name of the program in the object, and of its offsets global.
    pub program: &'static str,
    pub global: &'static str,
}

pub const STATE: Tp = Tp {
    group: "sock",
    name: "inet_sock_set_state",
    program: "inet_sock_set_state",
    global: names::STATE_TP,
};
pub const RETRANS: Tp = Tp {
    group: "tcp",
    name: "tcp_retransmit_skb",
    program: "tcp_retransmit_skb",
    global: names::RETRANS_TP,
};
pub const SYNACK: Tp = Tp {
    group: "tcp",
    name: "tcp_retransmit_synack",
    program: "tcp_retransmit_synack",
    global: names::SYNACK_TP,
};
pub const SEND_RESET: Tp = Tp {
    group: "tcp",
    name: "tcp_send_reset",
    program: "tcp_send_reset",
    global: names::SEND_RESET_TP,
};
pub const RECV_RESET: Tp = Tp {
    group: "tcp",
    name: "tcp_receive_reset",
    program: "tcp_receive_reset",
    global: names::RECV_RESET_TP,
};
pub const ERROR_REPORT: Tp = Tp {
    group: "sock",
    name: "inet_sk_error_report",
    program: "inet_sk_error_report",
    global: names::ERROR_TP,
};
pub const PROBE: Tp = Tp {
    group: "tcp",
    name: "tcp_probe",
    program: "tcp_probe",
    global: names::PROBE_TP,
};
pub const CONNECT_ENTER: Tp = Tp {
    group: "syscalls",
    name: "sys_enter_connect",
    program: "sys_enter_connect",
    global: names::CONNECT_ENTER_TP,
};
pub const CONNECT_EXIT: Tp = Tp {
    group: "syscalls",
    name: "sys_exit_connect",
    program: "sys_exit_connect",
    global: names::CONNECT_EXIT_TP,
};

/// Fields a tracepoint cannot do without, by the names of [`TpOffsets`].
fn required(tp: Tp, o: &TpOffsets) -> Vec<&'static str> {
    use tracer_common::ABSENT;
    let need: Vec<(&str, u16)> = match tp {
        STATE => vec![
            ("skaddr", o.skaddr),
            ("sport", o.sport),
            ("dport", o.dport),
            ("oldstate", o.oldstate),
            ("newstate", o.newstate),
        ],
        // The reset may carry sockaddr blobs (6.x) or ports (older).
        SEND_RESET if o.sa_saddr != ABSENT => vec![("daddr", o.sa_daddr)],
        ERROR_REPORT => vec![
            ("error", o.error),
            ("protocol", o.protocol),
            ("sport", o.sport),
            ("dport", o.dport),
        ],
        PROBE => vec![
            ("skaddr", o.skaddr),
            ("srtt", o.srtt),
            ("sport", o.sport),
            ("dport", o.dport),
        ],
        CONNECT_ENTER => vec![("uservaddr", o.uservaddr)],
        CONNECT_EXIT => vec![("ret", o.ret)],
        _ => vec![("sport", o.sport), ("dport", o.dport), ("skaddr", o.skaddr)],
    };
    need.into_iter()
        .filter(|&(_, off)| off == ABSENT)
        .map(|(n, _)| n)
        .collect()
}

/// Which families of hooks a view needs (state transitions always).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wants {
    pub retrans: bool,
    pub connect: bool,
    pub resets: bool,
    /// Socket error reports (failed non-blocking connects).
    pub errors: bool,
    /// Per-socket RTT histograms from `tcp_probe` (costs per packet).
    pub rtt: bool,
    /// State transitions are needed only to attribute owners: the kernel
    /// sends only those into SYN_SENT, SYN_RECV, LISTEN and CLOSE.
    pub owners_only: bool,
}

impl Wants {
    /// Everything but RTT: what the flow views use.
    pub const FLOWS: Self = Self {
        retrans: true,
        connect: true,
        resets: true,
        errors: true,
        rtt: false,
        owners_only: false,
    };

    /// The kernel's state mask for these wants (0: every transition).
    pub fn state_mask(&self) -> u16 {
        if !self.owners_only {
            return 0;
        }
        [
            TcpState::SynSent,
            TcpState::SynRecv,
            TcpState::Listen,
            TcpState::Close,
        ]
        .iter()
        .fold(0, |m, s| m | 1 << (*s as u16))
    }
}

/// The outcome of one hook: attached, or why not.
#[derive(Clone, Debug)]
pub struct HookStatus {
    pub hook: String,
    pub result: Result<(), String>,
}

/// What was attached.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub hooks: Vec<HookStatus>,
    /// The connect plan in use, if connect hooks were wanted and one worked.
    pub connect: Option<ConnectPlan>,
    /// This kernel's names of reset reasons (`enum sk_rst_reason`).
    pub reset_reasons: Vec<(i64, String)>,
}

impl Report {
    /// One line naming the hooks in use, for the start-up message.
    pub fn summary(&self) -> String {
        let ok: Vec<&str> = self
            .hooks
            .iter()
            .filter(|h| h.result.is_ok())
            .map(|h| h.hook.as_str())
            .collect();
        ok.join(", ")
    }
}

/// The loaded programs and their maps.
pub struct Probe {
    pub bpf: Ebpf,
    pub report: Report,
}

impl Probe {
    /// Loads the object with `filter` and attaches what `wants` asks for.
    pub fn load(mut filter: KernelFilter, wants: Wants, ring_bytes: u32) -> Result<Self> {
        filter.state_mask = wants.state_mask();
        if OBJECT.is_empty() {
            bail!(
                "this tcptrace was built without its kernel programs (AYA_BUILD_SKIP was set); build it with `cargo xtask build`"
            );
        }
        privileges::check()?;
        let root = tracefs::ensure_mounted()?;
        let mut tps = vec![STATE];
        if wants.retrans {
            tps.extend([RETRANS, SYNACK]);
        }
        if wants.resets {
            tps.extend([SEND_RESET, RECV_RESET]);
        }
        if wants.errors {
            tps.push(ERROR_REPORT);
        }
        if wants.rtt {
            tps.push(PROBE);
        }
        let mut offsets = Vec::new();
        let mut reset_reasons = Vec::new();
        for tp in &tps {
            let f = tracefs::read_format(&root, tp.group, tp.name)?;
            if *tp == SEND_RESET {
                reset_reasons = f.symbols("reason");
            }
            let o = f.offsets();
            let missing = required(*tp, &o);
            if !missing.is_empty() {
                bail!(
                    "tracepoint {}:{} on this kernel lacks the field(s) {}; this kernel's layout is not supported",
                    tp.group,
                    tp.name,
                    missing.join(", ")
                );
            }
            offsets.push((tp.global, o));
        }
        // The syscall fallback of the connect plan: optional.
        let syscall_offsets = if wants.connect {
            syscall_offsets(&root)
        } else {
            Err("not wanted".into())
        };
        let mut loader = EbpfLoader::new();
        // The programs need no CO-RE relocation: skip parsing the kernel's
        // BTF at load (a large part of start-up time).
        loader.btf(None);
        let segs_off = if wants.retrans {
            skb_segs_offset()
        } else {
            Err("not wanted".into())
        };
        if let Ok(off) = &segs_off {
            loader.override_global(names::SKB_SEGS_OFF, off, true);
        }
        loader.map_max_entries(names::EVENTS, ring_bytes);
        loader.override_global(names::FILTER, &filter, true);
        let rtt_on = u8::from(wants.rtt);
        loader.override_global(names::RTT_ON, &rtt_on, true);
        for (global, o) in &offsets {
            loader.override_global(global, o, true);
        }
        if let Ok((enter, exit)) = &syscall_offsets {
            loader.override_global(CONNECT_ENTER.global, enter, true);
            loader.override_global(CONNECT_EXIT.global, exit, true);
        }
        let mut bpf = loader.load(OBJECT).map_err(|e| {
            anyhow::Error::new(e).context(
                "the kernel refused tcptrace's BPF maps or programs (is BPF disabled, or are you missing CAP_BPF?)",
            )
        })?;
        let mut report = Report {
            reset_reasons,
            ..Report::default()
        };
        if wants.retrans {
            report.hooks.push(HookStatus {
                hook: match &segs_off {
                    Ok(off) => format!("BTF: TCP_SKB_CB(skb)->tcp_gso_segs at skb+{off}"),
                    Err(_) => "BTF: TCP_SKB_CB(skb)->tcp_gso_segs".into(),
                },
                result: segs_off.map(drop),
            });
        }
        for tp in &tps {
            attach_tracepoint(&mut bpf, *tp)
                .with_context(|| format!("cannot attach to tracepoint {}:{}", tp.group, tp.name))?;
            report.hooks.push(HookStatus {
                hook: format!("{}:{}", tp.group, tp.name),
                result: Ok(()),
            });
        }
        if wants.connect {
            let (plan, tried) = connect::attach(&mut bpf, syscall_offsets.map(|_| ()));
            report.hooks.extend(tried);
            report.connect = plan;
        }
        Ok(Self { bpf, report })
    }

    /// The ring buffer, taken out of the object.
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .bpf
            .take_map(names::EVENTS)
            .context("the object has no EVENTS map")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// The per-socket RTT histograms (present when RTT was wanted).
    pub fn take_rtt(&mut self) -> Result<aya::maps::HashMap<MapData, u64, tracer_common::RttHist>> {
        let map = self
            .bpf
            .take_map(names::RTT)
            .context("the object has no RTT map")?;
        Ok(aya::maps::HashMap::try_from(map)?)
    }

    /// The per-CPU counter of ring-buffer reserve failures.
    pub fn take_lost(&mut self) -> Result<PerCpuArray<MapData, u64>> {
        let map = self
            .bpf
            .take_map(names::LOST)
            .context("the object has no LOST map")?;
        Ok(PerCpuArray::try_from(map)?)
    }
}

/// Events the kernel skipped because one of our programs was already
/// running on that CPU (see [`misses`]).
pub fn nested_misses(probe: &Probe) -> u64 {
    misses::recursion_misses(&probe.bpf)
}

/// Sums the per-CPU lost counter.
pub fn lost_total(lost: &PerCpuArray<MapData, u64>) -> u64 {
    lost.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0)
}

/// Offset from an skb of `TCP_SKB_CB(skb)->tcp_gso_segs`, from kernel BTF.
fn skb_segs_offset() -> Result<u32, String> {
    let btf = crate::btf::Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {e}"))?;
    let cb = btf
        .member_offset("sk_buff", "cb")
        .ok_or("BTF has no sk_buff.cb")?;
    let segs = btf
        .member_offset("tcp_skb_cb", "tcp_gso_segs")
        .ok_or("BTF has no tcp_skb_cb.tcp_gso_segs")?;
    Ok(cb + segs)
}

fn syscall_offsets(root: &std::path::Path) -> Result<(TpOffsets, TpOffsets), String> {
    let read = |tp: Tp| -> Result<TpOffsets, String> {
        let f: Format = tracefs::read_format(root, tp.group, tp.name).map_err(|e| e.to_string())?;
        let o = f.offsets();
        let missing = required(tp, &o);
        if missing.is_empty() {
            Ok(o)
        } else {
            Err(format!(
                "{}:{} lacks {}",
                tp.group,
                tp.name,
                missing.join(", ")
            ))
        }
    };
    Ok((read(CONNECT_ENTER)?, read(CONNECT_EXIT)?))
}

pub(crate) fn attach_tracepoint(bpf: &mut Ebpf, tp: Tp) -> Result<()> {
    let prog: &mut TracePoint = bpf
        .program_mut(tp.program)
        .with_context(|| format!("the object has no program {}", tp.program))?
        .try_into()?;
    prog.load()?;
    prog.attach(tp.group, tp.name)?;
    Ok(())
}
