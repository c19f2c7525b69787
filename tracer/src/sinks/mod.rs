//! Where records go. The output owns everything about saying them: the
//! renderer (text, JSON Lines or a recording), the wall clock, the count
//! of records for `--count`, and the lost-record policy: records are
//! formatted into a batch; each batch is handed to a writer thread
//! ([`writer`]) through a queue bounded in bytes, so a slow reader never
//! stalls the ring-buffer reader; a batch that does not fit is dropped and
//! counted, and every count of what was lost, here or upstream, is said
//! ([`lost`]), never silently dropped. A write error ends the run with
//! a sentence.

pub mod counters;
pub mod escape;
pub mod findings;
pub mod format;
pub mod json;
pub mod lost;
pub mod put;
pub mod recording;
pub mod rotate;
pub mod screen;
pub mod tap;
pub mod text;
pub mod time;
pub mod top_table;
pub mod writer;

#[cfg(test)]
mod aligned;
#[cfg(test)]
mod tests;

use std::{
    fs::OpenOptions,
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::PathBuf,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    record::Start,
    views::records::{Columns, Emit, Rec},
};
use format::Clock;
use writer::{Batch, Refused, Writer};

/// Capacity of a batch buffer: a quarter of the output queue, from 64 KiB
/// to 256 KiB. Each batch handed to the writer thread wakes it; in a
/// storm's million lines, 256 KiB batches took 12 % less CPU than 64 KiB
/// ones, and a quarter keeps a small `--output-queue` a bound.
fn batch_bytes(queue_bytes: usize) -> usize {
    (queue_bytes / 4).clamp(64 << 10, 256 << 10)
}
/// A batch is handed over once it has less room left than this.
const BATCH_SLACK: usize = 8 << 10;
/// Time passing hands a batch over at most this often (live, ticks come
/// every 10 ms or slower anyway; replay ticks in event time, many times
/// faster than the wall clock, and must not turn every tick into a write).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(10);
/// Default bytes of output waiting for a slow reader: about 60 000
/// records, a few seconds of a busy host; more is dropped and counted.
pub const QUEUE_BYTES: usize = 4 << 20;
/// The name of the rendered output in per-sink metrics.
const SINK: &str = "log";

/// How records are rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Text,
    Json,
    /// The input stream, for `tcptrace replay` (events as binary frames
    /// with `binary`).
    Recording {
        binary: bool,
    },
    /// `top` drawn on the terminal that standard output is ([`screen`]).
    Screen,
}

/// Where and how a run's records go.
#[derive(Clone, Debug)]
pub struct OutputSpec {
    pub mode: Mode,
    /// A file instead of standard output.
    pub path: Option<PathBuf>,
    /// Overwrite an existing file (and write through a symbolic link).
    pub force: bool,
    /// Bytes waiting for the reader at most (default [`QUEUE_BYTES`]).
    pub queue_bytes: usize,
    /// Stop after this many records (`--count`).
    pub count: Option<u64>,
    /// How text shows times (`--time`).
    pub time: time::TimeMode,
    /// Start a new file past this many bytes (`--rotate-size`), keeping
    /// this many old ones, and reopen the file when `reopen` is raised
    /// (SIGHUP).
    pub rotate: Option<rotate::Policy>,
}

impl OutputSpec {
    /// Standard output in `mode`, defaults otherwise.
    pub fn stdout(mode: Mode) -> Self {
        Self {
            mode,
            path: None,
            force: false,
            queue_bytes: QUEUE_BYTES,
            count: None,
            time: time::TimeMode::Utc,
            rotate: None,
        }
    }
}

/// See the module documentation.
pub struct Output {
    mode: Mode,
    /// A batch's capacity (see [`batch_bytes`]).
    batch_bytes: usize,
    clock: Clock,
    /// The clock as text shows it (`--time`), and the day of the last
    /// line that said a time (a date line comes when it changes).
    time: time::TimeMode,
    text_clock: time::TextClock,
    day: Option<u64>,
    /// The batch being formatted, and how many records it holds.
    buf: Vec<u8>,
    in_buf: u64,
    /// Records emitted that count towards the limit.
    written: u64,
    limit: Option<u64>,
    /// The latest time the pipeline told us (for `lost` records).
    now_ns: u64,
    lost: lost::Ledger,
    writer: Writer,
    recorder: recording::Recorder,
    /// When a batch was last handed over because time passed.
    last_flush: std::time::Instant,
    /// The view's text columns, and the namespaces its records were in.
    columns: Columns,
    namespaces: text::Namespaces,
    /// The terminal, in [`Mode::Screen`].
    screen: Option<screen::Screen>,
    /// Events said lost on the screen's footer so far.
    screen_lost: u64,
    /// The user asked to stop (`q`).
    quit: bool,
    /// Who else sees every record (the agent's metrics), and which record
    /// types are rendered.
    tap: Option<Box<dyn tap::Tap>>,
    types: tap::Types,
    /// Owners' cgroups by id, for JSON.
    cgroups: crate::cgroups::Names,
}

