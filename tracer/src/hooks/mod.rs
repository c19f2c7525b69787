//! Loading the kernel programs and attaching them: the embedded object, the
//! privilege check and locked-memory limit, the tracefs offsets handed over
//! as globals, and the hook plan. Which programs exist, what needs them and
//! what they read is the one table of hooks ([`rows::HOOKS`]); the connect
//! plan tries its rows in turn ([`connect`]). The loaded [`Probe`] also
//! reports the kernel's per-hook count of unreadable fields.

pub mod connect;
pub mod forms;
mod globals;
mod misses;
pub use misses::Nested;
#[cfg(test)]
mod object_check;
pub mod privileges;
pub mod ring_fill;
pub mod rings;
mod rows;
pub mod table;

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray},
    programs::TracePoint,
};
use tracer_common::{ABSENT, TpOffsets, hook, names};

use crate::{btf::Btf, event::TcpState, filter::Filter, tracefs};
pub use connect::ConnectPlan;
pub use forms::Form;
use globals::{cong_offsets, own_pid_namespace, skb_segs_offset, syscall_offsets};
pub use globals::{kernel_filter, netns_offsets};
pub use rows::HOOKS;
pub use table::{Attach, BtfForm, Hook, Need};

/// Default size of the kernel's event ring buffer: at a storm's 700 000
/// events/s (96 bytes each with the ring's header) about 60 ms of events,
/// while tcptrace drains every 10 ms and is woken at a quarter full.
pub const RING_BYTES: u32 = 4 << 20;

/// The kernel programs, built by `tracer/build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

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
    /// Events carry their socket's network namespace (the kernel's BTF
    /// says where it is); else every event's is 0.
    pub netns: bool,
    /// The form attached of each hook that has two (by hook id), see
    /// [`forms`].
    pub forms: Vec<(u8, Form)>,
}

impl Report {
    /// Where the events of hook `id` come from, if it has two forms and
    /// is attached.
    pub fn form(&self, id: u8) -> Option<Form> {
        self.forms.iter().find(|(h, _)| *h == id).map(|(_, f)| *f)
    }

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
    /// The event rings, until the reader takes them.
    rings: Option<rings::Rings>,
}

