//! Faults and hostile input (issue 9): process names chosen to attack the
//! operator's terminal, outputs that cannot be written, recording files
//! that must not be overwritten, and a reader that stalls during a
//! connect storm, where every record must be either printed or counted
//! as lost, and the count must reach the output itself.

use std::{
    ffi::CString,
    fs::File,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use serde_json::Value;
use tests::{
    NetNs, TempFile, Tracer, bpf,
    ftrace::{Ftrace, field},
    our_pid, require_root,
    tracer::{self, Finished, binary, json_lines, of_type},
    unique_port,
};

// ---------------------------------------------------------------------
// Hostile process names
// ---------------------------------------------------------------------

/// Names a local user can give a process with prctl(PR_SET_NAME), and how
/// text output must show them: a colour escape and a forged line break;
/// a carriage return and a right-to-left override.
const NAMES: [(&str, &str); 2] = [
    ("\x1b[31mev\nil", r"\e[31mev\nil"),
    ("x\rfake\u{202e}", r"x\rfake\u{202e}"),
];

/// Sets the calling thread's name (its comm) as any process may.
fn set_comm(name: &str) {
    let c = CString::new(name).unwrap();
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    let r = unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
    assert_eq!(r, 0, "prctl: {}", std::io::Error::last_os_error());
    let comm = std::fs::read("/proc/thread-self/comm").unwrap();
    assert_eq!(
        comm,
        format!("{name}\n").as_bytes(),
        "the kernel kept another name"
    );
}

/// What no text output may contain, whoever named the process: ESC, CR,
/// and U+202E (a right-to-left override) raw.
fn assert_inert(what: &str, out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    assert!(!out.contains(&0x1b), "{what}: raw ESC in\n{text}");
    assert!(!out.contains(&b'\r'), "{what}: raw CR in\n{text}");
    assert!(!text.contains('\u{202e}'), "{what}: raw U+202E in\n{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("il")),
        "{what}: a process name forged a line:\n{text}"
    );
}

/// Lines of text output showing the process name shown as `escaped`.
fn lines_naming(out: &[u8], escaped: &str) -> usize {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| l.contains(escaped))
        .count()
}

