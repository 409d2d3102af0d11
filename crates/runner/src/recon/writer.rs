//! The single writer: applies the decided rows through a [`Sink`] (one per kind of store) and
//! records one event per row.

use provflow_ir::{ObjectStatus, ReconAction};
use std::collections::BTreeMap;
use std::sync::mpsc;

use super::index::{FxMap, Later, Snapshot, StoredStatus, UserIndex};
use super::matching::{action_name, Checked, Decision, Work};
use super::plan::Plan;
use super::{BadRow, DbError, ReconError, Summary, BAD_ROWS_KEPT};
use crate::clock::Instant;

/// Events per multi-row INSERT: 7 parameters each, under SQLite's historical 999 limit.
pub(super) const EVENTS_PER_INSERT: usize = 128;

/// One event waiting for the multi-row INSERT.
pub(super) struct Event {
    pub(super) line: u64,
    pub(super) key: Option<String>,
    pub(super) outcome: &'static str,
    pub(super) action: &'static str,
    pub(super) account: Option<i64>,
    pub(super) changes: String,
    pub(super) error: Option<String>,
}

/// Appends `text` as a JSON string.
pub(super) fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    // Runs without anything to escape are copied whole; every escaped byte is ASCII, so the
    // run boundaries are character boundaries.
    let mut run = 0;
    for (i, b) in text.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(text.get(run..i).unwrap_or(""));
        if escaped.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escaped);
        }
        run = i + 1;
    }
    out.push_str(text.get(run..).unwrap_or(""));
    out.push('"');
}

/// Appends `"name":{"from":..,"to":..}` to a changes object under construction.
fn push_change(out: &mut String, name: &str, from: Option<&str>, to: &str) {
    out.push(if out.is_empty() { '{' } else { ',' });
    push_json_str(out, name);
    out.push_str(":{\"from\":");
    match from {
        Some(f) => push_json_str(out, f),
        None => out.push_str("null"),
    }
    out.push_str(",\"to\":");
    push_json_str(out, to);
    out.push('}');
}

/// The writes of a run on its store, one implementation per kind of store: SQLite
/// (`sqlite.rs`) and PostgreSQL (`pg.rs`). The writer decides what to write; a sink
/// writes it, each row's writes whole or not at all.
pub(super) trait Sink {
    /// Records the start of a run; its id.
    fn start_run(&mut self, process: &str, source: &str, now: Instant) -> Result<i64, DbError>;
    /// Records the run's summary once every row is written.
    fn finish_run(&mut self, run: i64, now: Instant, summary: &str) -> Result<(), DbError>;
    /// Rows per write transaction.
    fn commit_rows(&self) -> u64;
    fn begin(&mut self) -> Result<(), DbError>;
    fn commit(&mut self) -> Result<(), DbError>;
    /// Rolls back the open transaction, if any.
    fn rollback(&mut self);
    /// Whether the open transaction was lost (the database rolled it back), which ends the
    /// run; otherwise a failed row was undone whole and the run goes on.
    fn lost(&self) -> bool;
    /// Writes account `id`'s new status and form members, and its user's attributes, as one
    /// unit.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        plan: &Plan,
        id: i64,
        login: &str,
        status: Option<&str>,
        form: &[&(usize, String)],
        user: &[&(usize, String)],
        now: Instant,
    ) -> Result<(), DbError>;
    /// A user's attributes (JSON text).
    fn user_attributes(&mut self, login: &str) -> Result<String, DbError>;
    /// Inserts an account of the process for `login`; its id.
    fn insert_account(
        &mut self,
        plan: &Plan,
        login: &str,
        status: &str,
        form: &str,
        now: Instant,
    ) -> Result<i64, DbError>;
    fn insert_events(&mut self, run: i64, now: Instant, events: &[Event]) -> Result<(), DbError>;
}

/// The single writer: applies decided rows in large transactions and records their events.
/// It owns the account snapshots, so "changed or not" is decided against what this run has
/// written so far, in the order it writes.
pub(super) struct Writer<'a> {
    pub(super) plan: &'a Plan,
    pub(super) users: &'a Later<UserIndex>,
    pub(super) run: i64,
    pub(super) now: Instant,
    pub(super) snapshots: Vec<Snapshot>,
    /// Accounts created by this run, by user login.
    pub(super) created: FxMap<Box<str>, u32>,
    pub(super) events: Vec<Event>,
    pub(super) summary: Summary,
    pub(super) bad: Vec<BadRow>,
}

