//! `top`'s table fitted to a width: which columns fit (the addresses
//! last, taking what is left, shortened in the middle so the port stays;
//! less telling columns dropped first on a narrow screen), the rolled-up
//! rows of `--group`, and the footer. Pure text, shared by the screen
//! sink (any size) and the text sink (group rows, footer).

use std::fmt::Write as _;

use super::{
    escape,
    format::{endpoint, put_netns},
};
use crate::views::{
    records::{TopReport, TopRow},
    top::{GroupKey, TopGroup},
};

/// One column of the flow table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Pid,
    Comm,
    State,
    Role,
    Age,
    Retr,
    Rst,
    Hs,
    Rtt,
    Netns,
}

impl Col {
    fn head(self) -> &'static str {
        match self {
            Self::Pid => "PID",
            Self::Comm => "COMM",
            Self::State => "STATE",
            Self::Role => "ROLE",
            Self::Age => "AGE(s)",
            Self::Retr => "RETR",
            Self::Rst => "RST o/i",
            Self::Hs => "HS(ms)",
            Self::Rtt => "RTT(ms)",
            Self::Netns => "NETNS",
        }
    }

    fn width(self) -> usize {
        match self {
            Self::Pid => 7,
            Self::Comm => 15,
            Self::State => 11,
            Self::Role => 8,
            Self::Age => 7,
            Self::Retr => 5,
            Self::Rst => 7,
            Self::Hs => 9,
            Self::Rtt => 9,
            Self::Netns => 10,
        }
    }

    fn left(self) -> bool {
        matches!(self, Self::Comm | Self::State | Self::Role | Self::Netns)
    }

    fn cell(self, r: &TopRow) -> String {
        let ms =
            |ns: Option<u64>| ns.map_or_else(|| "-".into(), |n| format!("{:.3}", n as f64 / 1e6));
        match self {
            Self::Pid => r.owner.map_or("-".into(), |o| o.pid.to_string()),
            Self::Comm => r
                .owner
                .map_or("-".into(), |o| escape::to_string(o.comm.bytes(), 16)),
            Self::State => r.state.name().into(),
            Self::Role => r.role.name().into(),
            Self::Age => r
                .age_ms
                .map_or("-".into(), |ms| format!("{:.1}", ms as f64 / 1e3)),
            Self::Retr => r.retrans.to_string(),
            Self::Rst => format!("{}/{}", r.resets_sent, r.resets_recv),
            Self::Hs => ms(r.handshake_ns),
            Self::Rtt => ms(r.rtt_us.map(|us| us * 1000)),
            Self::Netns => {
                let mut b = Vec::new();
                put_netns(&mut b, r.tuple.netns);
                String::from_utf8(b).unwrap_or_default().trim_end().into()
            }
        }
    }
}

/// What gives way, in order, when the screen is narrow: a column dropped,
/// or (`Comm`) the process name cut to [`COMM_MIN`].
const GIVE_WAY: [Col; 7] = [
    Col::Role,
    Col::Comm,
    Col::Rst,
    Col::Rtt,
    Col::Age,
    Col::Hs,
    Col::Netns,
];
/// The narrowest a process name gets.
const COMM_MIN: usize = 9;
/// Room the two addresses need at least (`255.255.255.255:65535` fits the
/// remote one).
const LOCAL_MIN: usize = 15;
const REMOTE_MIN: usize = 21;
/// The widest an endpoint gets (an IPv6 address with brackets and port).
const ENDPOINT_MAX: usize = 47;

/// Whether a report spans several network namespaces.
pub fn many_netns(t: &TopReport) -> bool {
    t.census_by_netns.len() > 1
        || t.rows
            .iter()
            .any(|r| r.tuple.netns != t.rows[0].tuple.netns)
}

/// `s` cut to `w` characters.
fn cut(s: &str, w: usize) -> String {
    s.chars().take(w).collect()
}

