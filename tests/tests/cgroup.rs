//! Cgroup attribution against a real cgroup: a process moved into a
//! cgroup made under the unified (v2) hierarchy, named as docker names a
//! container's scope, owns a listener from before tcptrace starts (seeded
//! from /proc), a listener and a connection made while it runs (seen in
//! the kernel); the test's own thread connects to both listeners from its
//! own cgroup. The oracle is the kernel's `/proc/PID/cgroup` of each
//! process: every record says the cgroup of its owner, `--cgroup` keeps
//! exactly the records of the cgroup's owner, and the agent's opt-in
//! `cgroup` label counts its connect (a connect is counted when its
//! handshake ends, in softirq: one that ended where no BPF program runs,
//! see `Ftrace`, is not).

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use tests::{
    NetNs, Tracer,
    ftrace::Ftrace,
    our_pid, require_root,
    scrape::{metrics, sum},
    tracer::of_type,
    unique_port, wait_until,
};

/// A container id as docker writes it (64 hex digits).
const ID: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

/// Where the unified hierarchy is mounted (`/sys/fs/cgroup/unified` on a
/// hybrid host, `/sys/fs/cgroup` on a v2 one).
fn unified_root() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| PathBuf::from(left.split(' ').nth(4).unwrap()))
    });
    root.expect("no cgroup2 (unified) hierarchy is mounted: mount -t cgroup2 none /sys/fs/cgroup")
}

/// The `0::` path of a process, as the kernel writes it.
fn cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let line = text.lines().find_map(|l| l.strip_prefix("0::"));
    line.expect("no unified-hierarchy line").to_owned()
}

/// A cgroup `parent/docker-ID.scope` under the unified root, with a
/// process in it; removed (the process killed first) on drop.
struct Cgrouped {
    dir: PathBuf,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Cgrouped {
    /// Starts `script` under python3 in `ns`, moves it into a fresh
    /// cgroup before it reads its first line, and returns it.
    fn start(ns: &NetNs, root: &Path, script: &str) -> Self {
        let dir = root
            .join(format!("tcptrace-test-{}", std::process::id()))
            .join(format!("docker-{ID}.scope"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
        Self {
            dir,
            child,
            stdin,
            stdout,
        }
    }

    /// Sends a line, then waits for the line the script answers.
    fn step(&mut self, expect: &str) {
        self.stdin.write_all(b"go\n").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), expect, "the script's answer");
    }
}

impl Drop for Cgrouped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::remove_dir(self.dir.parent().unwrap());
    }
}

