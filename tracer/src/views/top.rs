//! `tcptrace top`: a refreshing per-flow table (owner, flow, state, age,
//! retransmits, resets, handshake latency, RTT) with a census line of
//! sockets per state. Redraws in place on a terminal; plain periodic
//! output otherwise; one JSON record per refresh with `--json`.

use std::{cmp::Reverse, io::Write};

use super::{Context, View};
use crate::{
    engine::{Engine, flows::Flow},
    event::TcpState,
    hooks::Wants,
    sinks::{
        Mode, Output,
        format::{endpoint, ip_version, json_owner},
    },
};

/// Sort order of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    /// Most retransmits first.
    Retrans,
    /// Slowest handshake first.
    Latency,
    /// Oldest first.
    Age,
}

pub struct Top {
    pub sort: SortBy,
    pub interval_ns: u64,
    /// Rows at most.
    pub limit: usize,
    /// Redraw in place (stdout is a terminal and text mode).
    pub redraw: bool,
    pub rtt: bool,
    /// How long closed flows stay in the table.
    pub linger_ns: u64,
    last_ns: Option<u64>,
}

impl Top {
    pub fn new(sort: SortBy, interval_ns: u64, limit: usize, redraw: bool, rtt: bool) -> Self {
        Self {
            sort,
            interval_ns,
            limit,
            redraw,
            rtt,
            linger_ns: crate::engine::Config::default().linger_ns,
            last_ns: None,
        }
    }

    fn snapshot(&self, engine: &Engine, now_ns: u64, out: &mut Output, cx: &Context) {
        let keep = |f: &Flow| {
            cx.filter
                .matches_flow(&f.tuple, f.owner.as_ref(), f.tuple.lport != 0)
        };
        let census = engine.census(keep);
        let mut flows: Vec<&Flow> = engine.flows().filter(|f| keep(f)).collect();
        match self.sort {
            SortBy::Retrans => flows.sort_by_key(|f| {
                (
                    Reverse(f.extra().retrans.total()),
                    Reverse(f.extra().resets_sent + f.extra().resets_recv),
                    f.start_ns,
                )
            }),
            SortBy::Latency => flows.sort_by_key(|f| (Reverse(f.handshake_ns.get()), f.start_ns)),
            SortBy::Age => flows.sort_by_key(|f| f.start_ns),
        }
        flows.truncate(self.limit);
        let age_ms =
            |f: &Flow| (f.start_ns != 0).then(|| now_ns.saturating_sub(f.start_ns) / 1_000_000);
        match out.mode {
            Mode::Json => {
                let _ = write!(
                    out.buf,
                    "{{\"type\":\"top\",\"ts\":\"{}\",\"census\":{{",
                    cx.clock.rfc3339(now_ns)
                );
                for (i, (s, n)) in census.iter().enumerate() {
                    let _ = write!(
                        out.buf,
                        "{}\"{}\":{n}",
                        if i > 0 { "," } else { "" },
                        s.name()
                    );
                }
                out.buf.extend_from_slice(b"},\"flows\":[");
                for (i, f) in flows.iter().enumerate() {
                    if i > 0 {
                        out.buf.push(b',');
                    }
                    out.buf.push(b'{');
                    json_owner(&mut out.buf, f.owner.as_ref());
                    let t = &f.tuple;
                    let opt =
                        |v: Option<u64>| v.map_or_else(|| "null".to_string(), |v| v.to_string());
                    let _ = write!(
                        out.buf,
                        ",\"family\":\"{}\",\"laddr\":\"{}\",\"lport\":{},\"raddr\":\"{}\",\"rport\":{},\"state\":\"{}\",\"role\":\"{}\",\"closed\":{},\"age_ms\":{},\"retrans\":{},\"retrans_segs\":{},\"resets_sent\":{},\"resets_recv\":{},\"handshake_us\":{},\"rtt_us\":{}}}",
                        t.family.name(),
                        t.laddr,
                        t.lport,
                        t.raddr,
                        t.rport,
                        f.state.name(),
                        f.role.name(),
                        f.end_ns.get().is_some() && f.state != TcpState::TimeWait,
                        opt(age_ms(f)),
                        f.extra().retrans.total(),
                        f.extra().retrans.segs,
                        f.extra().resets_sent,
                        f.extra().resets_recv,
                        opt(f.handshake_ns.get().map(|n| n / 1000)),
                        opt(f.extra().rtt.as_ref().and_then(|r| r.median_us())),
                    );
                }
                out.buf.extend_from_slice(b"],\"transitions\":{");
                let mut matrix: Vec<_> = engine.matrix().iter().collect();
                matrix.sort();
                for (i, ((old, new), n)) in matrix.into_iter().enumerate() {
                    let sep = if i > 0 { "," } else { "" };
                    let _ = write!(out.buf, "{sep}\"{}->{}\":{n}", old.name(), new.name());
                }
                out.buf.extend_from_slice(b"}}\n");
            }
            Mode::Text => {
                if self.redraw {
                    out.buf.extend_from_slice(b"\x1b[H\x1b[2J");
                } else {
                    out.buf.push(b'\n');
                }
                let _ = write!(out.buf, "{} sockets:", cx.clock.time_of_day(now_ns));
                for (s, n) in &census {
                    let _ = write!(out.buf, " {}={n}", s.name());
                }
                out.buf.push(b'\n');
                let _ = writeln!(
                    out.buf,
                    "{:>7} {:<15} IP {:<23} {:<23} {:<11} {:<8} {:>8} {:>5} {:>7} {:>9}{}",
                    "PID",
                    "COMM",
                    "LOCAL",
                    "REMOTE",
                    "STATE",
                    "ROLE",
                    "AGE(s)",
                    "RETR",
                    "RST o/i",
                    "HS(ms)",
                    if self.rtt { "   RTT(ms)" } else { "" }
                );
                for f in &flows {
                    let (pid, comm) = f.owner.map_or_else(
                        || ("-".to_string(), "-".to_string()),
                        |o| (o.pid.to_string(), o.comm.as_str().into_owned()),
                    );
                    let ms = |ns: Option<u64>| {
                        ns.map_or_else(|| "-".to_string(), |n| format!("{:.3}", n as f64 / 1e6))
                    };
                    let _ = write!(
                        out.buf,
                        "{pid:>7} {comm:<15} {}  {:<23} {:<23} {:<11} {:<8} {:>8} {:>5} {:>7} {:>9}",
                        ip_version(f.tuple.family),
                        endpoint(f.tuple.laddr, f.tuple.lport),
                        endpoint(f.tuple.raddr, f.tuple.rport),
                        f.state.name(),
                        f.role.name(),
                        age_ms(f).map_or_else(
                            || "-".to_string(),
                            |ms| format!("{:.1}", ms as f64 / 1e3)
                        ),
                        f.extra().retrans.total(),
                        format!("{}/{}", f.extra().resets_sent, f.extra().resets_recv),
                        ms(f.handshake_ns.get()),
                    );
                    if self.rtt {
                        let rtt = f
                            .extra()
                            .rtt
                            .as_ref()
                            .and_then(|r| r.median_us())
                            .map(|us| us * 1000);
                        let _ = write!(out.buf, " {:>9}", ms(rtt));
                    }
                    out.buf.push(b'\n');
                }
            }
        }
        out.record_done();
    }
}