impl Probe {
    /// Loads the object with `filter` and attaches what `wants` asks for:
    /// the rows of [`HOOKS`] the wants need, then the connect plan
    /// `connect` chooses (by default the first this kernel accepts).
    pub fn load(
        filter: &Filter,
        wants: Wants,
        ring_bytes: u32,
        connect: connect::Choice,
        forms: forms::Choice,
    ) -> Result<Self> {
        let filter = kernel_filter(filter, &wants);
        if OBJECT.is_empty() {
            bail!(
                "this tcptrace was built without its kernel programs (AYA_BUILD_SKIP was set); build it with `cargo xtask build`"
            );
        }
        privileges::check()?;
        let memlock = privileges::raise_memlock();
        let root = tracefs::ensure_mounted()?;
        let mut offsets = Vec::new();
        let mut reset_reasons = Vec::new();
        let mut rtt_mode = tracer_common::rtt_mode::OFF;
        for hook in Hook::wanted(&wants) {
            let Attach::Tracepoint {
                group,
                name,
                offsets: global,
            } = hook.attach
            else {
                continue;
            };
            let f = tracefs::read_format(&root, group, name)?;
            if hook.id == hook::SEND_RESET {
                reset_reasons = f.symbols("reason");
            }
            if hook.id == hook::PROBE {
                rtt_mode = if f.offsets().skaddr == ABSENT {
                    tracer_common::rtt_mode::BY_TUPLE
                } else {
                    tracer_common::rtt_mode::BY_SOCKET
                };
            }
            let o = hook.offsets(&f).map_err(|e| {
                anyhow::anyhow!(
                    "tracepoint {group}:{name} on this kernel {e}; this kernel's layout is not supported"
                )
            })?;
            offsets.push((global, o));
        }
        // The syscall fallback of the connect plan: optional.
        let syscall_offsets = if wants.connect {
            syscall_offsets(&root)
        } else {
            Err("not wanted".into())
        };
        let mut loader = EbpfLoader::new();
        // The programs need no CO-RE relocation: skip parsing the kernel's
        // BTF at load (a large part of start-up time); the few kernel
        // struct members they read are located here, once.
        loader.btf(None);
        let btf = Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {e}"));
        let segs_off = match (&btf, wants.retrans) {
            (Ok(btf), true) => skb_segs_offset(btf),
            (Err(e), true) => Err(e.clone()),
            (_, false) => Err("not wanted".into()),
        };
        if let Ok(off) = &segs_off {
            loader.override_global(names::SKB_SEGS_OFF, off, true);
        }
        let sock_off = match (&btf, forms) {
            (_, forms::Choice::Only(Form::Tracepoint)) => Err("not wanted".into()),
            (Ok(btf), _) => forms::sock_offsets(btf),
            (Err(e), _) => Err(e.clone()),
        };
        if let Ok(s) = &sock_off {
            loader.override_global(names::SOCK_OFF, s, true);
        }
        // Whether this kernel's classic record of `global`'s tracepoint has
        // a field: the BTF tracepoint passes the same value as an argument
        // exactly when it does.
        let has = |global: &str, field: fn(&TpOffsets) -> u16| {
            offsets
                .iter()
                .any(|(g, o)| *g == global && field(o) != ABSENT)
        };
        let (retrans_args, reset_args) = match (&btf, &sock_off) {
            (Ok(btf), Ok(_)) => (
                wants
                    .retrans
                    .then(|| forms::retrans_args(btf, has(names::RETRANS_TP, |o| o.err))),
                wants
                    .resets
                    .then(|| forms::reset_args(btf, has(names::SEND_RESET_TP, |o| o.reason))),
            ),
            _ => (None, None),
        };
        if let Some(args) = &retrans_args {
            loader.override_global(names::RETRANS_ARGS, args, true);
        }
        if let Some(args) = &reset_args {
            loader.override_global(names::RESET_ARGS, args, true);
        }
        let probe_args = match (&btf, wants.rtt) {
            (Ok(btf), true) => forms::probe_args(btf),
            (Err(e), true) => Err(e.clone()),
            (_, false) => Err("not wanted".into()),
        };
        if let Ok(args) = &probe_args {
            loader.override_global(names::PROBE_ARGS, args, true);
        }
        let cong_off = match (&btf, wants.retrans) {
            (Ok(btf), true) => cong_offsets(btf),
            (Err(e), true) => Err(e.clone()),
            (_, false) => Err("not wanted".into()),
        };
        if let Ok(off) = &cong_off {
            loader.override_global(names::CONG_OFF, off, true);
        }
        // What each wanted BTF form needs, found while the BTF is parsed
        // (it is dropped before the object is loaded: megabytes).
        let prepared: Vec<(u8, Result<forms::Prepared, String>)> = Hook::wanted(&wants)
            .filter(|h| h.btf.is_some())
            .map(|h| {
                let p = match (&btf, &sock_off, &probe_args) {
                    (_, _, Err(e)) if h.id == hook::PROBE => Err(e.clone()),
                    (Ok(btf), Ok(_), _) => forms::prepare(btf, h),
                    (Err(e), _, _) | (_, Err(e), _) => Err(e.clone()),
                };
                (h.id, p)
            })
            .collect();
        let netns_off = btf.and_then(|btf| netns_offsets(&btf));
        if let Ok(off) = &netns_off {
            loader.override_global(names::NETNS_OFF, off, true);
        }
        let cpus = rings::possible_cpus()?;
        let plan = rings::Plan::new(ring_bytes, cpus);
        loader.map_max_entries(names::EVENTS, cpus);
        let each = u64::from(plan.bytes);
        loader.override_global(names::RING_BYTES, &each, true);
        loader.override_global(names::FILTER, &filter, true);
        let pidns = own_pid_namespace();
        loader.override_global(names::PIDNS, &pidns, true);
        loader.override_global(names::RTT_ON, &rtt_mode, true);
        if rtt_mode != tracer_common::rtt_mode::BY_TUPLE {
            // The tuple -> socket map is preallocated; unused, keep it tiny.
            loader.map_max_entries(names::RTT_SOCKS, 1);
        }
        for (global, o) in &offsets {
            loader.override_global(global, o, true);
        }
        if let Ok(syscalls) = &syscall_offsets {
            for (global, o) in syscalls {
                loader.override_global(global, o, true);
            }
        }
        let mut bpf = loader.load(OBJECT).map_err(|e| {
            let why = match &memlock {
                Ok(()) => String::new(),
                Err(limit) => format!(
                    "; RLIMIT_MEMLOCK is {limit} and could not be raised, and kernels before 5.11 charge BPF maps to it: raise it (`ulimit -l unlimited`, or LimitMEMLOCK=infinity in a systemd unit)"
                ),
            };
            anyhow::Error::new(e).context(format!(
                "the kernel refused tcptrace's BPF maps or programs (is BPF disabled, or are you missing CAP_BPF?){why}"
            ))
        })?;
        let rings = rings::install(&mut bpf, plan, cpus)?;
        let mut report = Report {
            reset_reasons,
            netns: netns_off.is_ok(),
            ..Report::default()
        };
        report.hooks.push(HookStatus {
            hook: match &netns_off {
                Ok(o) => format!(
                    "BTF: network namespace at sk+{} -> net+{} (and skb+{} -> dev+{})",
                    o.sk_net, o.net_inum, o.skb_dev, o.dev_net
                ),
                Err(_) => "BTF: network namespace of a socket".into(),
            },
            result: netns_off.map(drop),
        });
        if wants.retrans {
            report.hooks.push(HookStatus {
                hook: match &segs_off {
                    Ok(off) => format!("BTF: TCP_SKB_CB(skb)->tcp_gso_segs at skb+{off}"),
                    Err(_) => "BTF: TCP_SKB_CB(skb)->tcp_gso_segs".into(),
                },
                result: segs_off.map(drop),
            });
            report.hooks.push(HookStatus {
                hook: match &cong_off {
                    Ok(o) => format!("BTF: congestion state (retransmit kinds) at sk+{}", o.at),
                    Err(_) => "BTF: congestion state (retransmit kinds)".into(),
                },
                result: cong_off.map(drop),
            });
        }
        for hook in Hook::wanted(&wants) {
            if let Some((_, prepared)) = prepared.iter().find(|(id, _)| *id == hook.id) {
                let (chosen, tried) = forms::attach(&mut bpf, hook, prepared, forms)?;
                report.hooks.extend(tried);
                report.forms.push((hook.id, chosen));
                continue;
            }
            attach_tracepoint(&mut bpf, hook).with_context(|| {
                format!(
                    "cannot attach to tracepoint {}{}",
                    hook.title(),
                    privileges::attach_hint().unwrap_or_default()
                )
            })?;
            report.hooks.push(HookStatus {
                hook: hook.title(),
                result: Ok(()),
            });
        }
        if wants.connect {
            let (plan, tried) = connect::attach(&mut bpf, syscall_offsets.map(drop), connect);
            if let (connect::Choice::Only(only), None) = (connect, plan) {
                let why = tried
                    .iter()
                    .find_map(|h| h.result.as_ref().err())
                    .map_or("", String::as_str);
                bail!(
                    "the connect plan `{}` ({only}) cannot attach on this kernel: {why}; leave out --connect-plan to use the first plan that works (`tcptrace check` lists them)",
                    only.short()
                );
            }
            report.hooks.extend(tried);
            report.connect = plan;
        }
        Ok(Self {
            bpf,
            report,
            rings: Some(rings),
        })
    }

