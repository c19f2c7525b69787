//! A tracefs `format` file (the kernel's, or a hostile one on a tampered
//! host) parsed, then checked against every row of the hook table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::{hooks::HOOKS, tracefs::Format};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(f) = Format::parse(&text) {
        let _ = f.offsets();
        let _ = f.symbols("reason");
        for h in HOOKS {
            let _ = h.offsets(&f);
        }
    }
});
