//! tracefs: making sure it is mounted, and reading tracepoint `format`
//! files into the field offsets the kernel programs are given at load time.

use std::{
    fs,
    path::{Path, PathBuf},
};

use thiserror::Error;
use tracer_common::{ABSENT, TpOffsets};

/// Where tracefs normally lives, and the older debugfs location.
const ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Debug, Error)]
pub enum TracefsError {
    #[error(
        "tracefs is not mounted and mounting it failed ({0}); mount it with `mount -t tracefs tracefs /sys/kernel/tracing` and try again"
    )]
    Mount(std::io::Error),
    #[error(
        "this kernel has no tracepoint {group}:{name} ({path} is missing); tcptrace needs Linux 4.16 or newer with tracepoints enabled"
    )]
    Missing {
        group: String,
        name: String,
        path: PathBuf,
    },
    #[error(
        "cannot read {path}: permission denied (tracefs is usually mode 0700, root's): run tcptrace as root, or grant it CAP_DAC_READ_SEARCH besides CAP_BPF and CAP_PERFMON"
    )]
    Denied { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Parse { path: PathBuf, msg: String },
}

/// Returns the tracefs root, mounting tracefs at `/sys/kernel/tracing` when
/// neither usual place has it.
pub fn ensure_mounted() -> Result<PathBuf, TracefsError> {
    for root in ROOTS {
        let events = Path::new(root).join("events");
        match fs::read_dir(&events) {
            Ok(_) => return Ok(PathBuf::from(root)),
            // Mounted, but not ours to read: mounting again cannot help.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(TracefsError::Denied { path: events });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Out of file descriptors, say: not a missing tracefs.
            Err(source) if e_is_not_dir(&source) => {}
            Err(source) => {
                return Err(TracefsError::Read {
                    path: events,
                    source,
                });
            }
        }
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(TracefsError::Mount(std::io::Error::last_os_error()));
    }
    Ok(PathBuf::from(ROOTS[0]))
}

fn e_is_not_dir(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTDIR)
}

/// One `field:` line of a format file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: u16,
    pub size: u16,
}

/// The fields of one tracepoint's record, and its `print fmt` line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Format {
    pub fields: Vec<Field>,
    pub print_fmt: String,
}

impl Format {
    /// Parses the text of a `format` file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut fields = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("field:") else {
                continue;
            };
            let mut decl = None;
            let mut offset = None;
            let mut size = None;
            for part in rest.split(';').map(str::trim) {
                if let Some(v) = part.strip_prefix("offset:") {
                    offset = v.parse::<u16>().ok();
                } else if let Some(v) = part.strip_prefix("size:") {
                    size = v.parse::<u16>().ok();
                } else if !part.is_empty() && !part.starts_with("signed:") && decl.is_none() {
                    decl = Some(part);
                }
            }
            let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
                return Err(format!("malformed field line: {line:?}"));
            };
            fields.push(Field {
                name: field_name(decl).ok_or_else(|| format!("no field name in {decl:?}"))?,
                offset,
                size,
            });
        }
        if fields.is_empty() {
            return Err("no fields".into());
        }
        let print_fmt = text
            .lines()
            .find_map(|l| l.strip_prefix("print fmt:"))
            .unwrap_or_default()
            .trim()
            .to_string();
        Ok(Self { fields, print_fmt })
    }

    /// The value names of `__print_symbolic(REC-><field>, { 0, "NAME" }, ...)`
    /// in the print format: how this kernel names an enum (e.g. the reset
    /// reasons of `tcp_send_reset`).
    pub fn symbols(&self, field: &str) -> Vec<(i64, String)> {
        let key = format!("__print_symbolic(REC->{field},");
        let Some(start) = self.print_fmt.find(&key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut rest = &self.print_fmt[start + key.len()..];
        // Pairs until the closing parenthesis of __print_symbolic.
        while let Some(open) = rest.find(['{', ')']) {
            if rest.as_bytes()[open] == b')' {
                break;
            }
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            let pair = &rest[open + 1..open + close];
            if let Some((num, name)) = pair.split_once(',')
                && let Ok(n) = num.trim().parse::<i64>()
            {
                out.push((n, name.trim().trim_matches('"').to_string()));
            }
            rest = &rest[open + close + 1..];
        }
        out
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Offset of `name` if present with the expected size, else [`ABSENT`].
    fn offset(&self, name: &str, size: u16) -> u16 {
        self.field(name)
            .filter(|f| f.size == size)
            .map_or(ABSENT, |f| f.offset)
    }

    /// The offsets the kernel programs read, by the names the kernel's TCP
    /// and socket tracepoints use (see [`TpField::format_names`]).
    pub fn offsets(&self) -> TpOffsets {
        let mut o = TpOffsets::ABSENT;
        for f in TpField::ALL {
            let off = f
                .format_names()
                .iter()
                .map(|&(name, size)| self.offset(name, size))
                .find(|&off| off != ABSENT)
                .unwrap_or(ABSENT);
            f.set(&mut o, off);
        }
        o
    }
}

/// Declares [`TpField`]: each field of [`TpOffsets`] with the names and sizes
/// it has in format files (the first present one wins).
macro_rules! fields {
    ($($variant:ident $member:ident [$(($name:literal, $size:literal)),+]),+ $(,)?) => {
        /// A field of a tracepoint record that a kernel program reads: one
        /// member of [`TpOffsets`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum TpField {
            $($variant),+
        }

        impl TpField {
            pub const ALL: &[TpField] = &[$(TpField::$variant),+];

            /// The member of [`TpOffsets`], as messages name the field.
            pub fn name(self) -> &'static str {
                match self {
                    $(TpField::$variant => stringify!($member)),+
                }
            }

            /// `(name, size)` of the field in a format file, in order of
            /// preference.
            pub fn format_names(self) -> &'static [(&'static str, u16)] {
                match self {
                    $(TpField::$variant => &[$(($name, $size)),+]),+
                }
            }

            /// Its offset in `o`.
            pub fn get(self, o: &TpOffsets) -> u16 {
                match self {
                    $(TpField::$variant => o.$member),+
                }
            }

            fn set(self, o: &mut TpOffsets, off: u16) {
                match self {
                    $(TpField::$variant => o.$member = off),+
                }
            }
        }
    };
}

