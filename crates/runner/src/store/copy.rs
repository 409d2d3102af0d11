//! `provflow state copy`: moves a state store to another database (SQLite → PostgreSQL and
//! back, or SQLite → SQLite), everything included: the audit trail, the outbox,
//! reconciliation runs and events, and forms with their secrets still sealed (the sealed text
//! is copied as it is, never opened, so no key is needed).
//!
//! Guarantees:
//!
//! - **The source is only read**, in one snapshot: one read transaction on SQLite (the file is
//!   opened read-only), one `REPEATABLE READ READ ONLY` transaction on PostgreSQL. It is never
//!   migrated: a source at another schema version than this provflow's is refused.
//! - **A non-empty destination is refused** before anything is written (any row in any of
//!   [`TABLES`]), and checked again inside the copy's transaction.
//! - **All or nothing**: the destination is created and migrated first (empty tables), then
//!   every row is written in one destination transaction, verified in it, and committed only
//!   when every table matches. A killed copy, a failed one or a mismatched one leaves the
//!   destination's tables empty. (PostgreSQL sequences are moved with `setval`, which is not
//!   transactional: a copy killed after that leaves sequences ahead, which costs nothing.)
//! - **Verified**: per table, the row count and a SHA-256 over a canonical rendering of every
//!   row, ordered by primary key, computed the same way on the rows read from the source and
//!   on the rows read back from the destination ([`Checksum`]).
//! - **Ids are kept**, and PostgreSQL sequences are set past the largest id, so new rows never
//!   collide. On SQLite the implicit `rowid` of `bundles` (PostgreSQL's `bundles.seq`, the
//!   tie-break of the newest bundle) and of `users` (equal to `usr_key`) is kept too.
//!
//! Columns are read from each database's catalog, so a column added by a later migration is
//! copied without changes here; a new table must be added to [`TABLES`] (a test checks that
//! the list covers every table of both schemas).

use postgres::types::ToSql;
use postgres::Client;
use sha2::{Digest, Sha256};

use super::{location, postgres as pg, Location, StoreError, SCHEMA_VERSION};
use crate::clock::Instant;
use crate::credentials;

/// A table of the store, as the copy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    /// The primary key: rows are copied and checksummed in its order.
    key: &'static str,
    /// The column SQLite's implicit `rowid` carries: read as that column when the SQLite table
    /// has no such column (`bundles.seq`), and written as the `rowid` of a SQLite destination.
    rowid: Option<&'static str>,
}

/// Every table of the store, parents before children (foreign keys hold after each insert).
/// `schema_migrations` is not copied row by row: the destination is migrated by this provflow
/// and only the migrations' `applied_at` is taken from the source.
pub const TABLES: &[Table] = &[
    Table { name: "schema_migrations", key: "version", rowid: None },
    Table { name: "bundles", key: "hash", rowid: Some("seq") },
    Table { name: "users", key: "login", rowid: Some("usr_key") },
    Table { name: "accounts", key: "id", rowid: None },
    Table { name: "workers", key: "id", rowid: None },
    Table { name: "task_instances", key: "id", rowid: None },
    Table { name: "task_audit", key: "id", rowid: None },
    Table { name: "outbox", key: "id", rowid: None },
    Table { name: "recon_runs", key: "id", rowid: None },
    Table { name: "recon_events", key: "id", rowid: None },
    Table { name: "store_meta", key: "name", rowid: None },
];

/// How many rows are read, written and hashed at a time.
const CHUNK: usize = 500;

/// Why a copy did not happen. [`CopyError::Usage`] and [`CopyError::Refused`] are found
/// before anything is written; [`CopyError::Failed`] after the destination's transaction
/// started, which was then rolled back.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The arguments: a URL that is not a store's, the same store twice.
    #[error("{0}")]
    Usage(String),
    /// The environment: a store that cannot be opened or reached, no store at the source,
    /// schema versions that differ, a destination that is not empty.
    #[error("{0}")]
    Refused(String),
    /// The copy itself failed; the destination's transaction was rolled back.
    #[error("the copy stopped: {0}; the destination's transaction was rolled back, so it holds no copied rows (run the copy again once the cause is fixed)")]
    Failed(String),
}

