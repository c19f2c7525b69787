//! The two forms of a hook that has a BTF tracepoint program besides its
//! classic one: state transitions (every connection of the host),
//! retransmits, resets, RTT samples (every segment received) and socket
//! errors. The BTF form, `tp_btf/<tracepoint>`, where this kernel
//! allows it: cheaper per event (no record filled before the program
//! runs), and skipped only when this very program is already running on
//! the CPU, those few handled by its second program; else the classic
//! tracepoint of the hook table, skipped whenever *any* kprobe or
//! tracepoint program runs on the CPU. Chosen by trying to load and
//! attach; `--hook-type` picks one, `tcptrace check` tries both.

use std::fmt;

use anyhow::{Context as _, Result, bail};
use aya::{Btf as AyaBtf, Ebpf, programs::BtfTracePoint};
use tracer_common::{
    KERNEL_OFFSET_MASK, NO_OFFSET, ProbeArgs, ResetArgs, RetransArgs, SKB_OFFSET_MASK, SockOffsets,
};

use super::{
    HookStatus, attach_tracepoint,
    table::{BtfForm, Hook},
};
use crate::btf::Btf;

/// Where a hook's events come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `tp_btf/<tracepoint>`: needs kernel BTF (5.5+).
    Btf,
    /// The classic tracepoint, with offsets from its format file.
    Tracepoint,
}

impl Form {
    pub const ORDER: [Form; 2] = [Self::Btf, Self::Tracepoint];

    /// The name on the command line (`--hook-type`).
    pub fn short(self) -> &'static str {
        match self {
            Self::Btf => "tp_btf",
            Self::Tracepoint => "tracepoint",
        }
    }

    pub fn from_short(s: &str) -> Option<Self> {
        Self::ORDER.into_iter().find(|h| h.short() == s)
    }

    /// The name in reports of `row` in this form.
    pub fn name(self, row: &Hook) -> String {
        match (self, row.btf) {
            (Self::Btf, Some(b)) => format!("tp_btf:{}", b.tracepoint),
            _ => row.title(),
        }
    }
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// Which forms to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The first in [`Form::ORDER`] that attaches.
    First,
    /// Only this one.
    Only(Form),
    /// Both, to report on each (`tcptrace check`; events come twice).
    All,
}

impl Choice {
    fn tries(self, form: Form) -> bool {
        match self {
            Self::First | Self::All => true,
            Self::Only(h) => h == form,
        }
    }
}

/// What a BTF program needs to load: the id of its tracepoint's
/// `btf_trace_<tracepoint>` type in the kernel's BTF.
#[derive(Clone, Debug)]
pub struct Prepared {
    attach_id: u32,
}

/// Reads [`Prepared`] for `row` from the kernel's BTF.
pub fn prepare(btf: &Btf, row: &Hook) -> Result<Prepared, String> {
    let form = row
        .btf
        .ok_or_else(|| format!("{} has no BTF program", row.title()))?;
    let name = format!("btf_trace_{}", form.tracepoint);
    Ok(Prepared {
        attach_id: btf
            .typedef_id(&name)
            .ok_or_else(|| format!("BTF has no {name}"))?,
    })
}

/// Where the BTF programs find the records' fields in a `struct sock`,
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
        state: common("skc_state")?,
        num: common("skc_num")?,
        err: at("sock", &["sk_err"])?,
    })
}

/// What the BTF retransmit program needs besides the socket's offsets:
/// where a buffer's first sequence number is (optional: without it two
/// retransmits of a socket in a row look alike to the nested program)
/// and whether the tracepoint passes `err` (its classic record has the
/// field exactly when it does).
pub fn retrans_args(btf: &Btf, has_err: bool) -> RetransArgs {
    RetransArgs {
        skb_seq: skb_seq(btf),
        has_err: u32::from(has_err),
    }
}

/// What the BTF RTT program needs besides the socket's offsets: where
/// `tcp_sock.srtt_us` is (required) and a segment's first sequence number
/// (optional, as for [`retrans_args`]).
pub fn probe_args(btf: &Btf) -> Result<ProbeArgs, String> {
    let srtt_us = btf
        .member_offset("tcp_sock", "srtt_us")
        .ok_or("BTF has no tcp_sock.srtt_us")?;
    if srtt_us + 4 > KERNEL_OFFSET_MASK + 1 {
        return Err(format!("tcp_sock.srtt_us at +{srtt_us} is out of reach"));
    }
    Ok(ProbeArgs {
        srtt_us,
        skb_seq: skb_seq(btf),
    })
}

