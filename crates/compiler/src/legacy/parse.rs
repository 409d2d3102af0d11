//! The parser: tokens into raw entries (name, query, parameters), every syntax error reported
//! with a help text and recovered from; parameter declarations (`Type:…,TAGS:…`) read.

use super::diag::{did_you_mean, did_you_mean_type, Diags, Pos, EXAMPLE_ENTRY};
use super::lex::{is_name, is_space, StrLit, Tok, Token};
use super::{KNOWN_TAGS, KNOWN_TYPES};

/// The shape of a token, without its payload (cheap to clone).
#[derive(Debug, Clone, PartialEq)]
enum K {
    Ident(String),
    Str,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Colon,
    Comma,
    Eq,
    Semi,
    Plus,
    Other(char),
    Eof,
}

fn describe(k: &K) -> String {
    match k {
        K::Ident(s) => format!("`{}`", shorten(s)),
        K::Str => "a string".into(),
        K::LBrace => "`{`".into(),
        K::RBrace => "`}`".into(),
        K::LBracket => "`[`".into(),
        K::RBracket => "`]`".into(),
        K::Colon => "`:`".into(),
        K::Comma => "`,`".into(),
        K::Eq => "`=`".into(),
        K::Semi => "`;`".into(),
        K::Plus => "`+`".into(),
        K::Other(c) => describe_char(*c),
        K::Eof => "the end of the file".into(),
    }
}

fn describe_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() || matches!(c, '`') {
        format!("the character U+{:04X}", c as u32)
    } else {
        format!("`{c}`")
    }
}

pub(super) fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        let head: String = s.chars().take(40).collect();
        format!("{head}...")
    } else {
        s.to_string()
    }
}

fn is_property(name: &str) -> bool {
    name == "Query" || name == "Parameters"
}

pub(super) struct RawParam {
    pub(super) name: String,
    pub(super) pos: Pos,
    pub(super) ty: Option<String>,
    pub(super) tag: Option<String>,
}

pub(super) struct RawEntry {
    pub(super) name: String,
    pub(super) name_pos: Pos,
    pub(super) saw_query: Option<Pos>,
    pub(super) query: Option<(Vec<(char, Pos)>, Pos)>,
    pub(super) params_at: Option<Pos>,
    pub(super) params: Vec<RawParam>,
    /// False after a syntax error that makes placeholder checks meaningless.
    pub(super) clean: bool,
    /// An error was reported inside the entry while parsing it: it is not converted, whatever
    /// the checks after find.
    pub(super) broken: bool,
}

pub(super) struct Parser<'t, 'd> {
    tokens: &'t [Token],
    i: usize,
    eof: Token,
    d: &'d mut Diags,
}

impl<'t, 'd> Parser<'t, 'd> {
    pub(super) fn new(tokens: &'t [Token], d: &'d mut Diags) -> Self {
        let end = tokens.last().map(|t| t.end).unwrap_or(Pos { line: 1, column: 1 });
        Parser { tokens, i: 0, eof: Token { tok: Tok::Eof, start: end, end }, d }
    }

    fn token(&self, k: usize) -> &Token {
        self.tokens.get(self.i.saturating_add(k)).unwrap_or(&self.eof)
    }

    fn k(&self, n: usize) -> K {
        match &self.token(n).tok {
            Tok::Ident(s) => K::Ident(s.clone()),
            Tok::Str(_) => K::Str,
            Tok::LBrace => K::LBrace,
            Tok::RBrace => K::RBrace,
            Tok::LBracket => K::LBracket,
            Tok::RBracket => K::RBracket,
            Tok::Colon => K::Colon,
            Tok::Comma => K::Comma,
            Tok::Eq => K::Eq,
            Tok::Semi => K::Semi,
            Tok::Plus => K::Plus,
            Tok::Other(c) => K::Other(*c),
            Tok::Eof => K::Eof,
        }
    }

    fn is_ident(&self, n: usize) -> bool {
        matches!(self.token(n).tok, Tok::Ident(_))
    }

    fn is(&self, n: usize, k: &K) -> bool {
        &self.k(n) == k
    }

