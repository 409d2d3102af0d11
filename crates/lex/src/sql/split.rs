//! Statements of a script: the text between statement ends, where a `;` inside a compound
//! statement's body does not end it.
//!
//! A statement ends at a `;` (MariaDB: at the `DELIMITER` when one is set, and there only),
//! unless the `;` is inside a body. Bodies are tracked only in statements that can have one,
//! so that a stray `CASE` or `BEGIN` elsewhere cannot swallow the rest of a script:
//!
//! - `CREATE`/`ALTER` of a `PROCEDURE`, `FUNCTION`, `TRIGGER` or `EVENT` (SQLite triggers,
//!   MariaDB routines, PostgreSQL `BEGIN ATOMIC` bodies), and on MariaDB `BEGIN NOT ATOMIC`
//!   and the compound statements that may stand alone (`IF`, `CASE`, `LOOP`, `WHILE`,
//!   `REPEAT`, `FOR`).
//! - In those, `BEGIN` and `CASE` open a block and `END` closes the innermost one; on MariaDB
//!   `IF`, `LOOP`, `WHILE`, `REPEAT` (and `FOR`) open one where a statement starts, and
//!   `END IF`, `END LOOP`, … close theirs. A bare `END` closes the innermost `BEGIN` or `CASE`
//!   and whatever was opened inside it, so an `IF(…)` function taken for a statement cannot
//!   keep a body open.
//! - `BEGIN;`, `BEGIN TRANSACTION;`, `BEGIN WORK;` are plain statements.
//! - PostgreSQL (like `psql`): a `;` inside parentheses does not end a statement either.
//!
//! Dollar-quoted PostgreSQL bodies need none of this: the lexer returns them as one token.

use super::{LexError, Lexer, Token, TokenKind};
use provflow_ir::Dialect;

/// One statement of a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement<'a> {
    /// From the statement's first token that is not whitespace or a comment to its delimiter
    /// (excluded), trailing whitespace trimmed.
    pub text: &'a str,
    /// Byte offset of `text` in the script.
    pub offset: usize,
    /// 1-based line of `offset`.
    pub line: u32,
    /// Byte offset just past the previous statement's delimiter (0 for the first): the text
    /// from here to `offset` is the whitespace and comments before the statement.
    pub leading: usize,
}

/// Splits a script into its statements. Statements with nothing but whitespace and comments
/// are left out; an unclosed quote or comment is an error.
pub fn split(script: &str, dialect: Dialect) -> Result<Vec<Statement<'_>>, LexError> {
    let mut lexer = Lexer::new(script, dialect);
    let mut out = Vec::new();
    let mut line: u32 = 1;
    let mut current: Option<(usize, u32)> = None;
    let mut leading = 0;
    let mut blocks = Blocks::new(dialect);
    while let Some(token) = lexer.next() {
        let token = token?;
        let ends = match token.kind {
            kind if kind.is_trivia() => false,
            TokenKind::Delimiter | TokenKind::DelimiterDirective => true,
            TokenKind::Semicolon if lexer.delimiter() == ";" => {
                blocks.feed(&token);
                !blocks.open()
            }
            _ => {
                current.get_or_insert((token.offset, line));
                blocks.feed(&token);
                false
            }
        };
        if ends {
            if let Some((start, at)) = current.take() {
                let text = script.get(start..token.offset).unwrap_or_default().trim_end();
                out.push(Statement { text, offset: start, line: at, leading });
            }
            blocks = Blocks::new(dialect);
            leading = token.end();
        }
        let newlines = token.text.bytes().filter(|&b| b == b'\n').count();
        line = line.saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX));
    }
    if let Some((start, at)) = current {
        let text = script.get(start..).unwrap_or_default().trim_end();
        out.push(Statement { text, offset: start, line: at, leading });
    }
    Ok(out)
}

/// What opened a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum Opener {
    Begin,
    Case,
    If,
    Loop,
    While,
    Repeat,
    For,
}

