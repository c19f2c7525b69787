//! Just enough of the kernel's BTF (`/sys/kernel/btf/vmlinux`) to find where
//! a struct member lives, so that the kernel programs can read a kernel
//! struct field without CO-RE: the offset is resolved here at start-up and
//! handed over as a load-time global.
//!
//! Format: `Documentation/bpf/btf.rst` (header, type section, string
//! section). Only struct and union members are interpreted; every other
//! kind is skipped by its documented size.

use thiserror::Error;

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
/// Kinds that only name or qualify another type (typedef, volatile,
/// const, restrict, type tag): looked through when following members.
const KINDS_ALIAS: [u32; 5] = [8, 9, 10, 11, 18];

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not BTF (bad magic or truncated header)")]
    Header,
    #[error("truncated or malformed type section at byte {0}")]
    Truncated(usize),
    #[error("unknown BTF kind {0}")]
    Kind(u32),
}

/// Parsed BTF: the raw bytes and where each type starts in them. Members
/// are read from the raw bytes when asked for: the kernel's BTF holds some
/// 150 000 types, and a `Vec` of members per struct left ~20 MB of small
/// allocations in the heap after start-up.
pub struct Btf {
    raw: Vec<u8>,
    /// The type and string sections, as ranges of `raw`.
    types_at: usize,
    strings: std::ops::Range<usize>,
    /// Byte offset in the type section of each type id; index 0 (void) is
    /// unused.
    types: Vec<u32>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A struct or union member.
#[derive(Clone, Copy, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Offset in bits (bitfield sizes masked off).
    bit_offset: u32,
    /// Bits of a bitfield member; 0 for an ordinary member.
    bitfield_size: u32,
}

impl Btf {
    /// Parses the running kernel's BTF.
    pub fn from_sys_fs() -> std::io::Result<Self> {
        let raw = std::fs::read("/sys/kernel/btf/vmlinux")?;
        Self::parse(raw).map_err(std::io::Error::other)
    }

    /// Parses raw little-endian BTF.
    pub fn parse(raw: Vec<u8>) -> Result<Self, BtfError> {
        if raw.len() < 24 || u16::from_le_bytes([raw[0], raw[1]]) != MAGIC {
            return Err(BtfError::Header);
        }
        let field = |i: usize| u32_at(&raw, 4 + 4 * i).ok_or(BtfError::Header);
        let hdr_len = field(0)? as usize;
        let (type_off, type_len) = (field(1)? as usize, field(2)? as usize);
        let (str_off, str_len) = (field(3)? as usize, field(4)? as usize);
        let section = |off: usize, len: usize| {
            let r = hdr_len + off..hdr_len + off + len;
            raw.get(r.clone()).map(|_| r).ok_or(BtfError::Header)
        };
        let types_range = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?;
        let types_raw = &raw[types_range.clone()];

        let mut types = vec![0];
        let mut at = 0;
        while at < types_raw.len() {
            let bad = BtfError::Truncated(at);
            let info = u32_at(types_raw, at + 4).ok_or(bad.clone())?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            types.push(at as u32);
            let extra = match kind {
                1 | 14 | 17 => 4,          // INT, VAR, DECL_TAG
                2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
                3 => 12,                   // ARRAY
                4 | 5 => vlen * 12,        // STRUCT, UNION
                6 | 13 => vlen * 8,        // ENUM, FUNC_PROTO
                15 | 19 => vlen * 12,      // DATASEC, ENUM64
                k => return Err(BtfError::Kind(k)),
            };
            at += 12 + extra;
            if at > types_raw.len() {
                return Err(bad);
            }
        }
        Ok(Self {
            types_at: types_range.start,
            raw,
            strings,
            types,
        })
    }

