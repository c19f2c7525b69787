//! The kernel's own TCP counters of one network namespace, as `nstat` and
//! `sar -n TCP,ETCP` read them: the `Tcp:` group of `/proc/net/snmp`
//! (through `procfs`), the `TcpExt:` counters that split retransmits by
//! kind and count listen-queue overflows (`/proc/net/netstat`), sockets
//! in use, orphaned and in TIME_WAIT (`/proc/net/sockstat{,6}`), and
//! optionally a census per state from the socket tables (through
//! [`crate::procnet`]), and for the doctor the socket tables and sysctls
//! ([`tables`]). A source reads a [`Counters`] snapshot now and then
//! ([`netns::Reader`], in any namespace) and pushes it through the
//! pipeline's door; views turn two snapshots into [`rates::Rates`]. What
//! a reading holds is what the view asks for ([`Reading`]): the views
//! that do not ask for more do not pay for it.

pub mod netns;
pub mod parse;
pub mod rates;
pub mod source;
pub mod tables;

use std::{fs, path::Path};

use anyhow::{Context as _, Result};
use procfs::FromBufRead as _;

use crate::event::TcpState;
pub use parse::SockStat;
pub use tables::Tables;

/// What a view wants in the readings of the counters (`View::counters`),
/// each level with everything of the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reading {
    /// The counters and `sockstat` (cheap: four small files).
    Counters,
    /// And a census per state from `/proc/net/tcp{,6}` (a pass over the
    /// socket tables; `stat` and `top` take it every reading).
    Census,
    /// And the socket tables with queues, timers and owners, the sysctls
    /// and the owners' descriptors ([`Tables`]: a netlink dump and a walk
    /// of every process's descriptors), at the start and the end of a
    /// live run only; the readings between carry the census. The doctor.
    Tables,
}

/// The counters tcptrace reads that only grow: the kernel's name, its
/// group, and the snake_case name JSON gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    ActiveOpens,
    PassiveOpens,
    AttemptFails,
    EstabResets,
    InSegs,
    OutSegs,
    RetransSegs,
    InErrs,
    OutRsts,
    TcpTimeouts,
    TcpFastRetrans,
    TcpSlowStartRetrans,
    TcpLossProbes,
    TcpSynRetrans,
    ListenOverflows,
    ListenDrops,
}

/// How many [`Counter`]s there are.
pub const N: usize = 16;

impl Counter {
    /// Every counter, in the order JSON lists them.
    pub const ALL: [Self; N] = [
        Self::ActiveOpens,
        Self::PassiveOpens,
        Self::AttemptFails,
        Self::EstabResets,
        Self::InSegs,
        Self::OutSegs,
        Self::RetransSegs,
        Self::InErrs,
        Self::OutRsts,
        Self::TcpTimeouts,
        Self::TcpFastRetrans,
        Self::TcpSlowStartRetrans,
        Self::TcpLossProbes,
        Self::TcpSynRetrans,
        Self::ListenOverflows,
        Self::ListenDrops,
    ];

    /// `(group, name)` as the kernel prints them (`nstat` shows
    /// `TcpRetransSegs`, `TcpExtTCPTimeouts`: the two joined).
    pub fn kernel(self) -> (&'static str, &'static str) {
        match self {
            Self::ActiveOpens => ("Tcp", "ActiveOpens"),
            Self::PassiveOpens => ("Tcp", "PassiveOpens"),
            Self::AttemptFails => ("Tcp", "AttemptFails"),
            Self::EstabResets => ("Tcp", "EstabResets"),
            Self::InSegs => ("Tcp", "InSegs"),
            Self::OutSegs => ("Tcp", "OutSegs"),
            Self::RetransSegs => ("Tcp", "RetransSegs"),
            Self::InErrs => ("Tcp", "InErrs"),
            Self::OutRsts => ("Tcp", "OutRsts"),
            Self::TcpTimeouts => ("TcpExt", "TCPTimeouts"),
            Self::TcpFastRetrans => ("TcpExt", "TCPFastRetrans"),
            Self::TcpSlowStartRetrans => ("TcpExt", "TCPSlowStartRetrans"),
            Self::TcpLossProbes => ("TcpExt", "TCPLossProbes"),
            Self::TcpSynRetrans => ("TcpExt", "TCPSynRetrans"),
            Self::ListenOverflows => ("TcpExt", "ListenOverflows"),
            Self::ListenDrops => ("TcpExt", "ListenDrops"),
        }
    }

