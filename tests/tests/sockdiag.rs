//! The data sources of `tcptrace doctor` against the kernel's own tools,
//! in private network namespaces: `tracer::sockdiag::snapshot` against
//! `ss` run in the namespace (accept queue and backlog, keepalive,
//! retransmit and zero-window probe timers, idle time, CLOSE_WAIT
//! receive queues). The sysctls are in `sysctls.rs`.
//!
//! The library is called directly (no tcptrace binary): servers and
//! clients are threads of this test process, which is also the owner the
//! snapshot must name.

use std::{
    io::{Read as _, Write as _},
    net::{Shutdown, TcpListener, TcpStream},
    time::Duration,
};

use socket2::{Domain, SockAddr, Socket, TcpKeepalive, Type};
use tests::{NetNs, loopback, our_pid, require_root, ss, unique_port, wait_until};
use tracer::{
    event::TcpState,
    sockdiag::{self, SockInfo, TimerKind},
};

fn snapshot(ns: &NetNs) -> Vec<SockInfo> {
    sockdiag::snapshot(Some(&ns.path())).expect("sockdiag snapshot of the test namespace")
}

#[test]
fn sockdiag_accept_queue_and_backlog_are_what_ss_shows() {
    require_root();
    let ns = NetNs::new("sdq");
    let port = unique_port();
    // listen(3), then five clients the server never accepts: the kernel
    // queues backlog + 1 = 4 of them (`sk_acceptq_is_full()` is `>`), and
    // drops the fifth's SYNs while the queue is full (it stays SYN_SENT).
    let (_server, _clients) = ns.run("tt-server", move || {
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        l.bind(&SockAddr::from(loopback(port))).unwrap();
        l.listen(3).unwrap();
        let clients: Vec<Socket> = (0..5)
            .map(|_| {
                let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                c.set_nonblocking(true).unwrap();
                let _ = c.connect(&SockAddr::from(loopback(port))); // EINPROGRESS
                c
            })
            .collect();
        (l, clients)
    });
    let listen = format!("sport = :{port}");
    assert!(
        wait_until(Duration::from_secs(5), || {
            ss::lines(&ns, "l", &listen)
                .first()
                .is_some_and(|l| l[1] == "4")
        }),
        "ss never showed 4 connections in the accept queue: {:?}",
        ss::lines(&ns, "l", &listen)
    );
    let ours = snapshot(&ns);
    let theirs = ss::lines(&ns, "l", &listen);
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
        ss::lines(&ns, "", &format!("( sport = :{port} or dport = :{port} )"))
            .iter()
            .filter(|l| l[0] == state)
            .count()
    };
    assert_eq!(count(TcpState::Established), ss_count("ESTAB"));
    assert_eq!(count(TcpState::SynSent), ss_count("SYN-SENT"));
    assert_eq!(count(TcpState::SynSent), 1);
}

#[test]
fn sockdiag_keepalive_timer_only_where_so_keepalive_is_set() {
    require_root();
    let ns = NetNs::new("sdk");
    let port = unique_port();
    let (_l, with, without, _accepted) = ns.run("tt-server", move || {
        let l = TcpListener::bind(loopback(port)).unwrap();
        let with = TcpStream::connect(loopback(port)).unwrap();
        // First probe after 60 s of silence, so ss prints whole seconds.
        let ka = TcpKeepalive::new().with_time(Duration::from_secs(60));
        socket2::SockRef::from(&with)
            .set_tcp_keepalive(&ka)
            .unwrap();
        let without = TcpStream::connect(loopback(port)).unwrap();
        let accepted = [l.accept().unwrap().0, l.accept().unwrap().0];
        (l, with, without, accepted)
    });
    let lport = |s: &TcpStream| s.local_addr().unwrap().port();
    let (wport, woport) = (lport(&with), lport(&without));
    let before = std::time::Instant::now();
    let ours = snapshot(&ns);
    let theirs = ss::lines(&ns, "o", &format!("dport = :{port}"));
    let between = before.elapsed().as_millis() as u32;
    let find = |p: u16| {
        let s = ours
            .iter()
            .find(|s| s.tuple.lport == p && s.tuple.rport == port)
            .expect("the client socket in the snapshot");
        let line = theirs
            .iter()
            .find(|l| l[3] == format!("127.0.0.1:{p}"))
            .expect("the client socket in ss");
        (*s, ss::timer(line).map(|(k, ms, _)| (k, ms)))
    };
    // With SO_KEEPALIVE: a keepalive timer in both, due within a second
    // of each other (ss prints whole seconds) plus the time between the
    // two reads (an emulated guest took over a second to start ss).
    let (s, t) = find(wport);
    let (kind, ms) = t.expect("ss shows a timer on the keepalive socket");
    eprintln!("keepalive timer: ours {:?}, ss {kind} {ms} ms", s.timer);
    assert_eq!(kind, "keepalive");
    let timer = s.timer.expect("a timer in the snapshot");
    assert_eq!(timer.kind, TimerKind::Keepalive);
    assert!(
        timer.expires_ms.abs_diff(ms as u32) <= 1_000 + between + 10,
        "ours {timer:?}, ss {ms} ms, {between} ms apart"
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
fn sockdiag_retransmit_and_zero_window_timers_are_what_ss_shows() {
    require_root();
    let ns = NetNs::new("sdr");
    let (full, lossy) = (unique_port(), unique_port());
    // A server that never reads: its client writes until the window is
    // zero, and then probes it (`persist`). A server whose port drops
    // every segment once the connection is up: the client's data is
    // retransmitted (`on`, with a count).
    let (_keep, stuffed, resent) = ns.run("tt-server", move || {
        let l1 = TcpListener::bind(loopback(full)).unwrap();
        let l2 = TcpListener::bind(loopback(lossy)).unwrap();
        let mut stuffed = TcpStream::connect(loopback(full)).unwrap();
        let resent = TcpStream::connect(loopback(lossy)).unwrap();
        let servers = [l1.accept().unwrap().0, l2.accept().unwrap().0];
        stuffed.set_nonblocking(true).unwrap();
        let chunk = vec![0u8; 65_536];
        for _ in 0..10_000 {
            if stuffed.write(&chunk).is_err() {
                break;
            }
        }
        ((l1, l2, servers), stuffed, resent)
    });
    ns.nft(&format!(
        "table inet lossy {{
           chain input {{
             type filter hook input priority 0; policy accept;
             tcp dport {lossy} drop
           }}
         }}"
    ));
    let mut w = &resent;
    w.write_all(b"lost").unwrap();
    let line_of = |port: u16| {
        ss::lines(&ns, "o", &format!("dport = :{port}"))
            .into_iter()
            .find(|l| l[0] == "ESTAB")
    };
    let kind_of = |port: u16| {
        line_of(port)
            .and_then(|l| ss::timer(&l))
            .map(|(k, _, n)| (k, n))
    };
    assert!(
        wait_until(Duration::from_secs(10), || {
            kind_of(full).is_some_and(|(k, _)| k == "persist")
                && kind_of(lossy).is_some_and(|(k, n)| k == "on" && n >= 1)
        }),
        "ss never showed both timers: {:?} {:?}",
        line_of(full),
        line_of(lossy)
    );
    let before = kind_of(lossy).unwrap().1;
    let ours = snapshot(&ns);
    let after = kind_of(lossy).unwrap().1;
    let client = |port: u16, me: &TcpStream| {
        let lport = me.local_addr().unwrap().port();
        *ours
            .iter()
            .find(|s| s.tuple.lport == lport && s.tuple.rport == port)
            .expect("the client in the snapshot")
    };
    let s = client(full, &stuffed);
    eprintln!("zero window: ours {:?}, ss {:?}", s.timer, kind_of(full));
    assert_eq!(s.timer.map(|t| t.kind), Some(TimerKind::Probe));
    assert_eq!(s.keepalive, None, "another timer hides the keepalive one");
    let s = client(lossy, &resent);
    let t = s.timer.expect("a timer on the retransmitting client");
    eprintln!("retransmitting: ours {t:?}, ss count {before}..{after}");
    assert_eq!(t.kind, TimerKind::Retransmit);
    // The count of retransmissions between ss's readings before and after.
    assert!(
        (before..=after).contains(&t.count),
        "ours {t:?}, ss {before}..{after}"
    );
    let info = s.tcp.expect("tcp_info");
    assert!(info.retransmits >= 1 && info.total_retrans >= 1, "{info:?}");
}

