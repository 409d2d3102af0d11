//! The in-memory match indexes: the accounts of the process (with the values recon compares)
//! and the users by key, and how they are loaded from a SQLite store (`pg.rs` loads them from
//! PostgreSQL into the same indexes).

use provflow_ir::{ObjectStatus, ReconTarget};
use rusqlite::params;
use std::path::Path;
use std::sync::{mpsc, Mutex};

use super::plan::{json_path, json_text, normalise_into, sql_quote, Field, Plan, KEY_SEPARATOR};
use super::sqlite::open_conn;
use super::ReconError;

/// Marks a key shared by several accounts or users in the match indexes.
pub(super) const MULTIPLE: u32 = u32::MAX;

/// The match indexes hold a million short keys and are probed once per row; SipHash's
/// flooding resistance would cost a third of the matching time and the keys come from the
/// operator's own store and file.
pub(super) type FxMap<K, V> = rustc_hash::FxHashMap<K, V>;
/// Normalised key → slot, or [`MULTIPLE`].
type KeyIndex = FxMap<Box<str>, u32>;

/// What the store holds for an account, as far as recon compares it: the values the run
/// decides "changed or not" against. Owned by the writer, which keeps it current.
pub(super) struct Snapshot {
    pub(super) id: i64,
    pub(super) login: Box<str>,
    pub(super) status: StoredStatus,
    /// Per [`Plan::form_fields`]; `None` when absent or not a string.
    pub(super) form: Vec<Option<Box<str>>>,
    /// Per [`Plan::user_fields`].
    pub(super) user: Vec<Option<Box<str>>>,
}

/// An account's status as stored: one of the statuses (no allocation per account), or text
/// written by something else, kept as it is so that events report it faithfully.
pub(super) enum StoredStatus {
    Known(ObjectStatus),
    Other(Box<str>),
}

impl StoredStatus {
    pub(super) fn from_text(text: Option<Box<str>>) -> StoredStatus {
        let text = text.unwrap_or_default();
        match ObjectStatus::parse(&text) {
            Some(s) => StoredStatus::Known(s),
            None => StoredStatus::Other(text),
        }
    }

    pub(super) fn as_str(&self) -> &str {
        match self {
            StoredStatus::Known(s) => s.as_str(),
            StoredStatus::Other(t) => t,
        }
    }
}

fn column_text(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Box<str>>> {
    use rusqlite::types::ValueRef;
    Ok(match r.get_ref(i)? {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into()),
        ValueRef::Integer(n) => Some(n.to_string().into()),
        ValueRef::Real(d) => Some(d.to_string().into()),
        ValueRef::Null | ValueRef::Blob(_) => None,
    })
}

pub(super) fn insert_key(index: &mut FxMap<Box<str>, u32>, key: Box<str>, slot: u32) {
    index.entry(key).and_modify(|s| *s = MULTIPLE).or_insert(slot);
}

/// Id ranges the accounts are read in, each on its own connection and thread: reading (the
/// query, its `json_extract`s, the snapshots) is most of the loading, and indexing what was
/// read is quick enough for one thread to keep up with both.
const LOAD_PARTS: i64 = 2;
/// Accounts handed from a reading thread to the indexing one at a time.
const LOAD_CHUNK: usize = 4096;

/// Accounts as read, with their normalised keys, in id order.
type LoadedChunk = Vec<(Snapshot, Box<str>)>;