    /// The kernel's name in snake case, as JSON keys it.
    pub fn json(self) -> &'static str {
        match self {
            Self::ActiveOpens => "active_opens",
            Self::PassiveOpens => "passive_opens",
            Self::AttemptFails => "attempt_fails",
            Self::EstabResets => "estab_resets",
            Self::InSegs => "in_segs",
            Self::OutSegs => "out_segs",
            Self::RetransSegs => "retrans_segs",
            Self::InErrs => "in_errs",
            Self::OutRsts => "out_rsts",
            Self::TcpTimeouts => "tcp_timeouts",
            Self::TcpFastRetrans => "tcp_fast_retrans",
            Self::TcpSlowStartRetrans => "tcp_slow_start_retrans",
            Self::TcpLossProbes => "tcp_loss_probes",
            Self::TcpSynRetrans => "tcp_syn_retrans",
            Self::ListenOverflows => "listen_overflows",
            Self::ListenDrops => "listen_drops",
        }
    }
}

/// One reading of a namespace's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// CLOCK_MONOTONIC nanoseconds of the reading.
    pub ts_ns: u64,
    /// The namespace read, by inode.
    pub netns: u32,
    /// Each [`Counter`] by its index in [`Counter::ALL`]; `None` if this
    /// kernel does not have it.
    pub values: [Option<u64>; N],
    /// Connections ESTABLISHED or CLOSE_WAIT now (`Tcp: CurrEstab`).
    pub curr_estab: Option<u64>,
    pub sockstat: SockStat,
    /// Sockets per state from the socket tables (empty unless asked for:
    /// reading them costs time on a host with many sockets).
    pub census: Vec<(TcpState, u64)>,
    /// The socket tables and sysctls (only in the readings that asked
    /// for [`Reading::Tables`]; boxed: most readings have none).
    pub tables: Option<Box<Tables>>,
}

impl Counters {
    /// The value of `c`.
    pub fn get(&self, c: Counter) -> Option<u64> {
        self.values[c as usize]
    }

    /// Reads the counters from a `net` directory of procfs (such as
    /// `/proc/thread-self/net`), with what `what` asks for beyond them
    /// ([`Reading::Tables`] reads the tables of the calling thread's
    /// namespace, whatever `net`).
    pub fn read(net: &Path, what: Reading) -> Result<Self> {
        let text = |name: &str| -> Result<String> {
            let p = net.join(name);
            fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
        };
        let snmp_text = text("snmp")?;
        let netstat = text("netstat")?;
        let mut c = Self::parse(&snmp_text, &netstat)?;
        c.sockstat = SockStat::parse(
            &text("sockstat").unwrap_or_default(),
            &text("sockstat6").unwrap_or_default(),
        );
        if what >= Reading::Census {
            let mut by_state = std::collections::BTreeMap::new();
            for table in ["tcp", "tcp6"] {
                let raw = fs::read(net.join(table)).unwrap_or_default();
                for (_, state, _) in crate::procnet::parse_table(&raw) {
                    *by_state.entry(state).or_insert(0) += 1;
                }
            }
            c.census = by_state.into_iter().collect();
        }
        if what == Reading::Tables {
            c.tables = Some(Box::new(Tables::read()));
        }
        Ok(c)
    }

