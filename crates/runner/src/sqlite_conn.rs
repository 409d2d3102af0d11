//! What the SQLite state store, SQLite targets and reconciliation share about opening a file:
//! WAL mode, the durability setting, and waiting out other processes that open it at the
//! same moment. Neither the store nor the targets import each other.

use std::path::Path;
use std::time::{Duration, Instant};

/// Chooses fsync on every commit (`full`) over durability against killed processes only
/// (`normal`, the default), for the state store and SQLite targets alike.
pub const SYNC_ENV: &str = "PROVFLOW_SQLITE_SYNC";

/// The `PRAGMA synchronous` value of every SQLite file provflow opens (see [`SYNC_ENV`]).
pub fn synchronous() -> &'static str {
    static VALUE: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    VALUE.get_or_init(|| match std::env::var(SYNC_ENV) {
        Ok(v) if v.trim().eq_ignore_ascii_case("full") => "FULL",
        _ => "NORMAL",
    })
}

/// Opens `path` in WAL mode with provflow's durability setting ([`synchronous`]) and foreign
/// keys on, waiting up to `busy` for other connections. `page_size` applies to a new file only.
///
/// Switching a file to WAL needs it to itself for a moment, and SQLite answers "database is
/// locked" at once, without calling the busy handler, when another process is doing the same
/// (several workers or commands opening a fresh file together). That answer is retried here
/// until `busy` has passed; any other error is returned as it is.
pub fn open_wal(path: &Path, busy: Duration, page_size: Option<u32>) -> rusqlite::Result<rusqlite::Connection> {
    create_private(path).map_err(|e| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!("cannot create `{}`: {e}", path.display())),
        )
    })?;
    let before = page_size.map(|p| format!("PRAGMA page_size = {p};")).unwrap_or_default();
    let pragmas = format!("PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;", synchronous());
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(busy)?;
    let deadline = Instant::now() + busy;
    let mut pause = Duration::from_millis(2);
    loop {
        match conn.execute_batch(&format!("{before} PRAGMA journal_mode = WAL; {pragmas}")) {
            Ok(()) => return Ok(conn),
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Creates the directories up to `dir` that are missing, readable by their owner only (a
/// state store, a target's file and the key file hold what nobody else should read).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `path` empty, readable and writable by its owner only, unless it exists (an
/// existing file keeps the permissions its owner gave it). SQLite gives its `-wal` and `-shm`
/// files the permissions of the database file.
pub fn create_private(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        private_dir(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eight threads switch one fresh file to WAL at the same moment: all succeed.
    #[test]
    fn a_fresh_file_opened_by_eight_at_once() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("f{round}.db"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        open_wal(&path, Duration::from_secs(10), Some(1024)).map(|_| ())
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap().unwrap();
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn new_files_and_directories_are_private_existing_ones_keep_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a/b/state.db");
        let conn = open_wal(&db, Duration::from_secs(5), None).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&db.with_extension("db-wal")), 0o600, "SQLite gives the WAL the database's mode");
        assert_eq!((mode(&dir.path().join("a")), mode(&dir.path().join("a/b"))), (0o700, 0o700));
        drop(conn);
        let shared = dir.path().join("shared.db");
        std::fs::write(&shared, b"").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
        drop(open_wal(&shared, Duration::from_secs(5), None).unwrap());
        assert_eq!(mode(&shared), 0o640, "an existing file keeps the mode its owner gave it");
    }
}
