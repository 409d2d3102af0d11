//! The committed schemas in the editor people use: the real yaml-language-server (the engine of
//! VS Code's YAML extension, also run by Neovim, Helix and Zed), driven over stdio by the
//! scripted LSP client `editors/yaml-ls-test/check.js` with the repository's
//! `.vscode/settings.json`. It checks, for every kind, hover on every field and enum value,
//! completion of fields, enum values and scenario step kinds, structural errors at the right
//! line in a second `---` document, no false positive on `definitions/`, and a schema for every
//! document from its modeline alone (see the header of check.js).
//!
//! Needs node and `npm ci --prefix editors/yaml-ls-test` (scripts/test.sh runs it). Without
//! them the test is skipped with a SKIPPED line, unless `CI=true` or
//! `PROVFLOW_REQUIRE_EDITOR_TESTS=1`, where missing tooling is a failure.

use provflow_tests::{repo_root, run_bounded};
use std::process::Command;
use std::time::Duration;

fn tooling_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("PROVFLOW_REQUIRE_EDITOR_TESTS").is_ok_and(|v| v == "1")
}

fn skip_or_fail(why: &str) {
    let message =
        format!("the yaml-language-server test did not run: {why} (run `npm ci --prefix editors/yaml-ls-test`)");
    if tooling_required() {
        panic!("CI=true or PROVFLOW_REQUIRE_EDITOR_TESTS=1, but {message}");
    }
    eprintln!("SKIPPED: {message}");
}

#[test]
fn yaml_language_server_gives_every_field_its_description_completion_and_errors() {
    let root = repo_root();
    let dir = root.join("editors").join("yaml-ls-test");
    if !dir.join("node_modules").join("yaml-language-server").is_dir() {
        return skip_or_fail("editors/yaml-ls-test/node_modules is missing");
    }
    if Command::new("node").arg("--version").output().is_err() {
        return skip_or_fail("node is not on PATH");
    }
    let out = run_bounded(Command::new("node").arg(dir.join("check.js")).arg(&root), Duration::from_secs(120));
    assert_eq!(out.code(), Some(0), "yaml-language-server disagrees with schemas/:\n{out}");
    assert!(out.stdout.starts_with("ok: "), "{out}");
    eprintln!("{}", out.stdout.trim_end());
}
