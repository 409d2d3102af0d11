//! `ConnectorQueries` and `Target`: query text, parameters, calls, emulated procedures,
//! install scripts, and the targets that use the query sets (SPEC §2.1, §2.2).
//!
//! Codes: PF300–PF314 (PF315, a target's `max_concurrent_calls`, and PF600, credentials in a
//! connection, are raw checks in `check`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use provflow_ir as ir;

use rayon::prelude::*;

use super::{ptr, unknown, Ctx, Findings, Named};
use crate::diagnostic::{Finding, Part};
use crate::query::{self, Declared, ParamProblem, Piece};
use crate::suggest::did_you_mean;
use crate::syntax::{self, ProcedureDef, QueryDef};

/// Positions inside one string cost a scan of it each: past this many, the rest of a kind are
/// summarised in one finding, so that a hostile string cannot make a compile quadratic.
const MAX_INNER_FINDINGS: usize = 50;

pub fn lower_query_sets(ctx: &Ctx<'_>, out: &mut Findings) -> Vec<Arc<ir::QuerySet>> {
    // Query sets are independent: lower them on every core, then merge findings in order.
    let lowered: Vec<(Arc<ir::QuerySet>, Findings)> = ctx
        .query_sets
        .par_iter()
        .map(|set| {
            let shelf = ctx.memo.and_then(|m| m.fingerprints.get(set.doc).map(|k| (&m.cache.query_sets, *k)));
            super::memoized(shelf, set.doc, || {
                let mut found = Findings::new();
                (lower_set(ctx, set, &mut found), found)
            })
        })
        .collect();
    super::merge(lowered, out)
}

pub fn lower_targets(ctx: &Ctx<'_>, query_sets: &[Arc<ir::QuerySet>], out: &mut Findings) -> Vec<ir::Target> {
    ctx.targets.iter().map(|t| lower_target(ctx, t, query_sets, out)).collect()
}

pub(crate) fn dialect(d: syntax::Dialect) -> ir::Dialect {
    match d {
        syntax::Dialect::Sqlite => ir::Dialect::Sqlite,
        syntax::Dialect::Postgres => ir::Dialect::Postgres,
        syntax::Dialect::Mariadb => ir::Dialect::Mariadb,
    }
}

/// Findings of one document.
struct Sink<'o> {
    doc: usize,
    out: &'o mut Findings,
}

impl Sink<'_> {
    fn push(&mut self, f: Finding) {
        self.out.push((self.doc, f));
    }
}

fn lower_set(ctx: &Ctx<'_>, set: &Named<'_, syntax::ConnectorQueries>, out: &mut Findings) -> ir::QuerySet {
    let def = set.def;
    let dialect = dialect(def.dialect);
    let mut sink = Sink { doc: set.doc, out };

    if dialect != ir::Dialect::Sqlite && !def.procedures.is_empty() {
        sink.push(Finding::error(
            "PF307",
            format!(
                "`procedures` are emulated stored procedures for dialect `sqlite`, but this set is `{}`",
                dialect.as_str()
            ),
            "/procedures",
            Part::Key,
            Some(format!(
                "create the procedures on {} with an `install` script (`CREATE PROCEDURE ...`) and remove `procedures`",
                dialect.as_str()
            )),
        ));
    }
    let procedures = def.procedures.iter().map(|(name, p)| lower_procedure(ctx, &mut sink, name, p)).collect();
    let queries =
        def.queries.iter().map(|(name, q)| lower_query(ctx, &mut sink, dialect, &def.procedures, name, q)).collect();
    let install =
        def.install.iter().enumerate().filter_map(|(i, path)| read_install(ctx, &mut sink, i, path)).collect();
    ir::QuerySet {
        name: def.name.clone(),
        dialect,
        install,
        queries,
        procedures,
        location: ctx.location(set.doc, "/name"),
    }
}

/// What the server would refuse about where a placeholder stands, with its position in the
/// query text: a bind parameter in a statement that takes none (PF316); a value inlined as an
/// identifier where the statement needs a value, or a secret inlined as an identifier (PF317).
fn placement_findings(
    dialect: ir::Dialect,
    text_ptr: &str,
    q: &QueryDef,
    lowered: &query::LoweredParams,
) -> Vec<(Finding, (usize, usize))> {
    let server = dialect.server();
    let mut out = Vec::new();
    for p in query::placements(&q.query, dialect) {
        let Some(param) = lowered.index(&p.name).and_then(|i| lowered.params.get(i)) else { continue };
        if param.mode != ir::ParamMode::In {
            continue;
        }
        let name = &p.name;
        if let (Some(statement), ir::Quoting::Bind) = (&p.no_binds, param.quoting) {
            let help = if param.ty.is_secret() || p.value == Some("a password") {
                format!("tag it `QUOTES` to inline it as a string literal: `params: {{ {name}: {{ type: {}, tags: [QUOTES] }} }}`", param.ty.as_str())
            } else {
                format!("tag it `IDENTIFIER` for a name (`params: {{ {name}: {{ type: {}, tags: [IDENTIFIER] }} }}`), or `QUOTES` for a string literal", param.ty.as_str())
            };
            out.push((
                Finding::error(
                    "PF316",
                    format!("`{{{name}}}` would be a bind parameter, but {server} takes none in a {statement} statement: the server refuses it at run time"),
                    text_ptr.to_string(),
                    Part::Value,
                    Some(help),
                ),
                (p.offset, p.len),
            ));
            continue;
        }
        // MariaDB reads `"…"` as a string (without ANSI_QUOTES); the others as a name.
        let identifier = match param.quoting {
            // A secret under IDENTIFIER is PF304 already.
            ir::Quoting::Identifier if param.ty.is_secret() => None,
            ir::Quoting::Identifier => Some("`IDENTIFIER`"),
            ir::Quoting::DoubleQuotes if dialect != ir::Dialect::Mariadb => {
                Some("`DOUBLEQUOTES` (a double-quoted name on this dialect)")
            }
            _ => None,
        };
        let Some(tag) = identifier else { continue };
        if let Some(why) = p.value {
            out.push((
                Finding::error(
                    "PF317",
                    format!("`{{{name}}}` is inlined as an identifier by {tag}, but it stands in {why}, where {server} needs a value: the server reads it as a column or object name"),
                    text_ptr.to_string(),
                    Part::Value,
                    Some(if p.no_binds.is_some() {
                        format!("tag `{name}` `QUOTES` to inline it as a string literal")
                    } else {
                        format!("remove the tag: `{name}` is then bound as a value")
                    }),
                ),
                (p.offset, p.len),
            ));
        } else if param.ty.is_secret() {
            out.push((
                Finding::error(
                    "PF317",
                    format!("secret `{{{name}}}` is inlined as an identifier by {tag}: {server} reads it as a name, and repeats names in its error messages"),
                    text_ptr.to_string(),
                    Part::Value,
                    Some(format!("bind it (no tag), or in DDL tag it `QUOTES` (`PASSWORD {{{name}}}`)")),
                ),
                (p.offset, p.len),
            ));
        }
    }
    out
}

