//! Measurements outside the round-robin matrix: the calibration that says
//! how many state transitions a storm makes, the time from start to first
//! event, and replay of a recorded storm through each view.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use super::{configs::config, host, tracers::Running, workloads::Bench};

/// Transitions of `n` connections: `fixed + per_conn * n` (the listener's
/// own transitions are the fixed part).
#[derive(Clone, Copy, Debug)]
pub struct Line {
    pub per_conn: f64,
    pub fixed: f64,
}

/// How many `sock:inet_sock_set_state` events a loopback storm makes,
/// measured (never assumed) with bpftrace counting in the kernel.
#[derive(Clone, Debug)]
pub struct Calibration {
    pub fin: Line,
    pub rst: Line,
    /// (rst, connections, counted) of every calibration run.
    pub points: Vec<(bool, u64, u64)>,
}

impl Calibration {
    pub fn expected(&self, rst: bool, conns: f64) -> f64 {
        let l = if rst { self.rst } else { self.fin };
        l.fixed + l.per_conn * conns
    }
}

/// Storms of two sizes under `bpftrace states count`; the slope is the
/// transitions per connection. RST closes make a number that depends on
/// timing (whether the server's socket sees the RST before it closes), so
/// for them the expectation is approximate.
pub fn calibrate(b: &mut Bench) -> Result<Calibration> {
    const SIZES: [u64; 2] = [1_000, 4_000];
    let counter = config("bpftrace states count");
    let mut points = Vec::new();
    let mut line = |rst: bool, b: &mut Bench| -> Result<Line> {
        let mut y = [0.0; 2];
        for (i, n) in SIZES.into_iter().enumerate() {
            let ns = host::netns("calib");
            let port = b.next_port();
            let t = Running::start(counter, port, &b.tools)?.expect("a counter");
            let v = b.worker(&Bench::storm_args(&ns, port, n, rst))?;
            let s = t.stop()?;
            let conns = v["conns"].as_u64().unwrap_or(0);
            if conns != n {
                bail!("calibration storm made {conns} connections, not {n}");
            }
            let counted = s.events.unwrap_or(0);
            points.push((rst, n, counted));
            y[i] = counted as f64;
        }
        let per_conn = (y[1] - y[0]) / (SIZES[1] - SIZES[0]) as f64;
        Ok(Line {
            per_conn,
            fixed: y[0] - per_conn * SIZES[0] as f64,
        })
    };
    let fin = line(false, b)?;
    let rst = line(true, b)?;
    Ok(Calibration { fin, rst, points })
}

/// From spawning `tcptrace states --json` while connections are being made
/// (2 000/s, no bulk flows: a busy but not saturated host): to attached
/// ("watching" on stderr) and to its first event on stdout.
#[derive(Clone, Copy, Debug)]
pub struct Startup {
    pub ready_ms: f64,
    pub first_event_ms: f64,
}

pub fn startup(b: &mut Bench, tries: usize) -> Result<Vec<Startup>> {
    let cfg = config("tcptrace states --json");
    let mut v = Vec::new();
    for _ in 0..tries {
        let ns = host::netns("first");
        let port = b.next_port();
        let mut load = Command::new(&b.xtask)
            .args(["bench-worker", "steady", "--ns", &ns.name, "--port"])
            .arg(port.to_string())
            .args(["--rate", "2000", "--secs", "2", "--bulk", "0"])
            .stdout(Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(200));
        let t = Running::start(cfg, port, &b.tools)?.expect("a tracer");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !t.has_event() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        v.push(Startup {
            ready_ms: t.ready_after.as_secs_f64() * 1e3,
            first_event_ms: t.started.elapsed().as_secs_f64() * 1e3,
        });
        t.stop()?;
        let _ = load.wait();
    }
    Ok(v)
}

/// Views replayed from the recording; another view is one more name.
const REPLAY_VIEWS: &[&str] = &["states", "retrans", "connect", "resets", "hist", "top"];

