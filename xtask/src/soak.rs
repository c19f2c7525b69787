//! `cargo xtask soak --minutes N` (as root, not in CI): the release tcptrace
//! under hours-of-incident conditions for N minutes. In a private network
//! namespace with 3 % input loss on the workload's port: steady churn (new
//! connections every second plus bulk flows that retransmit), bursts of
//! connect storms, one `states --json` whose reader stops for 3 s every
//! 20 s, one `top --json` and one `record`. At the end SIGHUP to one,
//! SIGTERM to the others. Reports each tracer's RSS after warm-up and at
//! the end (goal: under 5 % growth), records, lost counts by source, exit
//! status and anything on stderr that is not a `lost` warning; writes
//! `target/soak/report.json`.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::bench::host;

/// What a reader of one tracer's output counted.
#[derive(Default, Debug, Clone)]
struct Counts {
    records: u64,
    lost: BTreeMap<String, u64>,
}

struct Tracer {
    name: &'static str,
    child: Child,
    reader: Option<JoinHandle<()>>,
    err_reader: Option<JoinHandle<Vec<String>>>,
    counts: Arc<Mutex<Counts>>,
    /// RSS samples in KiB, with seconds since start.
    rss: Vec<(f64, u64)>,
}

impl Tracer {
    /// Starts `tcptrace ARGS`, reading its JSON Lines; a `stall` reader
    /// stops reading for 3 s every 20 s.
    fn start(bin: &Path, name: &'static str, args: &[&str], stall: bool) -> Result<Self> {
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let counts = Arc::new(Mutex::new(Counts::default()));
        let c = counts.clone();
        let out = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let started = Instant::now();
            let mut stalled_at = 0u64;
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                match v["type"].as_str() {
                    Some("lost") => {
                        let src = v["source"].as_str().unwrap_or("?").to_string();
                        *c.lost.entry(src).or_default() += v["count"].as_u64().unwrap_or(0);
                    }
                    Some(_) => c.records += 1,
                    None => {}
                }
                drop(c);
                let s = started.elapsed().as_secs();
                if stall && s % 20 == 10 && s != stalled_at {
                    stalled_at = s;
                    std::thread::sleep(Duration::from_secs(3));
                }
            }
        });
        let err = child.stderr.take().expect("piped");
        let err_reader = std::thread::spawn(move || {
            BufReader::new(err)
                .lines()
                .map_while(Result::ok)
                .filter(|l| !l.contains("warning: lost") && !l.contains("watching"))
                .collect()
        });
        Ok(Self {
            name,
            child,
            reader: Some(reader),
            err_reader: Some(err_reader),
            counts,
            rss: Vec::new(),
        })
    }

    fn sample(&mut self, t: f64) {
        let kb = host::status_kb(self.child.id(), "VmRSS:");
        if kb > 0 {
            self.rss.push((t, kb));
        }
    }

    /// Sends `sig`, waits for the exit; returns the report line.
    fn stop(mut self, sig: Signal, warmup_s: f64) -> Result<serde_json::Value> {
        kill(Pid::from_raw(self.child.id() as i32), sig)?;
        let status = self.child.wait()?;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let errors = self
            .err_reader
            .take()
            .map(|r| r.join().unwrap_or_default())
            .unwrap_or_default();
        let after_warmup = self
            .rss
            .iter()
            .find(|(t, _)| *t >= warmup_s)
            .map_or(0, |s| s.1);
        let end = self.rss.last().map_or(0, |s| s.1);
        let peak = self.rss.iter().map(|s| s.1).max().unwrap_or(0);
        let growth = if after_warmup > 0 {
            (end as f64 - after_warmup as f64) / after_warmup as f64 * 100.0
        } else {
            f64::NAN
        };
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(serde_json::json!({
            "tracer": self.name,
            "signal": format!("{sig:?}"),
            "exit": status.code(),
            "rss_kb_after_warmup": after_warmup,
            "rss_kb_end": end,
            "rss_kb_peak": peak,
            "rss_growth_pct": (growth * 10.0).round() / 10.0,
            "records": counts.records,
            "lost": counts.lost,
            "errors": errors,
        }))
    }
}