#[test]
fn sockdiag_an_idle_connection_shows_how_long_since_data_came() {
    require_root();
    let ns = NetNs::new("sdi");
    let port = unique_port();
    let (_l, client, _server) = ns.run("tt-server", move || {
        let l = TcpListener::bind(loopback(port)).unwrap();
        let mut client = TcpStream::connect(loopback(port)).unwrap();
        let (mut server, _) = l.accept().unwrap();
        server.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        client.read_exact(&mut b).unwrap();
        (l, client, server)
    });
    std::thread::sleep(Duration::from_millis(2_100));
    let cport = client.local_addr().unwrap().port();
    let before = std::time::Instant::now();
    let ours = snapshot(&ns);
    let theirs = ss::lines(&ns, "i", &format!("sport = :{cport}"));
    let between = before.elapsed().as_millis() as u32;
    let s = ours
        .iter()
        .find(|s| s.tuple.lport == cport)
        .expect("the client in the snapshot");
    let info = s.tcp.expect("tcp_info of the client");
    eprintln!("lastrcv: ours {} ms, ss {theirs:?}", info.last_data_recv_ms);
    assert!(info.last_data_recv_ms >= 2_000, "{info:?}");
    // ss -i prints `lastrcv:N` (ms) from the same tcp_info, read just
    // after ours: no smaller, and later by at most the time between the
    // two reads (plus a jiffy of rounding on each side; an emulated
    // guest took over a second to start ss).
    let lastrcv: u32 = theirs
        .iter()
        .flatten()
        .find_map(|w| w.strip_prefix("lastrcv:"))
        .expect("ss -i shows lastrcv")
        .parse()
        .unwrap();
    assert!(
        lastrcv >= info.last_data_recv_ms && lastrcv - info.last_data_recv_ms <= between + 10,
        "ours {} ms, ss {lastrcv} ms, {between} ms apart",
        info.last_data_recv_ms
    );
    assert!(info.rtt_us > 0, "{info:?}");
}

#[test]
fn sockdiag_close_wait_sockets_show_their_unread_bytes_as_ss_does() {
    require_root();
    let ns = NetNs::new("sdc");
    let port = unique_port();
    let sizes = [100usize, 2_000, 30_000];
    // Each client sends its bytes and closes; the server never reads, so
    // its sockets sit in CLOSE_WAIT with the bytes queued.
    let (_l, _servers) = ns.run("tt-server", move || {
        let l = TcpListener::bind(loopback(port)).unwrap();
        let servers: Vec<TcpStream> = sizes
            .iter()
            .map(|&n| {
                let mut c = TcpStream::connect(loopback(port)).unwrap();
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
            ss::lines(&ns, "", &filter)
                .iter()
                .filter(|l| l[0] == "CLOSE-WAIT")
                .count()
                == sizes.len()
        }),
        "the server sockets did not all reach CLOSE_WAIT: {:?}",
        ss::lines(&ns, "", &filter)
    );
    let ours = snapshot(&ns);
    let theirs = ss::lines(&ns, "", &filter);
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
