//! `tcptrace check`: what this kernel allows, how its tracepoint formats
//! suit the rows of the hook table, the hook plan chosen, and whether the
//! programs could read every field they needed during a loopback
//! connection made as a self-test.

use std::{
    fs,
    net::{TcpListener, TcpStream},
    path::Path,
    time::Duration,
};

use anyhow::Result;
use serde_json::json;

use super::verdict::{mark, verdict};
use crate::{
    filter::Filter,
    hooks::{Attach, ConnectPlan, HOOKS, Hook, Need, Probe, Report, Wants},
    tracefs,
};

/// What one tracepoint's format says about its row of the table.
struct FormatCheck {
    hook: &'static Hook,
    /// Fields in the record, or why it could not be read.
    fields: Result<usize, String>,
    /// Why the record does not suit the program, if it does not.
    layout: Result<(), String>,
    /// Fields the program would read that this kernel lacks.
    absent: Vec<&'static str>,
}

fn check_formats(root: &Path) -> Vec<FormatCheck> {
    HOOKS
        .iter()
        .filter_map(|hook| {
            let Attach::Tracepoint { group, name, .. } = hook.attach else {
                return None;
            };
            let format = tracefs::read_format(root, group, name).map_err(|e| e.to_string());
            let (layout, absent) = match &format {
                Ok(f) => {
                    let o = f.offsets();
                    (
                        hook.check(&o).map(drop).map_err(|e| e.to_string()),
                        hook.absent_optional(&o).iter().map(|f| f.name()).collect(),
                    )
                }
                Err(_) => (Ok(()), Vec::new()),
            };
            Some(FormatCheck {
                hook,
                fields: format.map(|f| f.fields.len()),
                layout,
                absent,
            })
        })
        .collect()
}

/// A loopback connection, closed, then a connect to the closed port (a
/// reset and a refused connect): the events every attached hook sees on a
/// healthy host, so that fields a program cannot read show up as counts.
fn self_test() -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let client = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let (server, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    drop(client);
    drop(server);
    drop(listener);
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    // Loopback runs the peer's side in softirq on this CPU, nearly at once.
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}

/// Each connect plan and whether it attached (check tries them all).
fn connect_plans(report: &Report) -> Vec<(ConnectPlan, Result<(), String>)> {
    ConnectPlan::ORDER
        .into_iter()
        .filter_map(|plan| {
            let h = report.hooks.iter().find(|h| h.hook == plan.name())?;
            Some((plan, h.result.clone()))
        })
        .collect()
}

/// Mounts securityfs (where the lockdown mode is shown) if it is not.
fn mount_securityfs() {
    if Path::new("/sys/kernel/security/lockdown").exists() {
        return;
    }
    // SAFETY: valid NUL-terminated strings; no data argument. Failure is
    // fine: lockdown is then reported as unknown.
    unsafe {
        libc::mount(
            c"securityfs".as_ptr(),
            c"/sys/kernel/security".as_ptr(),
            c"securityfs".as_ptr(),
            0,
            std::ptr::null(),
        );
    }
}