    fn start(&self) -> Pos {
        self.token(0).start
    }

    fn bump(&mut self) {
        if self.i < self.tokens.len() {
            self.i += 1;
        }
    }

    /// Where to point for "expected X after Y": at the next token when it is on the same line
    /// as the previous one, otherwise just after the previous token.
    fn expected_at(&self) -> Pos {
        let next = self.token(0);
        let prev_end = match self.i.checked_sub(1).and_then(|j| self.tokens.get(j)) {
            Some(t) => t.end,
            None => return next.start,
        };
        if matches!(next.tok, Tok::Eof) || next.start.line != prev_end.line {
            prev_end
        } else {
            next.start
        }
    }

    /// Like [`Self::expected_at`], for what should follow the current token.
    fn expected_after_current(&self) -> Pos {
        let current = self.token(0).end;
        let next = self.token(1);
        if matches!(next.tok, Tok::Eof) || next.start.line != current.line {
            current
        } else {
            next.start
        }
    }

    /// `NAME {`: the start of an entry.
    fn at_entry_start(&self) -> bool {
        self.is_ident(0) && self.is(1, &K::LBrace)
    }

    /// `Query=` / `Parameters=` (or with `:`).
    fn at_property_start(&self) -> bool {
        matches!(&self.token(0).tok, Tok::Ident(n) if is_property(n))
            && matches!(self.token(1).tok, Tok::Eq | Tok::Colon)
    }

    fn take_string(&mut self) -> Option<StrLit> {
        let s = match &self.token(0).tok {
            Tok::Str(s) => s.clone(),
            _ => return None,
        };
        self.bump();
        Some(s)
    }

    pub(super) fn parse_file(&mut self) -> Vec<RawEntry> {
        let mut entries = Vec::new();
        loop {
            let at = self.start();
            match self.k(0) {
                K::Eof => break,
                K::Semi => self.bump(),
                K::Ident(_) if self.is(1, &K::LBrace) => entries.push(self.parse_entry()),
                K::Ident(name)
                    if (is_property(&name) || did_you_mean(&name, &["Query", "Parameters"]).is_some())
                        && matches!(self.k(1), K::Eq | K::Colon) =>
                {
                    self.d.error(
                        at,
                        format!("`{}=` outside of an entry", shorten(&name)),
                        Some(format!(
                            "`Query=` and `Parameters=` belong inside an entry named after the operation: `{EXAMPLE_ENTRY}`"
                        )),
                    );
                    self.sync_top();
                }
                K::Ident(name) => {
                    let found = describe(&self.k(1));
                    let at = self.expected_after_current();
                    self.d.error(
                        at,
                        format!("expected `{{` after the entry name `{}`, found {found}", shorten(&name)),
                        Some(format!("an entry looks like `{EXAMPLE_ENTRY}`")),
                    );
                    self.sync_top();
                }
                K::RBrace => {
                    self.d.error(
                        at,
                        "unexpected `}`: no entry is open here",
                        Some("remove it, or look for an extra `}` in the entry above".into()),
                    );
                    self.bump();
                }
                other => {
                    self.d.error(
                        at,
                        format!("expected an entry name such as `CREATE_USER`, found {}", describe(&other)),
                        Some(format!("an entry looks like `{EXAMPLE_ENTRY}`")),
                    );
                    self.sync_top();
                }
            }
        }
        entries
    }

    /// Error recovery at the top level: skip to the next `NAME {`.
    fn sync_top(&mut self) {
        self.bump();
        while !self.is(0, &K::Eof) && !self.at_entry_start() {
            self.bump();
        }
    }

    /// Error recovery inside an entry: skip to the next property, the entry's `}` or the next entry.
    fn recover_property(&mut self) {
        loop {
            if self.at_property_start() || self.at_entry_start() {
                return;
            }
            match self.k(0) {
                K::Eof | K::RBrace => return,
                _ => self.bump(),
            }
        }
    }