/// `TCP_SKB_CB(skb)->seq`: bytes from the `struct sk_buff`, or
/// [`NO_OFFSET`].
fn skb_seq(btf: &Btf) -> u32 {
    btf.member_offset("sk_buff", "cb")
        .zip(btf.member_offset("tcp_skb_cb", "seq"))
        .map(|(cb, seq)| cb + seq)
        .filter(|off| off + 4 <= SKB_OFFSET_MASK + 1)
        .unwrap_or(NO_OFFSET)
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

/// What the BTF send-reset program needs besides the socket's offsets:
/// where a buffer's headers are (optional: without them a reset sent for
/// no socket is counted as unreadable) and whether the tracepoint passes
/// `reason` (its classic record has the field exactly when it does).
pub fn reset_args(btf: &Btf, has_reason: bool) -> ResetArgs {
    let at = |m: &str| {
        btf.member_offset("sk_buff", m)
            .filter(|off| off + 8 <= KERNEL_OFFSET_MASK + 1)
            .unwrap_or(NO_OFFSET)
    };
    ResetArgs {
        skb_head: at("head"),
        skb_network_header: at("network_header"),
        skb_transport_header: at("transport_header"),
        has_reason: u32::from(has_reason),
    }
}

/// Loads and attaches the BTF program, then its second for nested
/// events (attached after it: the kernel calls them in that order).
fn attach_btf(bpf: &mut Ebpf, form: &BtfForm, prepared: &Prepared) -> Result<()> {
    let raw = btf_with_typedef_at(
        prepared.attach_id,
        &format!("btf_trace_{}", form.tracepoint),
    );
    let btf = AyaBtf::parse(&raw, aya::Endianness::default())
        .context("building the tracepoint's BTF type")?;
    let mut attach = |name: &str| -> Result<()> {
        let prog: &mut BtfTracePoint = bpf
            .program_mut(name)
            .with_context(|| format!("the object has no program {name}"))?
            .try_into()?;
        prog.load(form.tracepoint, &btf)
            .with_context(|| format!("loading {name}"))?;
        prog.attach().with_context(|| format!("attaching {name}"))?;
        Ok(())
    };
    attach(form.program)?;
    if let Err(e) = attach(form.nested) {
        // Both or neither: the classic tracepoint may be attached next,
        // and the first alone would send every event twice.
        if let Some(p) = bpf.program_mut(form.program) {
            let p: Result<&mut BtfTracePoint, _> = p.try_into();
            if let Ok(p) = p {
                let _ = p.unload();
            }
        }
        return Err(e);
    }
    Ok(())
}

/// Attaches the form(s) of `row` that `choice` asks for; `prepared` says
/// whether the BTF program could be given what it needs. Returns the form
/// events come from and what each try gave.
pub fn attach(
    bpf: &mut Ebpf,
    row: &Hook,
    prepared: &Result<Prepared, String>,
    choice: Choice,
) -> Result<(Form, Vec<HookStatus>)> {
    let mut tried = Vec::new();
    let mut chosen = None;
    if choice.tries(Form::Btf) {
        let r = match (prepared, row.btf) {
            (Ok(p), Some(form)) => attach_btf(bpf, &form, p).map_err(|e| format!("{e:#}")),
            (Err(e), _) => Err(e.clone()),
            (Ok(_), None) => Err(format!("{} has no BTF program", row.title())),
        };
        if r.is_ok() {
            chosen = Some(Form::Btf);
        }
        tried.push(HookStatus {
            hook: Form::Btf.name(row),
            result: r,
        });
    }
    if choice.tries(Form::Tracepoint) && (chosen.is_none() || choice == Choice::All) {
        match attach_tracepoint(bpf, row)
            .with_context(|| format!("cannot attach to tracepoint {}", row.title()))
        {
            Ok(()) => {
                chosen.get_or_insert(Form::Tracepoint);
                tried.push(HookStatus {
                    hook: Form::Tracepoint.name(row),
                    result: Ok(()),
                });
            }
            // `check` tries both: the fallback's failure is reported, not
            // fatal, when the BTF hook works (6.1's verifier refuses the
            // classic state program with every hook on: its stack is 32
            // bytes over the limit there).
            Err(e) if chosen.is_some() => tried.push(HookStatus {
                hook: Form::Tracepoint.name(row),
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
                "the hook `{}` cannot attach on this kernel: {why}; leave out --hook-type to fall back to the classic tracepoint",
                Form::Btf.name(row)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::HOOKS;

    #[test]
    fn names_round_trip() {
        for h in Form::ORDER {
            assert_eq!(Form::from_short(h.short()), Some(h));
        }
        assert_eq!(Form::from_short("kprobe"), None);
    }

    #[test]
    fn sock_offsets_of_this_kernel() {
        let btf = Btf::from_sys_fs().expect("this project's machines have kernel BTF");
        let o = sock_offsets(&btf).unwrap();
        // struct sock_common starts with the address pair, then the ports,
        // then the family and the state; IPv6 addresses follow later in it.
        assert_eq!(
            (o.daddr, o.saddr, o.dport, o.num, o.family, o.state),
            (0, 4, 12, 14, 16, 18),
            "{o:?}"
        );
        assert!(o.saddr_v6 > o.family && o.daddr_v6 > o.family, "{o:?}");
        assert!(o.protocol > 100 && o.sport > o.protocol, "{o:?}");
        // The control block is within the buffer's first 4 KiB, `seq` first
        // in it.
        let r = retrans_args(&btf, true);
        assert!(r.skb_seq != NO_OFFSET && r.skb_seq > 0, "{r:?}");
        assert_eq!(r.has_err, 1);
        let r = reset_args(&btf, true);
        assert!(
            r.skb_head != NO_OFFSET
                && r.skb_network_header != NO_OFFSET
                && r.skb_transport_header != NO_OFFSET
                && r.skb_network_header != r.skb_transport_header,
            "{r:?}"
        );
        // srtt_us lies in the tcp_sock, past the sock and the inet and
        // connection socks around it.
        let p = probe_args(&btf).unwrap();
        assert!(
            p.srtt_us > o.sport && p.skb_seq == retrans_args(&btf, true).skb_seq,
            "{p:?}"
        );
        for row in HOOKS.iter().filter(|h| h.btf.is_some()) {
            prepare(&btf, row).unwrap();
        }
    }

    #[test]
    fn the_stub_btf_holds_the_typedef_at_its_id() {
        let raw = btf_with_typedef_at(5, "btf_trace_x");
        let btf = AyaBtf::parse(&raw, aya::Endianness::default()).unwrap();
        let id = btf.id_by_type_name_kind("btf_trace_x", aya_obj::btf::BtfKind::Typedef);
        assert_eq!(id.unwrap(), 5);
        assert_eq!(Btf::parse(raw).unwrap().typedef_id("btf_trace_x"), Some(5));
    }

    /// Every row's BTF programs are in the kernel crate, on its tracepoint.
    #[test]
    fn the_kernel_crate_has_the_btf_programs() {
        let sources = [
            include_str!("../../../tracer-ebpf/src/state_btf.rs"),
            include_str!("../../../tracer-ebpf/src/retrans_btf.rs"),
            include_str!("../../../tracer-ebpf/src/reset_btf.rs"),
            include_str!("../../../tracer-ebpf/src/rtt_btf.rs"),
            include_str!("../../../tracer-ebpf/src/error_btf.rs"),
        ];
        let forms: Vec<BtfForm> = HOOKS.iter().filter_map(|h| h.btf).collect();
        assert_eq!(forms.len(), 7);
        for form in forms {
            // A pair is one `nested::btf_pair!` invocation.
            let pair = format!(
                "tracepoint: \"{}\",\n    programs: ({}, {}),",
                form.tracepoint, form.program, form.nested
            );
            let n: usize = sources.iter().map(|s| s.matches(&pair).count()).sum();
            assert_eq!(n, 1, "{pair}");
        }
    }
}
