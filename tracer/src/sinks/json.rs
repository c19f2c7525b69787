//! The JSON Lines renderer: one object per record, every one with `type`
//! and `ts` (the schema is in the README). Per-event records are written
//! with the allocation-free pieces of [`put`].

use std::io::Write;

use super::{
    counters,
    format::{Clock, ClockFmt, errno_name, json_flow, json_owner, json_str},
    put,
};
use crate::{
    cgroups::Names,
    event::TcpState,
    views::{
        records::{FlowRef, HistReport, Reason, Rec, TopReport},
        top::{GroupKey, TopGroup},
    },
};

fn flow(b: &mut Vec<u8>, clock: &Clock, cg: &Names, f: &FlowRef<'_>) {
    json_flow(b, clock, cg, f.ts_ns, f.tuple, f.owner);
}

/// `null` or the number.
fn opt(b: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(n) => put::int(b, n),
        None => b.extend_from_slice(b"null"),
    }
}

/// Appends one record as a JSON line. Recording-only records render
/// nothing here (the recording sink writes them).
/// `cg` names owners' cgroups.
pub fn render(b: &mut Vec<u8>, clock: &Clock, cg: &Names, rec: &Rec<'_>) {
    match *rec {
        Rec::State {
            flow: ref f,
            old,
            new,
            prev_state_ns,
        } => {
            b.extend_from_slice(b"{\"type\":\"state\",");
            flow(b, clock, cg, f);
            b.extend_from_slice(b"\"old\":\"");
            b.extend_from_slice(old.name().as_bytes());
            b.extend_from_slice(b"\",\"new\":\"");
            b.extend_from_slice(new.name().as_bytes());
            b.extend_from_slice(b"\",\"prev_state_us\":");
            opt(b, prev_state_ns.map(|ns| ns / 1000));
            b.extend_from_slice(b"}\n");
        }
        Rec::Retrans {
            flow: ref f,
            state,
            kind,
            segs,
            failed,
        } => {
            b.extend_from_slice(b"{\"type\":\"retrans\",");
            flow(b, clock, cg, f);
            b.extend_from_slice(b"\"state\":\"");
            b.extend_from_slice(state.name().as_bytes());
            b.extend_from_slice(b"\",\"kind\":\"");
            b.extend_from_slice(kind.name().as_bytes());
            b.extend_from_slice(b"\",\"segs\":");
            match failed {
                // Nothing was sent: no segment to add up.
                Some(e) => {
                    b.extend_from_slice(b"0,\"failed\":");
                    put::json_str(b, errno_name(e).as_bytes());
                }
                None => opt(b, segs.map(u64::from)),
            }
            b.extend_from_slice(b"}\n");
        }
        Rec::Connect(o) => {
            b.extend_from_slice(b"{\"type\":\"connect\",");
            json_flow(b, clock, cg, o.ts_ns, &o.tuple, o.owner.as_ref());
            b.extend_from_slice(b"\"handshake_us\":");
            opt(b, o.latency_ns.map(|l| l / 1000));
            b.extend_from_slice(b",\"error\":");
            if o.failed() {
                let e = o.errno.map_or_else(|| "unknown".to_string(), errno_name);
                put::json_str(b, e.as_bytes());
            } else {
                b.extend_from_slice(b"null");
            }
            b.extend_from_slice(b"}\n");
        }
        Rec::Reset {
            flow: ref f,
            direction,
            state,
            reason,
        } => {
            b.extend_from_slice(b"{\"type\":\"reset\",");
            flow(b, clock, cg, f);
            let _ = write!(b, "\"direction\":\"{}\",\"state\":", direction.name());
            match state {
                Some(s) => {
                    let _ = write!(b, "\"{}\"", s.name());
                }
                None => b.extend_from_slice(b"null"),
            }
            b.extend_from_slice(b",\"reason\":");
            match reason {
                Some(Reason::Named(r)) => put::json_str(b, r.as_bytes()),
                Some(Reason::Code(n)) => {
                    let _ = write!(b, "\"{n}\"");
                }
                None => b.extend_from_slice(b"null"),
            }
            b.extend_from_slice(b"}\n");
        }
        Rec::Hist(h) => hist(b, clock, h),
        Rec::Top(t) => top(b, clock, cg, t),
        Rec::Stat(s) => counters::stat_json(b, clock, s),
        Rec::Summary(s) => counters::summary_json(b, clock, s),
        Rec::Finding(f) => super::findings::finding_json(b, clock, f),
        Rec::Doctor(v) => super::findings::verdict_json(b, clock, v),
        Rec::Event(_) | Rec::Rtt { .. } | Rec::Seeds(_) | Rec::Census { .. } => {}
    }
}

