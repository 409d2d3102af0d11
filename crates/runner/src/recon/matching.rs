//! Validating and matching rows: the CPU-bound work each worker thread does on a chunk of
//! rows, deciding per row what the writer applies.

use provflow_ir::{ObjectStatus, ReconAction, ValueType};

use super::index::{Later, UserIndex, MULTIPLE};
use super::plan::{normalise_into, Plan, Put, KEY_SEPARATOR};
use crate::value::{self, Value};

/// A row after validation: what it says, typed.
pub(super) struct Checked {
    pub(super) key_display: String,
    /// Index into [`Plan::form_fields`] → stored text.
    pub(super) form: Vec<(usize, String)>,
    /// Index into [`Plan::user_fields`] → text.
    pub(super) user: Vec<(usize, String)>,
    pub(super) status: Option<ObjectStatus>,
}

/// Validates a row: types, status values. Every problem of the row at once. The normalised
/// key goes to `key` (a buffer the caller reuses: only matching needs it).
fn check(plan: &Plan, record: &[&str], key: &mut String) -> Result<Checked, String> {
    key.clear();
    let mut problems = Vec::new();
    let mut key_display = String::new();
    let mut form = Vec::new();
    let mut user = Vec::new();
    let mut status = None;
    for (col, f) in plan.fields.iter().enumerate() {
        let raw = record.get(col).copied().unwrap_or("").trim();
        if raw.is_empty() {
            if f.key {
                problems.push(format!("the key `{}` is empty", f.name));
            }
            continue;
        }
        let text: std::borrow::Cow<'_, str> = match f.ty {
            // The common case needs no typed value: the text is stored as it is.
            ValueType::String => raw.into(),
            ty => match value::typed(ty, raw) {
                Ok(Value::Text(t)) => t.into(),
                Ok(other) => other.display().into(),
                Err(e) => {
                    problems.push(format!("`{}`: {e}", f.name));
                    continue;
                }
            },
        };
        if f.key {
            if !key_display.is_empty() {
                key.push(KEY_SEPARATOR);
                key_display.push(',');
            }
            normalise_into(key, f, &text);
            key_display.push_str(&text);
        }
        match f.put {
            Put::Form(i) => form.push((i, text.into_owned())),
            Put::User(i) => user.push((i, text.into_owned())),
            Put::Nowhere => {}
            Put::Status => {
                let found = f
                    .values
                    .get(&*text)
                    .or_else(|| f.values.iter().find(|(k, _)| k.eq_ignore_ascii_case(&text)).map(|(_, v)| v))
                    .copied()
                    .or_else(|| if f.values.is_empty() { ObjectStatus::parse(&text) } else { None });
                match found {
                    Some(s) => status = Some(s),
                    None => {
                        let expected: Vec<&str> = if f.values.is_empty() {
                            ObjectStatus::ALL.iter().map(|s| s.as_str()).collect()
                        } else {
                            f.values.keys().map(String::as_str).collect()
                        };
                        problems.push(format!(
                            "unknown status value `{text}` for `{}`; expected one of {}",
                            f.name,
                            expected.join(", ")
                        ))
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(Checked { key_display, form, user, status })
}

/// What matching decided for a row.
pub(super) enum Decision {
    /// An account slot.
    Account(u32, ReconAction, &'static str),
    /// A user index in [`Plan::user_logins`].
    User(u32, ReconAction),
    Nothing(ReconAction, &'static str),
}

/// `None` when the user index, needed for this row, failed to load.
fn decide(plan: &Plan, users: &Later<UserIndex>, key: &str) -> Option<Decision> {
    let [no_match, one_entity, one_process, multiple] = plan.actions;
    match plan.accounts.get(key) {
        Some(&MULTIPLE) => return Some(Decision::Nothing(multiple, "multiple matches")),
        Some(&slot) => return Some(Decision::Account(slot, one_process, "one process match")),
        None => {}
    }
    if plan.entity_matching {
        // The user index may still be loading: only rows without a process match wait.
        match users.wait()?.keys.get(key) {
            Some(&MULTIPLE) => return Some(Decision::Nothing(multiple, "multiple matches")),
            Some(&u) => return Some(Decision::User(u, one_entity)),
            None => {}
        }
    }
    Some(Decision::Nothing(no_match, "no match"))
}

pub(super) fn action_name(a: ReconAction) -> &'static str {
    match a {
        ReconAction::None => "none",
        ReconAction::Create => "create",
        ReconAction::Link => "link",
        ReconAction::Update => "update",
    }
}

/// Rows read from the source, waiting for a worker: the values of the recon fields (in field
/// order) of every row packed into one buffer, so a chunk costs a handful of allocations.
#[derive(Default)]
pub(super) struct Chunk {
    bytes: Vec<u8>,
    /// Byte range in `bytes` of each value.
    pub(super) spans: Vec<(usize, usize)>,
    /// Line, and the index in `spans` of the row's first value or why the row is unreadable.
    pub(super) rows: Vec<(u64, Result<usize, String>)>,
}

impl Chunk {
    pub(super) fn push_value(&mut self, v: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(v);
        self.spans.push((start, self.bytes.len()));
    }
}

/// A validated and matched row, for the writer.
pub(super) enum Work {
    Bad { line: u64, error: String },
    Row { line: u64, checked: Checked, decision: Decision },
}

/// Validates and matches the rows of a chunk: the CPU-bound part, run on every worker.
/// `None` when the user index failed to load (the run fails with its error).
pub(super) fn work(plan: &Plan, users: &Later<UserIndex>, chunk: &Chunk) -> Option<Vec<Work>> {
    let n = plan.fields.len();
    let mut out = Vec::with_capacity(chunk.rows.len());
    let mut values: Vec<&str> = Vec::with_capacity(n);
    let mut key = String::new();
    for (line, row) in &chunk.rows {
        let line = *line;
        let first = match row {
            Ok(first) => *first,
            Err(e) => {
                out.push(Work::Bad { line, error: e.clone() });
                continue;
            }
        };
        values.clear();
        let mut problems = Vec::new();
        for (i, f) in plan.fields.iter().enumerate() {
            let bytes = chunk.spans.get(first + i).and_then(|&(s, e)| chunk.bytes.get(s..e)).unwrap_or(&[]);
            match std::str::from_utf8(bytes) {
                Ok(v) => values.push(v),
                Err(e) => {
                    problems.push(format!("`{}`: not valid UTF-8 (byte {})", f.name, e.valid_up_to() + 1));
                    values.push("");
                }
            }
        }
        let checked = if problems.is_empty() {
            check(plan, &values, &mut key)
        } else {
            Err(format!("unreadable row: {}", problems.join("; ")))
        };
        out.push(match checked {
            Ok(checked) => {
                let decision = decide(plan, users, &key)?;
                Work::Row { line, checked, decision }
            }
            Err(error) => Work::Bad { line, error },
        });
    }
    Some(out)
}
