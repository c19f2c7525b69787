//! The command line as a user meets it: `check`, usage errors, missing
//! privileges, closed pipes and signals.

use std::{
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use tests::{
    NetNs, Tracer,
    bpf::{self, Kind},
    require_root,
    tracer::{binary, run},
    unique_port, wait_until,
};

#[test]
fn check_reports_the_hook_plan() {
    require_root();
    let (status, out, err) = run(&["check", "--json"]);
    assert!(status.success(), "check failed: {out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["type"], "check");
    assert_eq!(v["core_ok"], true);
    let hooks = v["hooks"].as_array().unwrap();
    // The state hook: the BTF tracepoint where the kernel allows it, else
    // the classic one (6.1 refuses the classic program with every hook on,
    // which `check` reports without failing when the BTF one works).
    assert!(
        hooks
            .iter()
            .any(|h| (h["hook"] == "sock:inet_sock_set_state"
                || h["hook"] == "tp_btf:inet_sock_set_state")
                && h["ok"] == true),
        "no state hook attached: {v:#}"
    );
    for core in ["tcp:tcp_retransmit_skb", "tcp:tcp_retransmit_synack"] {
        assert!(
            hooks.iter().any(|h| h["hook"] == core && h["ok"] == true),
            "{core} not attached: {v:#}"
        );
    }
    // The connect plan is the first of fexit, kprobe, syscalls that works
    // here, and every plan before it says why it failed.
    let plan = v["connect_plan"].as_str().expect("a connect plan");
    let order = ["fexit", "kprobe", "tracepoints syscalls"];
    let chosen = order.iter().position(|p| plan.starts_with(p)).unwrap();
    for p in &order[..chosen] {
        let h = hooks
            .iter()
            .find(|h| h["hook"].as_str().unwrap().starts_with(p))
            .unwrap();
        assert_eq!(h["ok"], false);
        assert!(!h["error"].as_str().unwrap().is_empty());
        // Refused, and the plan falls back: not a failure.
        assert_eq!(h["mark"], "fallback", "{h}");
    }
    let short = ["fexit", "kprobe", "syscalls"][chosen];
    let verdict = v["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with(&format!("tracing works: plan {short} connect, ")),
        "{verdict}"
    );
    // This host has neither kprobes nor a loadable fexit (HOST.md).
    let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    if !kprobes {
        assert!(plan.starts_with("tracepoints syscalls"), "{plan}");
    }
    // check tries every plan, not only up to the first that works: each
    // says whether this kernel allows it, and the chosen one is the first
    // allowed.
    let plans = v["connect_plans"].as_array().unwrap();
    let names: Vec<&str> = plans.iter().map(|p| p["plan"].as_str().unwrap()).collect();
    assert_eq!(names, ["fexit", "kprobe", "syscalls"], "{v:#}");
    let allowed = |name: &str| plans.iter().any(|p| p["plan"] == name && p["ok"] == true);
    let first = names.iter().position(|n| allowed(n)).unwrap();
    assert!(
        plan.starts_with(order[first]),
        "{plan} is not the first allowed: {v:#}"
    );
    assert_eq!(allowed("kprobe"), kprobes, "{v:#}");
    // Debian's 6.1 and 6.12 (in `cargo xtask kernels`): no lockdown and
    // BTF, so fexit loads (this host's lockdown refuses it).
    if v["lockdown"] == "none" && v["btf"] == true {
        assert!(allowed("fexit"), "{v:#}");
    }

    // Both forms of the state, retransmit (data and SYN-ACK), RTT and error
    // hooks are tried; runs use the BTF tracepoint wherever the kernel has
    // BTF (this host, Debian's 6.1 and 6.12), and the classic one attaches
    // too (the fallback; on 6.1 that needs its stack well under 512 bytes,
    // as that verifier rounds every frame up to 32).
    let hook_ok = |name: &str| hooks.iter().any(|h| h["hook"] == name && h["ok"] == true);
    for (tracepoint, key) in [
        ("sock:inet_sock_set_state", "state_hook"),
        ("tcp:tcp_retransmit_skb", "retransmit_hook"),
        ("tcp:tcp_retransmit_synack", "synack_hook"),
        ("tcp:tcp_probe", "rtt_hook"),
        ("sock:inet_sk_error_report", "error_hook"),
    ] {
        assert!(hook_ok(tracepoint), "{v:#}");
        if v["btf"] == true {
            let btf = format!("tp_btf:{}", tracepoint.split_once(':').unwrap().1);
            assert!(hook_ok(&btf), "{v:#}");
            assert_eq!(v[key], "tp_btf", "{v:#}");
        } else {
            assert_eq!(v[key], "tracepoint", "{v:#}");
        }
    }

    let (status, text, _) = run(&["check"]);
    assert!(status.success());
    assert!(text.contains("plan") && text.contains("connect:"), "{text}");
    assert!(
        text.contains("sock:inet_sock_set_state: from ")
            && text.contains("tcp:tcp_retransmit_skb: from ")
            && text.contains("tcp:tcp_probe: from ")
            && text.contains("sock:inet_sk_error_report: from "),
        "{text}"
    );
    // Every hook of the plan attached here: no FAIL, and one verdict line
    // last, counting them all.
    assert!(!text.contains("FAIL"), "{text}");
    let last = text.lines().last().unwrap();
    let hooks_ok = last
        .strip_prefix(&format!("tracing works: plan {short} connect, "))
        .and_then(|rest| rest.strip_suffix(" hooks"))
        .and_then(|n| n.split_once(" of "))
        .unwrap_or_else(|| panic!("not a verdict: {last}\n{text}"));
    assert_eq!(hooks_ok.0, hooks_ok.1, "{text}");
}

#[test]
fn bad_flags_exit_2_with_a_sentence() {
    for (args, needle) in [
        (&["states", "--port", "70000"][..], "not a port"),
        (&["retrans", "--pid", "-1"][..], "not a process id"),
        (&["retrans", "-4", "-6"][..], "cannot be used with"),
        (&["nonsense"][..], "unrecognized subcommand"),
    ] {
        let (status, _, err) = run(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let (status, out, _) = run(&["--help"]);
    assert!(status.success() && out.contains("Examples"), "{out}");
}

#[test]
fn without_privileges_says_what_to_do() {
    require_root();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(binary())
        .arg("states")
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root") && err.contains("sudo"), "{err}");
}

/// `tcptrace states | head -3` ends with status 0 once head goes away.
#[test]
fn closed_pipe_is_success() {
    require_root();
    let ns = NetNs::new("pipe");
    let port = unique_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(binary())
        .args(["states", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("watching"), "{line}");

    // Like `head -3`: read three lines (header and two records), then close.
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut out = BufReader::new(out);
        for _ in 0..3 {
            let mut l = String::new();
            if out.read_line(&mut l).unwrap_or(0) == 0 {
                break;
            }
        }
        drop(out);
        tx.send(()).unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut closed = false;
    let mut status = None;
    while status.is_none() && Instant::now() < deadline {
        // Keep making transitions so that tcptrace writes, and after the
        // close sees EPIPE.
        make_connection(&ns, &addr);
        closed |= rx.try_recv().is_ok();
        if closed {
            status = child.try_wait().unwrap();
        }
    }
    assert!(closed, "tcptrace printed fewer than three lines");
    let exited_by_itself = status.is_some();
    if !exited_by_itself {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    assert!(
        exited_by_itself,
        "tcptrace kept running after its output pipe closed"
    );
    assert_eq!(status.code(), Some(0));
}

fn make_connection(ns: &NetNs, addr: &str) {
    let addr = addr.to_string();
    ns.run("tt-pipe", move || {
        let l = TcpListener::bind(&addr).unwrap();
        let c = TcpStream::connect(&addr).unwrap();
        let _ = l.accept().unwrap();
        drop(c);
    });
}

/// SIGTERM ends the run with status 0, and every BPF program, link and
/// map tcptrace held (read from its /proc/PID/fdinfo while it ran) is gone
/// from the kernel afterwards.
#[test]
fn sigterm_detaches_cleanly() {
    require_root();
    let t = Tracer::start(&["retrans", "--json"]);
    let held = bpf::held_by(t.pid());
    let count = |k: Kind| held.iter().filter(|(kind, _)| *kind == k).count();
    // retrans attaches at least the two retransmit tracepoints, through
    // links, and reads at least the ring buffer map.
    assert!(
        count(Kind::Prog) >= 2 && count(Kind::Link) >= 2 && count(Kind::Map) >= 1,
        "tcptrace holds too few BPF objects to be tracing: {held:?}"
    );
    // The check below can tell: they exist while it runs.
    for &(kind, id) in &held {
        assert!(bpf::exists(kind, id), "{kind:?} {id} held but not found");
    }
    let (status, _) = t.stop_with(Signal::SIGTERM);
    assert!(status.success(), "{status}");
    // The kernel frees an object when its last reference goes, which for
    // some is deferred to a worker: allow it a moment.
    let mut left = held.clone();
    wait_until(Duration::from_secs(5), || {
        left.retain(|&(kind, id)| bpf::exists(kind, id));
        left.is_empty()
    });
    assert!(
        left.is_empty(),
        "still in the kernel after tcptrace exited: {left:?} (of {held:?})"
    );
    eprintln!(
        "held {} programs, {} links, {} maps; none left after SIGTERM",
        count(Kind::Prog),
        count(Kind::Link),
        count(Kind::Map)
    );
}

#[test]
fn count_and_duration_end_the_run() {
    require_root();
    let ns = NetNs::new("count");
    let port = unique_port();
    let addr = format!("127.0.0.1:{port}");
    let t = Tracer::start(&["states", "--json", "-c", "2", "--port", &port.to_string()]);
    make_connection(&ns, &addr);
    let (status, recs) = t.wait_exit(Duration::from_secs(10));
    assert!(status.success());
    assert_eq!(recs.len(), 2, "{recs:?}");

    // Counted from when it says it is watching: loading the programs
    // takes seconds under emulation (the 6.1 and 6.12 VMs).
    let t = Tracer::start(&["retrans", "--json", "--duration", "0.5"]);
    let watching = Instant::now();
    let (status, _) = t.wait_exit(Duration::from_secs(10));
    assert!(status.success());
    assert!(
        watching.elapsed() < Duration::from_secs(10),
        "--duration 0.5 ended after {:?}",
        watching.elapsed()
    );
}

/// `tcptrace states --port 1 | head -1`: nothing matches, so nothing is
/// ever written after the header; tcptrace still ends soon after `head`
/// does, with status 0 (it watches its output pipe, not only its writes).
#[test]
fn a_closed_pipe_is_noticed_while_nothing_is_printed() {
    require_root();
    let mut child = Command::new(binary())
        .args(["states", "--port", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut header = String::new();
    out.read_line(&mut header).unwrap();
    assert!(header.starts_with("TIME(UTC)"), "{header}");
    drop(out);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tcptrace did not notice for 5 s that its reader had gone");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
