//! How full the kernel's event ring is: the programs' producer position
//! minus the reader's consumer position, the number a BPF program gets from
//! `bpf_ringbuf_query(BPF_RB_AVAIL_DATA)`. Both positions sit at the start
//! of the ring map's first two pages; aya's `RingBuf` keeps its own
//! mappings of them private, so this module maps the two pages again, read
//! only (the kernel allows read-only mappings of the ring from offset 0),
//! and reads the positions as the kernel's `ringbuf_avail_data` does. The
//! reader samples it before each drain, when the ring is fullest, and
//! reports the highest fill of each second (`tcptrace_ring_fill_ratio`).

use std::{
    num::NonZeroUsize,
    os::fd::BorrowedFd,
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::{Context as _, Result};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

/// A read-only view of a ring buffer's consumer and producer positions.
pub struct RingFill {
    base: NonNull<std::ffi::c_void>,
    page: usize,
    size: u64,
}

impl RingFill {
    /// Maps the position pages of the ring map `fd`, whose data area is
    /// `size` bytes.
    pub fn new(fd: BorrowedFd<'_>, size: u32) -> Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => 4096,
        };
        let len = NonZeroUsize::new(2 * page).expect("two pages");
        // SAFETY: a fresh shared read-only mapping of the map's first two
        // pages, owned by the value returned and unmapped on drop.
        let base = unsafe { mmap(None, len, ProtFlags::PROT_READ, MapFlags::MAP_SHARED, fd, 0) }
            .context("mapping the ring buffer's positions")?;
        Ok(Self {
            base,
            page,
            size: u64::from(size),
        })
    }

    /// Bytes written by the programs and not yet consumed.
    pub fn used(&self) -> u64 {
        let at = |off: usize| {
            // SAFETY: the positions are aligned u64s at the start of each
            // mapped page, which stays mapped while `self` lives; the kernel
            // and the reader update them atomically.
            unsafe { AtomicU64::from_ptr(self.base.as_ptr().cast::<u8>().add(off).cast()) }
                .load(Ordering::Acquire)
        };
        let consumer = at(0);
        let producer = at(self.page);
        producer.saturating_sub(consumer).min(self.size)
    }
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length, used by nothing else.
        let _ = unsafe { munmap(self.base, 2 * self.page) };
    }
}