fn lower_query(
    ctx: &Ctx<'_>,
    sink: &mut Sink<'_>,
    dialect: ir::Dialect,
    procedures: &IndexMap<String, ProcedureDef>,
    name: &str,
    q: &QueryDef,
) -> ir::Query {
    let base = format!("/queries/{}", ptr(name));
    let text_ptr = format!("{base}/query");
    let doc = sink.doc;
    let at = |offset: usize, len: usize, f: Finding| -> Finding {
        let (line, col) = inner_at(ctx, doc, &text_ptr, &q.query, offset, len);
        f.at_inner(line, col, len as u32)
    };

    let (pieces, well_formed) = match query::split(&q.query) {
        Ok(pieces) => (pieces, true),
        Err(e) => {
            let f = Finding::error("PF302", e.to_string(), text_ptr.clone(), Part::Value, Some(e.help()));
            sink.push(at(e.offset(), e.len(), f));
            (Vec::new(), false)
        }
    };
    let (lowered, problems) = query::lower_params(&pieces, &q.params, &q.outputs);
    let declared: Vec<&str> = q.params.keys().chain(q.outputs.keys()).map(String::as_str).collect();
    let mut undeclared = 0usize;
    for problem in problems {
        let finding = match problem {
            ParamProblem::Undeclared { .. } if undeclared >= MAX_INNER_FINDINGS => {
                undeclared += 1;
                continue;
            }
            ParamProblem::Undeclared { name: placeholder, offset, len } => {
                undeclared += 1;
                let help = match did_you_mean(&placeholder, declared.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("declare it under `params` (an input) or `outputs` (an OUT parameter of a `call`): `{placeholder}: String`"),
                };
                at(
                    offset,
                    len,
                    Finding::error(
                        "PF300",
                        format!("placeholder `{{{placeholder}}}` is not declared in `params` or `outputs`"),
                        text_ptr.clone(),
                        Part::Value,
                        Some(help),
                    ),
                )
            }
            // Usage is unknown when the text did not split: PF302 says why.
            ParamProblem::Unused { .. } if !well_formed => continue,
            ParamProblem::Unused { name: param, declared } => {
                let (section, what) = match declared {
                    Declared::Param => ("params", "parameter"),
                    Declared::Output => ("outputs", "output"),
                };
                Finding::error(
                    "PF301",
                    format!("{what} `{param}` is declared but the query never uses it"),
                    format!("{base}/{section}/{}", ptr(&param)),
                    Part::Key,
                    Some(format!("write `{{{param}}}` where the value belongs in the query, or remove `{param}`")),
                )
            }
            ParamProblem::InOutTypeMismatch { name: param, param: in_ty, output } => Finding::error(
                "PF304",
                format!(
                    "INOUT parameter `{param}` is `{}` in `params` but `{}` in `outputs`",
                    in_ty.as_str(),
                    output.as_str()
                ),
                format!("{base}/outputs/{}", ptr(&param)),
                Part::Value,
                Some(format!("a parameter in both `params` and `outputs` is one INOUT parameter: give it the same type (`{}`) in both", in_ty.as_str())),
            ),
            ParamProblem::InOutTagged { name: param } => Finding::error(
                "PF304",
                format!("INOUT parameter `{param}` has a tag, but an inlined value cannot receive an OUT value"),
                format!("{base}/params/{}/tags", ptr(&param)),
                Part::Value,
                Some("remove the tag: INOUT parameters are always bound".into()),
            ),
            ParamProblem::SecretIdentifier { name: param, tag_index } => Finding::error(
                "PF304",
                format!("`IDENTIFIER` on GuardedString parameter `{param}`: a secret is never an identifier"),
                format!("{base}/params/{}/tags/{tag_index}", ptr(&param)),
                Part::Value,
                Some("bind the secret (no tag), or inline it as a string literal with `QUOTES` (e.g. `PASSWORD {__PASSWORD__}` in DDL)".into()),
            ),
            ParamProblem::SeveralTags { name: param } => Finding::error(
                "PF304",
                format!("parameter `{param}` has more than one tag"),
                format!("{base}/params/{}/tags", ptr(&param)),
                Part::Value,
                Some("a value reaches the SQL text one way only: keep one of `IDENTIFIER`, `QUOTES`, `DOUBLEQUOTES`".into()),
            ),
        };
        sink.push(finding);
    }
    if let Some(more) = undeclared.checked_sub(MAX_INNER_FINDINGS).filter(|n| *n > 0) {
        sink.push(Finding::error(
            "PF300",
            format!("{more} more undeclared placeholders in this query"),
            text_ptr.clone(),
            Part::Value,
            Some("declare them under `params` or `outputs`".into()),
        ));
    }

    for (placeholder, offset, len) in query::quoted_placeholders(&q.query, dialect) {
        sink.push(at(
            offset,
            len,
            Finding::warning(
                "PF314",
                format!("placeholder `{{{placeholder}}}` is inside a quoted string or a comment"),
                text_ptr.clone(),
                Part::Value,
                Some(format!(
                    "a bind parameter is not replaced inside quotes: write `{{{placeholder}}}` without the quotes \
                     (the value is bound as a string), or tag the parameter `QUOTES` to inline it as a literal"
                )),
            ),
        ));
    }

    for f in placement_findings(dialect, &text_ptr, q, &lowered) {
        let (offset, len) = f.1;
        sink.push(at(offset, len, f.0));
    }

    for f in crate::foreign::foreign(&q.query, dialect) {
        let finding = if f.catalog {
            Finding::warning("PF319", f.message, text_ptr.clone(), Part::Value, Some(f.help))
        } else {
            Finding::error("PF318", f.message, text_ptr.clone(), Part::Value, Some(f.help))
        };
        sink.push(at(f.offset, f.len, finding));
    }

    let call = check_call(ctx, sink, dialect, procedures, &base, q, &lowered);
    if dialect == ir::Dialect::Sqlite && !q.outputs.is_empty() {
        sink.push(Finding::error(
            "PF303",
            "emulated sqlite procedures have no OUT parameters",
            format!("{base}/outputs"),
            Part::Key,
            Some("remove `outputs` (and `response_from`): on sqlite the response is `SUCCESS`, or the `errors` entry of a failing statement".into()),
        ));
    } else {
        check_outputs(ctx, sink, &base, q, &pieces, &lowered, call.as_ref().map(|(_, spans)| spans));
    }

    let response_from = q.response_from.as_deref().and_then(|r| {
        if q.outputs.contains_key(r) {
            return lowered.index(r);
        }
        let mut f = unknown("PF303", "output", r, q.outputs.keys().map(String::as_str), format!("{base}/response_from"));
        if q.outputs.is_empty() {
            f.help = Some(format!(
                "`response_from` names an OUT parameter: declare `outputs: {{ {r}: String }}` and pass `{{{r}}}` to the call"
            ));
        }
        sink.push(f);
        None
    });

    let mut errors = BTreeMap::new();
    for (state, response) in &q.errors {
        let pointer = format!("{base}/errors/{}", ptr(state));
        if !is_error_code(state) {
            let upper = state.to_ascii_uppercase();
            let help = if is_error_code(&upper) {
                format!("SQLSTATEs are upper case: write `\"{upper}\"`")
            } else {
                "write a 5-character SQLSTATE such as `\"23505\"` (quoted, so YAML keeps it text) or a vendor error number such as `\"1062\"`".into()
            };
            sink.push(Finding::error(
                "PF303",
                format!("`{state}` is neither a SQLSTATE nor a vendor error number"),
                pointer.clone(),
                Part::Key,
                Some(help),
            ));
        }
        if response.trim().is_empty() {
            sink.push(Finding::error(
                "PF303",
                format!("error `{state}` maps to an empty response code"),
                pointer,
                Part::Value,
                Some("name the response code the task receives, e.g. `DUPLICATE`".into()),
            ));
        }
        errors.insert(state.clone(), response.clone());
    }

    if !q.columns.is_empty() && !q.outputs.is_empty() {
        sink.push(Finding::error(
            "PF303",
            "a query has either result `columns` (rows) or `outputs` (OUT parameters of a `call`), not both",
            format!("{base}/columns"),
            Part::Key,
            Some("split it into two queries, or remove `columns`".into()),
        ));
    }

    ir::Query {
        name: name.to_owned(),
        source: q.query.clone(),
        segments: lowered.segments.clone(),
        params: lowered.params.clone(),
        call: call.map(|(c, _)| c),
        response_from,
        errors,
        columns: q.columns.iter().map(|(n, t)| ir::Column { name: n.clone(), ty: query::value_type(*t) }).collect(),
        idempotent: q.idempotent,
        location: ctx.location(doc, &base),
    }
}

