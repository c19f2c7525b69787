//! `tcptrace stat` and the rates of `top` and `retrans` against the
//! kernel's counters of a private network namespace, read by the test
//! itself (`/proc/net/snmp` and `/proc/net/netstat` through `cat`, and
//! `nstat`): a workload of known size moves them, nothing else in the
//! namespace does, so tcptrace's figures must equal the test's deltas.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use serde_json::Value;
use tests::{
    NetNs, Tracer, load::bulk_transfers, require_root, tracer::of_type, unique_port, wait_until,
};

/// tcptrace's JSON key of a kernel counter, and the name the kernel
/// (`Group:Name`) and nstat (`GroupName`) give it.
const COUNTERS: [(&str, &str, &str); 16] = [
    ("active_opens", "Tcp:", "ActiveOpens"),
    ("passive_opens", "Tcp:", "PassiveOpens"),
    ("attempt_fails", "Tcp:", "AttemptFails"),
    ("estab_resets", "Tcp:", "EstabResets"),
    ("in_segs", "Tcp:", "InSegs"),
    ("out_segs", "Tcp:", "OutSegs"),
    ("retrans_segs", "Tcp:", "RetransSegs"),
    ("in_errs", "Tcp:", "InErrs"),
    ("out_rsts", "Tcp:", "OutRsts"),
    ("tcp_timeouts", "TcpExt:", "TCPTimeouts"),
    ("tcp_fast_retrans", "TcpExt:", "TCPFastRetrans"),
    ("tcp_slow_start_retrans", "TcpExt:", "TCPSlowStartRetrans"),
    ("tcp_loss_probes", "TcpExt:", "TCPLossProbes"),
    ("tcp_syn_retrans", "TcpExt:", "TCPSynRetrans"),
    ("listen_overflows", "TcpExt:", "ListenOverflows"),
    ("listen_drops", "TcpExt:", "ListenDrops"),
];

/// What a workload did.
struct Work {
    conns: u64,
    refused: u64,
}

/// In `ns`: `conns` connections to a listener on `port`, each sending
/// `bytes` that the server reads to the end, then `refused` connects to a
/// closed port; waits until every socket on `port` is gone or in
/// TIME_WAIT (which sends nothing).
fn workload(ns: &NetNs, port: u16, conns: u64, bytes: usize, refused: u64) -> Work {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let closed: SocketAddr = format!("127.0.0.1:{}", port + 1).parse().unwrap();
    bulk_transfers(ns, addr, conns as usize, bytes);
    ns.run("tt-client", move || {
        for _ in 0..refused {
            let e = TcpStream::connect_timeout(&closed, Duration::from_secs(5)).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        }
    });
    assert!(
        wait_until(Duration::from_secs(60), || {
            let out = ns.sh(&["ss", "-Htan"]);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .all(|l| l.starts_with("TIME-WAIT") || l.starts_with("LISTEN"))
        }),
        "connections in the namespace did not finish"
    );
    Work { conns, refused }
}

/// `after - before` of every counter tcptrace reports, by its JSON key.
fn deltas(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<&'static str, u64> {
    COUNTERS
        .iter()
        .map(|(key, group, name)| {
            let k = format!("{group}{name}");
            let (a, b) = (before[&k], after[&k]);
            (*key, b - a)
        })
        .collect()
}

/// The sum of `key` over `records` (each an interval of its own).
fn sum(records: &[&Value], key: &str) -> u64 {
    records
        .iter()
        .map(|r| r[key].as_u64().unwrap_or_else(|| panic!("{key} in {r}")))
        .sum()
}

