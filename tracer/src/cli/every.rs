//! `INTERVAL [COUNT]` as positional arguments, the way `vmstat`, `iostat`
//! and bcc's `tcptop` take them (`tcptrace top 1 10`, `tcptrace stat 5`):
//! the same as `--interval` and `-c`, which they conflict with (so a
//! subcommand that flattens this also has those two flags).

use std::time::Duration;

use clap::Args;

use super::{parse_count, parse_secs};

/// Positional `INTERVAL [COUNT]`.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct Every {
    /// Print every INTERVAL seconds (as --interval).
    #[arg(value_name = "INTERVAL", value_parser = parse_secs, allow_negative_numbers = true, conflicts_with = "interval")]
    pub every: Option<Duration>,
    /// Stop after COUNT rounds (as -c).
    #[arg(value_name = "COUNT", value_parser = parse_count, allow_negative_numbers = true, requires = "every", conflicts_with = "count")]
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser as _;

    use crate::cli::{Cli, Command, ViewCommand};

    fn view(args: &[&str]) -> Result<ViewCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("tcptrace").chain(args.iter().copied()))?;
        match cli.command {
            Command::View(v) | Command::Replay { view: v, .. } => Ok(v),
            _ => panic!("not a view"),
        }
    }

    #[test]
    fn interval_and_count_as_positional_arguments() {
        let v = view(&["top", "1", "10"]).unwrap();
        assert_eq!(
            (v.interval(), v.count()),
            (Some(Duration::from_secs(1)), Some(10))
        );
        assert_eq!(v.output(false).count, Some(10));
        let v = view(&["hist", "0.5"]).unwrap();
        assert_eq!(
            (v.interval(), v.count()),
            (Some(Duration::from_millis(500)), None)
        );
        let v = view(&["replay", "x.jsonl", "hist", "2", "3", "--json"]).unwrap();
        assert_eq!(
            (v.interval(), v.count()),
            (Some(Duration::from_secs(2)), Some(3))
        );
        // The flags still work, and top's default interval is a second.
        let v = view(&["top", "--interval", "5", "-c", "2"]).unwrap();
        assert_eq!(
            (v.interval(), v.count()),
            (Some(Duration::from_secs(5)), Some(2))
        );
        let v = view(&["top"]).unwrap();
        assert_eq!(
            (v.interval(), v.count()),
            (Some(Duration::from_secs(1)), None)
        );
        // hist: -c N is N rounds, one a second unless told otherwise.
        let v = view(&["hist", "-c", "1"]).unwrap();
        assert_eq!(
            (v.interval(), v.count()),
            (Some(Duration::from_secs(1)), Some(1))
        );
        assert_eq!(view(&["hist"]).unwrap().interval(), None);
    }

    #[test]
    fn positional_and_flag_together_are_usage_errors() {
        for args in [
            &["top", "1", "--interval", "2"][..],
            &["top", "1", "10", "-c", "3"][..],
            &["hist", "0", "1"][..],
            &["hist", "1", "0"][..],
            &["top", "x"][..],
        ] {
            let e = view(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
        // Only the views that print in rounds take them.
        assert_eq!(view(&["states", "1"]).unwrap_err().exit_code(), 2);
    }
}
