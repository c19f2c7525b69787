//! Root-free checks on the embedded kernel object, the way the verifier
//! and the per-event cost see it rather than the source.

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget, SectionKind};

use super::OBJECT;

/// The C memory functions LLVM may call for a `memset`/`memcpy` it does not
/// expand inline: bpf-linker links them in as byte loops (about five
/// instructions a byte), each call a subprogram with a stack frame Linux
/// 6.1's verifier counts against the 512-byte limit.
const MEM_FUNCTIONS: [&str; 5] = ["memset", "memcpy", "memmove", "memcmp", "bcmp"];

/// The function of `section` that holds `offset`, by its symbol.
fn function_at(file: &object::File<'_>, section: object::SectionIndex, offset: u64) -> String {
    file.symbols()
        .find(|s| {
            s.section_index() == Some(section)
                && s.kind() == object::SymbolKind::Text
                && (s.address()..s.address() + s.size()).contains(&offset)
        })
        .and_then(|s| s.name().ok().map(str::to_owned))
        .unwrap_or_else(|| format!("<section {}>", section.0))
}

#[test]
fn no_program_calls_a_byte_loop_mem_function() {
    assert!(
        !OBJECT.is_empty(),
        "the kernel object is empty (built with AYA_BUILD_SKIP): build it to run this test"
    );
    let file = object::File::parse(OBJECT).expect("the kernel object is an ELF file");
    let mut calls = Vec::new();
    for section in file.sections().filter(|s| s.kind() == SectionKind::Text) {
        for (offset, reloc) in section.relocations() {
            let RelocationTarget::Symbol(target) = reloc.target() else {
                continue;
            };
            let name = file
                .symbol_by_index(target)
                .and_then(|s| s.name())
                .unwrap_or("");
            if MEM_FUNCTIONS.contains(&name) {
                let caller = function_at(&file, section.index(), offset);
                calls.push(format!("{caller} calls {name} (offset {offset:#x})"));
            }
        }
    }
    assert!(
        calls.is_empty(),
        "kernel programs call byte-loop memory functions (zero or copy by words instead, see tracer-ebpf's emit::zero_words):\n{}",
        calls.join("\n")
    );
}
