//! The importer's tests: parsing, every error and warning, the YAML printed, and fuzzing.

use super::braces::to_new_query_text;
use super::print::{yaml_double_quoted, yaml_scalar};
use super::*;

const SEED: &str = r#"CREATE_PASSWORD_USER { Query="call insertPackage ({__NAME__},{__PASSWORD__})" Parameters=["__NAME__":"Type:String", "__PASSWORD__":"Type:GuardedString,TAGS:DOUBLEQUOTES"] }"#;

fn param(name: &str, ty: &str, tag: Option<&str>) -> LegacyParam {
    LegacyParam { name: name.into(), ty: ty.into(), tag: tag.map(Into::into) }
}

fn parse_ok(src: &str) -> Vec<LegacyQuery> {
    match parse_provision_queries(src) {
        Ok(q) => q,
        Err(errors) => panic!("unexpected errors:\n{}", render(&errors)),
    }
}

fn parse_err(src: &str) -> Vec<LegacyError> {
    match parse_provision_queries(src) {
        Ok(q) => panic!("expected errors, got {q:?}"),
        Err(errors) => errors,
    }
}

fn render(errors: &[LegacyError]) -> String {
    errors.iter().map(|e| format!("{e}\n")).collect()
}

/// Exactly one error, at `line:column`, whose message contains `needle`; returns it.
fn one_error(src: &str, line: usize, column: usize, needle: &str) -> LegacyError {
    let errors = parse_err(src);
    assert_eq!(errors.len(), 1, "expected one error, got:\n{}", render(&errors));
    let e = errors.into_iter().next().unwrap_or_else(|| unreachable!());
    assert_eq!((e.line, e.column), (line, column), "wrong position for: {e}");
    assert!(e.message.contains(needle), "message {:?} lacks {:?}", e.message, needle);
    assert!(e.help.is_some(), "no help for: {e}");
    e
}

fn yaml_value(yaml: &str) -> serde_json::Value {
    match serde_yaml::from_str::<serde_json::Value>(yaml) {
        Ok(v) => v,
        Err(e) => panic!("output is not YAML: {e}\n{yaml}"),
    }
}

#[test]
fn seed_example() {
    let q = parse_ok(SEED);
    assert_eq!(
        q,
        vec![LegacyQuery {
            name: "CREATE_PASSWORD_USER".into(),
            query: "call insertPackage ({__NAME__},{__PASSWORD__})".into(),
            params: vec![
                param("__NAME__", "String", None),
                param("__PASSWORD__", "GuardedString", Some("DOUBLEQUOTES")),
            ],
            line: 1,
        }]
    );
    let yaml = to_connector_queries_yaml(&q, "dbum-oracle", "postgres");
    assert_eq!(
        yaml,
        "apiVersion: provflow/v1\n\
             kind: ConnectorQueries\n\
             name: dbum-oracle\n\
             dialect: postgres\n\
             queries:\n  \
               CREATE_PASSWORD_USER:\n    \
                 query: \"call insertPackage ({__NAME__},{__PASSWORD__})\"\n    \
                 params:\n      \
                   __NAME__: String\n      \
                   # __PASSWORD__: legacy TAGS:DOUBLEQUOTES dropped: it stands in a call argument, where the value is bound (\"…\" would be a column name on postgres)\n      \
                   __PASSWORD__: GuardedString\n"
    );
    let v = yaml_value(&yaml);
    assert_eq!(v["queries"]["CREATE_PASSWORD_USER"]["params"]["__PASSWORD__"], "GuardedString");
    assert!(parse_provision_queries_report(SEED).warnings.is_empty());
}

