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
    record::{FORMAT, FORMAT_BINARY, Line, frame},
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
    mut input: impl BufRead,
    view: &mut dyn View,
    opts: ReplayOptions,
    make_out: impl FnOnce(Mode) -> Output,
) -> Result<Output> {
    let mut line = Vec::new();
    if input.read_until(b'\n', &mut line)? == 0 {
        bail!("the recording is empty");
    }
    let header = match serde_json::from_slice::<Line>(&line) {
        Ok(Line::Header(h)) => h,
        _ => bail!("not a tcptrace recording: the first line is not a header"),
    };
    if header.format != FORMAT && header.format != FORMAT_BINARY {
        bail!(
            "recording format {} is not supported by this tcptrace (formats {FORMAT} and {FORMAT_BINARY})",
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
    let mut frame = [0u8; frame::LEN];
    // Records read, the header included.
    let mut n: u64 = 1;
    while !p.done() {
        let Some(&first) = input.fill_buf()?.first() else {
            break;
        };
        n += 1;
        let parsed = if first == frame::MARKER {
            if let Err(e) = input.read_exact(&mut frame) {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    truncated(n);
                    break;
                }
                return Err(e.into());
            }
            Line::Event(
                frame::decode(&frame).with_context(|| format!("record {n} of the recording"))?,
            )
        } else {
            line.clear();
            input.read_until(b'\n', &mut line)?;
            if line.trim_ascii().is_empty() {
                continue;
            }
            match serde_json::from_slice(&line) {
                Ok(l) => l,
                // The writer was stopped mid-line (disk full, SIGKILL).
                Err(_) if !line.ends_with(b"\n") => {
                    truncated(n);
                    break;
                }
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("record {n} of the recording"))
                    );
                }
            }
        };
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
            Line::Header(_) => bail!("record {n}: a second header"),
        }
        p.out.flush_if_full(|| now, &p.cx.clock);
    }
    p.out.flush_batch(now, &p.cx.clock);
    Ok(p.finish(now))
}

