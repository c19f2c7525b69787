//! Loading the kernel programs and attaching them: the embedded object, the
//! privilege check, the tracefs offsets handed over as globals, and the hook
//! plan (which programs are attached, and which connect hooks this kernel
//! accepts).

pub mod connect;
mod privileges;

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use tracer_common::{KernelFilter, TpOffsets, names};

use crate::tracefs::{self, Format};
pub use connect::ConnectPlan;

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
    let mut need = vec![("sport", o.sport), ("dport", o.dport), ("skaddr", o.skaddr)];
    if tp == STATE {
        need.extend([("oldstate", o.oldstate), ("newstate", o.newstate)]);
    }
    if tp == CONNECT_ENTER {
        need = vec![("uservaddr", o.uservaddr)];
    }
    if tp == CONNECT_EXIT {
        need = vec![("ret", o.ret)];
    }
    need.into_iter()
        .filter(|&(_, off)| off == ABSENT)
        .map(|(n, _)| n)
        .collect()
}

/// Which families of hooks a view needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wants {
    pub retrans: bool,
    pub connect: bool,
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
    pub tracefs: PathBuf,
    pub hooks: Vec<HookStatus>,
    /// The connect plan in use, if connect hooks were wanted and one worked.
    pub connect: Option<ConnectPlan>,
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
    pub fn load(filter: KernelFilter, wants: Wants) -> Result<Self> {
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
        let mut offsets = Vec::new();
        for tp in &tps {
            let f = tracefs::read_format(&root, tp.group, tp.name)?;
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
        let segs_off = if wants.retrans {
            skb_segs_offset()
        } else {
            Err("not wanted".into())
        };
        if let Ok(off) = &segs_off {
            loader.override_global(names::SKB_SEGS_OFF, off, true);
        }
        loader.override_global(names::FILTER, &filter, true);
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
            tracefs: root,
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

    /// The per-CPU counter of ring-buffer reserve failures.
    pub fn take_lost(&mut self) -> Result<PerCpuArray<MapData, u64>> {
        let map = self
            .bpf
            .take_map(names::LOST)
            .context("the object has no LOST map")?;
        Ok(PerCpuArray::try_from(map)?)
    }
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