/// One view's replay of the recorded storm.
#[derive(Clone, Debug)]
pub struct Replay {
    pub view: &'static str,
    /// `json` (JSON Lines) or `binary` (`record --binary`).
    pub encoding: &'static str,
    pub events: u64,
    pub secs: f64,
    /// Instructions per event under callgrind, net of start-up (for the
    /// views in [`CALLGRIND_VIEWS`]).
    pub instr_per_event: Option<f64>,
}

/// Views measured under callgrind too: a line per event, and the engine
/// path.
const CALLGRIND_VIEWS: &[&str] = &["states", "top"];

/// First byte of a binary event frame, and its length (tracer's
/// `record::frame`, format 4).
const FRAME_MARKER: u8 = 0xE7;
const FRAME_LEN: usize = 96;

/// Events in a recording of either encoding.
fn count_events(raw: &[u8]) -> u64 {
    let (mut n, mut at) = (0, 0);
    while at < raw.len() {
        if raw[at] == FRAME_MARKER {
            n += 1;
            at += FRAME_LEN;
        } else {
            let end = raw[at..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(raw.len(), |i| at + i + 1);
            n += u64::from(raw[at..end].starts_with(b"{\"type\":\"event\""));
            at = end;
        }
    }
    n
}

/// Records a storm with `tcptrace record` twice side by side, as JSON
/// Lines and with `--binary`, then replays each recording through each
/// view with `--json` to /dev/null (one process, one core; reading and
/// decoding included).
pub fn replay(b: &mut Bench, count: u64) -> Result<Vec<Replay>> {
    let ns = host::netns("rec");
    let port = b.next_port();
    let mut recorders = Vec::new();
    for (encoding, extra) in [("json", None), ("binary", Some("--binary"))] {
        let file = format!("/dev/shm/ttbench-{}-record.{encoding}", std::process::id());
        let mut rec = Command::new(&b.tools.tcptrace)
            .args(["record", "-o", &file, "--port", &port.to_string()])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()?;
        // Wait for "watching" on its stderr.
        let mut err = std::io::BufReader::new(rec.stderr.take().expect("piped"));
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut err, &mut line)? > 0 && !line.contains("watching") {
            line.clear();
        }
        recorders.push((encoding, file, rec));
    }
    b.worker(&Bench::storm_args(&ns, port, count, false))?;
    std::thread::sleep(Duration::from_millis(300));
    let mut out = Vec::new();
    for (encoding, file, mut rec) in recorders {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(rec.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        rec.wait()?;
        let events = count_events(&std::fs::read(&file)?);
        for &view in REPLAY_VIEWS {
            let start = Instant::now();
            let st = Command::new(&b.tools.tcptrace)
                .args(["replay", &file, view, "--json"])
                .stdout(Stdio::null())
                .status()?;
            if !st.success() {
                bail!("tcptrace replay {view} of the {encoding} recording failed with {st}");
            }
            let secs = start.elapsed().as_secs_f64();
            let instr_per_event = if CALLGRIND_VIEWS.contains(&view) {
                Some(super::callgrind::per_event(
                    &b.tools.tcptrace,
                    std::path::Path::new(&file),
                    view,
                    events,
                )?)
            } else {
                None
            };
            out.push(Replay {
                view,
                encoding,
                events,
                secs,
                instr_per_event,
            });
        }
        let _ = std::fs::remove_file(&file);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_events_of_both_encodings() {
        let mut raw = b"{\"type\":\"header\"}\n{\"type\":\"event\",\"x\":1}\n".to_vec();
        raw.push(FRAME_MARKER);
        raw.extend_from_slice(&[b'\n'; FRAME_LEN - 1]);
        raw.extend_from_slice(b"{\"type\":\"lost\"}\n");
        raw.push(FRAME_MARKER);
        raw.extend_from_slice(&[0; FRAME_LEN - 1]);
        assert_eq!(count_events(&raw), 3);
    }
}
