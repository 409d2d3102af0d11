//! The VS Code extension (`editors/vscode/`): `package.sh` packages it with vsce into a .vsix,
//! which must hold the manifest, the entry script and the client library with its
//! dependencies, and nothing of the development tools; the packaged extension is then unpacked
//! and activated in Node with a stand-in for the `vscode` module (`editors/vscode/test/
//! activate.js`): the client it builds runs `provflow lsp` for the YAML files under
//! `definitions/`, and the client library's own start-up code starts the real server, which
//! answers and publishes a diagnostic. A second test type-checks extension.js (`// @ts-check`)
//! against the VS Code API with `tsc`.
//!
//! Needs node and `npm ci --prefix editors/vscode` (scripts/test.sh runs it), and python3 to
//! read the .vsix (a zip). Without them the tests are skipped with a SKIPPED line, unless
//! `CI=true` or `PROVFLOW_REQUIRE_EDITOR_TESTS=1`, where missing tooling is a failure.

use provflow_tests::{provflow_bin, repo_root, run_bounded, TempProject};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn tooling_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("PROVFLOW_REQUIRE_EDITOR_TESTS").is_ok_and(|v| v == "1")
}

fn skip_or_fail(why: &str) {
    let message = format!("the VS Code extension test did not run: {why} (run `npm ci --prefix editors/vscode`)");
    if tooling_required() {
        panic!("CI=true or PROVFLOW_REQUIRE_EDITOR_TESTS=1, but {message}");
    }
    eprintln!("SKIPPED: {message}");
}