/// A thread that names itself `\e[31mev\nil` (and another `x\rfake` plus
/// a bidi override) connects to a listener: `states` and `connect` in
/// text, live and replayed from a recording, show the names with visible
/// escapes and never the raw bytes; JSON carries them exactly. (A state
/// change that fired where no BPF program runs, see `Ftrace`, is missing
/// from every output alike.)
#[test]
fn hostile_process_names_are_escaped_in_text_and_exact_in_json() {
    require_root();
    let ns = NetNs::new("names");
    let port = unique_port();
    let p = port.to_string();
    let rec = TempFile::new("names");
    let states_text = Tracer::start(&["states", "--port", &p]);
    let connect_text = Tracer::start(&["connect", "--port", &p]);
    let states_json = Tracer::start(&["states", "--json", "--port", &p]);
    let recorder = Tracer::start(&["record", "-o", rec.path(), "--port", &p]);
    // The clients' sockets' state changes.
    let peer = Ftrace::start("sock/inet_sock_set_state", &format!("dport == {port}"));

    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = ns.spawn("tt-server", move || {
        let l = TcpListener::bind(addr).unwrap();
        ready_tx.send(()).unwrap();
        for _ in 0..NAMES.len() {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).unwrap();
        }
    });
    ready_rx.recv().unwrap();
    for (name, _) in NAMES {
        ns.run("tt-hostile", move || {
            set_comm(name);
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"x").unwrap();
        });
    }
    server.join().unwrap();
    // Each client socket's five transitions belong to the named thread;
    // wait until its last is out (or fired where no BPF program runs).
    let last = |l: &String| {
        field(l, "oldstate") == Some("TCP_FIN_WAIT2") && field(l, "newstate") == Some("TCP_CLOSE")
    };
    states_json.wait_for(
        "both clients' FIN_WAIT2 -> CLOSE",
        Duration::from_secs(10),
        |r| {
            let done = NAMES
                .iter()
                .filter(|(name, _)| {
                    r.iter().any(|r| {
                        r["comm"] == *name && r["old"] == "FIN_WAIT2" && r["new"] == "CLOSE"
                    })
                })
                .count();
            done + peer.blind_lines().iter().filter(|l| last(l)).count() >= NAMES.len()
        },
    );

    let json = states_json.stop();
    assert_eq!(peer.count(), 5 * NAMES.len() as u64, "{:#?}", peer.lines());
    let blind = peer.blind() as usize;
    // Per name: its state records, and its connects (a handshake's end).
    let mut per_name = Vec::new();
    for (name, _) in NAMES {
        let own: Vec<&Value> = of_type(&json, "state")
            .into_iter()
            .filter(|r| r["comm"] == name)
            .collect();
        assert!(
            own.len() <= 5 && own.len() + blind >= 5,
            "{name:?}, {blind} where BPF does not run: {json:#?}"
        );
        let connected = own
            .iter()
            .filter(|r| r["old"] == "SYN_SENT" && r["new"] == "ESTABLISHED")
            .count();
        per_name.push((own.len(), connected));
        for r in own {
            assert_eq!(r["pid"], our_pid(), "{r}");
            assert_eq!(r["rport"], port, "{r}");
        }
    }
    let total: usize = per_name.iter().map(|(n, _)| n).sum();
    assert_eq!(total + blind, 5 * NAMES.len(), "{json:#?}");
    let live = [
        ("states", states_text.stop_raw().stdout),
        ("connect", connect_text.stop_raw().stdout),
    ];
    recorder.stop();
    let recording = std::fs::read(rec.path()).unwrap();
    // JSON escapes control characters itself.
    assert!(
        !recording.contains(&0x1b) && !recording.contains(&b'\r'),
        "raw control characters in the recording"
    );
    let replayed = ["states", "connect"].map(|view| {
        let out = tracer::output(&["replay", rec.path(), view]);
        assert!(
            out.status.success(),
            "replay {view}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (view, out.stdout)
    });
    // The same events in every output: as many lines as JSON records.
    for (view, out) in live.into_iter().chain(replayed) {
        assert_inert(view, &out);
        for ((name, escaped), (states, connects)) in NAMES.iter().zip(&per_name) {
            let want = if view == "states" { *states } else { *connects };
            assert_eq!(
                lines_naming(&out, escaped),
                want,
                "{view}: lines naming {name:?} as {escaped}:\n{}",
                String::from_utf8_lossy(&out)
            );
        }
    }
    eprintln!(
        "names shown as {:?} in states, connect and their replays; exact in JSON",
        NAMES.map(|(_, e)| e)
    );
}

// ---------------------------------------------------------------------
// Write errors and recording files
// ---------------------------------------------------------------------

/// Connections to `port` in `ns` every 20 ms until the returned flag is
/// set (and at most for 60 s).
fn trickle(ns: &NetNs, port: u16) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let h = ns.spawn("tt-trickle", move || {
        let l = TcpListener::bind(addr).unwrap();
        let end = Instant::now() + Duration::from_secs(60);
        let mut n = 0;
        while !flag.load(Ordering::Relaxed) && Instant::now() < end {
            let c = TcpStream::connect(addr).unwrap();
            let _ = l.accept().unwrap();
            drop(c);
            n += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    });
    (stop, h)
}

