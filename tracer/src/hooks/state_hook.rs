//! The hook for TCP state transitions, which runs on every connection of
//! the host: the BTF tracepoint `tp_btf/inet_sock_set_state` where this
//! kernel allows it (cheaper per event, and skipped only when this very
//! program is already running on the CPU), else the classic tracepoint
//! `sock:inet_sock_set_state` of the hook table. Chosen by trying to load
//! and attach; `--state-hook` picks one, `tcptrace check` tries both.

use std::fmt;

use anyhow::{Context as _, Result, bail};
use aya::{Btf as AyaBtf, Ebpf, programs::BtfTracePoint};
use tracer_common::{KERNEL_OFFSET_MASK, SockOffsets};

use super::{HookStatus, attach_tracepoint, table::Hook};
use crate::btf::Btf;

/// The BTF program's name in the object, and its tracepoint.
pub const BTF_PROGRAM: &str = "inet_sock_set_state_btf";
/// Its second program, which handles the transitions the kernel skipped
/// for the first because it was running on the CPU (`misses`).
pub const BTF_NESTED_PROGRAM: &str = "inet_sock_set_state_btf_nested";
const BTF_TRACEPOINT: &str = "inet_sock_set_state";

/// Where state transitions come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateHook {
    /// `tp_btf/inet_sock_set_state`: needs kernel BTF (5.5+).
    Btf,
    /// The classic tracepoint, with offsets from its format file.
    Tracepoint,
}

impl StateHook {
    pub const ORDER: [StateHook; 2] = [Self::Btf, Self::Tracepoint];

    /// The name on the command line (`--state-hook`).
    pub fn short(self) -> &'static str {
        match self {
            Self::Btf => "tp_btf",
            Self::Tracepoint => "tracepoint",
        }
    }

    pub fn from_short(s: &str) -> Option<Self> {
        Self::ORDER.into_iter().find(|h| h.short() == s)
    }

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Btf => "tp_btf:inet_sock_set_state",
            Self::Tracepoint => "sock:inet_sock_set_state",
        }
    }
}

impl fmt::Display for StateHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which state hooks to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The first in [`StateHook::ORDER`] that attaches.
    First,
    /// Only this one.
    Only(StateHook),
    /// Both, to report on each (`tcptrace check`; events come twice).
    All,
}

impl Choice {
    fn tries(self, hook: StateHook) -> bool {
        match self {
            Self::First | Self::All => true,
            Self::Only(h) => h == hook,
        }
    }
}

/// What the BTF program needs from the kernel's BTF.
#[derive(Clone, Copy, Debug)]
pub struct BtfState {
    pub offsets: SockOffsets,
    /// The id of the tracepoint's `btf_trace_inet_sock_set_state` type.
    attach_id: u32,
}

/// Reads [`BtfState`] from the kernel's BTF.
pub fn prepare(btf: &Btf) -> Result<BtfState, String> {
    let name = format!("btf_trace_{BTF_TRACEPOINT}");
    Ok(BtfState {
        offsets: sock_offsets(btf)?,
        attach_id: btf
            .typedef_id(&name)
            .ok_or_else(|| format!("BTF has no {name}"))?,
    })
}

/// Where the BTF program finds the record's fields in a `struct sock`,
/// from kernel BTF (see [`SockOffsets`]); every one is needed.
pub fn sock_offsets(btf: &Btf) -> Result<SockOffsets, String> {
    let at = |ty: &str, path: &[&str]| -> Result<u32, String> {
        let off = btf
            .member_path_offset(ty, path)
            .ok_or_else(|| format!("BTF has no {ty}.{}", path.join(".")))?;
        if off + 16 > KERNEL_OFFSET_MASK + 1 {
            return Err(format!("{ty}.{} at +{off} is out of reach", path.join(".")));
        }
        Ok(off)
    };
    let common = |m: &str| at("sock", &["__sk_common", m]);
    Ok(SockOffsets {
        family: common("skc_family")?,
        protocol: at("sock", &["sk_protocol"])?,
        sport: at("inet_sock", &["inet_sport"])?,
        dport: common("skc_dport")?,
        saddr: common("skc_rcv_saddr")?,
        daddr: common("skc_daddr")?,
        saddr_v6: common("skc_v6_rcv_saddr")?,
        daddr_v6: common("skc_v6_daddr")?,
    })
}

/// BTF that holds, at `id`, a typedef called `name`, and before it
/// placeholders: all aya reads to load a BTF tracepoint program is the id
/// of `btf_trace_<tracepoint>`, and parsing the kernel's whole BTF with aya
/// takes long (seconds in an emulated VM) and many megabytes; the
/// project's own parser found the id.
fn btf_with_typedef_at(id: u32, name: &str) -> Vec<u8> {
    const KIND_FWD: u32 = 7;
    const KIND_TYPEDEF: u32 = 8;
    let mut types = Vec::with_capacity(12 * id as usize);
    for _ in 1..id {
        types.extend(
            [0u32, KIND_FWD << 24, 0]
                .iter()
                .flat_map(|w| w.to_le_bytes()),
        );
    }
    types.extend(
        [1u32, KIND_TYPEDEF << 24, 0]
            .iter()
            .flat_map(|w| w.to_le_bytes()),
    );
    let strings = [b"\0", name.as_bytes(), b"\0"].concat();
    let mut out = Vec::with_capacity(24 + types.len() + strings.len());
    out.extend(0xeb9fu16.to_le_bytes());
    out.extend([1u8, 0]);
    for w in [
        24u32,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ] {
        out.extend(w.to_le_bytes());
    }
    out.extend(types);
    out.extend(strings);
    out
}