    fn parse_entry(&mut self) -> RawEntry {
        let name_pos = self.start();
        let name = match self.k(0) {
            K::Ident(n) => n,
            _ => String::new(),
        };
        self.bump();
        let brace = self.start();
        self.bump();
        let errors_at_start = self.d.errors.len();
        let mut e = RawEntry {
            name,
            name_pos,
            saw_query: None,
            query: None,
            params_at: None,
            params: Vec::new(),
            clean: true,
            broken: false,
        };
        loop {
            let at = self.start();
            match self.k(0) {
                K::RBrace => {
                    self.bump();
                    break;
                }
                K::Semi => self.bump(),
                K::Eof => {
                    self.d.error(
                        brace,
                        format!("entry `{}` is never closed: the file ends before its `}}`", e.name),
                        Some(format!("add `}}` after the last property of `{}`", e.name)),
                    );
                    break;
                }
                K::Ident(next) if self.is(1, &K::LBrace) => {
                    self.d.error(
                        brace,
                        format!(
                            "entry `{}` is not closed before the next entry `{}` starts at line {}",
                            e.name,
                            shorten(&next),
                            at.line
                        ),
                        Some(format!("add `}}` at the end of `{}`", e.name)),
                    );
                    break;
                }
                K::Ident(n) if n == "Query" => self.parse_query(&mut e),
                K::Ident(n) if n == "Parameters" => self.parse_params(&mut e),
                K::Ident(n) => {
                    let suggestion = did_you_mean(&n, &["Query", "Parameters"]);
                    let help = match suggestion {
                        Some(s) => format!("did you mean `{s}`? (names are case-sensitive)"),
                        None => format!(
                            "an entry holds only `Query=\"...\"` and `Parameters=[...]`; remove `{}`",
                            shorten(&n)
                        ),
                    };
                    self.d.error(at, format!("unknown property `{}` in entry `{}`", shorten(&n), e.name), Some(help));
                    if suggestion.is_some() {
                        // A misspelt Query/Parameters: further checks of this entry would only add noise.
                        e.clean = false;
                        if suggestion == Some("Query") && e.saw_query.is_none() {
                            e.saw_query = Some(at);
                        }
                    }
                    self.bump();
                    if matches!(self.k(0), K::Eq | K::Colon) {
                        self.bump();
                        self.skip_value();
                    } else {
                        self.recover_property();
                    }
                }
                other => {
                    self.d.error(
                        at,
                        format!("unexpected {} in entry `{}`", describe(&other), e.name),
                        Some(
                            "an entry holds `Query=\"...\"` and optionally `Parameters=[...]`, and ends with `}`"
                                .into(),
                        ),
                    );
                    e.clean = false;
                    self.bump();
                    self.recover_property();
                }
            }
        }
        e.broken = self.d.errors.len() > errors_at_start;
        e
    }

    /// Skips the value of an unknown property: strings joined by `+`, or a `[...]` list.
    fn skip_value(&mut self) {
        match self.k(0) {
            K::Str => {
                self.bump();
                while self.is(0, &K::Plus) && self.is(1, &K::Str) {
                    self.bump();
                    self.bump();
                }
            }
            K::LBracket => {
                self.bump();
                loop {
                    if self.at_entry_start() {
                        return;
                    }
                    match self.k(0) {
                        K::RBracket => {
                            self.bump();
                            return;
                        }
                        K::RBrace | K::Eof => return,
                        _ => self.bump(),
                    }
                }
            }
            _ => self.recover_property(),
        }
    }

    /// After a property name: `=`. Returns false when the value cannot be found.
    fn expect_eq(&mut self, key: &str, example: &str) -> bool {
        match self.k(0) {
            K::Eq => {
                self.bump();
                true
            }
            K::Colon => {
                self.d.error(
                    self.start(),
                    format!("expected `=` after `{key}`, found `:`"),
                    Some(format!("write `{example}`; the `:` form is only used inside `Parameters=[...]`")),
                );
                self.bump();
                true
            }
            other => {
                self.d.error(
                    self.expected_at(),
                    format!("expected `=` after `{key}`, found {}", describe(&other)),
                    Some(format!("write `{example}`")),
                );
                // Carry on when the value is plainly there (only the `=` is missing).
                matches!(other, K::Str | K::LBracket)
            }
        }
    }

