//! The replay source: reads a recording ([`crate::record`]) and feeds the
//! same [`Pipeline`] a live run would, with the recording's clock, so every
//! view prints what it would have printed live.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    path::Path,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    filter::Filter,
    pipeline::Pipeline,
    record::{FORMAT, Line},
    sinks::{Mode, Output, format::Clock},
    views::{Context, View},
};

/// How often, in event time, the pipeline gets a tick.
const TICK_NS: u64 = 10_000_000;

/// Options for a replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub filter: Filter,
    pub mode: Mode,
    pub count: Option<u64>,
}

/// Replays `path` (`-` for standard input) through `view`.
pub fn run(path: &Path, view: &mut dyn View, opts: ReplayOptions) -> Result<()> {
    let input: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
    };
    let out = replay_into(BufReader::new(input), view, opts, Output::stdout)?;
    let unreported = out.close();
    if unreported > 0 {
        eprintln!(
            "tcptrace: warning: {unreported} records dropped because the output was too slow"
        );
    }
    Ok(())
}

/// Replays `input` into an output made by `make_out`; returns the output
/// to be closed.
pub fn replay_into(
    input: impl BufRead,
    view: &mut dyn View,
    opts: ReplayOptions,
    make_out: impl FnOnce(Mode) -> Output,
) -> Result<Output> {
    let mut lines = input.lines().enumerate();
    let header = match lines.next() {
        Some((_, line)) => match serde_json::from_str::<Line>(&line?) {
            Ok(Line::Header(h)) => h,
            _ => bail!("not a tcptrace recording: the first line is not a header"),
        },
        None => bail!("the recording is empty"),
    };
    if header.format != FORMAT {
        bail!(
            "recording format {} is not supported by this tcptrace (format {FORMAT})",
            header.format
        );
    }
    let cx = Context {
        clock: Clock::with_offset(i128::from(header.clock_offset_ns)),
        reset_reasons: header.reset_reasons,
        filter: opts.filter,
    };
    let mut p = Pipeline::new(view, make_out(opts.mode), cx, opts.count);
    p.header();
    let mut last_tick = 0;
    let mut now = 0;
    for (n, line) in lines {
        if p.done() {
            break;
        }
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line)
            .with_context(|| format!("line {} of the recording", n + 1))?;
        match parsed {
            Line::Event(ev) => {
                now = now.max(ev.ts_ns);
                if now >= last_tick + TICK_NS {
                    if last_tick != 0 {
                        p.tick(now);
                    }
                    last_tick = now;
                }
                p.feed(&ev);
            }
            Line::Rtt(r) => {
                now = now.max(r.ts_ns);
                p.rtt(r.sock, r.ts_ns, r.rtt());
            }
            Line::Lost(l) => match p.out.mode {
                Mode::Json => {
                    let _ = serde_json::to_writer(&mut p.out.buf, &Line::Lost(l));
                    p.out.buf.push(b'\n');
                }
                Mode::Text => eprintln!(
                    "tcptrace: warning: the recording lost {} events ({})",
                    l.count, l.source
                ),
            },
            Line::Header(_) => bail!("line {}: a second header", n + 1),
        }
        if n % 4096 == 0 {
            p.out.flush_batch(now, &p.cx.clock);
        }
    }
    p.out.flush_batch(now, &p.cx.clock);
    Ok(p.finish(now))
}