    fn name(&self, off: u32) -> &[u8] {
        let s = self.raw[self.strings.clone()]
            .get(off as usize..)
            .unwrap_or_default();
        &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())]
    }

    /// The name and members of type `id` if it is a struct or union (the
    /// type section was checked at parse, so reads stay in bounds).
    fn composite(&self, id: usize) -> Option<(u32, impl Iterator<Item = Member> + '_)> {
        let at = self.types_at + *self.types.get(id).filter(|_| id > 0)? as usize;
        let word = move |i: usize| u32_at(&self.raw, at + 4 * i).unwrap_or(0);
        let info = word(1);
        let kind = (info >> 24) & 0x1f;
        if kind != KIND_STRUCT && kind != KIND_UNION {
            return None;
        }
        let kind_flag = info >> 31 == 1;
        let members = (0..(info & 0xffff) as usize).map(move |i| {
            let off = word(3 + 3 * i + 2);
            Member {
                name_off: word(3 + 3 * i),
                type_id: word(3 + 3 * i + 1),
                bit_offset: if kind_flag { off & 0x00ff_ffff } else { off },
                bitfield_size: if kind_flag { off >> 24 } else { 0 },
            }
        });
        Some((word(0), members))
    }

    /// The id of the typedef called `name` (the BTF tracepoint
    /// `btf_trace_<name>` types are typedefs).
    pub fn typedef_id(&self, name: &str) -> Option<u32> {
        const KIND_TYPEDEF: u32 = 8;
        (1..self.types.len()).find_map(|id| {
            let at = self.types_at + self.types[id] as usize;
            let info = u32_at(&self.raw, at + 4)?;
            let named = (info >> 24) & 0x1f == KIND_TYPEDEF
                && self.name(u32_at(&self.raw, at)?) == name.as_bytes();
            named.then_some(id as u32)
        })
    }

    /// Byte offset of `member` in the struct or union named `ty`, looking
    /// through anonymous struct and union members. `None` if either is
    /// unknown to this kernel.
    pub fn member_offset(&self, ty: &str, member: &str) -> Option<u32> {
        self.member_path_offset(ty, &[member])
    }

    /// Byte offset, from the start of the struct or union named `ty`, of
    /// the member reached through `path`: each step a member of the type
    /// of the one before (looking through anonymous members, typedefs and
    /// qualifiers, so `["skc_net", "net"]` in `sock_common` goes through
    /// the unnamed struct behind `possible_net_t`). `None` if any step is
    /// unknown to this kernel.
    pub fn member_path_offset(&self, ty: &str, path: &[&str]) -> Option<u32> {
        let (bits, _) = self.member_bits(ty, path)?;
        (bits % 8 == 0).then_some(bits / 8)
    }

    /// Bit offset, from the start of the struct or union named `ty`, of
    /// the member reached through `path` (as [`Self::member_path_offset`]),
    /// and its width if it is a bitfield (0 if not).
    pub fn member_bits(&self, ty: &str, path: &[&str]) -> Option<(u32, u32)> {
        let mut id = (1..self.types.len()).find(|&id| {
            self.composite(id).is_some_and(|(name_off, mut members)| {
                self.name(name_off) == ty.as_bytes() && members.next().is_some()
            })
        })?;
        let (mut bits, mut width) = (0, 0);
        for member in path {
            let (m, at) = self.find(id, member.as_bytes(), 0)?;
            bits += at;
            width = m.bitfield_size;
            id = self.resolve(m.type_id as usize);
        }
        Some((bits, width))
    }

    /// The type behind typedefs and qualifiers.
    fn resolve(&self, mut id: usize) -> usize {
        // A chain of aliases is short; a loop in damaged BTF must not hang.
        for _ in 0..16 {
            let Some(&at) = self.types.get(id).filter(|_| id > 0) else {
                return id;
            };
            let at = self.types_at + at as usize;
            let info = u32_at(&self.raw, at + 4).unwrap_or(0);
            if !KINDS_ALIAS.contains(&((info >> 24) & 0x1f)) {
                return id;
            }
            id = u32_at(&self.raw, at + 8).unwrap_or(0) as usize;
        }
        id
    }

    /// `member` of composite `id` and its bit offset there.
    fn find(&self, id: usize, member: &[u8], base_bits: u32) -> Option<(Member, u32)> {
        let (_, members) = self.composite(id)?;
        let members: Vec<Member> = members.collect();
        for m in &members {
            if self.name(m.name_off) == member {
                return Some((*m, base_bits + m.bit_offset));
            }
        }
        // Anonymous members (C11 anonymous structs and unions).
        members
            .iter()
            .filter(|m| self.name(m.name_off).is_empty())
            .find_map(|m| {
                self.find(
                    self.resolve(m.type_id as usize),
                    member,
                    base_bits + m.bit_offset,
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds BTF with: 1 INT u32, 2 STRUCT inner { a: u32 @0, b: u32 @32 },
    /// 3 STRUCT outer { x: u32 @0, <anon inner> @64, y: u32 @128 },
    /// 4 TYPEDEF inner_t = 2, 5 CONST 4,
    /// 6 STRUCT top { pad: u32 @0, o: outer @32, t: const inner_t @192 }.
    fn sample() -> Vec<u8> {
        let strings = b"\0u32\0inner\0a\0b\0outer\0x\0y\0inner_t\0top\0pad\0o\0t\0";
        let s = |name: &str| {
            let needle = format!("\0{name}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut t = Vec::new();
        let mut push = |v: u32| t.extend_from_slice(&v.to_le_bytes());
        // INT
        push(s("u32"));
        push(1 << 24);
        push(4);
        push(32);
        // inner
        push(s("inner"));
        push((4 << 24) | 2);
        push(8);
        for (n, off) in [("a", 0), ("b", 32)] {
            push(s(n));
            push(1);
            push(off);
        }
        // outer, with a bitfield-style member encoding (kind_flag set)
        push(s("outer"));
        push((1 << 31) | (4 << 24) | 3);
        push(20);
        for (n, off) in [("x", 0u32), ("", 64), ("y", 128)] {
            push(if n.is_empty() { 0 } else { s(n) });
            push(if n.is_empty() { 2 } else { 1 });
            push(off);
        }
        // typedef inner_t, const inner_t
        push(s("inner_t"));
        push(8 << 24);
        push(2);
        push(0);
        push(10 << 24);
        push(4);
        // top
        push(s("top"));
        push((4 << 24) | 3);
        push(32);
        for (n, ty, off) in [("pad", 1u32, 0u32), ("o", 3, 32), ("t", 5, 192)] {
            push(s(n));
            push(ty);
            push(off);
        }
        let mut raw = Vec::new();
        raw.extend_from_slice(&MAGIC.to_le_bytes());
        raw.extend_from_slice(&[1, 0]);
        for v in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        raw.extend_from_slice(&t);
        raw.extend_from_slice(strings);
        raw
    }

    #[test]
    fn finds_direct_and_anonymous_members() {
        let b = Btf::parse(sample()).unwrap();
        assert_eq!(b.member_offset("outer", "x"), Some(0));
        assert_eq!(b.member_offset("outer", "y"), Some(16));
        assert_eq!(
            b.member_offset("outer", "b"),
            Some(12),
            "through the anonymous member"
        );
        assert_eq!(b.member_offset("outer", "nope"), None);
        assert_eq!(b.member_offset("nope", "x"), None);
    }

    #[test]
    fn follows_member_paths_through_typedefs_and_qualifiers() {
        let b = Btf::parse(sample()).unwrap();
        assert_eq!(b.member_path_offset("top", &["o", "y"]), Some(4 + 16));
        assert_eq!(
            b.member_path_offset("top", &["o", "b"]),
            Some(4 + 12),
            "through the anonymous member"
        );
        assert_eq!(
            b.member_path_offset("top", &["t", "b"]),
            Some(24 + 4),
            "through a const typedef"
        );
        assert_eq!(b.member_path_offset("top", &["t", "x"]), None);
        assert_eq!(b.member_path_offset("top", &["pad", "x"]), None);
        assert_eq!(b.member_path_offset("top", &[]), Some(0));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Btf::parse(b"hello".to_vec()).err(), Some(BtfError::Header));
        let mut raw = sample();
        raw.truncate(40);
        assert!(Btf::parse(raw).is_err());
    }

    #[test]
    fn this_kernel_has_skb_and_tcp_cb() {
        let b = Btf::from_sys_fs().expect("this project's machines have /sys/kernel/btf/vmlinux");
        let cb = b.member_offset("sk_buff", "cb").expect("sk_buff.cb");
        assert!(cb > 0 && cb < 256, "{cb}");
        assert_eq!(b.member_offset("tcp_skb_cb", "tcp_gso_segs"), Some(8));
    }

    #[test]
    fn bitfields_have_their_width() {
        let b = Btf::parse(sample()).unwrap();
        // `outer` is encoded with kind_flag, its members without a width.
        assert_eq!(b.member_bits("outer", &["y"]), Some((128, 0)));
        assert_eq!(b.member_bits("top", &["o", "y"]), Some((160, 0)));
        let b = Btf::from_sys_fs().expect("this project's machines have /sys/kernel/btf/vmlinux");
        let (ca, w) = b
            .member_bits("inet_connection_sock", &["icsk_ca_state"])
            .expect("icsk_ca_state");
        assert_eq!(w, 5, "icsk_ca_state is a 5-bit bitfield");
        let (pending, w) = b
            .member_bits("inet_connection_sock", &["icsk_pending"])
            .expect("icsk_pending");
        assert_eq!(w, 0);
        assert!(pending > ca && pending - ca < 32, "{ca} {pending}");
    }

    #[test]
    fn this_kernel_has_the_netns_chain() {
        let b = Btf::from_sys_fs().expect("this project's machines have /sys/kernel/btf/vmlinux");
        // `possible_net_t` is a typedef of an unnamed struct.
        let sk_net = b.member_path_offset("sock", &["__sk_common", "skc_net", "net"]);
        assert!(sk_net.is_some_and(|o| o < 256), "{sk_net:?}");
        let inum = b.member_path_offset("net", &["ns", "inum"]);
        assert!(inum.is_some_and(|o| o < 1024), "{inum:?}");
        assert!(b.member_path_offset("sk_buff", &["dev"]).is_some());
        assert!(
            b.member_path_offset("net_device", &["nd_net", "net"])
                .is_some()
        );
    }
}