impl Opener {
    /// The MariaDB compound statements that open where a statement starts.
    fn statement(word: &str) -> Option<Opener> {
        [
            ("IF", Opener::If),
            ("LOOP", Opener::Loop),
            ("WHILE", Opener::While),
            ("REPEAT", Opener::Repeat),
            ("FOR", Opener::For),
        ]
        .into_iter()
        .find(|(k, _)| word.eq_ignore_ascii_case(k))
        .map(|(_, o)| o)
    }

    /// The word after `END` that names what it closes (`END IF`, `END CASE`).
    fn qualifier(word: &str) -> Option<Opener> {
        Opener::statement(word).or_else(|| word.eq_ignore_ascii_case("CASE").then_some(Opener::Case))
    }
}

/// The kinds of objects whose definition can hold a body of statements.
const COMPOUND_OBJECTS: [&str; 4] = ["PROCEDURE", "FUNCTION", "TRIGGER", "EVENT"];

/// Other kinds of objects: a `CREATE` naming one of these first has no body.
const OTHER_OBJECTS: [&str; 28] = [
    "TABLE",
    "VIEW",
    "INDEX",
    "SEQUENCE",
    "SCHEMA",
    "DATABASE",
    "ROLE",
    "USER",
    "TYPE",
    "DOMAIN",
    "EXTENSION",
    "SERVER",
    "TABLESPACE",
    "POLICY",
    "RULE",
    "COLLATION",
    "CAST",
    "OPERATOR",
    "STATISTICS",
    "PUBLICATION",
    "SUBSCRIPTION",
    "CONVERSION",
    "LANGUAGE",
    "TRANSFORM",
    "GROUP",
    "SYNONYM",
    "PACKAGE",
    "MATERIALIZED",
];

/// How far into a `CREATE` the object kind is looked for (`CREATE OR REPLACE DEFINER =
/// 'u'@'h' AGGREGATE FUNCTION` is 11 tokens).
const HEADER_TOKENS: usize = 32;

/// Where the statement is, before its body matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No token yet.
    Start,
    /// After `CREATE`/`ALTER`, looking for the kind of object.
    Header,
    /// MariaDB: after a first `BEGIN`, which is a block only as `BEGIN NOT ATOMIC`.
    Begin,
    /// A statement without a body.
    Plain,
    /// A statement that may have a body: blocks are tracked.
    Compound,
}

/// What the previous token says about the position of the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Before {
    /// A statement starts here (after `;`, `BEGIN`, `THEN`, `ELSE`, `DO`, a label, …).
    StatementStart,
    /// After `)`: where a routine's single-statement body starts, also in an `IN (…) FOR
    /// UPDATE`.
    CloseParen,
    Other,
}

/// The block structure of one statement.
#[derive(Debug)]
struct Blocks {
    dialect: Dialect,
    phase: Phase,
    /// Tokens fed so far.
    seen: usize,
    stack: Vec<Opener>,
    /// How many of each opener `stack` holds.
    counts: [usize; 7],
    /// The previous token was `END`: the next one may say what it closes.
    after_end: bool,
    before: Before,
    /// Open parentheses (PostgreSQL only).
    parens: usize,
}

impl Blocks {
    fn new(dialect: Dialect) -> Self {
        Blocks {
            dialect,
            phase: Phase::Start,
            seen: 0,
            stack: Vec::new(),
            counts: [0; 7],
            after_end: false,
            before: Before::StatementStart,
            parens: 0,
        }
    }

    /// Whether a `;` here is inside the statement.
    fn open(&self) -> bool {
        !self.stack.is_empty() || self.parens > 0
    }

