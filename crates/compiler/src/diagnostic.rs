//! Diagnostics: what the compiler tells the engineer.
//!
//! A diagnostic is produced with a JSON pointer into a document (the only position the semantic
//! passes know) and resolved to a file, line and column by the loader's span index at the end.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A resolved position: 1-based lines and columns, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Span {
    pub line: u32,
    pub column: u32,
    pub end_line: u32,
    pub end_column: u32,
    /// Byte offsets into the file, for source snippets.
    #[serde(skip)]
    pub start: usize,
    #[serde(skip)]
    pub end: usize,
}

/// One finding, in the JSON shape of `provflow compile --format json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub end_line: u32,
    pub end_column: u32,
    pub help: Option<String>,
    #[serde(skip)]
    pub span: Span,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Which part of a node a finding points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The mapping key (e.g. an unknown field's name).
    Key,
    /// The value.
    Value,
}

/// A finding of a pass, positioned by a JSON pointer into one document. The loader's span
/// index turns it into a [`Diagnostic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub help: Option<String>,
    pub pointer: String,
    pub part: Part,
    /// For a position inside a string value (a template, a query): 0-based line and
    /// character column within the string.
    pub inner: Option<(u32, u32)>,
    /// Length in characters of the inner range (at least 1).
    pub inner_len: u32,
}

impl Finding {
    pub fn error(
        code: &'static str,
        message: impl Into<String>,
        pointer: impl Into<String>,
        part: Part,
        help: Option<String>,
    ) -> Finding {
        Finding {
            severity: Severity::Error,
            code,
            message: message.into(),
            help,
            pointer: pointer.into(),
            part,
            inner: None,
            inner_len: 1,
        }
    }

    pub fn warning(
        code: &'static str,
        message: impl Into<String>,
        pointer: impl Into<String>,
        part: Part,
        help: Option<String>,
    ) -> Finding {
        Finding { severity: Severity::Warning, ..Finding::error(code, message, pointer, part, help) }
    }

    /// Points inside the string value: `line` and `column` are 0-based within the string.
    pub fn at_inner(mut self, line: u32, column: u32, len: u32) -> Finding {
        self.inner = Some((line, column));
        self.inner_len = len.max(1);
        self
    }
}
