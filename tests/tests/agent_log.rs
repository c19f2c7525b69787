//! The agent's JSON log through a real log pipeline: an rsyslog tails the
//! file (imfile) through size rotations in the middle of a burst and
//! forwards it over TCP on loopback (omfwd) to a second rsyslog (imtcp)
//! that writes a file. Judge: the lines the agent wrote (the live file
//! and every rotated one) and the lines that arrived are the same, each
//! exactly once, every one a whole JSON record.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    time::Duration,
};

use tests::{
    NetNs, Tracer,
    daemons::{Rsyslog, TempDir},
    require_root, unique_port, wait_until,
};

/// Lines of `path` (none if it does not exist), counted.
fn lines(path: &Path, into: &mut BTreeMap<String, u32>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for l in text.lines() {
        *into.entry(l.trim().to_string()).or_default() += 1;
    }
}

#[test]
fn agent_rsyslog_forwards_every_record_once_through_rotation() {
    require_root();
    let dir = TempDir::new("rsyslog");
    let log = dir.path().join("events.jsonl");
    let received = dir.path().join("received.jsonl");
    // The agent appends to it; rsyslog would warn about a file that is
    // not there yet.
    std::fs::write(&log, "").unwrap();
    let fwd_port = unique_port();
    let _receiver = Rsyslog::start(
        &format!(
            "module(load=\"imtcp\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{fwd_port}\")\n\
             template(name=\"msgonly\" type=\"string\" string=\"%msg%\\n\")\n\
             action(type=\"omfile\" file=\"{}\" template=\"msgonly\")\n",
            received.display()
        ),
        dir.path(),
        "receiver",
    );
    let _sender = Rsyslog::start(
        &format!(
            "module(load=\"imfile\" mode=\"inotify\")\n\
             input(type=\"imfile\" file=\"{}\" tag=\"tcptrace:\" freshStartTail=\"off\" reopenOnTruncate=\"on\")\n\
             action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{fwd_port}\" protocol=\"tcp\" \
                    queue.type=\"LinkedList\" action.resumeRetryCount=\"-1\")\n",
            log.display()
        ),
        dir.path(),
        "sender",
    );
    let ns = NetNs::new("rsyslog");
    ns.many_connections();
    let netns = format!("/run/netns/{}", ns.name);
    let listen = format!("127.0.0.1:{}", unique_port());
    let t = Tracer::start(&[
        "agent",
        "--listen",
        &listen,
        "--netns",
        &netns,
        "--output",
        log.to_str().unwrap(),
        "--rotate-size",
        "2M",
        "--rotate-keep",
        "5",
    ]);
    // A burst of about 13 000 records (3.5 MB): one rotation in the
    // middle, while rsyslog reads.
    let port = unique_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let server = ns.spawn("tt-server", move || {
        let l = TcpListener::bind(addr).unwrap();
        for _ in 0..1200 {
            drop(l.accept().unwrap());
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    ns.run("tt-client", move || {
        for _ in 0..1200 {
            drop(TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap());
        }
    });
    server.join().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let f = t.stop_raw();
    assert!(f.stdout.is_empty(), "the log went to the file, not stdout");
    let mut written = BTreeMap::new();
    lines(&log, &mut written);
    let mut rotated = 0;
    for n in 1..=5 {
        let p = dir.path().join(format!("events.jsonl.{n}"));
        if p.exists() {
            rotated += 1;
            lines(&p, &mut written);
        }
    }
    let total: u32 = written.values().sum();
    assert!(rotated >= 1, "no rotation in {total} records");
    // Two records can be the same line: two RSTs a listener sends in one
    // microsecond carry the same tuple and time. So every line must arrive
    // exactly as many times as it was written.
    let mut arrived = BTreeMap::new();
    let complete = wait_until(Duration::from_secs(30), || {
        arrived.clear();
        lines(&received, &mut arrived);
        arrived.values().sum::<u32>() >= total
    });
    for l in arrived.keys() {
        let v: serde_json::Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("a record cut or mangled on the way ({e}): {l:?}"));
        assert!(v["type"].is_string(), "{l}");
    }
    let missing: Vec<&String> = written
        .keys()
        .filter(|l| arrived.get(*l) < written.get(*l))
        .collect();
    let twice: Vec<(&String, &u32)> = arrived
        .iter()
        .filter(|(l, n)| written.get(*l).is_some_and(|w| **n > *w))
        .collect();
    let strays: Vec<&String> = arrived
        .keys()
        .filter(|l| !written.contains_key(*l))
        .collect();
    assert!(
        complete && missing.is_empty() && twice.is_empty() && strays.is_empty(),
        "{total} written in {} files, {} arrived: {} missing (first {:?}), {} more than once, {} not written",
        rotated + 1,
        arrived.values().sum::<u32>(),
        missing.len(),
        missing.first(),
        twice.len(),
        strays.len()
    );
    eprintln!(
        "rsyslog: {total} records in {} files, each arrived once",
        rotated + 1
    );
}
