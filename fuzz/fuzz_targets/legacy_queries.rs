//! The legacy `provision.queries` importer on arbitrary text: errors, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(queries) = provflow_compiler::legacy::parse_provision_queries(text) {
        // Whatever parses must also print.
        for dialect in ["sqlite", "postgres", "mariadb"] {
            let _ = provflow_compiler::legacy::import(&queries, "fuzz", dialect);
        }
    }
});
