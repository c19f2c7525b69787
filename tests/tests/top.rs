//! `tcptrace top` in a real terminal (tmux at 80x24 and 200x50) over
//! traffic in a private network namespace: the screen fits the terminal
//! without a wrapped line, its census equals `ss -tan` in the namespace,
//! its footer counts the flows the test made, `s` and `g` change what is
//! shown, and `q` ends the run with status 0 within seconds. Also `-c N`
//! and a replay on a terminal. (`top_groups.rs`: the rates of `--group`.)
//! A state change that fired where no BPF program runs (see `Ftrace`;
//! the client's FIN_WAIT2 comes with the server's delayed ACK, from a
//! timer) leaves its socket behind or unseen: the screen is then judged
//! by what it shows of that.

use std::{
    collections::BTreeMap,
    io::Read,
    net::{Shutdown, TcpListener, TcpStream},
    sync::mpsc,
    time::Duration,
};

use tests::{
    NetNs,
    ftrace::{Ftrace, census_distance},
    require_root,
    tmux::Tmux,
    tracer::{binary, forced_plan, run},
    unique_port,
};

/// Connections that stay open, and connections the client shuts down for
/// writing (the server's socket waits in CLOSE_WAIT, the client's in
/// FIN_WAIT2; the client keeps it open: an orphan in FIN_WAIT2 is a
/// timewait socket that tcptrace's engine counts as TIME_WAIT, a census
/// question outside this test).
const OPEN: usize = 3;
const HALF_CLOSED: usize = 4;
/// Their flows: the listener, and both ends of each connection.
const FLOWS: usize = 1 + 2 * (OPEN + HALF_CLOSED);

/// The census line of the screen (`HH:MM:SS.micros sockets: A=1 B=2`), as
/// a sorted list of `STATE=N`.
fn census(screen: &[String]) -> Vec<String> {
    let line = screen
        .iter()
        .find(|l| l.contains(" sockets:"))
        .cloned()
        .unwrap_or_default();
    let mut c: Vec<String> = line
        .split_whitespace()
        .skip(2)
        .map(str::to_string)
        .collect();
    c.sort();
    c
}

