//! The smallest privileges tcptrace works with, and the sentence it says
//! for each thing missing (issue: least privilege). Drives the real binary
//! through `setpriv` (util-linux) with chosen capability sets.

use std::process::Command;

use tests::{require_root, tracer::binary};

/// `tcptrace ARGS` under `setpriv SETPRIV...`: exit code, stdout, stderr.
fn under(setpriv: &[&str], args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new("setpriv")
        .args(setpriv)
        .arg(binary())
        .args(args)
        .output()
        .expect("setpriv runs (util-linux)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A user that is not root, with exactly these capabilities.
fn nobody_with(caps: &str) -> Vec<String> {
    [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        &format!("--inh-caps=-all,{caps}"),
        &format!("--ambient-caps=-all,{caps}"),
    ]
    .map(String::from)
    .to_vec()
}

const ONE_SECOND: [&str; 3] = ["states", "--duration", "1"];

/// Whether this kernel lets CAP_PERFMON attach tracepoints: Debian's and
/// Ubuntu's kernels (6.1, 6.12 in the kernel matrix) add a
/// `kernel.perf_event_paranoid` level 3, their default, at which
/// `perf_event_open` needs CAP_SYS_ADMIN; upstream (6.18 here, level 2)
/// has no such level.
fn perfmon_attaches() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .is_some_and(|l| l < 3)
}

/// Checks a run that has all the capabilities the kernel asks for except,
/// on kernels with perf_event_paranoid level 3, CAP_SYS_ADMIN: it traces,
/// or it says exactly that. `states` attaches only the state hook, and
/// the BTF tracepoint (a BPF link, no perf event; every kernel here has
/// BTF) needs no CAP_SYS_ADMIN even at level 3.
fn traces_or_names_paranoid(code: Option<i32>, out: &str, err: &str) {
    let btf = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    if perfmon_attaches() || btf {
        assert_eq!(code, Some(0), "{err}");
        assert!(out.starts_with("TIME(UTC)"), "{out}");
    } else {
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("perf_event_paranoid"), "{err}");
    }
}

#[test]
fn root_needs_only_cap_bpf_and_cap_perfmon() {
    require_root();
    let (code, out, err) = under(
        &["--bounding-set=-all,+bpf,+perfmon", "--inh-caps=-all"],
        &ONE_SECOND,
    );
    traces_or_names_paranoid(code, &out, &err);
    if perfmon_attaches() {
        // Without CAP_SYS_PTRACE it says what seeding cannot see.
        assert!(err.contains("CAP_SYS_PTRACE"), "{err}");
    }
}

#[test]
fn a_missing_capability_is_named() {
    require_root();
    let (code, _, err) = under(
        &["--bounding-set=-all,+bpf", "--inh-caps=-all"],
        &ONE_SECOND,
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("lacks CAP_PERFMON"), "{err}");
    let (code, _, err) = under(
        &["--bounding-set=-all,+perfmon", "--inh-caps=-all"],
        &ONE_SECOND,
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("lacks CAP_BPF"), "{err}");
    let n = nobody_with("");
    let n: Vec<&str> = n.iter().map(String::as_str).collect();
    let (code, _, err) = under(&n[..3], &ONE_SECOND);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("CAP_BPF and CAP_PERFMON"), "{err}");
}

#[test]
fn another_user_also_needs_to_read_tracefs() {
    require_root();
    let n = nobody_with("+bpf,+perfmon");
    let n: Vec<&str> = n.iter().map(String::as_str).collect();
    let (code, _, err) = under(&n, &ONE_SECOND);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("CAP_DAC_READ_SEARCH"), "{err}");
    assert!(!err.contains("not mounted"), "{err}");
    let n = nobody_with("+bpf,+perfmon,+dac_read_search");
    let n: Vec<&str> = n.iter().map(String::as_str).collect();
    let (code, out, err) = under(&n, &ONE_SECOND);
    traces_or_names_paranoid(code, &out, &err);
}

#[test]
fn too_few_file_descriptors_is_said_as_such() {
    require_root();
    let out = Command::new("sh")
        .args(["-c", "ulimit -n 12; exec \"$0\" states --duration 1"])
        .arg(binary())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ulimit -n"), "{err}");
}
