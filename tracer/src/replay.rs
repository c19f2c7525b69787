//! The replay source: reads a recording ([`crate::record`]) and pushes the
//! same inputs a live run pushed, with the recording's clock, into the
//! [`Pipeline`], so every view prints what it would have printed live.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    path::Path,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    pipeline::{Input, Pipeline},
    record::{FORMAT, FORMAT_BINARY, FORMAT_BINARY_2, FORMAT_BINARY_3, Line, Start, frame},
};

/// How often, in event time, the pipeline gets a tick.
const TICK_NS: u64 = 10_000_000;
/// The longest line a recording may hold (a header with the kernel's
/// reset reasons is a few KiB): a file of NULs or random bytes must not
/// be read into memory whole.
const MAX_LINE: u64 = 1 << 20;

/// Replays `path` (`-` for standard input) through `p`, then closes it.
/// With `keys` (`top` on a terminal) the last table stays up after the
/// recording's end, taking keys, until `q`.
pub fn run(
    path: &Path,
    mut p: Pipeline,
    keys: Option<tokio::sync::mpsc::UnboundedReceiver<crate::keys::Key>>,
) -> Result<()> {
    let input: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
    };
    // A damaged recording still shows what came before the damage.
    let replayed = replay_into(BufReader::new(input), &mut p);
    if let Some(mut keys) = keys {
        while !p.done() {
            let Some(k) = keys.blocking_recv() else { break };
            p.push(Input::Key(k));
        }
    }
    let closed = p.finish();
    replayed.with_context(|| format!("replaying {}", path.display()))?;
    closed
}

/// Pushes the recording `input` into `p`, up to its end.
pub fn replay_into(mut input: impl BufRead, p: &mut Pipeline) -> Result<()> {
    let mut line = Vec::new();
    if read_line(&mut input, &mut line, 1)? == 0 {
        bail!("the recording is empty");
    }
    let header = match serde_json::from_slice::<Line>(&line) {
        Ok(Line::Header(h)) => h,
        _ => bail!("not a tcptrace recording: the first line is not a header"),
    };
    if ![FORMAT, FORMAT_BINARY_2, FORMAT_BINARY_3, FORMAT_BINARY].contains(&header.format) {
        bail!(
            "recording format {} is not supported by this tcptrace (formats {FORMAT} to {FORMAT_BINARY})",
            header.format
        );
    }
    p.push(Input::Start(Start::of(&header)));
    let mut last_tick: u64 = 0;
    let mut now = 0;
    let mut frame = vec![0u8; frame::len(header.format)];
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
            read_line(&mut input, &mut line, n)?;
            if line.trim_ascii().is_empty() {
                continue;
            }
            match serde_json::from_slice(&line) {
                Ok(l) => l,
                // The writer was stopped mid-line (disk full, SIGKILL): a
                // last line cut short, of text. NULs or other binary are
                // damage, not a cut.
                Err(_) if !line.ends_with(b"\n") && is_text(&line) => {
                    truncated(n);
                    break;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "record {n} of the recording is damaged ({} records replayed before it)",
                        n - 2
                    )));
                }
            }
        };
        match parsed {
            Line::Event(ev) => {
                now = now.max(ev.ts_ns);
                if now >= last_tick.saturating_add(TICK_NS) {
                    if last_tick != 0 {
                        p.push(Input::Tick(now));
                    }
                    last_tick = now;
                }
                p.push(Input::Event(ev));
            }
            Line::Rtt(r) => {
                now = now.max(r.ts_ns);
                p.push(Input::Rtt {
                    ts_ns: r.ts_ns,
                    sock: r.sock,
                    rtt: Box::new(r.rtt()),
                });
            }
            Line::Lost(l) => p.push(Input::Lost {
                source: l.source,
                count: l.count,
            }),
            Line::Seeds(s) => p.push(Input::Seeds(Box::new(s.seeds()))),
            Line::Cgroup(c) => p.push(Input::Cgroup {
                id: c.id,
                path: c.path,
            }),
            Line::Header(_) => bail!("record {n}: a second header"),
        }
    }
    p.push(Input::End(now));
    Ok(())
}

/// Reads one line (with its newline) of at most [`MAX_LINE`] bytes.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>, n: u64) -> Result<usize> {
    let got = input.take(MAX_LINE).read_until(b'\n', line)?;
    if got as u64 == MAX_LINE && !line.ends_with(b"\n") {
        bail!(
            "record {n} of the recording is longer than {} MiB: not a tcptrace recording, or damaged",
            MAX_LINE >> 20
        );
    }
    Ok(got)
}

/// Whether a cut line looks like the start of a JSON line.
fn is_text(line: &[u8]) -> bool {
    line.first() == Some(&b'{') && !line.iter().any(|&b| b == 0 || b == b'\n')
}

