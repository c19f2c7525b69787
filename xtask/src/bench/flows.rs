//! Memory with many live flows: tcptrace's RSS while a namespace holds
//! `sockets` open loopback sockets (half clients, half accepted), with
//! tcptrace started before they open (it learns every flow from events)
//! and after (it finds them in /proc at start-up). The census of
//! `top --json` must count them all, so the figure is for flows tracked.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use harness::NetNs;

use super::{configs::config, host, tracers::Running, workloads::Bench};

/// Connections per worker process: both ends are its fds, and a process
/// may hold 20 000 here (RLIMIT_NOFILE cannot be raised).
const CONNS_PER_WORKER: u64 = 8_000;

/// One measurement.
#[derive(Clone, Debug)]
pub struct FlowsMem {
    pub config: &'static str,
    /// "before" or "after" the sockets were opened.
    pub started: &'static str,
    /// Sockets open in the namespace (listeners included).
    pub sockets: u64,
    /// Sockets in tcptrace's census (`top --json` only).
    pub census: Option<u64>,
    pub rss_kb: u64,
    pub peak_kb: u64,
    /// Anonymous memory: RSS less the mapped ring buffer and the binary.
    pub anon_kb: u64,
}

/// Workers holding `sockets` sockets in `ns`, once all are open.
fn open(b: &Bench, ns: &NetNs, port: u16, sockets: u64) -> Result<Vec<Child>> {
    let conns = sockets / 2;
    let workers = conns.div_ceil(CONNS_PER_WORKER);
    let mut children = Vec::new();
    for w in 0..workers {
        let n = conns / workers + u64::from(w < conns % workers);
        let child = Command::new(&b.xtask)
            .args(["bench-worker", "hold", "--ns", &ns.name, "--port"])
            .arg(port.to_string())
            .args(["--conns", &n.to_string(), "--net", &(w + 1).to_string()])
            .args(["--secs", "120"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting a hold worker")?;
        children.push(child);
    }
    for c in &mut children {
        let mut line = String::new();
        BufReader::new(c.stdout.as_mut().expect("piped")).read_line(&mut line)?;
        if !line.contains("\"open\"") {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(c.stderr.as_mut().expect("piped"), &mut err);
            bail!("a hold worker failed: {}", err.trim());
        }
    }
    Ok(children)
}

/// The census total of the last `top` record in `out`.
fn census(out: &str) -> Option<u64> {
    let last = out
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "top")?;
    Some(
        last["census"]
            .as_object()?
            .values()
            .filter_map(|v| v.as_u64())
            .sum(),
    )
}

pub fn flows(b: &mut Bench, sockets: u64) -> Result<Vec<FlowsMem>> {
    let mut out = Vec::new();
    for (name, started) in [
        ("tcptrace top --json", "before"),
        ("tcptrace top --json", "after"),
        ("tcptrace states", "before"),
    ] {
        let cfg = config(name);
        let ns = host::netns("flows");
        let port = b.next_port();
        let early = if started == "before" {
            Running::start(cfg, port, &b.tools)?
        } else {
            None
        };
        let mut workers = open(b, &ns, port, sockets)?;
        let t = match early {
            Some(t) => t,
            None => Running::start(cfg, port, &b.tools)?.expect("a tracer"),
        };
        // Events drained, or /proc read; and a `top` snapshot after that.
        std::thread::sleep(Duration::from_secs(3));
        let pid = t.pid();
        let m = FlowsMem {
            config: name,
            started,
            // Both ends of each connection, and each worker's 8 listeners.
            sockets: sockets / 2 * 2 + 8 * workers.len() as u64,
            census: if name.contains("top") {
                census(&t.output())
            } else {
                None
            },
            rss_kb: host::status_kb(pid, "VmRSS:"),
            peak_kb: host::status_kb(pid, "VmHWM:"),
            anon_kb: host::status_kb(pid, "RssAnon:"),
        };
        t.stop()?;
        for w in &mut workers {
            let _ = w.kill();
            let _ = w.wait();
        }
        eprintln!(
            "bench: flows {} {name} started {started}: RSS {} MB (peak {}, anonymous {}), census {}",
            m.sockets,
            m.rss_kb / 1024,
            m.peak_kb / 1024,
            m.anon_kb / 1024,
            m.census.map_or("-".into(), |c| c.to_string())
        );
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn census_total_of_the_last_top_record() {
        let out = "{\"type\":\"top\",\"census\":{\"LISTEN\":1}}\nnoise\n{\"type\":\"top\",\"census\":{\"LISTEN\":8,\"ESTABLISHED\":100}}\n{\"type\":\"lost\"}\n";
        assert_eq!(census(out), Some(108));
        assert_eq!(census("{\"type\":\"lost\"}"), None);
    }
}
