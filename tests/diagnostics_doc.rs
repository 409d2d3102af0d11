//! Keeps docs/diagnostics.md and tests/fixtures in step with the codes the compiler emits.
//!
//! Every code written as a string literal (`"PF201"`) in crates/compiler/src must have a section
//! `<a id="pf201"></a>` + `## PF201 — ...` in docs/diagnostics.md, with the diagnostic's output
//! and a fix, and at least one fixture tests/fixtures/PF201_<case>.yaml; and every section and
//! fixture must belong to a code that still exists. Codes PF9xx are internal and exempt.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Codes whose fixture cannot live in git, with the reason.
const NO_FIXTURE: &[(&str, &str)] = &[
    ("PF008", "a definition file over 32 MiB does not belong in the repository"),
    ("PF700", "`target check` needs a live database: tests/cli_pg.rs and tests/target_pg.rs"),
    ("PF701", "`target check` needs a live database: tests/target_pg.rs"),
    ("PF702", "`target check` needs a live database: tests/cli_pg.rs and tests/target_pg.rs"),
    ("PF703", "`target check` needs a live database: tests/target_pg.rs"),
    ("PF704", "`target check` needs a live database: tests/catalog_real.rs"),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `PF` + three digits at the start of `s`.
fn code_at(s: &str) -> Option<&str> {
    let code = s.get(..5)?;
    (code.starts_with("PF") && code[2..].bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

/// Every `"PFNNN"` string literal in `text`.
fn quoted_codes(text: &str) -> Vec<String> {
    text.match_indices("\"PF")
        .filter_map(|(i, _)| {
            let rest = text.get(i + 1..)?;
            let code = code_at(rest)?;
            rest[5..].starts_with('"').then(|| code.to_owned())
        })
        .collect()
}

/// The codes the compiler can emit (PF9xx excluded).
fn emitted_codes() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates/compiler/src"), &mut files);
    assert!(!files.is_empty(), "no source under crates/compiler/src");
    // `provflow target check` reports the live catalog's findings as diagnostics too.
    files.push(workspace().join("crates/runner/src/target/catalog.rs"));
    files
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|text| quoted_codes(&text))
        .filter(|c| !c.starts_with("PF9"))
        .collect()
}

fn docs() -> String {
    fs::read_to_string(workspace().join("docs/diagnostics.md")).unwrap_or_default()
}

/// `(code, section text)` for each `<a id="pfNNN"></a>` anchor, in document order.
fn doc_sections(docs: &str) -> Vec<(String, String)> {
    const ANCHOR: &str = "<a id=\"";
    let starts: Vec<usize> = docs.match_indices(ANCHOR).map(|(i, _)| i).collect();
    starts
        .iter()
        .enumerate()
        .filter_map(|(n, &start)| {
            let id = docs.get(start + ANCHOR.len()..)?;
            let code = code_at(&id.get(..5)?.to_ascii_uppercase())?.to_owned();
            // The anchor is exactly the lower-case code, which the human output links to.
            if !id.starts_with(&format!("{}\"></a>", code.to_ascii_lowercase())) {
                return None;
            }
            let end = starts.get(n + 1).copied().unwrap_or(docs.len());
            Some((code, docs[start..end].to_owned()))
        })
        .collect()
}

/// Codes with at least one fixture `PFNNN_<case>.yaml`.
fn fixture_codes() -> BTreeSet<String> {
    let dir = workspace().join("tests/fixtures");
    let mut codes = BTreeSet::new();
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if let Some(code) = code_at(&name).filter(|_| is_yaml && name.get(5..6) == Some("_")) {
            codes.insert(code.to_owned());
        }
    }
    codes
}

#[test]
fn the_code_scanner_finds_quoted_codes_only() {
    let text = r#"Finding::error("PF201", "x"); "PF3" "PF9999" // PF202 "PF2x1" ("PF413","#;
    assert_eq!(quoted_codes(text), vec!["PF201".to_string(), "PF413".to_string()]);
}

#[test]
fn every_emitted_code_has_a_documented_section() {
    let emitted = emitted_codes();
    let docs = docs();
    let sections = doc_sections(&docs);
    let documented: BTreeSet<String> = sections.iter().map(|(c, _)| c.clone()).collect();

    let undocumented: Vec<&String> = emitted.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "codes emitted by crates/compiler/src without a `<a id=\"pfNNN\"></a>` section in docs/diagnostics.md: {undocumented:?}"
    );
    let stale: Vec<&String> = documented.difference(&emitted).collect();
    assert!(stale.is_empty(), "docs/diagnostics.md documents codes the compiler no longer emits: {stale:?}");

    let order: Vec<&String> = sections.iter().map(|(c, _)| c).collect();
    let mut sorted = order.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(order, sorted, "sections must be in code order, one per code");

    for (code, text) in &sections {
        assert!(
            text.contains(&format!("## {code} — ")),
            "{code}: the anchor must be followed by `## {code} — <title>`"
        );
        assert!(text.contains("**Severity:**"), "{code}: section has no severity");
        assert!(text.contains("```text\n"), "{code}: section shows no diagnostic output");
        assert!(
            text.contains(&format!("{code} (docs/diagnostics.md#{})", code.to_ascii_lowercase())),
            "{code}: the output shown is not the output of this code"
        );
        assert!(text.contains("**Fixed:**"), "{code}: section has no fixed example");
    }
}

#[test]
fn every_emitted_code_has_a_fixture() {
    let emitted = emitted_codes();
    let fixtures = fixture_codes();
    let exempt: BTreeSet<String> = NO_FIXTURE.iter().map(|(c, _)| (*c).to_owned()).collect();

    let missing: Vec<&String> = emitted.iter().filter(|c| !fixtures.contains(*c) && !exempt.contains(*c)).collect();
    assert!(
        missing.is_empty(),
        "codes emitted by crates/compiler/src without a tests/fixtures/PFNNN_<case>.yaml: {missing:?}"
    );
    let stale: Vec<&String> = fixtures.difference(&emitted).collect();
    assert!(stale.is_empty(), "fixtures for codes the compiler no longer emits: {stale:?}");
    for code in &exempt {
        assert!(
            emitted.contains(code),
            "{code} is exempt from fixtures but no longer emitted: drop it from NO_FIXTURE"
        );
    }
}
