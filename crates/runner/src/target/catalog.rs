//! `provflow target check`: the live catalog against the calls of a target's query set. Reading
//! the catalog is per dialect; verifying is pure ([`verify`]), so it is tested without a server.

use provflow_ir::{self as ir, Dialect, ParamMode, Quoting, ValueType};
use std::collections::BTreeMap;

use crate::target::{Target, TargetError};
use crate::value::Value;

/// One mismatch between a query's `call` and the database, reported at the query's location.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogFinding {
    /// The diagnostic code: PF700 missing procedure, PF701 arity, PF702 parameter mode, PF703 type.
    pub code: &'static str,
    /// The query's name.
    pub query: String,
    pub location: ir::Location,
    /// How many characters from `location` the finding covers: the procedure's name (or the
    /// query's key, for an IR without the call's position).
    pub len: u32,
    pub message: String,
    pub help: Option<String>,
}

/// A stored routine as the catalog describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub name: String,
    /// A function rather than a procedure: `CALL` does not run it (both servers refuse), a
    /// query calls it in an expression (`select f(...)`).
    pub function: bool,
    pub params: Vec<CatalogParam>,
    /// How many of the trailing input parameters have defaults (PostgreSQL's
    /// `pronargdefaults`; MariaDB procedures have none): a call may leave them out.
    pub defaults: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CatalogParam {
    pub name: String,
    pub mode: ParamMode,
    /// The type as the database names it (`text`, `character varying`, `bigint`, `varchar`).
    pub type_name: String,
}

/// Reads the procedures visible to the target's session and verifies every call of `set`.
pub fn check(target: &mut dyn Target, set: &ir::QuerySet) -> Result<Vec<CatalogFinding>, TargetError> {
    let dialect = target.dialect();
    let catalog = match dialect {
        Dialect::Postgres => read(target, POSTGRES_CATALOG)?,
        Dialect::Mariadb => read(target, MARIADB_CATALOG)?,
        // SQLite procedures are emulated from the query set and checked by the compiler.
        Dialect::Sqlite => return Ok(Vec::new()),
    };
    Ok(verify(set, &catalog, dialect))
}

const SEP: char = '\u{1f}';

/// One row per procedure or function; names, modes and types joined with U+001F (no type name
/// or mode contains it). Routines visible on the search path only: those are the ones `CALL p`
/// finds. Functions are read so that a `call` of one is reported as what it is.
const POSTGRES_CATALOG: &str = "select p.proname::text as name, \
    (case when p.prokind = 'p' then 'procedure' else 'function' end) as kind, \
    p.pronargdefaults::text as defaults, \
    coalesce(array_to_string(p.proargnames, chr(31)), '') as arg_names, \
    coalesce(array_to_string(p.proargmodes, chr(31)), '') as arg_modes, \
    coalesce((select string_agg(format_type(a.t, null), chr(31) order by a.o) \
              from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality as a(t, o)), '') as arg_types \
    from pg_proc p where p.prokind in ('p', 'f') and pg_function_is_visible(p.oid)";

const MARIADB_CATALOG: &str = "select r.ROUTINE_NAME as name, lower(r.ROUTINE_TYPE) as kind, '0' as defaults, \
    coalesce(group_concat(p.PARAMETER_NAME order by p.ORDINAL_POSITION separator 0x1f), '') as arg_names, \
    coalesce(group_concat(p.PARAMETER_MODE order by p.ORDINAL_POSITION separator 0x1f), '') as arg_modes, \
    coalesce(group_concat(p.DATA_TYPE order by p.ORDINAL_POSITION separator 0x1f), '') as arg_types \
    from information_schema.ROUTINES r left join information_schema.PARAMETERS p \
      on p.SPECIFIC_SCHEMA = r.ROUTINE_SCHEMA and p.SPECIFIC_NAME = r.ROUTINE_NAME and p.ROUTINE_TYPE = r.ROUTINE_TYPE and p.ORDINAL_POSITION > 0 \
    where r.ROUTINE_SCHEMA = database() group by r.ROUTINE_NAME, r.ROUTINE_TYPE";

