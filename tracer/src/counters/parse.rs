//! Parsers for the two counter files the `procfs` crate (0.17) does not
//! read: `/proc/net/netstat` (the `TcpExt:` group: retransmits by kind,
//! listen queue overflows) and `/proc/net/sockstat{,6}` (sockets in use,
//! orphans, TIME_WAIT). `/proc/net/snmp` is read through `procfs`'s
//! `Snmp`; the socket tables through [`crate::procnet`].

use std::collections::HashMap;

/// The counters of one group of a `/proc/net/netstat` or `/proc/net/snmp`
/// style file: a header line `Group: Name1 Name2 ...` followed by a value
/// line `Group: 1 2 ...`. Lines that do not pair up, and values that are
/// not numbers, are left out: a newer kernel's extra group or counter is
/// harmless, a missing one shows as unknown.
pub fn group(text: &str, group: &str) -> HashMap<String, u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|first| first == prefix)
    });
    let mut out = HashMap::new();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        for (n, v) in names
            .split_whitespace()
            .skip(1)
            .zip(values.split_whitespace().skip(1))
        {
            if let Ok(v) = v.parse() {
                out.insert(n.to_string(), v);
            }
        }
    }
    out
}

/// What `/proc/net/sockstat` and `sockstat6` say about TCP sockets. Of
/// these, `inuse` and `tw` are the namespace's own; `orphan`, `alloc` and
/// `mem` are the host's (the kernel keeps them in global counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockStat {
    /// IPv4 TCP sockets in use (not TIME_WAIT): `TCP: inuse`.
    pub inuse: Option<u64>,
    /// IPv6 TCP sockets in use: `TCP6: inuse`.
    pub inuse6: Option<u64>,
    /// Sockets no process holds any more, still closing: `TCP: orphan`.
    pub orphan: Option<u64>,
    /// TIME_WAIT sockets (both families): `TCP: tw`.
    pub tw: Option<u64>,
    /// TCP sockets allocated: `TCP: alloc`.
    pub alloc: Option<u64>,
    /// Pages of memory TCP uses: `TCP: mem`.
    pub mem: Option<u64>,
}

impl SockStat {
    /// Parses the texts of `sockstat` and `sockstat6` (either may be empty).
    pub fn parse(v4: &str, v6: &str) -> Self {
        let field = |text: &str, line: &str, name: &str| -> Option<u64> {
            let l = text
                .lines()
                .find(|l| l.split_whitespace().next() == Some(line))?;
            let mut words = l.split_whitespace().skip(1);
            while let Some(w) = words.next() {
                let v = words.next()?;
                if w == name {
                    return v.parse().ok();
                }
            }
            None
        };
        Self {
            inuse: field(v4, "TCP:", "inuse"),
            inuse6: field(v6, "TCP6:", "inuse"),
            orphan: field(v4, "TCP:", "orphan"),
            tw: field(v4, "TCP:", "tw"),
            alloc: field(v4, "TCP:", "alloc"),
            mem: field(v4, "TCP:", "mem"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_pair_header_and_values() {
        let text = "TcpExt: SyncookiesSent ListenOverflows TCPTimeouts\n\
                    TcpExt: 0 17 4\n\
                    IpExt: InNoRoutes\n\
                    IpExt: 9\n\
                    MPTcpExt: TCPTimeouts\n\
                    MPTcpExt: 99\n";
        let g = group(text, "TcpExt");
        assert_eq!(g["ListenOverflows"], 17);
        assert_eq!(g["TCPTimeouts"], 4, "MPTcpExt is another group");
        assert_eq!(g.len(), 3);
        assert_eq!(group(text, "IpExt")["InNoRoutes"], 9);
        assert!(group(text, "Tcp").is_empty());
        // A header without its values, garbage, a negative number.
        assert!(group("TcpExt: A B\n", "TcpExt").is_empty());
        let g = group("TcpExt: A B C\nTcpExt: 1 x -3\n", "TcpExt");
        assert_eq!((g.get("A"), g.get("B"), g.get("C")), (Some(&1), None, None));
        assert!(group("\u{0}\u{ff}garbage", "TcpExt").is_empty());
    }

    #[test]
    fn sockstat_of_this_kernel() {
        let v4 = "sockets: used 25\n\
                  TCP: inuse 3 orphan 1 tw 7 alloc 9 mem 182\n\
                  UDP: inuse 0 mem 0\n";
        let v6 = "TCP6: inuse 2\nUDP6: inuse 0\n";
        let s = SockStat::parse(v4, v6);
        assert_eq!(
            s,
            SockStat {
                inuse: Some(3),
                inuse6: Some(2),
                orphan: Some(1),
                tw: Some(7),
                alloc: Some(9),
                mem: Some(182),
            }
        );
        assert_eq!(SockStat::parse("", ""), SockStat::default());
        let real = std::fs::read_to_string("/proc/net/sockstat").unwrap();
        assert!(SockStat::parse(&real, "").tw.is_some(), "{real}");
    }
}
