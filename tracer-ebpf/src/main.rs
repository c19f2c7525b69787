//! tcptrace's kernel programs.
//!
//! Each program is thin: it reads the fields an event needs, at offsets user
//! space took from this kernel's tracefs format files (classic
//! tracepoints) or BTF (the `_btf` files: BTF tracepoints, which get the
//! kernel's own pointers), into a [`WireEvent`](tracer_common::WireEvent)
//! and submits it to its CPU's ring buffer without waking the reader (user
//! space drains on a short timer). One file per hook family and form; each
//! program's row in `tracer/src/hooks/rows.rs` says where it attaches and
//! which fields it needs. A BTF program has a second on the same hook for
//! the events the kernel skips it for (`nested.rs`).
//!
//! Every record carries the socket's network namespace (`netns.rs`, from
//! BTF offsets user space resolved).
//!
//! Every entry hands its `try_` body's outcome to `emit::done`: a body says
//! why it sent nothing, and a field that could not be read (absent on this
//! kernel, or a failed `bpf_probe_read_*`) is counted per hook in the
//! `UNREADABLE` per-CPU array, which `tcptrace check` reports.
#![no_std]
#![no_main]
// `atomic_xadd` for the counters (see `emit::bump`).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod btf_sock;
mod connect;
mod emit;
mod error;
mod error_btf;
mod global;
mod nested;
mod netns;
mod reset;
mod reset_btf;
mod retrans;
mod retrans_btf;
mod rtt;
mod rtt_btf;
mod sockaddr;
mod span;
mod state;
mod state_btf;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects any path that
    // could get here. Kept for the compiler.
    loop {}
}