/// The outcome of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableCheck {
    pub table: &'static str,
    pub source_rows: u64,
    pub source_checksum: String,
    pub destination_rows: u64,
    pub destination_checksum: String,
}

impl TableCheck {
    pub fn matches(&self) -> bool {
        self.source_rows == self.destination_rows && self.source_checksum == self.destination_checksum
    }
}

/// What a copy did: committed only when every table matches ([`CopyReport::verified`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CopyReport {
    /// The source and destination as given, passwords masked.
    pub from: String,
    pub to: String,
    pub schema_version: i64,
    pub tables: Vec<TableCheck>,
}

impl CopyReport {
    /// Whether every table matched; the copy was committed exactly then.
    pub fn verified(&self) -> bool {
        self.tables.iter().all(TableCheck::matches)
    }

    /// The tables whose copy differs from the source.
    pub fn mismatched(&self) -> Vec<&'static str> {
        self.tables.iter().filter(|t| !t.matches()).map(|t| t.table).collect()
    }
}

/// Copies the store at `from` into the empty store at `to` (created and migrated if needed)
/// and verifies it; see the module's guarantees. `now` stamps the destination's migrations
/// only until the source's `applied_at` replace them.
pub fn copy(from: &str, to: &str, now: Instant) -> Result<CopyReport, CopyError> {
    let (from_shown, to_shown) = (credentials::redact(from), credentials::redact(to));
    let source_at = location(from).map_err(|e| CopyError::Usage(format!("--from: {e}")))?;
    let dest_at = location(to).map_err(|e| CopyError::Usage(format!("--to: {e}")))?;
    if same_store(&source_at, &dest_at) {
        return Err(CopyError::Usage(format!(
            "--from and --to name the same store (`{from_shown}`); give another destination"
        )));
    }

    // The source: one snapshot for the checks and the copy.
    let mut source = Conn::open_source(&source_at).map_err(|e| refused("--from", &from_shown, e))?;
    source.begin_snapshot().map_err(|e| refused("--from", &from_shown, e))?;
    let version = source.version().map_err(|e| refused("--from", &from_shown, e))?;
    let version = match version {
        None => {
            return Err(CopyError::Refused(format!(
                "`{from_shown}` holds no provflow state store (it has no `schema_migrations` table); check --from"
            )))
        }
        Some(v) => v,
    };
    check_version(version, &from_shown)?;

    // The destination: refused when not empty, before its migration writes anything.
    Conn::check_destination(&dest_at, &to_shown)?;
    Conn::migrate(&dest_at, now).map_err(|e| refused("--to", &to_shown, e))?;
    let mut dest = Conn::open_destination(&dest_at).map_err(|e| refused("--to", &to_shown, e))?;
    let dest_version = dest.version().map_err(|e| refused("--to", &to_shown, e))?;
    if dest_version != Some(version) {
        return Err(CopyError::Refused(format!(
            "`{to_shown}` is at schema version {}, the source at {version}; nothing was copied",
            dest_version.unwrap_or(0)
        )));
    }

    dest.begin_write().map_err(|e| refused("--to", &to_shown, e))?;
    let copied = copy_tables(&mut source, &mut dest, &to_shown);
    let tables = match copied {
        Ok(tables) => tables,
        Err(e) => {
            dest.rollback();
            return Err(e);
        }
    };
    let report = CopyReport { from: from_shown, to: to_shown, schema_version: version, tables };
    if report.verified() {
        dest.commit().map_err(|e| CopyError::Failed(format!("committing the destination: {e}")))?;
    } else {
        dest.rollback();
    }
    source.rollback();
    Ok(report)
}

fn same_store(a: &Location, b: &Location) -> bool {
    match (a, b) {
        (Location::Sqlite(a), Location::Sqlite(b)) => {
            a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
        }
        (Location::Postgres(a), Location::Postgres(b)) => a == b,
        _ => false,
    }
}

