//! Loading the kernel programs and attaching them: the embedded object, the
//! privilege check and locked-memory limit, the tracefs offsets handed over
//! as globals, and the hook plan. Which programs exist, what needs them and
//! what they read is the one table of hooks ([`table::HOOKS`]); the connect
//! plan tries its rows in turn ([`connect`]). The loaded [`Probe`] also
//! reports the kernel's per-hook count of unreadable fields.

pub mod connect;
mod misses;
pub mod privileges;
pub mod table;

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use tracer_common::{
    ABSENT, KERNEL_OFFSET_MASK, KernelFilter, NetnsOffsets, SKB_OFFSET_MASK, TpOffsets, hook, names,
};

use crate::{
    btf::Btf,
    event::{Family, TcpState},
    filter::Filter,
    tracefs,
};
pub use connect::ConnectPlan;
pub use table::{Attach, HOOKS, Hook, Need};

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

/// The kernel pre-filter for `filter` and a view that `wants` these hooks,
/// made here and nowhere else: a superset of [`Filter::matches`] (the
/// kernel cannot see owners, and listeners always pass so accepted sockets
/// can be attributed), with only the transitions the view needs.
pub fn kernel_filter(filter: &Filter, wants: &Wants) -> KernelFilter {
    let mut k = KernelFilter::ANY;
    k.family = match filter.family {
        None => 0,
        Some(Family::V4) => tracer_common::AF_INET,
        Some(Family::V6) => tracer_common::AF_INET6,
    };
    for p in [filter.port, filter.lport, filter.rport]
        .into_iter()
        .flatten()
    {
        if !k.ports[..k.nports as usize].contains(&p) {
            k.ports[k.nports as usize] = p;
            k.nports += 1;
        }
    }
    k.state_mask = wants.state_mask();
    k
}

/// The PID namespace tcptrace runs in, for the programs to report pids as
/// it sees them (and as `/proc`, which seeds owners, shows them); zero in
/// the initial namespace, where the kernel's pids are already ours.
fn own_pid_namespace() -> tracer_common::PidNs {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self/ns/pid") {
        Ok(m) if m.ino() != tracer_common::INIT_PID_NS_INO => tracer_common::PidNs {
            dev: m.dev(),
            ino: m.ino(),
        },
        _ => tracer_common::PidNs::default(),
    }
}

