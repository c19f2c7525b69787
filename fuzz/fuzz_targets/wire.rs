//! Records from the kernel's ring buffer, decoded into events, and binary
//! recording frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::{record::frame, wire};

fuzz_target!(|data: &[u8]| {
    if let Ok(w) = wire::read_record(data) {
        let _ = wire::decode(&w);
    }
    if let Ok(f) = <&[u8; frame::LEN]>::try_from(data.get(..frame::LEN).unwrap_or(&[])) {
        let _ = frame::decode(f);
    }
});