fields! {
    Skaddr skaddr [("skaddr", 8)],
    Oldstate oldstate [("oldstate", 4)],
    // `newstate` of inet_sock_set_state, `state` of the TCP tracepoints.
    Newstate newstate [("newstate", 4), ("state", 4)],
    Sport sport [("sport", 2)],
    Dport dport [("dport", 2)],
    Family family [("family", 2)],
    Protocol protocol [("protocol", 2)],
    Saddr saddr [("saddr", 4)],
    Daddr daddr [("daddr", 4)],
    SaddrV6 saddr_v6 [("saddr_v6", 16)],
    DaddrV6 daddr_v6 [("daddr_v6", 16)],
    Err err [("err", 4)],
    Uservaddr uservaddr [("uservaddr", 8)],
    Ret ret [("ret", 8)],
    Skbaddr skbaddr [("skbaddr", 8)],
    // The same names as `saddr`/`daddr`, as sockaddr_in6 blobs (6.x
    // tcp_send_reset, tcp_probe).
    SaSaddr sa_saddr [("saddr", 28)],
    SaDaddr sa_daddr [("daddr", 28)],
    Reason reason [("reason", 4)],
    Error error [("error", 4)],
    Srtt srtt [("srtt", 4)],
}

impl TpField {
    /// Size in bytes of what the kernel program reads.
    pub fn size(self) -> u16 {
        self.format_names()[0].1
    }
}

