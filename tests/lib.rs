//! Helpers shared by the end-to-end tests: where the `provflow` binary is, running it with a
//! deadline and a memory ceiling, throw-away project directories, and database availability.
//!
//! The binary is found next to the test executable (`target/<profile>/provflow`) and built on
//! first use with `cargo build -p provflow-cli`: cargo only builds the binaries of the package
//! under test, and `provflow-cli` has no library a dev-dependency could point at. Set
//! `PROVFLOW_BIN` to test another build.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// The directory of this crate (`<repo>/tests`).
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The path of the `provflow` binary, built once per test process.
pub fn provflow_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("PROVFLOW_BIN") {
            return PathBuf::from(bin);
        }
        // Build with the profile of the tests themselves (`--release` tests test a release binary).
        let profile_dir = profile_dir();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.current_dir(repo_root()).args(["build", "--quiet", "-p", "provflow-cli", "--bin", "provflow"]);
        if release {
            build.arg("--release");
        }
        if let Some(target_dir) = profile_dir.parent() {
            build.env("CARGO_TARGET_DIR", target_dir);
        }
        let status = build.status().unwrap_or_else(|e| panic!("cannot run cargo to build provflow: {e}"));
        assert!(status.success(), "`cargo build -p provflow-cli` failed: {status}");
        let bin = profile_dir.join(format!("provflow{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "provflow binary not found at {}", bin.display());
        bin
    })
}

/// `target/<profile>`: test executables live in `target/<profile>/deps`.
fn profile_dir() -> PathBuf {
    let from_exe =
        std::env::current_exe().ok().and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf));
    from_exe.unwrap_or_else(|| repo_root().join("target").join("debug"))
}

/// A `Command` for the built `provflow` binary, with colour and terminal-width dependence off
/// so that output is the same on every machine.
pub fn provflow() -> Command {
    let mut cmd = Command::new(provflow_bin());
    cmd.env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .env_remove("PROVFLOW_STATE")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null());
    cmd
}

/// What a finished run printed, and how it ended.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl RunOutput {
    /// The exit code; `None` when the process died from a signal (a crash or an abort after
    /// exceeding the memory ceiling).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The `code` fields of the JSON diagnostics on stdout (`--format json`).
    pub fn json_codes(&self) -> Vec<String> {
        self.json_diagnostics()
            .iter()
            .filter_map(|d| d.get("code").and_then(serde_json::Value::as_str).map(String::from))
            .collect()
    }

    /// Every JSON line of stdout. A line that is not JSON fails the test: the JSON format must
    /// stay machine-readable.
    pub fn json_diagnostics(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}\n{self}")))
            .collect()
    }
}

impl std::fmt::Display for RunOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = |s: &str| -> String {
            if s.len() > 4000 {
                let mut end = 4000;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}… ({} bytes)", &s[..end], s.len())
            } else {
                s.to_owned()
            }
        };
        write!(
            f,
            "status: {}, {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.elapsed,
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }
}

/// The data-segment ceiling applied by [`run_bounded`]. Generous for a compile of large files,
/// far below what an unbounded expansion would take.
pub const MEMORY_CEILING_MIB: u64 = 1024;

/// Runs `cmd` to completion, failing the test if it takes longer than `deadline` (the process
/// is killed first). On Unix the process also runs under a data-segment limit of
/// [`MEMORY_CEILING_MIB`], so a memory blow-up shows as an allocation failure (a signal, not
/// an exit code) instead of taking the machine down.
pub fn run_bounded(cmd: &mut Command, deadline: Duration) -> RunOutput {
    let mut cmd = with_memory_ceiling(cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // Drain both pipes on threads, so that a chatty process cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = err.join().unwrap_or_default();
                panic!("{cmd:?} did not finish within {deadline:?}; killed it\n--- stderr\n{stderr}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    let elapsed = start.elapsed();
    RunOutput { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default(), elapsed }
}

#[cfg(unix)]
fn with_memory_ceiling(cmd: &Command) -> Command {
    // `ulimit -d` (RLIMIT_DATA) counts memory actually made writable, unlike `-v`, which
    // counts the address space reserved for thread arenas and would fail on many-core machines.
    let mut wrapped = Command::new("sh");
    wrapped
        .arg("-c")
        .arg(format!("ulimit -d {} && exec \"$0\" \"$@\"", MEMORY_CEILING_MIB * 1024))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    wrapped.stdin(Stdio::null());
    wrapped
}

#[cfg(not(unix))]
fn with_memory_ceiling(cmd: &Command) -> Command {
    let mut copy = Command::new(cmd.get_program());
    copy.args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        copy.current_dir(dir);
    }
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => copy.env(key, v),
            None => copy.env_remove(key),
        };
    }
    copy.stdin(Stdio::null());
    copy
}

