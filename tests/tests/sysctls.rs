//! The other data source of `tcptrace doctor`: `tracer::sysctls::read`
//! against `sysctl` in a private network namespace, and its connect
//! timeout against a real `connect()` to a port whose SYNs the namespace
//! drops (and the namespace's own count of SYN retransmits). The library
//! is called directly (no tcptrace binary).

use std::{net::TcpStream, time::Instant};

use tests::{NetNs, loopback, require_root, unique_port};
use tracer::sysctls;

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
    let s = sysctls::read(Some(&ns.path())).unwrap();
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
fn sysctls_connect_timeout_is_what_the_kernel_does() {
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
        let s = sysctls::read(Some(&ns.path())).unwrap();
        let model = tracer::sysctls::model::syn_timeline(
            s.tcp_syn_retries,
            s.tcp_syn_linear_timeouts.unwrap_or(0),
            s.rto_max_ms(),
        );
        assert_eq!(model.gives_up_ms, s.connect_timeout_ms());
        let before = ns.counter("TcpExt", "TCPSynRetrans");
        let took = ns.run("tt-client", move || {
            let start = Instant::now();
            let e = TcpStream::connect(loopback(port)).unwrap_err();
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