/// Says that the recording's last record is incomplete.
fn truncated(n: u64) {
    crate::stderr::say(format_args!(
        "warning: the recording ends in the middle of record {n} (was the recorder killed?); replayed what came before"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        filter::Filter,
        sinks::{Mode, testing::capture},
        views::{
            View,
            connect::Connect,
            hist::{Hist, Metric},
            resets::Resets,
            states::States,
            top::{SortBy, Top},
        },
    };

    const LOOPBACK: &str = include_str!("../fixtures/recordings/loopback.jsonl");

    fn replay(view: impl View + 'static, filter: Filter) -> Vec<serde_json::Value> {
        replay_bytes(LOOPBACK.as_bytes(), view, filter)
    }

    fn replay_bytes(
        input: &[u8],
        view: impl View + 'static,
        filter: Filter,
    ) -> Vec<serde_json::Value> {
        let (out, got) = capture(Mode::Json, None);
        let mut p = Pipeline::with_output(Box::new(view), filter, out);
        replay_into(input, &mut p).unwrap();
        p.finish().unwrap();
        got.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn port(p: u16) -> Filter {
        Filter {
            ports: vec![p],
            ..Filter::default()
        }
    }

    #[test]
    fn connect_view_over_a_recording() {
        let recs = replay(Connect::default(), Filter::default());
        let refused: Vec<_> = recs.iter().filter(|r| r["rport"] == 7999).collect();
        assert_eq!(refused.len(), 1, "{recs:#?}");
        assert_eq!(refused[0]["error"], "ECONNREFUSED");
        assert!(refused[0]["handshake_us"].is_null());
        assert_eq!(refused[0]["comm"], "python3");
        let ok: Vec<_> = recs.iter().filter(|r| r["rport"] == 7998).collect();
        assert_eq!(ok.len(), 6);
        assert!(
            ok.iter()
                .all(|r| r["error"].is_null() && r["handshake_us"].is_u64())
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
        let resets = replay(Resets, port(7998));
        let dirs: Vec<&str> = resets
            .iter()
            .map(|r| r["direction"].as_str().unwrap())
            .collect();
        assert_eq!(dirs, ["received", "sent"]);
        let reset_reasons: Vec<&serde_json::Value> = resets.iter().map(|r| &r["reason"]).collect();
        assert_eq!(reset_reasons[1], "TCP_STATE");

        let states = replay(States, port(7998));
        assert!(
            states
                .iter()
                .any(|r| r["old"] == "SYN_SENT" && r["new"] == "ESTABLISHED")
        );

        let hist = replay(Hist::new(Metric::Handshake, false, None), Filter::default());
        let d = hist
            .iter()
            .find(|r| r["raddr"] == "127.0.0.1" && r["rport"] == 7998)
            .unwrap();
        assert_eq!(d["count"], 6);

        let rtt = replay(Hist::new(Metric::Rtt, false, None), port(7998));
        assert!(rtt.iter().all(|r| r["metric"] == "rtt"));
        assert!(
            rtt.iter().any(|r| r["count"].as_u64().unwrap() > 0),
            "{rtt:?}"
        );

        let top = replay(
            Top::new(SortBy::Age, u64::MAX / 2, 100, false, true),
            port(7998),
        );
        let last = top.last().unwrap();
        assert_eq!(last["census"]["TIME_WAIT"], 5, "{last:#}");
    }

    /// The loopback recording with its events as binary frames.
    fn as_binary(json: &str) -> Vec<u8> {
        as_binary_format(json, FORMAT_BINARY)
    }

    /// ... of recording `format` (2: frames without the namespace).
    fn as_binary_format(json: &str, format: u32) -> Vec<u8> {
        let mut out = Vec::new();
        for l in json.lines() {
            match serde_json::from_str::<Line>(l).unwrap() {
                Line::Header(mut h) => {
                    h.format = format;
                    serde_json::to_writer(&mut out, &Line::Header(h)).unwrap();
                    out.push(b'\n');
                }
                Line::Event(ev) => {
                    frame::encode(&mut out, &ev);
                    out.truncate(out.len() + frame::len(format) - frame::LEN);
                }
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
            replay_bytes(&bin, Connect::default(), f()),
            replay(Connect::default(), f())
        );
        assert_eq!(replay_bytes(&bin, States, f()), replay(States, f()));
        assert_eq!(replay_bytes(&bin, Resets, f()), replay(Resets, f()));
        let top = || Top::new(SortBy::Age, u64::MAX / 2, 100, false, true);
        assert_eq!(replay_bytes(&bin, top(), f()), replay(top(), f()));
    }

    /// Recordings from before the namespace: format 2 frames, and JSON
    /// event lines without `netns` (the fixture is one), replay with
    /// namespace 0; a recording with namespaces keeps them.
    #[test]
    fn older_recordings_replay_with_namespace_0() {
        let f = Filter::default;
        let old = as_binary_format(LOOPBACK, FORMAT_BINARY_2);
        assert_eq!(
            replay_bytes(&old, States, f()),
            replay(States, f()),
            "format 2"
        );
        let states = replay(States, f());
        assert!(states.iter().all(|r| r["netns"] == 0), "{states:#?}");

        let with_ns: String = LOOPBACK
            .lines()
            .map(|l| match serde_json::from_str::<Line>(l).unwrap() {
                Line::Event(mut ev) => {
                    ev.tuple.netns = 4_026_532_001;
                    serde_json::to_string(&Line::Event(ev)).unwrap() + "\n"
                }
                _ => format!("{l}\n"),
            })
            .collect();
        for bytes in [with_ns.clone().into_bytes(), as_binary(&with_ns)] {
            let states = replay_bytes(&bytes, States, f());
            assert!(!states.is_empty());
            assert!(states.iter().all(|r| r["netns"] == 4_026_532_001u64));
            let other = Filter {
                netns: Some(4_026_532_002),
                ..f()
            };
            assert!(replay_bytes(&bytes, States, other).is_empty());
        }
    }

    #[test]
    fn a_truncated_recording_replays_what_came_before() {
        let bin = as_binary(LOOPBACK);
        let all = replay_bytes(&bin, States, Filter::default()).len();
        // Cut inside the last event frame.
        let last = bin.iter().rposition(|&b| b == frame::MARKER).unwrap();
        let cut = replay_bytes(&bin[..last + 10], States, Filter::default()).len();
        assert!(cut > 0 && cut < all, "{cut} of {all}");
        // And in the middle of a JSON line.
        let json = LOOPBACK.trim_end();
        let cut = replay_bytes(
            &json.as_bytes()[..json.len() - 5],
            States,
            Filter::default(),
        );
        assert!(!cut.is_empty());
    }

    #[test]
    fn the_same_recording_gives_the_same_output() {
        let a = replay(Connect::default(), Filter::default());
        let b = replay(Connect::default(), Filter::default());
        assert!(!a.is_empty());
        assert_eq!(a, b);
    }

    fn replay_err(input: &[u8]) -> String {
        let (out, _) = capture(Mode::Json, None);
        let mut p = Pipeline::with_output(Box::new(States), Filter::default(), out);
        let r = replay_into(input, &mut p);
        p.finish().unwrap();
        format!("{:#}", r.expect_err("an error"))
    }

    #[test]
    fn damage_is_an_error_not_a_cut() {
        // A header followed by NULs (a preallocated file, a crash).
        let mut v = LOOPBACK.lines().next().unwrap().as_bytes().to_vec();
        v.push(b'\n');
        v.extend_from_slice(&[0; 4096]);
        let e = replay_err(&v);
        assert!(e.contains("record 2 of the recording is damaged"), "{e}");
        // A line without end.
        let mut v = LOOPBACK.lines().next().unwrap().as_bytes().to_vec();
        v.push(b'\n');
        v.extend(std::iter::repeat_n(b'x', (MAX_LINE + 10) as usize));
        let e = replay_err(&v);
        assert!(e.contains("longer than 1 MiB"), "{e}");
        let e = replay_err(&[0; 100_000]);
        assert!(e.contains("not a tcptrace recording"), "{e}");
        let e = replay_err(&vec![0u8; (MAX_LINE * 3) as usize]);
        assert!(e.contains("longer than 1 MiB"), "{e}");
    }

    /// Found by the fuzzer: timestamps near the end of time overflowed the
    /// tick and refresh arithmetic.
    #[test]
    fn timestamps_at_the_end_of_time_do_not_overflow() {
        let mut lines: Vec<String> = LOOPBACK.lines().map(str::to_string).collect();
        for l in lines.iter_mut().skip(5).step_by(7) {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["type"] == "event" {
                v["ts_ns"] = serde_json::json!(u64::MAX - 3);
                *l = v.to_string();
            }
        }
        let input = lines.join("\n");
        let top = replay_bytes(
            input.as_bytes(),
            Top::new(SortBy::Age, 1_000_000_000, 10, false, false),
            Filter::default(),
        );
        assert!(!top.is_empty());
        replay_bytes(
            input.as_bytes(),
            Hist::new(Metric::Handshake, false, Some(1_000_000_000)),
            Filter::default(),
        );
    }

    #[test]
    fn rejects_what_is_not_a_recording() {
        let (out, _) = capture(Mode::Json, None);
        let mut p = Pipeline::with_output(Box::new(States), Filter::default(), out);
        let err = replay_into("{\"type\":\"state\"}\n".as_bytes(), &mut p)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("not a tcptrace recording"),
            "{err}"
        );
    }
}