/// A store error while opening or checking a side, worded for `state copy`'s flags.
fn refused(flag: &str, shown: &str, e: StoreError) -> CopyError {
    CopyError::Refused(match e {
        StoreError::Unreachable { endpoint, error } => format!(
            "{flag}: cannot reach the PostgreSQL database at {endpoint}: {error}; check that its server runs and the user, database and password of {flag}"
        ),
        other => format!("{flag} (`{shown}`): {other}"),
    })
}

fn check_version(found: i64, shown: &str) -> Result<(), CopyError> {
    if found > SCHEMA_VERSION {
        return Err(CopyError::Refused(format!(
            "`{shown}` is at schema version {found}, newer than this provflow's {SCHEMA_VERSION}; copy it with the provflow that wrote it (or a newer one)"
        )));
    }
    if found < SCHEMA_VERSION {
        return Err(CopyError::Refused(format!(
            "`{shown}` is at schema version {found}, older than this provflow's {SCHEMA_VERSION}; the copy does not migrate its source: migrate it first by running any command on it (e.g. `provflow --state {shown} task list`), or copy it with the provflow that wrote it"
        )));
    }
    Ok(())
}

/// Copies every table, then reads the destination back in the same transaction; one check
/// per table.
fn copy_tables(source: &mut Conn, dest: &mut Conn, to_shown: &str) -> Result<Vec<TableCheck>, CopyError> {
    let failed = |e: StoreError| CopyError::Failed(e.to_string());
    if let Some((table, rows)) = dest.first_nonempty().map_err(failed)? {
        return Err(not_empty(to_shown, table, rows));
    }
    let mut shapes = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let columns = source.columns(table).map_err(failed)?;
        let theirs = dest.columns(table).map_err(failed)?;
        let names = |cs: &[Column]| cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        if names(&columns) != names(&theirs) {
            return Err(CopyError::Failed(format!(
                "table `{}` has the columns {:?} on the source and {:?} on the destination",
                table.name,
                names(&columns),
                names(&theirs)
            )));
        }
        shapes.push((table, columns, theirs));
    }
    let mut sums = Vec::with_capacity(shapes.len());
    for (table, columns, theirs) in &shapes {
        let mut sum = Checksum::new(table.name, columns);
        source.read(table, columns, &mut |rows| {
            for row in &rows {
                sum.add(row);
            }
            if table.name == "schema_migrations" {
                dest.set_applied_at(&rows)
            } else {
                dest.insert(table, theirs, &rows)
            }
        })?;
        sums.push(sum.finish());
    }
    for (table, _, theirs) in &shapes {
        dest.reset_sequences(table, theirs).map_err(failed)?;
    }
    let mut checks = Vec::with_capacity(shapes.len());
    for ((table, _, theirs), (source_rows, source_checksum)) in shapes.iter().zip(sums) {
        let mut sum = Checksum::new(table.name, theirs);
        dest.read(table, theirs, &mut |rows| {
            for row in &rows {
                sum.add(row);
            }
            Ok(())
        })?;
        let (destination_rows, destination_checksum) = sum.finish();
        checks.push(TableCheck {
            table: table.name,
            source_rows,
            source_checksum,
            destination_rows,
            destination_checksum,
        });
    }
    Ok(checks)
}

fn not_empty(to_shown: &str, table: &str, rows: i64) -> CopyError {
    CopyError::Refused(format!(
        "the destination `{to_shown}` is not empty: table `{table}` holds {rows} row(s); nothing was written. Copy into a new SQLite file or an empty PostgreSQL database (`createdb NAME`)"
    ))
}

// ----- values and the checksum ------------------------------------------------------------

/// One value as both databases give it. PostgreSQL booleans are read as the integers 0 and 1
/// SQLite stores, so a flag hashes the same on both sides.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
    /// SQLite only (no column of the store is declared so; copied to SQLite as it is).
    Real(f64),
    /// SQLite only, as [`Cell::Real`].
    Blob(Vec<u8>),
}

