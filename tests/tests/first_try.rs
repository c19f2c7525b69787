//! What a new user hits on the first try (issue 14, item 5 and 6), each
//! against real sockets in a private network namespace: IPv4 on a
//! dual-stack listener under `-4`, the owner of a `SO_LINGER 0` abort and
//! the state of the socket that receives it, `--comm`, `hist` on a quiet
//! port ending when asked, the start-up line and the header on one pipe,
//! and the owners of listeners from before a recording, in replay.

use std::{
    io::{BufRead, BufReader, Read},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;
use socket2::SockRef;
use tests::{
    NetNs, TempFile, Tracer, our_pid, require_root,
    tracer::{binary, of_type, run},
    unique_port,
};

/// IPv4 connections to a `[::]` listener are IPv4 sockets to the user:
/// `-4` shows the server side too, as `127.0.0.1`, owned by the listener.
#[test]
fn ipv4_on_a_dual_stack_listener_is_ipv4() {
    require_root();
    let ns = NetNs::new("dual");
    let port = unique_port();
    let t = Tracer::start(&["states", "-4", "--json", "--port", &port.to_string()]);
    ns.run("tt-dual", move || {
        let l = TcpListener::bind(format!("[::]:{port}")).unwrap();
        let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (s, _) = l.accept().unwrap();
        drop(c);
        drop(s);
    });
    let server_side = |r: &Value| r["lport"] == port && r["new"] == "CLOSE";
    t.wait_for("the server side closing", Duration::from_secs(10), |r| {
        r.iter().any(server_side)
    });
    let recs = t.stop();
    let states = of_type(&recs, "state");
    let server: Vec<&&Value> = states.iter().filter(|r| r["lport"] == port).collect();
    // At least the accepted socket's SYN_RECV -> ESTABLISHED and its close.
    assert!(server.len() >= 2, "{states:#?}");
    for r in &server {
        assert_eq!(
            (
                r["family"].as_str(),
                r["laddr"].as_str(),
                r["raddr"].as_str()
            ),
            (Some("ipv4"), Some("127.0.0.1"), Some("127.0.0.1")),
            "{r}"
        );
        assert_eq!(
            (&r["pid"], &r["comm"]),
            (&our_pid().into(), &"tt-dual".into()),
            "{r}"
        );
    }
    // The listener itself is [::], IPv6: not shown under -4.
    assert!(states.iter().all(|r| r["family"] == "ipv4"), "{states:#?}");
}

/// A client that closes with `SO_LINGER` 0 sends a RST after its socket
/// went to CLOSE: the RST is the client's; the server's socket received
/// it while ESTABLISHED.
#[test]
fn a_linger0_abort_has_its_owner_and_the_receiver_its_state() {
    require_root();
    let ns = NetNs::new("linger");
    let port = unique_port();
    let t = Tracer::start(&["resets", "--json", "--port", &port.to_string()]);
    ns.run("tt-lsrv", move || {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let client = std::thread::Builder::new()
            .name("tt-lcli".into())
            .spawn(move || {
                let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
                c
            })
            .unwrap();
        let (mut s, _) = l.accept().unwrap();
        // The client's close, in its own thread: the RST is sent there.
        let c = client.join().unwrap();
        std::thread::Builder::new()
            .name("tt-lcli".into())
            .spawn(move || drop(c))
            .unwrap()
            .join()
            .unwrap();
        let mut b = [0u8; 1];
        let e = s.read(&mut b).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
    });
    let recs = t.wait_for("a RST each way", Duration::from_secs(10), |r| {
        ["sent", "received"]
            .iter()
            .all(|d| r.iter().any(|r| r["direction"] == *d))
    });
    drop(t);
    let resets = of_type(&recs, "reset");
    let sent: Vec<&&Value> = resets.iter().filter(|r| r["direction"] == "sent").collect();
    let received: Vec<&&Value> = resets
        .iter()
        .filter(|r| r["direction"] == "received")
        .collect();
    assert_eq!((sent.len(), received.len()), (1, 1), "{resets:#?}");
    let (s, r) = (sent[0], received[0]);
    assert_eq!(
        (&s["pid"], &s["comm"]),
        (&our_pid().into(), &"tt-lcli".into()),
        "{s}"
    );
    assert_eq!(s["rport"], port, "{s}");
    // The kernel reports the socket already in CLOSE (the reason differs
    // between kernels: TCP_STATE on 6.18, none before 6.10).
    assert_eq!(s["state"], "CLOSE", "{s}");
    assert_eq!(
        (&r["comm"], &r["lport"]),
        (&"tt-lsrv".into(), &port.into()),
        "{r}"
    );
    assert_eq!(r["state"], "ESTABLISHED", "{r}");
}

/// `--comm` keeps the sockets of one thread name, exactly.
#[test]
fn comm_keeps_one_name() {
    require_root();
    let ns = NetNs::new("comm");
    let port = unique_port();
    let t = Tracer::start(&[
        "connect",
        "--json",
        "--comm",
        "tt-alpha",
        "--port",
        &port.to_string(),
    ]);
    ns.run("tt-comm-srv", move || {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        for name in ["tt-beta", "tt-alpha", "tt-alphabet", "tt-alpha"] {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || TcpStream::connect(("127.0.0.1", port)).unwrap())
                .unwrap()
                .join()
                .unwrap();
            let _ = l.accept().unwrap();
        }
    });
    let recs = t.wait_for("two connects", Duration::from_secs(10), |r| {
        of_type(r, "connect").len() >= 2
    });
    drop(t);
    let c = of_type(&recs, "connect");
    assert_eq!(c.len(), 2, "{c:#?}");
    assert!(c.iter().all(|r| r["comm"] == "tt-alpha"), "{c:#?}");
}