/// `stat --json` over a workload of known size (with 3 % loss):
/// every counter's growth,
/// summed over the intervals, equals the test's own delta of the
/// namespace's /proc/net/snmp and /proc/net/netstat, exactly (the
/// namespace is private: only the workload moves them, and tcptrace's
/// first reading is before the test's first, its last after the test's
/// last, with nothing moving in between). The census at the end equals ss.
#[test]
fn stat_json_equals_the_namespace_counters() {
    require_root();
    let ns = NetNs::new("stat");
    ns.small_segments();
    let port = unique_port();
    // Some loss, so that the retransmit counters move too.
    ns.random_drop(port, 3);
    let path = format!("/run/netns/{}", ns.name);
    let t = Tracer::start(&["stat", "--json", "--netns", &path, "0.2"]);
    let before = ns.counters();
    let w = workload(&ns, port, 20, 100_000, 5);
    let after = ns.counters();
    let ss = ns.ss_census(port);
    // One whole interval more, then Ctrl-C: the interval so far comes too.
    let n = t.records().len();
    t.wait_for("one more interval", Duration::from_secs(5), |r| {
        r.len() > n + 1
    });
    let recs = t.stop();
    let stats = of_type(&recs, "stat");
    assert!(stats.len() >= 3, "{recs:?}");
    let want = deltas(&before, &after);
    for (key, d) in &want {
        assert_eq!(
            sum(&stats, key),
            *d,
            "{key}: tcptrace summed, the namespace's delta"
        );
    }
    // The workload's known size.
    assert_eq!(want["active_opens"], w.conns + w.refused);
    assert_eq!(want["passive_opens"], w.conns);
    assert_eq!(want["attempt_fails"], w.refused);
    assert!(want["out_rsts"] >= w.refused, "{want:?}");
    assert!(want["out_segs"] >= w.conns * 100_000 / 1500, "{want:?}");
    let inode = std::fs::metadata(&path)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    let last = stats.last().unwrap();
    for r in &stats {
        assert_eq!(r["netns"], inode, "{r}");
        assert!(r["interval_s"].as_f64().unwrap() > 0.0, "{r}");
        let (rs, os) = (
            r["retrans_segs"].as_u64().unwrap(),
            r["out_segs"].as_u64().unwrap(),
        );
        match r["retrans_rate_pct"].as_f64() {
            Some(p) => assert!((p - rs as f64 * 100.0 / os as f64).abs() < 1e-3, "{r}"),
            None => assert_eq!(os, 0, "no rate only when nothing was sent: {r}"),
        }
    }
    let tw = ss.get("TIME_WAIT").copied().unwrap_or(0);
    assert_eq!(tw, w.conns, "{ss:?}");
    assert_eq!(last["census"]["TIME_WAIT"], tw, "{last}");
    assert_eq!(last["sockstat"]["tw"], tw, "{last}");
    assert_eq!(last["curr_estab"], 0, "{last}");
    eprintln!(
        "stat over {} intervals: {}",
        stats.len(),
        want.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// `stat --netns` reads that namespace: a workload in B moves B's
/// counters as the test reads them and none of A's. B is named by its
/// inode, A by its path.
#[test]
fn stat_of_another_namespace_reads_that_namespace() {
    require_root();
    let (a, b) = (NetNs::new("stata"), NetNs::new("statb"));
    let inode_b = std::fs::metadata(format!("/run/netns/{}", b.name))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap()
        .to_string();
    let ta = Tracer::start(&[
        "stat",
        "--json",
        "--netns",
        &format!("/run/netns/{}", a.name),
        "0.5",
    ]);
    let tb = Tracer::start(&["stat", "--json", "--netns", &inode_b, "0.5"]);
    let (a0, b0) = (a.counters(), b.counters());
    let w = workload(&b, unique_port(), 10, 10_000, 2);
    let (a1, b1) = (a.counters(), b.counters());
    let n = tb.records().len();
    tb.wait_for("one more interval", Duration::from_secs(5), |r| {
        r.len() > n + 1
    });
    let (ra, rb) = (ta.stop(), tb.stop());
    let (sa, sb) = (of_type(&ra, "stat"), of_type(&rb, "stat"));
    for (key, d) in deltas(&b0, &b1) {
        assert_eq!(sum(&sb, key), d, "{key} in B");
    }
    for (key, d) in deltas(&a0, &a1) {
        assert_eq!(d, 0, "{key}: nothing ran in A");
        assert_eq!(sum(&sa, key), 0, "{key} in A");
    }
    assert_eq!(sum(&sb, "active_opens"), w.conns + w.refused);
    assert!(
        sb.iter()
            .all(|r| r["netns"].as_u64().map(|n| n.to_string()) == Some(inode_b.clone())),
        "{sb:?}"
    );
}

/// `stat` text: a header of two lines, two lines per interval, none wider
/// than 80 columns; `COUNT` ends the run by itself.
#[test]
fn stat_text_counts_intervals() {
    require_root();
    let ns = NetNs::new("stattext");
    let path = format!("/run/netns/{}", ns.name);
    let (st, out, err) = tests::tracer::run(&["stat", "--netns", &path, "0.2", "3"]);
    assert!(st.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2 + 3 * 2, "{out}");
    assert!(
        lines[0].starts_with("TIME ") && lines[0].contains("retr%"),
        "{out}"
    );
    assert!(lines.iter().all(|l| l.len() <= 80), "{out}");
    // Nothing ran: no rate, not NaN.
    assert!(lines[2].split_whitespace().nth(8) == Some("-"), "{out}");
}

/// Under random loss, `retrans` ends with a summary whose figures are the
/// namespace's own (nstat's deltas over the run: equal), beside the
/// records it showed (equal to their count and the sum of their segs);
/// `top --json` carries the same counters per refresh, which add up to
/// nstat's deltas too.
#[test]
fn retrans_summary_and_top_rates_agree_with_nstat() {
    require_root();
    let ns = NetNs::new("rates");
    ns.small_segments();
    let port = unique_port();
    ns.random_drop(port, 8);
    let path = format!("/run/netns/{}", ns.name);
    let rt = Tracer::start(&["retrans", "--json", "--netns", &path]);
    let top = Tracer::start(&["top", "--json", "--netns", &path, "--interval", "1.5"]);
    let before = ns.nstat();
    workload(&ns, port, 8, 150_000, 0);
    let after = ns.nstat();
    let d = |name: &str| after[name] - before[name];
    let (retrans, out) = (d("TcpRetransSegs"), d("TcpOutSegs"));
    assert!(retrans > 0, "8 % loss retransmitted nothing");
    let recs = rt.stop();
    // Two refreshes with rates (a counter reading before each), however
    // fast the workload was, then the last one at the end.
    top.wait_for("two refreshes with rates", Duration::from_secs(10), |r| {
        r.iter()
            .filter(|t| t["type"] == "top" && t.get("rates").is_some())
            .count()
            >= 2
    });
    let tops = top.stop();
    let summary = of_type(&recs, "summary");
    assert_eq!(summary.len(), 1, "{recs:?}");
    let s = summary[0];
    assert_eq!(s["view"], "retrans");
    assert_eq!(s["retrans_segs"], retrans, "{s}");
    assert_eq!(s["out_segs"], out, "{s}");
    let pct = retrans as f64 * 100.0 / out as f64;
    assert!(
        (s["retrans_rate_pct"].as_f64().unwrap() - pct).abs() < 1e-3,
        "{s}, {pct}"
    );
    let per_s = s["retrans_segs_per_s"].as_f64().unwrap();
    let secs = s["interval_s"].as_f64().unwrap();
    assert!(
        (per_s * secs - retrans as f64).abs() < 0.01 * retrans as f64 + 0.01,
        "{s}"
    );
    let shown = of_type(&recs, "retrans");
    assert_eq!(s["records"], shown.len() as u64, "{s}");
    assert_eq!(s["segs"], sum(&shown, "segs"), "{s}");
    // Top: every refresh with a reading since the last has rates; the
    // readings follow each other, so they add up to the run's.
    let with_rates: Vec<&Value> = of_type(&tops, "top")
        .into_iter()
        .filter(|t| t.get("rates").is_some())
        .collect();
    assert!(with_rates.len() >= 2, "{tops:?}");
    let rates: Vec<&Value> = with_rates.iter().map(|t| &t["rates"]).collect();
    assert_eq!(sum(&rates, "retrans_segs"), retrans);
    assert_eq!(sum(&rates, "out_segs"), out);
    assert_eq!(sum(&rates, "active_opens"), d("TcpActiveOpens"));
    eprintln!(
        "retrans summary: {retrans} retransmitted of {out} sent ({pct:.2} %), {} records with {} segments",
        s["records"], s["segs"]
    );
}
