//! Views: what each subcommand makes of the annotated event stream and of
//! the engine's state.

pub mod agent;
pub mod check;
pub mod connect;
pub mod doctor;
pub mod hist;
pub mod record;
pub mod records;
pub mod resets;
pub mod retrans;
pub mod stat;
pub mod states;
pub mod top;
pub mod verdict;

use crate::{
    engine::{Annotated, Engine, flows::ConnectOutcome, flows::Rtt},
    filter::Filter,
    hooks::Wants,
};
pub use records::{Columns, Emit, Rec};

/// What every view may consult: the kernel's names of reset reasons and
/// the user's filter (already applied to what the view is handed; views
/// that read the engine's tables use it to choose flows).
#[derive(Clone, Debug, Default)]
pub struct Context {
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

/// A view of the event stream: it says what happened as [`Rec`]ords and
/// never formats them.
pub trait View {
    /// The hooks this view needs.
    fn wants(&self) -> Wants;
    /// Engine settings the view asks for.
    fn engine_config(&self) -> crate::engine::Config {
        crate::engine::Config::default()
    }
    /// The text columns its records fill.
    fn columns(&self) -> Columns {
        Columns::None
    }
    /// One event that passed the filter.
    fn on_event(&mut self, _a: &Annotated, _cx: &Context, _out: &mut dyn Emit) {}
    /// One connection outcome that passed the filter.
    fn on_connect(&mut self, _o: &ConnectOutcome, _cx: &Context, _out: &mut dyn Emit) {}
    /// Sockets from before the run (those the filter lets through, and
    /// every listener), before the engine takes them in.
    fn on_seeds(&mut self, _seeds: &crate::pipeline::Seeds, _out: &mut dyn Emit) {}
    /// A socket's RTT histogram as read from the kernel.
    fn on_rtt(&mut self, _sock: u64, _now_ns: u64, _rtt: &Rtt, _out: &mut dyn Emit) {}
    /// Whether the view reads the kernel's TCP counters (`Some`), and what
    /// with them (a census per state, the socket tables and sysctls).
    fn counters(&self) -> Option<crate::counters::Reading> {
        None
    }
    /// A reading of the kernel's counters (live only, about every second,
    /// once at the start and once at the end).
    fn on_counters(&mut self, _c: &crate::counters::Counters, _out: &mut dyn Emit) {}
    /// Time passes (about every 10 ms live; with event time in replay).
    fn on_tick(&mut self, _engine: &Engine, _now_ns: u64, _cx: &Context, _out: &mut dyn Emit) {}
    /// A key pressed on the screen (not `q`: the pipeline ends the run).
    fn on_key(
        &mut self,
        _key: crate::keys::Key,
        _engine: &Engine,
        _cx: &Context,
        _out: &mut dyn Emit,
    ) {
    }
    /// The end of input.
    fn finish(&mut self, _engine: &Engine, _now_ns: u64, _cx: &Context, _out: &mut dyn Emit) {}
}

#[cfg(test)]
pub(crate) mod testing {
    //! Collecting what a view emits.
    use super::{Emit, Rec};

    /// Records as their `Debug` text, or counted.
    #[derive(Default)]
    pub struct Collect(pub Vec<String>);

    impl Emit for Collect {
        fn emit(&mut self, rec: &Rec<'_>) {
            self.0.push(format!("{rec:?}"));
        }
    }

    /// A context with the reset reasons of the fixtures.
    pub fn context() -> super::Context {
        super::Context {
            reset_reasons: vec![(1, "NO_SOCKET".into()), (11, "TCP_ABORT_ON_CLOSE".into())],
            filter: super::Filter::default(),
        }
    }
}