impl Cell {
    fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Cell {
        use rusqlite::types::ValueRef;
        match v {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Int(i),
            ValueRef::Real(f) => Cell::Real(f),
            // Text that is not UTF-8 is kept byte for byte, as a blob.
            ValueRef::Text(t) => match std::str::from_utf8(t) {
                Ok(s) => Cell::Text(s.to_string()),
                Err(_) => Cell::Blob(t.to_vec()),
            },
            ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
        }
    }

    /// A PostgreSQL boolean, normalised to SQLite's integer.
    fn from_bool(b: bool) -> Cell {
        Cell::Int(i64::from(b))
    }

    fn to_sqlite(&self) -> rusqlite::types::Value {
        use rusqlite::types::Value;
        match self {
            Cell::Null => Value::Null,
            Cell::Int(i) => Value::Integer(*i),
            Cell::Text(s) => Value::Text(s.clone()),
            Cell::Real(f) => Value::Real(*f),
            Cell::Blob(b) => Value::Blob(b.clone()),
        }
    }

    /// A short description for messages: the kind and, for numbers, the value (never text:
    /// it may be a form).
    fn kind(&self) -> String {
        match self {
            Cell::Null => "NULL".into(),
            Cell::Int(i) => format!("the integer {i}"),
            Cell::Text(_) => "text".into(),
            Cell::Real(f) => format!("the real number {f}"),
            Cell::Blob(b) => format!("a blob of {} byte(s)", b.len()),
        }
    }

    /// Feeds the canonical rendering: a tag byte, then the value, lengths before bytes, so no
    /// two different rows render the same.
    fn hash_into(&self, sha: &mut Sha256) {
        match self {
            Cell::Null => sha.update(b"n"),
            Cell::Int(i) => {
                sha.update(b"i");
                sha.update(i.to_be_bytes());
            }
            Cell::Text(s) => {
                sha.update(b"t");
                sha.update((s.len() as u64).to_be_bytes());
                sha.update(s.as_bytes());
            }
            Cell::Real(f) => {
                sha.update(b"r");
                sha.update(f.to_bits().to_be_bytes());
            }
            Cell::Blob(b) => {
                sha.update(b"b");
                sha.update((b.len() as u64).to_be_bytes());
                sha.update(b);
            }
        }
    }
}

/// A table's row count and content checksum: SHA-256 over the table's name, its column names
/// (sorted) and every row's values in that column order, rows in primary-key order.
pub(crate) struct Checksum {
    sha: Sha256,
    rows: u64,
}

impl Checksum {
    fn new(table: &str, columns: &[Column]) -> Self {
        let mut sha = Sha256::new();
        Cell::Text(table.to_string()).hash_into(&mut sha);
        for c in columns {
            Cell::Text(c.name.clone()).hash_into(&mut sha);
        }
        Checksum { sha, rows: 0 }
    }

    fn add(&mut self, row: &[Cell]) {
        self.rows += 1;
        self.sha.update(b"R");
        for cell in row {
            cell.hash_into(&mut self.sha);
        }
    }

