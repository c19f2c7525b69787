//! The path every event takes after its source (the live kernel or a
//! recording): engine, filter, view, output; plus time ticks, RTT snapshots
//! and the end of input. Sources differ; this does not.

use crate::{
    engine::{Engine, flows::Rtt},
    event::Event,
    sinks::Output,
    views::{Context, View},
};

pub struct Pipeline<'a> {
    pub engine: Engine,
    pub view: &'a mut dyn View,
    pub out: Output,
    pub cx: Context,
    written: u64,
    limit: Option<u64>,
}

impl<'a> Pipeline<'a> {
    pub fn new(view: &'a mut dyn View, out: Output, cx: Context, limit: Option<u64>) -> Self {
        Self {
            engine: Engine::new(view.engine_config()),
            view,
            out,
            cx,
            written: 0,
            limit,
        }
    }

    /// Prints the view's text header, if any.
    pub fn header(&mut self) {
        if self.out.mode == crate::sinks::Mode::Text
            && let Some(h) = self.view.text_header()
        {
            self.out.buf.extend_from_slice(h.trim_end().as_bytes());
            self.out.buf.push(b'\n');
            self.out.flush_blocking();
        }
    }

    /// `--count` reached, or the output has gone.
    pub fn done(&self) -> bool {
        self.limit.is_some_and(|n| self.written >= n) || self.out.is_closed()
    }

    fn count(&mut self, wrote: bool) {
        if wrote {
            self.written += 1;
        }
    }

    /// One event.
    pub fn feed(&mut self, ev: &Event) {
        let a = self.engine.process(ev);
        if self.cx.filter.matches(&a) {
            let wrote = self.view.on_event(&a, &mut self.out, &self.cx);
            self.count(wrote);
        }
        self.outcomes();
    }

    fn outcomes(&mut self) {
        for o in self.engine.take_outcomes() {
            let lport_known = o.tuple.lport != 0;
            if self.done()
                || !self
                    .cx
                    .filter
                    .matches_flow(&o.tuple, o.owner.as_ref(), lport_known)
            {
                continue;
            }
            let wrote = self.view.on_connect(&o, &mut self.out, &self.cx);
            self.count(wrote);
        }
    }

    /// A socket's RTT histogram.
    pub fn rtt(&mut self, sock: u64, now_ns: u64, rtt: Rtt) {
        self.engine.set_rtt(sock, rtt);
        self.view.on_rtt(sock, now_ns, &rtt, &mut self.out);
    }

    /// Time passes.
    pub fn tick(&mut self, now_ns: u64) {
        self.engine.advance(now_ns);
        self.outcomes();
        if !self.done() {
            let wrote = self
                .view
                .on_tick(&self.engine, now_ns, &mut self.out, &self.cx);
            self.count(wrote);
        }
    }

    /// The end of input; returns the output to be closed.
    pub fn finish(mut self, now_ns: u64) -> Output {
        self.engine.advance(now_ns);
        self.engine.finish();
        self.outcomes();
        if !self.out.is_closed() {
            self.view
                .finish(&self.engine, now_ns, &mut self.out, &self.cx);
        }
        self.out
    }
}