/// Runs tcptrace to its own end within `limit` of saying it is watching
/// (loading takes long in a VM under emulation); fails the test if it
/// does not end by itself.
fn run_until_it_ends(args: &[&str], limit: Duration) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(binary())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.starts_with("tcptrace: watching"), "{first}");
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            return (status, out);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("tcptrace {args:?} did not end by itself within {limit:?} of starting to watch");
}

/// `hist -c 1` and `hist 1 2` on a port nobody uses end by themselves and
/// say that they measured nothing.
#[test]
fn hist_on_a_quiet_port_ends_and_says_so() {
    require_root();
    let port = unique_port().to_string();
    let start = Instant::now();
    let (status, out) = run_until_it_ends(
        &["hist", "-c", "1", "--port", &port],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{status}: {out}");
    assert_eq!(out.trim(), "no handshake latency samples", "{out}");
    let (status, out) = run_until_it_ends(
        &["hist", "1", "2", "--port", &port],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{status}: {out}");
    assert_eq!(
        out.matches("no handshake latency samples").count(),
        2,
        "{out}"
    );
    // Two runs of one and two seconds, plus loading the programs.
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

/// With standard output and standard error on one pipe (`2>&1`), the
/// column header and the start-up line are each a whole line, header
/// first. Three runs, to give a race a chance to show.
#[test]
fn header_and_startup_line_do_not_splice_on_one_pipe() {
    require_root();
    let port = unique_port().to_string();
    for _ in 0..3 {
        let (r, w) = std::io::pipe().unwrap();
        let mut child = Command::new(binary())
            .args(["states", "--port", &port])
            .stdout(w.try_clone().unwrap())
            .stderr(w)
            .spawn()
            .unwrap();
        let mut lines = Vec::new();
        let mut reader = BufReader::new(r);
        while lines.len() < 2 {
            let mut l = String::new();
            if reader.read_line(&mut l).unwrap() == 0 {
                break;
            }
            lines.push(l);
        }
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
        child.wait().unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("TIME(UTC) ") && lines[0].ends_with(" PREV_MS\n"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("tcptrace: watching ") && lines[1].ends_with("Ctrl-C to stop\n"),
            "{lines:?}"
        );
    }
}

/// A listener from before the recording started owns, in replay, the
/// connections it accepted during it (the recording carries the seeds).
#[test]
fn replay_knows_listeners_from_before_the_recording() {
    require_root();
    let ns = NetNs::new("seeds");
    let port = unique_port();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let server = ns.spawn("tt-old-srv", move || {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let c = std::thread::spawn(move || TcpStream::connect(("127.0.0.1", port)).unwrap());
        let (s, _) = l.accept().unwrap();
        drop(c.join().unwrap());
        drop(s);
        // The listener lives until after the recording ends.
        go_rx.recv().ok();
    });
    ready_rx.recv().unwrap();
    let rec = TempFile::new("seeds");
    let t = Tracer::start(&["record", "-o", rec.path(), "--port", &port.to_string()]);
    t.wait_seeded();
    go_tx.send(()).unwrap();
    // Until the accepted socket's close is in the recording.
    let closed = format!("\"lport\":{port},");
    assert!(
        tests::wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(rec.path()).is_ok_and(|s| {
                s.lines()
                    .any(|l| l.contains(&closed) && l.contains("\"new\":\"CLOSE\""))
            })
        }),
        "the accepted socket's close was not recorded"
    );
    t.stop();
    drop(go_tx);
    server.join().unwrap();
    let recording = std::fs::read_to_string(rec.path()).unwrap();
    assert!(recording.contains("{\"type\":\"seeds\""), "{recording}");
    let (status, out, err) = run(&["replay", rec.path(), "states", "--json"]);
    assert!(status.success(), "{err}");
    let server_side: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["type"] == "state" && r["lport"] == port)
        .collect();
    assert!(!server_side.is_empty(), "{out}");
    // Seeded owners carry the process's name (/proc/PID/comm).
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    for r in &server_side {
        assert_eq!(
            (&r["pid"], r["comm"].as_str()),
            (&our_pid().into(), Some(comm.trim_end())),
            "{r}"
        );
    }
}
