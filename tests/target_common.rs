//! Helpers shared by the target tests (tests/target_pg.rs, tests/target_mariadb.rs): the DBUM
//! query set of definitions/ and argument vectors for its queries.

use provflow_compiler::source::FsReader;
use provflow_ir as ir;
use provflow_runner::value::Value;
use provflow_tests::repo_root;

/// The compiled query set `set` of definitions/ and the text of its install script `script`
/// (relative to definitions/dbum).
pub fn dbum_queries(set: &str, script: &str) -> (ir::QuerySet, String) {
    let c =
        provflow_compiler::compile_paths(&FsReader, &[repo_root().join("definitions")]).expect("definitions readable");
    let bundle = c.bundle.unwrap_or_else(|| panic!("definitions do not compile: {:?}", c.diagnostics));
    let found = bundle.query_sets.into_iter().find(|q| q.name == set).unwrap_or_else(|| panic!("no query set {set}"));
    let sql = std::fs::read_to_string(repo_root().join("definitions/dbum").join(script)).expect("install script");
    (found, sql)
}

pub fn query<'a>(set: &'a ir::QuerySet, name: &str) -> &'a ir::Query {
    set.queries.iter().find(|q| q.name == name).unwrap_or_else(|| panic!("no query {name}"))
}

/// The values of a query's parameters by name (OUT parameters: null).
pub fn values(q: &ir::Query, given: &[(&str, Value)]) -> Vec<Value> {
    q.params
        .iter()
        .map(|p| given.iter().find(|(n, _)| *n == p.name).map(|(_, v)| v.clone()).unwrap_or(Value::Null))
        .collect()
}

pub fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}