/// Prints the report; returns whether the core tracepoints attached.
pub fn run(json_out: bool) -> Result<bool> {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    mount_securityfs();
    let lockdown = fs::read_to_string("/sys/kernel/security/lockdown")
        .ok()
        .and_then(|s| {
            // "none [integrity] confidentiality": the bracketed one is active.
            let start = s.find('[')? + 1;
            let end = s[start..].find(']')? + start;
            Some(s[start..end].to_string())
        });
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tracefs = tracefs::ensure_mounted();

    let formats = match &tracefs {
        Ok(root_dir) => check_formats(root_dir),
        Err(_) => Vec::new(),
    };
    let probe = Probe::load(
        &Filter::default(),
        Wants {
            rtt: true,
            ..Wants::FLOWS
        },
        crate::hooks::RING_BYTES,
        crate::hooks::connect::Choice::All,
        crate::hooks::forms::Choice::All,
    );
    let exercised = probe.as_ref().map(|_| self_test());
    let unreadable = probe.as_ref().map(|p| p.unreadable_by_hook());
    let (ok, verdict_line) = verdict(
        probe.as_ref().ok().map(|p| &p.report),
        probe.as_ref().err().map(|e| format!("{e:#}")).as_deref(),
        match &unreadable {
            Ok(Ok(by_hook)) => by_hook.iter().map(|(_, n)| n).sum(),
            _ => 0,
        },
    );

    if json_out {
        let form = |id| {
            probe
                .as_ref()
                .ok()
                .and_then(|p| p.report.form(id))
                .map(|h| h.short())
        };
        let (hooks, plan, plans, error) = match &probe {
            Ok(p) => (
                p.report
                    .hooks
                    .iter()
                    .map(|h| json!({"hook": h.hook, "ok": h.result.is_ok(), "mark": mark(&p.report, h).label(), "error": h.result.as_ref().err()}))
                    .collect::<Vec<_>>(),
                p.report.connect.map(|c| c.name()),
                connect_plans(&p.report)
                    .into_iter()
                    .map(|(plan, r)| json!({"plan": plan.short(), "ok": r.is_ok(), "error": r.err()}))
                    .collect::<Vec<_>>(),
                None,
            ),
            Err(e) => (Vec::new(), None, Vec::new(), Some(format!("{e:#}"))),
        };
        let unreadable = match (&exercised, &unreadable) {
            (Ok(test), Ok(Ok(by_hook))) => json!({
                "self_test": test.as_ref().err(),
                "total": by_hook.iter().map(|(_, n)| n).sum::<u64>(),
                "hooks": by_hook.iter().filter(|(_, n)| *n > 0).map(|(h, n)| json!({"hook": h.title(), "count": n})).collect::<Vec<_>>(),
            }),
            (_, Ok(Err(e))) => json!({"error": format!("{e:#}")}),
            _ => serde_json::Value::Null,
        };
        let v = json!({
            "type": "check",
            "kernel": kernel,
            "root": root,
            "btf": btf,
            "lockdown": lockdown,
            "tracefs": tracefs.as_ref().map(|p| p.display().to_string()).map_err(|e| e.to_string()).ok(),
            "tracepoints": formats.iter().map(|c| json!({
                "name": c.hook.title(),
                "fields": c.fields.as_ref().ok(),
                "error": c.fields.as_ref().err().or(c.layout.as_ref().err()),
                "needed_for": c.hook.need.label(),
                "absent": c.absent,
            })).collect::<Vec<_>>(),
            "hooks": hooks,
            "state_hook": form(tracer_common::hook::STATE),
            "retransmit_hook": form(tracer_common::hook::RETRANSMIT_SKB),
            "synack_hook": form(tracer_common::hook::RETRANSMIT_SYNACK),
            "rtt_hook": form(tracer_common::hook::PROBE),
            "error_hook": form(tracer_common::hook::ERROR_REPORT),
            "connect_plan": plan,
            "connect_plans": plans,
            "core_ok": ok,
            "unreadable": unreadable,
            "error": error,
            "verdict": verdict_line,
        });
        println!("{v}");
        return Ok(ok);
    }

    println!("kernel      {kernel}");
    println!("privileges  {}", if root { "root" } else { "not root" });
    println!(
        "BTF         {}",
        if btf {
            "/sys/kernel/btf/vmlinux present"
        } else {
            "absent (fexit unavailable)"
        }
    );
    println!(
        "lockdown    {}",
        lockdown
            .as_deref()
            .unwrap_or("unknown (securityfs not mounted)")
    );
    match &tracefs {
        Ok(p) => println!("tracefs     {}", p.display()),
        Err(e) => println!("tracefs     FAILED: {e}"),
    }
    println!("\ntracepoint formats");
    for c in &formats {
        let name = c.hook.title();
        let need = c.hook.need.label();
        match (&c.fields, &c.layout) {
            (Ok(n), Ok(())) => {
                println!("  ok    {name} ({n} fields), for {need}");
                if !c.absent.is_empty() {
                    println!("          older layout, without {}", c.absent.join(", "));
                }
            }
            (Ok(_), Err(e)) => println!("  MISS  {name} {e}, for {need}"),
            (Err(e), _) => println!("  MISS  {name}: {e}"),
        }
    }
    println!("\nhooks");
    match &probe {
        Ok(p) => {
            for h in &p.report.hooks {
                let m = mark(&p.report, h).label();
                match &h.result {
                    Ok(()) => println!("  {m:<8} {}", h.hook),
                    Err(e) => println!("  {m:<8} {}: {e}", h.hook),
                }
            }
            println!("\nplan");
            for need in [
                Need::Always,
                Need::Retrans,
                Need::Resets,
                Need::Errors,
                Need::Rtt,
            ] {
                let titles: Vec<String> = HOOKS
                    .iter()
                    .filter(|h| h.need == need)
                    .map(Hook::title)
                    .collect();
                println!("  {}: {}", need.label(), titles.join(", "));
            }
            for row in HOOKS.iter().filter(|h| h.btf.is_some()) {
                if let Some(f) = p.report.form(row.id) {
                    println!("  {}: from {} (--hook-type {f})", row.title(), f.name(row));
                }
            }
            match p.report.connect {
                Some(c) => println!("  connect: {c}"),
                None => println!("  connect: none of the connect hooks attached"),
            }
            let allowed: Vec<&str> = connect_plans(&p.report)
                .into_iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(plan, _)| plan.short())
                .collect();
            println!(
                "  connect plans this kernel allows (--connect-plan): {}",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            );
        }
        Err(e) => println!("  FAIL  core tracepoints: {e:#}"),
    }
    if let (Ok(test), Ok(by_hook)) = (&exercised, &unreadable) {
        match test {
            Ok(()) => println!("\nunreadable fields (after a loopback connection as a self-test)"),
            Err(e) => println!("\nunreadable fields (no self-test: {e})"),
        }
        match by_hook {
            Ok(by_hook) if by_hook.iter().all(|(_, n)| *n == 0) => println!("  none"),
            Ok(by_hook) => {
                for (h, n) in by_hook.iter().filter(|(_, n)| *n > 0) {
                    println!("  {n:<5} {}: events without a field they needed", h.title());
                }
            }
            Err(e) => println!("  FAIL  reading the counters: {e:#}"),
        }
    }
    println!("\n{verdict_line}");
    Ok(ok)
}