impl Output {
    /// Opens the output `spec` describes. A file is created 0600 and
    /// never overwritten nor written through a symbolic link unless
    /// `force`.
    pub fn open(spec: &OutputSpec) -> Result<Self> {
        match &spec.path {
            None => {
                let mut out = Self::to_writer(spec, io::stdout())?;
                out.writer.watch(libc::STDOUT_FILENO);
                Ok(out)
            }
            Some(p) if spec.rotate.is_some() => {
                let policy = spec.rotate.clone().expect("checked");
                Self::to_writer(spec, rotate::RotatingFile::open(p, policy)?)
            }
            Some(p) => {
                let mut o = OpenOptions::new();
                o.write(true).mode(0o600);
                if spec.force {
                    o.create(true).truncate(true);
                } else {
                    o.create_new(true).custom_flags(libc::O_NOFOLLOW);
                }
                let f = o.open(p).map_err(|e| {
                    let hint = match e.kind() {
                        io::ErrorKind::AlreadyExists => {
                            "; it exists already: choose another name or add --force to overwrite it"
                        }
                        _ if e.raw_os_error() == Some(libc::ELOOP) => {
                            "; it is a symbolic link: give the real path or add --force"
                        }
                        _ => "",
                    };
                    anyhow::anyhow!("cannot create {}: {e}{hint}", p.display())
                })?;
                Self::to_writer(spec, f)
            }
        }
    }

    /// Output to any writer.
    pub fn to_writer(spec: &OutputSpec, w: impl Write + Send + 'static) -> Result<Self> {
        let batch_bytes = batch_bytes(spec.queue_bytes);
        let writer = Writer::start(w, spec.queue_bytes, batch_bytes)
            .context("starting the output thread")?;
        let screen = match spec.mode {
            Mode::Screen => {
                Some(screen::Screen::open().context("putting the terminal in raw mode for `top`")?)
            }
            _ => None,
        };
        Ok(Self {
            mode: spec.mode,
            batch_bytes,
            clock: Clock::default(),
            time: spec.time,
            text_clock: time::TextClock::default(),
            day: None,
            buf: writer.fresh(),
            in_buf: 0,
            written: 0,
            limit: spec.count,
            now_ns: 0,
            lost: lost::Ledger::default(),
            writer,
            recorder: recording::Recorder::default(),
            last_flush: std::time::Instant::now(),
            columns: Columns::None,
            namespaces: text::Namespaces::default(),
            screen,
            screen_lost: 0,
            quit: false,
            tap: None,
            types: tap::Types::default(),
            cgroups: Default::default(),
        })
    }

