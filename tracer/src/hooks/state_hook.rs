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

fn attach_btf(bpf: &mut Ebpf) -> Result<()> {
    let btf = AyaBtf::from_sys_fs().context("reading the kernel's BTF")?;
    let prog: &mut BtfTracePoint = bpf
        .program_mut(BTF_PROGRAM)
        .with_context(|| format!("the object has no program {BTF_PROGRAM}"))?
        .try_into()?;
    prog.load(BTF_TRACEPOINT, &btf)?;
    prog.attach()?;
    Ok(())
}

/// Attaches the state hook(s) `choice` asks for; `offsets` says whether
/// the BTF program could be given its offsets. Returns the hook events
/// come from and what each try gave.
pub fn attach(
    bpf: &mut Ebpf,
    row: &Hook,
    offsets: &Result<SockOffsets, String>,
    choice: Choice,
) -> Result<(StateHook, Vec<HookStatus>)> {
    let mut tried = Vec::new();
    let mut chosen = None;
    if choice.tries(StateHook::Btf) {
        let r = match offsets {
            Ok(_) => attach_btf(bpf).map_err(|e| format!("{e:#}")),
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
        attach_tracepoint(bpf, row)
            .with_context(|| format!("cannot attach to tracepoint {}", row.title()))?;
        chosen.get_or_insert(StateHook::Tracepoint);
        tried.push(HookStatus {
            hook: StateHook::Tracepoint.name().into(),
            result: Ok(()),
        });
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
        let o = sock_offsets(&btf).unwrap();
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
    fn the_kernel_crate_has_the_btf_program() {
        let src = include_str!("../../../tracer-ebpf/src/state_btf.rs");
        assert!(src.contains(&format!("pub fn {BTF_PROGRAM}(")));
        assert!(src.contains(&format!(
            "#[btf_tracepoint(function = \"{BTF_TRACEPOINT}\")]"
        )));
        assert!(src.contains("static SOCK_OFF: Global<SockOffsets>"));
    }
}
