//! The doctor's `settings` playbook against a fault made in a private
//! namespace: connects to a port whose SYNs are dropped, given up by the
//! client after 3.5 s, while the namespace's `tcp_syn_retries` would make
//! each hang for minutes. The finding must say the setting as `sysctl`
//! reads it, the connect timeout it means, and the unanswered connects
//! (exactly those made), with the SYN retransmits equal to the
//! namespace's TcpExtTCPSynRetrans growth. A connect whose retransmits
//! fired where no BPF program runs (see `Ftrace`) is judged by what a BPF
//! program could see of it.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use tests::{NetNs, doctor::Session, ftrace::Ftrace, require_root, unique_port};

fn grew(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, name: &str) -> u64 {
    after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0)
}

#[test]
fn doctor_settings_says_the_connect_timeout_of_unanswered_syns() {
    require_root();
    let ns = NetNs::new("dr-set");
    ns.sh(&["sysctl", "-qw", "net.ipv4.tcp_syn_retries=6"]);
    let port = unique_port();
    ns.drop_syns(port);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let doctor = Session::start(&ns, 7, &[]);
    let peer = Ftrace::start("tcp/tcp_retransmit_skb", &format!("dport == {port}"));
    let before = ns.nstat();
    const N: u64 = 3;
    let clients: Vec<_> = (0..N)
        .map(|_| {
            ns.spawn("tt-set-cli", move || {
                let e = TcpStream::connect_timeout(&addr, Duration::from_millis(3500)).unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = ns.nstat();
    let r = doctor.report();
    let f = r.one("settings");
    eprintln!("{f:#}");
    let e = &f["evidence"];
    let sysctl =
        String::from_utf8(ns.sh(&["sysctl", "-n", "net.ipv4.tcp_syn_retries"]).stdout).unwrap();
    assert_eq!(
        e["tcp_syn_retries"],
        sysctl.trim().parse::<u64>().unwrap(),
        "== sysctl: {f:#}"
    );
    let model = tracer::sysctls::read(Some(&ns.path()))
        .unwrap()
        .connect_timeout_ms();
    assert_eq!(e["connect_timeout_ms"], model, "{f:#}");
    assert!(
        model >= 60_000,
        "6 retries hang a minute or more: {model} ms"
    );
    // Per client port, the SYN retransmits a BPF program could see: a
    // connect counts as unanswered after two.
    let mut per_sport = BTreeMap::<String, u64>::new();
    for l in peer.seen() {
        let sport = l.split_whitespace().find(|w| w.starts_with("sport="));
        *per_sport
            .entry(sport.unwrap_or_default().into())
            .or_default() += 1;
    }
    let visible = per_sport.values().filter(|&&n| n >= 2).count() as u64;
    assert_eq!(peer.count(), grew(&before, &after, "TcpExtTCPSynRetrans"));
    if visible < N {
        eprintln!(
            "{} connects' retransmits partly fired where no BPF program runs",
            N - visible
        );
    }
    assert_eq!(
        e["unanswered_connects"], visible,
        "each visible connect: {f:#}"
    );
    let syn = grew(&before, &after, "TcpExtTCPSynRetrans");
    assert!(
        syn >= 2 * N,
        "at least two SYN retransmits per connect: {syn}"
    );
    assert_eq!(e["syn_retrans"], syn, "== nstat TcpExtTCPSynRetrans: {f:#}");
    assert_eq!(f["severity"], "warning");
    assert!(r.code >= 3, "a warning at least: {}", r.code);
}
