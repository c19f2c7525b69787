//! `tcptrace doctor` against faults made for real in private namespaces:
//! each test makes one, and the doctor must name it (playbook, severity,
//! the process and the destination or listener, the numbers the kernel's
//! own counters give), and a healthy namespace gives no finding and exit
//! status 0.

use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use tests::{
    NetNs,
    doctor::{Session, has_subject},
    ftrace::Ftrace,
    load::bulk_transfers,
    require_root, unique_port,
};

/// Connects to a closed port in a loop: `connect_failures` names the
/// destination, ECONNREFUSED, and the process (a thread named
/// `tt-refused`); the count equals the namespace's TcpAttemptFails delta
/// exactly (every refused connect is one failed attempt and nothing else
/// fails there), but for the resets received where no BPF program runs
/// (see `Ftrace`): their SYN_SENT -> CLOSE and error report are unseen.
#[test]
fn doctor_connect_failures_name_the_destination_errno_and_owner() {
    require_root();
    let ns = NetNs::new("dr-refused");
    let port = unique_port();
    let closed: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let doctor = Session::start(&ns, 4, &[]);
    // SYN_SENT (2) -> CLOSE (7), in the same call as the error report.
    let peer = Ftrace::start(
        "sock/inet_sock_set_state",
        &format!("dport == {port} && oldstate == 2 && newstate == 7"),
    );
    let before = ns.counter("Tcp", "AttemptFails");
    const N: u64 = 30;
    ns.run("tt-refused", move || {
        for _ in 0..N {
            let e = TcpStream::connect_timeout(&closed, Duration::from_secs(5)).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        }
    });
    let fails = ns.counter("Tcp", "AttemptFails") - before;
    assert_eq!(fails, N, "the namespace's TcpAttemptFails");
    assert_eq!(peer.count(), N, "{:#?}", peer.lines());
    let seen = N - peer.blind();
    let r = doctor.report();
    let f = r.one("connect_failures");
    // Critical from 20 failures (here every attempt fails).
    let severity = if seen >= 20 { "critical" } else { "warning" };
    assert_eq!(f["severity"], severity, "{f:#}");
    assert_eq!(f["evidence"]["failures"], seen, "{f:#}");
    assert_eq!(f["evidence"]["by_errno"]["ECONNREFUSED"], seen, "{f:#}");
    assert!(
        has_subject(f, |s| s["raddr"] == "127.0.0.1" && s["rport"] == port),
        "{f:#}"
    );
    assert!(
        has_subject(f, |s| s["comm"] == "tt-refused" && s["count"] == seen),
        "{f:#}"
    );
    let code = if seen >= 20 { 4 } else { 3 };
    assert_eq!(r.code, code, "{severity}: exit status {code}");
    assert_eq!(r.verdict["status"], severity);
}

/// Steady normal traffic and a health checker that connects and closes:
/// no finding, status healthy, exit status 0.
#[test]
fn doctor_finds_nothing_in_a_healthy_namespace() {
    require_root();
    let ns = NetNs::new("dr-healthy");
    let port = unique_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let doctor = Session::start(&ns, 4, &[]);
    // 20 transfers of 64 KiB, then 20 health checks (connect, close).
    bulk_transfers(&ns, addr, 20, 64 * 1024);
    let check = format!("127.0.0.1:{}", port + 1)
        .parse::<SocketAddr>()
        .unwrap();
    let server = ns.spawn("tt-health-srv", move || {
        let l = std::net::TcpListener::bind(check).unwrap();
        for _ in 0..20 {
            drop(l.accept().unwrap());
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    ns.run("tt-checker", move || {
        for _ in 0..20 {
            drop(TcpStream::connect_timeout(&check, Duration::from_secs(5)).unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    server.join().unwrap();
    let r = doctor.report();
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.verdict["status"], "healthy");
    assert_eq!(r.code, 0);
}