    /// Hands every record and lost count to `tap` as well, and renders
    /// only the record `types`.
    pub fn with_tap(mut self, tap: Box<dyn tap::Tap>, types: tap::Types) -> Self {
        self.tap = Some(tap);
        self.types = types;
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The run began: the clock to show times with; a text header or a
    /// recording's header line.
    ///
    /// The text header is written (not only queued) when this returns,
    /// so that what is said on standard error next (the start-up
    /// message) never lands inside it when both streams go to one place.
    pub fn start(&mut self, start: &Start, columns: Columns) {
        self.clock = start.clock;
        self.text_clock = time::TextClock::new(start.clock, self.time, start.ts_ns);
        self.day = (start.ts_ns != 0)
            .then(|| self.text_clock.day(start.ts_ns))
            .flatten();
        self.now_ns = start.ts_ns;
        if let Some(t) = &mut self.tap {
            t.start(start);
        }
        self.columns = columns;
        match self.mode {
            Mode::Text => self.text_header(),
            Mode::Json | Mode::Screen => {}
            Mode::Recording { binary } => recording::header(&mut self.buf, start, binary),
        }
        self.flush(true);
        self.writer.sync();
    }

    /// The text column header, if the view has one.
    fn text_header(&mut self) {
        if let Some(h) = text::header(self.columns, self.namespaces.many, &self.text_clock) {
            self.buf.extend_from_slice(h.trim_end().as_bytes());
            self.buf.push(b'\n');
        }
    }

    /// Before a text line of the streaming views at `ts_ns`: a line with
    /// the date when the day changed since the last one (or since the
    /// start, when the run knows it).
    fn date_line(&mut self, ts_ns: u64) {
        let Some(day) = self.text_clock.day(ts_ns) else {
            return;
        };
        if self.day.is_some_and(|d| d != day) {
            self.text_clock.put_date_line(&mut self.buf, ts_ns);
        }
        self.day = Some(day);
    }

    /// `n` events or records from `source` never reached us.
    pub fn lost(&mut self, source: &str, n: u64) {
        self.lost.add(source, n);
        if let Some(t) = &mut self.tap {
            t.lost(source, n);
        }
    }

    /// The kernel's ring was at most `used` of `size` bytes full over the
    /// last second: for the tap (the agent's metrics) only.
    pub fn ring(&mut self, used: u64, size: u64) {
        if let Some(t) = &mut self.tap {
            t.ring(used, size);
        }
    }

    /// Cgroup `id` is at `path`: JSON names owners' cgroups with it, and
    /// a recording keeps it (a line of its own) for replay.
    pub fn cgroup(&mut self, id: u64, path: &str) {
        let info = crate::cgroups::CgroupInfo::new(path);
        if let Some(t) = &mut self.tap {
            t.cgroup(id, &info);
        }
        if let Mode::Recording { .. } = self.mode {
            recording::cgroup(&mut self.buf, id, path);
        }
        self.cgroups.insert(id, info);
    }

    /// Cgroup `id` is gone: its name is forgotten.
    pub fn cgroup_gone(&mut self, id: u64) {
        if let Some(t) = &mut self.tap {
            t.cgroup_gone(id);
        }
        self.cgroups.remove(&id);
    }

    /// Time passes: hands over what is formatted, unless that was done
    /// less than 10 ms (`FLUSH_EVERY`) ago.
    pub fn tick(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        if let Some(t) = &mut self.tap {
            t.tick();
        }
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.last_flush = std::time::Instant::now();
            self.flush(false);
            self.writer.check_reader();
        }
    }

    /// `--count` reached, the user quit, or the output has gone.
    pub fn done(&self) -> bool {
        self.quit || self.limit.is_some_and(|n| self.written >= n) || self.writer.stopped()
    }

    /// The user asked to stop (the `q` key): nothing more is shown.
    pub fn quit(&mut self) {
        self.quit = true;
    }

    /// Whether the output has gone (closed pipe, write error).
    pub fn is_closed(&self) -> bool {
        self.writer.stopped()
    }

    /// Hands the batch, headed by the lost counts not yet said, to the
    /// writer; waits for room if `wait`.
    fn flush(&mut self, wait: bool) {
        match self.mode {
            Mode::Text => self.lost.warn(wait),
            // Said on the screen's footer from the next frame on.
            Mode::Screen => {
                self.screen_lost += self.lost.pending().iter().map(|(_, n)| n).sum::<u64>();
                let n = self.lost.pending().len();
                self.lost.said(n);
            }
            _ => {}
        }
        if self.buf.is_empty() && self.lost.is_empty() {
            return;
        }
        let mut said = 0;
        let mut bytes = if !matches!(self.mode, Mode::Text | Mode::Screen) && !self.lost.is_empty()
        {
            let mut head = Vec::with_capacity(self.buf.len() + 256);
            for (source, n) in self.lost.pending() {
                format::lost_json(&mut head, &self.clock, self.now_ns, *n, source);
            }
            said = self.lost.pending().len();
            head.extend_from_slice(&self.buf);
            self.buf.clear();
            head
        } else {
            std::mem::replace(&mut self.buf, self.writer.fresh())
        };
        if bytes.is_empty() {
            return;
        }
        let b = Batch {
            bytes: std::mem::take(&mut bytes),
            records: std::mem::take(&mut self.in_buf),
            written: None,
        };
        let sent = if wait {
            self.writer.send_blocking(b)
        } else {
            self.writer.try_send(b)
        };
        match sent {
            Ok(()) => self.lost.said(said),
            Err(Refused::Full(b)) => {
                self.lost(lost::OUTPUT, b.records);
                if let Some(s) = &mut self.screen {
                    s.invalidate();
                }
                if let Some(t) = &mut self.tap {
                    t.dropped(SINK, b.records);
                }
                if self.buf.capacity() < self.batch_bytes {
                    let mut v = b.bytes;
                    v.clear();
                    self.buf = v;
                }
            }
            // Closed pipe or write error: `finish` says which.
            Err(Refused::Stopped(_)) => {}
        }
    }