impl Writer<'_> {
    fn bad_row(&mut self, line: u64, error: String) {
        self.bad.push(BadRow { line, error });
        // Keep the first rows by line (workers finish out of order), in bounded memory.
        if self.bad.len() >= 2 * BAD_ROWS_KEPT {
            self.bad.sort_by_key(|b| b.line);
            self.bad.truncate(BAD_ROWS_KEPT);
        }
    }

    fn event(
        &mut self,
        line: u64,
        c: &mut Checked,
        outcome: &'static str,
        action: &'static str,
        account: Option<i64>,
        changes: String,
    ) {
        self.events.push(Event {
            line,
            // Each row has one event (a failed write has none yet): the key moves into it.
            key: Some(std::mem::take(&mut c.key_display)),
            outcome,
            action,
            account,
            changes: if changes.is_empty() { "{}".into() } else { changes },
            error: None,
        });
    }

    /// Applies one unit of work inside the open transaction. A row whose write fails is
    /// rolled back whole and reported; an error that ends the transaction ends the run.
    fn write<S: Sink>(&mut self, sink: &mut S, w: Work) -> Result<(), ReconError> {
        self.summary.rows += 1;
        let (line, c, decision) = match w {
            Work::Bad { line, error } => {
                self.summary.failed += 1;
                self.events.push(Event {
                    line,
                    key: None,
                    outcome: "bad row",
                    action: "skipped",
                    account: None,
                    changes: "{}".into(),
                    error: Some(error.clone()),
                });
                self.bad_row(line, error);
                return Ok(());
            }
            Work::Row { line, checked, decision } => (line, checked, decision),
        };
        let mut c = c;
        if let Err(e) = self.apply(sink, line, &mut c, decision) {
            if sink.lost() {
                // The database rolled the whole transaction back (disk full, I/O error): stop.
                return Err(e.into());
            }
            self.summary.failed += 1;
            let msg = e.to_string();
            self.events.push(Event {
                line,
                key: Some(std::mem::take(&mut c.key_display)),
                outcome: "failed",
                action: "skipped",
                account: None,
                changes: "{}".into(),
                error: Some(msg.clone()),
            });
            self.bad_row(line, msg);
        }
        Ok(())
    }

    fn apply<S: Sink>(&mut self, sink: &mut S, line: u64, c: &mut Checked, decision: Decision) -> Result<(), DbError> {
        match decision {
            Decision::Account(slot, action, outcome) => match action {
                ReconAction::Update | ReconAction::Link | ReconAction::Create => {
                    self.update_and_record(sink, line, c, slot, outcome, action_name(action))
                }
                ReconAction::None => {
                    self.summary.unmatched += 1;
                    let id = self.snapshots.get(slot as usize).map(|s| s.id);
                    self.event(line, c, outcome, "none", id, String::new());
                    Ok(())
                }
            },
            Decision::User(user, action) => {
                // A user decision was made with the index: it is there.
                let login = self.users.wait().and_then(|u| u.logins.get(user as usize)).cloned().unwrap_or_default();
                // An account created by an earlier row of this run, or one the key did not
                // match (its key fields differ from the user's attributes).
                let existing = self.created.get(&login).or_else(|| self.plan.by_login.get(&login)).copied();
                match (action, existing) {
                    (ReconAction::None, _) => {
                        self.summary.unmatched += 1;
                        self.event(line, c, "one entity match", "none", None, String::new());
                        Ok(())
                    }
                    (ReconAction::Update, None) => {
                        self.summary.unmatched += 1;
                        self.event(line, c, "one entity match", "none: no account to update", None, String::new());
                        Ok(())
                    }
                    (_, Some(slot)) => self.update_and_record(sink, line, c, slot, "one process match", "update"),
                    (action, None) => {
                        let (slot, changes) = self.create_account(sink, &login, c)?;
                        if action == ReconAction::Create {
                            self.summary.created += 1;
                        } else {
                            self.summary.linked += 1;
                        }
                        self.created.insert(login, slot);
                        let id = self.snapshots.get(slot as usize).map(|s| s.id);
                        self.event(line, c, "one entity match", action_name(action), id, changes);
                        Ok(())
                    }
                }
            }
            Decision::Nothing(action, outcome) => {
                self.summary.unmatched += 1;
                let action = match action {
                    ReconAction::None => "none",
                    // Nothing to link to, update, or own a created account.
                    _ => "none: no single user or account to apply it to",
                };
                self.event(line, c, outcome, action, None, String::new());
                Ok(())
            }
        }
    }

    fn update_and_record<S: Sink>(
        &mut self,
        sink: &mut S,
        line: u64,
        c: &mut Checked,
        slot: u32,
        outcome: &'static str,
        action: &'static str,
    ) -> Result<(), DbError> {
        let (id, changes) = self.apply_update(sink, slot, c)?;
        if changes.is_empty() {
            self.summary.unchanged += 1;
            self.event(line, c, outcome, "no change", Some(id), String::new());
        } else {
            self.summary.updated += 1;
            self.event(line, c, outcome, action, Some(id), changes);
        }
        Ok(())
    }

    /// Writes to account `slot` what differs from its snapshot, patching only those members of
    /// the JSON columns (a concurrent change to another form field survives). Returns the
    /// account id and the changes as JSON, empty if none.
    fn apply_update<S: Sink>(&mut self, sink: &mut S, slot: u32, c: &Checked) -> Result<(i64, String), DbError> {
        let plan = self.plan;
        let Some(snap) = self.snapshots.get(slot as usize) else {
            return Err(DbError::Other(format!("account slot {slot} is missing")));
        };
        let new_status =
            c.status.filter(|s| *s != ObjectStatus::None && s.as_str() != snap.status.as_str()).map(|s| s.as_str());
        let form: Vec<&(usize, String)> =
            c.form.iter().filter(|(i, t)| snap.form.get(*i).and_then(|v| v.as_deref()) != Some(t.as_str())).collect();
        let user: Vec<&(usize, String)> =
            c.user.iter().filter(|(i, t)| snap.user.get(*i).and_then(|v| v.as_deref()) != Some(t.as_str())).collect();
        if new_status.is_none() && form.is_empty() && user.is_empty() {
            return Ok((snap.id, String::new()));
        }
        // The key order of a serde_json map, so events read the same as before.
        let mut changes = String::with_capacity(128);
        if let Some(s) = new_status {
            push_change(&mut changes, "OIM_OBJECT_STATUS", Some(snap.status.as_str()), s);
        }
        for (i, t) in &form {
            let name = plan.form_changes.get(*i).map(String::as_str).unwrap_or("");
            push_change(&mut changes, name, snap.form.get(*i).and_then(|v| v.as_deref()), t);
        }
        for (i, t) in &user {
            let name = plan.user_fields.get(*i).map(String::as_str).unwrap_or("");
            push_change(&mut changes, &format!("user.{name}"), snap.user.get(*i).and_then(|v| v.as_deref()), t);
        }
        changes.push('}');

        sink.update(plan, snap.id, &snap.login, new_status, &form, &user, self.now)?;
        let id = snap.id;
        if let Some(snap) = self.snapshots.get_mut(slot as usize) {
            if let Some(s) = c.status.filter(|_| new_status.is_some()) {
                snap.status = StoredStatus::Known(s);
            }
            for (i, t) in form {
                if let Some(v) = snap.form.get_mut(*i) {
                    *v = Some(t.as_str().into());
                }
            }
            for (i, t) in user {
                if let Some(v) = snap.user.get_mut(*i) {
                    *v = Some(t.as_str().into());
                }
            }
        }
        Ok((id, changes))
    }

    /// Creates the account of `login` that the target already has. Returns its slot and the
    /// changes.
    fn create_account<S: Sink>(&mut self, sink: &mut S, login: &str, c: &Checked) -> Result<(u32, String), DbError> {
        let plan = self.plan;
        let attrs = sink.user_attributes(login)?;
        let attrs: BTreeMap<String, String> = serde_json::from_str(&attrs).unwrap_or_default();
        let mut form = serde_json::Map::new();
        for (name, d) in &plan.defaults {
            form.insert(name.clone(), serde_json::Value::String(d.clone()));
        }
        for (name, a) in &plan.from_user {
            let v = if a == "usr_login" { Some(login.to_string()) } else { attrs.get(a).cloned() };
            if let Some(v) = v {
                form.insert(name.clone(), serde_json::Value::String(v));
            }
        }
        for (i, text) in &c.form {
            if let Some(name) = plan.form_fields.get(*i) {
                form.insert(name.clone(), serde_json::Value::String(text.clone()));
            }
        }
        let status = c.status.filter(|s| *s != ObjectStatus::None).unwrap_or(ObjectStatus::Provisioned);
        let form_json = serde_json::Value::Object(form.clone()).to_string();
        let id = sink.insert_account(plan, login, status.as_str(), &form_json, self.now)?;
        let slot = u32::try_from(self.snapshots.len()).map_err(|_| DbError::Other("too many accounts".into()))?;
        self.snapshots.push(Snapshot {
            id,
            login: login.into(),
            status: StoredStatus::Known(status),
            form: plan.form_fields.iter().map(|n| form.get(n).and_then(|v| v.as_str()).map(Into::into)).collect(),
            user: plan.user_fields.iter().map(|a| attrs.get(a).map(|v| v.as_str().into())).collect(),
        });
        let changes = serde_json::json!({ "account": { "to": id }, "OIM_OBJECT_STATUS": { "to": status.as_str() }, "form": form });
        Ok((slot, changes.to_string()))
    }

    /// Inserts the pending events.
    fn flush_events<S: Sink>(&mut self, sink: &mut S) -> Result<(), DbError> {
        let events = std::mem::take(&mut self.events);
        sink.insert_events(self.run, self.now, &events)
    }

    /// Writes every batch the workers send, committing every [`Sink::commit_rows`] rows.
    pub(super) fn drain<S: Sink>(
        &mut self,
        sink: &mut S,
        done: mpsc::Receiver<Vec<Work>>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), ReconError> {
        let mut in_tx = 0u64;
        let commit_rows = sink.commit_rows();
        sink.begin()?;
        let result = (|| -> Result<(), ReconError> {
            for batch in done.iter() {
                let n = batch.len() as u64;
                for w in batch {
                    self.write(sink, w)?;
                    if self.events.len() >= EVENTS_PER_INSERT * 16 {
                        self.flush_events(sink)?;
                    }
                }
                in_tx += n;
                if in_tx >= commit_rows {
                    self.flush_events(sink)?;
                    sink.commit()?;
                    sink.begin()?;
                    in_tx = 0;
                }
                progress(n);
            }
            self.flush_events(sink)?;
            sink.commit()?;
            Ok(())
        })();
        if result.is_err() {
            sink.rollback();
        }
        result
    }
}