impl View for Top {
    fn wants(&self) -> Wants {
        Wants {
            rtt: self.rtt,
            ..Wants::FLOWS
        }
    }

    fn engine_config(&self) -> crate::engine::Config {
        crate::engine::Config {
            linger_ns: self.linger_ns,
            ..crate::engine::Config::default()
        }
    }

    fn on_tick(&mut self, engine: &Engine, now_ns: u64, out: &mut Output, cx: &Context) -> bool {
        let last = *self.last_ns.get_or_insert(now_ns);
        if now_ns < last + self.interval_ns {
            return false;
        }
        self.last_ns = Some(now_ns);
        self.snapshot(engine, now_ns, out, cx);
        true
    }

    fn finish(&mut self, engine: &Engine, now_ns: u64, out: &mut Output, cx: &Context) {
        self.snapshot(engine, now_ns, out, cx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::tests::{owner, retrans, state, tuple},
        event::{RetransKind, TcpState::*},
        views::{testing::render, tests::context},
    };

    #[test]
    fn census_and_sorted_flows_in_json() {
        let cx = context();
        let mut e = Engine::default();
        let c = owner(1, "c");
        e.process(&state(1_000, 1, tuple(0, 80), c, Close, SynSent));
        e.process(&state(2_000, 1, tuple(1, 80), c, SynSent, Established));
        e.process(&state(3_000, 2, tuple(0, 80), c, Close, SynSent));
        e.process(&state(4_000, 2, tuple(2, 80), c, SynSent, Established));
        e.process(&retrans(
            5_000,
            2,
            tuple(2, 80),
            c,
            Established,
            RetransKind::Data,
        ));
        e.process(&state(6_000, 3, tuple(3, 80), c, Established, CloseWait));
        let mut top = Top::new(SortBy::Retrans, 1_000_000_000, 10, false, false);
        let text = render(Mode::Json, |out| top.finish(&e, 10_000, out, &cx));
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["type"], "top");
        assert_eq!(v["census"]["ESTABLISHED"], 2);
        assert_eq!(v["census"]["CLOSE_WAIT"], 1);
        let flows = v["flows"].as_array().unwrap();
        assert_eq!(flows.len(), 3);
        assert_eq!(flows[0]["lport"], 2, "most retransmits first");
        assert_eq!(flows[0]["retrans"], 1);
        assert_eq!(flows[0]["handshake_us"], 1);
        assert_eq!(flows[0]["role"], "client");
        assert_eq!(v["transitions"]["SYN_SENT->ESTABLISHED"], 2);
    }

    #[test]
    fn text_table_has_a_census_line() {
        let cx = context();
        let mut e = Engine::default();
        e.process(&state(
            1,
            1,
            tuple(1, 80),
            owner(1, "c"),
            SynSent,
            Established,
        ));
        let mut top = Top::new(SortBy::Age, 1, 10, false, true);
        let text = render(Mode::Text, |out| top.finish(&e, 2, out, &cx));
        assert!(text.contains("sockets: ESTABLISHED=1"), "{text}");
        assert!(text.contains("RTT(ms)"), "{text}");
    }
}
