//! `tcptrace connect`: one record per connection attempt, with the
//! handshake latency or the errno it failed with.

use super::{Columns, Context, Emit, View, records::Rec};
use crate::{engine::flows::ConnectOutcome, hooks::Wants};

#[derive(Debug, Default)]
pub struct Connect {
    /// Successful connects faster than this are not shown.
    pub min_ns: u64,
}

impl View for Connect {
    fn engine_config(&self) -> crate::engine::Config {
        crate::engine::Config::streaming()
    }

    fn wants(&self) -> Wants {
        Wants::FLOWS
    }

    fn columns(&self) -> Columns {
        Columns::Connect
    }

    fn on_connect(&mut self, o: &ConnectOutcome, _cx: &Context, out: &mut dyn Emit) {
        if o.latency_ns.is_some_and(|l| l < self.min_ns) {
            return;
        }
        out.emit(&Rec::Connect(o));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::tests::outcome,
        views::testing::{Collect, context},
    };

    #[test]
    fn min_ms_hides_fast_successes_only() {
        let cx = context();
        let mut v = Connect { min_ns: 2_000_000 };
        let mut out = Collect::default();
        v.on_connect(&outcome(Some(1_000_000), None), &cx, &mut out);
        assert!(out.0.is_empty());
        v.on_connect(&outcome(Some(3_000_000), None), &cx, &mut out);
        v.on_connect(&outcome(None, Some(110)), &cx, &mut out);
        assert_eq!(out.0.len(), 2);
    }
}
