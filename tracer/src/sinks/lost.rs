//! What never reached the output, by source, until it is said: as `lost`
//! records at the head of the next batch that gets out (JSON, recordings)
//! or as one aggregated warning line on stderr at most once a second
//! (text). A count leaves the ledger only once the batch carrying it was
//! queued, so a lost record is never itself lost.

use std::time::{Duration, Instant};

use super::escape;

pub use crate::record::lost::{KERNEL, KERNEL_NESTED, OUTPUT, UNREADABLE};

/// At most one warning line this often in text mode.
const WARN_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct Ledger {
    /// Not yet said, in the order sources first appeared.
    pending: Vec<(String, u64)>,
    last_warning: Option<Instant>,
}

impl Ledger {
    pub fn add(&mut self, source: &str, n: u64) {
        if n == 0 {
            return;
        }
        match self.pending.iter_mut().find(|(s, _)| s == source) {
            Some((_, c)) => *c += n,
            None => self.pending.push((source.to_string(), n)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// What is pending, to put at the head of a batch; [`Self::said`]
    /// once that batch is queued.
    pub fn pending(&self) -> &[(String, u64)] {
        &self.pending
    }

    /// The first `n` pending entries were said.
    pub fn said(&mut self, n: usize) {
        self.pending.drain(..n.min(self.pending.len()));
    }

    /// Text mode: prints the pending counts as one line on stderr, unless
    /// one was printed less than a second ago (and not `now`).
    pub fn warn(&mut self, force: bool) {
        if self.pending.is_empty()
            || (!force && self.last_warning.is_some_and(|t| t.elapsed() < WARN_EVERY))
        {
            return;
        }
        self.last_warning = Some(Instant::now());
        let parts: Vec<String> = self
            .pending
            .drain(..)
            .map(|(source, n)| match source.as_str() {
                KERNEL => {
                    format!("{n} events (the kernel ring buffer was full: the reader fell behind)")
                }
                KERNEL_NESTED => format!(
                    "{n} events (the kernel skipped them while our program was already running on that CPU)"
                ),
                OUTPUT => format!("{n} records (the output was read too slowly)"),
                UNREADABLE => format!(
                    "{n} events (fields the kernel would not let us read; see `tcptrace check`)"
                ),
                other => format!("{n} ({})", escape::to_string(other.as_bytes(), 32)),
            })
            .collect();
        crate::stderr::say(format_args!("warning: lost {}", parts.join("; ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_source_until_said() {
        let mut l = Ledger::default();
        l.add(KERNEL, 3);
        l.add(OUTPUT, 0);
        l.add(OUTPUT, 2);
        l.add(KERNEL, 4);
        assert_eq!(
            l.pending(),
            [(KERNEL.to_string(), 7), (OUTPUT.to_string(), 2)]
        );
        l.said(1);
        assert_eq!(l.pending(), [(OUTPUT.to_string(), 2)]);
        l.warn(true);
        assert!(l.is_empty());
    }
}
