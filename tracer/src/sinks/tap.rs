//! A second consumer of everything an output sees: every record (before
//! `--count` and the `--events` choice, which concern the rendered output
//! only), every lost count, and the records the output's own bounded queue
//! dropped. `tcptrace agent` hangs its metrics here, so one view's records
//! reach the log and the metrics through one pipeline. A tap runs on the
//! reader's thread and must be quick: it never blocks.

use crate::{record::Start, views::records::Rec};

pub trait Tap {
    /// The run began.
    fn start(&mut self, _start: &Start) {}
    /// Cgroup `id` (in owners' `cgroup`) is named `info`.
    fn cgroup(&mut self, _id: u64, _info: &crate::cgroups::CgroupInfo) {}
    /// Cgroup `id` is gone.
    fn cgroup_gone(&mut self, _id: u64) {}
    /// One record a view produced.
    fn record(&mut self, rec: &Rec<'_>);
    /// `n` events or records from `source` never reached the output.
    fn lost(&mut self, source: &str, n: u64);
    /// `n` records the queue of `sink` dropped (the reader was slow).
    fn dropped(&mut self, sink: &'static str, n: u64);
    /// The kernel's ring was at most `used` of `size` bytes full over the
    /// last second.
    fn ring(&mut self, _used: u64, _size: u64) {}
    /// Time passes (at most every 10 ms).
    fn tick(&mut self) {}
}

/// Which record types the rendered output keeps (`--events`); `lost`
/// records always go through.
#[derive(Clone, Debug, Default)]
pub struct Types(Option<Vec<&'static str>>);

impl Types {
    /// Only records whose JSON `type` is one of `names`.
    pub fn only(names: Vec<&'static str>) -> Self {
        Self(Some(names))
    }

    pub fn keeps(&self, rec: &Rec<'_>) -> bool {
        self.0
            .as_ref()
            .is_none_or(|names| names.contains(&rec.type_name()))
    }
}
