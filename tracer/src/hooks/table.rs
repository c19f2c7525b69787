//! The one table of hooks: every kernel program tcptrace has, where it
//! attaches, which views need it, and which tracepoint fields it cannot do
//! without. The loader attaches from it, `tcptrace check` reports from it,
//! and the unit tests hold it against every format fixture and against the
//! `match-tracepoint:` comments of the kernel crate.
//!
//! To add a hook: its program in `tracer-ebpf` (one file per family), an
//! id in `tracer_common::hook`, a row here, and its decoding in `wire.rs`.

use std::fmt;

use tracer_common::{ABSENT, TP_OFFSET_MASK, TpOffsets};

use super::{ConnectPlan, Wants, rows::HOOKS};
use crate::tracefs::{Format, TpField};

/// Where a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// A classic tracepoint; the offsets read from its format file are
    /// handed to the program in the global `offsets`.
    Tracepoint {
        group: &'static str,
        name: &'static str,
        offsets: &'static str,
    },
    /// fexit on a kernel function (needs BTF and no lockdown).
    Fexit(&'static str),
    /// kprobe on each function (needs CONFIG_KPROBES).
    Kprobe(&'static [&'static str]),
    /// kretprobe on each function.
    Kretprobe(&'static [&'static str]),
}

/// Which views need a hook: the member of [`Wants`] that attaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Every view (state transitions, also how owners are learned).
    Always,
    Retrans,
    Resets,
    Errors,
    Rtt,
    /// `connect` views, through this plan of the fallback chain.
    Connect(ConnectPlan),
}

impl Need {
    /// Whether a view with these wants attaches it.
    pub fn wanted(self, w: &Wants) -> bool {
        match self {
            Self::Always => true,
            Self::Retrans => w.retrans,
            Self::Resets => w.resets,
            Self::Errors => w.errors,
            Self::Rtt => w.rtt,
            Self::Connect(_) => w.connect,
        }
    }

    /// What it is for, by the member of [`Wants`] that asks for it (each
    /// view says its wants in its `wants()`), for `tcptrace check`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Always => "every view",
            Self::Retrans => "views that want retransmits",
            Self::Resets => "views that want resets",
            Self::Errors => "views that want socket errors",
            Self::Rtt => "views that want RTT (--rtt)",
            Self::Connect(ConnectPlan::Fexit) => "failed connects, plan fexit",
            Self::Connect(ConnectPlan::Kprobe) => "failed connects, plan kprobe",
            Self::Connect(ConnectPlan::Syscalls) => "failed connects, plan syscalls",
        }
    }
}

/// One kernel program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook {
    /// `tracer_common::hook`: the record's `hook` and the index of its
    /// unreadable-field counter.
    pub id: u8,
    /// The program's name in the object.
    pub program: &'static str,
    pub attach: Attach,
    /// Its BTF form, where it has one (see [`super::forms`]).
    pub btf: Option<BtfForm>,
    pub need: Need,
    /// The record layouts the program understands, in order of preference;
    /// this kernel's must match one (empty: not a tracepoint).
    pub layouts: &'static [Layout],
}

/// A hook's BTF form: two programs on the BTF tracepoint, the second for
/// the events the kernel skipped the first for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtfForm {
    pub program: &'static str,
    pub nested: &'static str,
    pub tracepoint: &'static str,
}

/// One layout of a tracepoint record, as the program reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Fields the program cannot do without.
    pub required: &'static [TpField],
    /// Fields read when the record has them.
    pub optional: &'static [TpField],
}

impl Layout {
    pub(super) const fn new(required: &'static [TpField], optional: &'static [TpField]) -> Self {
        Self { required, optional }
    }

    fn fields(&self) -> impl Iterator<Item = TpField> {
        self.required.iter().chain(self.optional).copied()
    }
}

/// Why a tracepoint's format does not suit its program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// No layout of the row is complete: the fields missing from the
    /// closest one.
    Missing(Vec<TpField>),
    /// A field ends beyond what the program can address
    /// ([`TP_OFFSET_MASK`]).
    TooFar { field: TpField, offset: u16 },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(fields) => {
                let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
                write!(f, "lacks the field(s) {}", names.join(", "))
            }
            Self::TooFar { field, offset } => write!(
                f,
                "has its field {} at offset {offset}, beyond the {} bytes tcptrace's programs can address",
                field.name(),
                u32::from(TP_OFFSET_MASK) + 1
            ),
        }
    }
}