/// A SQLSTATE (`[0-9A-Z]{5}`) or a vendor error number (digits).
fn is_error_code(s: &str) -> bool {
    let sqlstate = s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    let vendor = !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    sqlstate || vendor
}

/// Recognises the `call`, checks it against the emulated procedures (sqlite) and lowers it.
fn check_call(
    ctx: &Ctx<'_>,
    sink: &mut Sink<'_>,
    dialect: ir::Dialect,
    procedures: &IndexMap<String, ProcedureDef>,
    base: &str,
    q: &QueryDef,
    lowered: &query::LoweredParams,
) -> Option<(ir::Call, query::CallSpans)> {
    let text_ptr = format!("{base}/query");
    let Some(spans) = query::parse_call_spans(&q.query, dialect) else {
        if query::looks_like_call(&q.query) {
            sink.push(Finding::error(
                "PF302",
                "cannot read this `call`: expected `call procedure(argument, ...)` and nothing after it",
                text_ptr,
                Part::Value,
                Some("check the parentheses and quotes, and that arguments are separated by single commas".into()),
            ));
        }
        return None;
    };
    let indices = lowered.indices();
    let (names, values): (Vec<Option<String>>, Vec<&str>) =
        spans.args.iter().map(|(arg, _)| query::named_argument(arg, dialect)).unzip();
    let args = values
        .iter()
        .map(|arg| match query::split(arg).as_deref() {
            Ok([Piece::Placeholder { name, .. }]) => indices.get(name.as_str()).copied(),
            _ => None,
        })
        .collect();
    let names = if names.iter().any(Option::is_some) { names } else { Vec::new() };
    let inner = inner_at(ctx, sink.doc, &text_ptr, &q.query, spans.procedure_offset, spans.procedure.chars().count());
    let location = Some(ctx.inner_location(sink.doc, &text_ptr, inner));
    if dialect == ir::Dialect::Sqlite {
        let name_len = spans.procedure.chars().count();
        // Positions are computed only for a finding: they may need the file's full span index.
        let at = || inner_at(ctx, sink.doc, &text_ptr, &q.query, spans.procedure_offset, name_len);
        match procedures.get(&spans.procedure) {
            None => {
                let mut f = unknown(
                    "PF305",
                    "procedure",
                    &spans.procedure,
                    procedures.keys().map(String::as_str),
                    text_ptr.clone(),
                );
                if procedures.is_empty() {
                    f.help = Some(format!(
                        "sqlite has no stored procedures: define `{}` under `procedures` with its `params` and `body`",
                        spans.procedure
                    ));
                }
                let (line, col) = at();
                sink.push(f.at_inner(line, col, name_len as u32));
            }
            Some(p) if p.params.len() != spans.args.len() => {
                let (line, col) = at();
                sink.push(
                    Finding::error(
                        "PF306",
                        format!(
                            "procedure `{}` takes {} argument{} but this call passes {}",
                            spans.procedure,
                            p.params.len(),
                            if p.params.len() == 1 { "" } else { "s" },
                            spans.args.len()
                        ),
                        text_ptr.clone(),
                        Part::Value,
                        Some(if p.params.is_empty() {
                            format!("call it as `call {}()`", spans.procedure)
                        } else {
                            format!("its parameters are, in order: {}", p.params.join(", "))
                        }),
                    )
                    .at_inner(line, col, name_len as u32),
                );
            }
            Some(_) => {}
        }
    }
    Some((ir::Call { procedure: spans.procedure.clone(), args, names, location }, spans))
}

/// `outputs` only make sense as whole arguments of a `call` that can return them.
fn check_outputs(
    ctx: &Ctx<'_>,
    sink: &mut Sink<'_>,
    base: &str,
    q: &QueryDef,
    pieces: &[Piece],
    lowered: &query::LoweredParams,
    call: Option<&query::CallSpans>,
) {
    if q.outputs.is_empty() {
        return;
    }
    let outputs_ptr = format!("{base}/outputs");
    let Some(call) = call else {
        sink.push(Finding::error(
            "PF303",
            "`outputs` are OUT parameters of a `call`, but this query is not a `call`",
            outputs_ptr,
            Part::Key,
            Some("remove `outputs`, or declare result rows with `columns`".into()),
        ));
        return;
    };
    // Argument text by offset: a placeholder is a whole argument when one starts where it does
    // (after the name, in named notation).
    let whole_args: HashMap<usize, &str> = call
        .args
        .iter()
        .map(|(a, offset)| {
            let (_, value) = query::named_argument(a, ir::Dialect::Postgres);
            (offset + a.chars().count() - value.chars().count(), value)
        })
        .collect();
    let indices = lowered.indices();
    for piece in pieces {
        let Piece::Placeholder { name, offset, len } = piece else { continue };
        let is_output = indices
            .get(name.as_str())
            .and_then(|&i| lowered.params.get(i))
            .is_some_and(|p| p.mode != ir::ParamMode::In);
        let whole_arg = whole_args.get(offset).is_some_and(|a| a.chars().count() == *len);
        if is_output && !whole_arg {
            let (line, col) = inner_at(ctx, sink.doc, &format!("{base}/query"), &q.query, *offset, *len);
            sink.push(
                Finding::error(
                    "PF303",
                    format!("output `{name}` must be a whole argument of the `call`"),
                    format!("{base}/query"),
                    Part::Value,
                    Some(format!("pass `{{{name}}}` alone as an argument: the database writes the OUT value there")),
                )
                .at_inner(line, col, *len as u32),
            );
        }
    }
}

