//! The playbooks: each watches the event stream for what it needs and, at
//! the end of the session, examines what it saw together with the
//! [`Scene`] (the engine's sockets, the kernel's counters) and says what
//! is wrong as [`Finding`]s. One file per playbook; [`all`] lists them.

mod close_wait_leak;
mod connect_failures;
#[cfg(test)]
mod event_tests;
mod handshake_slow;
mod keepalive;
mod listen_overflow;
mod port_exhaustion;
mod retrans_advice;
mod retrans_spike;
mod rst_storm;
mod settings;
#[cfg(test)]
mod socket_tests;

use std::{collections::HashMap, net::IpAddr};

use crate::{
    counters::{Counter, Counters, Tables, rates::Rates},
    engine::flows::Flow,
    engine::{Annotated, Engine, flows::ConnectOutcome},
    event::Tuple,
    views::Context,
};

use super::finding::{Finding, Subject};

/// What every playbook may consult at the end of a session.
pub struct Scene<'a> {
    pub engine: &'a Engine,
    /// CLOCK_MONOTONIC nanoseconds of the end.
    pub now_ns: u64,
    /// How long the session watched.
    pub duration_s: f64,
    /// The watched namespace's counters at the start and at the end
    /// (`None` when they could not be read).
    pub first: Option<&'a Counters>,
    pub last: Option<&'a Counters>,
    /// The socket tables, sysctls and descriptors at the start and at the
    /// end (`None` when they could not be read, or in a replay).
    pub tables_first: Option<&'a Tables>,
    pub tables_last: Option<&'a Tables>,
    pub cx: &'a Context,
    /// `--wan`: judge retransmission rates by the WAN line.
    pub wan: bool,
}

impl Scene<'_> {
    /// The counters' growth over the session.
    pub fn rates(&self) -> Option<Rates> {
        Some(Rates::between(self.first?, self.last?))
    }

    /// The namespace's settings (at the end, else at the start).
    pub fn sysctls(&self) -> Option<&crate::sysctls::Sysctls> {
        self.tables_last
            .or(self.tables_first)
            .and_then(|t| t.sysctls.as_ref())
    }

    /// One counter's growth over the session.
    pub fn delta(&self, c: Counter) -> Option<u64> {
        self.rates()?.delta(c)
    }
}

/// One playbook: it sees the events it cares about and then examines.
pub trait Examine {
    /// One event that passed the filter.
    fn on_event(&mut self, _a: &Annotated, _cx: &Context) {}
    /// One connection outcome that passed the filter.
    fn on_connect(&mut self, _o: &ConnectOutcome) {}
    /// What is wrong, if anything (nothing in a healthy namespace).
    fn examine(&self, scene: &Scene<'_>) -> Vec<Finding>;
}

/// Options that change what the playbooks judge.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub wan: bool,
}

/// Every playbook, fresh.
pub fn all(_opts: Options) -> Vec<Box<dyn Examine>> {
    vec![
        Box::new(listen_overflow::ListenOverflow::default()),
        Box::new(port_exhaustion::PortExhaustion::default()),
        Box::new(close_wait_leak::CloseWaitLeak),
        Box::new(retrans_spike::RetransSpike::default()),
        Box::new(rst_storm::RstStorm::default()),
        Box::new(handshake_slow::HandshakeSlow::default()),
        Box::new(connect_failures::ConnectFailures::default()),
        Box::new(keepalive::Keepalive),
        Box::new(settings::Settings::default()),
    ]
}

/// A socket's addresses and ports, the way the socket tables and the
/// engine both give them (the namespace left out: the engine may not
/// know it).
pub(super) type Key = (IpAddr, u16, IpAddr, u16);

pub(super) fn key(t: &Tuple) -> Key {
    (t.laddr, t.lport, t.raddr, t.rport)
}

/// The engine's live flows by [`key`], to join the socket tables with
/// what the events said (owners by thread name, when a state began).
pub(super) fn flows_by_tuple(engine: &Engine) -> HashMap<Key, &Flow> {
    engine.flows().map(|f| (key(&f.tuple), f)).collect()
}

/// The median of some values (0 if none).
pub(super) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Processes (from [`Subject::owners`]) as a fact's value and sentence:
/// `{"nginx": 40}` and `nginx (pid 42) 40`.
pub(super) fn processes(v: &[Subject]) -> (serde_json::Map<String, serde_json::Value>, String) {
    let json = v
        .iter()
        .map(|s| {
            (
                s.comm.clone().unwrap_or_default(),
                s.count.unwrap_or(0).into(),
            )
        })
        .collect();
    let text: Vec<String> = v
        .iter()
        .map(|s| {
            let pid = s.pid.map_or(String::new(), |p| format!(" (pid {p})"));
            let comm = s.comm.as_deref().unwrap_or("?");
            format!("{comm}{pid} {}", s.count.unwrap_or(0))
        })
        .collect();
    (json, text.join(", "))
}