    /// Takes the next token that is not whitespace or a comment.
    fn feed(&mut self, token: &Token<'_>) {
        let mariadb = self.dialect == Dialect::Mariadb;
        self.seen += 1;
        if self.dialect == Dialect::Postgres {
            if token.is_punct('(') {
                self.parens += 1;
            } else if token.is_punct(')') {
                self.parens = self.parens.saturating_sub(1);
            }
        }
        match self.phase {
            Phase::Start => {
                self.phase = if token.is_word("CREATE") || token.is_word("ALTER") {
                    Phase::Header
                } else if mariadb && token.is_word("BEGIN") {
                    Phase::Begin
                } else if mariadb
                    && token.kind == TokenKind::Word
                    && (Opener::statement(token.text).is_some() || token.is_word("CASE"))
                {
                    self.compound(token);
                    Phase::Compound
                } else {
                    Phase::Plain
                };
            }
            Phase::Header => {
                if COMPOUND_OBJECTS.iter().any(|k| token.is_word(k)) {
                    self.phase = Phase::Compound;
                    self.before = Before::Other;
                } else if OTHER_OBJECTS.iter().any(|k| token.is_word(k))
                    || token.is_punct('(')
                    || token.kind == TokenKind::Semicolon
                    || self.seen > HEADER_TOKENS
                {
                    self.phase = Phase::Plain;
                }
            }
            Phase::Begin => {
                if token.is_word("NOT") {
                    self.push(Opener::Begin);
                    self.phase = Phase::Compound;
                    self.before = Before::Other;
                } else {
                    self.phase = Phase::Plain;
                }
            }
            Phase::Plain => {}
            Phase::Compound => self.compound(token),
        }
    }

    fn compound(&mut self, token: &Token<'_>) {
        let word = |k: &str| token.is_word(k);
        if std::mem::take(&mut self.after_end) {
            let qualifier = if self.dialect == Dialect::Mariadb && token.kind == TokenKind::Word {
                Opener::qualifier(token.text)
            } else {
                None
            };
            self.close(qualifier);
            if qualifier.is_some() {
                self.before = Before::Other;
                return;
            }
        }
        if word("BEGIN") {
            self.push(Opener::Begin);
        } else if word("CASE") {
            self.push(Opener::Case);
        } else if word("END") {
            self.after_end = true;
        } else if self.dialect == Dialect::Mariadb && token.kind == TokenKind::Word {
            let opens = match Opener::statement(token.text) {
                Some(Opener::For) => self.before == Before::StatementStart,
                Some(_) => self.before != Before::Other,
                None => false,
            };
            if let Some(opener) = Opener::statement(token.text).filter(|_| opens) {
                self.push(opener);
            }
        }
        const STARTS: [&str; 13] = [
            "BEGIN",
            "ATOMIC",
            "THEN",
            "ELSE",
            "DO",
            "LOOP",
            "REPEAT",
            "ROW",
            "DETERMINISTIC",
            "SQL",
            "DATA",
            "INVOKER",
            "DEFINER",
        ];
        self.before = if token.kind == TokenKind::Semicolon || token.is_punct(':') || STARTS.iter().any(|k| word(k)) {
            Before::StatementStart
        } else if token.is_punct(')') {
            Before::CloseParen
        } else {
            Before::Other
        };
    }

    fn push(&mut self, opener: Opener) {
        self.stack.push(opener);
        if let Some(n) = self.counts.get_mut(opener as usize) {
            *n += 1;
        }
    }

    fn count(&self, opener: Opener) -> usize {
        self.counts.get(opener as usize).copied().unwrap_or(0)
    }

    /// `END` (with the word after it, when that names what it closes): closes the innermost
    /// block of that kind and everything opened inside it. An `END` with nothing of its kind
    /// open closes nothing. (Each opener is removed at most once, and an `END` scans the stack
    /// only when it will remove what it scans: linear in the script.)
    fn close(&mut self, qualifier: Option<Opener>) {
        let bare = |o: Opener| matches!(o, Opener::Begin | Opener::Case);
        let open = match qualifier {
            Some(q) => self.count(q),
            None => self.count(Opener::Begin) + self.count(Opener::Case),
        };
        if open == 0 {
            return;
        }
        while let Some(o) = self.stack.pop() {
            if let Some(n) = self.counts.get_mut(o as usize) {
                *n = n.saturating_sub(1);
            }
            if qualifier.map_or(bare(o), |q| q == o) {
                break;
            }
        }
    }
}