/// (local port, remote port, old, new) of each transition record.
fn keys<'a>(recs: impl IntoIterator<Item = &'a Value>) -> BTreeSet<(u64, u64, String, String)> {
    recs.into_iter()
        .map(|r| {
            (
                r["lport"].as_u64().unwrap(),
                r["rport"].as_u64().unwrap(),
                r["old"].as_str().unwrap().to_owned(),
                r["new"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Both listeners have closed.
fn listeners_closed(recs: &[Value]) -> bool {
    recs.iter()
        .filter(|r| r["old"] == "LISTEN" && r["new"] == "CLOSE")
        .count()
        >= 2
}

#[test]
fn owners_carry_their_cgroup_and_the_filter_and_label_use_it() {
    require_root();
    let ns = NetNs::new("cgroup");
    let root = unified_root();
    let (seeded, live) = (unique_port(), unique_port());
    let script = format!(
        r#"import socket, sys
sys.stdin.readline()
a = socket.socket(); a.bind(("127.0.0.1", {seeded})); a.listen(8)
print("seeded", flush=True)
sys.stdin.readline()
b = socket.socket(); b.bind(("127.0.0.1", {live})); b.listen(8)
c = socket.create_connection(("127.0.0.1", {live})); s, _ = b.accept()
c.close(); s.close()
print("connected", flush=True)
sys.stdin.readline()
for l in (a, b):
    s, _ = l.accept(); s.close(); l.close()
print("done", flush=True)
"#
    );
    let mut app = Cgrouped::start(&ns, &root, &script);
    let path = cgroup_of(app.child.id());
    assert!(
        path.ends_with(&format!("/docker-{ID}.scope")),
        "the kernel puts the process in the cgroup made for it: {path}"
    );
    let ours = cgroup_of(std::process::id());
    assert_ne!(ours, path);
    app.step("seeded");

    let ports = format!("{seeded},{live}");
    let netns = format!("/run/netns/{}", ns.name);
    let all = Tracer::start(&["states", "--json", "--port", &ports]);
    let only = Tracer::start(&["states", "--json", "--port", &ports, "--cgroup", &path]);
    let addr: SocketAddr = format!("127.0.0.1:{}", unique_port()).parse().unwrap();
    let a = addr.to_string();
    let agent = Tracer::start(&[
        "agent",
        "--listen",
        &a,
        "--netns",
        &netns,
        "--metrics-labels",
        "cgroup",
        "--events",
        "connect",
    ]);
    for t in [&all, &only, &agent] {
        t.wait_seeded();
    }
    // Handshakes ending: SYN_SENT (2) -> ESTABLISHED (1).
    let peer = Ftrace::start(
        "sock/inet_sock_set_state",
        &format!("(dport == {seeded} || dport == {live}) && oldstate == 2 && newstate == 1"),
    );

    app.step("connected");
    for port in [seeded, live] {
        ns.run("tt-client", move || {
            drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
        });
    }
    app.step("done");

    let limit = Duration::from_secs(10);
    all.wait_for("both listeners close", limit, listeners_closed);
    only.wait_for("both listeners close", limit, listeners_closed);
    let label = format!("cgroup=\"{path}\"");
    let theirs = |body: &str| sum(body, "tcptrace_connect_attempts_total", &[&label]);
    let mine = |body: &str| {
        sum(
            body,
            "tcptrace_connect_attempts_total",
            &[&format!("cgroup=\"{ours}\"")],
        )
    };
    // The app connects once, the test's thread twice; ftrace does not
    // tell whose handshake ended where no BPF program runs.
    assert_eq!(peer.count(), 3, "{:#?}", peer.lines());
    let blind = peer.blind() as f64;
    let settled = wait_until(limit, || {
        let body = metrics(addr);
        theirs(&body) + mine(&body) == 3.0 - blind
    });
    let body = metrics(addr);
    let (all, only) = (all.stop(), only.stop());
    drop(agent.stop());
    assert!(
        settled
            && (1.0 - blind..=1.0).contains(&theirs(&body))
            && (2.0 - blind..=2.0).contains(&mine(&body)),
        "connect attempts by cgroup label, {blind} handshakes where BPF does not run:\n{body}"
    );

    let all = of_type(&all, "state");
    let pid = u64::from(app.child.id());
    let in_cgroup: Vec<&Value> = all
        .iter()
        .copied()
        .filter(|r| r["cgroup"] == path.as_str())
        .collect();
    for r in &all {
        let owner = r["pid"].as_u64();
        if owner == Some(pid) {
            assert_eq!(r["cgroup"], path.as_str(), "{r}");
            assert_eq!(r["container"], ID, "{r}");
            assert_eq!(r["unit"], format!("docker-{ID}.scope"), "{r}");
        } else if owner == Some(our_pid()) {
            assert_eq!(r["cgroup"], ours.as_str(), "{r}");
        }
    }
    // The seeded listener's accepted socket, the live listener's, and
    // the app's own client socket are all the app's.
    for (what, port) in [("seeded", seeded), ("live", live)] {
        assert!(
            in_cgroup
                .iter()
                .any(|r| r["lport"] == port && r["rport"] != 0),
            "the {what} listener's accepted sockets carry the cgroup: {in_cgroup:#?}"
        );
    }
    assert!(
        in_cgroup
            .iter()
            .any(|r| r["rport"] == live && r["new"] == "SYN_SENT" && r["pid"] == pid),
        "the app's connect carries the cgroup: {in_cgroup:#?}"
    );
    // `--cgroup` keeps exactly these.
    let only = of_type(&only, "state");
    assert!(only.iter().all(|r| r["cgroup"] == path.as_str()));
    assert_eq!(keys(only), keys(in_cgroup));
}