/// One line per histogram group (none for a round without samples): the
/// destination, and per flow the local side, as fields.
fn hist(b: &mut Vec<u8>, clock: &Clock, h: &HistReport) {
    for g in &h.groups {
        let _ = write!(
            b,
            "{{\"type\":\"hist\",\"ts\":\"{}\",\"metric\":\"{}\",\"family\":\"{}\",",
            clock.rfc3339(h.ts_ns),
            h.metric.name(),
            if g.remote.is_ipv4() { "ipv4" } else { "ipv6" },
        );
        if let Some(l) = g.local {
            let _ = write!(b, "\"laddr\":\"{}\",\"lport\":{},", l.ip(), l.port());
        }
        let _ = write!(
            b,
            "\"raddr\":\"{}\",\"rport\":{},\"netns\":{},\"count\":{},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{},\"buckets\":[",
            g.remote.ip(),
            g.remote.port(),
            g.netns,
            g.count,
            g.p50_us,
            g.p90_us,
            g.p99_us,
            g.max_us
        );
        for (n, (lo, hi, count)) in g.buckets.iter().enumerate() {
            let _ = write!(
                b,
                "{}{{\"lo_us\":{lo},\"hi_us\":{hi},\"count\":{count}}}",
                if n > 0 { "," } else { "" },
            );
        }
        b.extend_from_slice(b"]}\n");
    }
}

/// `{"STATE":N,...}`.
fn census(b: &mut Vec<u8>, c: &[(TcpState, u64)]) {
    b.push(b'{');
    for (i, (s, n)) in c.iter().enumerate() {
        let _ = write!(b, "{}\"{}\":{n}", if i > 0 { "," } else { "" }, s.name());
    }
    b.push(b'}');
}