fn lower_procedure(ctx: &Ctx<'_>, sink: &mut Sink<'_>, name: &str, p: &ProcedureDef) -> ir::Procedure {
    let base = format!("/procedures/{}", ptr(name));
    let body_ptr = format!("{base}/body");
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, param) in p.params.iter().enumerate() {
        let pointer = format!("{base}/params/{i}");
        if !query::is_name(param) {
            sink.push(Finding::error(
                "PF313",
                format!("procedure parameter `{param}` is not a bind name"),
                pointer,
                Part::Value,
                Some("the body refers to it as `:name`: use a letter or `_` followed by letters, digits or `_`".into()),
            ));
        } else if !seen.insert(param.as_str()) {
            sink.push(Finding::error(
                "PF313",
                format!("duplicate procedure parameter `{param}`"),
                pointer,
                Part::Value,
                Some("each argument of the call binds one parameter: give each a distinct name".into()),
            ));
        }
    }
    if !query::is_name(name) {
        sink.push(Finding::error(
            "PF313",
            format!("procedure name `{name}` cannot be called"),
            base.clone(),
            Part::Key,
            Some("`call name(...)` takes a letter or `_` followed by letters, digits or `_`".into()),
        ));
    }

    let statements = query::split_statements(&p.body);
    if let Some(offset) = query::unterminated(&p.body) {
        let (line, col) = inner_at(ctx, sink.doc, &body_ptr, &p.body, offset, 1);
        sink.push(
            Finding::error(
                "PF313",
                "unterminated quote or comment in procedure body",
                body_ptr.clone(),
                Part::Value,
                Some("close it: everything after it would be one statement".into()),
            )
            .at_inner(line, col, 1),
        );
    } else if statements.is_empty() {
        sink.push(Finding::error(
            "PF313",
            format!("procedure `{name}` has no statement: write its body"),
            body_ptr.clone(),
            Part::Value,
            Some("write the SQL statements the call runs, separated by `;`, with `:param` for its arguments".into()),
        ));
    }
    if p.body.contains('\0') {
        sink.push(Finding::error(
            "PF313",
            "procedure body contains a NUL character",
            body_ptr.clone(),
            Part::Value,
            Some("remove the NUL character (`\\0`)".into()),
        ));
    }

    let binds = query::bind_positions(&p.body);
    let used: HashSet<&str> = binds.iter().map(|(b, _)| b.as_str()).collect();
    let mut unknown_binds = 0usize;
    for (bind, offset) in &binds {
        if seen.contains(bind.as_str()) {
            continue;
        }
        unknown_binds += 1;
        if unknown_binds > MAX_INNER_FINDINGS {
            continue;
        }
        let len = bind.chars().count() + 1;
        let (line, col) = inner_at(ctx, sink.doc, &body_ptr, &p.body, *offset, len);
        let help = match did_you_mean(bind, p.params.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `:{s}`?"),
            None => format!("add `{bind}` to `params` (the call passes arguments in that order)"),
        };
        sink.push(
            Finding::error(
                "PF308",
                format!("`:{bind}` is not a parameter of procedure `{name}`"),
                body_ptr.clone(),
                Part::Value,
                Some(help),
            )
            .at_inner(line, col, len as u32),
        );
    }
    if let Some(more) = unknown_binds.checked_sub(MAX_INNER_FINDINGS).filter(|n| *n > 0) {
        sink.push(Finding::error(
            "PF308",
            format!("{more} more binds in procedure `{name}` are not its parameters"),
            body_ptr.clone(),
            Part::Value,
            Some("add them to `params`".into()),
        ));
    }
    // A body without statements is PF313 already: every parameter would be "unused".
    for (i, param) in p.params.iter().enumerate().filter(|_| !statements.is_empty()) {
        if query::is_name(param) && !used.contains(param.as_str()) {
            sink.push(Finding::warning(
                "PF309",
                format!("procedure parameter `{param}` is never used in the body"),
                format!("{base}/params/{i}"),
                Part::Value,
                Some(format!("use it as `:{param}` in the body, or remove it (and the matching call argument)")),
            ));
        }
    }
    ir::Procedure { name: name.to_owned(), params: p.params.clone(), statements }
}

/// Lexically resolves `.` and `..` so that `dir/../x.sql` is found as `x.sql`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn read_install(ctx: &Ctx<'_>, sink: &mut Sink<'_>, index: usize, written: &str) -> Option<ir::InstallScript> {
    let pointer = format!("/install/{index}");
    let file = ctx.file_of(sink.doc);
    let relative = Path::new(written);
    if relative.is_absolute() || relative.has_root() || written.trim().is_empty() {
        sink.push(Finding::error(
            "PF310",
            format!("install path `{written}` must be relative to this file"),
            pointer,
            Part::Value,
            Some(
                "write the SQL file's path relative to the directory of this definition, e.g. `dbum-sqlite.sql`".into(),
            ),
        ));
        return None;
    }
    let dir = Path::new(file).parent().unwrap_or(Path::new(""));
    let path = normalize(&dir.join(relative));
    let shown = path.to_string_lossy().replace('\\', "/");
    let fail = |reason: String| {
        Finding::error(
            "PF310",
            format!("install file `{written}` {reason}"),
            pointer.clone(),
            Part::Value,
            Some(format!("paths are relative to the directory of `{file}`; looked for `{shown}`")),
        )
    };
    if !ctx.reader.exists(&path) {
        sink.push(fail("not found".into()));
        return None;
    }
    match ctx.reader.read(&path) {
        Err(e) => {
            sink.push(fail(format!("cannot be read: {e}")));
            None
        }
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(sql) => Some(ir::InstallScript { path: written.to_owned(), sql }),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                sink.push(fail(format!("is not UTF-8 text (invalid byte at offset {at})")));
                None
            }
        },
    }
}

fn lower_target(
    ctx: &Ctx<'_>,
    target: &Named<'_, syntax::Target>,
    query_sets: &[Arc<ir::QuerySet>],
    out: &mut Findings,
) -> ir::Target {
    let def = target.def;
    let mut sink = Sink { doc: target.doc, out };
    let target_dialect = dialect(def.dialect);
    let query_set = match ctx.query_set(&def.queries) {
        None => {
            sink.push(unknown("PF311", "query set", &def.queries, ctx.query_sets.iter().map(|s| s.name), "/queries"));
            0
        }
        Some(i) => {
            let set_dialect =
                query_sets.get(i).map(|s| s.dialect).or_else(|| ctx.query_sets.get(i).map(|s| dialect(s.def.dialect)));
            if let Some(set_dialect) = set_dialect.filter(|d| *d != target_dialect) {
                let fitting: Vec<&str> = ctx
                    .query_sets
                    .iter()
                    .filter(|s| dialect(s.def.dialect) == target_dialect)
                    .map(|s| s.name)
                    .collect();
                let mut help = format!("write `dialect: {}` if the database is {0}", set_dialect.as_str());
                if !fitting.is_empty() {
                    help.push_str(&format!(
                        ", or use a query set written for {}: {}",
                        target_dialect.as_str(),
                        fitting.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                    ));
                }
                sink.push(Finding::error(
                    "PF312",
                    format!(
                        "target `{}` is `{}` but its query set `{}` is written for `{}`",
                        def.name,
                        target_dialect.as_str(),
                        def.queries,
                        set_dialect.as_str()
                    ),
                    "/dialect",
                    Part::Value,
                    Some(help),
                ));
            }
            i
        }
    };
    ir::Target {
        name: def.name.clone(),
        dialect: target_dialect,
        query_set,
        url_env: def.connection.as_ref().map(|c| c.url_env.clone()),
        properties: def.properties.iter().map(|(k, v)| (k.clone(), v.to_text())).collect(),
        // Its range (PF315) was checked on the raw document, before the schema.
        max_concurrent_calls: def.max_concurrent_calls,
        location: ctx.location(target.doc, "/name"),
    }
}