/// [`census`] as a map from state to sockets.
fn census_map(screen: &[String]) -> BTreeMap<String, u64> {
    census(screen)
        .iter()
        .filter_map(|c| {
            let (k, v) = c.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The kernel's number of a state: the order in which `s` visits them.
fn kernel_order(state: &str) -> u8 {
    let order = [
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
    ];
    order
        .iter()
        .position(|s| *s == state)
        .map_or(u8::MAX, |i| i as u8 + 1)
}

/// The footer without what it says was lost (`; N events lost`), and N.
fn footer_and_lost(screen: &[String]) -> (String, u64) {
    let f = footer(screen);
    match f.split_once("; ") {
        Some((head, tail)) => {
            let n = tail.strip_suffix(" events lost").unwrap_or_default();
            (head.to_string(), n.replace(',', "").parse().unwrap_or(0))
        }
        None => (f, 0),
    }
}

/// The flows the footer counts, when it shows them all (`N of N flows`).
fn all_flows(screen: &[String]) -> Option<usize> {
    let (f, _) = footer_and_lost(screen);
    let (shown, rest) = f.split_once(" of ")?;
    let total = rest.strip_suffix(" flows")?;
    (shown == total).then(|| total.parse().ok())?
}

/// The footer: the line above the help line.
fn footer(screen: &[String]) -> String {
    let help = screen
        .iter()
        .rposition(|l| l.starts_with("q quit"))
        .expect("no help line on the screen");
    screen[help - 1].trim_end().to_string()
}

fn fits(t: &Tmux, screen: &[String]) {
    assert_eq!(screen.len(), t.height, "{screen:#?}");
    for l in screen {
        assert!(
            l.chars().count() <= t.width,
            "a line wider than the {}-column pane (it wrapped): {l:?}",
            t.width
        );
    }
}

fn top_in_a_terminal(width: usize, height: usize) {
    require_root();
    let ns = NetNs::new("top");
    let port = unique_port();
    let ns_path = format!("/run/netns/{}", ns.name);
    let bin = binary();
    let port_arg = port.to_string();
    let mut argv = vec![
        bin.to_str().unwrap(),
        "top",
        "--interval",
        "0.3",
        "--port",
        &port_arg,
        "--netns",
        &ns_path,
    ];
    if let Some(p) = forced_plan() {
        argv.extend(["--connect-plan", p.arg()]);
    }
    let t = Tmux::start(&argv, width, height);
    let peer = Ftrace::start(
        "sock/inet_sock_set_state",
        &format!("sport == {port} || dport == {port}"),
    );
    // Up: the screen has a footer (the start-up line is gone). Bounded
    // generously: a 6.12 guest under emulation, beside another guest, had
    // not drawn it after 20 s.
    let (up, screen) = t.wait_for(Duration::from_secs(60), |s| {
        s.iter().any(|l| l.starts_with("q quit"))
    });
    assert!(up, "top did not come up in {width}x{height}: {screen:#?}");

    // The traffic, inside the namespace: a server thread that keeps what it
    // accepts until told to stop; clients that keep OPEN connections and
    // close HALF_CLOSED of theirs.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let server = ns.spawn("tt-top-srv", move || {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        ready_tx.send(()).unwrap();
        let mut kept = Vec::new();
        for _ in 0..OPEN + HALF_CLOSED {
            kept.push(l.accept().unwrap().0);
        }
        let _ = stop_rx.recv();
        drop(kept);
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let clients = ns.run("tt-top-cli", move || {
        let mut open = Vec::new();
        for i in 0..OPEN + HALF_CLOSED {
            let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            if i >= OPEN {
                c.shutdown(Shutdown::Write).unwrap();
            }
            open.push(c);
        }
        open
    });

    // The census equals ss in the namespace; every flow is counted (but
    // for each state change no BPF program saw, or that tcptrace lost and
    // said so on the footer: a socket left behind, or one not seen at
    // all; a slow emulated guest lost one once).
    let mut ss = BTreeMap::new();
    let mut missed = 0;
    let (ok, screen) = t.wait_for(Duration::from_secs(15), |s| {
        ss = ns.ss_census(port);
        missed = peer.blind() + footer_and_lost(s).1;
        all_flows(s).is_some_and(|n| n <= FLOWS && n + missed as usize >= FLOWS)
            && census_distance(&census_map(s), &ss) <= 2 * missed
    });
    assert!(
        ok,
        "want footer \"{FLOWS} of {FLOWS} flows\" and the census of ss {ss:?}, {missed} state changes where BPF does not run or said lost: {screen:#?}"
    );
    let want_ss: BTreeMap<String, u64> = [
        ("CLOSE_WAIT", HALF_CLOSED),
        ("ESTABLISHED", 2 * OPEN),
        ("FIN_WAIT2", HALF_CLOSED),
        ("LISTEN", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v as u64))
    .collect();
    assert_eq!(ss, want_ss);
    fits(&t, &screen);
    // What the screen shows (all of the above unless `missed`).
    let shown = census_map(&screen);
    let flows = all_flows(&screen).unwrap();
    let cw = shown.get("CLOSE_WAIT").copied().unwrap_or(0) as usize;
    if cw == 0 {
        assert!(missed >= HALF_CLOSED as u64, "{screen:#?}");
        eprintln!("no CLOSE_WAIT seen ({missed} state changes unseen or said lost): no keys");
        return;
    }

    // `s` cycles through the states in the census, in the kernel's order:
    // ESTABLISHED, FIN_WAIT2, CLOSE_WAIT (and any state a socket was left
    // in before).
    let presses = shown
        .keys()
        .filter(|s| kernel_order(s) <= kernel_order("CLOSE_WAIT"))
        .count();
    for _ in 0..presses {
        t.press("s");
    }
    let want = format!("{cw} of {cw} flows in CLOSE_WAIT ({flows} in all)");
    let (ok, screen) = t.wait_for(Duration::from_secs(5), |s| footer_and_lost(s).0 == want);
    assert!(ok, "after s x {presses}, want {want:?}: {screen:#?}");
    // The rows: the server's sockets in CLOSE_WAIT. Their owner is the
    // server thread (its name cut to fit at 80 columns); under load from
    // other processes the engine has been seen to give one of them to
    // another process's thread (an owner-attribution question for the
    // engine, not for top): the grouping below must agree with the rows
    // either way.
    let local = format!("127.0.0.1:{port} ");
    let rows: Vec<&String> = screen
        .iter()
        .filter(|l| l.contains(" CLOSE_WAIT ") && l.contains(&local))
        .collect();
    assert_eq!(rows.len(), cw, "{screen:#?}");
    let pid = std::process::id().to_string();
    let ours = rows
        .iter()
        .filter(|r| r.split_whitespace().next() == Some(pid.as_str()) && r.contains("tt-top-sr"))
        .count();
    assert!(ours > 0, "no row owned by the server thread: {screen:#?}");
    if ours < cw {
        eprintln!(
            "warning: {} of {cw} server sockets owned by another process: {rows:#?}",
            cw - ours
        );
    }
    fits(&t, &screen);

    // `g` rolls them up per owner: the server thread's group holds its rows.
    t.press("g");
    let groups = if ours == cw { 1 } else { 2 };
    let want = format!(
        "{groups} of {groups} groups by owner of {cw} flows in CLOSE_WAIT ({flows} in all)"
    );
    let (ok, screen) = t.wait_for(Duration::from_secs(5), |s| footer_and_lost(s).0 == want);
    assert!(ok, "after g, want {want:?}: {screen:#?}");
    let group = format!("tt-top-srv[{}]", std::process::id());
    let row = screen
        .iter()
        .find(|l| l.starts_with(&group))
        .unwrap_or_else(|| panic!("no row of {group}: {screen:#?}"));
    assert!(row.contains(&format!("CLOSE_WAIT {ours}")), "{row}");
    fits(&t, &screen);

    // `q` quits at once, with status 0, and the shell's screen comes back.
    t.press("q");
    let code = t.exit_status(Duration::from_secs(5));
    assert_eq!(
        code,
        Some(0),
        "top did not exit 0 within 5 s of q: {:#?}",
        t.screen()
    );
    let after = t.screen();
    assert!(
        !after.iter().any(|l| l.starts_with("q quit")),
        "the alternate screen was not left: {after:#?}"
    );

    stop_tx.send(()).unwrap();
    server.join().unwrap();
    let mut buf = [0u8; 1];
    for mut c in clients {
        // The server closed: end of file.
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(c.read(&mut buf).unwrap(), 0);
    }
}

#[test]
fn top_fits_80x24_and_takes_keys() {
    top_in_a_terminal(80, 24);
}

#[test]
fn top_fits_200x50_and_takes_keys() {
    top_in_a_terminal(200, 50);
}

/// `top -c N` prints N tables and ends, on a terminal (where it then
/// prints them plainly, as a batch run, rather than drawing a screen that
/// would vanish at the end) and into a pipe; neither has an escape code.
#[test]
fn top_count_n_prints_n_plain_tables_on_a_terminal_and_into_a_pipe() {
    require_root();
    let ns = NetNs::new("topc");
    let ns_path = format!("/run/netns/{}", ns.name);
    let bin = binary();
    let plan: Vec<&str> = forced_plan()
        .map(|p| vec!["--connect-plan", p.arg()])
        .unwrap_or_default();
    for n in [1, 3] {
        let count = n.to_string();
        let mut args = vec![
            "top",
            "-c",
            &count,
            "--interval",
            "0.2",
            "--netns",
            &ns_path,
        ];
        args.extend(&plan);
        // Into a pipe.
        let (status, out, err) = run(&args);
        assert!(status.success(), "top {args:?}: {err}");
        assert_eq!(out.matches(" sockets:").count(), n, "{out}");
        assert!(!out.contains('\x1b'), "an escape code into a pipe: {out:?}");
        // On a terminal (a pseudo-terminal of util-linux's `script`, which
        // copies what it shows byte for byte).
        let cmd: Vec<String> = std::iter::once(bin.to_str().unwrap())
            .chain(args.iter().copied())
            .map(|a| format!("'{a}'"))
            .collect();
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd.join(" "), "/dev/null"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running script (util-linux)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "top -c {n} on a terminal: {text}");
        assert_eq!(text.matches(" sockets:").count(), n, "{text}");
        assert!(!text.contains('\x1b'), "an escape code: {text:?}");
    }
}

/// `tcptrace replay FILE top` on a terminal: the recording's last table
/// stays on the screen, takes keys, and `q` ends it with status 0.
#[test]
fn top_replay_in_a_terminal_stays_until_q() {
    let rec = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tracer/fixtures/recordings/loopback.jsonl"
    );
    let bin = binary();
    let t = Tmux::start(&[bin.to_str().unwrap(), "replay", rec, "top"], 80, 24);
    // The recording has 14 flows, all of python3[1213].
    let (ok, screen) = t.wait_for(Duration::from_secs(10), |s| {
        s.iter().any(|l| l.starts_with("q quit")) && footer(s) == "14 of 14 flows"
    });
    assert!(ok, "{screen:#?}");
    fits(&t, &screen);
    // Still there a moment later: the replay waits for keys.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(footer(&t.screen()), "14 of 14 flows");
    t.press("g");
    let (ok, screen) = t.wait_for(Duration::from_secs(5), |s| {
        footer(s) == "1 of 1 groups by owner of 14 flows"
            && s.iter().any(|l| l.starts_with("python3[1213]"))
    });
    assert!(ok, "{screen:#?}");
    t.press("q");
    assert_eq!(
        t.exit_status(Duration::from_secs(5)),
        Some(0),
        "{:#?}",
        t.screen()
    );
}
