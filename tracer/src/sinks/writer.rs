//! The writer thread: takes finished batches through a queue bounded in
//! bytes and writes them, so that a slow reader of our output (a stopped
//! `less`, a slow disk) never stalls the ring-buffer reader. A batch that
//! does not fit is handed back to the caller to count; a write error stops
//! writing, is kept for the caller to report, and every record that was
//! queued or comes later is counted as unwritten.

use std::{
    io::{self, Write},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
};

/// Batches queued at most, whatever their size (the byte bound comes
/// first for full batches).
const QUEUE_BATCHES: usize = 4096;
/// Written batches kept for reuse: a fresh buffer per batch costs page
/// faults on every drain.
const SPARE_BATCHES: usize = 4;

/// A formatted batch and the number of records in it.
pub struct Batch {
    pub bytes: Vec<u8>,
    pub records: u64,
    /// Told once the batch is written (or could not be): [`Writer::sync`].
    pub written: Option<SyncSender<()>>,
}

#[derive(Default)]
struct Shared {
    queued_bytes: AtomicUsize,
    /// The writer stopped (closed pipe or write error).
    stopped: AtomicBool,
    error: Mutex<Option<io::Error>>,
    /// Records in batches that could not be written after a failure.
    unwritten: AtomicU64,
}

pub struct Writer {
    tx: Option<SyncSender<Batch>>,
    spare: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    max_bytes: usize,
    batch_capacity: usize,
    /// A pipe to watch for its reader going away while we have nothing to
    /// write (standard output).
    watch: Option<std::os::fd::RawFd>,
}

/// Why a batch was not queued.
pub enum Refused {
    /// The queue holds `max_bytes` already: the reader is slow.
    Full(Batch),
    /// The writer has stopped.
    Stopped(Batch),
}

impl Writer {
    /// Starts the thread writing to `w`; at most `max_bytes` wait.
    pub fn start(
        mut w: impl Write + Send + 'static,
        max_bytes: usize,
        batch_capacity: usize,
    ) -> io::Result<Self> {
        let (tx, rx) = sync_channel::<Batch>(QUEUE_BATCHES);
        let (give_back, spare) = sync_channel::<Vec<u8>>(SPARE_BATCHES);
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tcptrace-out".into())
            .spawn(move || {
                for mut b in rx {
                    let len = b.bytes.len();
                    if !sh.stopped.load(Ordering::Relaxed)
                        && let Err(e) = w.write_all(&b.bytes).and_then(|()| w.flush())
                    {
                        *sh.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        sh.stopped.store(true, Ordering::Relaxed);
                    }
                    if sh.stopped.load(Ordering::Relaxed) {
                        sh.unwritten.fetch_add(b.records, Ordering::Relaxed);
                    }
                    sh.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                    if let Some(tx) = b.written.take() {
                        let _ = tx.send(());
                    }
                    if b.bytes.capacity() == batch_capacity {
                        b.bytes.clear();
                        // Enough spares already: let this one go.
                        let _ = give_back.try_send(b.bytes);
                    }
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            spare,
            thread: Some(thread),
            shared,
            max_bytes,
            batch_capacity,
            watch: None,
        })
    }

    /// Watch `fd` (the descriptor the writer writes to) for its reader
    /// going away, so that `tcptrace states --port 1 | head -1` ends when
    /// `head` does, not at the next record, which may never come.
    pub fn watch(&mut self, fd: std::os::fd::RawFd) {
        self.watch = Some(fd);
    }

    /// Stops when the watched pipe has no reader left (it polls with
    /// POLLERR; a terminal that hung up polls POLLHUP).
    pub fn check_reader(&self) {
        let Some(fd) = self.watch else { return };
        let mut p = libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        if n == 1 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            let mut e = self.shared.error.lock().unwrap_or_else(|p| p.into_inner());
            e.get_or_insert_with(|| io::ErrorKind::BrokenPipe.into());
            self.shared.stopped.store(true, Ordering::Relaxed);
        }
    }

    /// An empty buffer for the next batch, reused when one came back.
    pub fn fresh(&self) -> Vec<u8> {
        self.spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.batch_capacity))
    }

    /// Queues `b` unless the queue is full (one batch always fits).
    pub fn try_send(&self, b: Batch) -> Result<(), Refused> {
        if self.stopped() {
            return Err(Refused::Stopped(b));
        }
        let queued = self.shared.queued_bytes.load(Ordering::Relaxed);
        if queued > 0 && queued + b.bytes.len() > self.max_bytes {
            return Err(Refused::Full(b));
        }
        self.send(b, false)
    }

    /// Queues `b`, waiting for room (the end of a run).
    pub fn send_blocking(&self, b: Batch) -> Result<(), Refused> {
        if self.stopped() {
            return Err(Refused::Stopped(b));
        }
        self.send(b, true)
    }

    fn send(&self, b: Batch, wait: bool) -> Result<(), Refused> {
        let Some(tx) = &self.tx else {
            return Err(Refused::Stopped(b));
        };
        let len = b.bytes.len();
        self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        let r = if wait {
            tx.send(b).map_err(|e| Refused::Stopped(e.0))
        } else {
            tx.try_send(b).map_err(|e| match e {
                TrySendError::Full(b) => Refused::Full(b),
                TrySendError::Disconnected(b) => Refused::Stopped(b),
            })
        };
        if r.is_err() {
            self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        }
        r
    }

    /// Waits until everything queued so far has been written (or writing
    /// stopped).
    pub fn sync(&self) {
        let (tx, rx) = sync_channel(1);
        let marker = Batch {
            bytes: Vec::new(),
            records: 0,
            written: Some(tx),
        };
        if self.send(marker, true).is_ok() {
            // Err: the thread is gone, and nothing more will be written.
            let _ = rx.recv();
        }
    }

    /// Whether writing has stopped (closed pipe, write error).
    pub fn stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Relaxed)
    }

    /// Waits for everything queued to be written; returns the write error,
    /// if any, and the records that were queued but not written.
    pub fn finish(mut self) -> (Option<io::Error>, u64) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let err = self
            .shared
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        (err, self.shared.unwritten.load(Ordering::Relaxed))
    }
}
