//! A tracepoint record copied onto the stack with one
//! `bpf_probe_read_kernel`, so that a program reading many of its fields
//! pays one helper call instead of one per field (the state program reads
//! nine). Fields past the copied span are read from the record itself.

use aya_ebpf::{EbpfContext as _, helpers::bpf_probe_read_kernel_buf, programs::TracePointContext};

use crate::emit::{Fields, Skip};

/// Bytes copied: `inet_sock_set_state`'s record is 72 on every kernel
/// since 4.16.
const SPAN: usize = 96;

pub struct Span<'a> {
    buf: [u8; SPAN],
    /// The copy worked (otherwise every field is read from `ctx`).
    ok: bool,
    ctx: &'a TracePointContext,
}

impl<'a> Span<'a> {
    /// Copies the first bytes of `ctx`'s record. The record sits in the
    /// per-CPU perf trace buffer (8 KiB), so bytes past a shorter record are
    /// still readable; they are never used as fields.
    #[inline(always)]
    pub fn read(ctx: &'a TracePointContext) -> Self {
        let mut buf = [0u8; SPAN];
        // SAFETY: bpf_probe_read_kernel checks the address.
        let ok = unsafe { bpf_probe_read_kernel_buf(ctx.as_ptr() as *const u8, &mut buf) }.is_ok();
        Self { buf, ok, ctx }
    }
}

impl Fields for Span<'_> {
    #[inline(always)]
    fn get<T>(&self, off: u16) -> Result<T, Skip> {
        let at = usize::from(off);
        if self.ok && at + core::mem::size_of::<T>() <= SPAN {
            // SAFETY: within `buf` (checked just above), which is
            // initialized; unaligned, as a record's fields may be.
            Ok(unsafe { core::ptr::read_unaligned(self.buf.as_ptr().add(at) as *const T) })
        } else {
            self.ctx.get(off)
        }
    }
}