/// The `(line, column)` for `Finding::at_inner` of `len` characters at `offset` in the string
/// value at `pointer`.
///
/// The value is what YAML made of the source: folded lines, escapes and quotes make its
/// offsets differ from the source's. So the text at `offset` is looked up in the source of the
/// node (the same occurrence, counted from the start) and the source position is turned back
/// into what the diagnostic resolver expects. Falls back to the position in the value.
pub(crate) fn inner_at(ctx: &Ctx<'_>, doc: usize, pointer: &str, value: &str, offset: usize, len: usize) -> (u32, u32) {
    let fallback = query::line_col(value, offset);
    source_inner_at(ctx, doc, pointer, value, offset, len).unwrap_or(fallback)
}

fn source_inner_at(
    ctx: &Ctx<'_>,
    doc: usize,
    pointer: &str,
    value: &str,
    offset: usize,
    len: usize,
) -> Option<(u32, u32)> {
    // Bounded: the occurrence search is quadratic in the worst case.
    const MAX_SEARCH: usize = 1 << 20;
    let d = ctx.docs.get(doc)?;
    let node = ctx.node(doc, pointer)?;
    let text = ctx.files.get(d.file)?.text.as_deref()?;
    let region = text.get(node.value.start..node.value.end)?;
    if region.len() > MAX_SEARCH || value.len() > MAX_SEARCH {
        return None;
    }
    let start = value.char_indices().nth(offset).map(|(b, _)| b)?;
    let end = value.char_indices().nth(offset + len).map_or(value.len(), |(b, _)| b);
    let needle = value.get(start..end).filter(|n| !n.is_empty())?;
    let occurrence = occurrences(value, needle).take_while(|&b| b < start).count();
    let found = occurrences(region, needle).nth(occurrence)?;
    let abs = node.value.start + found;
    let before = text.get(..abs)?;
    let line = before.matches('\n').count() as u32 + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..)?.chars().count() as u32 + 1;
    match node.block_content {
        Some((bl, bc)) => Some((line.checked_sub(bl)?, col.checked_sub(bc)?)),
        None if line == node.value.line => Some((0, col.checked_sub(node.value.column + u32::from(node.quoted))?)),
        None => Some((line.checked_sub(node.value.line)?, col.checked_sub(1)?)),
    }
}

/// Byte offsets of every (possibly overlapping) occurrence of `needle` in `hay`.
fn occurrences<'h>(hay: &'h str, needle: &'h str) -> impl Iterator<Item = usize> + 'h {
    hay.char_indices().map(|(i, _)| i).filter(move |&i| hay.get(i..).is_some_and(|rest| rest.starts_with(needle)))
}

#[cfg(test)]
mod tests {
    use crate::diagnostic::{Diagnostic, Severity};
    use crate::source::MemoryReader;
    use std::path::PathBuf;

    const HEAD: &str = "apiVersion: provflow/v1\nkind: ConnectorQueries\nname: q\n";

    fn compile(yaml: &str) -> crate::Compilation {
        crate::compile_bytes("t.yaml", yaml.as_bytes())
    }

    fn pf3(c: &crate::Compilation) -> Vec<&Diagnostic> {
        c.diagnostics.iter().filter(|d| d.code.starts_with("PF3")).collect()
    }

    /// `(code, line, column, end_column)` of every PF3xx diagnostic.
    fn codes(yaml: &str) -> Vec<(&'static str, u32, u32, u32)> {
        let c = compile(yaml);
        pf3(&c).iter().map(|d| (d.code, d.line, d.column, d.end_column)).collect()
    }

    fn set(dialect: &str, rest: &str) -> String {
        format!("{HEAD}dialect: {dialect}\n{rest}")
    }