/// Says that the recording's last record is incomplete.
fn truncated(n: u64) {
    eprintln!(
        "tcptrace: warning: the recording ends in the middle of record {n} (was the recorder killed?); replayed what came before"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::{
        View,
        connect::Connect,
        hist::{Hist, Metric},
        resets::Resets,
        states::States,
        top::{SortBy, Top},
    };

    const LOOPBACK: &str = include_str!("../fixtures/recordings/loopback.jsonl");

    fn replay(view: &mut dyn View, filter: Filter) -> Vec<serde_json::Value> {
        replay_bytes(LOOPBACK.as_bytes(), view, filter)
    }

    fn replay_bytes(input: &[u8], view: &mut dyn View, filter: Filter) -> Vec<serde_json::Value> {
        let text = crate::views::testing::render(Mode::Json, |out| {
            let taken = std::mem::replace(out, Output::to_writer(Mode::Json, std::io::sink()));
            let opts = ReplayOptions {
                filter,
                mode: Mode::Json,
                count: None,
            };
            let done = replay_into(input, view, opts, |_| taken).unwrap();
            *out = done;
        });
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn port(p: u16) -> Filter {
        Filter {
            port: Some(p),
            ..Filter::default()
        }
    }

    #[test]
    fn connect_view_over_a_recording() {
        let recs = replay(&mut Connect::default(), Filter::default());
        let refused: Vec<_> = recs.iter().filter(|r| r["rport"] == 7999).collect();
        assert_eq!(refused.len(), 1, "{recs:#?}");
        assert_eq!(refused[0]["error"], "ECONNREFUSED");
        assert!(refused[0]["latency_us"].is_null());
        assert_eq!(refused[0]["comm"], "python3");
        let ok: Vec<_> = recs.iter().filter(|r| r["rport"] == 7998).collect();
        assert_eq!(ok.len(), 6);
        assert!(
            ok.iter()
                .all(|r| r["error"].is_null() && r["latency_us"].is_u64())
        );
        // The same wall-clock times as live: the recording's clock is used.
        assert!(
            ok[0]["ts"]
                .as_str()
                .unwrap()
                .starts_with("2026-11-22T12:51:47")
        );
    }

    #[test]
    fn resets_states_hist_and_top_over_a_recording() {
        let resets = replay(&mut Resets, port(7998));
        let dirs: Vec<&str> = resets
            .iter()
            .map(|r| r["direction"].as_str().unwrap())
            .collect();
        assert_eq!(dirs, ["received", "sent"]);
        let reset_reasons: Vec<&serde_json::Value> = resets.iter().map(|r| &r["reason"]).collect();
        assert_eq!(reset_reasons[1], "TCP_STATE");

        let states = replay(&mut States, port(7998));
        assert!(
            states
                .iter()
                .any(|r| r["old"] == "SYN_SENT" && r["new"] == "ESTABLISHED")
        );

        let hist = replay(
            &mut Hist::new(Metric::Handshake, false, None),
            Filter::default(),
        );
        let d = hist.iter().find(|r| r["key"] == "127.0.0.1:7998").unwrap();
        assert_eq!(d["count"], 6);

        let rtt = replay(&mut Hist::new(Metric::Rtt, false, None), port(7998));
        assert!(rtt.iter().all(|r| r["metric"] == "rtt"));
        assert!(
            rtt.iter().any(|r| r["count"].as_u64().unwrap() > 0),
            "{rtt:?}"
        );

        let top = replay(
            &mut Top::new(SortBy::Age, u64::MAX / 2, 100, false, true),
            port(7998),
        );
        let last = top.last().unwrap();
        assert_eq!(last["census"]["TIME_WAIT"], 5, "{last:#}");
    }

    /// The loopback recording with its events as binary frames.
    fn as_binary(json: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in json.lines() {
            match serde_json::from_str::<Line>(l).unwrap() {
                Line::Header(mut h) => {
                    h.format = FORMAT_BINARY;
                    serde_json::to_writer(&mut out, &Line::Header(h)).unwrap();
                    out.push(b'\n');
                }
                Line::Event(ev) => frame::encode(&mut out, &ev),
                _ => {
                    out.extend_from_slice(l.as_bytes());
                    out.push(b'\n');
                }
            }
        }
        out
    }

    #[test]
    fn a_binary_recording_replays_like_its_json_twin() {
        let bin = as_binary(LOOPBACK);
        assert!(
            bin.len() * 2 < LOOPBACK.len(),
            "{} vs {}",
            bin.len(),
            LOOPBACK.len()
        );
        let f = Filter::default;
        assert_eq!(
            replay_bytes(&bin, &mut Connect::default(), f()),
            replay(&mut Connect::default(), f())
        );
        assert_eq!(
            replay_bytes(&bin, &mut States, f()),
            replay(&mut States, f())
        );
        assert_eq!(
            replay_bytes(&bin, &mut Resets, f()),
            replay(&mut Resets, f())
        );
        let top = || Top::new(SortBy::Age, u64::MAX / 2, 100, false, true);
        assert_eq!(replay_bytes(&bin, &mut top(), f()), replay(&mut top(), f()));
    }

    #[test]
    fn a_truncated_recording_replays_what_came_before() {
        let bin = as_binary(LOOPBACK);
        let all = replay_bytes(&bin, &mut States, Filter::default()).len();
        // Cut inside the last event frame.
        let last = bin.iter().rposition(|&b| b == frame::MARKER).unwrap();
        let cut = replay_bytes(&bin[..last + 10], &mut States, Filter::default()).len();
        assert!(cut > 0 && cut < all, "{cut} of {all}");
        // And in the middle of a JSON line.
        let json = LOOPBACK.trim_end();
        let cut = replay_bytes(
            &json.as_bytes()[..json.len() - 5],
            &mut States,
            Filter::default(),
        );
        assert!(!cut.is_empty());
    }

    #[test]
    fn the_same_recording_gives_the_same_output() {
        let a = replay(&mut Connect::default(), Filter::default());
        let b = replay(&mut Connect::default(), Filter::default());
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_what_is_not_a_recording() {
        let err = replay_into(
            "{\"type\":\"state\"}\n".as_bytes(),
            &mut States,
            ReplayOptions {
                filter: Filter::default(),
                mode: Mode::Json,
                count: None,
            },
            |m| Output::to_writer(m, std::io::sink()),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("not a tcptrace recording"),
            "{err}"
        );
    }
}