/// The loaded programs and their maps.
pub struct Probe {
    pub bpf: Ebpf,
    pub report: Report,
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
        let netns_off = btf.and_then(|btf| netns_offsets(&btf));
        if let Ok(off) = &netns_off {
            loader.override_global(names::NETNS_OFF, off, true);
        }
        loader.map_max_entries(names::EVENTS, ring_bytes);
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
        }
        for hook in Hook::wanted(&wants) {
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
        Ok(Self { bpf, report })
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
        let counts = PerCpuArray::<_, u64>::try_from(map)?;
        HOOKS
            .iter()
            .map(|h| {
                let per_cpu = counts
                    .get(&u32::from(h.id), 0)
                    .with_context(|| format!("reading the unreadable count of {}", h.program))?;
                Ok((h, per_cpu.iter().sum()))
            })
            .collect()
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

/// Offset from an skb of `TCP_SKB_CB(skb)->tcp_gso_segs`, from kernel BTF,
/// within what the program can address ([`SKB_OFFSET_MASK`]).
fn skb_segs_offset(btf: &Btf) -> Result<u32, String> {
    let cb = btf
        .member_offset("sk_buff", "cb")
        .ok_or("BTF has no sk_buff.cb")?;
    let segs = btf
        .member_offset("tcp_skb_cb", "tcp_gso_segs")
        .ok_or("BTF has no tcp_skb_cb.tcp_gso_segs")?;
    checked_skb_offset(cb + segs)
}

/// `off` if a 2-byte read there stays within [`SKB_OFFSET_MASK`].
fn checked_skb_offset(off: u32) -> Result<u32, String> {
    if off + 2 > SKB_OFFSET_MASK + 1 {
        return Err(format!(
            "tcp_gso_segs at skb+{off} is beyond the {} bytes tcptrace's program can address",
            SKB_OFFSET_MASK + 1
        ));
    }
    Ok(off)
}

/// Where the programs find a socket's (and a device's) network namespace,
/// from kernel BTF: `sk->__sk_common.skc_net.net->ns.inum`, and for a
/// reset sent for no socket `skb->dev->nd_net.net->ns.inum`. The socket
/// chain is required (without it every event's namespace is 0, which is
/// what a kernel without network namespaces would give); the skb chain is
/// optional (such resets then carry 0).
pub fn netns_offsets(btf: &Btf) -> Result<NetnsOffsets, String> {
    let at = |ty: &str, path: &[&str]| -> Result<u32, String> {
        let off = btf
            .member_path_offset(ty, path)
            .ok_or_else(|| format!("BTF has no {ty}.{}", path.join(".")))?;
        checked_kernel_offset(off, ty, path)
    };
    let mut o = NetnsOffsets::ABSENT;
    o.sk_net = at("sock", &["__sk_common", "skc_net", "net"])?;
    o.net_inum = at("net", &["ns", "inum"])?;
    if let (Ok(dev), Ok(net)) = (
        at("sk_buff", &["dev"]),
        at("net_device", &["nd_net", "net"]),
    ) {
        (o.skb_dev, o.dev_net) = (dev, net);
    }
    Ok(o)
}

/// `off` if an 8-byte read there stays within [`KERNEL_OFFSET_MASK`].
fn checked_kernel_offset(off: u32, ty: &str, path: &[&str]) -> Result<u32, String> {
    if off + 8 > KERNEL_OFFSET_MASK + 1 {
        return Err(format!(
            "{ty}.{} at +{off} is beyond the {} bytes tcptrace's programs can address",
            path.join("."),
            KERNEL_OFFSET_MASK + 1
        ));
    }
    Ok(off)
}

/// Offsets of the syscall plan's tracepoints, by global.
fn syscall_offsets(root: &std::path::Path) -> Result<Vec<(&'static str, TpOffsets)>, String> {
    Hook::of_plan(ConnectPlan::Syscalls)
        .map(|hook| {
            let Attach::Tracepoint {
                group,
                name,
                offsets,
            } = hook.attach
            else {
                return Err(format!("{} is not a tracepoint", hook.program));
            };
            let f = tracefs::read_format(root, group, name).map_err(|e| e.to_string())?;
            let o = hook
                .offsets(&f)
                .map_err(|e| format!("{group}:{name} {e}"))?;
            Ok((offsets, o))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skb_offset_bound() {
        assert_eq!(checked_skb_offset(40 + 4), Ok(44));
        assert_eq!(checked_skb_offset(4094), Ok(4094));
        let e = checked_skb_offset(4095).unwrap_err();
        assert!(e.contains("beyond the 4096 bytes"), "{e}");
    }

    #[test]
    fn netns_offsets_of_this_kernel() {
        let btf = Btf::from_sys_fs().expect("this project's machines have kernel BTF");
        let o = netns_offsets(&btf).unwrap();
        assert!(o.sk_net < 256 && o.net_inum < 1024, "{o:?}");
        assert_ne!(o.skb_dev, tracer_common::NO_OFFSET, "{o:?}");
        assert_ne!(o.dev_net, tracer_common::NO_OFFSET, "{o:?}");
        let e = checked_kernel_offset(65_530, "net", &["ns", "inum"]).unwrap_err();
        assert!(e.contains("net.ns.inum at +65530 is beyond"), "{e}");
    }

    #[test]
    fn kernel_prefilter_from_the_filter_and_the_wants() {
        let f = Filter {
            port: Some(80),
            lport: Some(80),
            rport: Some(443),
            family: Some(Family::V6),
            ..Filter::default()
        };
        let k = kernel_filter(&f, &Wants::FLOWS);
        assert_eq!(k.nports, 2);
        assert_eq!(&k.ports[..2], &[80, 443]);
        assert_eq!(k.family, tracer_common::AF_INET6);
        assert_eq!(
            kernel_filter(&Filter::default(), &Wants::FLOWS),
            KernelFilter::ANY
        );
        // Owner-only views get the transitions that attribute owners:
        // SYN_SENT=2, SYN_RECV=3, CLOSE=7, LISTEN=10.
        let w = Wants {
            owners_only: true,
            ..Wants::default()
        };
        assert_eq!(
            kernel_filter(&Filter::default(), &w).state_mask,
            (1 << 2) | (1 << 3) | (1 << 7) | (1 << 10)
        );
    }
}
