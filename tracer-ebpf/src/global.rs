//! Load-time globals (`const volatile` in libbpf terms): user space
//! rewrites them with `EbpfLoader::override_global` before load.
//!
//! aya-ebpf 0.2.1 has `aya_ebpf::Global<T>` with this very API, but it
//! wraps the value in a `MaybeUninit<T>` union, and bpf-linker 0.10.1 (the
//! last that builds with this project's toolchain, see HOST.md) does not
//! sanitize union names in BTF: the kernel then refuses the whole object's
//! BTF ("[57] UNION MaybeUninit<tracer_common::TpOffsets> ... Invalid
//! name"; fixed in bpf-linker by aya-rs/bpf-linker#346, see also
//! aya-rs/aya#1490). Once a newer bpf-linker builds here, swap this module
//! for `aya_ebpf::Global`.

/// A global user space may set at load; read it with [`Global::load`].
#[repr(transparent)]
pub struct Global<T>(T);

impl<T: Copy> Global<T> {
    /// The value the object carries until user space overrides it.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// Reads the value. Volatile, so that the compiler cannot fold in the
    /// value compiled into the object.
    #[inline(always)]
    pub fn load(&self) -> T {
        // SAFETY: a valid, aligned reference to a plain value.
        unsafe { core::ptr::read_volatile(&self.0) }
    }
}