/// Runs the soak for `minutes`.
pub fn run(minutes: f64, bin: PathBuf, root: &Path) -> Result<()> {
    if !crate::is_root() {
        bail!("the soak loads BPF programs and makes network namespaces: run it as root");
    }
    let _lock = host::lock()?;
    host::ensure_tracefs();
    let secs = (minutes * 60.0).max(30.0);
    let warmup_s = (secs * 0.2).max(20.0);
    let out_dir = root.join("target/soak");
    std::fs::create_dir_all(&out_dir)?;
    let recording = out_dir.join("soak.rec");
    let _ = std::fs::remove_file(&recording);

    let ns = host::netns("soak");
    ns.small_segments();
    let port = 20_000 + (std::process::id() % 5_000) as u16;
    ns.random_drop(port, 3);

    let rec = recording.to_string_lossy().into_owned();
    let mut tracers = vec![
        Tracer::start(
            &bin,
            "states --json (stalling reader)",
            &["states", "--json", "--output-queue", "1M"],
            true,
        )?,
        Tracer::start(
            &bin,
            "top --json",
            &["top", "--json", "--interval", "5", "--rtt"],
            false,
        )?,
        Tracer::start(
            &bin,
            "record --binary --port (steady load)",
            &[
                "record",
                "--binary",
                "--port",
                &port.to_string(),
                "-o",
                &rec,
                "--force",
            ],
            false,
        )?,
    ];
    std::thread::sleep(Duration::from_secs(1));

    // The workload: steady churn with bulk flows all along, a storm burst
    // now and then, each a bench worker inside the namespace.
    let xtask = std::env::current_exe()?;
    let worker = |args: Vec<String>| -> Result<()> {
        let out = Command::new(&xtask)
            .arg("bench-worker")
            .args(&args)
            .output()
            .context("running a workload")?;
        if !out.status.success() {
            bail!(
                "workload {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    let started = Instant::now();
    let mut next_sample = 0.0;
    let mut rounds = 0u64;
    let mut workload_errors = Vec::new();
    while started.elapsed().as_secs_f64() < secs {
        rounds += 1;
        let args: Vec<String> = if rounds.is_multiple_of(6) {
            ["storm", "--ns", &ns.name, "--port"]
                .map(String::from)
                .into_iter()
                .chain([(port + 1).to_string(), "--count".into(), "5000".into()])
                .collect()
        } else {
            ["steady", "--ns", &ns.name, "--port"]
                .map(String::from)
                .into_iter()
                .chain([
                    port.to_string(),
                    "--rate".into(),
                    "300".into(),
                    "--secs".into(),
                    "5".into(),
                    "--bulk".into(),
                    "2".into(),
                ])
                .collect()
        };
        if let Err(e) = worker(args) {
            workload_errors.push(format!("{e:#}"));
        }
        let t = started.elapsed().as_secs_f64();
        if t >= next_sample {
            next_sample = t + 5.0;
            for tr in &mut tracers {
                tr.sample(t);
            }
        }
        eprint!("\rsoak: {:.0}/{secs:.0} s", t);
    }
    eprintln!();
    let t = started.elapsed().as_secs_f64();
    for tr in &mut tracers {
        tr.sample(t);
    }
    let mut reports = Vec::new();
    for (i, tr) in tracers.into_iter().enumerate() {
        let sig = if i == 0 {
            Signal::SIGHUP
        } else {
            Signal::SIGTERM
        };
        reports.push(tr.stop(sig, warmup_s)?);
    }
    let replayed = Command::new(&bin)
        .args(["replay", &rec, "states", "--json"])
        .output()?;
    // Sockets the recording's engine still believes in at the end, against
    // the namespace's own table: a flow whose last transitions the kernel
    // skipped (nested) never leaves the table.
    let top = Command::new(&bin)
        .args(["replay", &rec, "top", "--json", "--linger", "0.001"])
        .output()?;
    let believed: u64 = String::from_utf8_lossy(&top.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| {
            v["census"].as_object().map(|c| {
                c.iter()
                    .filter(|(k, _)| *k != "TIME_WAIT")
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            })
        })
        .unwrap_or(0);
    let ss = ns.sh(&[
        "ss",
        "-Htan",
        &format!("( sport = :{port} or dport = :{port} )"),
    ]);
    let actual = String::from_utf8_lossy(&ss.stdout)
        .lines()
        .filter(|l| !l.starts_with("TIME-WAIT"))
        .count();
    let report = serde_json::json!({
        "minutes": secs / 60.0,
        "warmup_s": warmup_s,
        "workload_rounds": rounds,
        "workload_errors": workload_errors,
        "kernel_retrans_segs": ns.counter("Tcp", "RetransSegs"),
        "recording_bytes": std::fs::metadata(&recording).map(|m| m.len()).unwrap_or(0),
        "recording_replays": replayed.status.success(),
        "recording_lost": String::from_utf8_lossy(&replayed.stdout)
            .lines()
            .filter(|l| l.contains("\"type\":\"lost\""))
            .map(str::to_string)
            .collect::<Vec<_>>(),
        "sockets_at_end_recording_believes": believed,
        "sockets_at_end_ss": actual,
        "tracers": reports,
    });
    std::fs::write(
        out_dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    let _ = std::fs::remove_file(&recording);
    let bad = report["tracers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["exit"] != 0 || r["rss_growth_pct"].as_f64().is_none_or(|g| g >= 5.0));
    if bad || !replayed.status.success() {
        bail!("the soak missed a goal (see target/soak/report.json)");
    }
    Ok(())
}