    fn parse_query(&mut self, e: &mut RawEntry) {
        let key_pos = self.start();
        self.bump();
        let duplicate = e.saw_query;
        if let Some(first) = duplicate {
            self.d.error(
                key_pos,
                format!("`Query` is set twice in entry `{}`", e.name),
                Some(format!("the first `Query` is at line {}, column {}; keep only one", first.line, first.column)),
            );
        } else {
            e.saw_query = Some(key_pos);
        }
        if !self.expect_eq("Query", "Query=\"call my_proc({__NAME__})\"") {
            e.clean = false;
            self.recover_property();
            return;
        }
        let start = self.start();
        let Some(first) = self.take_string() else {
            let found = describe(&self.k(0));
            self.d.error(
                self.expected_at(),
                format!("expected the SQL text in quotes after `Query=`, found {found}"),
                Some("quote the SQL text: `Query=\"call my_proc({__NAME__})\"`".into()),
            );
            e.clean = false;
            self.recover_property();
            return;
        };
        let mut chars = first.chars;
        let mut closed = first.closed;
        while self.is(0, &K::Plus) {
            self.bump();
            match self.take_string() {
                Some(more) => {
                    chars.extend(more.chars);
                    closed &= more.closed;
                }
                None => {
                    let found = describe(&self.k(0));
                    self.d.error(
                        self.expected_at(),
                        format!("expected a string after `+`, found {found}"),
                        Some("join quoted strings only: `Query=\"select ...\" + \" from ...\"`".into()),
                    );
                    closed = false;
                    break;
                }
            }
        }
        if !closed {
            e.clean = false;
        }
        if duplicate.is_some() {
            return;
        }
        if let Some(at) = find_swallowed_parameters(&chars) {
            self.d.error(
                at,
                "the Query text runs on into `Parameters=`",
                Some("a closing quote is probably missing: end the SQL text with `\"` before `Parameters`".into()),
            );
            e.clean = false;
            self.recover_property();
        }
        e.query = Some((chars, start));
    }

    /// `[` ... `]` of `Parameters=`; the list may not be closed.
    fn at_list_end(&self) -> bool {
        matches!(self.k(0), K::RBrace | K::Eof)
            || self.at_entry_start()
            || (matches!(&self.token(0).tok, Tok::Ident(n) if is_property(n)) && self.is(1, &K::Eq))
    }

