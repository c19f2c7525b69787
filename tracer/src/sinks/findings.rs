//! The doctor's findings and verdict as text (a block per finding that
//! fits 80 columns: symptom, evidence, who, cause, what to do now, the
//! lasting fix) and as JSON Lines (`finding` and `doctor` records).

use std::io::Write as _;

use serde::Serialize;

use super::{
    escape,
    format::{ClockFmt as _, endpoint},
};
use crate::{
    event::Clock,
    views::doctor::finding::{Finding, Playbook, Severity, Status, Subject, Verdict},
};

/// The width the text is wrapped to.
const WIDTH: usize = 80;
/// The label column (`evidence  `).
const LABEL: usize = 10;

/// Text from a playbook or a process name, safe for a terminal.
fn safe(s: &str) -> String {
    escape::to_string(s.as_bytes(), usize::MAX)
}

/// `label` then `text` wrapped under it, each line indented past the label.
fn block(b: &mut Vec<u8>, label: &str, text: &str) {
    if text.is_empty() {
        return;
    }
    let indent = " ".repeat(2 + LABEL);
    let first = format!("  {label:<LABEL$}");
    let opts = textwrap::Options::new(WIDTH)
        .initial_indent(&first)
        .subsequent_indent(&indent);
    for line in textwrap::wrap(&safe(text), opts) {
        b.extend_from_slice(line.as_bytes());
        b.push(b'\n');
    }
}

/// How a subject reads: `nginx (pid 42)`, `:8080`, `10.0.0.2:443`, with
/// its count.
fn subject(s: &Subject) -> String {
    let mut parts = Vec::new();
    match (&s.comm, s.pid) {
        (Some(c), Some(p)) => parts.push(format!("{c} (pid {p})")),
        (None, Some(p)) => parts.push(format!("pid {p}")),
        (Some(c), None) => parts.push(c.clone()),
        (None, None) => {}
    }
    match (s.laddr, s.lport) {
        (Some(a), Some(p)) => parts.push(format!("on {}", endpoint(a, p))),
        (None, Some(p)) => parts.push(format!("on :{p}")),
        _ => {}
    }
    if let (Some(a), Some(p)) = (s.raddr, s.rport) {
        parts.push(format!("to {}", endpoint(a, p)));
    } else if let Some(a) = s.raddr {
        parts.push(format!("to {a}"));
    }
    let mut t = parts.join(" ");
    if let Some(n) = s.count {
        t.push_str(&format!(" ({n})"));
    }
    t
}

/// One finding as a text block and a blank line.
pub fn finding_text(b: &mut Vec<u8>, f: &Finding) {
    let head = format!(
        "{:<8}  {}",
        f.severity.name().to_uppercase(),
        f.playbook.name()
    );
    b.extend_from_slice(head.as_bytes());
    b.push(b'\n');
    let opts = textwrap::Options::new(WIDTH)
        .initial_indent("  ")
        .subsequent_indent("  ");
    for line in textwrap::wrap(&safe(&f.summary), opts) {
        b.extend_from_slice(line.as_bytes());
        b.push(b'\n');
    }
    let facts: Vec<&str> = f
        .evidence
        .iter()
        .map(|x| x.text.as_str())
        .filter(|t| !t.is_empty())
        .collect();
    for (i, t) in facts.iter().enumerate() {
        block(b, if i == 0 { "evidence" } else { "" }, t);
    }
    let who: Vec<String> = f.subjects.iter().map(subject).collect();
    block(b, "who", &who.join("; "));
    block(b, "cause", &f.cause);
    block(b, "now", &f.action);
    block(b, "fix", &f.fix);
    b.push(b'\n');
}

/// The verdict line.
pub fn verdict_text(b: &mut Vec<u8>, v: &Verdict) {
    let ns = v.netns.map_or(String::new(), |n| format!(", netns {n}"));
    let _ = match v.status {
        Status::Healthy => writeln!(
            b,
            "doctor: healthy, no findings in {:.0} s{ns}: exit status 0",
            v.duration_s
        ),
        s => writeln!(
            b,
            "doctor: {} finding{} ({} critical) in {:.0} s{ns}: exit status {}",
            v.findings,
            if v.findings == 1 { "" } else { "s" },
            v.critical,
            v.duration_s,
            s.exit_code()
        ),
    };
}

