//! A connect storm at full rate on every CPU (issue 10): the kernel side
//! must lose nothing, not in the ring and not to a program the kernel
//! skipped because it was already running on the CPU (an interrupt's
//! softirq changing another socket's state in the middle of a
//! process-context run: `recursion_misses`; the BTF state program's second
//! program handles those). The oracle is ftrace's own count of the same
//! tracepoint, less the transitions that fired where no BPF program runs
//! on these hosts (see `Ftrace`).

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use socket2::{Domain, Socket, Type};
use tests::{
    NetNs, Tracer, bpf,
    ftrace::Ftrace,
    require_root,
    tracer::{self, json_lines, of_type},
    unique_port,
};

/// Connections the storm makes at most, and for how long at most.
const CONNS: u64 = 10_000;
const LIMIT: Duration = Duration::from_secs(20);
/// Transitions a connection makes: the client's CLOSE -> SYN_SENT ->
/// ESTABLISHED -> FIN_WAIT1 -> FIN_WAIT2 -> CLOSE, the accepted socket's
/// LISTEN -> SYN_RECV -> ESTABLISHED -> CLOSE_WAIT -> LAST_ACK -> CLOSE;
/// and the listener's CLOSE -> LISTEN and LISTEN -> CLOSE.
const PER_CONN: u64 = 10;
const LISTENER: u64 = 2;

/// The bench's FIN storm: one thread connects (to eight loopback
/// addresses, for ports) and closes at once, another accepts, reads until
/// the client's FIN and closes, so the two CPUs' process-context
/// transitions meet each other's softirqs. Returns the connections made.
fn fin_storm(ns: &NetNs, port: u16) -> u64 {
    ns.run("tt-storm", move || {
        // A deep accept queue: with std's 128 the client outran the server,
        // SYNs were dropped and each such connect waited a second.
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        l.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())
            .unwrap();
        l.listen(4096).unwrap();
        let l: TcpListener = l.into();
        let server = std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { break };
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 1];
                if matches!(s.read(&mut buf), Ok(1)) {
                    break; // the last connection says so
                }
            }
        });
        let start = Instant::now();
        let mut made = 0;
        while made < CONNS && start.elapsed() < LIMIT {
            let ip = [127, 0, 0, 1 + (made % 8) as u8];
            drop(TcpStream::connect(SocketAddr::from((ip, port))).unwrap());
            made += 1;
        }
        // The end: one more connection that sends a byte, then closes.
        let mut last = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
        std::io::Write::write_all(&mut last, b"x").unwrap();
        server.join().expect("the storm's server panicked");
        drop(last);
        made + 1
    })
}

/// A FIN storm on both CPUs while `tcptrace states --json` watches (a
/// release build with its default ring): every transition a BPF program
/// could see is printed once and none is reported lost, whatever the
/// kernel skipped. On this machine's kernel the bench's FIN storm made it
/// skip 1 264 of 1.5 million before the second program; here, in ten runs
/// with the second program keyed on the transition, the first was skipped
/// 0 to 582 times and every one was made up for. (Keyed on a flag raised around the
/// first program's work instead, it once lost 30 of 31: the kernel counts
/// the program as running before its first instruction and after its
/// last.) A debug build's user space reads the ring several times slower
/// than a storm fills it (13 316 of 60 004 lost in the ring once here,
/// 26 090 to 33 594 of 100 012 in the 6.1 guest; the release build none):
/// against one, the rings hold the whole storm. Holding a debug build to
/// printed + reported lost == made instead failed in about one run in
/// six in the 6.1 guest, by one too many: a loss is counted per record the
/// kernel could not queue, and the second program's rare repeat (see
/// tracer-ebpf/src/nested.rs) is a record too; when one of its two copies
/// is lost, the reader cannot drop the other.
#[test]
fn a_storm_on_every_cpu_loses_no_transition() {
    require_root();
    let ns = NetNs::new("storm");
    ns.many_connections();
    let port = unique_port();
    // 100 002 state changes at most: a ring of 16 MiB a CPU.
    let peer = Ftrace::start_with_buffer(
        "sock/inet_sock_set_state",
        &format!("sport == {port} || dport == {port}"),
        16384,
    );
    // An output queue for the whole storm: this test's own reader (JSON
    // parsed by a debug build) is slower than tcptrace, and what a slow
    // reader makes tcptrace drop (and report) is another test's subject.
    // So are the rings a debug build overflows: there they hold the storm
    // (10.4 MB of records; 32 MiB, 16 a CPU on two).
    let port_arg = port.to_string();
    let mut args = vec!["states", "--json", "--output-queue", "128M"];
    if !tracer::optimised() {
        args.extend(["--ring-size", "32M"]);
    }
    args.extend(["--port", &port_arg]);
    let t = Tracer::start(&args);
    let started = Instant::now();
    let conns = fin_storm(&ns, port);
    let took = started.elapsed();
    let made = conns * PER_CONN + LISTENER;
    // The last connection's server side closes as the thread ends: wait
    // for ftrace to see its last transition.
    let settled = tests::wait_until(Duration::from_secs(5), || peer.count() >= made);
    let (traced, blind) = (peer.count(), peer.blind());
    assert!(
        settled && traced == made,
        "ftrace saw {traced} of the {made} transitions"
    );
    let expected = made - blind;
    t.settle(Duration::from_secs(20), |r| {
        of_type(r, "state").len() as u64 + tracer::lost(r, "output").0 >= expected
    });
    let skipped = bpf::recursion_misses_of(t.pid());
    let f = t.finish(Signal::SIGINT);
    assert!(f.status.success(), "{}: {}", f.status, f.stderr);
    let recs = json_lines(&f.stdout, &f.stderr);
    let printed = of_type(&recs, "state").len() as u64;
    let (lost, _) = tracer::lost(&recs, "output");
    let sources: Vec<String> = of_type(&recs, "lost")
        .iter()
        .map(|r| format!("{} {}", r["count"], r["source"]))
        .collect();
    eprintln!(
        "storm of {conns} connections in {took:?}: {made} transitions, {blind} where BPF does not run; {printed} printed, {lost} reported lost; the kernel skipped {skipped} program runs"
    );
    assert!(
        !sources.iter().any(|s| s.contains("kernel-nested")),
        "transitions the kernel skipped were lost: {sources:?}"
    );
    assert_eq!(
        lost, 0,
        "tcptrace lost transitions: {sources:?}; {}",
        f.stderr
    );
    // Every transition once: none missing, and none twice (the second
    // program sends a transition again when a nested one lands in its
    // first instructions, see `hit` in tracer-ebpf/src/state_btf.rs; the
    // reader drops such a repeat: 2 in 100 012 once in the 6.1 guest
    // before it did).
    assert_eq!(
        printed, expected,
        "{made} transitions made, {blind} where no BPF program runs; {printed} printed, lost {sources:?}, {skipped} runs skipped by the kernel"
    );
}