    fn parse_params(&mut self, e: &mut RawEntry) {
        let key_pos = self.start();
        self.bump();
        let duplicate = e.params_at;
        if let Some(first) = duplicate {
            self.d.error(
                key_pos,
                format!("`Parameters` is set twice in entry `{}`", e.name),
                Some(format!(
                    "the first `Parameters` is at line {}, column {}; merge them into one list",
                    first.line, first.column
                )),
            );
        } else {
            e.params_at = Some(key_pos);
        }
        let example = "Parameters=[\"__NAME__\":\"Type:String\"]";
        if !self.expect_eq("Parameters", example) {
            e.clean = false;
            self.recover_property();
            return;
        }
        if !self.is(0, &K::LBracket) {
            let found = describe(&self.k(0));
            self.d.error(
                self.expected_at(),
                format!("expected `[` after `Parameters=`, found {found}"),
                Some(format!("write the parameters as a list: `{example}`")),
            );
            e.clean = false;
            self.recover_property();
            return;
        }
        let open = self.start();
        self.bump();
        if self.is(0, &K::Colon) && self.is(1, &K::RBracket) {
            self.bump(); // `[:]`, Groovy's empty map
            self.bump();
            return;
        }
        let mut params: Vec<RawParam> = Vec::new();
        let missing_bracket = |p: &mut Self| {
            let found = describe(&p.k(0));
            let at = p.expected_at();
            p.d.error(
                at,
                format!(
                    "expected `]` to close the `Parameters` list opened at line {}, column {}, found {found}",
                    open.line, open.column
                ),
                Some("add `]` after the last parameter".into()),
            );
        };
        loop {
            match self.k(0) {
                K::RBracket => {
                    self.bump();
                    break;
                }
                K::Comma => {
                    self.d.error(
                        self.start(),
                        "unexpected `,`: expected a parameter such as `\"__NAME__\":\"Type:String\"`",
                        Some("remove the extra `,`".into()),
                    );
                    self.bump();
                }
                _ if self.at_list_end() => {
                    missing_bracket(self);
                    e.clean = false;
                    break;
                }
                K::Str | K::Ident(_) => {
                    let (goes_on, name) = self.parse_param(e, &mut params);
                    if !goes_on {
                        break;
                    }
                    match self.k(0) {
                        K::Comma => self.bump(),
                        K::RBracket => {
                            self.bump();
                            break;
                        }
                        _ if self.at_list_end() => {
                            missing_bracket(self);
                            e.clean = false;
                            break;
                        }
                        other => {
                            self.d.error(
                                self.expected_at(),
                                format!(
                                    "expected `,` or `]` after parameter `{}`, found {}",
                                    shorten(&name),
                                    describe(&other)
                                ),
                                Some("separate parameters with `,` and close the list with `]`".into()),
                            );
                            e.clean = false;
                            if !self.recover_item() {
                                break;
                            }
                        }
                    }
                }
                other => {
                    self.d.error(
                        self.start(),
                        format!("expected a parameter name such as `\"__NAME__\"`, found {}", describe(&other)),
                        Some("a parameter is written `\"__NAME__\":\"Type:String\"`".into()),
                    );
                    e.clean = false;
                    if !self.recover_item() {
                        break;
                    }
                }
            }
        }
        if duplicate.is_none() {
            e.params = params;
        }
    }

    /// Skips a broken list item. True when the list goes on, false when it ended.
    fn recover_item(&mut self) -> bool {
        loop {
            if self.at_list_end() {
                return false;
            }
            match self.k(0) {
                K::Comma => {
                    self.bump();
                    return true;
                }
                K::RBracket => {
                    self.bump();
                    return false;
                }
                _ => self.bump(),
            }
        }
    }

    /// One `"NAME":"Type:...,TAGS:..."`. Returns false when the list cannot go on, and the name read.
    fn parse_param(&mut self, e: &mut RawEntry, params: &mut Vec<RawParam>) -> (bool, String) {
        let mut name = String::new();
        let goes_on = self.parse_param_into(e, params, &mut name);
        (goes_on, name)
    }

    fn parse_param_into(&mut self, e: &mut RawEntry, params: &mut Vec<RawParam>, out_name: &mut String) -> bool {
        let name_pos = self.start();
        let name = match self.k(0) {
            K::Ident(n) => {
                self.bump();
                n
            }
            _ => match self.take_string() {
                Some(s) => {
                    if !s.closed {
                        e.clean = false;
                    }
                    s.chars.iter().map(|(c, _)| *c).collect()
                }
                None => return self.recover_item(),
            },
        };
        out_name.clone_from(&name);
        match self.k(0) {
            K::Colon => self.bump(),
            K::Eq => {
                self.d.error(
                    self.start(),
                    format!("expected `:` after parameter name `{}`, found `=`", shorten(&name)),
                    Some(format!("write `\"{}\":\"Type:String\"`", shorten(&name))),
                );
                self.bump();
            }
            other => {
                self.d.error(
                    self.expected_at(),
                    format!("expected `:` after parameter name `{}`, found {}", shorten(&name), describe(&other)),
                    Some(format!("write `\"{}\":\"Type:String\"`", shorten(&name))),
                );
                e.clean = false;
                return self.recover_item_keep_going();
            }
        }
        let spec_pos = self.start();
        let Some(spec) = self.take_string() else {
            let found = describe(&self.k(0));
            self.d.error(
                self.expected_at(),
                format!("expected the declaration of `{}` in quotes, found {found}", shorten(&name)),
                Some(format!("quote it: `\"{}\":\"Type:String\"`", shorten(&name))),
            );
            e.clean = false;
            return self.recover_item_keep_going();
        };
        if !spec.closed {
            e.clean = false;
        }
        if !is_name(&name) {
            let help = if name.is_empty() {
                "give the parameter a name such as `__NAME__`".to_string()
            } else {
                "use letters, digits and `_` only, starting with a letter or `_`, e.g. `__NAME__`".to_string()
            };
            self.d.error(
                name_pos,
                if name.is_empty() {
                    "empty parameter name".to_string()
                } else {
                    format!("parameter name `{}` cannot be used as a `{{placeholder}}`", shorten(&name))
                },
                Some(help),
            );
            e.clean = false;
            return true;
        }
        if let Some(first) = params.iter().find(|p| p.name == name) {
            self.d.error(
                name_pos,
                format!("parameter `{name}` is declared twice in entry `{}`", e.name),
                Some(format!(
                    "the first declaration is at line {}, column {}; keep only one",
                    first.pos.line, first.pos.column
                )),
            );
            return true;
        }
        let (ty, tag) = parse_spec(&name, &spec.chars, spec_pos, self.d);
        params.push(RawParam { name, pos: name_pos, ty, tag });
        true
    }

