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

#[test]
fn root_needs_only_cap_bpf_and_cap_perfmon() {
    require_root();
    let (code, out, err) = under(
        &["--bounding-set=-all,+bpf,+perfmon", "--inh-caps=-all"],
        &ONE_SECOND,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("TIME(UTC)"), "{out}");
    // Without CAP_SYS_PTRACE it says what seeding cannot see.
    assert!(err.contains("CAP_SYS_PTRACE"), "{err}");
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
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("TIME(UTC)"), "{out}");
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
