//! A tracepoint record copied onto the stack with one
//! `bpf_probe_read_kernel`, so that a program reading many of its fields
//! pays one helper call instead of one per field (the state program reads
//! nine). Fields past the copied span are read from the record itself.

use core::mem::MaybeUninit;

use aya_ebpf::{
    EbpfContext as _, helpers::generated::bpf_probe_read_kernel, programs::TracePointContext,
};

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
        // Not zeroed first: the helper writes every byte (zeros when the
        // read fails), and zeroing costs a byte-loop call and a stack frame
        // the 6.1 verifier counts against the 512-byte limit.
        let mut buf = MaybeUninit::<[u8; SPAN]>::uninit();
        // SAFETY: bpf_probe_read_kernel checks the source address and
        // writes SPAN bytes into `buf`, success or not.
        let rc = unsafe {
            bpf_probe_read_kernel(
                buf.as_mut_ptr().cast(),
                SPAN as u32,
                ctx.as_ptr() as *const _,
            )
        };
        Self {
            // SAFETY: written by the helper just above.
            buf: unsafe { buf.assume_init() },
            ok: rc == 0,
            ctx,
        }
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
