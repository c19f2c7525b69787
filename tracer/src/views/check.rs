//! `tcptrace check`: what this kernel allows and the hook plan chosen.

use std::{fs, path::Path};

use anyhow::Result;
use serde_json::json;

use crate::{
    filter::Filter,
    hooks::{self, Probe, Wants},
    tracefs,
};

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

    let mut formats = Vec::new();
    if let Ok(root_dir) = &tracefs {
        for tp in [
            hooks::STATE,
            hooks::RETRANS,
            hooks::SYNACK,
            hooks::SEND_RESET,
            hooks::RECV_RESET,
            hooks::ERROR_REPORT,
            hooks::PROBE,
            hooks::CONNECT_ENTER,
            hooks::CONNECT_EXIT,
        ] {
            let r = tracefs::read_format(root_dir, tp.group, tp.name)
                .map(|f| f.fields.len())
                .map_err(|e| e.to_string());
            formats.push((format!("{}:{}", tp.group, tp.name), r));
        }
    }
    let probe = Probe::load(
        Filter::default().kernel(),
        Wants {
            rtt: true,
            ..Wants::FLOWS
        },
        crate::hooks::RING_BYTES,
    );
    let ok = probe.is_ok();

    if json_out {
        let (hooks, plan, error) = match &probe {
            Ok(p) => (
                p.report
                    .hooks
                    .iter()
                    .map(|h| json!({"hook": h.hook, "ok": h.result.is_ok(), "error": h.result.as_ref().err()}))
                    .collect::<Vec<_>>(),
                p.report.connect.map(|c| c.name()),
                None,
            ),
            Err(e) => (Vec::new(), None, Some(format!("{e:#}"))),
        };
        let v = json!({
            "type": "check",
            "kernel": kernel,
            "root": root,
            "btf": btf,
            "lockdown": lockdown,
            "tracefs": tracefs.as_ref().map(|p| p.display().to_string()).map_err(|e| e.to_string()).ok(),
            "tracepoints": formats.iter().map(|(n, r)| json!({"name": n, "fields": r.as_ref().ok(), "error": r.as_ref().err()})).collect::<Vec<_>>(),
            "hooks": hooks,
            "connect_plan": plan,
            "core_ok": ok,
            "error": error,
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
    for (name, r) in &formats {
        match r {
            Ok(n) => println!("  ok    {name} ({n} fields)"),
            Err(e) => println!("  MISS  {name}: {e}"),
        }
    }
    println!("\nhooks");
    match &probe {
        Ok(p) => {
            for h in &p.report.hooks {
                match &h.result {
                    Ok(()) => println!("  ok    {}", h.hook),
                    Err(e) => println!("  FAIL  {}: {e}", h.hook),
                }
            }
            println!("\nplan");
            println!(
                "  states, retrans: sock:inet_sock_set_state, tcp:tcp_retransmit_skb, tcp:tcp_retransmit_synack"
            );
            match p.report.connect {
                Some(c) => println!("  connect: {c}"),
                None => println!("  connect: none of the connect hooks attached"),
            }
        }
        Err(e) => println!("  FAIL  core tracepoints: {e:#}"),
    }
    Ok(ok)
}