/// `s` padded (or cut) to `w` characters, to the left or right.
fn pad(s: &str, w: usize, left: bool) -> String {
    let s = cut(s, w);
    if left {
        format!("{s:<w$}")
    } else {
        format!("{s:>w$}")
    }
}

/// An endpoint in `w` characters: the address shortened in its middle
/// (`2001:db8:…:77]:443`), the port always whole.
pub fn fit_endpoint(e: &str, w: usize) -> String {
    let n = e.chars().count();
    if n <= w {
        return e.to_string();
    }
    let port_at = e.rfind(':').unwrap_or(e.len());
    let (addr, port) = e.split_at(port_at);
    let keep = w.saturating_sub(port.chars().count() + 1);
    if keep < 2 {
        return cut(e, w);
    }
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let a: Vec<char> = addr.chars().collect();
    let mut s: String = a[..head].iter().collect();
    s.push('…');
    s.extend(&a[a.len() - tail..]);
    s + port
}

/// The flow table's header and rows, each exactly `width` characters
/// wide at most.
pub fn flow_lines(t: &TopReport, width: usize) -> (String, Vec<String>) {
    let mut cols = vec![
        Col::Pid,
        Col::Comm,
        Col::State,
        Col::Role,
        Col::Age,
        Col::Retr,
        Col::Rst,
        Col::Hs,
    ];
    if t.rtt {
        cols.push(Col::Rtt);
    }
    if many_netns(t) {
        cols.push(Col::Netns);
    }
    let mut comm = Col::Comm.width();
    let fixed = |cols: &[Col], comm: usize| {
        cols.iter()
            .map(|c| if *c == Col::Comm { comm } else { c.width() } + 1)
            .sum::<usize>()
    };
    let ends: Vec<(String, String)> = t
        .rows
        .iter()
        .map(|r| {
            (
                endpoint(r.tuple.laddr, r.tuple.lport),
                endpoint(r.tuple.raddr, r.tuple.rport),
            )
        })
        .collect();
    let widest = |f: fn(&(String, String)) -> &String| {
        ends.iter()
            .map(|e| f(e).chars().count())
            .max()
            .unwrap_or(0)
            .clamp(6, ENDPOINT_MAX)
    };
    let (lw, rw) = (widest(|e| &e.0), widest(|e| &e.1));
    // The addresses as they are, or as short as they may get.
    let addr_min = lw.min(LOCAL_MIN) + 1 + rw.min(REMOTE_MIN);
    for give in GIVE_WAY {
        if fixed(&cols, comm) + addr_min <= width {
            break;
        }
        match give {
            Col::Comm => comm = COMM_MIN,
            d => cols.retain(|c| *c != d),
        }
    }
    let room = width.saturating_sub(fixed(&cols, comm));
    // Both whole if they fit; else the local side gives way first, down
    // to its least; on a screen too narrow for even that, they share.
    let (lmin, rmin) = (lw.min(LOCAL_MIN), rw.min(REMOTE_MIN));
    let (local, remote) = if lw + 1 + rw <= room {
        (lw, rw)
    } else if lmin + 1 + rmin <= room {
        let remote = (room - 1 - lmin).min(rw);
        ((room - 1 - remote).min(lw), remote)
    } else {
        let local = room.saturating_sub(1) * lmin / (lmin + rmin);
        (local, room.saturating_sub(1 + local))
    };
    let line = |cells: Vec<String>, l: &str, r: &str| {
        let mut s = String::with_capacity(width);
        for (c, v) in cols.iter().zip(cells) {
            let w = if *c == Col::Comm { comm } else { c.width() };
            let _ = write!(s, "{} ", pad(&v, w, c.left()));
        }
        let _ = write!(
            s,
            "{} {}",
            pad(&fit_endpoint(l, local), local, true),
            fit_endpoint(r, remote)
        );
        cut(s.trim_end(), width)
    };
    let head = line(
        cols.iter().map(|c| c.head().to_string()).collect(),
        "LOCAL",
        "REMOTE",
    );
    let rows = t
        .rows
        .iter()
        .zip(&ends)
        .map(|(r, (l, rm))| line(cols.iter().map(|c| c.cell(r)).collect(), l, rm))
        .collect();
    (head, rows)
}

