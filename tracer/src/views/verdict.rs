//! The last line of `tcptrace check`: one verdict on whether tracing
//! works here and with which plan, and how each hook is marked: a connect
//! plan (or a hook's BTF or classic form) this kernel refuses is a `fallback` (the plan
//! falls back to the next one), not a failure, when another one attached.

use crate::hooks::{ConnectPlan, Form, HOOKS, HookStatus, Report};

/// How `check` marks a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Ok,
    /// A connect plan, or one form of a hook, this kernel refuses while
    /// another one works.
    Fallback,
    Fail,
}

impl Mark {
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Fallback => "fallback",
            Self::Fail => "FAIL",
        }
    }
}

/// Whether `h` is one of the connect plans' hooks.
fn connect_plan_of(h: &HookStatus) -> Option<ConnectPlan> {
    ConnectPlan::ORDER.into_iter().find(|p| p.name() == h.hook)
}

/// Whether `h` is one form of a hook with two, of which one attached.
fn other_form_attached(report: &Report, h: &HookStatus) -> bool {
    HOOKS.iter().any(|row| {
        row.btf.is_some()
            && report.form(row.id).is_some()
            && Form::ORDER.into_iter().any(|f| f.name(row) == h.hook)
    })
}

/// How `h` is marked in `report`.
pub fn mark(report: &Report, h: &HookStatus) -> Mark {
    match (&h.result, connect_plan_of(h), report.connect) {
        (Ok(()), _, _) => Mark::Ok,
        (Err(_), Some(_), Some(_)) => Mark::Fallback,
        (Err(_), None, _) if other_form_attached(report, h) => Mark::Fallback,
        (Err(_), _, _) => Mark::Fail,
    }
}

/// The hooks of the plan: every hook but the connect plans not chosen
/// and the hook forms refused while another attached.
fn planned(report: &Report) -> impl Iterator<Item = &HookStatus> {
    report
        .hooks
        .iter()
        .filter(move |h| match connect_plan_of(h) {
            Some(p) => report.connect.is_none_or(|c| c == p),
            None => mark(report, h) != Mark::Fallback,
        })
}

/// The verdict line and whether tracing works (the exit status): the core
/// tracepoints attached. `unreadable` is the count of events whose fields
/// the programs could not read during the self-test.
pub fn verdict(report: Option<&Report>, error: Option<&str>, unreadable: u64) -> (bool, String) {
    let Some(r) = report else {
        return (
            false,
            format!(
                "tracing does not work: {}",
                error.unwrap_or("the core tracepoints could not be attached")
            ),
        );
    };
    let (n, ok) = planned(r).fold((0, 0), |(n, ok), h| {
        (n + 1, ok + usize::from(h.result.is_ok()))
    });
    let plan = match r.connect {
        Some(c) => format!("plan {} connect", c.short()),
        None => "no connect hook (failed connects go unseen)".into(),
    };
    let mut line = format!("tracing works: {plan}, {ok} of {n} hooks");
    let missing: Vec<&str> = planned(r)
        .filter(|h| h.result.is_err())
        .map(|h| h.hook.as_str())
        .collect();
    if !missing.is_empty() {
        line.push_str(&format!("; without {}", missing.join(", ")));
    }
    if unreadable > 0 {
        line.push_str(&format!(
            "; {unreadable} events lacked fields (see unreadable fields)"
        ));
    }
    (true, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(hook: &str, ok: bool) -> HookStatus {
        HookStatus {
            hook: hook.into(),
            result: if ok { Ok(()) } else { Err("EPERM".into()) },
        }
    }

    /// This project's 6.18 machines: fexit and kprobes refused, the
    /// syscall tracepoints work.
    fn report_618() -> Report {
        Report {
            hooks: vec![
                status("tracepoint sock:inet_sock_set_state", true),
                status("tracepoint tcp:tcp_retransmit_skb", true),
                status(ConnectPlan::Fexit.name(), false),
                status(ConnectPlan::Kprobe.name(), false),
                status(ConnectPlan::Syscalls.name(), true),
            ],
            connect: Some(ConnectPlan::Syscalls),
            ..Report::default()
        }
    }

    #[test]
    fn refused_connect_plans_are_fallbacks_not_failures() {
        let r = report_618();
        let marks: Vec<Mark> = r.hooks.iter().map(|h| mark(&r, h)).collect();
        assert_eq!(
            marks,
            [Mark::Ok, Mark::Ok, Mark::Fallback, Mark::Fallback, Mark::Ok]
        );
        assert_eq!(
            verdict(Some(&r), None, 0),
            (
                true,
                "tracing works: plan syscalls connect, 3 of 3 hooks".into()
            )
        );
    }

    #[test]
    fn a_missing_hook_is_named_and_no_plan_is_said() {
        let mut r = report_618();
        r.hooks[1].result = Err("no such tracepoint".into());
        let (ok, line) = verdict(Some(&r), None, 4);
        assert!(ok);
        assert_eq!(
            line,
            "tracing works: plan syscalls connect, 2 of 3 hooks; without tracepoint tcp:tcp_retransmit_skb; 4 events lacked fields (see unreadable fields)"
        );
        assert_eq!(mark(&r, &r.hooks[1]), Mark::Fail);
        // No connect plan at all: each refusal is a failure.
        r.connect = None;
        r.hooks[4].result = Err("x".into());
        assert_eq!(mark(&r, &r.hooks[2]), Mark::Fail);
        assert!(verdict(Some(&r), None, 0).1.contains("no connect hook"));
        let (ok, line) = verdict(None, Some("BPF refused: EPERM"), 0);
        assert!(!ok);
        assert_eq!(line, "tracing does not work: BPF refused: EPERM");
    }

    #[test]
    fn a_refused_hook_form_is_a_fallback_when_the_other_attached() {
        let state = &HOOKS[0];
        assert_eq!(state.id, tracer_common::hook::STATE);
        let mut r = report_618();
        r.hooks[0].hook = Form::Tracepoint.name(state);
        r.hooks.push(status(&Form::Btf.name(state), false));
        r.forms = vec![(state.id, Form::Tracepoint)];
        assert_eq!(mark(&r, &r.hooks[5]), Mark::Fallback);
        assert_eq!(
            verdict(Some(&r), None, 0).1,
            "tracing works: plan syscalls connect, 3 of 3 hooks"
        );
        // No form of it attached: the refusal is a failure.
        r.forms.clear();
        assert_eq!(mark(&r, &r.hooks[5]), Mark::Fail);
    }
}
