//! Records from many CPUs come out in the order things happened: the
//! kernel programs write to their CPU's ring, and tcptrace merges the
//! rings by time. A socket's transitions can happen on different CPUs
//! (connected on one, closed on another), so a reader that drained the
//! rings one after the other would print a socket's close before its
//! handshake whenever the two landed in the same drain.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use nix::{
    sched::{CpuSet, sched_getaffinity, sched_setaffinity},
    sys::signal::Signal,
    unistd::Pid,
};
use tests::{
    NetNs, Tracer, require_root,
    tracer::{json_lines, of_type},
    unique_port,
};

/// Connections made, each connected on one CPU and closed on another.
const CONNS: usize = 1_000;

/// The client's transitions once its port is known, in the order the
/// kernel makes them.
const CLIENT: [(&str, &str); 4] = [
    ("SYN_SENT", "ESTABLISHED"),
    ("ESTABLISHED", "FIN_WAIT1"),
    ("FIN_WAIT1", "FIN_WAIT2"),
    ("FIN_WAIT2", "CLOSE"),
];

/// The CPUs this test may run on.
fn cpus() -> Vec<usize> {
    let set = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect()
}

/// Moves the calling thread to `cpu` (it runs there when this returns).
fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu).unwrap();
    sched_setaffinity(Pid::from_raw(0), &set).expect("sched_setaffinity");
}

/// On a machine with two CPUs or more (a single-CPU guest runs it on one
/// ring, where it still holds): every connection is made on one CPU and
/// closed on the other, alternately on the first and the last, so that
/// a ring drained before the other would put closes before handshakes in
/// one of the two halves. Every client socket's transitions must come out
/// in the kernel's order, and every one of them must be there.
#[test]
fn a_socket_closed_on_another_cpu_keeps_its_order() {
    require_root();
    let cpus = cpus();
    let (a, b) = (cpus[0], *cpus.last().unwrap());
    let ns = NetNs::new("order");
    let port = unique_port();
    let t = Tracer::start(&["states", "--json", "--port", &port.to_string()]);
    ns.run("tt-order", move || {
        let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
        let server = std::thread::spawn(move || {
            for s in l.incoming().take(CONNS) {
                let mut s = s.unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                // Until the client's FIN.
                let _ = s.read(&mut [0u8; 1]);
            }
        });
        for i in 0..CONNS {
            let (open, close) = if i % 2 == 0 { (a, b) } else { (b, a) };
            pin(open);
            let c = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
            pin(close);
            drop(c);
        }
        server.join().expect("the server panicked");
    });
    let client = |r: &serde_json::Value| r["rport"] == port && r["lport"] != 0;
    let (settled, _) = t.settle(Duration::from_secs(30), |recs| {
        of_type(recs, "state")
            .into_iter()
            .filter(|r| client(r))
            .count()
            >= CONNS * CLIENT.len()
    });
    let f = t.finish(Signal::SIGINT);
    assert!(f.status.success(), "{}: {}", f.status, f.stderr);
    let recs = json_lines(&f.stdout, &f.stderr);
    let mut by_port: std::collections::BTreeMap<u64, Vec<(String, String)>> = Default::default();
    for r in of_type(&recs, "state").into_iter().filter(|r| client(r)) {
        by_port
            .entry(r["lport"].as_u64().unwrap())
            .or_default()
            .push((
                r["old"].as_str().unwrap().to_string(),
                r["new"].as_str().unwrap().to_string(),
            ));
    }
    let want: Vec<(String, String)> = CLIENT
        .iter()
        .map(|(o, n)| (o.to_string(), n.to_string()))
        .collect();
    let wrong: Vec<_> = by_port.iter().filter(|(_, seq)| **seq != want).collect();
    eprintln!(
        "{} client sockets on CPUs {a} and {b}, {} out of order or incomplete; settled: {settled}",
        by_port.len(),
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "sockets whose transitions came out of order or incomplete (of {}): {:?}",
        by_port.len(),
        wrong.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(by_port.len(), CONNS, "client sockets seen");
}