/// A group's name: `python3[30089]`, `10.0.0.7`, `:443`, and the
/// namespace if `netns`.
pub fn group_name(g: &TopGroup, netns: bool) -> String {
    let mut s = match &g.key {
        GroupKey::Owner(Some(o)) => format!("{}[{}]", escape::to_string(o.comm.bytes(), 16), o.pid),
        GroupKey::Owner(None) => "(no owner)".into(),
        GroupKey::Remote { addr: Some(a), .. } => a.to_string(),
        GroupKey::Remote { addr: None, .. } => "(listeners)".into(),
        GroupKey::Port { port, .. } => format!(":{port}"),
    };
    if netns && let Some(n) = g.key.netns() {
        let _ = write!(s, " netns {n}");
    }
    s
}

/// A group's live sockets per state and their growth:
/// `CLOSE_WAIT 40 (+3/min), ESTABLISHED 2`.
pub fn group_states(g: &TopGroup) -> String {
    let mut s = String::new();
    for (i, (state, n, per_min)) in g.states.iter().enumerate() {
        let sep = if i > 0 { ", " } else { "" };
        let _ = write!(s, "{sep}{} {n}", state.name());
        if let Some(r) = per_min
            && r.abs() >= 0.5
        {
            let _ = write!(s, " ({r:+.0}/min)");
        }
    }
    if s.is_empty() {
        s.push_str("(all closed)");
    }
    s
}

/// The group table's header and rows, at most `width` characters wide.
pub fn group_lines(t: &TopReport, width: usize) -> (String, Vec<String>) {
    let netns = many_netns(t);
    let names: Vec<String> = t.groups.iter().map(|g| group_name(g, netns)).collect();
    let gw = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(5, 40)
        .min(width.saturating_sub(40).max(12));
    let head = cut(
        &format!(
            "{:<gw$} {:>6} {:>7} {:>7} {:>6} STATES",
            "GROUP", "FLOWS", "NEW/s", "RETR/s", "RST/s"
        ),
        width,
    );
    let rows = t
        .groups
        .iter()
        .zip(names)
        .map(|(g, name)| {
            cut(
                &format!(
                    "{:<gw$} {:>6} {:>7.1} {:>7.1} {:>6.1} {}",
                    fit_endpoint(&name, gw),
                    g.flows,
                    g.new_per_s,
                    g.retrans_segs_per_s,
                    g.resets_per_s,
                    group_states(g)
                ),
                width,
            )
        })
        .collect();
    (head, rows)
}

/// `1234567` as `1 234 567`.
pub fn thousands(n: u64) -> String {
    let d = n.to_string();
    let mut s = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            s.push(' ');
        }
        s.push(c);
    }
    s
}

/// What the table shows of what there is: `25 of 3 065 flows`, with the
/// state filter `25 of 40 flows in CLOSE_WAIT (3 065 in all)`, grouped
/// `4 of 4 groups of 3 065 flows`; `shown` rows (or groups) are on screen.
pub fn footer(t: &TopReport, shown: usize) -> String {
    let states = if t.states.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = t.states.iter().map(|s| s.name()).collect();
        format!(" in {}", names.join(","))
    };
    let all = if t.states.is_empty() {
        String::new()
    } else {
        format!(" ({} in all)", thousands(t.total_flows))
    };
    match t.group {
        Some(by) => format!(
            "{} of {} groups by {} of {} flows{states}{all}",
            thousands(shown as u64),
            thousands(t.total_groups),
            by.name(),
            thousands(t.matching_flows),
        ),
        None => format!(
            "{} of {} flows{states}{all}",
            thousands(shown as u64),
            thousands(t.matching_flows),
        ),
    }
}

#[cfg(test)]
mod tests;