fn read(target: &mut dyn Target, sql: &str) -> Result<Vec<Signature>, TargetError> {
    let query = ir::Query::fixed("catalog", sql, &["name", "kind", "defaults", "arg_names", "arg_modes", "arg_types"]);
    let rows = target.call(&query, &[])?.rows;
    let field = |row: &BTreeMap<String, Value>, k: &str| -> Vec<String> {
        match row.get(k) {
            Some(Value::Text(s)) if !s.is_empty() => s.split(SEP).map(str::to_string).collect(),
            _ => Vec::new(),
        }
    };
    Ok(rows
        .iter()
        .map(|row| {
            let name = field(row, "name").join("");
            let types = field(row, "arg_types");
            let names = field(row, "arg_names");
            let modes = field(row, "arg_modes");
            let params = types
                .iter()
                .enumerate()
                .map(|(i, ty)| CatalogParam {
                    name: names.get(i).cloned().unwrap_or_default(),
                    mode: match modes.get(i).map(|m| m.to_ascii_lowercase()).as_deref() {
                        Some("o" | "out") => ParamMode::Out,
                        Some("b" | "inout") => ParamMode::InOut,
                        _ => ParamMode::In,
                    },
                    type_name: ty.clone(),
                })
                .collect();
            let defaults = field(row, "defaults").join("").parse().unwrap_or(0);
            let function = field(row, "kind").join("") == "function";
            Signature { name, function, params, defaults }
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Number,
    Boolean,
    Temporal,
    Other,
}

fn catalog_kind(type_name: &str, dialect: Dialect) -> Kind {
    let t = type_name.to_ascii_lowercase();
    let base = t.split(['(', ' ']).next().unwrap_or("");
    match base {
        "text" | "character" | "char" | "varchar" | "name" | "citext" | "tinytext" | "mediumtext" | "longtext"
        | "enum" | "set" => Kind::Text,
        // MariaDB's BOOLEAN is TINYINT(1).
        "tinyint" if dialect == Dialect::Mariadb => Kind::Number,
        "smallint" | "integer" | "int" | "bigint" | "mediumint" | "tinyint" | "numeric" | "decimal" | "real"
        | "double" | "float" => Kind::Number,
        "boolean" | "bool" => Kind::Boolean,
        "date" | "timestamp" | "datetime" | "time" => Kind::Temporal,
        _ => Kind::Other,
    }
}

fn value_kind(ty: ValueType) -> Kind {
    match ty {
        ValueType::String | ValueType::GuardedString => Kind::Text,
        ValueType::Long | ValueType::Integer | ValueType::Double => Kind::Number,
        ValueType::Boolean => Kind::Boolean,
        ValueType::Date | ValueType::Timestamp => Kind::Temporal,
    }
}

fn compatible(value: Kind, catalog: Kind, dialect: Dialect) -> bool {
    value == catalog
        || catalog == Kind::Other
        // Every value can be sent as text; the server parses dates from text.
        || catalog == Kind::Text
        || (value == Kind::Text && catalog == Kind::Temporal)
        || (dialect == Dialect::Mariadb && value == Kind::Boolean && catalog == Kind::Number)
}

/// How a call's procedure name is looked up: the last part of `schema.name`, unquoted;
/// PostgreSQL folds unquoted names to lower case, MariaDB compares without case.
fn lookup_name(procedure: &str, dialect: Dialect) -> String {
    let last = procedure.rsplit('.').next().unwrap_or(procedure);
    let quoted = (last.starts_with('"') && last.ends_with('"') && last.len() >= 2) || last.starts_with('`');
    let bare = last.trim_matches(['"', '`']);
    if dialect == Dialect::Mariadb || !quoted {
        bare.to_lowercase()
    } else {
        bare.to_string()
    }
}

fn mode_word(mode: ParamMode) -> &'static str {
    match mode {
        ParamMode::In => "IN",
        ParamMode::Out => "OUT",
        ParamMode::InOut => "INOUT",
    }
}

/// How a call's arguments meet one signature's parameters: for each argument, the index of
/// the parameter it fills.
fn bind(call: &ir::Call, signature: &Signature, dialect: Dialect) -> Option<Vec<usize>> {
    let mut filled = vec![false; signature.params.len()];
    let mut binding = Vec::with_capacity(call.args.len());
    for (position, _) in call.args.iter().enumerate() {
        let name = call.names.get(position).cloned().flatten();
        let at = match name {
            None => position,
            Some(n) => signature.params.iter().position(|p| match dialect {
                Dialect::Mariadb => p.name.eq_ignore_ascii_case(&n),
                _ => p.name == n,
            })?,
        };
        let slot = filled.get_mut(at)?;
        if *slot {
            return None;
        }
        *slot = true;
        binding.push(at);
    }
    // What is not filled must have a default: the last `defaults` input parameters do.
    let inputs: Vec<usize> = (0..signature.params.len())
        .filter(|&i| signature.params.get(i).is_some_and(|p| p.mode != ParamMode::Out))
        .collect();
    let defaulted = inputs.get(inputs.len().saturating_sub(signature.defaults)..).unwrap_or_default();
    let complete = filled.iter().enumerate().all(|(i, f)| *f || defaulted.contains(&i));
    complete.then_some(binding)
}

/// Which of several overloads that take a call's arguments the server runs, as PostgreSQL
/// resolves a call whose binds have no declared type (the runner prepares `$n` untyped): at a
/// position where the overloads' types differ, an unknown-typed value goes to the string
/// category if any overload has it there, and within it to `text`, its preferred type;
/// otherwise the call is ambiguous. A position holding a SQL expression (a cast,
/// `{quota}::integer`) has a type provflow does not know: the choice is then the server's.
enum Resolved<'s> {
    One(&'s Signature, Vec<usize>),
    Ambiguous,
    /// Told apart only by an expression's type.
    Unknown,
}

fn resolve<'s>(call: &ir::Call, bound: &[(&'s Signature, Vec<usize>)]) -> Resolved<'s> {
    let mut left: Vec<&(&Signature, Vec<usize>)> = bound.iter().collect();
    let expressions = call.args.iter().any(Option::is_none);
    for (position, arg) in call.args.iter().enumerate() {
        if left.len() < 2 {
            break;
        }
        if arg.is_none() {
            continue;
        }
        let type_at = |c: &(&Signature, Vec<usize>)| {
            c.1.get(position).and_then(|&at| c.0.params.get(at)).map(|p| p.type_name.to_ascii_lowercase())
        };
        let first = left.first().and_then(|c| type_at(c));
        if left.iter().all(|c| type_at(c) == first) {
            continue;
        }
        let is_text = |c: &&(&Signature, Vec<usize>)| {
            type_at(c).is_some_and(|t| catalog_kind(&t, Dialect::Postgres) == Kind::Text)
        };
        let strings: Vec<_> = left.iter().copied().filter(is_text).collect();
        if strings.is_empty() {
            return if expressions { Resolved::Unknown } else { Resolved::Ambiguous };
        }
        let preferred: Vec<_> = strings.iter().copied().filter(|c| type_at(c).as_deref() == Some("text")).collect();
        left = if preferred.is_empty() { strings } else { preferred };
    }
    match left.as_slice() {
        [one] => Resolved::One(one.0, one.1.clone()),
        _ if expressions => Resolved::Unknown,
        _ => Resolved::Ambiguous,
    }
}

