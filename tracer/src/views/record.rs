//! `tcptrace record`: every input event that passes the filter, every
//! RTT snapshot, and the sockets from before the run, as they came; the recording sink writes them (with the
//! header and lost counts the pipeline hands it) in the recording format
//! ([`crate::record`]).

use super::{Context, Emit, View, records::Rec};
use crate::{
    engine::{Annotated, flows::Rtt},
    hooks::Wants,
};

pub struct Record {
    pub wants: Wants,
}

impl View for Record {
    fn engine_config(&self) -> crate::engine::Config {
        crate::engine::Config::streaming()
    }

    fn wants(&self) -> Wants {
        self.wants
    }

    fn on_event(&mut self, a: &Annotated, _cx: &Context, out: &mut dyn Emit) {
        out.emit(&Rec::Event(&a.event));
    }

    fn on_seeds(&mut self, seeds: &crate::pipeline::Seeds, out: &mut dyn Emit) {
        out.emit(&Rec::Seeds(seeds));
    }

    fn on_rtt(&mut self, sock: u64, now_ns: u64, rtt: &Rtt, out: &mut dyn Emit) {
        out.emit(&Rec::Rtt {
            ts_ns: now_ns,
            sock,
            rtt,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::tests::{owner, state, tuple},
        event::{Clock, Family, TcpState::*, Tuple},
        filter::Filter,
        pipeline::{Input, Pipeline, Seeds},
        record::Start,
        replay::replay_into,
        sinks::{Mode, testing::capture},
        views::states::States,
    };

    /// The start of a run at time 1.
    fn start() -> Input {
        Input::Start(Start {
            clock: Clock::with_offset(1_795_348_800_000_000_000),
            ts_ns: 1,
            ..Start::default()
        })
    }

    /// A listener from before the recording started owns what it accepts
    /// during it, in replay as it did live: the recording carries the seeds.
    #[test]
    fn replay_knows_the_owners_of_listeners_from_before() {
        let server = owner(300, "server");
        let listener = Tuple {
            laddr: Tuple::unspecified(Family::V4),
            raddr: Tuple::unspecified(Family::V4),
            ..tuple(8080, 0)
        };
        let child = tuple(8080, 40000);
        let inputs = [
            start(),
            Input::Seeds(Box::new(Seeds {
                seeds: vec![(listener, Listen, Some(server))],
                coming: Default::default(),
                now_ns: 2,
            })),
            Input::Event(state(3, 7, child, owner(0, "swapper/0"), Listen, SynRecv)),
            Input::Event(state(
                4,
                7,
                child,
                owner(55, "client"),
                SynRecv,
                Established,
            )),
            Input::End(5),
        ];
        let (out, recording) = capture(Mode::Recording { binary: false }, None);
        let view = Record {
            wants: Wants::FLOWS,
        };
        let mut p = Pipeline::with_output(Box::new(view), Filter::default(), out);
        for i in inputs {
            p.push(i);
        }
        p.finish().unwrap();
        let recording = recording.text();
        assert!(recording.contains("{\"type\":\"seeds\""), "{recording}");

        let (out, got) = capture(Mode::Json, None);
        let mut p = Pipeline::with_output(Box::new(States), Filter::default(), out);
        replay_into(recording.as_bytes(), &mut p).unwrap();
        p.finish().unwrap();
        let lines: Vec<serde_json::Value> = got
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        for l in &lines {
            assert_eq!(
                (&l["pid"], &l["comm"]),
                (&300.into(), &"server".into()),
                "{l}"
            );
        }
    }

    /// A host with many sockets: the seeds go out in several lines, each
    /// short enough for replay (one 1.5 MB line of 9 866 seeds was refused
    /// as damaged), and replay takes every seed in, with the `coming`
    /// tuples that concern them.
    #[test]
    fn many_seeds_are_split_into_lines_replay_takes() {
        const N: u16 = 3000;
        let seeds = (0..N)
            .map(|i| {
                (
                    tuple(10_000 + i, 40_000),
                    Established,
                    Some(owner(77, "a-long-name-xx")),
                )
            })
            .collect();
        let coming = [tuple(10_005, 40_000), tuple(9, 9)].into_iter().collect();
        let inputs = [
            start(),
            Input::Seeds(Box::new(Seeds {
                seeds,
                coming,
                now_ns: 2,
            })),
            Input::End(5),
        ];
        let record = |replayed: Option<&[u8]>| {
            let (out, recording) = capture(Mode::Recording { binary: true }, None);
            let view = Record {
                wants: Wants::FLOWS,
            };
            let mut p = Pipeline::with_output(Box::new(view), Filter::default(), out);
            match replayed {
                Some(r) => replay_into(r, &mut p).unwrap(),
                None => inputs.clone().into_iter().for_each(|i| p.push(i)),
            }
            p.finish().unwrap();
            recording.text()
        };
        let seeds_lines = |rec: &str| -> Vec<serde_json::Value> {
            rec.lines()
                .filter(|l| l.starts_with("{\"type\":\"seeds\""))
                .map(|l| {
                    assert!(l.len() < 1 << 20, "a seeds line of {} bytes", l.len());
                    serde_json::from_str(l).unwrap()
                })
                .collect()
        };
        let first = record(None);
        let lines = seeds_lines(&first);
        assert_eq!(
            lines.len(),
            usize::from(N).div_ceil(crate::record::SEEDS_PER_LINE)
        );
        let again = record(Some(first.as_bytes()));
        let relines = seeds_lines(&again);
        let count = |ls: &[serde_json::Value], k: &str| -> usize {
            ls.iter().map(|l| l[k].as_array().unwrap().len()).sum()
        };
        assert_eq!(count(&relines, "seeds"), usize::from(N));
        // Only the coming tuple that is a seed's.
        assert_eq!(count(&relines, "coming"), 1);
        assert_eq!(relines, lines);
    }
}
