//! Templates and expressions (minijinja): the legacy `$Token` rewrite and static analysis.
//!
//! The compiler uses [`analyse`] to report syntax errors and unknown variables at the exact
//! place in the YAML; the runner uses [`rewrite_legacy_tokens`] (already applied to the sources
//! in the IR) and renders with minijinja. Positions are 0-based lines and character columns
//! within the string analysed, which is what [`crate::diagnostic::Finding::at_inner`] takes.
//!
//! Legacy tokens: the identity manager's templates write `$First_Name` where minijinja writes
//! `{{ First_Name }}` (seed 001). [`analyse`] accepts both and reports positions in the text as
//! written, so a diagnostic for `$Frist_Name` points at `Frist_Name`.

use minijinja::machinery::ast::{self, CallArg, Expr, Stmt};
use minijinja::machinery::Span;
use std::collections::HashSet;
use std::fmt;

/// A place inside an analysed string: 0-based line, 0-based character column, length in
/// characters (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub line: u32,
    pub column: u32,
    pub len: u32,
}

/// An attribute looked up on a variable: `Object_Name` in `Resource_Info.Object_Name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeUse {
    pub name: String,
    pub at: Position,
}

/// One use of a variable the template does not define itself (a variable the caller must
/// provide).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableUse {
    pub name: String,
    pub at: Position,
    /// The chain of attribute lookups directly on the variable (`a.b.c` → `b`, `c`; also
    /// `a["b"]`). Empty when the variable is used bare or one of its methods is called.
    pub attributes: Vec<AttributeUse>,
}

/// What a template or expression needs from its context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateInfo {
    /// Every use of a top-level variable, in source order (a name may appear several times).
    /// Variables the template defines (`{% for x in ... %}`, `{% set x = ... %}`), `loop` and
    /// minijinja's global functions (`range`, `dict`, `namespace`, `debug`) are not included.
    pub uses: Vec<VariableUse>,
}

impl TemplateInfo {
    /// The distinct names of the top-level variables, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.uses.iter().map(|u| u.name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Why a template or expression could not be analysed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// The text does not parse; `message` is minijinja's explanation.
    Syntax { message: String, at: Position },
}

impl TemplateError {
    pub fn position(&self) -> Position {
        match self {
            TemplateError::Syntax { at, .. } => *at,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            TemplateError::Syntax { message, .. } => message,
        }
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Syntax { message, at } => {
                write!(f, "{message} (line {}, column {})", at.line + 1, at.column + 1)
            }
        }
    }
}

impl std::error::Error for TemplateError {}

/// minijinja's default globals: never data the caller must provide.
const GLOBALS: [&str; 4] = ["range", "dict", "namespace", "debug"];

/// Rewrites legacy `$Token` variables to `{{ Token }}`.
///
/// A token is `$` followed by `[A-Za-z_][A-Za-z0-9_.]*` (a trailing `.` is sentence
/// punctuation, not part of it). `$$` is left alone (both characters), and so is everything
/// inside `{{ }}`, `{% %}` and `{# #}`. Line breaks are never added or removed, so line numbers
/// stay valid. The rewrite is idempotent.
pub fn rewrite_legacy_tokens(src: &str) -> String {
    rewrite(src).0
}

/// One rewritten token: the byte range of `$Token` in the original and of `{{ Token }}` in the
/// rewritten text.
#[derive(Debug, Clone, Copy)]
struct Replacement {
    original_start: usize,
    original_len: usize,
    rewritten_start: usize,
    rewritten_len: usize,
}