/// `editors/vscode` with its node_modules installed and node on PATH; `None` (said) otherwise.
fn extension_dir(needs: &[&str]) -> Option<PathBuf> {
    let dir = repo_root().join("editors").join("vscode");
    for package in needs {
        if !dir.join("node_modules").join(package).is_dir() {
            skip_or_fail(&format!("editors/vscode/node_modules/{package} is missing"));
            return None;
        }
    }
    if Command::new("node").arg("--version").output().is_err() {
        skip_or_fail("node is not on PATH");
        return None;
    }
    Some(dir)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Checks every entry of a .vsix (CRCs included), lists it and unpacks it into `into`, with
/// Python's zipfile. `None` (said) when python3 is missing.
fn unpack(vsix: &Path, into: &Path) -> Option<Vec<String>> {
    const SCRIPT: &str = "import sys, zipfile\n\
        z = zipfile.ZipFile(sys.argv[1])\n\
        bad = z.testzip()\n\
        assert bad is None, 'corrupt entry: ' + str(bad)\n\
        z.extractall(sys.argv[2])\n\
        print('\\n'.join(z.namelist()))\n";
    if let Err(e) = Command::new("python3").arg("--version").output() {
        skip_or_fail(&format!("python3 cannot run ({e}) to read the .vsix"));
        return None;
    }
    let out = run_bounded(Command::new("python3").arg("-c").arg(SCRIPT).arg(vsix).arg(into), Duration::from_secs(30));
    assert_eq!(out.code(), Some(0), "the .vsix is not a sound zip:\n{out}");
    Some(out.stdout.lines().map(str::to_string).collect())
}

#[test]
fn packaged_extension_holds_its_client_library_and_starts_provflow_lsp() {
    let Some(dir) = extension_dir(&["@vscode/vsce", "vscode-languageclient"]) else { return };
    let out_dir = tempfile::tempdir().expect("a temporary directory");
    let packaged =
        run_bounded(Command::new("sh").arg(dir.join("package.sh")).arg(out_dir.path()), Duration::from_secs(60));
    assert_eq!(packaged.code(), Some(0), "editors/vscode/package.sh failed:\n{packaged}");
    let vsix = out_dir.path().join("provflow.vsix");
    assert!(vsix.is_file(), "package.sh wrote no provflow.vsix:\n{packaged}");

    let unpacked = out_dir.path().join("unpacked");
    let Some(names) = unpack(&vsix, &unpacked) else { return };
    let has = |name: &str| names.iter().any(|n| n == name);
    let manifest = read_json(&unpacked.join("extension").join("package.json"));
    let main = manifest["main"].as_str().expect("package.json names its entry script");
    let entry = format!("extension/{}", main.trim_start_matches("./"));
    for expected in [
        "extension/package.json",
        entry.as_str(),
        "extension/readme.md",
        "extension/LICENSE.txt",
        "extension/node_modules/vscode-languageclient/package.json",
        "extension/node_modules/vscode-languageclient/lib/node/main.js",
        "extension/node_modules/vscode-languageserver-protocol/package.json",
        "extension/node_modules/vscode-jsonrpc/package.json",
    ] {
        assert!(has(expected), "the .vsix has no {expected}; it holds:\n{}", names.join("\n"));
    }
    for left_out in [
        "extension/node_modules/@vscode/",
        "extension/node_modules/typescript/",
        "extension/node_modules/@types/",
        "extension/test/",
        "extension/package.sh",
        "extension/tsconfig.json",
    ] {
        assert!(!names.iter().any(|n| n.starts_with(left_out)), "the .vsix holds {left_out}");
    }
    assert_eq!(manifest["publisher"], "provflow");
    assert_eq!(manifest["license"], "Apache-2.0", "the workspace's license");
    assert_eq!(manifest["version"], env!("CARGO_PKG_VERSION"), "the extension's version is the workspace's");
    assert!(manifest["engines"]["vscode"].as_str().is_some_and(|v| v.starts_with('^')), "{manifest}");

    // The packaged extension, activated with its own node_modules, starts the real server.
    let workspace = TempProject::new();
    workspace.copy_from_repo("definitions");
    let root = workspace.path().canonicalize().expect("the workspace exists");
    let activated = run_bounded(
        Command::new("node")
            .arg(dir.join("test").join("activate.js"))
            .arg(unpacked.join("extension"))
            .arg(provflow_bin())
            .arg(&root)
            .current_dir(&unpacked),
        Duration::from_secs(60),
    );
    assert_eq!(activated.code(), Some(0), "the packaged extension did not start provflow lsp:\n{activated}");
    assert!(activated.stdout.starts_with("ok: "), "{activated}");
    eprintln!("{}", activated.stdout.trim_end());
}

#[test]
fn extension_type_checks_against_the_vscode_api_and_pins_its_dependencies() {
    let Some(dir) = extension_dir(&["typescript", "@types/vscode"]) else { return };
    let manifest = read_json(&dir.join("package.json"));
    let lock = read_json(&dir.join("package-lock.json"));
    for section in ["dependencies", "devDependencies"] {
        let Some(deps) = manifest[section].as_object() else { panic!("package.json has no {section}") };
        for (name, version) in deps {
            let version = version.as_str().unwrap_or("");
            assert!(
                !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.'),
                "{section}.{name} is pinned exactly, not `{version}`"
            );
            let locked = &lock["packages"][format!("node_modules/{name}")]["version"];
            assert_eq!(locked, version, "package-lock.json holds {name} {version}");
        }
    }
    // @types/vscode must not be newer than the VS Code the extension says it runs on (vsce
    // refuses that too).
    let engine = manifest["engines"]["vscode"].as_str().unwrap_or("").trim_start_matches('^');
    assert_eq!(manifest["devDependencies"]["@types/vscode"], engine, "@types/vscode is engines.vscode");

    let tsc = dir.join("node_modules").join("typescript").join("bin").join("tsc");
    let out = run_bounded(
        Command::new("node").arg(tsc).arg("-p").arg(dir.join("tsconfig.json")).current_dir(&dir),
        Duration::from_secs(60),
    );
    assert_eq!(out.code(), Some(0), "extension.js or its test does not type-check:\n{out}");
}
