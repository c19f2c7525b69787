//! A `/proc/net/tcp{,6}` table as tcptrace reads it at start-up.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tracer::procnet::parse_table(data);
});
