//! Positions and diagnostics: where an error or warning stands, the lists they are collected
//! in, and the "did you mean" suggestions their help texts carry.

use std::collections::HashSet;

use super::{LegacyError, KNOWN_TYPES};

pub(super) const EXAMPLE_ENTRY: &str =
    "CREATE_USER { Query=\"call create_user({__NAME__})\" Parameters=[\"__NAME__\":\"Type:String\"] }";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    pub(super) line: usize,
    pub(super) column: usize,
}

#[derive(Default)]
pub(super) struct Diags {
    pub(super) errors: Vec<LegacyError>,
    pub(super) warnings: Vec<LegacyError>,
}

impl Diags {
    pub(super) fn error(&mut self, at: Pos, message: impl Into<String>, help: Option<String>) {
        self.errors.push(LegacyError { line: at.line, column: at.column, message: message.into(), help });
    }

    pub(super) fn warn(&mut self, at: Pos, message: impl Into<String>, help: Option<String>) {
        self.warnings.push(LegacyError { line: at.line, column: at.column, message: message.into(), help });
    }
}

/// Sorts by position (stable: diagnostics at one position keep their order) and drops repeats.
pub(super) fn finish(mut list: Vec<LegacyError>) -> Vec<LegacyError> {
    list.sort_by_key(|e| (e.line, e.column));
    let mut seen = HashSet::with_capacity(list.len());
    list.retain(|e| seen.insert(e.clone()));
    list
}

// ---------------------------------------------------------------------------------------------
// "Did you mean"

/// The candidate the input most likely meant ([`crate::suggest::did_you_mean`]), the input
/// itself included (a right word in the wrong place); a dotted Java name (`java.lang.String`)
/// is matched by its last segment.
pub(super) fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let last = input.rsplit('.').next().filter(|l| !l.is_empty()).unwrap_or(input);
    match candidates.iter().find(|c| **c == last) {
        Some(c) => Some(c),
        None => crate::suggest::did_you_mean(last, candidates.iter().copied()),
    }
}

pub(super) fn did_you_mean_type(input: &str) -> Option<&'static str> {
    const ALIASES: [(&str, &str); 9] = [
        ("int", "Integer"),
        ("bool", "Boolean"),
        ("float", "Double"),
        ("number", "Long"),
        ("password", "GuardedString"),
        ("varchar", "String"),
        ("varchar2", "String"),
        ("datetime", "Timestamp"),
        ("biginteger", "Long"),
    ];
    let last = input.rsplit('.').next().unwrap_or(input).to_lowercase();
    if let Some((_, t)) = ALIASES.iter().find(|(a, _)| *a == last) {
        return Some(t);
    }
    did_you_mean(input, &KNOWN_TYPES)
}