impl Hook {
    /// The rows a view with `wants` attaches (connect plans apart: they
    /// are tried in turn by [`super::connect`]).
    pub fn wanted(wants: &Wants) -> impl Iterator<Item = &'static Hook> {
        HOOKS
            .iter()
            .filter(move |h| h.need.wanted(wants) && !matches!(h.need, Need::Connect(_)))
    }

    /// The rows of one connect plan.
    pub fn of_plan(plan: ConnectPlan) -> impl Iterator<Item = &'static Hook> {
        HOOKS.iter().filter(move |h| h.need == Need::Connect(plan))
    }

    /// The row with this program name.
    pub fn by_program(program: &str) -> Option<&'static Hook> {
        HOOKS.iter().find(|h| h.program == program)
    }

    /// The row with this id.
    pub fn by_id(id: u8) -> Option<&'static Hook> {
        HOOKS.iter().find(|h| h.id == id)
    }

    /// `group:name` of a tracepoint, the program name otherwise.
    pub fn title(&self) -> String {
        match self.attach {
            Attach::Tracepoint { group, name, .. } => format!("{group}:{name}"),
            _ => self.program.to_string(),
        }
    }

    /// The tracepoint's group and name, if it is one.
    pub fn tracepoint(&self) -> Option<(&'static str, &'static str)> {
        match self.attach {
            Attach::Tracepoint { group, name, .. } => Some((group, name)),
            _ => None,
        }
    }

    /// This kernel's offsets for the program, checked: one layout complete,
    /// and every field it may read within [`TP_OFFSET_MASK`].
    pub fn offsets(&self, format: &Format) -> Result<TpOffsets, LayoutError> {
        let o = format.offsets();
        self.check(&o).map(|_| o)
    }

    /// Checks offsets against the row (see [`Hook::offsets`]); returns
    /// the layout they match.
    pub fn check(&self, o: &TpOffsets) -> Result<&'static Layout, LayoutError> {
        let absent = |f: &TpField| f.get(o) == ABSENT;
        let Some(layout) = self.layouts.iter().find(|l| !l.required.iter().any(absent)) else {
            let missing = self
                .layouts
                .iter()
                .map(|l| {
                    l.required
                        .iter()
                        .copied()
                        .filter(absent)
                        .collect::<Vec<_>>()
                })
                .min_by_key(Vec::len)
                .unwrap_or_default();
            return Err(LayoutError::Missing(missing));
        };
        for field in layout.fields() {
            let offset = field.get(o);
            if offset != ABSENT
                && u32::from(offset) + u32::from(field.size()) > u32::from(TP_OFFSET_MASK) + 1
            {
                return Err(LayoutError::TooFar { field, offset });
            }
        }
        Ok(layout)
    }

    /// Fields the program would read that this kernel's record lacks (an
    /// older layout), for `tcptrace check`.
    pub fn absent_optional(&self, o: &TpOffsets) -> Vec<TpField> {
        self.check(o)
            .map(|l| {
                l.optional
                    .iter()
                    .copied()
                    .filter(|f| f.get(o) == ABSENT)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, fs, path::PathBuf};

    use super::*;
    use TpField as F;
    use tracer_common::hook;

    fn fixtures() -> Vec<(String, String, String, String)> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/formats");
        let mut out = Vec::new();
        for dir in fs::read_dir(&root).unwrap() {
            let dir = dir.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            let version = dir.file_name().unwrap().to_string_lossy().to_string();
            for f in fs::read_dir(&dir).unwrap() {
                let path = f.unwrap().path();
                let stem = path.file_stem().unwrap().to_string_lossy().to_string();
                let (group, name) = stem.split_once('_').expect("<group>_<name>.format");
                out.push((
                    version.clone(),
                    group.to_string(),
                    name.to_string(),
                    fs::read_to_string(&path).unwrap(),
                ));
            }
        }
        assert!(out.len() >= 10, "fixtures found: {}", out.len());
        out
    }

    fn row(group: &str, name: &str) -> Option<&'static Hook> {
        HOOKS.iter().find(|h| h.tracepoint() == Some((group, name)))
    }

    #[test]
    fn every_format_fixture_suits_its_row() {
        for (version, group, name, text) in fixtures() {
            let hook = row(&group, &name)
                .unwrap_or_else(|| panic!("{version}/{group}:{name} has no row in HOOKS"));
            let format = Format::parse(&text).unwrap();
            let o = hook
                .offsets(&format)
                .unwrap_or_else(|e| panic!("{version}/{group}:{name} {e}"));
            let layout = hook.check(&o).unwrap();
            // Every field of the layout that the record has, is found.
            for f in layout.fields() {
                let present = f
                    .format_names()
                    .iter()
                    .any(|(n, s)| format.field(n).is_some_and(|x| x.size == *s));
                assert_eq!(
                    present,
                    f.get(&o) != ABSENT,
                    "{version}/{group}:{name} {f:?}"
                );
            }
        }
    }

    #[test]
    fn every_tracepoint_row_has_a_fixture_of_this_kernel() {
        let have: HashSet<(String, String)> = fixtures()
            .into_iter()
            .filter(|(v, ..)| v == "6.18")
            .map(|(_, g, n, _)| (g, n))
            .collect();
        for h in HOOKS {
            if let Some((g, n)) = h.tracepoint() {
                assert!(
                    have.contains(&(g.into(), n.into())),
                    "no 6.18 fixture for {g}:{n}"
                );
                assert!(!h.layouts.is_empty(), "{g}:{n} has no required fields");
            } else {
                assert!(h.layouts.is_empty());
            }
        }
    }

    #[test]
    fn old_layouts_say_what_they_lack() {
        let old = Format::parse(include_str!(
            "../../fixtures/formats/5.4/tcp_tcp_retransmit_skb.format"
        ))
        .unwrap();
        let retrans = row("tcp", "tcp_retransmit_skb").unwrap();
        let o = retrans.offsets(&old).unwrap();
        assert_eq!(retrans.absent_optional(&o), vec![F::Err, F::Family]);

        // The 5.x tcp_send_reset (ports, no sockaddr blobs) is the second layout.
        let send = row("tcp", "tcp_send_reset").unwrap();
        assert_eq!(send.check(&o), Ok(&send.layouts[1]));
        let mut none = o;
        none.sport = ABSENT;
        assert_eq!(send.check(&none), Err(LayoutError::Missing(vec![F::Sport])));
        assert_eq!(
            send.check(&none).unwrap_err().to_string(),
            "lacks the field(s) sport"
        );
        let state = row("sock", "inet_sock_set_state").unwrap();
        let e = state.check(&TpOffsets::ABSENT).unwrap_err();
        assert_eq!(
            e,
            LayoutError::Missing(vec![
                F::Skaddr,
                F::Sport,
                F::Dport,
                F::Oldstate,
                F::Newstate
            ])
        );
    }

    #[test]
    fn debian_6_1_layouts() {
        let format = |name: &str| {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/formats/6.1")
                .join(format!("{name}.format"));
            Format::parse(&fs::read_to_string(path).unwrap()).unwrap()
        };
        // tcp_probe without skaddr: the second layout, RTT found by tuple.
        let probe = row("tcp", "tcp_probe").unwrap();
        let o = probe.offsets(&format("tcp_tcp_probe")).unwrap();
        assert_eq!(probe.check(&o), Ok(&probe.layouts[1]));
        assert_eq!(probe.absent_optional(&o), vec![F::Skaddr]);
        assert_eq!((o.sa_saddr, o.sa_daddr, o.sport, o.srtt), (8, 36, 64, 100));
        // tcp_send_reset with ports and addresses, no reason yet.
        let send = row("tcp", "tcp_send_reset").unwrap();
        let o = send.offsets(&format("tcp_tcp_send_reset")).unwrap();
        assert_eq!(send.check(&o), Ok(&send.layouts[1]));
        assert_eq!(send.absent_optional(&o), vec![F::Reason]);
        // tcp_retransmit_skb without err.
        let retrans = row("tcp", "tcp_retransmit_skb").unwrap();
        let o = retrans.offsets(&format("tcp_tcp_retransmit_skb")).unwrap();
        assert_eq!(retrans.absent_optional(&o), vec![F::Err]);
    }

    #[test]
    fn offsets_beyond_the_mask_are_refused() {
        let probe = row("tcp", "tcp_probe").unwrap();
        let text = include_str!("../../fixtures/formats/6.18/tcp_tcp_probe.format");
        let mut o = Format::parse(text).unwrap().offsets();
        assert!(probe.check(&o).is_ok());
        o.srtt = TP_OFFSET_MASK - 2; // a 4-byte field that would end past it
        let e = probe.check(&o).unwrap_err();
        assert_eq!(
            e,
            LayoutError::TooFar {
                field: F::Srtt,
                offset: TP_OFFSET_MASK - 2
            }
        );
        assert!(e.to_string().contains("beyond the 1024 bytes"), "{e}");
        o.srtt = TP_OFFSET_MASK - 3;
        assert!(probe.check(&o).is_ok());
    }

    #[test]
    fn ids_and_names_are_unique_and_fit_the_counters() {
        let ids: HashSet<u8> = HOOKS.iter().map(|h| h.id).collect();
        let programs: HashSet<&str> = HOOKS.iter().map(|h| h.program).collect();
        assert_eq!(ids.len(), HOOKS.len());
        assert_eq!(programs.len(), HOOKS.len());
        assert!(HOOKS.iter().all(|h| u32::from(h.id) < hook::SLOTS));
        for h in HOOKS {
            assert_eq!(Hook::by_id(h.id), Some(h));
            assert_eq!(Hook::by_program(h.program), Some(h));
        }
    }

    #[test]
    fn wants_pick_rows() {
        let titles = |w: Wants| Hook::wanted(&w).map(Hook::title).collect::<Vec<_>>();
        assert_eq!(titles(Wants::default()), ["sock:inet_sock_set_state"]);
        assert_eq!(
            titles(Wants::FLOWS),
            [
                "sock:inet_sock_set_state",
                "tcp:tcp_retransmit_skb",
                "tcp:tcp_retransmit_synack",
                "tcp:tcp_send_reset",
                "tcp:tcp_receive_reset",
                "sock:inet_sk_error_report",
            ]
        );
        for plan in ConnectPlan::ORDER {
            assert!(Hook::of_plan(plan).count() >= 2, "{plan}");
        }
    }

    /// The kernel crate's sources, by file name.
    fn kernel_sources() -> Vec<(String, String)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tracer-ebpf/src");
        fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().to_string(),
                    fs::read_to_string(&p).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn the_kernel_crate_has_every_row_and_no_other_tracepoint() {
        let sources = kernel_sources();
        let all: String = sources.iter().map(|(_, s)| s.as_str()).collect();
        for h in HOOKS {
            assert!(
                all.contains(&format!("pub fn {}(", h.program)),
                "no program {} in tracer-ebpf",
                h.program
            );
            if let Attach::Tracepoint { offsets, .. } = h.attach {
                assert!(
                    all.contains(&format!("static {offsets}: Global<TpOffsets>")),
                    "no global {offsets} in tracer-ebpf"
                );
            }
        }
        // Every `match-tracepoint:` comment names a row, and every
        // tracepoint row is named by one.
        let mut named = HashSet::new();
        for (file, text) in &sources {
            for line in text.lines() {
                if let Some(rest) = line.split("match-tracepoint:").nth(1) {
                    let tp = rest.split_whitespace().next().unwrap();
                    let (g, n) = tp.split_once(':').unwrap();
                    assert!(row(g, n).is_some(), "{file}: {tp} is not in HOOKS");
                    named.insert(tp.to_string());
                }
            }
        }
        for h in HOOKS {
            if h.tracepoint().is_some() {
                assert!(
                    named.contains(&h.title()),
                    "no match-tracepoint: {}",
                    h.title()
                );
            }
        }
        // Every program in the object is a row.
        for (file, text) in &sources {
            let mut lines = text.lines().peekable();
            while let Some(line) = lines.next() {
                let attr = line.trim_start();
                if ["#[tracepoint", "#[fexit", "#[kprobe", "#[kretprobe"]
                    .iter()
                    .any(|a| attr.starts_with(a))
                {
                    let f = lines.next().unwrap();
                    let name = f.trim_start_matches("pub fn ").split('(').next().unwrap();
                    assert!(
                        Hook::by_program(name).is_some(),
                        "{file}: program {name} has no row in HOOKS"
                    );
                }
            }
        }
    }
}
