//! Where records go: standard output, written by a thread of its own so
//! that a slow reader of our output never stalls the ring-buffer reader.
//! Records are formatted into a batch buffer; each batch is handed to the
//! writer through a bounded queue, and a batch that does not fit is dropped,
//! counted and reported (`lost` record, source `output`), never silently.

pub mod format;
pub mod put;

use std::{
    io::{self, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
};

/// Batches waiting for the writer thread.
const QUEUE_BATCHES: usize = 1024;
/// Written batches kept for reuse: a fresh 64 KiB buffer per batch costs
/// page faults on every drain.
const SPARE_BATCHES: usize = 4;
/// Capacity of a batch buffer.
const BATCH_BYTES: usize = 64 << 10;

/// Text or JSON Lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Text,
    Json,
}

/// The output of a view. See the module documentation.
pub struct Output {
    pub mode: Mode,
    /// The batch being formatted.
    pub buf: Vec<u8>,
    /// Records in `buf`.
    records: u64,
    tx: Option<SyncSender<Vec<u8>>>,
    /// Emptied batches coming back from the writer.
    spare: Receiver<Vec<u8>>,
    writer: Option<JoinHandle<()>>,
    closed: Arc<AtomicBool>,
    /// Records dropped because the writer fell behind, not yet reported.
    dropped: u64,
}

impl Output {
    /// Output to standard output through a writer thread.
    pub fn stdout(mode: Mode) -> Self {
        Self::to_writer(mode, io::stdout())
    }

    /// Output to any writer through a writer thread.
    pub fn to_writer(mode: Mode, mut w: impl Write + Send + 'static) -> Self {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_BATCHES);
        let (give_back, spare) = sync_channel::<Vec<u8>>(SPARE_BATCHES);
        let closed = Arc::new(AtomicBool::new(false));
        let flag = closed.clone();
        let writer = std::thread::Builder::new()
            .name("tcptrace-out".into())
            .spawn(move || {
                for mut batch in rx {
                    if w.write_all(&batch).and_then(|()| w.flush()).is_err() {
                        // Closed pipe (`| head`) or full disk: stop quietly, the
                        // main loop sees `closed` and ends.
                        flag.store(true, Ordering::Relaxed);
                        return;
                    }
                    if batch.capacity() == BATCH_BYTES {
                        batch.clear();
                        // Full: enough spares already, let this one go.
                        let _ = give_back.try_send(batch);
                    }
                }
            })
            .expect("spawning the output thread");
        Self {
            mode,
            buf: Vec::with_capacity(BATCH_BYTES),
            records: 0,
            tx: Some(tx),
            spare,
            writer: Some(writer),
            closed,
            dropped: 0,
        }
    }

    /// Marks the end of one record written into `buf`.
    pub fn record_done(&mut self) {
        self.records += 1;
    }

    /// Whether the reader of our output has gone (closed pipe).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Hands the batch over once it is nearly full, so batches keep their
    /// capacity and go back to the spares (a batch that grew past it would
    /// be a fresh allocation, and fresh pages, every time).
    /// `now` is asked only when the batch goes.
    #[inline]
    pub fn flush_if_full(&mut self, now: impl FnOnce() -> u64, clock: &format::Clock) {
        if self.buf.len() >= BATCH_BYTES - (8 << 10) {
            self.flush_batch(now(), clock);
        }
    }

    /// Hands the current batch to the writer thread.
    pub fn flush_batch(&mut self, now_ns: u64, clock: &format::Clock) {
        if self.buf.is_empty() {
            return;
        }
        if self.dropped > 0 {
            let mut head = Vec::new();
            let n = std::mem::take(&mut self.dropped);
            match self.mode {
                Mode::Json => format::lost_json(&mut head, clock, now_ns, n, "output"),
                Mode::Text => eprintln!(
                    "tcptrace: warning: {n} records dropped because the output was too slow"
                ),
            }
            head.append(&mut self.buf);
            self.buf = head;
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_BYTES));
        let batch = std::mem::replace(&mut self.buf, next);
        let records = std::mem::take(&mut self.records);
        if let Some(tx) = &self.tx {
            match tx.try_send(batch) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => self.dropped += records,
                Err(TrySendError::Disconnected(_)) => self.closed.store(true, Ordering::Relaxed),
            }
        }
    }

    /// Writes straight to the writer, waiting for room (for the final
    /// summary and for lost-event records, which must not be dropped).
    pub fn flush_blocking(&mut self) {
        let batch = std::mem::take(&mut self.buf);
        self.records = 0;
        if let Some(tx) = &self.tx
            && !batch.is_empty()
            && tx.send(batch).is_err()
        {
            self.closed.store(true, Ordering::Relaxed);
        }
    }

    /// Flushes and waits for the writer to finish. Returns the number of
    /// records dropped and never reported.
    pub fn close(mut self) -> u64 {
        self.flush_blocking();
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.dropped
    }
}
