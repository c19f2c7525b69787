//! The files of deploy/, checked by the tools that will read them: the
//! systemd unit by `systemd-analyze verify`, the Prometheus scrape job and
//! alerting rules by `promtool`, the rsyslog snippet by `rsyslogd -N1`;
//! and the unit's capability set, by running the agent under it.
//! (Vector and Fluent Bit are not in Debian 12: their samples are not
//! checked here.)

use std::{path::PathBuf, process::Command};

use tests::daemons::TempDir;

fn deploy(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

/// Runs `cmd`; fails the test with its output unless it succeeds.
fn passes(mut cmd: Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (`cargo xtask setup` installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}: {}: {text}", out.status);
    text
}

/// The unit in deploy/ passes `systemd-analyze verify` (with ExecStart
/// pointed at the binary under test: verify insists it exists).
#[test]
fn agent_deploy_systemd_unit_verifies() {
    let unit = deploy("tcptrace-agent.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/tcptrace agent"));
    let bin = tests::tracer::binary();
    let dir = TempDir::new("unit");
    let copy = dir.path().join("tcptrace-agent.service");
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/tcptrace", bin.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {} {stderr}",
        out.status
    );
}

#[test]
fn agent_deploy_prometheus_samples_check() {
    let mut c = Command::new("promtool");
    c.args(["check", "config", "scrape.yml"])
        .current_dir(deploy("prometheus"));
    let out = passes(c);
    assert!(out.contains("3 rules found"), "{out}");
}

#[test]
fn agent_deploy_rsyslog_sample_validates() {
    // The system's rsyslog.conf sets the work directory; so does this.
    let dir = TempDir::new("rsyslog-check");
    let conf = dir.path().join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{}\")\n{}",
            dir.path().display(),
            std::fs::read_to_string(deploy("rsyslog/tcptrace.conf")).unwrap()
        ),
    )
    .unwrap();
    let mut c = Command::new("rsyslogd");
    c.arg("-N1").arg("-f").arg(&conf);
    passes(c);
}

/// The agent runs under exactly the unit's capability bounding set and
/// no_new_privs (as systemd would start it): it attaches and serves
/// `/metrics`.
#[test]
fn agent_deploy_capability_set_runs_the_agent() {
    tests::require_root();
    let text = std::fs::read_to_string(deploy("tcptrace-agent.service")).unwrap();
    let caps: Vec<String> = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", tests::unique_port())
        .parse()
        .unwrap();
    let child = Command::new("setpriv")
        .arg(format!("--bounding-set=-all,{}", caps.join(",")))
        .args(["--inh-caps=-all", "--no-new-privs"])
        .arg(tests::tracer::binary())
        .args(["agent", "--listen", &addr.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    // The server answers from start-up; the hooks show once attached
    // (seconds on the host, longer under emulation in the kernel VMs).
    // The state hook is the BTF tracepoint where the kernel has BTF, else
    // the classic one: either name counts.
    let attached = |b: &str| {
        ["tp_btf", "sock"].iter().any(|h| {
            b.contains(&format!(
                "tcptrace_hook_attached{{hook=\"{h}:inet_sock_set_state\"}} 1"
            ))
        })
    };
    let mut body = None;
    tests::wait_until(std::time::Duration::from_secs(60), || {
        body = tests::scrape::http_get(addr, "/metrics").ok();
        body.as_ref().is_some_and(|(_, b)| attached(b))
    });
    // setpriv execs tcptrace: the child is the agent.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "under {caps:?}: {stderr}");
    let (status, body) = body.unwrap_or_else(|| panic!("no /metrics: {stderr}"));
    assert_eq!(status, 200);
    assert!(attached(&body), "{body}");
}