    /// The counters in the texts of `/proc/net/snmp` and `/proc/net/netstat`.
    pub fn parse(snmp_text: &str, netstat: &str) -> Result<Self> {
        let ext = parse::group(netstat, "TcpExt");
        let mut c = Self::default();
        match procfs::net::Snmp::from_buf_read(snmp_text.as_bytes()) {
            Ok(snmp) => {
                c.curr_estab = Some(snmp.tcp_curr_estab);
                for (k, v) in [
                    (Counter::ActiveOpens, snmp.tcp_active_opens),
                    (Counter::PassiveOpens, snmp.tcp_passive_opens),
                    (Counter::AttemptFails, snmp.tcp_attempt_fails),
                    (Counter::EstabResets, snmp.tcp_estab_resets),
                    (Counter::InSegs, snmp.tcp_in_segs),
                    (Counter::OutSegs, snmp.tcp_out_segs),
                    (Counter::RetransSegs, snmp.tcp_retrans_segs),
                    (Counter::InErrs, snmp.tcp_in_errs),
                    (Counter::OutRsts, snmp.tcp_out_rsts),
                ] {
                    c.values[k as usize] = Some(v);
                }
            }
            // procfs wants every Ip, Icmp, Udp and UdpLite field today's
            // kernels print; a kernel without one of them (UDP-Lite is
            // the likeliest to go) must not cost the Tcp counters, which
            // are then read from their own group alone.
            Err(e) => {
                let tcp = parse::group(snmp_text, "Tcp");
                if tcp.is_empty() {
                    return Err(anyhow::Error::new(e).context("parsing /proc/net/snmp"));
                }
                c.curr_estab = tcp.get("CurrEstab").copied();
                for k in Counter::ALL.into_iter().filter(|k| k.kernel().0 == "Tcp") {
                    c.values[k as usize] = tcp.get(k.kernel().1).copied();
                }
            }
        }
        for k in Counter::ALL
            .into_iter()
            .filter(|k| k.kernel().0 == "TcpExt")
        {
            c.values[k as usize] = ext.get(k.kernel().1).copied();
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_indexed_in_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        let json: std::collections::HashSet<_> = Counter::ALL.iter().map(|c| c.json()).collect();
        assert_eq!(json.len(), N);
    }

    #[test]
    fn reads_this_namespace() {
        let c = Counters::read(Path::new("/proc/thread-self/net"), Reading::Census).unwrap();
        for k in Counter::ALL {
            assert!(c.get(k).is_some(), "{k:?} missing on this kernel");
        }
        assert!(c.curr_estab.is_some());
        assert!(c.sockstat.tw.is_some());
        // A listener of ours is in the census.
        let _l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = Counters::read(Path::new("/proc/thread-self/net"), Reading::Census).unwrap();
        assert!(
            c.census
                .iter()
                .any(|(s, n)| *s == TcpState::Listen && *n >= 1),
            "{:?}",
            c.census
        );
    }

    #[test]
    fn parses_snmp_and_netstat() {
        let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap();
        let netstat = "TcpExt: TCPTimeouts TCPFastRetrans\nTcpExt: 5 6\n";
        let c = Counters::parse(&snmp, netstat).unwrap();
        assert_eq!(c.get(Counter::TcpTimeouts), Some(5));
        assert_eq!(c.get(Counter::TcpFastRetrans), Some(6));
        assert_eq!(c.get(Counter::TcpLossProbes), None, "absent: unknown");
        assert!(c.get(Counter::RetransSegs).is_some());
        assert!(Counters::parse("garbage", netstat).is_err());
        // A kernel without UDP-Lite (or any other group procfs expects)
        // still gives its Tcp counters.
        let tcp_only = "Tcp: RtoAlgorithm ActiveOpens OutSegs RetransSegs CurrEstab\n\
                        Tcp: 1 5 900 7 2\n";
        let c = Counters::parse(tcp_only, netstat).unwrap();
        assert_eq!(c.get(Counter::ActiveOpens), Some(5));
        assert_eq!(c.get(Counter::RetransSegs), Some(7));
        assert_eq!(c.get(Counter::InSegs), None);
        assert_eq!(c.curr_estab, Some(2));
        assert_eq!(c.get(Counter::TcpTimeouts), Some(5));
    }
}
