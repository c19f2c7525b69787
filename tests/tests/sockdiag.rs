//! The data sources of `tcptrace doctor` against the kernel's own tools,
//! in private network namespaces: `tracer::sockdiag::snapshot` against
//! `ss` run in the namespace (accept queue and backlog, keepalive timers,
//! idle time, CLOSE_WAIT receive queues), `tracer::sysctls::read` against
//! `sysctl` there, and its connect timeout against a real `connect()` to a
//! port whose SYNs are dropped (and the namespace's TCPSynRetrans).
//!
//! The library is called directly (no tcptrace binary): servers and
//! clients are threads of this test process, which is also the owner the
//! snapshot must name.

use std::{
    io::{Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use socket2::{Domain, SockAddr, Socket, TcpKeepalive, Type};
use tests::{NetNs, our_pid, require_root, unique_port, wait_until};
use tracer::{
    event::TcpState,
    sockdiag::{self, SockInfo, TimerKind},
    sysctls,
};

fn path(ns: &NetNs) -> String {
    format!("/run/netns/{}", ns.name)
}

fn snapshot(ns: &NetNs) -> Vec<SockInfo> {
    sockdiag::snapshot(Some(&path(ns))).expect("sockdiag snapshot of the test namespace")
}

/// `ss -Htn[o|i] STATES FILTER` in the namespace: one line per socket, as
/// words (`State Recv-Q Send-Q Local Peer [details...]`).
fn ss(ns: &NetNs, flags: &str, filter: &str) -> Vec<Vec<String>> {
    let out = ns.sh(&["ss", &format!("-Htna{flags}"), filter]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// A timer time as `ss -o` prints it (`misc/ss.c`, `print_ms_timer`):
/// `200ms`, `4.987ms` (4.987 s), `59sec`, `119min`, `1min5sec`, in ms.
fn ss_ms(text: &str) -> u64 {
    let (mins, rest) = match text.split_once("min") {
        Some((m, r)) => (m.parse::<u64>().unwrap(), r),
        None => (0, text),
    };
    let rest_ms = if let Some(s) = rest.strip_suffix("sec") {
        s.parse::<u64>().unwrap() * 1000
    } else if let Some(ms) = rest.strip_suffix("ms") {
        match ms.split_once('.') {
            Some((s, m)) => s.parse::<u64>().unwrap() * 1000 + m.parse::<u64>().unwrap(),
            None => ms.parse().unwrap(),
        }
    } else {
        assert!(rest.is_empty(), "ss timer {text:?}");
        0
    };
    mins * 60_000 + rest_ms
}

/// `timer:(keepalive,59sec,0)` of an `ss -o` line: kind and ms.
fn ss_timer(line: &[String]) -> Option<(String, u64)> {
    let t = line.iter().find_map(|w| w.strip_prefix("timer:("))?;
    let mut parts = t.trim_end_matches(')').split(',');
    let kind = parts.next()?.to_string();
    Some((kind, ss_ms(parts.next()?)))
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn accept_queue_and_backlog_are_what_ss_shows() {
    require_root();
    let ns = NetNs::new("sdq");
    let port = unique_port();
    // listen(3), then five clients the server never accepts: the kernel
    // queues backlog + 1 = 4 of them (`sk_acceptq_is_full()` is `>`), and
    // drops the fifth's SYNs while the queue is full (it stays SYN_SENT).
    let (_server, _clients) = ns.run("tt-server", move || {
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        l.bind(&SockAddr::from(addr(port))).unwrap();
        l.listen(3).unwrap();
        let clients: Vec<Socket> = (0..5)
            .map(|_| {
                let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                c.set_nonblocking(true).unwrap();
                let _ = c.connect(&SockAddr::from(addr(port))); // EINPROGRESS
                c
            })
            .collect();
        (l, clients)
    });
    let listen = format!("sport = :{port}");
    assert!(
        wait_until(Duration::from_secs(5), || {
            ss(&ns, "l", &listen).first().is_some_and(|l| l[1] == "4")
        }),
        "ss never showed 4 connections in the accept queue: {:?}",
        ss(&ns, "l", &listen)
    );
    let ours = snapshot(&ns);
    let theirs = ss(&ns, "l", &listen);
    eprintln!("ss -ltn: {theirs:?}");
    let l = ours
        .iter()
        .find(|s| s.state == TcpState::Listen && s.tuple.lport == port)
        .expect("the listener in the snapshot");
    // Exactly what ss prints as Recv-Q and Send-Q for the listener.
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(l.accept_queue().unwrap().to_string(), theirs[0][1]);
    assert_eq!(l.backlog().unwrap().to_string(), theirs[0][2]);
    // And what the test did: listen(3) under somaxconn 4096, 4 queued.
    assert_eq!((l.accept_queue(), l.backlog()), (Some(4), Some(3)));
    assert_eq!(l.owner.map(|o| u64::from(o.pid)), Some(our_pid()));
    // The unaccepted connections: as many ESTABLISHED server sockets as ss
    // shows, exactly, and the fifth client still in SYN_SENT.
    let count = |state: TcpState| {
        ours.iter()
            .filter(|s| s.state == state && (s.tuple.lport == port || s.tuple.rport == port))
            .count()
    };
    let ss_count = |state: &str| {
        ss(&ns, "", &format!("( sport = :{port} or dport = :{port} )"))
            .iter()
            .filter(|l| l[0] == state)
            .count()
    };
    assert_eq!(count(TcpState::Established), ss_count("ESTAB"));
    assert_eq!(count(TcpState::SynSent), ss_count("SYN-SENT"));
    assert_eq!(count(TcpState::SynSent), 1);
}

#[test]
fn keepalive_timer_only_where_so_keepalive_is_set() {
    require_root();
    let ns = NetNs::new("sdk");
    let port = unique_port();
    let (_l, with, without, _accepted) = ns.run("tt-server", move || {
        let l = TcpListener::bind(addr(port)).unwrap();
        let with = TcpStream::connect(addr(port)).unwrap();
        // First probe after 60 s of silence, so ss prints whole seconds.
        let ka = TcpKeepalive::new().with_time(Duration::from_secs(60));
        socket2::SockRef::from(&with)
            .set_tcp_keepalive(&ka)
            .unwrap();
        let without = TcpStream::connect(addr(port)).unwrap();
        let accepted = [l.accept().unwrap().0, l.accept().unwrap().0];
        (l, with, without, accepted)
    });
    let lport = |s: &TcpStream| s.local_addr().unwrap().port();
    let (wport, woport) = (lport(&with), lport(&without));
    let ours = snapshot(&ns);
    let theirs = ss(&ns, "o", &format!("dport = :{port}"));
    let find = |p: u16| {
        let s = ours
            .iter()
            .find(|s| s.tuple.lport == p && s.tuple.rport == port)
            .expect("the client socket in the snapshot");
        let line = theirs
            .iter()
            .find(|l| l[3] == format!("127.0.0.1:{p}"))
            .expect("the client socket in ss");
        (*s, ss_timer(line))
    };
    // With SO_KEEPALIVE: a keepalive timer in both, due within a second
    // of each other (ss prints whole seconds, read just after ours).
    let (s, t) = find(wport);
    let (kind, ms) = t.expect("ss shows a timer on the keepalive socket");
    eprintln!("keepalive timer: ours {:?}, ss {kind} {ms} ms", s.timer);
    assert_eq!(kind, "keepalive");
    let timer = s.timer.expect("a timer in the snapshot");
    assert_eq!(timer.kind, TimerKind::Keepalive);
    assert!(
        timer.expires_ms.abs_diff(ms as u32) <= 1_500,
        "ours {timer:?}, ss {ms} ms"
    );
    assert!((55_000..=60_000).contains(&timer.expires_ms), "{timer:?}");
    assert_eq!(s.keepalive, Some(true));
    // Without: no timer in either, and the option is known to be off.
    let (s, t) = find(woport);
    assert_eq!(t, None, "ss shows a timer on the socket without keepalive");
    assert_eq!((s.timer, s.keepalive), (None, Some(false)));
    drop((with, without));
}

#[test]
fn an_idle_connection_shows_how_long_since_data_came() {
    require_root();
    let ns = NetNs::new("sdi");
    let port = unique_port();
    let (_l, client, _server) = ns.run("tt-server", move || {
        let l = TcpListener::bind(addr(port)).unwrap();
        let mut client = TcpStream::connect(addr(port)).unwrap();
        let (mut server, _) = l.accept().unwrap();
        server.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        client.read_exact(&mut b).unwrap();
        (l, client, server)
    });
    std::thread::sleep(Duration::from_millis(2_100));
    let cport = client.local_addr().unwrap().port();
    let ours = snapshot(&ns);
    let theirs = ss(&ns, "i", &format!("sport = :{cport}"));
    let s = ours
        .iter()
        .find(|s| s.tuple.lport == cport)
        .expect("the client in the snapshot");
    let info = s.tcp.expect("tcp_info of the client");
    eprintln!("lastrcv: ours {} ms, ss {theirs:?}", info.last_data_recv_ms);
    assert!(info.last_data_recv_ms >= 2_000, "{info:?}");
    // ss -i prints `lastrcv:N` (ms) from the same tcp_info, read just
    // after ours: no smaller, and less than a second later.
    let lastrcv: u32 = theirs
        .iter()
        .flatten()
        .find_map(|w| w.strip_prefix("lastrcv:"))
        .expect("ss -i shows lastrcv")
        .parse()
        .unwrap();
    assert!(
        lastrcv >= info.last_data_recv_ms && lastrcv - info.last_data_recv_ms < 1_000,
        "ours {} ms, ss {lastrcv} ms",
        info.last_data_recv_ms
    );
    assert!(info.rtt_us > 0, "{info:?}");
}

#[test]
fn close_wait_sockets_show_their_unread_bytes_as_ss_does() {
    require_root();
    let ns = NetNs::new("sdc");
    let port = unique_port();
    let sizes = [100usize, 2_000, 30_000];
    // Each client sends its bytes and closes; the server never reads, so
    // its sockets sit in CLOSE_WAIT with the bytes queued.
    let (_l, _servers) = ns.run("tt-server", move || {
        let l = TcpListener::bind(addr(port)).unwrap();
        let servers: Vec<TcpStream> = sizes
            .iter()
            .map(|&n| {
                let mut c = TcpStream::connect(addr(port)).unwrap();
                let (s, _) = l.accept().unwrap();
                c.write_all(&vec![7u8; n]).unwrap();
                c.shutdown(Shutdown::Both).unwrap();
                s
            })
            .collect();
        (l, servers)
    });
    let filter = format!("sport = :{port}");
    assert!(
        wait_until(Duration::from_secs(5), || {
            ss(&ns, "", &filter)
                .iter()
                .filter(|l| l[0] == "CLOSE-WAIT")
                .count()
                == sizes.len()
        }),
        "the server sockets did not all reach CLOSE_WAIT: {:?}",
        ss(&ns, "", &filter)
    );
    let ours = snapshot(&ns);
    let theirs = ss(&ns, "", &filter);
    let mut ours_q: Vec<(u16, u32)> = ours
        .iter()
        .filter(|s| s.state == TcpState::CloseWait && s.tuple.lport == port)
        .map(|s| (s.tuple.rport, s.recv_q))
        .collect();
    let mut theirs_q: Vec<(u16, u32)> = theirs
        .iter()
        .filter(|l| l[0] == "CLOSE-WAIT")
        .map(|l| {
            let peer = l[4].rsplit_once(':').unwrap().1.parse().unwrap();
            (peer, l[1].parse().unwrap())
        })
        .collect();
    ours_q.sort_unstable();
    theirs_q.sort_unstable();
    eprintln!("CLOSE_WAIT Recv-Q by peer port: ours {ours_q:?}, ss {theirs_q:?}");
    // Per connection, exactly ss's Recv-Q.
    assert_eq!(ours_q, theirs_q);
    // Which is rcv_nxt - copied_seq: the bytes sent, plus one for the FIN
    // (it takes a sequence number; tcp_diag_get_info()).
    let mut got: Vec<u32> = ours_q.iter().map(|&(_, q)| q).collect();
    got.sort_unstable();
    let want: Vec<u32> = sizes.iter().map(|&n| n as u32 + 1).collect();
    assert_eq!(got, want);
}

#[test]
fn sysctls_changed_in_the_namespace_are_read_back() {
    require_root();
    let ns = NetNs::new("sds");
    for setting in [
        "net.ipv4.ip_local_port_range=20000 20999",
        "net.core.somaxconn=1234",
        "net.ipv4.tcp_syn_retries=3",
        "net.ipv4.tcp_keepalive_time=600",
        "net.ipv4.tcp_retries2=8",
        "net.ipv4.tcp_abort_on_overflow=1",
    ] {
        ns.sh(&["sysctl", "-q", "-w", setting]);
    }
    let s = sysctls::read(Some(&path(&ns))).unwrap();
    // Every value exactly as `sysctl -n` prints it in the namespace.
    let sysctl = |name: &str| {
        let out = ns.sh(&["sysctl", "-n", name]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (lo, hi) = s.ip_local_port_range;
    assert_eq!(format!("{lo} {hi}"), sysctl("net.ipv4.ip_local_port_range"));
    for (value, name) in [
        (s.somaxconn, "net.core.somaxconn"),
        (s.tcp_syn_retries, "net.ipv4.tcp_syn_retries"),
        (s.tcp_synack_retries, "net.ipv4.tcp_synack_retries"),
        (s.tcp_retries2, "net.ipv4.tcp_retries2"),
        (s.tcp_keepalive_time, "net.ipv4.tcp_keepalive_time"),
        (s.tcp_keepalive_intvl, "net.ipv4.tcp_keepalive_intvl"),
        (s.tcp_keepalive_probes, "net.ipv4.tcp_keepalive_probes"),
        (s.tcp_tw_reuse, "net.ipv4.tcp_tw_reuse"),
        (s.tcp_max_syn_backlog, "net.ipv4.tcp_max_syn_backlog"),
        (s.tcp_fin_timeout, "net.ipv4.tcp_fin_timeout"),
        (s.tcp_syncookies, "net.ipv4.tcp_syncookies"),
        (s.tcp_abort_on_overflow, "net.ipv4.tcp_abort_on_overflow"),
    ] {
        assert_eq!(value.to_string(), sysctl(name), "{name}");
    }
    // The knobs newer kernels have: present exactly when sysctl knows them.
    let has = |name: &str| {
        std::path::Path::new(&format!("/proc/sys/{}", name.replace('.', "/"))).exists()
    };
    assert_eq!(
        s.tcp_syn_linear_timeouts.is_some(),
        has("net.ipv4.tcp_syn_linear_timeouts")
    );
    assert_eq!(s.tcp_rto_max_ms.is_some(), has("net.ipv4.tcp_rto_max_ms"));
    // What the test set, and what it means.
    assert_eq!(
        (s.ip_local_port_range, s.ephemeral_ports()),
        ((20_000, 20_999), 1_000)
    );
    assert_eq!(
        (s.somaxconn, s.tcp_syn_retries, s.tcp_abort_on_overflow),
        (1_234, 3, 1)
    );
    assert_eq!(s.dead_peer_timeout_ms(), 102_200);
    assert_eq!(
        s.keepalive_detection_ms(),
        (600 + u64::from(s.tcp_keepalive_intvl) * u64::from(s.tcp_keepalive_probes)) * 1_000
    );
    // Our own namespace was left alone.
    let host = sysctls::read(None).unwrap();
    assert_ne!(host.netns, s.netns);
    assert_ne!(
        host.somaxconn, 1_234,
        "the host's somaxconn changed, or the namespace was not entered"
    );
}

/// `connect()` to a port whose SYNs the namespace drops takes what
/// `Sysctls::connect_timeout_ms` says, and sends the SYNs the model sends.
#[test]
fn connect_timeout_is_what_the_kernel_does() {
    require_root();
    let ns = NetNs::new("sdt");
    let port = unique_port();
    ns.nft(&format!(
        "table inet blackhole {{
           chain input {{
             type filter hook input priority 0; policy accept;
             tcp dport {port} drop
           }}
         }}"
    ));
    let linear = std::path::Path::new("/proc/sys/net/ipv4/tcp_syn_linear_timeouts").exists();
    // (1, 3): the time budget of one retry (3 s) ends it before the count
    // of four; (2, 2): the count of four does, at 9 s. Without the linear
    // knob (before 6.5): 3 s and 7 s.
    for (retries, lin) in [(1, 3), (2, 2)] {
        ns.sh(&[
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv4.tcp_syn_retries={retries}"),
        ]);
        if linear {
            ns.sh(&[
                "sysctl",
                "-q",
                "-w",
                &format!("net.ipv4.tcp_syn_linear_timeouts={lin}"),
            ]);
        }
        let s = sysctls::read(Some(&path(&ns))).unwrap();
        let model = tracer::sysctls::model::syn_timeline(
            s.tcp_syn_retries,
            s.tcp_syn_linear_timeouts.unwrap_or(0),
            s.rto_max_ms(),
        );
        assert_eq!(model.gives_up_ms, s.connect_timeout_ms());
        let before = ns.counter("TcpExt", "TCPSynRetrans");
        let took = ns.run("tt-client", move || {
            let start = Instant::now();
            let e = TcpStream::connect(addr(port)).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
            start.elapsed()
        });
        let retrans = ns.counter("TcpExt", "TCPSynRetrans") - before;
        eprintln!(
            "syn_retries {retries}, linear {:?}: connect took {took:?}, model {} ms; {retrans} SYN retransmits, model {}",
            s.tcp_syn_linear_timeouts,
            model.gives_up_ms,
            model.sends_ms.len() - 1
        );
        // The kernel's timers fire on jiffies, a little late, never early.
        let ms = took.as_millis() as u64;
        assert!(
            ms + 20 >= model.gives_up_ms && ms < model.gives_up_ms + 1_000,
            "syn_retries {retries}, linear {:?}: connect took {ms} ms, the model says {} ms",
            s.tcp_syn_linear_timeouts,
            model.gives_up_ms
        );
        // Every SYN after the first is one TCPSynRetrans, exactly.
        assert_eq!(retrans as usize, model.sends_ms.len() - 1);
    }
}
