//! The committed JSON Schemas (`schemas/`) against the example definitions (`definitions/`),
//! checked the way an editor checks them: an independent YAML parser (`serde_yaml`, not the
//! compiler's span-aware loader) and an independent draft 2020-12 validator (`boon`, not the
//! `jsonschema` crate the compiler uses). If the two stacks disagree with the compiler, a user
//! sees red squiggles on a file that compiles, or the reverse.

use provflow_tests::{provflow, repo_root, run_bounded};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MODELINE: &str = "# yaml-language-server: $schema=";

fn files_under(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if keep(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn is_yaml(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

fn definition_files() -> Vec<PathBuf> {
    let files = files_under(&repo_root().join("definitions"), &is_yaml);
    assert!(!files.is_empty(), "no YAML files under definitions/");
    files
}

fn schema_files() -> Vec<PathBuf> {
    let files = files_under(&repo_root().join("schemas"), &|p| p.to_string_lossy().ends_with(".schema.json"));
    assert!(files.iter().any(|f| f.ends_with("provflow.schema.json")), "schemas/provflow.schema.json is missing");
    files
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// A boon compiler with every committed schema registered at its file URL, in draft 2020-12
/// with `format` asserted (as yaml-language-server does).
fn schema_compiler() -> boon::Compiler {
    let mut compiler = boon::Compiler::new();
    compiler.set_default_draft(boon::Draft::V2020_12);
    compiler.enable_format_assertions();
    for path in schema_files() {
        compiler
            .add_resource(&file_url(&path), read_json(&path))
            .unwrap_or_else(|e| panic!("boon refuses {}: {e}", path.display()));
    }
    compiler
}

/// Every `---` document of a YAML file, as JSON, through serde_yaml.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .enumerate()
        .filter_map(|(i, doc)| {
            let value = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: document {} is not valid YAML: {e}", path.display(), i + 1));
            (!value.is_null()).then_some(value)
        })
        .collect()
}

#[test]
fn every_schema_file_is_a_valid_json_schema() {
    let mut compiler = schema_compiler();
    let mut schemas = boon::Schemas::new();
    for path in schema_files() {
        let schema = read_json(&path);
        assert_eq!(
            schema.get("$schema").and_then(Value::as_str),
            Some("https://json-schema.org/draft/2020-12/schema"),
            "{} must declare draft 2020-12",
            path.display()
        );
        // Compiling validates the schema against the draft 2020-12 meta-schema.
        compiler.compile(&file_url(&path), &mut schemas).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
    }
}

#[test]
fn every_definition_document_validates_against_the_committed_schema() {
    let mut compiler = schema_compiler();
    let mut schemas = boon::Schemas::new();
    let root = repo_root().join("schemas").join("provflow.schema.json");
    let index = compiler.compile(&file_url(&root), &mut schemas).unwrap_or_else(|e| panic!("{e:#}"));

    let mut failures = Vec::new();
    let mut checked = 0;
    for file in definition_files() {
        for (i, doc) in yaml_documents(&file).iter().enumerate() {
            checked += 1;
            if let Err(e) = schemas.validate(doc, index) {
                failures.push(format!("{} (document {}): {e:#}", file.display(), i + 1));
            }
        }
    }
    assert!(checked >= 10, "only {checked} documents found under definitions/");
    assert!(
        failures.is_empty(),
        "{} document(s) fail the committed schema:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The schema must also refuse what the compiler refuses structurally, or the editor gives no
/// hint: a misspelled field, a wrong kind, a missing name.
#[test]
fn the_committed_schema_refuses_structural_errors() {
    let mut compiler = schema_compiler();
    let mut schemas = boon::Schemas::new();
    let root = repo_root().join("schemas").join("provflow.schema.json");
    let index = compiler.compile(&file_url(&root), &mut schemas).unwrap_or_else(|e| panic!("{e:#}"));
    let valid = serde_json::json!({
        "apiVersion": "provflow/v1", "kind": "Target", "name": "t", "dialect": "sqlite", "queries": "q"
    });
    assert!(schemas.validate(&valid, index).is_ok(), "the baseline target must be valid");
    for limit in [1, 4, 10_000] {
        let mut doc = valid.clone();
        doc["max_concurrent_calls"] = serde_json::json!(limit);
        assert!(schemas.validate(&doc, index).is_ok(), "the schema refuses max_concurrent_calls: {limit}");
    }
    // What the compiler refuses with PF315, the editor marks too.
    for limit in [
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(10_001),
        serde_json::json!(2.5),
        serde_json::json!("8"),
        serde_json::Value::Null,
    ] {
        let mut doc = valid.clone();
        doc["max_concurrent_calls"] = limit.clone();
        assert!(schemas.validate(&doc, index).is_err(), "the schema accepts max_concurrent_calls: {limit}");
    }
    let broken = [
        (
            "misspelled field",
            serde_json::json!({"apiVersion": "provflow/v1", "kind": "Target", "name": "t", "dialect": "sqlite", "queries": "q", "dialekt": "x"}),
        ),
        ("unknown kind", serde_json::json!({"apiVersion": "provflow/v1", "kind": "Targt", "name": "t"})),
        (
            "missing name",
            serde_json::json!({"apiVersion": "provflow/v1", "kind": "Target", "dialect": "sqlite", "queries": "q"}),
        ),
        (
            "wrong dialect",
            serde_json::json!({"apiVersion": "provflow/v1", "kind": "Target", "name": "t", "dialect": "oracle", "queries": "q"}),
        ),
        (
            "wrong apiVersion",
            serde_json::json!({"apiVersion": "provflow/v2", "kind": "Target", "name": "t", "dialect": "sqlite", "queries": "q"}),
        ),
    ];
    for (what, doc) in broken {
        assert!(schemas.validate(&doc, index).is_err(), "the schema accepts a document with a {what}");
    }
}

/// yaml-language-server reads a modeline from the comments at the head of each `---` document,
/// so every document repeats the file's: without it, a document gets no schema in an editor
/// without the repository's settings.
#[test]
fn every_definition_file_starts_with_a_schema_modeline_that_resolves() {
    let mut problems = Vec::new();
    for file in definition_files() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let first = text.lines().next().unwrap_or("");
        let lines: Vec<&str> = text.lines().collect();
        for (i, pair) in lines.windows(2).enumerate() {
            if pair[0].trim_end() == "---" && pair[1] != first {
                problems.push(format!(
                    "{}:{}: the document after `---` does not start with `{first}`",
                    file.display(),
                    i + 2
                ));
            }
        }
        let Some(target) = first.strip_prefix(MODELINE) else {
            problems.push(format!("{}: first line is not `{MODELINE}...`", file.display()));
            continue;
        };
        let schema = file.parent().map(|dir| dir.join(target.trim())).unwrap_or_default();
        if !schema.is_file() {
            problems.push(format!("{}: modeline points at {}, which does not exist", file.display(), schema.display()));
        } else {
            let schemas_dir = repo_root().join("schemas").canonicalize().unwrap_or_default();
            if !schema.canonicalize().is_ok_and(|s| s.starts_with(&schemas_dir)) {
                problems.push(format!("{}: modeline points outside schemas/: {}", file.display(), schema.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn committed_schemas_match_the_code() {
    let dir = repo_root().join("schemas");
    let out = run_bounded(provflow().args(["schema", "--check", "--out"]).arg(&dir), Duration::from_secs(60));
    assert_eq!(out.code(), Some(0), "schemas/ is stale: run `provflow schema --out schemas` and commit\n{out}");
}

#[test]
fn schema_check_detects_drift() {
    // The check must be able to fail: a copy with one file edited is reported.
    let project = provflow_tests::TempProject::new();
    let copy = project.copy_from_repo("schemas");
    let target = copy.join("target.schema.json");
    let mut text = std::fs::read_to_string(&target).unwrap_or_default();
    text.push('\n');
    std::fs::write(&target, text).unwrap_or_else(|e| panic!("{e}"));
    let out = run_bounded(provflow().args(["schema", "--check", "--out"]).arg(&copy), Duration::from_secs(60));
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("target.schema.json"), "{out}");
}