/// A throw-away project directory: definitions are written into it and `provflow` runs with
/// it as the working directory, so the default state store (`.provflow/state.db`) and sqlite
/// targets land inside it and vanish with it.
pub struct TempProject {
    dir: tempfile::TempDir,
}

impl TempProject {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("provflow-e2e-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        TempProject { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating its directories) and returns its absolute path.
    pub fn write(&self, relative: impl AsRef<Path>, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Copies a directory of the repository (e.g. `definitions`) into the project, recursively.
    pub fn copy_from_repo(&self, relative: impl AsRef<Path>) -> PathBuf {
        let from = repo_root().join(relative.as_ref());
        let to = self.dir.path().join(relative.as_ref());
        copy_dir(&from, &to);
        to
    }

    /// `provflow` with this project as the working directory.
    pub fn provflow(&self) -> Command {
        let mut cmd = provflow();
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// Runs `provflow ARGS` in the project with a deadline (see [`run_bounded`]).
    pub fn run(&self, args: &[&str], deadline: Duration) -> RunOutput {
        run_bounded(self.provflow().args(args), deadline)
    }
}

impl Default for TempProject {
    fn default() -> Self {
        TempProject::new()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot list {}: {e}", from.display()));
    for entry in entries.flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("cannot copy {}: {e}", src.display()));
        }
    }
}

/// The URL of a test database from the environment variable `var`.
///
/// When it is not set the test should return early: this prints a SKIPPED line naming the test
/// and returns `None`. With `PROVFLOW_REQUIRE_DATABASES=1` (set in CI) a missing database is a
/// failure instead, so that CI cannot go green by skipping.
pub fn database_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let current = std::thread::current();
            let test = current.name().unwrap_or("<unnamed test>");
            let message = format!("{test}: {var} not set (start PostgreSQL/MariaDB and set {var} to run it)");
            if std::env::var("PROVFLOW_REQUIRE_DATABASES").is_ok_and(|v| v == "1") {
                panic!("PROVFLOW_REQUIRE_DATABASES=1 but {message}");
            }
            eprintln!("SKIPPED: {message}");
            None
        }
    }
}

/// Parses `.eml` files with Python's `email` package under `email.policy.strict`
/// (`tests/eml_check.py`, which fails on any defect) and returns what it read, one JSON
/// object per file. `None` when `python3` is not on PATH outside CI (said on stderr); with
/// `CI=true` it must be there.
pub fn python_eml_check(files: &[PathBuf]) -> Option<Vec<serde_json::Value>> {
    let script = tests_dir().join("eml_check.py");
    let out = match Command::new("python3").arg(&script).args(files).stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED the Python email check: `python3` is not on PATH (with CI=true it is required)");
            return None;
        }
        Err(e) => panic!("cannot run python3 {}: {e}", script.display()),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Python's email package (strict policy) refused a message:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_reads_the_variable_or_skips() {
        // Both variables are unique to this test, so no other test races on them.
        std::env::set_var("PROVFLOW_TEST_HELPER_URL", "postgres://x@y/z");
        assert_eq!(database_url("PROVFLOW_TEST_HELPER_URL").as_deref(), Some("postgres://x@y/z"));
        if std::env::var("PROVFLOW_REQUIRE_DATABASES").is_err() {
            assert_eq!(database_url("PROVFLOW_TEST_HELPER_UNSET_URL"), None);
        }
    }

    #[test]
    fn temp_project_writes_and_cleans_up() {
        let path;
        {
            let p = TempProject::new();
            let f = p.write("a/b.yaml", "x: 1\n");
            assert_eq!(std::fs::read_to_string(&f).ok().as_deref(), Some("x: 1\n"));
            path = p.path().to_path_buf();
        }
        assert!(!path.exists());
    }

    #[test]
    fn run_bounded_kills_on_deadline() {
        let result = std::panic::catch_unwind(|| {
            run_bounded(Command::new("sleep").arg("5"), Duration::from_millis(200));
        });
        assert!(result.is_err(), "a process past its deadline must fail the test");
    }
}