/// Checks every `call` of `set` against `catalog`: the procedure exists; an overload takes the
/// arguments as written (positional, named `p => v`, and defaulted trailing inputs left
/// out), the one the server would choose ([`resolve`]; PF704 when it cannot); modes and types
/// match.
/// Findings point at the procedure's name in the query text.
pub fn verify(set: &ir::QuerySet, catalog: &[Signature], dialect: Dialect) -> Vec<CatalogFinding> {
    let mut findings = Vec::new();
    let key = |n: &str| if dialect == Dialect::Mariadb { n.to_lowercase() } else { n.to_string() };
    let mut by_name: BTreeMap<String, Vec<&Signature>> = BTreeMap::new();
    let mut functions: BTreeMap<String, &Signature> = BTreeMap::new();
    for s in catalog {
        if s.function {
            functions.insert(key(&s.name), s);
        } else {
            by_name.entry(key(&s.name)).or_default().push(s);
        }
    }
    for query in &set.queries {
        let Some(call) = &query.call else { continue };
        let mut finding = |code: &'static str, message: String, help: Option<String>| {
            let (location, len) = match &call.location {
                Some(at) => (at.clone(), call.procedure.chars().count()),
                None => (query.location.clone(), query.name.chars().count()),
            };
            findings.push(CatalogFinding {
                code,
                query: query.name.clone(),
                location,
                len: u32::try_from(len).unwrap_or(u32::MAX),
                message,
                help,
            });
        };
        let name = lookup_name(&call.procedure, dialect);
        let Some(candidates) = by_name.get(&name) else {
            if let Some(function) = functions.get(&name) {
                let args: Vec<String> = call
                    .args
                    .iter()
                    .map(|a| a.and_then(|i| query.params.get(i)).map_or("…".into(), |p| format!("{{{}}}", p.name)))
                    .collect();
                let args = args.join(", ");
                finding(
                    "PF700",
                    format!(
                        "`{}` called by `{}` is a function, not a procedure: `call` runs procedures only, and the server refuses it",
                        call.procedure, query.name
                    ),
                    Some(format!(
                        "call the function in a query: `select {}({args})` (it takes {}), or create a procedure of that name",
                        call.procedure,
                        if function.params.is_empty() { "no arguments".to_string() } else { format!("`{}`", describe(function)) }
                    )),
                );
                continue;
            }
            let near = provflow_lex::suggest::did_you_mean(&name, by_name.keys().map(String::as_str));
            let help = match near {
                Some(k) => format!("did you mean `{k}`?"),
                None => "run `provflow target install` to create it, or check the name and the connection's database/search_path".into(),
            };
            finding(
                "PF700",
                format!(
                    "procedure `{}` called by `{}` does not exist in the target database",
                    call.procedure, query.name
                ),
                Some(help),
            );
            continue;
        };
        let signatures = || {
            candidates.iter().map(|s| format!("`{}({})`", call.procedure, describe(s))).collect::<Vec<_>>().join(", ")
        };
        let bound: Vec<(&Signature, Vec<usize>)> =
            candidates.iter().filter_map(|s| bind(call, s, dialect).map(|b| (*s, b))).collect();
        if bound.is_empty() {
            let arities: Vec<String> = candidates
                .iter()
                .map(|s| {
                    let (all, min) = (s.params.len(), s.params.len().saturating_sub(s.defaults));
                    if min == all {
                        all.to_string()
                    } else {
                        format!("{min} to {all}")
                    }
                })
                .collect();
            let named = if call.names.iter().any(Option::is_some) { " (by the names given)" } else { "" };
            finding(
                "PF701",
                format!(
                    "procedure `{}` takes {} argument(s) but `{}` passes {}{named}",
                    call.procedure,
                    arities.join(" or "),
                    query.name,
                    call.args.len()
                ),
                Some(format!("the database has {}", signatures())),
            );
            continue;
        }
        let chosen = match bound.as_slice() {
            [one] => Resolved::One(one.0, one.1.clone()),
            _ => resolve(call, &bound),
        };
        let (signature, binding) = match chosen {
            Resolved::One(signature, binding) => (signature, binding),
            Resolved::Unknown => continue,
            Resolved::Ambiguous => {
                finding(
                "PF704",
                format!(
                    "the call of `{}` in `{}` matches {} procedures and the server cannot choose: it would refuse the call as not unique",
                    call.procedure,
                    query.name,
                    bound.len()
                ),
                Some(format!(
                    "the database has {}; cast the argument that tells them apart in the query (`{{value}}::integer`), or give one procedure a name of its own",
                    signatures()
                )),
            );
                continue;
            }
        };
        for (position, (arg, &at)) in call.args.iter().zip(&binding).enumerate() {
            let (Some(param), Some(db)) = (arg.and_then(|i| query.params.get(i)), signature.params.get(at)) else {
                continue;
            };
            let db_name = if db.name.is_empty() { String::new() } else { format!(" (`{}`)", db.name) };
            let n = position + 1;
            match (db.mode, param.mode) {
                (ParamMode::Out | ParamMode::InOut, ParamMode::In) => finding(
                    "PF702",
                    format!(
                        "argument {n}{db_name} of `{}` is {} but `{}` is an input only",
                        call.procedure,
                        mode_word(db.mode),
                        param.name
                    ),
                    Some(format!("declare it under `outputs`: `{}: {}`", param.name, param.ty.as_str())),
                ),
                (ParamMode::In, ParamMode::Out | ParamMode::InOut) => finding(
                    "PF702",
                    format!(
                        "argument {n}{db_name} of `{}` is IN but `{}` is declared under `outputs`",
                        call.procedure, param.name
                    ),
                    Some(format!("remove `{}` from `outputs`, or make the parameter OUT in the procedure", param.name)),
                ),
                _ => {}
            }
            // An inlined value is SQL text, not a typed bind.
            if param.quoting != Quoting::Bind {
                continue;
            }
            let (want, have) = (catalog_kind(&db.type_name, dialect), value_kind(param.ty));
            if !compatible(have, want, dialect) {
                finding(
                    "PF703",
                    format!(
                        "argument {n}{db_name} of `{}` is `{}` but `{}` is a {}",
                        call.procedure,
                        db.type_name,
                        param.name,
                        param.ty.as_str()
                    ),
                    Some(format!("declare `{}` with a type that fits `{}`", param.name, db.type_name)),
                );
            }
        }
    }
    findings
}

