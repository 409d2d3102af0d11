//! The plan of a run: the recon fields resolved against the process (where each value goes,
//! which keys identify a user), and the SQL text the plan writes with.

use provflow_ir::{self as ir, Bundle, ObjectStatus, ReconAction, ReconTarget, ValueType};
use std::collections::BTreeMap;

use super::index::FxMap;
use super::ReconError;

/// Where a recon field's value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Put {
    /// Index into [`Plan::form_fields`].
    Form(usize),
    /// Index into [`Plan::user_fields`] (a non-key user attribute).
    User(usize),
    Status,
    /// A key identifying the user: matched on, never written.
    Nowhere,
}

/// One recon field, resolved against the process.
#[derive(Debug, Clone)]
pub(super) struct Field {
    pub(super) name: String,
    pub(super) ty: ValueType,
    pub(super) maps_to: ReconTarget,
    pub(super) key: bool,
    case_insensitive: bool,
    pub(super) values: BTreeMap<String, ObjectStatus>,
    /// The user attribute this field identifies a user by (entity matching).
    pub(super) user_attribute: Option<String>,
    pub(super) put: Put,
}

/// The plan of one run: the process, its fields, and the in-memory match indexes. Read-only
/// once built, shared by every worker.
pub(super) struct Plan {
    pub(super) process: String,
    pub(super) bundle_hash: String,
    pub(super) fields: Vec<Field>,
    /// Column index in the source of each field.
    pub(super) columns: Vec<usize>,
    pub(super) width: usize,
    pub(super) actions: [ReconAction; 4],
    /// The form fields recon writes, and their JSON paths.
    pub(super) form_fields: Vec<String>,
    pub(super) form_paths: Vec<String>,
    /// `form.X`, the name of a change to form field X in an event.
    pub(super) form_changes: Vec<String>,
    /// The account UPDATE that patches `n` form fields, at index `n`.
    pub(super) update_sql: Vec<String>,
    /// The non-key user attributes recon writes, and their JSON paths.
    pub(super) user_fields: Vec<String>,
    pub(super) user_paths: Vec<String>,
    /// Normalised composite key → account slot in [`Index::accounts`], or [`MULTIPLE`].
    pub(super) accounts: FxMap<Box<str>, u32>,
    /// User login → slot of the user's newest account of the process.
    pub(super) by_login: FxMap<Box<str>, u32>,
    /// Whether every key field identifies a user, so that entity matching is possible.
    pub(super) entity_matching: bool,
    /// Form fields filled from user attributes, for accounts created by `link`/`create`.
    pub(super) from_user: Vec<(String, String)>,
    pub(super) defaults: Vec<(String, String)>,
}

pub(super) fn normalise_into(out: &mut String, f: &Field, text: &str) {
    let t = text.trim();
    if !f.case_insensitive {
        out.push_str(t);
    } else if t.is_ascii() {
        out.extend(t.chars().map(|c| c.to_ascii_lowercase()));
    } else {
        out.push_str(&t.to_lowercase());
    }
}

/// Key parts are joined with the unit separator, which no CSV value contains in practice.
pub(super) const KEY_SEPARATOR: char = '\u{1f}';

/// A JSON path naming one top-level member; `"` cannot occur in form or attribute names.
pub(super) fn json_path(name: &str) -> String {
    format!("$.\"{}\"", name.replace('"', ""))
}

pub(super) fn sql_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The SQL text of a string member of a JSON column, NULL when absent or not a string.
pub(super) fn json_text(column: &str, name: &str) -> String {
    let p = sql_quote(&json_path(name));
    format!("CASE WHEN json_type({column}, {p}) = 'text' THEN json_extract({column}, {p}) END")
}

pub(super) fn resolve(bundle: &Bundle, process: &ir::Process) -> Result<Plan, ReconError> {
    let recon = process.recon.as_ref().ok_or_else(|| ReconError::NoRecon(process.name.clone()))?;
    let mut fields = Vec::new();
    let mut form_fields: Vec<String> = Vec::new();
    let mut user_fields: Vec<String> = Vec::new();
    for f in &recon.fields {
        if f.ty.is_secret() {
            return Err(ReconError::SecretField(f.name.clone()));
        }
        let user_attribute = match &f.maps_to {
            ReconTarget::User(a) => Some(a.clone()),
            ReconTarget::Form(x) => {
                process.form.fields.iter().find(|ff| &ff.name == x).and_then(|ff| ff.from_user.clone())
            }
            ReconTarget::ObjectStatus => None,
        };
        let put = match &f.maps_to {
            ReconTarget::Form(x) => Put::Form(position_or_push(&mut form_fields, x)),
            ReconTarget::User(_) if f.key => Put::Nowhere,
            ReconTarget::User(a) => Put::User(position_or_push(&mut user_fields, a)),
            ReconTarget::ObjectStatus => Put::Status,
        };
        fields.push(Field {
            name: f.name.clone(),
            ty: f.ty,
            maps_to: f.maps_to.clone(),
            key: f.key,
            case_insensitive: f.case_insensitive,
            values: f.values.clone(),
            user_attribute,
            put,
        });
    }
    let entity_matching =
        fields.iter().any(|f| f.key) && fields.iter().filter(|f| f.key).all(|f| f.user_attribute.is_some());
    let secret_free = |f: &&ir::FormField| !f.ty.is_secret();
    Ok(Plan {
        process: process.name.clone(),
        bundle_hash: bundle.hash.clone(),
        columns: (0..fields.len()).collect(),
        width: fields.len(),
        fields,
        actions: [recon.no_match, recon.one_entity_match, recon.one_process_match, recon.multiple_matches],
        form_paths: form_fields.iter().map(|n| json_path(n)).collect(),
        form_changes: form_fields.iter().map(|n| format!("form.{n}")).collect(),
        update_sql: (0..=form_fields.len()).map(update_sql).collect(),
        form_fields,
        user_paths: user_fields.iter().map(|n| json_path(n)).collect(),
        user_fields,
        accounts: FxMap::default(),
        by_login: FxMap::default(),
        entity_matching,
        from_user: process
            .form
            .fields
            .iter()
            .filter(secret_free)
            .filter_map(|f| f.from_user.clone().map(|a| (f.name.clone(), a)))
            .collect(),
        defaults: process
            .form
            .fields
            .iter()
            .filter(secret_free)
            .filter_map(|f| f.default.clone().map(|d| (f.name.clone(), d)))
            .collect(),
    })
}

/// `UPDATE accounts` setting the status (?2, NULL: unchanged) and `n` form members (path and
/// value pairs from ?4).
pub(super) fn update_sql(n: usize) -> String {
    let mut sql = String::from("UPDATE accounts SET ");
    if n > 0 {
        sql.push_str("form = json_set(form");
        for k in 0..n {
            sql.push_str(&format!(", ?{}, ?{}", 4 + 2 * k, 5 + 2 * k));
        }
        sql.push_str("), ");
    }
    sql.push_str("status = coalesce(?2, status), updated_at = ?3 WHERE id = ?1");
    sql
}

fn position_or_push(list: &mut Vec<String>, name: &str) -> usize {
    match list.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            list.push(name.to_string());
            list.len() - 1
        }
    }
}
