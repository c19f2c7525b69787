//! Views: what each subcommand makes of the annotated event stream and of
//! the engine's state.

pub mod check;
pub mod connect;
pub mod hist;
pub mod record;
pub mod resets;
pub mod retrans;
pub mod states;
pub mod top;

use crate::{
    engine::{Annotated, Engine, flows::ConnectOutcome},
    filter::Filter,
    hooks::Wants,
    sinks::{Output, format::Clock},
};

/// What every view may consult: wall-clock conversion, the kernel's names
/// of reset reasons, and the user's filter.
#[derive(Clone, Debug)]
pub struct Context {
    pub clock: Clock,
    pub reset_reasons: Vec<(i64, String)>,
    pub filter: Filter,
}

impl Context {
    /// The kernel's name of a reset reason.
    pub fn reset_reason(&self, code: u32) -> Option<&str> {
        self.reset_reasons
            .iter()
            .find(|(n, _)| *n == i64::from(code))
            .map(|(_, s)| s.as_str())
    }
}

/// A view of the event stream. Methods return whether they wrote a record
/// (records count towards `--count`).
pub trait View {
    /// The hooks this view needs.
    fn wants(&self) -> Wants;
    /// Engine settings the view asks for.
    fn engine_config(&self) -> crate::engine::Config {
        crate::engine::Config::default()
    }
    /// A live run has attached its hooks (`record` writes its header).
    fn start(&mut self, _report: &crate::hooks::Report, _cx: &Context, _out: &mut Output) {}
    /// The column header for text output, if any.
    fn text_header(&self) -> Option<String> {
        None
    }
    /// One event that passed the filters.
    fn on_event(&mut self, _a: &Annotated, _out: &mut Output, _cx: &Context) -> bool {
        false
    }
    /// One connection outcome that passed the filters.
    fn on_connect(&mut self, _o: &ConnectOutcome, _out: &mut Output, _cx: &Context) -> bool {
        false
    }
    /// A socket's RTT histogram as read from the kernel.
    fn on_rtt(
        &mut self,
        _sock: u64,
        _now_ns: u64,
        _rtt: &crate::engine::flows::Rtt,
        _out: &mut Output,
    ) {
    }
    /// Time passes (about every 10 ms live; with event time in replay).
    fn on_tick(
        &mut self,
        _engine: &Engine,
        _now_ns: u64,
        _out: &mut Output,
        _cx: &Context,
    ) -> bool {
        false
    }
    /// The end of input.
    fn finish(&mut self, _engine: &Engine, _now_ns: u64, _out: &mut Output, _cx: &Context) {}
}

#[cfg(test)]
pub(crate) mod testing {
    //! Rendering a view's output to a string.
    use std::sync::mpsc;

    use crate::sinks::{Mode, Output};

    struct W(mpsc::Sender<Vec<u8>>);
    impl std::io::Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `f` with an output in `mode` and returns what it wrote.
    pub fn render(mode: Mode, f: impl FnOnce(&mut Output)) -> String {
        let (tx, rx) = mpsc::channel();
        let mut out = Output::to_writer(mode, W(tx));
        f(&mut out);
        out.close();
        rx.iter().flatten().map(char::from).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A context whose clock puts monotonic zero at 2026-11-22T12:00:00Z.
    pub fn context() -> Context {
        Context {
            clock: Clock::with_offset(1_795_348_800_000_000_000),
            reset_reasons: vec![(1, "NO_SOCKET".into()), (11, "TCP_ABORT_ON_CLOSE".into())],
            filter: Filter::default(),
        }
    }
}