#[test]
fn seed_blog_text_with_typographic_quotes() {
    // The two lines as the blog (seed 000) prints them, wrapped in an entry.
    let src = "CREATE_PWD_USER {\n\nQuery=\u{201D}call insertPackage ({__NAME__},{__PASSWORD__})\u{201D}\n\n\nParameters=[\u{201C}__NAME__\u{201D}:\u{201D}Type:String\u{201D}, \u{201C}__PASSWORD__\u{201D}:\u{201D}Type:GuardedString,TAGS:DOUBLEQUOTES\u{201D}]\n}\n";
    let report = parse_provision_queries_report(src);
    assert!(report.errors.is_empty(), "{}", render(&report.errors));
    let mut expected = parse_ok(SEED);
    if let Some(q) = expected.first_mut() {
        q.name = "CREATE_PWD_USER".into();
    }
    assert_eq!(report.queries, expected);
    assert_eq!(report.warnings.len(), 1, "{}", render(&report.warnings));
    let w = &report.warnings[0];
    assert_eq!((w.line, w.column), (3, 7));
    assert!(w.message.contains("typographic quote `\u{201D}` read as `\"` (10 typographic quotes"), "{w}");
}

#[test]
fn seed_blog_lines_without_an_entry() {
    let src = "Query=\u{201D}call insertPackage ({__NAME__},{__PASSWORD__})\u{201D}\n\nParameters=[\u{201C}__NAME__\u{201D}:\u{201D}Type:String\u{201D}]\n";
    let e = one_error(src, 1, 1, "`Query=` outside of an entry");
    assert!(e.help.as_deref().unwrap_or("").contains("CREATE_USER {"));
}

#[test]
fn multi_line_entries_comments_and_blank_lines() {
    let src = r#"
# provision.queries for Oracle
// a Groovy comment
/* a block
   comment */
CREATE_USER {
    Query="CREATE USER {__NAME__} IDENTIFIED BY {__PASSWORD__}"   # trailing comment
    Parameters=[
        "__NAME__":"Type:String,TAGS:IDENTIFIER",
        "__PASSWORD__" : " Type:GuardedString , TAGS:DOUBLEQUOTES ",   // blanks are fine
    ]
}

LIST_USERS { Query='select username from dba_users' }
ENABLE_USER
{
  Query="alter user {__NAME__} account unlock"; Parameters=[__NAME__:"TAGS:IDENTIFIER,Type:String"]
}
NOTHING { Query="select 1 from dual" Parameters=[:] }
"#;
    let q = parse_ok(src);
    let names: Vec<&str> = q.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["CREATE_USER", "LIST_USERS", "ENABLE_USER", "NOTHING"]);
    assert_eq!(q.iter().map(|q| q.line).collect::<Vec<_>>(), [6, 14, 15, 19]);
    assert_eq!(
        q[0].params,
        vec![
            param("__NAME__", "String", Some("IDENTIFIER")),
            param("__PASSWORD__", "GuardedString", Some("DOUBLEQUOTES"))
        ]
    );
    assert_eq!(q[1].query, "select username from dba_users");
    assert!(q[1].params.is_empty());
    assert_eq!(q[2].params, vec![param("__NAME__", "String", Some("IDENTIFIER"))]);
    // On sqlite everything is kept as written.
    let yaml = to_connector_queries_yaml(&q, "oracle", "sqlite");
    assert!(yaml.contains("  LIST_USERS:\n    query: \"select username from dba_users\"\n  ENABLE_USER:\n"), "{yaml}");
    let v = yaml_value(&yaml);
    let keys: Vec<&String> = v["queries"].as_object().map(|o| o.keys().collect()).unwrap_or_default();
    assert_eq!(keys, ["CREATE_USER", "LIST_USERS", "ENABLE_USER", "NOTHING"]);
    // On postgres Oracle's statements are translated, and what reads Oracle's dictionary
    // is refused at its line.
    let imported = import(&q, "oracle", "postgres");
    let v = yaml_value(&imported.yaml);
    let keys: Vec<&String> = v["queries"].as_object().map(|o| o.keys().collect()).unwrap_or_default();
    assert_eq!(keys, ["CREATE_USER", "ENABLE_USER"]);
    assert_eq!(v["queries"]["ENABLE_USER"]["query"], "ALTER ROLE {__NAME__} LOGIN");
    let refused: Vec<(usize, &str)> = imported.refused.iter().map(|e| (e.line, e.message.as_str())).collect();
    assert_eq!(
        refused,
        [
            (14, "entry `LIST_USERS` cannot run on postgres: `dba_users` is Oracle's data dictionary view: PostgreSQL has none of that name, so the query fails unless you created it"),
            (19, "entry `NOTHING` cannot run on postgres: `dual` is Oracle's dummy table: PostgreSQL has none of that name, so the query fails unless you created it")
        ]
    );
}

