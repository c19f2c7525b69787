//! Views: what each subcommand makes of the annotated event stream.

pub mod check;
pub mod retrans;
pub mod states;

use crate::{
    engine::Annotated,
    sinks::{Output, format::Clock},
};

/// A view of the event stream.
pub trait View {
    /// The column header for text output, if any.
    fn text_header(&self) -> Option<String> {
        None
    }
    /// Handles one event that passed the filters; returns whether it wrote
    /// a record (records count towards `--count`).
    fn on_event(&mut self, a: &Annotated, out: &mut Output, clock: &Clock) -> bool;
}