fn describe(s: &Signature) -> String {
    s.params
        .iter()
        .map(|p| format!("{} {} {}", mode_word(p.mode), p.name, p.type_name).replace("  ", " "))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(name: &str, params: &[(&str, ParamMode, &str)]) -> Signature {
        Signature {
            name: name.into(),
            function: false,
            params: params
                .iter()
                .map(|(n, m, t)| CatalogParam { name: (*n).into(), mode: *m, type_name: (*t).into() })
                .collect(),
            defaults: 0,
        }
    }

    type QuerySpec<'a> = (&'a str, &'a str, Vec<(&'a str, ValueType, ParamMode)>);

    fn set(queries: &[QuerySpec<'_>]) -> ir::QuerySet {
        ir::QuerySet {
            name: "s".into(),
            dialect: Dialect::Postgres,
            install: vec![],
            procedures: vec![],
            location: ir::Location::default(),
            queries: queries
                .iter()
                .enumerate()
                .map(|(line, (name, procedure, params))| ir::Query {
                    name: (*name).into(),
                    source: String::new(),
                    segments: vec![],
                    params: params
                        .iter()
                        .map(|(n, ty, mode)| ir::QueryParam {
                            name: (*n).into(),
                            ty: *ty,
                            mode: *mode,
                            quoting: Quoting::Bind,
                        })
                        .collect(),
                    call: Some(ir::Call::positional(*procedure, (0..params.len()).map(Some).collect())),
                    response_from: None,
                    errors: BTreeMap::new(),
                    columns: vec![],
                    idempotent: false,
                    location: ir::Location { file: "q.yaml".into(), line: line as u32 + 1, column: 3 },
                })
                .collect(),
        }
    }

    #[test]
    fn calls_are_checked_for_existence_arity_modes_and_types() {
        use ParamMode::*;
        use ValueType as T;
        let catalog = [
            sig("insert_package", &[("usr", In, "text"), ("pwd", In, "text")]),
            sig("reset_password", &[("usr", In, "text"), ("pwd", In, "text"), ("response", Out, "text")]),
            sig("set_quota", &[("usr", In, "text"), ("mb", In, "integer")]),
        ];
        let queries = set(&[
            ("OK", "insert_package", vec![("n", T::String, In), ("p", T::GuardedString, In)]),
            ("TYPO", "insert_pakage", vec![("n", T::String, In), ("p", T::GuardedString, In)]),
            ("ARITY", "insert_package", vec![("n", T::String, In)]),
            (
                "NOT_OUT",
                "reset_password",
                vec![("n", T::String, In), ("p", T::GuardedString, In), ("r", T::String, In)],
            ),
            (
                "OUT_OK",
                "public.RESET_PASSWORD",
                vec![("n", T::String, In), ("p", T::GuardedString, In), ("r", T::String, Out)],
            ),
            ("EXTRA_OUT", "insert_package", vec![("n", T::String, In), ("p", T::String, Out)]),
            ("TYPE", "set_quota", vec![("n", T::String, In), ("mb", T::Boolean, In)]),
            ("MISSING", "nothing_like_it", vec![]),
        ]);
        let got: Vec<(String, u32, String, Option<String>)> = verify(&queries, &catalog, Dialect::Postgres)
            .into_iter()
            .map(|f| (f.query, f.location.line, f.message, f.help))
            .collect();
        let want = vec![
            ("TYPO", 2, "procedure `insert_pakage` called by `TYPO` does not exist in the target database", Some("did you mean `insert_package`?")),
            ("ARITY", 3, "procedure `insert_package` takes 2 argument(s) but `ARITY` passes 1", Some("the database has `insert_package(IN usr text, IN pwd text)`")),
            ("NOT_OUT", 4, "argument 3 (`response`) of `reset_password` is OUT but `r` is an input only", Some("declare it under `outputs`: `r: String`")),
            ("EXTRA_OUT", 6, "argument 2 (`pwd`) of `insert_package` is IN but `p` is declared under `outputs`", Some("remove `p` from `outputs`, or make the parameter OUT in the procedure")),
            ("TYPE", 7, "argument 2 (`mb`) of `set_quota` is `integer` but `mb` is a Boolean", Some("declare `mb` with a type that fits `integer`")),
            ("MISSING", 8, "procedure `nothing_like_it` called by `MISSING` does not exist in the target database", Some("run `provflow target install` to create it, or check the name and the connection's database/search_path")),
        ];
        let want: Vec<(String, u32, String, Option<String>)> =
            want.into_iter().map(|(q, l, m, h)| (q.to_string(), l, m.to_string(), h.map(str::to_string))).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_call_of_a_function_says_so() {
        let function = Signature { function: true, ..sig("user_exists", &[("usr", ParamMode::In, "text")]) };
        let queries = set(&[("EXISTS", "user_exists", vec![("n", ValueType::String, ParamMode::In)])]);
        let found = verify(&queries, std::slice::from_ref(&function), Dialect::Postgres);
        let messages: Vec<(&str, &str, Option<&str>)> =
            found.iter().map(|f| (f.code, f.message.as_str(), f.help.as_deref())).collect();
        assert_eq!(
            messages,
            [(
                "PF700",
                "`user_exists` called by `EXISTS` is a function, not a procedure: `call` runs procedures only, and the server refuses it",
                Some("call the function in a query: `select user_exists({n})` (it takes `IN usr text`), or create a procedure of that name")
            )]
        );
        // A procedure of the same name is what `call` runs: no finding.
        let procedure = sig("user_exists", &[("usr", ParamMode::In, "text")]);
        assert_eq!(verify(&queries, &[function, procedure], Dialect::Postgres), vec![]);
    }

    #[test]
    fn mariadb_names_ignore_case_and_booleans_are_tinyint() {
        let catalog = [sig("Enable_User", &[("usr", ParamMode::In, "varchar"), ("on", ParamMode::In, "tinyint")])];
        let queries = set(&[(
            "E",
            "`enable_user`",
            vec![("n", ValueType::String, ParamMode::In), ("b", ValueType::Boolean, ParamMode::In)],
        )]);
        assert_eq!(verify(&queries, &catalog, Dialect::Mariadb), vec![]);
        assert_eq!(
            verify(&queries, &catalog, Dialect::Postgres).len(),
            1,
            "case matters for a quoted name on PostgreSQL"
        );
    }

    fn with_defaults(mut s: Signature, defaults: usize) -> Signature {
        s.defaults = defaults;
        s
    }

    #[test]
    fn defaults_named_arguments_and_overloads() {
        use ParamMode::*;
        use ValueType as T;
        let catalog = [
            // grant_role(usr text, role text, admin boolean default false)
            with_defaults(sig("grant_role", &[("usr", In, "text"), ("role", In, "text"), ("admin", In, "boolean")]), 1),
            // Overloads told apart by type.
            sig("set_quota", &[("usr", In, "text"), ("mb", In, "integer")]),
            sig("set_quota", &[("usr", In, "text"), ("unlimited", In, "boolean")]),
            // Overloads the binds cannot tell apart.
            sig("touch", &[("usr", In, "text")]),
            sig("touch", &[("usr", In, "character varying")]),
            // An OUT parameter after an input with a default.
            with_defaults(sig("reset", &[("usr", In, "text"), ("pwd", In, "text"), ("response", Out, "text")]), 1),
        ];
        let mut queries = set(&[
            ("DEFAULTED", "grant_role", vec![("n", T::String, In), ("r", T::String, In)]),
            ("ALL", "grant_role", vec![("n", T::String, In), ("r", T::String, In), ("a", T::Boolean, In)]),
            ("TOO_FEW", "grant_role", vec![("n", T::String, In)]),
            ("NAMED", "grant_role", vec![("r", T::String, In), ("n", T::String, In)]),
            ("NAMED_UNKNOWN", "grant_role", vec![("n", T::String, In), ("x", T::String, In)]),
            ("BY_TYPE", "set_quota", vec![("n", T::String, In), ("b", T::Boolean, In)]),
            ("BY_TYPE_TOO", "set_quota", vec![("n", T::String, In), ("mb", T::Long, In)]),
            ("NO_TYPE_FITS", "set_quota", vec![("n", T::String, In), ("d", T::Date, In)]),
            ("STRING_OVERLOADS", "touch", vec![("n", T::String, In)]),
            ("OUT_AFTER_DEFAULT", "reset", vec![("n", T::String, In), ("p", T::String, In), ("r", T::String, Out)]),
        ]);
        let named = |names: &[&str]| names.iter().map(|n| Some((*n).to_string())).collect::<Vec<_>>();
        for q in &mut queries.queries {
            let call = q.call.as_mut().unwrap();
            match q.name.as_str() {
                "NAMED" => call.names = named(&["role", "usr"]),
                "NAMED_UNKNOWN" => call.names = named(&["usr", "rol"]),
                _ => {}
            }
            call.location = Some(ir::Location { file: "q.yaml".into(), line: 40, column: 17 });
        }
        let got: Vec<(String, &str, u32, u32)> = verify(&queries, &catalog, Dialect::Postgres)
            .into_iter()
            .map(|f| (f.query, f.code, f.location.line, f.location.column))
            .collect();
        // set_quota(text, integer) and set_quota(text, boolean) differ outside the string
        // category: an untyped bind cannot choose (the server says "is not unique"); touch(text)
        // and touch(varchar) are both strings, and text is preferred.
        let want = [
            ("TOO_FEW", "PF701", 40, 17),
            ("NAMED_UNKNOWN", "PF701", 40, 17),
            ("BY_TYPE", "PF704", 40, 17),
            ("BY_TYPE_TOO", "PF704", 40, 17),
            ("NO_TYPE_FITS", "PF704", 40, 17),
        ];
        let want: Vec<(String, &str, u32, u32)> =
            want.iter().map(|(q, c, l, col)| (q.to_string(), *c, *l, *col)).collect();
        assert_eq!(got, want);
        let messages: Vec<String> =
            verify(&queries, &catalog, Dialect::Postgres).into_iter().map(|f| f.message).collect();
        assert!(messages[0].contains("takes 2 to 3 argument(s)"), "{messages:?}");
        assert!(messages[1].contains("by the names given"), "{messages:?}");
        assert!(messages[2].contains("matches 2 procedures and the server cannot choose"), "{messages:?}");
    }
}
