//! A `/proc/net/tcp{,6}` table as tcptrace reads it at start-up, and the
//! counter files `stat` reads (`/proc/net/snmp`, `netstat`, `sockstat`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tracer::procnet::parse_table(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tracer::counters::Counters::parse(text, text);
        let _ = tracer::counters::SockStat::parse(text, text);
    }
});