/// Reads the accounts of the process with ids in `ids`, in id order, with the values recon
/// compares and their normalised keys.
fn read_accounts(
    conn: &rusqlite::Connection,
    plan: &Plan,
    sql: &str,
    ids: (i64, i64),
    tx: &mpsc::Sender<LoadedChunk>,
) -> Result<(), ReconError> {
    let keys: Vec<&Field> = plan.fields.iter().filter(|f| f.key).collect();
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query(params![plan.process, ids.0, ids.1])?;
    let mut chunk = Vec::with_capacity(LOAD_CHUNK);
    let mut key = String::new();
    while let Some(r) = rows.next()? {
        let login: Box<str> = column_text(r, 1)?.unwrap_or_default();
        key.clear();
        for (i, f) in keys.iter().enumerate() {
            if i > 0 {
                key.push(KEY_SEPARATOR);
            }
            normalise_into(&mut key, f, column_text(r, 3 + i)?.as_deref().unwrap_or(""));
        }
        let base = 3 + keys.len();
        let form = (0..plan.form_fields.len()).map(|i| column_text(r, base + i)).collect::<rusqlite::Result<_>>()?;
        let base = base + plan.form_fields.len();
        let user = (0..plan.user_fields.len()).map(|i| column_text(r, base + i)).collect::<rusqlite::Result<_>>()?;
        let status = StoredStatus::from_text(column_text(r, 2)?);
        chunk.push((Snapshot { id: r.get(0)?, login, status, form, user }, Box::from(key.as_str())));
        if chunk.len() == LOAD_CHUNK && tx.send(std::mem::replace(&mut chunk, Vec::with_capacity(LOAD_CHUNK))).is_err()
        {
            // The indexing thread stopped; it reports why.
            return Ok(());
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send(chunk);
    }
    Ok(())
}

/// Indexes accounts as they are read, in id order: the newest account of each user by its
/// normalised key, so "newest" means the same however the accounts were read.
pub(super) struct AccountIndexer {
    no_keys: bool,
    /// When every key is a user attribute, a user's accounts share one key, so a newer
    /// account simply replaces an older one of the same user in the index; keys in the form
    /// can differ between a user's accounts, so the newest per user is found first.
    user_keyed: bool,
    snapshots: Vec<Snapshot>,
    accounts: KeyIndex,
    keyed: Vec<Box<str>>,
    by_login: FxMap<Box<str>, u32>,
}

impl AccountIndexer {
    pub(super) fn new(plan: &Plan, hint: usize) -> Self {
        let keys: Vec<&Field> = plan.fields.iter().filter(|f| f.key).collect();
        AccountIndexer {
            no_keys: keys.is_empty(),
            user_keyed: keys.iter().all(|f| matches!(f.maps_to, ReconTarget::User(_))),
            // Sized once: growing a million-entry table costs more than filling it.
            snapshots: Vec::with_capacity(hint),
            accounts: FxMap::with_capacity_and_hasher(hint, Default::default()),
            keyed: Vec::new(),
            by_login: FxMap::default(),
        }
    }

    pub(super) fn push(&mut self, snapshot: Snapshot, key: Box<str>) -> Result<(), ReconError> {
        let Ok(slot) = u32::try_from(self.snapshots.len()) else {
            return Err(ReconError::Store("too many accounts".into()));
        };
        if self.no_keys {
            // No key: nothing can match, nothing to index.
        } else if self.user_keyed {
            // In id order: a user's newest account comes last and wins.
            match self.accounts.entry(key) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let same_user = self.snapshots.get(*e.get() as usize).is_some_and(|s| s.login == snapshot.login);
                    e.insert(if same_user { slot } else { MULTIPLE });
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(slot);
                }
            }
        } else {
            self.by_login.insert(snapshot.login.clone(), slot);
            self.keyed.push(key);
        }
        self.snapshots.push(snapshot);
        Ok(())
    }

    /// The snapshots, the key index and the newest account per login.
    pub(super) fn finish(mut self) -> Loaded {
        if !self.user_keyed {
            for (slot, (key, s)) in self.keyed.into_iter().zip(&self.snapshots).enumerate() {
                let slot = slot as u32;
                if self.by_login.get(&s.login) == Some(&slot) {
                    insert_key(&mut self.accounts, key, slot);
                }
            }
        }
        (self.snapshots, self.accounts, self.by_login)
    }
}

/// What loading the accounts gives: their snapshots, the key index, the newest per login.
pub(super) type Loaded = (Vec<Snapshot>, KeyIndex, FxMap<Box<str>, u32>);