#[test]
fn escaped_quotes_and_backslashes() {
    let src = r#"Q { Query="select \"USERNAME\" from t where a = 'x\\y' and b = {__NAME__}\tend" Parameters=["__NAME__":"Type:String"] }"#;
    let q = parse_ok(src);
    assert_eq!(q[0].query, "select \"USERNAME\" from t where a = 'x\\y' and b = {__NAME__}\tend");
    let yaml = to_connector_queries_yaml(&q, "q", "sqlite");
    assert!(
        yaml.contains(r#"    query: "select \"USERNAME\" from t where a = 'x\\y' and b = {__NAME__}\tend""#),
        "{yaml}"
    );
    assert_eq!(yaml_value(&yaml)["queries"]["Q"]["query"], q[0].query.as_str());
}

#[test]
fn concatenation_and_triple_quoted_strings_keep_positions() {
    let src = "Q {\n  Query=\"select *\" +\n        \" from t where n = {__NAME__}\"\n  Parameters=[\"__NAME__\":\"Type:String\"]\n}\n\
                   R {\n  Query=\"\"\"select *\n    from t where n = {__NAM__}\"\"\"\n  Parameters=[\"__NAME__\":\"Type:String\"]\n}\n";
    let errors = parse_err(src);
    assert_eq!(errors.len(), 2, "{}", render(&errors));
    assert_eq!((errors[0].line, errors[0].column), (8, 22));
    assert!(errors[0].message.contains("placeholder `{__NAM__}` is not declared"), "{}", errors[0]);
    assert_eq!(
        errors[0].help.as_deref(),
        Some("did you mean `{__NAME__}`? Otherwise declare it: `\"__NAM__\":\"Type:String\"` in `Parameters`")
    );
    assert_eq!((errors[1].line, errors[1].column), (9, 15));
    assert!(errors[1].message.contains("parameter `__NAME__` is declared but"), "{}", errors[1]);
    assert!(errors[1].help.as_deref().unwrap_or("").contains("the Query uses `{__NAM__}`"));

    let ok = parse_ok(&src.replace("__NAM__}", "__NAME__}"));
    assert_eq!(ok[0].query, "select * from t where n = {__NAME__}");
    assert_eq!(ok[1].query, "select *\n    from t where n = {__NAME__}");
    let yaml = to_connector_queries_yaml(&ok, "q", "sqlite");
    assert!(yaml.contains(r#"query: "select *\n    from t where n = {__NAME__}""#), "{yaml}");
}

#[test]
fn crlf_and_bom_do_not_shift_positions() {
    let lf = "A {\n  Query=\"x {p}\"\n}\n";
    let crlf = format!("\u{FEFF}{}", lf.replace('\n', "\r\n"));
    for src in [lf.to_string(), crlf] {
        let e = one_error(&src, 2, 12, "placeholder `{p}` is not declared");
        assert!(e.help.as_deref().unwrap_or("").contains("has no `Parameters`"));
    }
}

#[test]
fn display_is_readable_at_2am() {
    let e = one_error("A {\n  Query:\"select 1\"\n}\n", 2, 8, "expected `=` after `Query`, found `:`");
    assert_eq!(
        e.to_string(),
        "line 2, column 8: expected `=` after `Query`, found `:`\n  help: write `Query=\"call my_proc({__NAME__})\"`; the `:` form is only used inside `Parameters=[...]`"
    );
}

#[test]
fn error_missing_equals() {
    // The value is plainly there: only the `=` is reported, the entry is still checked.
    one_error("A {\n  Query \"select 1\"\n}", 2, 9, "expected `=` after `Query`, found a string");
    // At the end of a line the error points just after the key.
    one_error("A {\n  Query\n}", 2, 8, "expected `=` after `Query`, found `}`");
}

#[test]
fn error_unquoted_query() {
    let e = one_error(
        "A {\n  Query=select 1\n}\nB { Query=\"x\" }",
        2,
        9,
        "expected the SQL text in quotes after `Query=`, found `select`",
    );
    assert!(e.help.as_deref().unwrap_or("").contains("quote the SQL text"));
}

#[test]
fn error_unclosed_string() {
    let e = one_error("A {\n  Query=\"select 1\n}\n", 2, 9, "this string is never closed");
    assert_eq!(e.help.as_deref(), Some("add the closing `\"` before the end of line 2"));
    // Closed with a typographic quote: the help says so.
    let e = one_error("A {\n  Query=\"select 1\u{201D}\n}\n", 2, 9, "this string is never closed");
    assert!(
        e.help.as_deref().unwrap_or("").contains("the `\u{201D}` at line 2, column 18 is a typographic quote"),
        "{e}"
    );
    // A triple-quoted string may span lines; unclosed, it runs to the end of the file, so the
    // entry is not closed either.
    let errors = parse_err("A { Query=\"\"\"select\n1");
    assert_eq!(errors.len(), 2, "{}", render(&errors));
    assert_eq!((errors[0].line, errors[0].column), (1, 3));
    assert!(errors[0].message.contains("entry `A` is never closed"));
    assert_eq!((errors[1].line, errors[1].column), (1, 11));
    assert_eq!(errors[1].help.as_deref(), Some("add the closing `\"\"\"` before the end of the file"));
}

#[test]
fn error_query_swallows_parameters() {
    let src = "A {\n  Query=\"call p({__NAME__})  Parameters=[\"__NAME__\":\"Type:String\"]\n}\n";
    let errors = parse_err(src);
    assert_eq!((errors[0].line, errors[0].column), (2, 30), "{}", render(&errors));
    assert!(errors[0].message.contains("runs on into `Parameters=`"));
}

#[test]
fn error_unknown_types_with_did_you_mean() {
    let cases = [
        ("Type:Strng", "unknown type `Strng`", Some("String")),
        ("Type:java.lang.String", "unknown type `java.lang.String`", Some("String")),
        ("Type:org.identityconnectors.common.security.GuardedString", "unknown type", Some("GuardedString")),
        ("Type:int", "unknown type `int`", Some("Integer")),
        ("Type:string", "unknown type `string`", Some("String")),
        ("Type:Blob", "unknown type `Blob`", None),
    ];
    for (spec, needle, suggestion) in cases {
        let src = format!("A {{ Query=\"x {{p}}\" Parameters=[\"p\":\"{spec}\"] }}");
        let e = one_error(&src, 1, 41, needle);
        let help = e.help.unwrap_or_default();
        match suggestion {
            Some(s) => assert!(help.starts_with(&format!("did you mean `{s}`?")), "{help}"),
            None => assert!(help.starts_with("the known types are String, GuardedString"), "{help}"),
        }
    }
}

#[test]
fn error_tags() {
    let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"Type:String,TAGS:DOUBLEQUOTE\"] }";
    let e = one_error(src, 1, 53, "unknown tag `DOUBLEQUOTE`");
    assert!(e.help.unwrap_or_default().starts_with("did you mean `DOUBLEQUOTES`?"));
    let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"Type:String,TAGS:IDENTIFIER|QUOTES\"] }";
    one_error(src, 1, 63, "several tags (`IDENTIFIER|QUOTES`)");
    let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"Type:String,TAGS:\"] }";
    one_error(src, 1, 53, "missing tag after `TAGS:`");
    let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"Type:String,Tags:QUOTES\"] }";
    let e = one_error(src, 1, 48, "unknown key `Tags`");
    assert!(e.help.unwrap_or_default().starts_with("did you mean `TAGS`?"));
}

#[test]
fn error_spec_shape() {
    let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"type:String\"] }";
    let e = one_error(src, 1, 36, "unknown key `type`");
    assert!(e.help.unwrap_or_default().starts_with("did you mean `Type`?"));
    let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"String\"] }";
    let e = one_error(src, 1, 36, "expected `Type:<type>` in the declaration of `p`, found `String`");
    assert_eq!(e.help.as_deref(), Some("write `Type:String`"));
    let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"TAGS:QUOTES\"] }";
    one_error(src, 1, 35, "parameter `p` has no `Type:`");
    let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"Type:String,Type:Long\"] }";
    one_error(src, 1, 48, "`Type` is given twice");
    let src = "A { Query=\"x {p}\" Parameters=[\"p\":Type:String] }";
    one_error(src, 1, 35, "expected the declaration of `p` in quotes, found `Type`");
    let src = "A { Query=\"x {p}\" Parameters=[\"p\"=\"Type:String\"] }";
    one_error(src, 1, 34, "expected `:` after parameter name `p`, found `=`");
    let src = "A { Query=\"x {my-name}\" Parameters=[\"my-name\":\"Type:String\"] }";
    let errors = parse_err(src);
    assert_eq!((errors[0].line, errors[0].column), (1, 37), "{}", render(&errors));
    assert!(errors[0].message.contains("cannot be used as a `{placeholder}`"));
}

#[test]
fn error_placeholders() {
    let src = "A {\n  Query=\"call p({__NAME__}, {__PASWORD__})\"\n  Parameters=[\"__NAME__\":\"Type:String\", \"__PASSWORD__\":\"Type:GuardedString\"]\n}";
    let errors = parse_err(src);
    assert_eq!(errors.len(), 2, "{}", render(&errors));
    assert_eq!((errors[0].line, errors[0].column), (2, 29));
    assert!(errors[0].message.contains("placeholder `{__PASWORD__}` is not declared"));
    assert!(errors[0].help.as_deref().unwrap_or("").starts_with("did you mean `{__PASSWORD__}`?"));
    assert_eq!((errors[1].line, errors[1].column), (3, 41));
    assert!(errors[1].message.contains("parameter `__PASSWORD__` is declared but the Query of `A` never uses it"));
    // An unused parameter on its own.
    let src = "A { Query=\"call p()\"\n Parameters=[\"__NAME__\":\"Type:String\"] }";
    let e = one_error(src, 2, 14, "parameter `__NAME__` is declared but");
    assert_eq!(e.help.as_deref(), Some("use it in the Query as `{__NAME__}`, or remove it from `Parameters`"));
    // Unclosed and blank-padded placeholders of declared parameters.
    let src = "A { Query=\"call p({__NAME__, { __X__ })\" Parameters=[\"__NAME__\":\"Type:String\",\"__X__\":\"Type:Long\"] }";
    let errors = parse_err(src);
    assert_eq!(errors.len(), 2, "{}", render(&errors));
    assert_eq!((errors[0].line, errors[0].column), (1, 19));
    assert!(errors[0].message.contains("placeholder `{__NAME__` is missing its closing `}`"));
    assert_eq!((errors[1].line, errors[1].column), (1, 30));
    assert!(errors[1].message.contains("placeholder `{ __X__ }` has blanks inside its braces"));
    assert_eq!(errors[1].help.as_deref(), Some("write `{__X__}`"));
}

#[test]
fn literal_braces_warn_and_are_doubled_in_yaml() {
    let src = "A { Query=\"{call p({__NAME__})} -- {} { x\" Parameters=[\"__NAME__\":\"Type:String\"] }";
    let report = parse_provision_queries_report(src);
    assert!(report.errors.is_empty(), "{}", render(&report.errors));
    assert_eq!(report.warnings.len(), 3, "{}", render(&report.warnings));
    assert_eq!((report.warnings[0].line, report.warnings[0].column), (1, 12));
    assert!(report.warnings[0].help.as_deref().unwrap_or("").contains("JDBC"));
    let yaml = to_connector_queries_yaml(&report.queries, "n", "postgres");
    assert!(yaml.contains(r#"query: "{{call p({__NAME__})}} -- {{}} {{ x""#), "{yaml}");
}

#[test]
fn error_duplicates() {
    let src = "A { Query=\"select 1\" }\nB { Query=\"select 2\" }\nA { Query=\"select 3\" }\n";
    let e = one_error(src, 3, 1, "duplicate entry `A`");
    assert_eq!(e.help.as_deref(), Some("the first `A` is at line 1, column 1; rename or remove one of them"));
    let src = "A {\n Query=\"select {p}\"\n Parameters=[\"p\":\"Type:String\", \"p\":\"Type:Long\"]\n}";
    one_error(src, 3, 33, "parameter `p` is declared twice in entry `A`");
    let src = "A {\n Query=\"select 1\"\n Query=\"select 2\"\n}";
    one_error(src, 3, 2, "`Query` is set twice in entry `A`");
    let src = "A { Query=\"select {p}\" Parameters=[\"p\":\"Type:String\"] Parameters=[] }";
    one_error(src, 1, 55, "`Parameters` is set twice");
}

#[test]
fn error_unknown_property() {
    let src = "A {\n  Querry=\"select 1\"\n}";
    let e = one_error(src, 2, 3, "unknown property `Querry` in entry `A`");
    assert_eq!(e.help.as_deref(), Some("did you mean `Query`? (names are case-sensitive)"));
    let src = "A {\n  Query=\"select 1\"\n  Timeout=\"30\"\n}";
    let e = one_error(src, 3, 3, "unknown property `Timeout`");
    assert!(e.help.unwrap_or_default().contains("remove `Timeout`"));
}

#[test]
fn error_braces() {
    // A missing `}` is reported at the entry's `{`, and the next entry is still read.
    let src = "A {\n  Query=\"select 1\"\nB {\n  Query=\"select {x}\"\n}\n";
    let errors = parse_err(src);
    assert_eq!(errors.len(), 2, "{}", render(&errors));
    assert_eq!((errors[0].line, errors[0].column), (1, 3));
    assert!(errors[0].message.contains("entry `A` is not closed before the next entry `B` starts at line 3"));
    assert_eq!((errors[1].line, errors[1].column), (4, 17));
    one_error("A {\n  Query=\"select 1\"\n", 1, 3, "entry `A` is never closed");
    one_error("A { Query=\"select 1\" }\n}\n", 2, 1, "unexpected `}`");
    one_error("A Query=\"select 1\" }\n", 1, 3, "expected `{` after the entry name `A`, found `Query`");
    one_error("A {\n  Query=\"select 1\" ]\n}", 2, 20, "unexpected `]` in entry `A`");
    one_error("\n\n  42 A { Query=\"x\" }", 3, 3, "expected an entry name such as `CREATE_USER`, found `4`");
}

#[test]
fn error_parameter_lists() {
    let src = "A {\n  Query=\"select {p}\"\n  Parameters=[\"p\":\"Type:String\"\n}";
    let e = one_error(src, 3, 32, "expected `]` to close the `Parameters` list opened at line 3, column 14, found `}`");
    assert_eq!(e.help.as_deref(), Some("add `]` after the last parameter"));
    let src = "A {\n  Query=\"select {p} {q}\"\n  Parameters=[\"p\":\"Type:String\" \"q\":\"Type:String\"]\n}";
    one_error(src, 3, 33, "expected `,` or `]` after parameter `p`, found a string");
    let src = "A { Query=\"select {p}\" Parameters=[\"p\":\"Type:String\",,] }";
    one_error(src, 1, 54, "unexpected `,`");
    let src = "A { Query=\"select {p}\" Parameters=\"p:String\" }";
    one_error(src, 1, 35, "expected `[` after `Parameters=`, found a string");
}

#[test]
fn error_missing_or_empty_query() {
    one_error("A { Parameters=[] }", 1, 1, "entry `A` has no `Query=`");
    one_error("A { Query=\"  \" }", 1, 11, "the `Query` of entry `A` is empty");
}

#[test]
fn error_escapes_nul_and_comments() {
    one_error("A { Query=\"a\\qb\" }", 1, 13, "unknown escape `\\q`");
    one_error("A { Query=\"a\\u00\" }", 1, 13, "`\\u` must be followed by exactly 4 hexadecimal digits");
    one_error("A { Query=\"a\\u0000\" }", 1, 13, "NUL character");
    one_error("A { Query=\"a\0\" }", 1, 13, "NUL character");
    one_error("A { Query=\"a\" }\n/* never\nclosed", 2, 1, "this `/*` comment is never closed");
    // Known escapes decode.
    let q = parse_ok("A { Query=\"\\u00e9\\n\\'\\$\" }");
    assert_eq!(q[0].query, "é\n'$");
}

#[test]
fn all_errors_of_a_file_at_once_sorted() {
    let src = "\
# three broken entries and one good one
CREATE_USER {
    Query=\"call create_user({__NAME__}, {__PASSWORD__})\"
    Parameters=[\"__NAME__\":\"Type:Strin\", \"__PASSWORD__\":\"Type:GuardedString,TAGS:QUOTE\"]
}
DELETE_USER { Query:\"call drop_user({__NAME__})\" Parameters=[\"__NAME__\":\"Type:String\"] }
GOOD { Query=\"select 1\" }
CREATE_USER { Query=\"call x()\" }
";
    let errors = parse_err(src);
    let at: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at, [(4, 34), (4, 82), (6, 20), (8, 1)], "{}", render(&errors));
}

#[test]
fn warnings_for_typography_inside_the_query() {
    let src = "A { Query=\"select \u{2018}x\u{2019} from\u{A0}dual\" }";
    let report = parse_provision_queries_report(src);
    assert!(report.errors.is_empty());
    assert_eq!(report.warnings.len(), 1);
    assert_eq!((report.warnings[0].line, report.warnings[0].column), (1, 19));
    let yaml = to_connector_queries_yaml(&report.queries, "n", "postgres");
    assert!(yaml.contains("query: \"select \u{2018}x\u{2019} from\\_dual\""), "{yaml}");
    let empty = parse_provision_queries_report("# nothing here\n");
    assert!(empty.errors.is_empty() && empty.queries.is_empty());
    assert!(empty.warnings[0].message.contains("no entries"));
    assert_eq!(
        to_connector_queries_yaml(&[], "q", "sqlite"),
        "apiVersion: provflow/v1\nkind: ConnectorQueries\nname: q\ndialect: sqlite\nqueries: {}\n"
    );
}

#[test]
fn yaml_quotes_what_needs_quoting() {
    let q = vec![LegacyQuery {
        name: "null".into(),
        query: "x {yes}".into(),
        params: vec![param("yes", "String", None)],
        line: 1,
    }];
    let yaml = to_connector_queries_yaml(&q, "my set: 1", "on");
    assert!(yaml.contains("name: \"my set: 1\"\ndialect: \"on\"\n"), "{yaml}");
    assert!(yaml.contains("  \"null\":\n") && yaml.contains("      \"yes\": String\n"), "{yaml}");
    let v = yaml_value(&yaml);
    assert_eq!(v["name"], "my set: 1");
    assert_eq!(v["queries"]["null"]["params"]["yes"], "String");
}

/// A tiny deterministic PRNG (xorshift64*), so the fuzz tests need no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn yaml_double_quoted_round_trips_any_text() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let interesting = [
        '\\',
        '"',
        '\'',
        '\0',
        '\u{7}',
        '\t',
        '\n',
        '\r',
        '\u{1B}',
        '\u{7F}',
        '\u{85}',
        '\u{A0}',
        '\u{2028}',
        '\u{2029}',
        '\u{FEFF}',
        '\u{200B}',
        '\u{FFFE}',
        '\u{FFFF}',
        '#',
        ':',
        '{',
        '}',
        '-',
        ' ',
        'é',
        '\u{1F600}',
    ];
    for _ in 0..2000 {
        let len = rng.below(20);
        let s: String = (0..len)
            .map(|_| {
                if rng.below(2) == 0 {
                    interesting[rng.below(interesting.len())]
                } else {
                    char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('x')
                }
            })
            .collect();
        let yaml = format!("v: {}\n", yaml_double_quoted(&s));
        let v = yaml_value(&yaml);
        assert_eq!(v["v"].as_str(), Some(s.as_str()), "{yaml:?}");
        let yaml = format!("v: {}\n", yaml_scalar(&s));
        assert_eq!(yaml_value(&yaml)["v"].as_str(), Some(s.as_str()), "{yaml:?}");
    }
}

fn check_invariants(src: &str) {
    let report = parse_provision_queries_report(src);
    let lines = src.split(['\n', '\r']).count() + 1;
    for e in report.errors.iter().chain(&report.warnings) {
        assert!(e.line >= 1 && e.column >= 1 && e.line <= lines, "bad position {e} in {src:?}");
        assert!(!e.message.is_empty());
    }
    if report.errors.is_empty() {
        let yaml = to_connector_queries_yaml(&report.queries, "fuzz", "sqlite");
        let v = yaml_value(&yaml);
        for q in &report.queries {
            assert_eq!(v["queries"][q.name.as_str()]["query"].as_str(), Some(to_new_query_text(&q.query).as_str()));
        }
    }
}

#[test]
fn fuzz_random_bytes_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..3000 {
        let len = rng.below(300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check_invariants(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn fuzz_token_soup_never_panics() {
    let pieces = [
        "A",
        "CREATE_USER",
        "Query",
        "Parameters",
        "Type",
        "TAGS",
        "=",
        ":",
        ",",
        ";",
        "+",
        "{",
        "}",
        "[",
        "]",
        "\"",
        "'",
        "\"\"\"",
        "\u{201C}",
        "\u{201D}",
        "\u{2019}",
        "\\",
        "\\u",
        "\\u12",
        "\\\"",
        "#",
        "//",
        "/*",
        "*/",
        "\n",
        "\r\n",
        "\r",
        " ",
        "\t",
        "{__NAME__}",
        "{__NAME__",
        "\"__NAME__\"",
        "\"Type:String\"",
        "\"Type:GuardedString,TAGS:QUOTES\"",
        "Type:String|",
        "\0",
        "\u{FEFF}",
        "\u{A0}",
        "é",
        "{call",
        "Parameters=[",
        "Query=\"",
        "\"]",
        "[:]",
    ];
    let mut rng = Rng(7);
    for _ in 0..5000 {
        let n = rng.below(60);
        let src: String = (0..n).map(|_| pieces[rng.below(pieces.len())]).collect();
        check_invariants(&src);
    }
}

#[test]
fn fuzz_every_truncation_and_deletion_of_a_valid_file() {
    let src = "# c\nCREATE_USER {\n  Query=\"call p({__NAME__}, {__PASSWORD__}) \\\"x\\\"\" + '''y\n'''\n  Parameters=[\"__NAME__\":\"Type:String,TAGS:IDENTIFIER\", __PASSWORD__:\u{201C}Type:GuardedString\u{201D},]\n}\nB { Query=\"select 1\" Parameters=[:] } /* end */\n";
    assert_eq!(parse_ok(src).len(), 2);
    let chars: Vec<char> = src.chars().collect();
    for i in 0..=chars.len() {
        let truncated: String = chars.iter().take(i).collect();
        check_invariants(&truncated);
        let deleted: String = chars.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, c)| c).collect();
        check_invariants(&deleted);
    }
}

#[test]
fn big_inputs_stay_fast() {
    let mut src = String::new();
    for i in 0..2000 {
        src.push_str(&format!(
            "Q{i} {{ Query=\"call p({{__NAME__}}, {{__PASSWORD__}})\" Parameters=[\"__NAME__\":\"Type:String\", \"__PASSWORD__\":\"Type:GuardedString,TAGS:QUOTES\"] }}\n"
        ));
    }
    let started = std::time::Instant::now();
    assert_eq!(parse_ok(&src).len(), 2000);
    // Pathological: one huge unclosed bracket / brace soup.
    check_invariants(&"[".repeat(100_000));
    check_invariants(&"{".repeat(100_000));
    check_invariants(&"A { Parameters=[".repeat(10_000));
    check_invariants(&"}".repeat(100_000));
    check_invariants(&format!("A {{ Query=\"{}\" }}", "{".repeat(100_000)));
    assert!(started.elapsed().as_secs() < 20, "too slow: {:?}", started.elapsed());
}

#[test]
fn output_is_deterministic() {
    let src = "B { Query=\"x {b} {a}\" Parameters=[\"b\":\"Type:Long\", \"a\":\"Type:Date,TAGS:QUOTES\"] }\nA { Query=\"y\" }";
    let first = parse_ok(src);
    let yaml = to_connector_queries_yaml(&first, "n", "mariadb");
    for _ in 0..5 {
        assert_eq!(to_connector_queries_yaml(&parse_ok(src), "n", "mariadb"), yaml);
    }
    assert!(yaml.find("  B:").unwrap_or(usize::MAX) < yaml.find("  A:").unwrap_or(0));
    assert!(yaml.find("      b: Long").unwrap_or(usize::MAX) < yaml.find("      a: {").unwrap_or(0));
}