    /// The row count and the checksum in lower-case hex.
    fn finish(self) -> (u64, String) {
        let digest = self.sha.finalize();
        (self.rows, digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}

// ----- the two databases ------------------------------------------------------------------

/// How a column is read and bound.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// SQLite: whatever the row holds.
    Any,
    Int,
    Bool,
    Text,
}

#[derive(Debug, Clone, PartialEq)]
struct Column {
    name: String,
    kind: Kind,
    /// SQLite: not a column of the table but its `rowid` ([`Table::rowid`]).
    is_rowid: bool,
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Pg(Client),
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Conn {
    fn open_source(at: &Location) -> Result<Conn, StoreError> {
        match at {
            Location::Sqlite(path) => {
                if !path.is_file() {
                    return Err(StoreError::Open {
                        path: path.display().to_string(),
                        error: "no such file; check --from".into(),
                    });
                }
                let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = rusqlite::Connection::open_with_flags(path, flags)
                    .map_err(|e| StoreError::Open { path: path.display().to_string(), error: e.to_string() })?;
                conn.busy_timeout(std::time::Duration::from_secs(30))?;
                Ok(Conn::Sqlite(conn))
            }
            Location::Postgres(url) => Ok(Conn::Pg(pg::connect(url)?)),
        }
    }

    /// Refuses a destination that holds rows or a newer schema, without writing to it (a
    /// SQLite file that does not exist yet is empty).
    fn check_destination(at: &Location, shown: &str) -> Result<(), CopyError> {
        let mut conn = match at {
            Location::Sqlite(path) if !path.exists() => return Ok(()),
            Location::Sqlite(path) => Conn::open_source(&Location::Sqlite(path.clone())),
            Location::Postgres(url) => pg::connect(url).map(Conn::Pg),
        }
        .map_err(|e| refused("--to", shown, e))?;
        if let Some(found) = conn.version().map_err(|e| refused("--to", shown, e))? {
            if found > SCHEMA_VERSION {
                return Err(CopyError::Refused(format!(
                    "the destination `{shown}` is at schema version {found}, newer than this provflow's {SCHEMA_VERSION} (and not empty of provflow tables); copy with a newer provflow, or into another destination"
                )));
            }
        }
        match conn.first_nonempty().map_err(|e| refused("--to", shown, e))? {
            Some((table, rows)) => Err(not_empty(shown, table, rows)),
            None => Ok(()),
        }
    }

    /// Creates (if needed) and migrates the destination, as any command opening it would.
    fn migrate(at: &Location, now: Instant) -> Result<(), StoreError> {
        match at {
            Location::Sqlite(path) => drop(super::SqliteStore::open(path, None, Box::new(move || now))?),
            Location::Postgres(url) => drop(super::PgStore::open(url, None, Box::new(move || now))?),
        }
        Ok(())
    }

    fn open_destination(at: &Location) -> Result<Conn, StoreError> {
        match at {
            Location::Sqlite(path) => {
                let conn = crate::sqlite_conn::open_wal(path, std::time::Duration::from_secs(30), None)
                    .map_err(|e| StoreError::Open { path: path.display().to_string(), error: e.to_string() })?;
                Ok(Conn::Sqlite(conn))
            }
            Location::Postgres(url) => Ok(Conn::Pg(pg::connect(url)?)),
        }
    }

    /// Starts the source's snapshot: every later read sees the store as it is now.
    fn begin_snapshot(&mut self) -> Result<(), StoreError> {
        match self {
            // A deferred transaction takes its snapshot at its first read, the version's.
            Conn::Sqlite(c) => c.execute_batch("BEGIN")?,
            Conn::Pg(c) => c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?,
        }
        Ok(())
    }

    /// Starts the destination's one transaction, taking its write lock: on SQLite the file's,
    /// on PostgreSQL an EXCLUSIVE lock on every table (readers go on, writers wait).
    fn begin_write(&mut self) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => c.execute_batch("BEGIN IMMEDIATE")?,
            Conn::Pg(c) => {
                let tables = TABLES.iter().map(|t| quoted(t.name)).collect::<Vec<_>>().join(", ");
                c.batch_execute(&format!(
                    "BEGIN; SET LOCAL lock_timeout = '30s'; LOCK TABLE {tables} IN EXCLUSIVE MODE"
                ))?;
            }
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => c.execute_batch("COMMIT")?,
            Conn::Pg(c) => c.batch_execute("COMMIT")?,
        }
        Ok(())
    }

    /// Ends the transaction without keeping anything. Best effort: a connection that fails
    /// here is dropped next, and its transaction ends with it.
    fn rollback(&mut self) {
        let _ = match self {
            Conn::Sqlite(c) => c.execute_batch("ROLLBACK").map_err(StoreError::from),
            Conn::Pg(c) => c.batch_execute("ROLLBACK").map_err(StoreError::from),
        };
    }