    #[test]
    fn query_diagnostics_point_at_the_right_place() {
        // (yaml after the header, expected (code, line, column, end column)); line 4 is `dialect`.
        type Case<'a> = (&'a str, &'a str, Vec<(&'static str, u32, u32, u32)>);
        let cases: Vec<Case> = vec![
            (
                "postgres",
                "queries:\n  Q:\n    query: \"select {nme}\"\n    params: { name: String }\n",
                // PF300 at `{nme}` inside the quoted string; PF301 at the `name` key.
                vec![("PF300", 7, 20, 25), ("PF301", 8, 15, 19)],
            ),
            (
                "postgres",
                "queries:\n  Q:\n    query: select {a\n    params: { a: String }\n",
                vec![("PF302", 7, 19, 20)],
            ),
            (
                "postgres",
                "queries:\n  Q:\n    query: |\n      select 1\n      from t where x = {y}\n",
                vec![("PF300", 9, 24, 27)],
            ),
            (
                "postgres",
                "queries:\n  Q:\n    query: >-\n      select 1\n      from t where x = {y}\n",
                vec![("PF300", 9, 24, 27)],
            ),
            ("postgres", "queries:\n  Q:\n    query: \"select \\\"x\\\" {y}\"\n", vec![("PF300", 7, 26, 29)]),
            ("postgres", "queries:\n  Q:\n    query: 'select ''{'''\n", vec![("PF302", 7, 22, 23)]),
        ];
        for (dialect, rest, want) in cases {
            assert_eq!(codes(&set(dialect, rest)), want, "{rest}");
        }
    }

    #[test]
    fn each_check_reports_its_code() {
        let cases: Vec<(&str, &str, Vec<&'static str>)> = vec![
            // Clean queries of every shape.
            (
                "postgres",
                "queries:\n  R:\n    query: call reset_password({n}, {p}, {response})\n    params: { n: String, p: GuardedString }\n    outputs: { response: String }\n    response_from: response\n    errors: { \"42704\": NO_SUCH_USER, \"2BP01\": IN_USE, \"1062\": DUP }\n  DDL:\n    query: CREATE ROLE {n} LOGIN PASSWORD {p}\n    params:\n      n: { type: String, tags: [IDENTIFIER] }\n      p: { type: GuardedString, tags: [QUOTES] }\n  S:\n    query: select a from t where b like {pat} -- {{not a placeholder}}\n    params: { pat: String }\n    columns: { a: String }\n",
                vec![],
            ),
            ("postgres", "queries:\n  Q:\n    query: \"select '{a}'\"\n    params: { a: String }\n", vec!["PF314"]),
            // Where a placeholder stands: binds in DDL, identifiers where values belong.
            ("postgres", "queries:\n  Q:\n    query: DROP ROLE {n}\n    params: { n: String }\n", vec!["PF316"]),
            ("postgres", "queries:\n  Q:\n    query: \"  -- drop it\\n  alter role {n} login\"\n    params: { n: String }\n", vec!["PF316"]),
            ("mariadb", "queries:\n  Q:\n    query: SET PASSWORD FOR {n} = PASSWORD({p})\n    params: { n: String, p: GuardedString }\n", vec!["PF316", "PF316"]),
            ("mariadb", "queries:\n  Q:\n    query: CREATE USER {n} IDENTIFIED BY {p}\n    params:\n      n: { type: String, tags: [QUOTES] }\n      p: { type: GuardedString, tags: [QUOTES] }\n", vec![]),
            ("mariadb", "queries:\n  Q:\n    query: CREATE USER {n} IDENTIFIED BY {p}\n    params:\n      n: { type: String, tags: [IDENTIFIER] }\n      p: { type: String, tags: [IDENTIFIER] }\n", vec!["PF317"]),
            ("postgres", "queries:\n  Q:\n    query: insert into t(a, b) values ({a}, lower({b}))\n    params:\n      a: { type: String, tags: [DOUBLEQUOTES] }\n      b: String\n", vec!["PF317"]),
            ("postgres", "queries:\n  Q:\n    query: delete from t where a = {a}\n    params:\n      a: { type: String, tags: [IDENTIFIER] }\n", vec!["PF317"]),
            ("postgres", "queries:\n  Q:\n    query: select {c} from t where a <> {a}\n    params:\n      c: { type: String, tags: [IDENTIFIER] }\n      a: String\n    columns: { x: String }\n", vec![]),
            ("sqlite", "queries:\n  Q:\n    query: create table {t} (x)\n    params:\n      t: { type: String, tags: [DOUBLEQUOTES] }\n", vec![]),
            ("postgres", "queries:\n  Q:\n    query: ALTER ROLE {n} PASSWORD {p}\n    params:\n      n: { type: String, tags: [IDENTIFIER] }\n      p: { type: GuardedString, tags: [DOUBLEQUOTES] }\n", vec!["PF317"]),
            ("mariadb", "queries:\n  Q:\n    query: select 1 from t where a = {a}\n    params:\n      a: { type: GuardedString, tags: [DOUBLEQUOTES] }\n", vec![]),
            ("postgres", "queries:\n  Q:\n    query: select {a}}\n    params: { a: String }\n", vec!["PF302"]),
            ("postgres", "queries:\n  Q:\n    query: \"select {a}\\0\"\n    params: { a: String }\n", vec!["PF302"]),
            ("postgres", "queries:\n  Q:\n    query: call p({a}, (\n    params: { a: String }\n", vec!["PF302"]),
            // response_from naming no output; outputs on a non-call; columns and outputs.
            (
                "postgres",
                "queries:\n  Q:\n    query: call p({a}, {r})\n    params: { a: String }\n    outputs: { r: String }\n    response_from: rr\n",
                vec!["PF303"],
            ),
            (
                "postgres",
                "queries:\n  Q:\n    query: select {r}\n    outputs: { r: String }\n    columns: { x: String }\n",
                vec!["PF303", "PF303"],
            ),
            ("postgres", "queries:\n  Q:\n    query: call p({a})\n    params: { a: String }\n    errors: { dup: X, \"2bp01\": Y }\n", vec!["PF303", "PF303"]),
            ("postgres", "queries:\n  Q:\n    query: call p(upper({r}))\n    outputs: { r: String }\n", vec!["PF303"]),
            ("sqlite", "queries:\n  Q:\n    query: call p({r})\n    outputs: { r: String }\nprocedures:\n  p: { params: [r], body: select :r }\n", vec!["PF303"]),
            // INOUT type mismatch, tagged INOUT, IDENTIFIER on a secret.
            (
                "postgres",
                "queries:\n  Q:\n    query: call p({a})\n    params: { a: Long }\n    outputs: { a: String }\n",
                vec!["PF304"],
            ),
            (
                "postgres",
                "queries:\n  Q:\n    query: call p({a})\n    params: { a: { type: String, tags: [QUOTES] } }\n    outputs: { a: String }\n",
                vec!["PF304"],
            ),
            (
                "postgres",
                "queries:\n  Q:\n    query: ALTER ROLE x PASSWORD {p}\n    params: { p: { type: GuardedString, tags: [IDENTIFIER] } }\n",
                vec!["PF304"],
            ),
            // sqlite procedures: unknown, arity, unknown bind, unused param, bad definitions.
            (
                "sqlite",
                "queries:\n  Q:\n    query: call insert_pkg({a})\n    params: { a: String }\nprocedures:\n  insert_package: { params: [a], body: select :a }\n",
                vec!["PF305"],
            ),
            (
                "sqlite",
                "queries:\n  Q:\n    query: call p({a}, {b})\n    params: { a: String, b: String }\nprocedures:\n  p: { params: [a], body: select :a }\n",
                vec!["PF306"],
            ),
            (
                "sqlite",
                "queries:\n  Q:\n    query: call p({a})\n    params: { a: String }\nprocedures:\n  p: { params: [a, b], body: \"select :a, :c, ':b'\" }\n",
                vec!["PF306", "PF309", "PF308"],
            ),
            (
                "sqlite",
                "queries:\n  Q:\n    query: select 1\nprocedures:\n  p: { params: [a, a, 1x], body: \"select :a; -- only\" }\n  q: { params: [], body: \"-- nothing\" }\n  r: { params: [], body: \"select 'x\" }\n",
                vec!["PF313", "PF313", "PF313", "PF313"],
            ),
            (
                "postgres",
                "queries:\n  Q:\n    query: select 1\nprocedures:\n  p: { params: [], body: select 1 }\n",
                vec!["PF307"],
            ),
            // install files.
            ("sqlite", "install: [missing.sql]\nqueries:\n  Q:\n    query: select 1\n", vec!["PF310"]),
            ("sqlite", "install: [/etc/passwd]\nqueries:\n  Q:\n    query: select 1\n", vec!["PF310"]),
        ];
        for (dialect, rest, want) in cases {
            let got: Vec<&str> = codes(&set(dialect, rest)).into_iter().map(|(c, ..)| c).collect();
            assert_eq!(got, want, "{rest}");
        }
    }

    #[test]
    fn unused_procedure_param_is_a_warning_only() {
        let c = compile(&set(
            "sqlite",
            "queries:\n  Q:\n    query: call p({a}, {b})\n    params: { a: String, b: String }\nprocedures:\n  p: { params: [a, b], body: select :a }\n",
        ));
        let d = pf3(&c);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].code, d[0].severity), ("PF309", Severity::Warning));
        assert!(c.bundle.is_some());
    }

    #[test]
    fn messages_and_help_name_the_fix() {
        let c = compile(&set(
            "sqlite",
            "queries:\n  Q:\n    query: call insert_pkg({__NAME__}, {__NAM__})\n    params: { __NAME__: String }\nprocedures:\n  insert_package:\n    params: [usr]\n    body: |\n      INSERT INTO t VALUES (:usr);\n      INSERT INTO u VALUES (:user);\n",
        ));
        let d: Vec<(&str, &str, Option<&str>, u32, u32)> =
            pf3(&c).iter().map(|d| (d.code, d.message.as_str(), d.help.as_deref(), d.line, d.column)).collect();
        assert_eq!(
            d,
            vec![
                ("PF305", "unknown procedure `insert_pkg`", Some("did you mean `insert_package`?"), 7, 17),
                (
                    "PF300",
                    "placeholder `{__NAM__}` is not declared in `params` or `outputs`",
                    Some("did you mean `__NAME__`?"),
                    7,
                    40
                ),
                (
                    "PF308",
                    "`:user` is not a parameter of procedure `insert_package`",
                    Some("did you mean `:usr`?"),
                    14,
                    29
                ),
            ]
        );
    }

    fn compile_with(files: &[(&str, &[u8])], roots: &[&str]) -> crate::Compilation {
        let mut reader = MemoryReader::new();
        for (p, b) in files {
            reader = reader.with(*p, b.to_vec());
        }
        let inputs = roots
            .iter()
            .filter_map(|r| files.iter().find(|(p, _)| p == r).map(|(p, b)| (PathBuf::from(p), b.to_vec())))
            .collect();
        crate::compile_files(&reader, inputs)
    }

    #[test]
    fn install_scripts_resolve_relative_to_the_definition() {
        let yaml = set("sqlite", "install: [sql/create.sql, ../shared.sql]\nqueries:\n  Q:\n    query: select 1\n");
        let c = compile_with(
            &[
                ("defs/q.yaml", yaml.as_bytes()),
                ("defs/sql/create.sql", b"create table t(x);"),
                ("shared.sql", b"-- s"),
            ],
            &["defs/q.yaml"],
        );
        assert_eq!(pf3(&c).len(), 0, "{:?}", c.diagnostics);
        let bundle = c.bundle.as_ref().map(|b| b.query_sets[0].install.clone()).unwrap_or_default();
        assert_eq!(
            bundle,
            vec![
                provflow_ir::InstallScript { path: "sql/create.sql".into(), sql: "create table t(x);".into() },
                provflow_ir::InstallScript { path: "../shared.sql".into(), sql: "-- s".into() },
            ]
        );

        let c =
            compile_with(&[("defs/q.yaml", yaml.as_bytes()), ("defs/sql/create.sql", b"\xff\xfe")], &["defs/q.yaml"]);
        let msgs: Vec<(&str, &str, u32, u32)> =
            pf3(&c).iter().map(|d| (d.code, d.message.as_str(), d.line, d.column)).collect();
        assert_eq!(
            msgs,
            vec![
                ("PF310", "install file `sql/create.sql` is not UTF-8 text (invalid byte at offset 0)", 5, 11),
                ("PF310", "install file `../shared.sql` not found", 5, 27),
            ]
        );
    }

    #[test]
    fn lowers_a_query_set() {
        let c = compile(&set(
            "postgres",
            "queries:\n  B:\n    query: \"call reset_password({n}, {{x}}, 'a' || {n}, {response})\"\n    params: { n: { type: String, tags: [QUOTES] } }\n    outputs: { response: String }\n    response_from: response\n    errors: { \"42704\": NO_SUCH_USER }\n    idempotent: true\n  A:\n    query: select u from t\n    columns: { u: String, e: Boolean }\n",
        ));
        assert_eq!(c.errors(), 0, "{:?}", c.diagnostics);
        let Some(bundle) = c.bundle else { return };
        let set = &bundle.query_sets[0];
        use provflow_ir::*;
        assert_eq!(set.dialect, Dialect::Postgres);
        // YAML order, not sorted.
        assert_eq!(set.queries.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(), vec!["B", "A"]);
        let b = &set.queries[0];
        let call = b.call.clone().unwrap();
        assert_eq!(
            (call.procedure.as_str(), call.args.clone()),
            ("reset_password", vec![Some(0), None, None, Some(1)])
        );
        assert!(call.names.is_empty());
        assert!(call.location.is_some_and(|l| l.line > 0 && l.column > 0));
        assert_eq!(b.response_from, Some(1));
        assert_eq!(b.errors.get("42704").map(String::as_str), Some("NO_SUCH_USER"));
        assert!(b.idempotent);
        assert_eq!(b.location, Location { file: "t.yaml".into(), line: 6, column: 3 });
        assert_eq!(
            b.segments,
            vec![
                Segment::Text("call reset_password(".into()),
                Segment::Inline(0),
                Segment::Text(", {x}, 'a' || ".into()),
                Segment::Inline(0),
                Segment::Text(", ".into()),
                Segment::Out(1),
                Segment::Text(")".into()),
            ]
        );
        assert_eq!(
            set.queries[1].columns,
            vec![
                Column { name: "u".into(), ty: ValueType::String },
                Column { name: "e".into(), ty: ValueType::Boolean },
            ]
        );
    }

    #[test]
    fn lowers_procedures() {
        let c = compile(&set(
            "sqlite",
            "queries:\n  Q:\n    query: call p({a}, {b})\n    params: { a: String, b: GuardedString }\nprocedures:\n  p:\n    params: [usr, pwd]\n    body: |\n      INSERT INTO log VALUES ('a;' || :usr); -- done;\n      INSERT INTO u VALUES (:usr, :pwd);\n",
        ));
        assert_eq!(c.errors(), 0, "{:?}", c.diagnostics);
        let Some(bundle) = c.bundle else { return };
        let p = &bundle.query_sets[0].procedures[0];
        assert_eq!(p.params, vec!["usr", "pwd"]);
        assert_eq!(
            p.statements,
            vec!["INSERT INTO log VALUES ('a;' || :usr)", "-- done;\nINSERT INTO u VALUES (:usr, :pwd)"]
        );
    }

    const TARGETS: &str = "apiVersion: provflow/v1\nkind: ConnectorQueries\nname: pg-set\ndialect: postgres\nqueries:\n  Q: { query: select 1 }\n---\napiVersion: provflow/v1\nkind: ConnectorQueries\nname: lite-set\ndialect: sqlite\nqueries:\n  Q: { query: select 1 }\n---\n";

    #[test]
    fn targets_check_their_query_set() {
        type Case<'a> = (&'a str, Vec<(&'static str, u32, u32)>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("dialect: postgres\nqueries: pg-set\n", vec![], None),
            ("dialect: postgres\nqueries: pg-sett\n", vec![("PF311", 19, 10)], Some("did you mean `pg-set`?")),
            (
                "dialect: postgres\nqueries: lite-set\n",
                vec![("PF312", 18, 10)],
                Some("write `dialect: sqlite` if the database is sqlite, or use a query set written for postgres: `pg-set`"),
            ),
        ];
        for (rest, want, help) in cases {
            let yaml = format!("{TARGETS}apiVersion: provflow/v1\nkind: Target\nname: t\n{rest}");
            let c = compile(&yaml);
            let got: Vec<_> = pf3(&c).iter().map(|d| (d.code, d.line, d.column)).collect();
            assert_eq!(got, want, "{rest}");
            assert_eq!(pf3(&c).first().and_then(|d| d.help.as_deref()), help);
        }
    }

    #[test]
    fn lowers_a_target() {
        let yaml = format!(
            "{TARGETS}apiVersion: provflow/v1\nkind: Target\nname: t\ndialect: sqlite\nqueries: lite-set\nconnection: {{ url_env: T_URL }}\nproperties: {{ profile: DEFAULT, size: 10, on: yes }}\n"
        );
        let c = compile(&yaml);
        assert_eq!(c.errors(), 0, "{:?}", c.diagnostics);
        let Some(bundle) = c.bundle else { return };
        let t = &bundle.targets[0];
        // Query sets are sorted by name: lite-set, pg-set.
        assert_eq!((t.query_set, t.dialect, t.url_env.as_deref()), (0, provflow_ir::Dialect::Sqlite, Some("T_URL")));
        let props: Vec<(&str, &str)> = t.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(props, vec![("on", "yes"), ("profile", "DEFAULT"), ("size", "10")]);
    }

    fn target_with_call_limit(value: &str) -> String {
        format!(
            "{TARGETS}apiVersion: provflow/v1\nkind: Target\nname: t\ndialect: sqlite\nqueries: lite-set\nmax_concurrent_calls: {value}\n"
        )
    }

    #[test]
    fn a_call_limit_from_1_to_10000_is_lowered() {
        for (value, want) in [("1", Some(1)), ("10000", Some(10_000)), ("0x10", Some(16)), ("+8", Some(8))] {
            let c = compile(&target_with_call_limit(value));
            assert_eq!(c.errors(), 0, "{value}: {:?}", c.diagnostics);
            assert_eq!(c.bundle.as_ref().map(|b| b.targets[0].max_concurrent_calls), Some(want), "{value}");
        }
        // Without the field: no limit, and the IR has no such key.
        let c = compile(&format!(
            "{TARGETS}apiVersion: provflow/v1\nkind: Target\nname: t\ndialect: sqlite\nqueries: lite-set\n"
        ));
        assert_eq!(c.errors(), 0, "{:?}", c.diagnostics);
        let Some(bundle) = c.bundle else { return };
        assert_eq!(bundle.targets[0].max_concurrent_calls, None);
        let json = serde_json::to_string(&bundle).unwrap();
        assert!(!json.contains("max_concurrent_calls"), "{json}");
    }

    #[test]
    fn a_call_limit_out_of_range_is_one_precise_error_at_the_value() {
        const RANGE: &str = "write a whole number from 1 to 10000, or leave the field out for no limit";
        const TOO_LARGE: &str = "write at most 10000, or leave the field out for no limit";
        // (value as written, end column of the value, message, help); the value starts at 20:23.
        let cases: Vec<(&str, u32, &str, String)> = vec![
            (
                "0",
                24,
                "`max_concurrent_calls` must be at least 1, found `0`",
                format!("0 would let no call through: {RANGE}"),
            ),
            ("-3", 25, "`max_concurrent_calls` must be at least 1, found `-3`", RANGE.into()),
            ("10001", 28, "`max_concurrent_calls` must be at most 10000, found `10001`", TOO_LARGE.into()),
            (
                "99999999999999999999",
                43,
                "`max_concurrent_calls` must be at most 10000, found `1e+20`",
                TOO_LARGE.into(),
            ),
            ("2.5", 26, "`max_concurrent_calls` must be a whole number, found `2.5`", RANGE.into()),
            ("-0.5", 27, "`max_concurrent_calls` must be a whole number, found `-0.5`", RANGE.into()),
            (
                "10.0",
                27,
                "`max_concurrent_calls` must be a whole number, found `10.0`",
                "write it without a fraction or exponent: `max_concurrent_calls: 10`".into(),
            ),
            ("0.0", 26, "`max_concurrent_calls` must be at least 1, found `0.0`", RANGE.into()),
            ("2e4", 26, "`max_concurrent_calls` must be at most 10000, found `20000.0`", TOO_LARGE.into()),
            (
                "\"10\"",
                27,
                "`max_concurrent_calls` must be a number, found a string",
                "write the number without quotes: `max_concurrent_calls: 10`".into(),
            ),
            ("ten", 26, "`max_concurrent_calls` must be a number, found a string", RANGE.into()),
            ("true", 27, "`max_concurrent_calls` must be a number, found a boolean", RANGE.into()),
            ("[4]", 26, "`max_concurrent_calls` must be a number, found a list", RANGE.into()),
            ("{ n: 4 }", 31, "`max_concurrent_calls` must be a number, found a mapping", RANGE.into()),
        ];
        for (value, end_column, message, help) in cases {
            let c = compile(&target_with_call_limit(value));
            // The schema would also refuse these (PF104, PF106): only the precise finding is shown.
            let got: Vec<_> = c
                .diagnostics
                .iter()
                .map(|d| (d.code, d.line, d.column, d.end_line, d.end_column, d.message.as_str(), d.help.as_deref()))
                .collect();
            assert_eq!(got, vec![("PF315", 20, 23, 20, end_column, message, Some(help.as_str()))], "{value}");
            assert!(c.bundle.is_none(), "{value}");
        }
    }

    #[test]
    fn an_empty_call_limit_is_refused_not_read_as_no_limit() {
        for value in ["", "~", "null"] {
            let c = compile(&target_with_call_limit(value));
            let got: Vec<_> = c.diagnostics.iter().map(|d| (d.code, d.line, d.message.as_str())).collect();
            assert_eq!(got, vec![("PF315", 20, "`max_concurrent_calls` has no value")], "{value:?}");
        }
    }

    #[test]
    fn hostile_strings_stay_linear_and_bounded() {
        let placeholders: String = (0..20_000).map(|i| format!("{{x{i}}}")).collect();
        let binds: String = (0..20_000).map(|i| format!(":b{i},")).collect();
        let yaml = set(
            "sqlite",
            &format!("queries:\n  Q:\n    query: \"select {placeholders}\"\nprocedures:\n  p: {{ params: [], body: \"select {binds}\" }}\n"),
        );
        let started = std::time::Instant::now();
        let c = compile(&yaml);
        let d = pf3(&c);
        assert_eq!(d.iter().filter(|d| d.code == "PF300").count(), 51);
        assert_eq!(d.iter().filter(|d| d.code == "PF308").count(), 51);
        assert!(d.iter().any(|d| d.message == "19950 more undeclared placeholders in this query"));
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    }

    #[test]
    fn output_inside_an_expression_is_pointed_at() {
        let c =
            compile(&set("postgres", "queries:\n  Q:\n    query: call p(upper({r}))\n    outputs: { r: String }\n"));
        let d: Vec<_> = pf3(&c).iter().map(|d| (d.code, d.line, d.column, d.end_column)).collect();
        assert_eq!(d, vec![("PF303", 7, 25, 28)]);
    }

    /// The shipped definitions (when present) must not trip any query check.
    #[test]
    fn shipped_dbum_definitions_have_no_query_findings() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../definitions/dbum");
        if !dir.is_dir() {
            return;
        }
        let Ok(c) = crate::compile_paths(&crate::source::FsReader, &[dir]) else { return };
        let found: Vec<String> =
            pf3(&c).iter().map(|d| format!("{}:{}:{} {} {}", d.file, d.line, d.column, d.code, d.message)).collect();
        assert!(found.is_empty(), "{found:#?}");
        let sets = c.bundle.as_ref().map_or(0, |b| b.query_sets.len());
        assert!(c.errors() > 0 || sets >= 1);
    }
}