    /// Events the kernel programs skipped, or sent with a field unknown,
    /// because a field they needed was absent on this kernel or could not
    /// be read: the sum over hooks and CPUs since load (monotonic).
    pub fn unreadable_total(&self) -> Result<u64> {
        Ok(self.unreadable_by_hook()?.iter().map(|(_, n)| n).sum())
    }

    /// [`Probe::unreadable_total`] by hook, for every row of [`HOOKS`].
    pub fn unreadable_by_hook(&self) -> Result<Vec<(&'static Hook, u64)>> {
        let map = self
            .bpf
            .map(names::UNREADABLE)
            .context("the object has no UNREADABLE map")?;
        let counts = PerCpuArray::<_, [u64; hook::SLOTS as usize]>::try_from(map)?;
        let per_cpu = counts
            .get(&0, 0)
            .context("reading the kernel's unreadable-field counts")?;
        Ok(HOOKS
            .iter()
            .map(|h| {
                let slot = usize::from(h.id);
                (
                    h,
                    per_cpu
                        .iter()
                        .map(|c| c.get(slot).copied().unwrap_or(0))
                        .sum(),
                )
            })
            .collect())
    }

    /// The event rings (once).
    pub fn take_rings(&mut self) -> Result<rings::Rings> {
        self.rings.take().context("the event rings were taken")
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
/// running on that CPU, and those the nested programs made up for (see
/// [`misses`]).
pub fn nested_misses(probe: &Probe) -> Nested {
    misses::recursion_misses(&probe.bpf)
}

/// Sums the per-CPU lost counter.
pub fn lost_total(lost: &PerCpuArray<MapData, u64>) -> u64 {
    lost.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0)
}

pub(crate) fn attach_tracepoint(bpf: &mut Ebpf, hook: &Hook) -> Result<()> {
    let Attach::Tracepoint { group, name, .. } = hook.attach else {
        bail!("{} is not a tracepoint program", hook.program);
    };
    let prog: &mut TracePoint = bpf
        .program_mut(hook.program)
        .with_context(|| format!("the object has no program {}", hook.program))?
        .try_into()?;
    prog.load()?;
    prog.attach(group, name)?;
    Ok(())
}