    fn table_exists(&mut self, table: &str) -> Result<bool, StoreError> {
        Ok(match self {
            Conn::Sqlite(c) => c.query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
                [table],
                |r| r.get(0),
            )?,
            Conn::Pg(c) => c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted(table)])?.try_get(0)?,
        })
    }

    /// The newest applied migration; `None` without the migrations table.
    fn version(&mut self) -> Result<Option<i64>, StoreError> {
        if !self.table_exists("schema_migrations")? {
            return Ok(None);
        }
        let sql = "SELECT coalesce(max(version), 0) FROM schema_migrations";
        Ok(Some(match self {
            Conn::Sqlite(c) => c.query_row(sql, [], |r| r.get(0))?,
            Conn::Pg(c) => c.query_one(sql, &[])?.try_get(0)?,
        }))
    }

    /// The first data table (all but `schema_migrations`) holding a row, with its row count.
    fn first_nonempty(&mut self) -> Result<Option<(&'static str, i64)>, StoreError> {
        for table in TABLES.iter().filter(|t| t.name != "schema_migrations") {
            if !self.table_exists(table.name)? {
                continue;
            }
            let sql = format!("SELECT count(*) FROM {}", quoted(table.name));
            let rows: i64 = match self {
                Conn::Sqlite(c) => c.query_row(&sql, [], |r| r.get(0))?,
                Conn::Pg(c) => c.query_one(&sql, &[])?.try_get(0)?,
            };
            if rows > 0 {
                return Ok(Some((table.name, rows)));
            }
        }
        Ok(None)
    }

    /// The table's columns, sorted by name (the checksum's order on both sides).
    fn columns(&mut self, table: &Table) -> Result<Vec<Column>, StoreError> {
        let mut columns = Vec::new();
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare(&format!("PRAGMA table_info({})", quoted(table.name)))?;
                let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
                for name in names {
                    columns.push(Column { name: name?, kind: Kind::Any, is_rowid: false });
                }
                if let Some(rowid) = table.rowid.filter(|r| !columns.iter().any(|c| c.name == *r)) {
                    columns.push(Column { name: rowid.to_string(), kind: Kind::Any, is_rowid: true });
                }
            }
            Conn::Pg(c) => {
                let rows = c.query(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = $1",
                    &[&table.name],
                )?;
                for r in rows {
                    let name: String = r.try_get(0)?;
                    let data_type: String = r.try_get(1)?;
                    let kind = match data_type.as_str() {
                        "bigint" => Kind::Int,
                        "boolean" => Kind::Bool,
                        "text" => Kind::Text,
                        other => {
                            return Err(StoreError::Postgres(format!(
                                "column `{}.{name}` has the type `{other}`, which `state copy` does not know",
                                table.name
                            )))
                        }
                    };
                    columns.push(Column { name, kind, is_rowid: false });
                }
            }
        }
        columns.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(columns)
    }

    /// Reads every row of `table` in primary-key order, `columns` in their order, handing
    /// them to `each` a chunk at a time.
    fn read(
        &mut self,
        table: &Table,
        columns: &[Column],
        each: &mut dyn FnMut(Vec<Vec<Cell>>) -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        let failed = |e: StoreError| CopyError::Failed(e.to_string());
        let list = columns
            .iter()
            .map(|c| if c.is_rowid { format!("rowid AS {}", quoted(&c.name)) } else { quoted(&c.name) })
            .collect::<Vec<_>>()
            .join(", ");
        match self {
            Conn::Sqlite(c) => {
                let sql = format!("SELECT {list} FROM {} ORDER BY {}", quoted(table.name), quoted(table.key));
                let mut stmt = c.prepare(&sql).map_err(|e| failed(e.into()))?;
                let mut rows = stmt.query([]).map_err(|e| failed(e.into()))?;
                let mut chunk = Vec::with_capacity(CHUNK);
                while let Some(r) = rows.next().map_err(|e| failed(e.into()))? {
                    let mut row = Vec::with_capacity(columns.len());
                    for i in 0..columns.len() {
                        row.push(Cell::from_sqlite(r.get_ref(i).map_err(|e| failed(e.into()))?));
                    }
                    chunk.push(row);
                    if chunk.len() == CHUNK {
                        each(std::mem::take(&mut chunk))?;
                    }
                }
                if !chunk.is_empty() {
                    each(chunk)?;
                }
            }
            Conn::Pg(c) => {
                // Text keys in byte order, as SQLite sorts them.
                let key_is_text = columns.iter().any(|c| c.name == table.key && c.kind == Kind::Text);
                let collate = if key_is_text { " COLLATE \"C\"" } else { "" };
                c.batch_execute(&format!(
                    "DECLARE provflow_copy NO SCROLL CURSOR FOR SELECT {list} FROM {} ORDER BY {}{collate}",
                    quoted(table.name),
                    quoted(table.key)
                ))
                .map_err(|e| failed(e.into()))?;
                loop {
                    let rows =
                        c.query(&format!("FETCH {CHUNK} FROM provflow_copy"), &[]).map_err(|e| failed(e.into()))?;
                    if rows.is_empty() {
                        break;
                    }
                    let mut chunk = Vec::with_capacity(rows.len());
                    for r in &rows {
                        let mut row = Vec::with_capacity(columns.len());
                        for (i, col) in columns.iter().enumerate() {
                            row.push(pg_cell(r, i, col.kind).map_err(|e| failed(e.into()))?);
                        }
                        chunk.push(row);
                    }
                    each(chunk)?;
                }
                c.batch_execute("CLOSE provflow_copy").map_err(|e| failed(e.into()))?;
            }
        }
        Ok(())
    }

    /// Inserts rows read from the source (in `columns`' order, this side's shape).
    fn insert(&mut self, table: &Table, columns: &[Column], rows: &[Vec<Cell>]) -> Result<(), CopyError> {
        let failed = |e: StoreError| CopyError::Failed(format!("writing `{}`: {e}", table.name));
        match self {
            Conn::Sqlite(c) => {
                // Every real column, and the rowid when a column carries it.
                let mut names: Vec<String> = columns.iter().filter(|c| !c.is_rowid).map(|c| quoted(&c.name)).collect();
                let rowid_at = table.rowid.and_then(|r| columns.iter().position(|c| c.name == r));
                if rowid_at.is_some() {
                    names.push("rowid".into());
                }
                let marks = vec!["?"; names.len()].join(", ");
                let sql = format!("INSERT INTO {} ({}) VALUES ({marks})", quoted(table.name), names.join(", "));
                let mut stmt = c.prepare_cached(&sql).map_err(|e| failed(e.into()))?;
                for row in rows {
                    let mut values: Vec<rusqlite::types::Value> =
                        row.iter().zip(columns).filter(|(_, c)| !c.is_rowid).map(|(v, _)| v.to_sqlite()).collect();
                    if let Some(at) = rowid_at {
                        values.push(row.get(at).map_or(rusqlite::types::Value::Null, Cell::to_sqlite));
                    }
                    stmt.execute(rusqlite::params_from_iter(values)).map_err(|e| failed(e.into()))?;
                }
            }
            Conn::Pg(c) => {
                let names = columns.iter().map(|c| quoted(&c.name)).collect::<Vec<_>>().join(", ");
                let per_statement = (60_000 / columns.len().max(1)).clamp(1, CHUNK);
                for batch in rows.chunks(per_statement) {
                    let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(batch.len() * columns.len());
                    let mut tuples = Vec::with_capacity(batch.len());
                    for row in batch {
                        let mut marks = Vec::with_capacity(columns.len());
                        for (cell, col) in row.iter().zip(columns) {
                            params.push(pg_param(cell, col).map_err(|why| {
                                CopyError::Failed(format!(
                                    "table `{}`, row {}: {why}",
                                    table.name,
                                    row_key(table, columns, row)
                                ))
                            })?);
                            marks.push(format!("${}", params.len()));
                        }
                        tuples.push(format!("({})", marks.join(", ")));
                    }
                    let sql = format!("INSERT INTO {} ({names}) VALUES {}", quoted(table.name), tuples.join(", "));
                    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
                    c.execute(&sql, &refs).map_err(|e| failed(e.into()))?;
                }
            }
        }
        Ok(())
    }

    /// Takes the source's `applied_at` for the migrations the destination has applied too.
    fn set_applied_at(&mut self, rows: &[Vec<Cell>]) -> Result<(), CopyError> {
        for row in rows {
            // Columns sorted: applied_at, version.
            let (Some(Cell::Int(at)), Some(Cell::Int(version))) = (row.first(), row.get(1)) else {
                return Err(CopyError::Failed("a `schema_migrations` row of the source is not two integers".into()));
            };
            let updated = match self {
                Conn::Sqlite(c) => c
                    .execute("UPDATE schema_migrations SET applied_at = ?1 WHERE version = ?2", [at, version])
                    .map(|n| n as u64)
                    .map_err(StoreError::from),
                Conn::Pg(c) => c
                    .execute("UPDATE schema_migrations SET applied_at = $1 WHERE version = $2", &[at, version])
                    .map_err(StoreError::from),
            }
            .map_err(|e| CopyError::Failed(format!("writing `schema_migrations`: {e}")))?;
            if updated != 1 {
                return Err(CopyError::Failed(format!(
                    "the source has migration {version}, which the destination has not applied"
                )));
            }
        }
        Ok(())
    }

    /// PostgreSQL: moves every sequence of the table's columns past the largest value copied.
    fn reset_sequences(&mut self, table: &Table, columns: &[Column]) -> Result<(), StoreError> {
        let Conn::Pg(c) = self else { return Ok(()) };
        for col in columns.iter().filter(|c| c.kind == Kind::Int) {
            let sequence: Option<String> =
                c.query_one("SELECT pg_get_serial_sequence($1, $2)", &[&quoted(table.name), &col.name])?.try_get(0)?;
            let Some(sequence) = sequence else { continue };
            // Empty: the next value is 1; else the one after the largest.
            c.execute(
                &format!(
                    "SELECT setval($1::text::regclass, coalesce(max({col}), 1), max({col}) IS NOT NULL) FROM {table}",
                    col = quoted(&col.name),
                    table = quoted(table.name)
                ),
                &[&sequence],
            )?;
        }
        Ok(())
    }
}

