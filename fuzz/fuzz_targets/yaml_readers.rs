//! The fast YAML reader against the general parser: on any text the fast reader takes, both
//! must give the same events with the same spans (see crates/compiler/src/yaml/fast.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(diff) = provflow_compiler::yaml::readers_agree(text) {
        panic!("{diff}");
    }
});
