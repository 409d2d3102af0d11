//! The whole compile pipeline on arbitrary bytes: it must return diagnostics, never panic, hang
//! or exhaust memory (libFuzzer's `-timeout` and `-rss_limit_mb` enforce the last two).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let compilation = provflow_compiler::compile_bytes("fuzz.yaml", data);
    // Every failed compile must say why: an input with no IR and no error diagnostic would
    // leave a user with exit code 1 and nothing to fix.
    if compilation.bundle.is_none() {
        assert!(compilation.errors() > 0, "no bundle and no error diagnostic");
    }
    for d in &compilation.diagnostics {
        // PF006 (no document) is known to report line 0 (tests/hostile_input.rs tracks it);
        // every other diagnostic must point at a real 1-based position.
        if d.code != "PF006" {
            assert!(d.line >= 1 && d.column >= 1, "diagnostic {} at {}:{}", d.code, d.line, d.column);
        }
    }
});
