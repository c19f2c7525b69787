//! The playbooks: each watches the event stream for what it needs and, at
//! the end of the session, examines what it saw together with the
//! [`Scene`] (the engine's sockets, the kernel's counters) and says what
//! is wrong as [`Finding`]s. One file per playbook; [`all`] lists them.

mod connect_failures;
mod handshake_slow;
mod retrans_advice;
mod retrans_spike;
mod rst_storm;
#[cfg(test)]
mod tests;

use crate::{
    counters::{Counter, Counters, rates::Rates},
    engine::{Annotated, Engine, flows::ConnectOutcome},
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
    pub cx: &'a Context,
    /// `--wan`: judge retransmission rates by the WAN line.
    pub wan: bool,
}

impl Scene<'_> {
    /// The counters' growth over the session.
    pub fn rates(&self) -> Option<Rates> {
        Some(Rates::between(self.first?, self.last?))
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
        Box::new(retrans_spike::RetransSpike::default()),
        Box::new(rst_storm::RstStorm::default()),
        Box::new(handshake_slow::HandshakeSlow::default()),
        Box::new(connect_failures::ConnectFailures::default()),
    ]
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