    /// Like [`Self::recover_item`], but "the list ended" is only reported through the position:
    /// the caller's loop sees the `]` is gone and stops. Returns true so that the caller looks
    /// at the next token itself.
    fn recover_item_keep_going(&mut self) -> bool {
        loop {
            if self.at_list_end() {
                return true;
            }
            match self.k(0) {
                K::Comma | K::RBracket => return true,
                _ => self.bump(),
            }
        }
    }
}

/// The `Parameters` of a Query string that lacks its closing quote.
fn find_swallowed_parameters(chars: &[(char, Pos)]) -> Option<Pos> {
    const WORD: [char; 10] = ['P', 'a', 'r', 'a', 'm', 'e', 't', 'e', 'r', 's'];
    for (i, (_, at)) in chars.iter().enumerate() {
        let window = chars.get(i..i.saturating_add(WORD.len()))?;
        if window.iter().map(|(c, _)| *c).eq(WORD.iter().copied()) {
            let rest = chars.get(i + WORD.len()..).unwrap_or(&[]);
            let next = rest.iter().map(|(c, _)| *c).find(|c| !c.is_whitespace());
            if next == Some('=') {
                return Some(*at);
            }
        }
    }
    None
}

pub(super) type Chars<'a> = &'a [(char, Pos)];