/// Loads the accounts of the process with the values recon compares, and indexes the newest
/// of each user by key. The id ranges are read in parallel and indexed in id order as they
/// arrive, so "newest" means the same as reading them all in one query.
pub(super) fn load_accounts(state: &Path, plan: &Plan) -> Result<Loaded, ReconError> {
    let keys: Vec<&Field> = plan.fields.iter().filter(|f| f.key).collect();
    let mut select = vec!["a.id".to_string(), "a.user_login".to_string(), "a.status".to_string()];
    let mut join_users = false;
    for f in &keys {
        select.push(match &f.maps_to {
            ReconTarget::Form(x) => format!("json_extract(a.form, {})", sql_quote(&json_path(x))),
            ReconTarget::User(a) if a == "usr_login" => "a.user_login".to_string(),
            ReconTarget::User(a) => {
                join_users = true;
                format!("json_extract(u.attributes, {})", sql_quote(&json_path(a)))
            }
            ReconTarget::ObjectStatus => "a.status".to_string(),
        });
    }
    for x in &plan.form_fields {
        // Form values are stored as strings (secrets as objects, never recon fields).
        select.push(format!("json_extract(a.form, {})", sql_quote(&json_path(x))));
    }
    for a in &plan.user_fields {
        join_users = true;
        select.push(json_text("u.attributes", a));
    }
    let sql = format!(
        "SELECT {} FROM accounts a {} WHERE a.process = ?1 AND a.id BETWEEN ?2 AND ?3 ORDER BY a.id",
        select.join(", "),
        if join_users { "LEFT JOIN users u ON u.login = a.user_login" } else { "" }
    );
    let (first, last): (i64, i64) =
        open_conn(state)?.query_row("SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM accounts", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let hint = usize::try_from(last.saturating_sub(first).saturating_add(1)).unwrap_or(0).min(1 << 24);
    let per_part = (last.saturating_sub(first) / LOAD_PARTS).saturating_add(1);
    let ranges: Vec<(i64, i64)> = (0..LOAD_PARTS)
        .map(|k| {
            let lo = first.saturating_add(per_part.saturating_mul(k));
            let hi = if k + 1 == LOAD_PARTS { i64::MAX } else { lo.saturating_add(per_part - 1) };
            (lo, hi)
        })
        .collect();
    let mut indexer = AccountIndexer::new(plan, hint);
    std::thread::scope(|scope| {
        let mut parts = Vec::new();
        for ids in ranges {
            let (tx, rx) = mpsc::channel::<LoadedChunk>();
            let sql = &sql;
            let reader =
                scope.spawn(move || open_conn(state).and_then(|conn| read_accounts(&conn, plan, sql, ids, &tx)));
            parts.push((rx, reader));
        }
        let mut indexed = Ok(());
        let mut read = Ok(());
        for (rx, reader) in parts {
            // The ranges in order, each in id order: the same order as one query's.
            for chunk in rx.iter() {
                if indexed.is_err() {
                    break;
                }
                for (snapshot, key) in chunk {
                    if let Err(e) = indexer.push(snapshot, key) {
                        indexed = Err(e);
                        break;
                    }
                }
            }
            // Dropping the receiver stops a reader still sending after an indexing error.
            drop(rx);
            let r = reader.join().unwrap_or_else(|_| Err(ReconError::Store("loading the accounts panicked".into())));
            if read.is_ok() {
                read = r;
            }
        }
        indexed.and(read)
    })?;
    Ok(indexer.finish())
}

/// The users by key (entity matching).
#[derive(Default)]
pub(super) struct UserIndex {
    /// Normalised composite key → index in `logins`, or [`MULTIPLE`].
    pub(super) keys: KeyIndex,
    pub(super) logins: Vec<Box<str>>,
}

/// A value another thread is still computing: a reader waits for it only when it needs it.
pub(super) struct Later<T> {
    value: std::sync::OnceLock<T>,
    done: Mutex<bool>,
    ready: std::sync::Condvar,
}

impl<T> Later<T> {
    pub(super) fn new() -> Self {
        Later { value: std::sync::OnceLock::new(), done: Mutex::new(false), ready: std::sync::Condvar::new() }
    }

    /// Ends the wait: with the value, or without (its producer failed and reports why).
    pub(super) fn finish(&self, value: Option<T>) {
        if let Some(v) = value {
            let _ = self.value.set(v);
        }
        if let Ok(mut done) = self.done.lock() {
            *done = true;
        }
        self.ready.notify_all();
    }

    /// The value, once there; `None` if its producer failed.
    pub(super) fn wait(&self) -> Option<&T> {
        if let Some(v) = self.value.get() {
            return Some(v);
        }
        let mut done = self.done.lock().ok()?;
        while !*done {
            done = self.ready.wait(done).ok()?;
        }
        drop(done);
        self.value.get()
    }
}

/// Ends a [`Later`]'s wait when dropped, even by a panic: nobody waits forever.
pub(super) struct FinishOnDrop<'a, T>(pub(super) &'a Later<T>);

impl<T> Drop for FinishOnDrop<'_, T> {
    fn drop(&mut self) {
        self.0.finish(None);
    }
}

/// Indexes the users by the key fields (entity matching).
pub(super) fn load_users(conn: &rusqlite::Connection, fields: &[Field]) -> Result<UserIndex, ReconError> {
    let keys: Vec<&Field> = fields.iter().filter(|f| f.key).collect();
    let select: Vec<String> = keys
        .iter()
        .map(|f| match f.user_attribute.as_deref() {
            Some("usr_login") | None => "login".to_string(),
            Some(a) => format!("json_extract(attributes, {})", sql_quote(&json_path(a))),
        })
        .collect();
    let sql = format!("SELECT login, {} FROM users WHERE status <> 'Deleted'", select.join(", "));
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let hint: i64 = conn.query_row("SELECT coalesce(max(rowid), 0) FROM users", [], |r| r.get(0))?;
    let hint = usize::try_from(hint).unwrap_or(0).min(1 << 24);
    let mut users = FxMap::with_capacity_and_hasher(hint, Default::default());
    let mut logins = Vec::with_capacity(hint);
    let mut key = String::new();
    while let Some(r) = rows.next()? {
        let login: Box<str> = column_text(r, 0)?.unwrap_or_default();
        key.clear();
        for (i, f) in keys.iter().enumerate() {
            if i > 0 {
                key.push(KEY_SEPARATOR);
            }
            normalise_into(&mut key, f, column_text(r, 1 + i)?.as_deref().unwrap_or(""));
        }
        let slot = u32::try_from(logins.len()).map_err(|_| ReconError::Store("too many users".into()))?;
        insert_key(&mut users, Box::from(key.as_str()), slot);
        logins.push(login);
    }
    Ok(UserIndex { keys: users, logins })
}
