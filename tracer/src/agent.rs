//! `tcptrace agent`: runs headless until stopped, one pipeline whose view
//! ([`views::agent`]) produces every stream record; the output renders the
//! chosen record types as JSON Lines (standard output or a file that
//! rotates by size and reopens on SIGHUP) and taps every record into the
//! Prometheus registry ([`metrics`]) served on `--listen`.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, sync::atomic::AtomicBool};

use anyhow::Result;
use clap::Args;

use crate::{
    cli::{FilterArgs, RunArgs},
    live::{self, RunOptions},
    metrics::{
        self, Metrics,
        labels::{Extra, default_ports},
    },
    pipeline::Pipeline,
    sinks::{Mode, Output, OutputSpec, rotate, tap::Types},
    views,
};

pub const EXAMPLES: &str = "\
Examples:
  sudo tcptrace agent --output /var/log/tcptrace/events.jsonl
  sudo tcptrace agent -o events.jsonl --rotate-size 100M --rotate-keep 5
  sudo tcptrace agent --events retrans,reset --listen 0.0.0.0:9464
  sudo tcptrace agent --metrics-ports 443,5432 --metrics-labels peer,cgroup
  curl -s 127.0.0.1:9464/metrics | grep tcptrace_retransmitted

SIGHUP reopens the --output file (logrotate's create mode);
copytruncate works as well. See deploy/ for a systemd unit.";

/// Record types the log can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EventType {
    State,
    Retrans,
    Connect,
    Reset,
}

impl EventType {
    fn name(self) -> &'static str {
        match self {
            Self::State => "state",
            Self::Retrans => "retrans",
            Self::Connect => "connect",
            Self::Reset => "reset",
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct AgentArgs {
    /// Write the JSON log here (appended to) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Start a new --output file past this size (e.g. 100M); the old one
    /// becomes FILE.1, FILE.1 becomes FILE.2, and so on.
    #[arg(long, value_name = "BYTES", requires = "output", value_parser = parse_size)]
    pub rotate_size: Option<u64>,
    /// Old files kept by --rotate-size.
    #[arg(long, value_name = "N", default_value_t = 5, requires = "rotate_size")]
    pub rotate_keep: usize,
    /// Record types written to the log (the metrics count all of them);
    /// `lost` records always are.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "TYPES")]
    pub events: Vec<EventType>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Ports that label metrics (default: this host's listening ports at
    /// start-up and the well-known ports below 1024); others are `other`.
    #[arg(long, value_delimiter = ',', value_name = "PORTS")]
    pub metrics_ports: Vec<u16>,
    /// Extra, opt-in labels on per-flow metrics (capped by --max-series).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LABELS")]
    pub metrics_labels: Vec<Extra>,
    /// Label sets per metric at most; more fold into `other`, counted by
    /// tcptrace_series_dropped_total.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_series: usize,
    /// Also histogram smoothed RTTs (costs a map update per received
    /// segment).
    #[arg(long)]
    pub rtt: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

fn parse_size(s: &str) -> Result<u64, String> {
    match crate::cli::bytes(s) {
        Some(n) if n >= 4096 => Ok(n),
        _ => Err(format!(
            "'{s}' is not a file size; give 4K or more, e.g. 100M"
        )),
    }
}

/// Runs the agent until SIGINT/SIGTERM (or `--duration`).
pub fn run(a: &AgentArgs) -> Result<()> {
    let ports = if a.metrics_ports.is_empty() {
        default_ports()
    } else {
        a.metrics_ports.iter().copied().collect()
    };
    let (m, registry) = Metrics::new(&metrics::Config {
        ports,
        extra: a.metrics_labels.clone(),
        max_series: a.max_series,
        rtt: a.rtt,
    });
    let bound = metrics::server::start(a.listen, registry, m.rss_gauge())?;
    eprintln!("tcptrace: metrics at http://{bound}/metrics");
    let reopen = Arc::new(AtomicBool::new(false));
    let spec = OutputSpec {
        path: a.output.clone(),
        rotate: a.output.as_ref().map(|_| rotate::Policy {
            max_bytes: a.rotate_size,
            keep: a.rotate_keep,
            reopen: reopen.clone(),
        }),
        ..a.run.output(Mode::Json)
    };
    let types = if a.events.is_empty() {
        Types::default()
    } else {
        Types::only(a.events.iter().map(|e| e.name()).collect())
    };
    let out = Output::open(&spec)?.with_tap(Box::new(m), types);
    let view = views::agent::Agent::new(a.rtt);
    let p = Pipeline::with_output(Box::new(view), a.filter.filter(), out);
    live::run(
        p,
        RunOptions {
            keys: None,
            duration: a.run.duration,
            ring_bytes: a.run.ring_size,
            connect: a.run.connect_choice(),
            forms: a.run.form_choice(),
            what: "TCP for the log and the metrics",
            reopen: Some(reopen),
        },
    )
}
