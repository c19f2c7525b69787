//! `tcptrace doctor` sessions over a private namespace: start one, make
//! the fault happen in the namespace while it watches, and read what it
//! found (the `finding` records and the exit status).

use std::{process::ExitStatus, time::Duration};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::{NetNs, Tracer, tracer::of_type};

/// A doctor watching a namespace.
pub struct Session {
    tracer: Tracer,
    secs: u64,
}

/// What a session ended with.
pub struct Report {
    /// The exit status (0 healthy, 3 warning, 4 critical).
    pub code: i32,
    pub findings: Vec<Value>,
    /// The final `doctor` record.
    pub verdict: Value,
}

impl Session {
    /// `tcptrace doctor --json --netns NS --duration SECS`, started and
    /// watching (`extra` are more arguments).
    pub fn start(ns: &NetNs, secs: u64, extra: &[&str]) -> Self {
        let path = format!("/run/netns/{}", ns.name);
        let secs_s = secs.to_string();
        let mut args = vec!["doctor", "--json", "--netns", &path, "--duration", &secs_s];
        args.extend_from_slice(extra);
        Self {
            tracer: Tracer::start(&args),
            secs,
        }
    }

    /// Waits for the session to end by itself and reads its report.
    pub fn report(self) -> Report {
        let (status, records) = self.tracer.wait_exit(Duration::from_secs(self.secs + 60));
        Report::of_run(status, records)
    }

    /// Ends the session now, as Ctrl-C does, and reads its report: for a
    /// fault whose end the test waits for, so that the session has seen
    /// all of it whatever it took (its `secs` are then only a cap).
    pub fn stop(self) -> Report {
        let (status, records) = self.tracer.stop_with(Signal::SIGINT);
        Report::of_run(status, records)
    }
}

impl Report {
    fn of_run(status: ExitStatus, records: Vec<Value>) -> Self {
        let code = status.code().expect("tcptrace doctor killed by a signal");
        let findings: Vec<Value> = of_type(&records, "finding").into_iter().cloned().collect();
        let verdicts = of_type(&records, "doctor");
        assert_eq!(verdicts.len(), 1, "one verdict: {records:?}");
        let verdict = verdicts[0].clone();
        assert_eq!(
            verdict["findings"].as_u64(),
            Some(findings.len() as u64),
            "the verdict counts the findings: {records:?}"
        );
        Report {
            code,
            findings,
            verdict,
        }
    }

    /// The findings of one playbook.
    pub fn of(&self, playbook: &str) -> Vec<&Value> {
        self.findings
            .iter()
            .filter(|f| f["playbook"] == playbook)
            .collect()
    }

    /// The one finding of `playbook` (fails, showing all, if not one).
    pub fn one(&self, playbook: &str) -> &Value {
        let v = self.of(playbook);
        assert_eq!(v.len(), 1, "one {playbook} finding: {:#?}", self.findings);
        v[0]
    }
}

/// Whether one of a finding's subjects satisfies `pred`.
pub fn has_subject(f: &Value, pred: impl Fn(&Value) -> bool) -> bool {
    f["subjects"].as_array().unwrap().iter().any(pred)
}