/// A PostgreSQL value as a [`Cell`], by the column's type.
fn pg_cell(row: &postgres::Row, i: usize, kind: Kind) -> Result<Cell, postgres::Error> {
    Ok(match kind {
        Kind::Int | Kind::Any => row.try_get::<_, Option<i64>>(i)?.map_or(Cell::Null, Cell::Int),
        Kind::Bool => row.try_get::<_, Option<bool>>(i)?.map_or(Cell::Null, Cell::from_bool),
        Kind::Text => row.try_get::<_, Option<String>>(i)?.map_or(Cell::Null, Cell::Text),
    })
}

/// A [`Cell`] bound for a PostgreSQL column of `col`'s type; why not when it does not fit.
fn pg_param(cell: &Cell, col: &Column) -> Result<Box<dyn ToSql + Sync>, String> {
    Ok(match (col.kind, cell) {
        (Kind::Int, Cell::Null) => Box::new(None::<i64>),
        (Kind::Int, Cell::Int(i)) => Box::new(*i),
        (Kind::Bool, Cell::Null) => Box::new(None::<bool>),
        (Kind::Bool, Cell::Int(0)) => Box::new(false),
        (Kind::Bool, Cell::Int(1)) => Box::new(true),
        (Kind::Text | Kind::Any, Cell::Null) => Box::new(None::<String>),
        (Kind::Text | Kind::Any, Cell::Text(s)) => Box::new(s.clone()),
        (kind, other) => {
            let wanted = match kind {
                Kind::Int => "a bigint",
                Kind::Bool => "a boolean (0 or 1 on SQLite)",
                Kind::Text | Kind::Any => "text",
            };
            return Err(format!("column `{}` holds {}, where PostgreSQL takes {wanted}", col.name, other.kind()));
        }
    })
}

/// The row's primary key for messages (`id 12`). Text keys (logins, bundle hashes) are not
/// repeated: the message names the table and column, which is enough to find the row.
fn row_key(table: &Table, columns: &[Column], row: &[Cell]) -> String {
    match columns.iter().position(|c| c.name == table.key).and_then(|i| row.get(i)) {
        Some(Cell::Int(i)) => format!("{} {i}", table.key),
        _ => format!("with that {}", table.key),
    }
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
