//! `INTERVAL [COUNT]` as positional arguments, the way `vmstat`, `iostat`
//! and `sar` take them: a reusable piece of any subcommand that reports
//! every so often.

use std::time::Duration;

use clap::Args;

/// See the module documentation.
#[derive(Debug, Args, Clone, Default)]
pub struct IntervalArgs {
    /// Seconds between reports (default 1; fractions allowed).
    #[arg(value_name = "INTERVAL", value_parser = super::parse_secs, allow_negative_numbers = true)]
    pub interval: Option<Duration>,
    /// Stop after this many reports.
    #[arg(value_name = "COUNT", value_parser = super::parse_count, allow_negative_numbers = true)]
    pub count: Option<u64>,
}

impl IntervalArgs {
    /// The interval, or `default`.
    pub fn every(&self, default: Duration) -> Duration {
        self.interval.unwrap_or(default)
    }
}
