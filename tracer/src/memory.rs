//! How tcptrace asks glibc's allocator to hand memory back, so that RSS
//! follows what tcptrace holds (a flow table that grew in a storm and
//! shrank, start-up's one-off parsing) rather than the high-water mark.

/// Blocks from this size up get a mapping of their own, returned to the
/// system when freed (the flow table, its index, large batches).
const MMAP_FROM: i32 = 256 << 10;

/// Fixes the mmap threshold: by default glibc raises it to the size of the
/// largest block freed (up to 32 MB), after which a growing table lives in
/// the heap and leaves holes there that are never returned.
pub fn tune() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_FROM);
    }
}

/// Gives free heap memory back to the system (glibc keeps freed small
/// blocks for reuse; start-up's parsing left ~20 MB of them).
pub fn release() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no pointer is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}