fn rewrite(src: &str) -> (String, Vec<Replacement>) {
    let bytes = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut replacements = Vec::new();
    let mut i = 0;
    // Copied verbatim up to here.
    let mut copied = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'{' if matches!(bytes.get(i + 1), Some(b'{' | b'%' | b'#')) => {
                let close: &[u8] = match bytes.get(i + 1) {
                    Some(b'{') => b"}}",
                    Some(b'%') => b"%}",
                    _ => b"#}",
                };
                i = find(bytes, i + 2, close).map_or(bytes.len(), |end| end + 2);
            }
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 2,
            b'$' if bytes.get(i + 1).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') => {
                let start = i + 1;
                let mut end = start;
                while bytes.get(end).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.') {
                    end += 1;
                }
                while end > start && bytes.get(end - 1) == Some(&b'.') {
                    end -= 1;
                }
                let name = &src[start..end];
                out.push_str(&src[copied..i]);
                let rewritten_start = out.len();
                out.push_str("{{ ");
                out.push_str(name);
                out.push_str(" }}");
                replacements.push(Replacement {
                    original_start: i,
                    original_len: end - i,
                    rewritten_start,
                    rewritten_len: out.len() - rewritten_start,
                });
                i = end;
                copied = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&src[copied..]);
    (out, replacements)
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// Maps byte offsets in the rewritten text back to the text as written.
struct OffsetMap<'a> {
    original: &'a str,
    replacements: Vec<Replacement>,
}