    /// Says what is left and waits for the writer. A closed pipe is not an
    /// error (`| head`); any other write error is, with what it cost.
    pub fn close(mut self) -> Result<()> {
        if let Some(s) = &mut self.screen {
            s.leave(&mut self.buf);
        }
        self.flush(true);
        if self.mode == Mode::Text {
            self.lost.warn(true);
        }
        let lost_on_screen = self.screen_lost;
        let (err, unwritten) = self.writer.finish();
        // The shell's screen is back: say there what the footer said.
        drop(self.screen.take());
        if lost_on_screen > 0 {
            eprintln!("tcptrace: {lost_on_screen} events were lost (see the footer)");
        }
        match err {
            None => Ok(()),
            Some(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Some(e) if unwritten == 0 => bail!("cannot write the output: {e}"),
            Some(e) => bail!("cannot write the output: {e}; {unwritten} records were not written"),
        }
    }
}

impl Emit for Output {
    fn emit(&mut self, rec: &Rec<'_>) {
        if let Some(t) = &mut self.tap {
            t.record(rec);
        }
        // Only recordings carry input events and RTT snapshots; the
        // census is for the tap alone.
        let renders = match self.mode {
            Mode::Recording { .. } => true,
            Mode::Text | Mode::Json | Mode::Screen => {
                !matches!(rec, Rec::Census { .. } | Rec::Rtt { .. } | Rec::Event(_))
            }
        };
        if !renders || !self.types.keeps(rec) {
            return;
        }
        if self.quit || (self.limit.is_some_and(|n| self.written >= n) && !rec.after_count()) {
            return;
        }
        match self.mode {
            Mode::Text => {
                if self.namespaces.see(rec.netns()) {
                    self.text_header();
                }
                if self.columns != Columns::None
                    && let Some(ts) = rec.ts_ns()
                {
                    self.date_line(ts);
                }
                text::render(&mut self.buf, &self.text_clock, rec, self.namespaces.many);
            }
            Mode::Json => json::render(&mut self.buf, &self.clock, &self.cgroups, rec),
            Mode::Screen => {
                if let (Some(s), Rec::Top(t)) = (&mut self.screen, rec) {
                    s.draw(&mut self.buf, &self.clock, t, self.screen_lost);
                }
            }
            Mode::Recording { binary } => {
                self.recorder
                    .render(&mut self.buf, &self.clock, rec, binary);
            }
        }
        self.in_buf += 1;
        self.written += u64::from(rec.counts());
        // A frame shows at once (a key was pressed, or a refresh is due).
        if self.buf.len() + BATCH_SLACK >= self.batch_bytes || self.mode == Mode::Screen {
            self.flush(false);
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! An output whose bytes a test reads back.
    use std::sync::mpsc;

    use super::{Mode, Output, OutputSpec};

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

    /// What an output wrote, once it is closed.
    pub struct Captured(mpsc::Receiver<Vec<u8>>);

    impl Captured {
        pub fn text(self) -> String {
            String::from_utf8(self.bytes()).unwrap()
        }

        /// The bytes (a binary recording is not text).
        pub fn bytes(self) -> Vec<u8> {
            self.0.iter().flatten().collect()
        }
    }

    /// An output in `mode` (with `count`) and what it will have written.
    pub fn capture(mode: Mode, count: Option<u64>) -> (Output, Captured) {
        let (tx, rx) = mpsc::channel();
        let spec = OutputSpec {
            count,
            ..OutputSpec::stdout(mode)
        };
        (Output::to_writer(&spec, W(tx)).unwrap(), Captured(rx))
    }
}