fn top(b: &mut Vec<u8>, clock: &Clock, cg: &Names, t: &TopReport) {
    let _ = write!(
        b,
        "{{\"type\":\"top\",\"ts\":\"{}\",\"census\":",
        clock.rfc3339(t.ts_ns)
    );
    census(b, &t.census);
    b.extend_from_slice(b",\"census_by_netns\":{");
    for (i, (netns, c)) in t.census_by_netns.iter().enumerate() {
        let _ = write!(b, "{}\"{netns}\":", if i > 0 { "," } else { "" });
        census(b, c);
    }
    b.extend_from_slice(b"},\"flows\":[");
    for (i, f) in t.rows.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.push(b'{');
        json_owner(b, cg, f.owner.as_ref());
        let u = &f.tuple.unmapped();
        let _ = write!(
            b,
            ",\"family\":\"{}\",\"laddr\":\"{}\",\"lport\":{},\"raddr\":\"{}\",\"rport\":{},\"netns\":{},\"state\":\"{}\",\"role\":\"{}\",\"closed\":{},\"age_ms\":",
            u.family.name(),
            u.laddr,
            u.lport,
            u.raddr,
            u.rport,
            u.netns,
            f.state.name(),
            f.role.name(),
            f.closed,
        );
        opt(b, f.age_ms);
        let _ = write!(
            b,
            ",\"retrans\":{},\"retrans_segs\":{},\"retrans_by_kind\":{{",
            f.retrans, f.retrans_segs
        );
        for (i, (k, n)) in f.retrans_by_kind.by_kind().enumerate() {
            let sep = if i > 0 { "," } else { "" };
            let _ = write!(b, "{sep}\"{}\":{n}", k.name());
        }
        let _ = write!(
            b,
            "}},\"retrans_failed\":{},\"resets_sent\":{},\"resets_recv\":{},\"handshake_us\":",
            f.retrans_by_kind.failed, f.resets_sent, f.resets_recv
        );
        opt(b, f.handshake_ns.map(|n| n / 1000));
        b.extend_from_slice(b",\"rtt_us\":");
        opt(b, f.rtt_us);
        b.push(b'}');
    }
    b.extend_from_slice(b"],\"transitions\":{");
    for (i, ((old, new), n)) in t.transitions.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let _ = write!(b, "{sep}\"{}->{}\":{n}", old.name(), new.name());
    }
    let _ = write!(
        b,
        "}},\"total_flows\":{},\"matching_flows\":{},\"states\":[",
        t.total_flows, t.matching_flows
    );
    for (i, s) in t.states.iter().enumerate() {
        let _ = write!(b, "{}\"{}\"", if i > 0 { "," } else { "" }, s.name());
    }
    b.extend_from_slice(b"],\"group\":");
    match t.group {
        Some(g) => json_str(b, g.name()),
        None => b.extend_from_slice(b"null"),
    }
    let _ = write!(b, ",\"total_groups\":{},\"groups\":[", t.total_groups);
    for (i, g) in t.groups.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        group(b, cg, g);
    }
    b.push(b']');
    // Live only: absent, not zeros, in a replay.
    if let Some(r) = &t.rates {
        counters::top_rates_json(b, r);
    }
    b.extend_from_slice(b"}\n");
}

/// One group of `top --group`: its key fields (`pid`/`comm`, `netns` and
/// `raddr` or `port`), then sizes, states and rates.
fn group(b: &mut Vec<u8>, cg: &Names, g: &TopGroup) {
    b.push(b'{');
    match &g.key {
        GroupKey::Owner(o) => json_owner(b, cg, o.as_ref()),
        GroupKey::Remote { netns, addr } => {
            let _ = write!(b, "\"netns\":{netns},\"raddr\":");
            match addr {
                Some(a) => {
                    let _ = write!(b, "\"{a}\"");
                }
                None => b.extend_from_slice(b"null"),
            }
        }
        GroupKey::Port { netns, port } => {
            let _ = write!(b, "\"netns\":{netns},\"port\":{port}");
        }
    }
    let _ = write!(b, ",\"flows\":{},\"states\":{{", g.flows);
    for (i, (s, n, per_min)) in g.states.iter().enumerate() {
        let _ = write!(
            b,
            "{}\"{}\":{{\"count\":{n},\"per_min\":",
            if i > 0 { "," } else { "" },
            s.name()
        );
        rate(b, *per_min);
        b.push(b'}');
    }
    let _ = write!(
        b,
        "}},\"retrans\":{},\"retrans_segs\":{},\"resets\":{},\"new_per_s\":",
        g.retrans, g.retrans_segs, g.resets
    );
    rate(b, Some(g.new_per_s));
    b.extend_from_slice(b",\"retrans_segs_per_s\":");
    rate(b, Some(g.retrans_segs_per_s));
    b.extend_from_slice(b",\"resets_per_s\":");
    rate(b, Some(g.resets_per_s));
    b.extend_from_slice(b",\"max_handshake_us\":");
    opt(b, g.max_handshake_ns.map(|n| n / 1000));
    b.push(b'}');
}

/// A rate with three decimals, or `null`.
fn rate(b: &mut Vec<u8>, r: Option<f64>) {
    match r {
        Some(r) if r.is_finite() => {
            let _ = write!(b, "{}", (r * 1000.0).round() / 1000.0);
        }
        _ => b.extend_from_slice(b"null"),
    }
}