impl OffsetMap<'_> {
    fn to_original(&self, rewritten: usize) -> usize {
        let mut delta: isize = 0;
        for r in &self.replacements {
            if rewritten < r.rewritten_start {
                break;
            }
            if rewritten < r.rewritten_start + r.rewritten_len {
                // Inside `{{ Token }}`: the token's name follows the `$`.
                let inner = rewritten.saturating_sub(r.rewritten_start + 3);
                return r.original_start + 1 + inner.min(r.original_len.saturating_sub(1));
            }
            delta += r.rewritten_len as isize - r.original_len as isize;
        }
        (rewritten as isize - delta).max(0) as usize
    }

    /// The position of a byte range of the rewritten text, in the original.
    fn position(&self, start: usize, end: usize) -> Position {
        let s = floor_char_boundary(self.original, self.to_original(start));
        let e = floor_char_boundary(self.original, self.to_original(end)).max(s);
        let before = &self.original[..s];
        let line = before.matches('\n').count();
        let line_start = before.rfind('\n').map_or(0, |p| p + 1);
        let column = self.original[line_start..s].chars().count();
        // A range spanning lines is cut at the end of its first line.
        let len = self.original[s..e].split('\n').next().map_or(0, |t| t.chars().count());
        Position { line: clamp_u32(line), column: clamp_u32(column), len: clamp_u32(len).max(1) }
    }

    fn span(&self, span: Span) -> Position {
        self.position(span.start_offset as usize, span.end_offset as usize)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn syntax_error(map: &OffsetMap<'_>, rewritten: &str, e: &minijinja::Error) -> TemplateError {
    let message = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    let at = match (e.range(), e.line()) {
        (Some(range), _) => map.position(range.start, range.end),
        (None, Some(line)) => {
            // Only a line: point at its first character.
            let start: usize = rewritten.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
            map.position(start, start)
        }
        (None, None) => Position { line: 0, column: 0, len: 1 },
    };
    TemplateError::Syntax { message, at }
}

/// Parses a template (legacy `$Token`s allowed) and returns the variables it needs.
pub fn analyse(src: &str) -> Result<TemplateInfo, TemplateError> {
    let (rewritten, replacements) = rewrite(src);
    let map = OffsetMap { original: src, replacements };
    let stmt = minijinja::machinery::parse(&rewritten, "template", Default::default())
        .map_err(|e| syntax_error(&map, &rewritten, &e))?;
    let mut walker = Walker::new(&map);
    walker.stmt(&stmt);
    Ok(TemplateInfo { uses: walker.uses })
}

/// Parses a minijinja expression (such as a task `condition`) and returns the variables it
/// needs. Legacy tokens are not accepted in expressions.
pub fn analyse_expression(src: &str) -> Result<TemplateInfo, TemplateError> {
    let map = OffsetMap { original: src, replacements: Vec::new() };
    let expr = minijinja::machinery::parse_expr(src).map_err(|e| syntax_error(&map, src, &e))?;
    let mut walker = Walker::new(&map);
    walker.expr(&expr);
    Ok(TemplateInfo { uses: walker.uses })
}

/// Collects uses of variables not assigned in an enclosing scope, with minijinja's scoping:
/// `for`, `with`, `if` bodies and blocks open scopes; `set` assigns in the current one.
struct Walker<'m, 'a> {
    map: &'m OffsetMap<'m>,
    scopes: Vec<HashSet<&'a str>>,
    uses: Vec<VariableUse>,
}

impl<'m, 'a> Walker<'m, 'a> {
    fn new(map: &'m OffsetMap<'m>) -> Self {
        Walker { map, scopes: vec![HashSet::new()], uses: Vec::new() }
    }

    fn assigned(&self, name: &str) -> bool {
        GLOBALS.contains(&name) || self.scopes.iter().any(|s| s.contains(name))
    }

    fn assign(&mut self, target: &Expr<'a>) {
        match target {
            Expr::Var(v) => {
                if let Some(scope) = self.scopes.last_mut() {
                    scope.insert(v.id);
                }
            }
            Expr::List(l) => l.items.iter().for_each(|x| self.assign(x)),
            Expr::Tuple(t) => t.items.iter().for_each(|x| self.assign(x)),
            // `{% set ns.attr = ... %}` reads `ns`.
            other => self.expr(other),
        }
    }

    fn scoped(&mut self, f: impl FnOnce(&mut Self)) {
        self.scopes.push(HashSet::new());
        f(self);
        self.scopes.pop();
    }

    fn body(&mut self, stmts: &[Stmt<'a>]) {
        stmts.iter().for_each(|s| self.stmt(s));
    }

    #[allow(unreachable_patterns)] // other minijinja features add statements
    fn stmt(&mut self, stmt: &Stmt<'a>) {
        match stmt {
            Stmt::Template(t) => self.body(&t.children),
            Stmt::EmitExpr(e) => self.expr(&e.expr),
            Stmt::EmitRaw(_) => {}
            Stmt::ForLoop(f) => {
                self.expr(&f.iter);
                self.scoped(|w| {
                    if let Some(scope) = w.scopes.last_mut() {
                        scope.insert("loop");
                    }
                    w.assign(&f.target);
                    if let Some(filter) = &f.filter_expr {
                        w.expr(filter);
                    }
                    w.body(&f.body);
                });
                self.scoped(|w| w.body(&f.else_body));
            }
            Stmt::IfCond(c) => {
                self.expr(&c.expr);
                self.scoped(|w| w.body(&c.true_body));
                self.scoped(|w| w.body(&c.false_body));
            }
            Stmt::WithBlock(b) => self.scoped(|w| {
                for (target, value) in &b.assignments {
                    w.expr(value);
                    w.assign(target);
                }
                w.body(&b.body);
            }),
            Stmt::Set(s) => {
                self.expr(&s.expr);
                self.assign(&s.target);
            }
            Stmt::SetBlock(s) => {
                if let Some(filter) = &s.filter {
                    self.expr(filter);
                }
                self.scoped(|w| w.body(&s.body));
                self.assign(&s.target);
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled);
                self.scoped(|w| w.body(&a.body));
            }
            Stmt::FilterBlock(f) => {
                self.expr(&f.filter);
                self.scoped(|w| w.body(&f.body));
            }
            Stmt::Do(d) => {
                self.expr(&d.call.expr);
                d.call.args.iter().for_each(|a| self.arg(a));
            }
            _ => {}
        }
    }

    fn arg(&mut self, arg: &CallArg<'a>) {
        match arg {
            CallArg::Pos(e) | CallArg::Kwarg(_, e) | CallArg::PosSplat(e) | CallArg::KwargSplat(e) => self.expr(e),
        }
    }

    fn record(&mut self, var: &ast::Spanned<ast::Var<'a>>, attributes: Vec<AttributeUse>) {
        if !self.assigned(var.id) {
            self.uses.push(VariableUse { name: var.id.to_owned(), at: self.map.span(var.span()), attributes });
        }
    }

    /// For `a.b["c"]`: the variable at the root of a chain of constant lookups, and the chain.
    fn lookup_chain<'e>(&self, expr: &'e Expr<'a>) -> Option<(&'e ast::Spanned<ast::Var<'a>>, Vec<AttributeUse>)> {
        let mut chain = Vec::new();
        let mut cur = expr;
        loop {
            match cur {
                Expr::Var(v) => {
                    chain.reverse();
                    return Some((v, chain));
                }
                Expr::GetAttr(g) => {
                    let span = g.span();
                    let end = span.end_offset as usize;
                    let start = end.saturating_sub(g.name.len());
                    chain.push(AttributeUse { name: g.name.to_owned(), at: self.map.position(start, end) });
                    cur = &g.expr;
                }
                Expr::GetItem(g) => match &g.subscript_expr {
                    Expr::Const(c) => {
                        let name = c.value.as_str()?.to_owned();
                        chain.push(AttributeUse { name, at: self.map.span(c.span()) });
                        cur = &g.expr;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    fn expr(&mut self, expr: &Expr<'a>) {
        match expr {
            Expr::Var(v) => self.record(v, Vec::new()),
            Expr::Const(_) => {}
            Expr::Slice(s) => {
                self.expr(&s.expr);
                for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(part);
                }
            }
            Expr::UnaryOp(u) => self.expr(&u.expr),
            Expr::BinOp(b) => {
                self.expr(&b.left);
                self.expr(&b.right);
            }
            Expr::Compare(c) => {
                self.expr(&c.expr);
                c.ops.iter().for_each(|op| self.expr(&op.expr));
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr);
                self.expr(&i.true_expr);
                if let Some(f) = &i.false_expr {
                    self.expr(f);
                }
            }
            Expr::Filter(f) => {
                if let Some(e) = &f.expr {
                    self.expr(e);
                }
                f.args.iter().for_each(|a| self.arg(a));
            }
            Expr::Test(t) => {
                self.expr(&t.expr);
                t.args.iter().for_each(|a| self.arg(a));
            }
            Expr::GetAttr(_) | Expr::GetItem(_) => match self.lookup_chain(expr) {
                Some((var, chain)) => self.record(var, chain),
                None => match expr {
                    Expr::GetAttr(g) => self.expr(&g.expr),
                    Expr::GetItem(g) => {
                        self.expr(&g.expr);
                        self.expr(&g.subscript_expr);
                    }
                    _ => {}
                },
            },
            Expr::Call(c) => {
                match &c.expr {
                    // `x.method()`: the attribute is a method of the value, not data.
                    Expr::GetAttr(g) => match self.lookup_chain(&g.expr) {
                        Some((var, chain)) => self.record(var, chain),
                        None => self.expr(&g.expr),
                    },
                    other => self.expr(other),
                }
                c.args.iter().for_each(|a| self.arg(a));
            }
            Expr::List(l) => l.items.iter().for_each(|x| self.expr(x)),
            Expr::Tuple(t) => t.items.iter().for_each(|x| self.expr(x)),
            Expr::Map(m) => {
                m.keys.iter().for_each(|x| self.expr(x));
                m.values.iter().for_each(|x| self.expr(x));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// A variable use as (name, position, attributes with positions).
    type Use = (String, Position, Vec<(String, Position)>);

    use super::*;

    fn pos(line: u32, column: u32, len: u32) -> Position {
        Position { line, column, len }
    }

    #[test]
    fn rewrites_legacy_tokens() {
        let cases = [
            ("Hello $First_Name,", "Hello {{ First_Name }},"),
            ("Bye $First_Name.", "Bye {{ First_Name }}."),
            ("$Resource_Info.Object_Name!", "{{ Resource_Info.Object_Name }}!"),
            ("costs $$5 and $5", "costs $$5 and $5"),
            ("{{ '$x' }} {% if a %}$b{% endif %} {# $c #}", "{{ '$x' }} {% if a %}{{ b }}{% endif %} {# $c #}"),
            ("a\n$B\nc", "a\n{{ B }}\nc"),
            ("unclosed {{ $x", "unclosed {{ $x"),
            ("é $Ä $_x", "é $Ä {{ _x }}"),
        ];
        for (src, want) in cases {
            assert_eq!(rewrite_legacy_tokens(src), want, "{src}");
            assert_eq!(rewrite_legacy_tokens(want), want, "idempotent: {want}");
        }
    }

    #[test]
    fn finds_variables_with_positions() {
        let info = analyse("Hello $First_Name,\n<p>{{ Resource_Info.Object_Name }} {{ x['Nm'] }}</p>").unwrap();
        let got: Vec<Use> = info
            .uses
            .iter()
            .map(|u| (u.name.clone(), u.at, u.attributes.iter().map(|a| (a.name.clone(), a.at)).collect()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("First_Name".to_string(), pos(0, 7, 10), vec![]),
                ("Resource_Info".to_string(), pos(1, 6, 13), vec![("Object_Name".to_string(), pos(1, 20, 11))]),
                ("x".to_string(), pos(1, 38, 1), vec![("Nm".to_string(), pos(1, 40, 4))]),
            ]
        );
        assert_eq!(info.names(), vec!["First_Name", "Resource_Info", "x"]);
    }

    #[test]
    fn template_defined_variables_are_not_needed() {
        let src =
            "{% set greeting = 'Hi' %}{{ greeting }} {% for r in Roles %}{{ r.name }}{{ loop.index }}{% endfor %}\
                   {{ r }}{{ range(3) | join }}{{ Name.upper() }}";
        let names = analyse(src).unwrap().names();
        // `r` outside the loop is a free variable again.
        assert_eq!(names, vec!["Name", "Roles", "r"]);
    }

    #[test]
    fn syntax_errors_point_inside_the_template() {
        let cases = [("line one\nline two {{ a + }}", 1), ("{% if a %}never closed", 0), ("$X then {{ oops(", 0)];
        for (src, line) in cases {
            let err = analyse(src).unwrap_err();
            assert_eq!(err.position().line, line, "{src}: {err}");
            assert!(err.message().contains("syntax error"), "{}", err.message());
        }
        let err = analyse("ab {{ 1 + }}").unwrap_err();
        assert_eq!(err.position().line, 0);
        assert!(err.position().column >= 3, "{err:?}");
    }

    #[test]
    fn expressions() {
        let info = analyse_expression("form.profile != \"DEFAULT\" and user.usr_locale").unwrap();
        let got: Vec<(&str, Vec<&str>, u32)> = info
            .uses
            .iter()
            .map(|u| (u.name.as_str(), u.attributes.iter().map(|a| a.name.as_str()).collect(), u.at.column))
            .collect();
        assert_eq!(got, vec![("form", vec!["profile"], 0), ("user", vec!["usr_locale"], 30)]);
        assert!(analyse_expression("form.x ==").is_err());
    }

    #[test]
    fn hostile_input_gives_errors_not_panics() {
        let deep = format!("{{{{ {}x{} }}}}", "(".repeat(5000), ")".repeat(5000));
        let cases = [
            deep.as_str(),
            "{{",
            "{%",
            "$",
            "$$",
            "é{{ é }}",
            "{{ a.é }}",
            "ü $Ä.b. {{ x[0] }}",
            "{{ 'é' ~ }}",
            "\u{0}",
        ];
        for src in cases {
            match analyse(src) {
                Ok(info) => assert!(info.uses.iter().all(|u| u.at.len >= 1)),
                Err(e) => assert!(e.position().len >= 1, "{e}"),
            }
            let _ = analyse_expression(src);
            assert_eq!(rewrite_legacy_tokens(&rewrite_legacy_tokens(src)), rewrite_legacy_tokens(src));
        }
        // A position after a non-ASCII character counts characters, not bytes.
        let err = analyse("ééé {{ 1 + }}").unwrap_err();
        assert_eq!((err.position().line, err.position().column), (0, 11), "{err}");
    }
}
