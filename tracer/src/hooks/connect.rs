//! The connect hook plan: fexit, then kprobe/kretprobe, then the `connect`
//! syscall tracepoints, chosen by trying to load and attach each in turn.
//!
//! On kernels in lockdown (fentry/fexit load fails with EPERM) or built
//! without CONFIG_KPROBES, only the syscall plan works; `tcptrace check`
//! shows why each earlier plan failed.

use std::fmt;

use anyhow::{Context as _, Result};
use aya::{
    Btf, Ebpf,
    programs::{FExit, KProbe},
};

use super::{
    HookStatus, attach_tracepoint,
    table::{Attach, Hook},
};

/// A way of seeing what `connect()` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectPlan {
    Fexit,
    Kprobe,
    Syscalls,
}

impl ConnectPlan {
    pub const ORDER: [ConnectPlan; 3] = [Self::Fexit, Self::Kprobe, Self::Syscalls];

    /// The plan's name on the command line (`--connect-plan`).
    pub fn short(self) -> &'static str {
        match self {
            Self::Fexit => "fexit",
            Self::Kprobe => "kprobe",
            Self::Syscalls => "syscalls",
        }
    }

    /// The plan of a `--connect-plan` name.
    pub fn from_short(s: &str) -> Option<Self> {
        Self::ORDER.into_iter().find(|p| p.short() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fexit => "fexit tcp_v4_connect/tcp_v6_connect",
            Self::Kprobe => "kprobe+kretprobe tcp_v4_connect/tcp_v6_connect",
            Self::Syscalls => "tracepoints syscalls:sys_enter_connect/sys_exit_connect",
        }
    }
}

impl fmt::Display for ConnectPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which connect plans to try.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Choice {
    /// The first of [`ConnectPlan::ORDER`] that attaches.
    #[default]
    First,
    /// This plan or none (`--connect-plan`, to test each plan for real).
    Only(ConnectPlan),
    /// Every plan, for `tcptrace check`: the first that attaches stays
    /// attached, the later ones are attached and detached again, so that
    /// the report says which of them this kernel allows.
    All,
}

/// Tries the plans `choice` asks for, in order; returns the plan left
/// attached and the outcome of every plan tried. `syscalls_ready` says
/// whether the syscall tracepoints' offsets could be read (and why not).
pub fn attach(
    bpf: &mut Ebpf,
    syscalls_ready: Result<(), String>,
    choice: Choice,
) -> (Option<ConnectPlan>, Vec<HookStatus>) {
    let mut tried = Vec::new();
    let mut chosen = None;
    for plan in ConnectPlan::ORDER {
        match choice {
            Choice::Only(only) if only != plan => continue,
            Choice::First | Choice::Only(_) if chosen.is_some() => break,
            _ => {}
        }
        let r = match plan {
            ConnectPlan::Fexit => attach_fexit(bpf),
            ConnectPlan::Kprobe => attach_kprobes(bpf),
            ConnectPlan::Syscalls => match &syscalls_ready {
                Ok(()) => Hook::of_plan(plan).try_for_each(|h| attach_tracepoint(bpf, h)),
                Err(e) => Err(anyhow::anyhow!("{e}")),
            },
        };
        let ok = r.is_ok();
        if !ok || chosen.is_some() {
            // Do not leave half a plan attached (say fexit on v4 but not
            // v6), nor a second plan: both would report each failure.
            unload(bpf, plan);
        }
        tried.push(HookStatus {
            hook: plan.name().to_string(),
            result: r.map_err(|e| format!("{e:#}{}", hint(plan, &e))),
        });
        if ok && chosen.is_none() {
            chosen = Some(plan);
        }
    }
    (chosen, tried)
}

fn unload(bpf: &mut Ebpf, plan: ConnectPlan) {
    for hook in Hook::of_plan(plan) {
        if let Some(p) = bpf.program_mut(hook.program) {
            // Unloading detaches every link; a program never loaded just errors.
            let _ = match p {
                aya::programs::Program::FExit(p) => p.unload(),
                aya::programs::Program::KProbe(p) => p.unload(),
                aya::programs::Program::TracePoint(p) => p.unload(),
                _ => Ok(()),
            };
        }
    }
}

/// What a failure most likely means, for `tcptrace check`.
fn hint(plan: ConnectPlan, e: &anyhow::Error) -> &'static str {
    let text = format!("{e:#}");
    match plan {
        ConnectPlan::Fexit if text.contains("Operation not permitted") => {
            " (fentry/fexit refused: the kernel is probably in lockdown)"
        }
        ConnectPlan::Kprobe if text.contains("kprobe") && text.contains("No such file") => {
            " (this kernel has no kprobes: CONFIG_KPROBES is not set)"
        }
        _ => "",
    }
}

fn attach_fexit(bpf: &mut Ebpf) -> Result<()> {
    let btf = Btf::from_sys_fs().context("no kernel BTF")?;
    for hook in Hook::of_plan(ConnectPlan::Fexit) {
        let Attach::Fexit(func) = hook.attach else {
            continue;
        };
        let p: &mut FExit = bpf
            .program_mut(hook.program)
            .with_context(|| format!("no program {}", hook.program))?
            .try_into()?;
        p.load(func, &btf)
            .with_context(|| format!("loading fexit on {func}"))?;
        p.attach()
            .with_context(|| format!("attaching fexit to {func}"))?;
    }
    Ok(())
}

fn attach_kprobes(bpf: &mut Ebpf) -> Result<()> {
    for hook in Hook::of_plan(ConnectPlan::Kprobe) {
        let (Attach::Kprobe(funcs) | Attach::Kretprobe(funcs)) = hook.attach else {
            continue;
        };
        let prog = hook.program;
        let p: &mut KProbe = bpf
            .program_mut(prog)
            .with_context(|| format!("no program {prog}"))?
            .try_into()?;
        p.load().with_context(|| format!("loading {prog}"))?;
        for func in funcs {
            p.attach(*func, 0)
                .with_context(|| format!("attaching {prog} to {func}"))?;
        }
    }
    Ok(())
}