/// Loads and attaches the BTF program, then its second for nested
/// transitions (attached after it: the kernel calls them in that order).
fn attach_btf(bpf: &mut Ebpf, state: &BtfState) -> Result<()> {
    let raw = btf_with_typedef_at(state.attach_id, &format!("btf_trace_{BTF_TRACEPOINT}"));
    let btf = AyaBtf::parse(&raw, aya::Endianness::default())
        .context("building the tracepoint's BTF type")?;
    let mut attach = |name: &str| -> Result<()> {
        let prog: &mut BtfTracePoint = bpf
            .program_mut(name)
            .with_context(|| format!("the object has no program {name}"))?
            .try_into()?;
        prog.load(BTF_TRACEPOINT, &btf)
            .with_context(|| format!("loading {name}"))?;
        prog.attach().with_context(|| format!("attaching {name}"))?;
        Ok(())
    };
    attach(BTF_PROGRAM)?;
    if let Err(e) = attach(BTF_NESTED_PROGRAM) {
        // Both or neither: the classic tracepoint may be attached next,
        // and the first alone would send every transition twice.
        if let Some(p) = bpf.program_mut(BTF_PROGRAM) {
            let p: Result<&mut BtfTracePoint, _> = p.try_into();
            if let Ok(p) = p {
                let _ = p.unload();
            }
        }
        return Err(e);
    }
    Ok(())
}

/// Attaches the state hook(s) `choice` asks for; `offsets` says whether
/// the BTF program could be given its offsets. Returns the hook events
/// come from and what each try gave.
pub fn attach(
    bpf: &mut Ebpf,
    row: &Hook,
    offsets: &Result<BtfState, String>,
    choice: Choice,
) -> Result<(StateHook, Vec<HookStatus>)> {
    let mut tried = Vec::new();
    let mut chosen = None;
    if choice.tries(StateHook::Btf) {
        let r = match offsets {
            Ok(state) => attach_btf(bpf, state).map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.clone()),
        };
        if r.is_ok() {
            chosen = Some(StateHook::Btf);
        }
        tried.push(HookStatus {
            hook: StateHook::Btf.name().into(),
            result: r,
        });
    }
    if choice.tries(StateHook::Tracepoint) && (chosen.is_none() || choice == Choice::All) {
        match attach_tracepoint(bpf, row)
            .with_context(|| format!("cannot attach to tracepoint {}", row.title()))
        {
            Ok(()) => {
                chosen.get_or_insert(StateHook::Tracepoint);
                tried.push(HookStatus {
                    hook: StateHook::Tracepoint.name().into(),
                    result: Ok(()),
                });
            }
            // `check` tries both: the fallback's failure is reported, not
            // fatal, when the BTF hook works (6.1's verifier refuses the
            // classic program with every hook on: its stack is 32 bytes
            // over the limit there).
            Err(e) if chosen.is_some() => tried.push(HookStatus {
                hook: StateHook::Tracepoint.name().into(),
                result: Err(format!("{e:#}")),
            }),
            Err(e) => return Err(e),
        }
    }
    match chosen {
        Some(h) => Ok((h, tried)),
        None => {
            let why = tried
                .iter()
                .find_map(|h| h.result.as_ref().err())
                .map_or("", String::as_str);
            bail!(
                "the state hook `tp_btf` cannot attach on this kernel: {why}; leave out --state-hook to fall back to the classic tracepoint"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for h in StateHook::ORDER {
            assert_eq!(StateHook::from_short(h.short()), Some(h));
        }
        assert_eq!(StateHook::from_short("kprobe"), None);
    }

    #[test]
    fn sock_offsets_of_this_kernel() {
        let btf = Btf::from_sys_fs().expect("this project's machines have kernel BTF");
        let o = prepare(&btf).unwrap().offsets;
        // struct sock_common starts with the address pair, then the ports,
        // then the family; IPv6 addresses follow later in it.
        assert_eq!(
            (o.daddr, o.saddr, o.dport, o.family),
            (0, 4, 12, 16),
            "{o:?}"
        );
        assert!(o.saddr_v6 > o.family && o.daddr_v6 > o.family, "{o:?}");
        assert!(o.protocol > 100 && o.sport > o.protocol, "{o:?}");
    }

    #[test]
    fn the_stub_btf_holds_the_typedef_at_its_id() {
        let raw = btf_with_typedef_at(5, "btf_trace_x");
        let btf = AyaBtf::parse(&raw, aya::Endianness::default()).unwrap();
        let id = btf.id_by_type_name_kind("btf_trace_x", aya_obj::btf::BtfKind::Typedef);
        assert_eq!(id.unwrap(), 5);
        assert_eq!(Btf::parse(raw).unwrap().typedef_id("btf_trace_x"), Some(5));
    }

    #[test]
    fn the_kernel_crate_has_the_btf_program() {
        let src = include_str!("../../../tracer-ebpf/src/state_btf.rs");
        assert!(src.contains(&format!("pub fn {BTF_PROGRAM}(")));
        assert!(src.contains(&format!("pub fn {BTF_NESTED_PROGRAM}(")));
        assert!(src.contains(&format!(
            "#[btf_tracepoint(function = \"{BTF_TRACEPOINT}\")]"
        )));
        assert!(src.contains("static SOCK_OFF: Global<SockOffsets>"));
    }
}