fn trim(s: Chars<'_>) -> Chars<'_> {
    let start = s.iter().position(|(c, _)| !is_space(*c));
    let end = s.iter().rposition(|(c, _)| !is_space(*c));
    match (start, end) {
        (Some(a), Some(b)) if a <= b => s.get(a..=b).unwrap_or(&[]),
        _ => &[],
    }
}

pub(super) fn text(s: Chars<'_>) -> String {
    s.iter().map(|(c, _)| *c).collect()
}

/// Parses `Type:String,TAGS:QUOTES` (the declaration of parameter `name`).
fn parse_spec(name: &str, spec: Chars<'_>, spec_pos: Pos, d: &mut Diags) -> (Option<String>, Option<String>) {
    let mut ty: Option<(String, Pos)> = None;
    let mut tag: Option<(String, Pos)> = None;
    let mut type_error = false;
    let types_list = KNOWN_TYPES.join(", ");
    let tags_list = KNOWN_TAGS.join(", ");
    for raw_item in spec.split(|(c, _)| *c == ',') {
        let item = trim(raw_item);
        let Some(&(_, item_pos)) = item.first() else {
            continue; // `Type:String,` — an empty item is harmless
        };
        let Some(colon) = item.iter().position(|(c, _)| *c == ':') else {
            let word = text(item);
            let help = match did_you_mean_type(&word) {
                Some(t) => format!("write `Type:{t}`"),
                None => format!(
                    "write `Type:<type>` (one of {types_list}) and optionally `TAGS:<tag>` (one of {tags_list})"
                ),
            };
            d.error(
                item_pos,
                format!("expected `Type:<type>` in the declaration of `{name}`, found `{}`", shorten(&word)),
                Some(help),
            );
            type_error = true;
            continue;
        };
        let key = trim(item.get(..colon).unwrap_or(&[]));
        let value = trim(item.get(colon + 1..).unwrap_or(&[]));
        let key_text = text(key);
        let value_text = text(value);
        let value_pos = value
            .first()
            .map(|(_, p)| *p)
            .or_else(|| item.get(colon).map(|(_, p)| Pos { line: p.line, column: p.column + 1 }))
            .unwrap_or(item_pos);
        match key_text.as_str() {
            "Type" => {
                if let Some((_, first)) = &ty {
                    d.error(
                        item_pos,
                        format!("`Type` is given twice for parameter `{name}`"),
                        Some(format!("the first is at line {}, column {}; keep only one", first.line, first.column)),
                    );
                    continue;
                }
                if value_text.is_empty() {
                    d.error(
                        value_pos,
                        format!("missing type after `Type:` for parameter `{name}`"),
                        Some(format!("write one of {types_list}")),
                    );
                    type_error = true;
                } else if KNOWN_TYPES.contains(&value_text.as_str()) {
                    ty = Some((value_text, item_pos));
                } else {
                    let help = match did_you_mean_type(&value_text) {
                        Some(t) => format!("did you mean `{t}`? (the known types are {types_list})"),
                        None => format!("the known types are {types_list}"),
                    };
                    d.error(
                        value_pos,
                        format!("unknown type `{}` for parameter `{name}`", shorten(&value_text)),
                        Some(help),
                    );
                    type_error = true;
                }
            }
            "TAGS" => {
                if let Some((_, first)) = &tag {
                    d.error(
                        item_pos,
                        format!("`TAGS` is given twice for parameter `{name}`"),
                        Some(format!(
                            "the first is at line {}, column {}; a parameter has at most one tag",
                            first.line, first.column
                        )),
                    );
                    continue;
                }
                if let Some(&(_, bar)) = value.iter().find(|(c, _)| *c == '|') {
                    d.error(
                        bar,
                        format!("parameter `{name}` has several tags (`{}`); provflow allows one", shorten(&value_text)),
                        Some("keep the one the SQL needs: IDENTIFIER inlines a quoted identifier, DOUBLEQUOTES wraps the value in `\"`, QUOTES inlines a string literal".into()),
                    );
                    continue;
                }
                if value_text.is_empty() {
                    d.error(
                        value_pos,
                        format!("missing tag after `TAGS:` for parameter `{name}`"),
                        Some(format!("write one of {tags_list}, or remove `TAGS:` to bind the value as a parameter")),
                    );
                } else if KNOWN_TAGS.contains(&value_text.as_str()) {
                    tag = Some((value_text, item_pos));
                } else {
                    let help = match did_you_mean(&value_text, &KNOWN_TAGS) {
                        Some(t) => format!("did you mean `{t}`? (the known tags are {tags_list})"),
                        None => format!("the known tags are {tags_list}"),
                    };
                    d.error(
                        value_pos,
                        format!("unknown tag `{}` for parameter `{name}`", shorten(&value_text)),
                        Some(help),
                    );
                }
            }
            other => {
                let help = match did_you_mean(other, &["Type", "TAGS"]) {
                    Some(k) => format!("did you mean `{k}`? (keys are case-sensitive)"),
                    None => "a declaration holds `Type:<type>` and optionally `TAGS:<tag>`".to_string(),
                };
                if did_you_mean(other, &["Type"]).is_some() {
                    type_error = true;
                }
                d.error(
                    key.first().map(|(_, p)| *p).unwrap_or(item_pos),
                    format!("unknown key `{}` in the declaration of `{name}`", shorten(other)),
                    Some(help),
                );
            }
        }
    }
    if ty.is_none() && !type_error {
        d.error(
            spec_pos,
            format!("parameter `{name}` has no `Type:`"),
            Some(format!("add its type, e.g. `\"{name}\":\"Type:String\"` (one of {types_list})")),
        );
    }
    (ty.map(|(t, _)| t), tag.map(|(t, _)| t))
}
