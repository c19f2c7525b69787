//! A recording (JSON Lines or binary frames) replayed through a view and
//! the JSON renderer, as `tcptrace replay FILE VIEW --json` would: no
//! panic, no unbounded allocation, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::{
    event::TcpState,
    filter::Filter,
    pipeline::Pipeline,
    replay::replay_into,
    sinks::{Mode, Output, OutputSpec},
    views::{
        View,
        connect::Connect,
        hist::{Hist, Metric},
        resets::Resets,
        retrans::Retrans,
        states::States,
        top::{GroupBy, SortBy, Top},
    },
};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let view: Box<dyn View> = match pick % 7 {
        0 => Box::new(States),
        1 => Box::new(Retrans::default()),
        2 => Box::new(Resets),
        3 => Box::new(Connect::default()),
        4 => Box::new(Hist::new(Metric::Handshake, pick & 8 != 0, Some(1_000_000))),
        5 => Box::new(Hist::new(Metric::Rtt, pick & 8 != 0, None)),
        _ => {
            let mut top = Top::new(SortBy::Retrans, 1_000_000, 25, false, true);
            // The roll-ups and the state filter too.
            top.group = [None, Some(GroupBy::Owner), Some(GroupBy::Remote), Some(GroupBy::Port)]
                [usize::from(pick >> 5) % 4];
            if pick & 128 != 0 {
                top.states = vec![TcpState::Established, TcpState::CloseWait];
            }
            Box::new(top)
        }
    };
    let mode = if pick & 16 != 0 {
        Mode::Text
    } else {
        Mode::Json
    };
    let out = Output::to_writer(&OutputSpec::stdout(mode), std::io::sink()).unwrap();
    let mut p = Pipeline::with_output(view, Filter::default(), out);
    let _ = replay_into(input, &mut p);
    let _ = p.finish();
});