/// A `finding` record in the documented field order (`type` first).
#[derive(Serialize)]
struct FindingJson<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    ts: String,
    playbook: Playbook,
    severity: Severity,
    summary: &'a str,
    subjects: &'a [Subject],
    evidence: serde_json::Map<String, serde_json::Value>,
    cause: &'a str,
    action: &'a str,
    fix: &'a str,
}

/// The `doctor` record.
#[derive(Serialize)]
struct VerdictJson {
    #[serde(rename = "type")]
    ty: &'static str,
    ts: String,
    duration_s: f64,
    findings: usize,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<u32>,
}

/// One finding as a JSON line.
pub fn finding_json(b: &mut Vec<u8>, clock: &Clock, f: &Finding) {
    let rec = FindingJson {
        ty: "finding",
        ts: clock.rfc3339(f.ts_ns),
        playbook: f.playbook,
        severity: f.severity,
        summary: &f.summary,
        subjects: &f.subjects,
        evidence: f
            .evidence
            .iter()
            .map(|x| (x.key.to_string(), x.value.clone()))
            .collect(),
        cause: &f.cause,
        action: &f.action,
        fix: &f.fix,
    };
    let _ = serde_json::to_writer(&mut *b, &rec);
    b.push(b'\n');
}

/// The verdict as a JSON line.
pub fn verdict_json(b: &mut Vec<u8>, clock: &Clock, v: &Verdict) {
    let rec = VerdictJson {
        ty: "doctor",
        ts: clock.rfc3339(v.ts_ns),
        duration_s: (v.duration_s * 1000.0).round() / 1000.0,
        findings: v.findings,
        status: v.status,
        netns: v.netns,
    };
    let _ = serde_json::to_writer(&mut *b, &rec);
    b.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Finding {
        Finding::new(
            Playbook::ConnectFailures,
            Severity::Critical,
            "40 of 40 connects to 10.0.0.2:9 failed (ECONNREFUSED)",
        )
        .fact("failures", 40, "40 failed of 40 attempts in 10 s (100 %; warning at 3 and 5 %, critical at 20 and 50 %)")
        .fact("attempts", 40, "")
        .subject(Subject {
            pid: Some(4242),
            comm: Some("evil\x1b[2Jname".into()),
            count: Some(40),
            ..Subject::default()
        })
        .cause("Nothing listens on 10.0.0.2:9 (the host answered the SYN with a reset), or a firewall rejects with resets.")
        .action("Check the service.")
        .fix("Start it.")
    }

    #[test]
    fn a_finding_fits_80_columns_and_escapes_names() {
        let mut b = Vec::new();
        finding_text(&mut b, &sample());
        let text = String::from_utf8(b).unwrap();
        assert!(text.starts_with("CRITICAL  connect_failures\n"), "{text}");
        for l in text.lines() {
            assert!(l.chars().count() <= WIDTH, "{l:?} is too wide");
        }
        assert!(!text.contains('\x1b'), "{text}");
        assert!(text.contains("evil\\e[2Jname (pid 4242) (40)"), "{text}");
        for label in ["evidence", "who", "cause", "now", "fix"] {
            assert!(text.contains(&format!("  {label:<10}")), "{label}: {text}");
        }
    }

    #[test]
    fn json_has_the_documented_fields() {
        let mut b = Vec::new();
        finding_json(&mut b, &Clock::with_offset(0), &sample());
        assert!(b.starts_with(b"{\"type\":\"finding\",\"ts\":"));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["playbook"], "connect_failures");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["evidence"]["failures"], 40);
        assert_eq!(v["subjects"][0]["pid"], 4242);
        assert!(v["subjects"][0].get("raddr").is_none());
        for k in ["summary", "cause", "action", "fix", "ts"] {
            assert!(v[k].is_string(), "{k}");
        }
    }

    #[test]
    fn the_verdict_says_the_exit_status() {
        let v = Verdict {
            ts_ns: 0,
            duration_s: 10.0,
            findings: 0,
            critical: 0,
            status: Status::Healthy,
            netns: Some(4_026_531_840),
        };
        let mut b = Vec::new();
        verdict_text(&mut b, &v);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "doctor: healthy, no findings in 10 s, netns 4026531840: exit status 0\n"
        );
        let mut b = Vec::new();
        verdict_json(&mut b, &Clock::with_offset(0), &v);
        assert!(b.starts_with(b"{\"type\":\"doctor\","));
        let j: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(j["status"], "healthy");
        assert_eq!(j["findings"], 0);
    }
}
