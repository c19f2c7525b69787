//! The JSON Lines renderer: one object per record, every one with `type`
//! and `ts` (the schema is in the README). Per-event records are written
//! with the allocation-free pieces of [`put`].

use std::io::Write;

use super::{
    format::{Clock, ClockFmt, errno_name, json_flow, json_owner},
    put,
};
use crate::{
    event::TcpState,
    views::records::{FlowRef, HistReport, Reason, Rec, TopReport},
};

fn flow(b: &mut Vec<u8>, clock: &Clock, f: &FlowRef<'_>) {
    json_flow(b, clock, f.ts_ns, f.tuple, f.owner);
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
pub fn render(b: &mut Vec<u8>, clock: &Clock, rec: &Rec<'_>) {
    match *rec {
        Rec::State {
            flow: ref f,
            old,
            new,
            prev_state_ns,
        } => {
            b.extend_from_slice(b"{\"type\":\"state\",");
            flow(b, clock, f);
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
        } => {
            b.extend_from_slice(b"{\"type\":\"retrans\",");
            flow(b, clock, f);
            b.extend_from_slice(b"\"state\":\"");
            b.extend_from_slice(state.name().as_bytes());
            b.extend_from_slice(b"\",\"kind\":\"");
            b.extend_from_slice(kind.name().as_bytes());
            b.extend_from_slice(b"\",\"segs\":");
            opt(b, segs.map(u64::from));
            b.extend_from_slice(b"}\n");
        }
        Rec::Connect(o) => {
            b.extend_from_slice(b"{\"type\":\"connect\",");
            json_flow(b, clock, o.ts_ns, &o.tuple, o.owner.as_ref());
            b.extend_from_slice(b"\"latency_us\":");
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
            flow(b, clock, f);
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
        Rec::Top(t) => top(b, clock, t),
        Rec::Event(_) | Rec::Rtt { .. } | Rec::Census { .. } => {}
    }
}

/// One line per histogram group.
fn hist(b: &mut Vec<u8>, clock: &Clock, h: &HistReport) {
    for g in &h.groups {
        let _ = write!(
            b,
            "{{\"type\":\"hist\",\"ts\":\"{}\",\"metric\":\"{}\",\"key\":",
            clock.rfc3339(h.ts_ns),
            h.metric.name()
        );
        put::json_str(b, g.key.as_bytes());
        let _ = write!(
            b,
            ",\"netns\":{},\"count\":{},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{},\"buckets\":[",
            g.netns, g.count, g.p50_us, g.p90_us, g.p99_us, g.max_us
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

fn top(b: &mut Vec<u8>, clock: &Clock, t: &TopReport) {
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
        json_owner(b, f.owner.as_ref());
        let u = &f.tuple;
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
            ",\"retrans\":{},\"retrans_segs\":{},\"resets_sent\":{},\"resets_recv\":{},\"handshake_us\":",
            f.retrans, f.retrans_segs, f.resets_sent, f.resets_recv
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
    b.extend_from_slice(b"}}\n");
}