/// `tcptrace ARGS` with its standard output on /dev/full (every write
/// fails with ENOSPC).
fn to_dev_full(args: &[&str]) -> (Option<i32>, String, Duration) {
    let full = File::options().write(true).open("/dev/full").unwrap();
    let start = Instant::now();
    let out = Command::new(binary())
        .args(args)
        .stdout(Stdio::from(full))
        .output()
        .expect("running tcptrace");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

/// While connections are being made: `states > /dev/full` (text and
/// JSON) and `record -o /dev/full --force` exit 1 with one sentence
/// saying the output cannot be written, instead of 0 and silence.
#[test]
fn full_output_is_an_error() {
    require_root();
    let ns = NetNs::new("full");
    let port = unique_port();
    let p = port.to_string();
    let (stop, traffic) = trickle(&ns, port);
    let mut seen = Vec::new();
    for args in [
        &["states", "--duration", "2", "--port", &p][..],
        &["states", "--json", "--duration", "2", "--port", &p][..],
        &["record", "--duration", "2", "--port", &p][..],
        &[
            "record",
            "-o",
            "/dev/full",
            "--force",
            "--duration",
            "2",
            "--port",
            &p,
        ][..],
    ] {
        let (code, err, took) = to_dev_full(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        let errors: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("tcptrace: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{args:?}: one error sentence: {err}");
        assert!(
            errors[0].starts_with("tcptrace: error: cannot write the output"),
            "{args:?}: {err}"
        );
        // A guard against a hang on the full output, not a speed measure:
        // a 6.1 guest under emulation, beside another guest, took 16 s.
        assert!(took < Duration::from_secs(60), "{args:?} took {took:?}");
        seen.push(format!("{args:?}: {:?}", errors[0]));
    }
    stop.store(true, Ordering::Relaxed);
    let made = traffic.join().unwrap();
    assert!(made > 0);
    eprintln!("{made} connections meanwhile;\n{}", seen.join("\n"));
}

/// `record -o` creates its file 0600, refuses an existing file and a
/// symbolic link (to a file or to nowhere) without touching either, and
/// overwrites only with --force.
#[test]
fn recording_files_are_private_and_never_clobbered() {
    require_root();
    let record = |path: &str, extra: &[&str]| {
        let mut args = vec!["record", "-o", path, "--duration", "0.3", "--port", "1"];
        args.extend_from_slice(extra);
        let out = tracer::output(&args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let new = TempFile::new("new");
    let (code, err) = record(new.path(), &[]);
    assert_eq!(code, Some(0), "{err}");
    let mode = std::fs::metadata(new.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a new recording is {mode:o}");
    assert!(
        std::fs::read(new.path())
            .unwrap()
            .starts_with(b"{\"type\":\"header\""),
        "no header in the new recording"
    );

    let existing = TempFile::new("existing");
    std::fs::write(existing.path(), "precious\n").unwrap();
    let (code, err) = record(existing.path(), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--force") && err.contains(existing.path()),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(existing.path()).unwrap(),
        "precious\n"
    );

    let link = TempFile::new("link");
    std::os::unix::fs::symlink(existing.path(), link.path()).unwrap();
    let (code, err) = record(link.path(), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read_to_string(existing.path()).unwrap(),
        "precious\n"
    );

    let nowhere = TempFile::new("nowhere");
    let dangling = TempFile::new("dangling");
    std::os::unix::fs::symlink(nowhere.path(), dangling.path()).unwrap();
    let (code, err) = record(dangling.path(), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        std::fs::symlink_metadata(nowhere.path()).is_err(),
        "a file was created through a dangling symbolic link"
    );

    let (code, err) = record(existing.path(), &["--force"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        std::fs::read(existing.path())
            .unwrap()
            .starts_with(b"{\"type\":\"header\""),
        "--force did not overwrite"
    );
}

// ---------------------------------------------------------------------
// A reader that stalls during a storm
// ---------------------------------------------------------------------

/// Loopback connect/accept/close cycles in the storm.
const CONNS: u64 = 3_000;
/// Transitions each cycle makes: the client's CLOSE -> SYN_SENT ->
/// ESTABLISHED -> FIN_WAIT1 -> FIN_WAIT2 -> CLOSE and the accepted
/// socket's LISTEN -> SYN_RECV -> ESTABLISHED -> CLOSE_WAIT -> LAST_ACK
/// -> CLOSE (checked by the run whose reader keeps up).
const PER_CONN: u64 = 10;
/// The listener's CLOSE -> LISTEN and LISTEN -> CLOSE.
const LISTENER: u64 = 2;
/// How long the stalled readers stop reading.
const STALL: Duration = Duration::from_secs(3);
const QUEUE: &str = "64K";

/// `CONNS` cycles on one thread; returns how long they took.
fn storm(ns: &NetNs, port: u16) -> Duration {
    ns.storm("tt-storm", port, CONNS)
        .join()
        .expect("the storm panicked")
}

/// Lost counts in text mode's warnings, e.g. `tcptrace: warning: lost 12
/// records (the output was read too slowly); 3 events (...)`: the number
/// of warning lines, the sum of all counts, and of those for the output.
fn text_warnings(stderr: &str) -> (usize, u64, u64) {
    let mut lines = 0;
    let (mut all, mut output) = (0, 0);
    for l in stderr.lines() {
        let Some(rest) = l.strip_prefix("tcptrace: warning: lost ") else {
            continue;
        };
        lines += 1;
        for part in rest.split("; ") {
            let n: u64 = part
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no count in {l:?}"));
            all += n;
            if part.contains("output") {
                output += n;
            }
        }
    }
    (lines, all, output)
}

/// Every transition a BPF program could see (`expected`, see `Ftrace`)
/// is either printed or counted lost: `printed` of them reached the
/// reader, `lost` (all sources) and `lost_output` (records the output
/// dropped) were reported.
fn assert_accounted(
    what: &str,
    expected: u64,
    printed: u64,
    lost: u64,
    lost_output: u64,
    detail: &str,
) {
    assert!(
        printed <= expected,
        "{what}: {printed} transitions printed, the storm made {expected} a BPF program could see; {detail}"
    );
    assert!(
        printed + lost >= expected,
        "{what}: {expected} transitions made that a BPF program could see, {printed} printed, {lost} reported lost: {} silently lost; {detail}",
        expected - printed - lost
    );
    assert!(
        printed + lost_output <= expected,
        "{what}: {printed} printed + {lost_output} lost by the output exceed the {expected} made; {detail}"
    );
}

/// Stops with SIGINT; the JSON records and what it said on stderr.
fn stop(t: Tracer) -> (Vec<Value>, String) {
    let f = t.finish(Signal::SIGINT);
    assert!(f.status.success(), "{}: {}", f.status, f.stderr);
    (json_lines(&f.stdout, &f.stderr), f.stderr)
}

/// How many of each `old -> new` the state records hold.
fn transitions(recs: &[Value]) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for r in of_type(recs, "state") {
        *m.entry(format!(
            "{} -> {}",
            r["old"].as_str().unwrap(),
            r["new"].as_str().unwrap()
        ))
        .or_default() += 1;
    }
    m
}

/// A connect storm of 3 000 cycles while four tracers watch: one read
/// promptly, which checks the transitions per cycle; `states --json`,
/// `record` and text `states`, each with a 64 KiB output queue and a
/// reader that stops for 3 s and then drains. The stalled ones drop
/// records, and everything they did not print is in a `lost` record of
/// their own output (JSON, the recording, which replays with it) or in a
/// warning at most once a second (text). The transitions that fired in
/// an interrupt where no BPF program runs (see `Ftrace`) are not owed.
#[test]
fn stalled_reader_loses_nothing_silently() {
    require_root();
    let ns = NetNs::new("stall");
    ns.many_connections();
    let port = unique_port();
    let p = port.to_string();
    let made = CONNS * PER_CONN + LISTENER;
    // 30 002 state changes, most on one CPU: a ring of 8 MiB each.
    let peer = Ftrace::start_with_buffer(
        "sock/inet_sock_set_state",
        &format!("sport == {port} || dport == {port}"),
        8192,
    );

    let prompt = Tracer::start(&["states", "--json", "--port", &p]);
    let mut json =
        Tracer::start_stalled(&["states", "--json", "--output-queue", QUEUE, "--port", &p]);
    let mut rec = Tracer::start_stalled(&["record", "--output-queue", QUEUE, "--port", &p]);
    let text_started = Instant::now();
    let mut text = Tracer::start_stalled(&["states", "--output-queue", QUEUE, "--port", &p]);

    let storm_started = Instant::now();
    let took = storm(&ns, port);
    std::thread::sleep(STALL.saturating_sub(storm_started.elapsed()));
    for t in [&mut json, &mut rec, &mut text] {
        t.resume_reading();
    }
    // Every transition of the storm has fired by now (the last cycle's
    // before `storm` returned); those a BPF program could see are owed.
    let (traced, blind) = (peer.count(), peer.blind());
    assert_eq!(traced, made, "ftrace saw every transition of the storm");
    let expected = made - blind;
    eprintln!("{blind} of {made} transitions fired where BPF does not run");

    // Wait until each JSON output accounts for the whole storm (the
    // assertions below say what is missing if one never does).
    let limit = Duration::from_secs(15);
    let accounted =
        |r: &[Value]| of_type(r, "state").len() as u64 + tracer::lost(r, "output").0 >= expected;
    prompt.settle(limit, accounted);
    json.settle(limit, |r| accounted(r) && tracer::lost(r, "output").1 > 0);
    rec.settle(limit, |r| tracer::lost(r, "output").1 > 0);
    // What the kernel skipped, to tell its losses from tcptrace's.
    let skipped = [&prompt, &json, &rec, &text].map(|t| bpf::recursion_misses_of(t.pid()));

    // The reader that kept up checks the transitions per cycle.
    let (recs, said) = stop(prompt);
    let (lost, lost_output) = tracer::lost(&recs, "output");
    let printed = of_type(&recs, "state").len() as u64;
    let detail = format!(
        "the kernel skipped {} runs of its programs; transitions printed: {:?}; stderr: {said}",
        skipped[0],
        transitions(&recs)
    );
    assert_accounted(
        "prompt reader",
        expected,
        printed,
        lost,
        lost_output,
        &detail,
    );
    assert!(
        lost < expected / 100,
        "the prompt reader lost {lost} of {expected}: no baseline"
    );
    eprintln!("storm: {CONNS} cycles in {took:?}, {made} transitions");
    eprintln!("prompt reader: {printed} printed, {lost} lost ({lost_output} by the output)");

    // states --json
    let (recs, said) = stop(json);
    let (lost, lost_output) = tracer::lost(&recs, "output");
    let printed = of_type(&recs, "state").len() as u64;
    assert!(
        lost_output > 0,
        "the stalled JSON reader lost nothing: no stall"
    );
    let detail = format!(
        "the kernel skipped {} runs of its programs; transitions printed: {:?}; stderr: {said}",
        skipped[1],
        transitions(&recs)
    );
    assert_accounted(
        "states --json",
        expected,
        printed,
        lost,
        lost_output,
        &detail,
    );
    eprintln!(
        "states --json, stalled: {printed} printed, {lost} lost ({lost_output} by the output, in {} lost records)",
        of_type(&recs, "lost").len()
    );

    // record: the recording holds the lost records, and replays with them.
    let Finished {
        stdout,
        stderr,
        status,
    } = rec.finish(Signal::SIGINT);
    assert!(status.success(), "record: {status}: {stderr}");
    let recording = TempFile::new("stall");
    std::fs::write(recording.path(), &stdout).unwrap();
    let lines = json_lines(&stdout, &stderr);
    let (_, in_file) = tracer::lost(&lines, "output");
    assert!(
        in_file > 0,
        "no lost record from the output in the recording"
    );
    let out = tracer::output(&["replay", recording.path(), "states", "--json"]);
    assert!(
        out.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed = json_lines(&out.stdout, &String::from_utf8_lossy(&out.stderr));
    let (lost, lost_output) = tracer::lost(&replayed, "output");
    assert_eq!(
        lost_output, in_file,
        "replay did not say what the recording lost"
    );
    let printed = of_type(&replayed, "state").len() as u64;
    // The recording counts lost events of every kind (connect calls too),
    // so only the lower bound holds for its states.
    assert!(
        printed <= expected && printed + lost >= expected,
        "record: {expected} transitions made that a BPF program could see, {printed} replayed, {lost} reported lost; the kernel skipped {} runs of its programs",
        skipped[2]
    );
    eprintln!(
        "record, stalled: {printed} transitions replayed, {lost} events lost ({lost_output} by the output)"
    );

    // Text: warnings on stderr, at most one a second.
    let Finished {
        stdout,
        stderr,
        status,
    } = text.finish(Signal::SIGINT);
    let ran = text_started.elapsed();
    assert!(status.success(), "states: {status}: {stderr}");
    let out = String::from_utf8_lossy(&stdout);
    let mut rows = out.lines();
    let header = rows.next().unwrap_or_default();
    assert!(header.starts_with("TIME"), "no header: {header:?}");
    let printed = rows.count() as u64;
    let (warnings, lost, lost_output) = text_warnings(&stderr);
    assert!(
        lost_output > 0,
        "the stalled text reader lost nothing: {stderr}"
    );
    let detail = format!("the kernel skipped {} runs of its programs", skipped[3]);
    assert_accounted(
        "states (text)",
        expected,
        printed,
        lost,
        lost_output,
        &detail,
    );
    assert!(
        warnings as u64 <= ran.as_secs() + 1,
        "{warnings} warning lines in {ran:?}:\n{stderr}"
    );
    eprintln!(
        "states (text), stalled: {printed} printed, {lost} lost ({lost_output} by the output) in {warnings} warning lines over {ran:.1?}"
    );
}
