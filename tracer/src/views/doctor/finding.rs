//! What the doctor says: a finding per problem seen (symptom, evidence,
//! likely cause, what to do now, the lasting fix) and the verdict of the
//! whole session. Playbooks make them; the sinks render them (text at 80
//! columns, or one JSON record each) and the exit status follows the worst.

use std::net::IpAddr;

use serde::Serialize;

use crate::event::Owner;

/// The playbooks, in the order a tie in severity lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Playbook {
    ListenOverflow,
    PortExhaustion,
    CloseWaitLeak,
    RetransSpike,
    RstStorm,
    HandshakeSlow,
    ConnectFailures,
    Keepalive,
    Settings,
}

impl Playbook {
    pub fn name(self) -> &'static str {
        match self {
            Self::ListenOverflow => "listen_overflow",
            Self::PortExhaustion => "port_exhaustion",
            Self::CloseWaitLeak => "close_wait_leak",
            Self::RetransSpike => "retrans_spike",
            Self::RstStorm => "rst_storm",
            Self::HandshakeSlow => "handshake_slow",
            Self::ConnectFailures => "connect_failures",
            Self::Keepalive => "keepalive",
            Self::Settings => "settings",
        }
    }
}

/// How bad: a warning is worth a look; critical hurts service now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// The outcome of a session, and the exit status a script branches on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Healthy,
    Warning,
    Critical,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    /// 0 healthy, 3 a warning, 4 a critical finding (1 and 2 stay the
    /// error and usage statuses of every command).
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Healthy => 0,
            Self::Warning => 3,
            Self::Critical => 4,
        }
    }

    /// The status of a list of findings: the worst of them.
    pub fn of(findings: &[Finding]) -> Self {
        match findings.iter().map(|f| f.severity).max() {
            None => Self::Healthy,
            Some(Severity::Warning) => Self::Warning,
            Some(Severity::Critical) => Self::Critical,
        }
    }
}

/// Who or what a finding is about: a process, a listener, a destination
/// or a flow (the fields that apply).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Subject {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub laddr: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raddr: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rport: Option<u16>,
    /// How many sockets or events of the finding are this subject's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl Subject {
    /// A process (its name as the kernel gave it; sinks escape it).
    pub fn owner(o: &Owner) -> Self {
        Self {
            pid: Some(o.pid),
            comm: Some(o.comm.as_str().into_owned()),
            ..Self::default()
        }
    }

    /// The processes behind some events, most first, at most `max`: one
    /// subject per command name (with its pid when only one process of
    /// that name took part, as a loop of short-lived clients does not).
    pub fn owners<'a>(counts: impl IntoIterator<Item = (&'a Owner, u64)>, max: usize) -> Vec<Self> {
        let mut by_comm: std::collections::HashMap<crate::event::Comm, (Option<u32>, u64)> =
            std::collections::HashMap::new();
        for (o, n) in counts {
            let e = by_comm.entry(o.comm).or_insert((Some(o.pid), 0));
            if e.0 != Some(o.pid) {
                e.0 = None;
            }
            e.1 += n;
        }
        let mut v: Vec<_> = by_comm.into_iter().collect();
        v.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.bytes().cmp(b.0.bytes())));
        v.into_iter()
            .take(max)
            .map(|(comm, (pid, n))| Self {
                pid,
                comm: Some(comm.as_str().into_owned()),
                count: Some(n),
                ..Self::default()
            })
            .collect()
    }

    pub fn with_count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }
}

/// One fact behind a finding: a machine key and value for JSON, and the
/// sentence a person reads (numbers with their thresholds).
#[derive(Clone, Debug, PartialEq)]
pub struct Fact {
    pub key: &'static str,
    pub value: serde_json::Value,
    pub text: String,
}

/// One problem seen, from symptom to the setting to change.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// CLOCK_MONOTONIC nanoseconds of the examination.
    pub ts_ns: u64,
    pub playbook: Playbook,
    pub severity: Severity,
    /// The symptom, one line.
    pub summary: String,
    pub subjects: Vec<Subject>,
    pub evidence: Vec<Fact>,
    pub cause: String,
    /// What to do now (commands to run, what to look at).
    pub action: String,
    /// The lasting fix: the setting (with its current value) or the code
    /// change.
    pub fix: String,
}

impl Finding {
    /// A finding with its symptom; the rest is filled in by the builder
    /// methods.
    pub fn new(playbook: Playbook, severity: Severity, summary: impl Into<String>) -> Self {
        Self {
            ts_ns: 0,
            playbook,
            severity,
            summary: summary.into(),
            subjects: Vec::new(),
            evidence: Vec::new(),
            cause: String::new(),
            action: String::new(),
            fix: String::new(),
        }
    }

    pub fn fact(
        mut self,
        key: &'static str,
        value: impl Into<serde_json::Value>,
        text: impl Into<String>,
    ) -> Self {
        self.evidence.push(Fact {
            key,
            value: value.into(),
            text: text.into(),
        });
        self
    }

    pub fn subject(mut self, s: Subject) -> Self {
        self.subjects.push(s);
        self
    }

    pub fn cause(mut self, s: impl Into<String>) -> Self {
        self.cause = s.into();
        self
    }

    pub fn action(mut self, s: impl Into<String>) -> Self {
        self.action = s.into();
        self
    }

    pub fn fix(mut self, s: impl Into<String>) -> Self {
        self.fix = s.into();
        self
    }
}

/// The end of a session: how long it watched, how many findings, the
/// status (and so the exit status).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    pub ts_ns: u64,
    pub duration_s: f64,
    pub findings: usize,
    pub critical: usize,
    pub status: Status,
    /// The namespace watched, by inode.
    pub netns: Option<u32>,
}