/// The identifier in a C declaration such as `const void * skaddr` or
/// `__u8 saddr_v6[16]`.
fn field_name(decl: &str) -> Option<String> {
    let decl = decl.split('[').next()?.trim_end();
    let name = decl
        .rsplit(|c: char| c.is_whitespace() || c == '*')
        .next()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// Reads and parses `<root>/events/<group>/<name>/format`.
pub fn read_format(root: &Path, group: &str, name: &str) -> Result<Format, TracefsError> {
    let dir = root.join("events").join(group).join(name);
    let path = dir.join("format");
    if !dir.is_dir() {
        return Err(TracefsError::Missing {
            group: group.into(),
            name: name.into(),
            path: dir,
        });
    }
    let text = fs::read_to_string(&path).map_err(|source| TracefsError::Read {
        path: path.clone(),
        source,
    })?;
    Format::parse(&text).map_err(|msg| TracefsError::Parse { path, msg })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE_618: &str =
        include_str!("../fixtures/formats/6.18/sock_inet_sock_set_state.format");
    const RETRANS_618: &str =
        include_str!("../fixtures/formats/6.18/tcp_tcp_retransmit_skb.format");
    const RETRANS_54: &str = include_str!("../fixtures/formats/5.4/tcp_tcp_retransmit_skb.format");
    const SYNACK_618: &str =
        include_str!("../fixtures/formats/6.18/tcp_tcp_retransmit_synack.format");
    const ENTER_618: &str =
        include_str!("../fixtures/formats/6.18/syscalls_sys_enter_connect.format");
    const EXIT_618: &str =
        include_str!("../fixtures/formats/6.18/syscalls_sys_exit_connect.format");

    #[test]
    fn parses_inet_sock_set_state_of_this_kernel() {
        let f = Format::parse(STATE_618).unwrap();
        assert_eq!(f.fields.len(), 15);
        let o = f.offsets();
        assert_eq!(
            (o.skaddr, o.oldstate, o.newstate, o.sport, o.dport),
            (8, 16, 20, 24, 26)
        );
        assert_eq!((o.family, o.protocol, o.saddr, o.daddr), (28, 30, 32, 36));
        assert_eq!((o.saddr_v6, o.daddr_v6), (40, 56));
        assert_eq!((o.err, o.uservaddr, o.ret), (ABSENT, ABSENT, ABSENT));
    }

    #[test]
    fn retransmit_skb_new_and_old_layouts() {
        let new = Format::parse(RETRANS_618).unwrap().offsets();
        assert_eq!(
            (new.skaddr, new.newstate, new.family, new.err),
            (16, 24, 32, 76)
        );
        assert_eq!((new.saddr_v6, new.daddr_v6, new.skbaddr), (42, 58, 8));

        let old = Format::parse(RETRANS_54).unwrap().offsets();
        assert_eq!(
            (old.skaddr, old.newstate, old.sport, old.dport),
            (16, 24, 28, 30)
        );
        // Fields this kernel lacks are absent, not guessed.
        assert_eq!((old.family, old.err), (ABSENT, ABSENT));
        assert_eq!((old.saddr_v6, old.daddr_v6), (40, 56));
    }

    #[test]
    fn synack_and_syscalls() {
        let s = Format::parse(SYNACK_618).unwrap().offsets();
        assert_eq!((s.skaddr, s.sport, s.family, s.saddr_v6), (8, 24, 28, 38));
        assert_eq!(s.newstate, ABSENT);
        let e = Format::parse(ENTER_618).unwrap().offsets();
        assert_eq!(e.uservaddr, 24);
        let x = Format::parse(EXIT_618).unwrap().offsets();
        assert_eq!(x.ret, 16);
    }

    #[test]
    fn reset_reason_names_from_print_fmt() {
        let f = Format::parse(include_str!(
            "../fixtures/formats/6.18/tcp_tcp_send_reset.format"
        ))
        .unwrap();
        let r = f.symbols("reason");
        assert_eq!(r[0], (0, "NOT_SPECIFIED".to_string()));
        assert_eq!(r[1], (1, "NO_SOCKET".to_string()));
        assert!(r.contains(&(11, "TCP_ABORT_ON_CLOSE".to_string())), "{r:?}");
        let o = f.offsets();
        assert_eq!(
            (o.sa_saddr, o.sa_daddr, o.reason, o.skaddr),
            (32, 60, 28, 16)
        );
        assert!(f.symbols("nope").is_empty());
        // Symbolic names that are not numbers (the state table) are skipped.
        assert!(f.symbols("state").is_empty());
    }

    #[test]
    fn probe_and_error_report_offsets() {
        let p = Format::parse(include_str!(
            "../fixtures/formats/6.18/tcp_tcp_probe.format"
        ))
        .unwrap()
        .offsets();
        assert_eq!((p.srtt, p.skaddr, p.sport, p.family), (100, 128, 64, 68));
        let e = Format::parse(include_str!(
            "../fixtures/formats/6.18/sock_inet_sk_error_report.format"
        ))
        .unwrap()
        .offsets();
        assert_eq!((e.error, e.protocol, e.sport, e.saddr_v6), (8, 18, 12, 28));
    }

    #[test]
    fn every_offset_is_one_tp_field() {
        // Give each field a distinct offset: every u16 of TpOffsets but the
        // padding must then be set, and read back through its own field.
        let mut o = TpOffsets::ABSENT;
        for (i, f) in TpField::ALL.iter().enumerate() {
            f.set(&mut o, i as u16);
        }
        for (i, f) in TpField::ALL.iter().enumerate() {
            assert_eq!(f.get(&o), i as u16, "{f:?}");
        }
        // SAFETY: TpOffsets is plain u16s without padding bytes.
        let words: [u16; 24] = unsafe { std::mem::transmute(o) };
        assert!(words[..20].iter().all(|&w| w != ABSENT), "{words:?}");
        assert_eq!(TpField::ALL.len(), 20);
    }

    #[test]
    fn field_names_from_declarations() {
        assert_eq!(field_name("const void * skaddr").as_deref(), Some("skaddr"));
        assert_eq!(field_name("__u8 saddr_v6[16]").as_deref(), Some("saddr_v6"));
        assert_eq!(
            field_name("struct sockaddr * uservaddr").as_deref(),
            Some("uservaddr")
        );
        assert_eq!(field_name("int oldstate").as_deref(), Some("oldstate"));
    }

    #[test]
    fn a_field_of_unexpected_size_is_absent() {
        let f = Format::parse("format:\n\tfield:__u32 sport;\toffset:24;\tsize:4;\tsigned:0;\n")
            .unwrap();
        assert_eq!(f.offsets().sport, ABSENT);
    }

    #[test]
    fn rejects_empty_and_malformed() {
        assert!(Format::parse("name: x\nformat:\n").is_err());
        assert!(Format::parse("\tfield:int x;\toffset:zz;\tsize:4;\n").is_err());
    }
}
