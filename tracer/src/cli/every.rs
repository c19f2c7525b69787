//! `INTERVAL [COUNT]` as positional arguments, the way `vmstat`, `iostat`
//! and bcc's `tcptop` take them (`tcptrace top 1 10`): the same as
//! `--interval` and `-c`, which they conflict with.

use std::time::Duration;

use clap::Args;

use super::{parse_count, parse_secs};

/// Positional `INTERVAL [COUNT]`.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct Every {
    /// Print every INTERVAL seconds (as --interval).
    #[arg(value_name = "INTERVAL", value_parser = parse_secs, conflicts_with = "interval")]
    pub every: Option<Duration>,
    /// Stop after COUNT rounds (as -c).
    #[arg(value_name = "COUNT", value_parser = parse_count, requires = "every", conflicts_with = "count")]
    pub rounds: Option<u64>,
}

impl Every {
    /// The interval: the positional one, else `--interval`'s.
    pub fn interval(&self, flag: Option<Duration>) -> Option<Duration> {
        self.every.or(flag)
    }

    /// The count: the positional one, else `-c`'s.
    pub fn count(&self, flag: Option<u64>) -> Option<u64> {
        self.rounds.or(flag)
    }
}
