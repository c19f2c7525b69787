//! What the output could not write: a stalled reader, write errors, and
//! recordings' keyed socket names.

use super::*;

/// A writer that takes nothing until released, like a reader that stopped.
struct Stalled(
    std::sync::mpsc::Receiver<()>,
    Vec<u8>,
    std::sync::mpsc::Sender<Vec<u8>>,
);
impl Write for Stalled {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.recv();
        self.1.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.2.send(std::mem::take(&mut self.1));
        Ok(())
    }
}

/// Under a stalled reader, records out plus records reported lost equal
/// the records produced, and the lost counts reach the output themselves
/// (they ride in the next batch that gets out, not one that is dropped).
#[test]
fn a_stalled_reader_loses_nothing_silently() {
    let (release, gate) = std::sync::mpsc::channel();
    let (tx, rx) = std::sync::mpsc::channel();
    let spec = OutputSpec {
        queue_bytes: 64 << 10,
        ..OutputSpec::stdout(Mode::Json)
    };
    let mut out = Output::to_writer(&spec, Stalled(gate, Vec::new(), tx)).unwrap();
    out.start(&start(), Columns::None);
    let cx = context();
    let produced = 20_000u64;
    for i in 0..produced {
        let a = Annotated {
            event: state(i, i, tuple(1, 80), owner(1, "x"), SynSent, Established),
            owner: None,
            prev_state_ns: None,
            state: None,
        };
        States.on_event(&a, &cx, &mut out);
        if i % 1000 == 0 {
            out.tick(i);
        }
    }
    // Upstream losses are counted the same way.
    out.lost(crate::record::lost::KERNEL, 7);
    out.tick(produced);
    // The reader comes back.
    std::thread::spawn(move || while release.send(()).is_ok() {});
    out.close().unwrap();
    let text: String = rx.iter().map(|b| String::from_utf8(b).unwrap()).collect();
    let mut records = 0;
    let mut lost_output = 0;
    let mut lost_kernel = 0;
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        match (v["type"].as_str(), v["source"].as_str()) {
            (Some("state"), _) => records += 1,
            (Some("lost"), Some("output")) => lost_output += v["count"].as_u64().unwrap(),
            (Some("lost"), Some("kernel")) => lost_kernel += v["count"].as_u64().unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(lost_output > 0, "the queue should have filled");
    assert_eq!(records + lost_output, produced);
    assert_eq!(lost_kernel, 7);
    // About 64 KiB queued at most: a few hundred records, not thousands.
    assert!(
        records < 2_000,
        "{records} records got through a 64 KiB queue"
    );
}

/// A full disk ends the run with an error that says what it cost.
#[test]
fn write_errors_are_errors_and_a_closed_pipe_is_not() {
    struct Fails(std::io::ErrorKind);
    impl Write for Fails {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    for (kind, ok) in [
        (std::io::ErrorKind::StorageFull, false),
        (std::io::ErrorKind::BrokenPipe, true),
    ] {
        let mut out = Output::to_writer(&OutputSpec::stdout(Mode::Json), Fails(kind)).unwrap();
        out.start(&start(), Columns::None);
        let a = Annotated {
            event: state(1, 1, tuple(1, 80), owner(1, "x"), SynSent, Established),
            owner: None,
            prev_state_ns: None,
            state: None,
        };
        States.on_event(&a, &context(), &mut out);
        // Time passes (ticks hand batches over at most every 10 ms).
        std::thread::sleep(std::time::Duration::from_millis(20));
        out.tick(1);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(out.done(), "{kind:?}: the writer stopped");
        let r = out.close();
        assert_eq!(r.is_ok(), ok, "{kind:?}: {r:?}");
        if let Err(e) = r {
            assert!(e.to_string().contains("cannot write the output"), "{e}");
        }
    }
}

/// A recording names sockets by a keyed hash, never by kernel address.
#[test]
fn recordings_hold_no_kernel_addresses() {
    let addr = 0xffff_8881_0a2b_3c40u64;
    let events = [
        state(1, addr, tuple(1, 80), owner(1, "x"), Close, SynSent),
        state(2, addr, tuple(1, 80), owner(1, "x"), SynSent, Established),
        state(3, 0, tuple(1, 80), owner(1, "x"), SynSent, Established),
    ];
    let text = render(Mode::Recording { binary: false }, |out| {
        for ev in &events {
            out.emit(&crate::views::Rec::Event(ev));
        }
    });
    assert!(!text.contains(&addr.to_string()), "{text}");
    let socks: Vec<u64> = text
        .lines()
        .skip(1)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["sock"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(socks.len(), 3, "{text}");
    assert_eq!(socks[0], socks[1], "one socket keeps one name");
    assert_ne!(socks[0], addr);
    assert_eq!(socks[2], 0, "no socket stays no socket");
}
