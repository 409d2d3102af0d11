//! `compile --out`, the IR's determinism and version check, `graph`, `import`, and the
//! output formats, driven through the binary.

use provflow_tests::TempProject;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

fn project_with_definitions() -> TempProject {
    let p = TempProject::new();
    p.copy_from_repo("definitions");
    p
}

#[test]
fn the_ir_is_byte_identical_for_identical_input_and_carries_version_and_hash() {
    let p = project_with_definitions();
    let first = p.run(&["compile", "definitions", "--out", "a.json"], DEADLINE);
    assert_eq!(first.code(), Some(0), "{first}");
    let second = p.run(&["compile", "definitions", "--out", "b.json"], DEADLINE);
    assert_eq!(second.code(), Some(0), "{second}");
    let a = std::fs::read(p.path().join("a.json")).expect("a.json");
    let b = std::fs::read(p.path().join("b.json")).expect("b.json");
    assert!(a == b, "two compiles of the same definitions differ");

    let ir: serde_json::Value = serde_json::from_slice(&a).expect("the IR is JSON");
    assert_eq!(ir["ir_version"], provflow_ir::IR_VERSION);
    let hash = ir["hash"].as_str().expect("hash");
    assert_eq!(hash.len(), 64, "a SHA-256 in hex: {hash}");
    assert!(ir["processes"].as_array().is_some_and(|p| !p.is_empty()));

    // A change of any definition changes the hash.
    let path = p.path().join("definitions/dbum/process-sqlite.yaml");
    let text = std::fs::read_to_string(&path).expect("process file");
    std::fs::write(&path, text.replacen("description: Create the database user", "description: Create the user", 1))
        .expect("write");
    let third = p.run(&["compile", "definitions", "--out", "c.json"], DEADLINE);
    assert_eq!(third.code(), Some(0), "{third}");
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("c.json")).expect("c.json")).expect("json");
    assert_ne!(c["hash"], ir["hash"], "the hash ignored a changed description");
}

#[test]
fn the_runner_refuses_an_ir_of_another_version() {
    let p = project_with_definitions();
    let out = p.run(&["compile", "definitions", "--out", "ir.json"], DEADLINE);
    assert_eq!(out.code(), Some(0), "{out}");
    let text = std::fs::read_to_string(p.path().join("ir.json")).expect("ir.json");
    let mut ir: serde_json::Value = serde_json::from_str(&text).expect("json");
    ir["ir_version"] = serde_json::json!(999);
    p.write("future.json", serde_json::to_string(&ir).expect("json"));
    let out = p.run(&["plan", "future.json", "--process", "DBUM Account", "--user", "JDOE"], DEADLINE);
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("IR version 999"), "{out}");
}

#[test]
fn the_runner_accepts_the_ir_file_in_place_of_definitions() {
    let p = project_with_definitions();
    assert_eq!(p.run(&["compile", "definitions", "--out", "ir.json"], DEADLINE).code(), Some(0));
    let out = p.run(&["target", "install", "dbum-sqlite", "ir.json"], DEADLINE);
    assert_eq!(out.code(), Some(0), "{out}");
    let out = p.run(
        &[
            "user",
            "create",
            "JDOE",
            "--attr",
            "usr_first_name=John",
            "--attr",
            "usr_last_name=Doe",
            "--attr",
            "usr_udf_cost_center=CC-1",
        ],
        DEADLINE,
    );
    assert_eq!(out.code(), Some(0), "{out}");
    let plan = |ir: &str| {
        let args = ["plan", ir, "--process", "DBUM Account", "--user", "JDOE", "--secret", "password=env:PW"];
        provflow_tests::run_bounded(p.provflow().env("PW", "correct horse").args(args), DEADLINE)
    };
    let out = plan("ir.json");
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("insert_package"), "{out}");
    assert!(!out.stdout.contains("correct horse") && !out.stderr.contains("correct horse"), "{out}");

    // An IR of the oldest readable version (before templates had a sender and targets a call
    // limit) still runs: state stores hold such bundles after an upgrade. One older than that
    // is refused.
    let mut ir: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("ir.json")).expect("ir.json")).expect("json");
    ir["ir_version"] = serde_json::json!(provflow_ir::OLDEST_READABLE_IR_VERSION);
    for template in ir["templates"].as_array_mut().expect("templates") {
        template.as_object_mut().expect("template").remove("from");
    }
    for target in ir["targets"].as_array_mut().expect("targets") {
        target.as_object_mut().expect("target").remove("max_concurrent_calls");
    }
    p.write("old.json", serde_json::to_string(&ir).expect("json"));
    ir["ir_version"] = serde_json::json!(provflow_ir::OLDEST_READABLE_IR_VERSION - 1);
    p.write("older.json", serde_json::to_string(&ir).expect("json"));
    for (file, code) in [("old.json", 0), ("older.json", 2)] {
        let out = plan(file);
        assert_eq!(out.code(), Some(code), "{file}: {out}");
    }
}

#[test]
fn github_format_prints_annotations() {
    let p = TempProject::new();
    p.write("bad.yaml", "apiVersion: provflow/v1\nkind: Target\nname: t\ndialect: postgress\nqueries: q\n");
    let out = p.run(&["compile", "bad.yaml", "--format", "github"], DEADLINE);
    assert_eq!(out.code(), Some(1), "{out}");
    let line = out.stdout.lines().find(|l| l.contains("PF105")).unwrap_or_else(|| panic!("no PF105 line\n{out}"));
    assert!(line.starts_with("::error file=bad.yaml,line=4,col=10,"), "{line}");
    assert!(line.contains("did you mean `postgres`?"), "{line}");
}

#[test]
fn deny_warnings_turns_a_warning_into_a_failure() {
    let p = project_with_definitions();
    // A process whose tasks are all optional: PF207 is a warning.
    let path = p.path().join("definitions/dbum/process-sqlite.yaml");
    let text = std::fs::read_to_string(&path).expect("process file");
    std::fs::write(&path, text.replace("required_for_completion: true", "required_for_completion: false"))
        .expect("write");
    let lenient = p.run(&["compile", "definitions", "--format", "json"], DEADLINE);
    assert_eq!(lenient.code(), Some(0), "{lenient}");
    assert!(lenient.json_codes().contains(&"PF207".to_string()), "{lenient}");
    let strict = p.run(&["compile", "definitions", "--deny-warnings"], DEADLINE);
    assert_eq!(strict.code(), Some(1), "{strict}");
}

#[test]
fn graph_draws_dependencies_generated_undo_and_manual_tasks() {
    let p = project_with_definitions();
    let mermaid = p.run(&["graph", "definitions", "--process", "DBUM Account"], DEADLINE);
    assert_eq!(mermaid.code(), Some(0), "{mermaid}");
    assert!(mermaid.stdout.starts_with("flowchart TD"), "{mermaid}");
    assert!(mermaid.stdout.contains("\"Create User\""), "{mermaid}");
    assert!(mermaid.stdout.contains("-.->|undo|"), "no undo edge\n{mermaid}");
    assert!(mermaid.stdout.contains("-.->|\"SUCCESS\"|"), "no generated edge\n{mermaid}");

    let dot = p.run(&["graph", "definitions", "--process", "Badge Access", "--format", "dot"], DEADLINE);
    assert_eq!(dot.code(), Some(0), "{dot}");
    assert!(dot.stdout.starts_with("digraph"), "{dot}");
    assert!(dot.stdout.contains("parallelogram"), "manual tasks are not marked\n{dot}");

    let unknown = p.run(&["graph", "definitions", "--process", "DBUM Acount"], DEADLINE);
    assert_eq!(unknown.code(), Some(2), "{unknown}");
    assert!(unknown.stderr.contains("did you mean `DBUM Account`?"), "{unknown}");
}

#[test]
fn import_converts_the_legacy_seed_entry_to_yaml_that_compiles() {
    let p = TempProject::new();
    p.write(
        "provision.queries",
        "# the seed's entry\nCREATE_PASSWORD_USER { Query=\"call insertPackage ({__NAME__},{__PASSWORD__})\" \
         Parameters=[\"__NAME__\":\"Type:String\", \"__PASSWORD__\":\"Type:GuardedString,TAGS:DOUBLEQUOTES\"] }\n\
         DELETE_USER { Query=\"DROP USER {__UID__} CASCADE\" Parameters=[\"__UID__\":\"Type:String\"] }\n\
         RESET_PASSWORD { Query=\"ALTER USER {__UID__} PASSWORD {__PASSWORD__}\" \
         Parameters=[\"__UID__\":\"Type:String,TAGS:DOUBLEQUOTES\", \"__PASSWORD__\":\"Type:GuardedString,TAGS:DOUBLEQUOTES\"] }\n\
         ENABLE_USER { Query=\"{ call enable_user({__UID__}) }\" Parameters=[\"__UID__\":\"Type:String\"] }\n",
    );
    let out = p.run(
        &["import", "provision-queries", "provision.queries", "--dialect", "postgres", "--name", "dbum-legacy"],
        DEADLINE,
    );
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("kind: ConnectorQueries"), "{out}");
    // DOUBLEQUOTES translated by where the value stands: a call argument is bound; in DDL a
    // name is an IDENTIFIER and a password a QUOTES literal; each translation is noted.
    assert!(out.stdout.contains("      __PASSWORD__: GuardedString\n"), "{out}");
    assert!(out.stdout.contains("__UID__: { type: String, tags: [IDENTIFIER] }"), "{out}");
    assert!(out.stdout.contains("__PASSWORD__: { type: GuardedString, tags: [QUOTES] }"), "{out}");
    assert_eq!(out.stdout.matches("      # __").count(), 4, "{out}");
    // A JDBC escape becomes the plain call, noted.
    assert!(out.stdout.contains("    query: \"call enable_user({__UID__})\"\n"), "{out}");
    assert!(out.stdout.contains("# query: the JDBC escape `{call …}` became the plain `call`"), "{out}");
    p.write("imported.yaml", &out.stdout);
    let compiled = p.run(&["compile", "imported.yaml", "--format", "json"], DEADLINE);
    assert_eq!(compiled.code(), Some(0), "the imported YAML does not compile\n{compiled}");
}

#[test]
fn import_for_sqlite_stubs_the_called_procedures_and_the_compiler_asks_for_their_bodies() {
    let p = TempProject::new();
    p.write(
        "provision.queries",
        "CREATE_PASSWORD_USER { Query=\"call insertPackage ({__NAME__},{__PASSWORD__})\" \
         Parameters=[\"__NAME__\":\"Type:String\", \"__PASSWORD__\":\"Type:GuardedString\"] }\n",
    );
    let out = p.run(&["import", "provision-queries", "provision.queries", "--dialect", "sqlite"], DEADLINE);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("procedures:\n"), "{out}");
    assert!(out.stdout.contains("    params: [__NAME__, __PASSWORD__]\n"), "{out}");
    p.write("imported.yaml", &out.stdout);
    let compiled = p.run(&["compile", "imported.yaml", "--format", "json"], DEADLINE);
    assert_eq!(compiled.code(), Some(1), "{compiled}");
    let diagnostics: Vec<serde_json::Value> =
        compiled.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(diagnostics.len(), 1, "{compiled}");
    assert_eq!(diagnostics[0]["code"], "PF313");
    assert!(diagnostics[0]["message"].as_str().unwrap().ends_with("write its body"), "{compiled}");
    let stub_line = out.stdout.lines().position(|l| l.starts_with("    body:")).unwrap() as i64 + 1;
    assert_eq!(diagnostics[0]["line"], stub_line, "{compiled}");
    // Written, it compiles.
    let written = out.stdout.replace(
        "body: \"-- write the body of insertPackage\"",
        "body: \"insert into users(name, password) values (:__NAME__, :__PASSWORD__)\"",
    );
    p.write("imported.yaml", written);
    let compiled = p.run(&["compile", "imported.yaml"], DEADLINE);
    assert_eq!(compiled.code(), Some(0), "{compiled}");
}

#[test]
fn import_reports_malformed_legacy_input_by_line_and_column() {
    let p = TempProject::new();
    p.write(
        "broken.queries",
        "CREATE_USER { Query=\"call p({__NAME__})\" Parameters=[\"__NAME__\":\"Type:String\"] }\n\
         DELETE_USER { Query:\"call d({__NAME__})\" Parameters=[\"__NAME__\":\"Type:Strin\"] }\n\
         IS_LOCKED { Query=\"{? = call is_locked({__NAME__})}\" Parameters=[\"__NAME__\":\"Type:String\"] }\n",
    );
    // No dialect: refused, naming them; provflow does not guess.
    let out = p.run(&["import", "provision-queries", "broken.queries"], DEADLINE);
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("--dialect postgres, --dialect mariadb or --dialect sqlite"), "{out}");
    let out = p.run(&["import", "provision-queries", "broken.queries", "--dialect", "postgres"], DEADLINE);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("broken.queries:2:"), "errors must name the line\n{out}");
    // The good entry is still converted and printed; the bad one is not.
    assert!(out.stdout.contains("CREATE_USER:") && !out.stdout.contains("DELETE_USER"), "{out}");
    assert!(out.stderr.contains("broken.queries:3:") && out.stderr.contains("select f(...) as result"), "{out}");
    assert!(!out.stdout.contains("IS_LOCKED"), "{out}");
    assert!(out.stderr.contains("1 entry converted and printed"), "{out}");
}

/// Links back into the tree (one alone repeats every file; two never end when followed) and a
/// link to a file already in the tree: the compile finishes at once and reads each file once,
/// so no definition is reported twice.
#[cfg(unix)]
#[test]
fn symlink_loops_and_duplicate_links_compile_each_definition_once() {
    use std::os::unix::fs::symlink;
    let p = project_with_definitions();
    let summary = |out: &provflow_tests::RunOutput| {
        format!("{}{}", out.stdout, out.stderr).lines().find(|l| l.contains("compile ok")).map(str::to_string)
    };
    let plain = p.run(&["compile", "definitions"], DEADLINE);
    assert_eq!(plain.code(), Some(0), "{plain}");

    let defs = p.path().join("definitions");
    symlink(".", defs.join("loop")).expect("link");
    symlink("..", defs.join("dbum/up")).expect("link");
    symlink("process-sqlite.yaml", defs.join("dbum/same-process.yaml")).expect("link");
    let linked = p.run(&["compile", "definitions"], Duration::from_secs(30));
    assert_eq!(linked.code(), Some(0), "{linked}");
    // The same files counted: "compile ok: 0 errors and 0 warnings in N files".
    assert_eq!(summary(&linked), summary(&plain), "{linked}");
}

/// The importer caps its input like the compiler: an endless input (`/dev/zero`) and a file
/// over the limit are refused after reading just past the limit, under the memory ceiling.
#[test]
fn import_refuses_input_over_the_limit() {
    let p = TempProject::new();
    let entry = "CREATE_USER { Query=\"call p({__NAME__})\" Parameters=[\"__NAME__\":\"Type:String\"] }\n";
    let big = entry.repeat(40 * 1024 * 1024 / entry.len());
    p.write("huge.queries", big);
    for input in ["huge.queries", "/dev/zero"] {
        let out = p.run(&["import", "provision-queries", input, "--dialect", "sqlite"], DEADLINE);
        assert_eq!(out.code(), Some(1), "{input}: {out}");
        assert!(out.stderr.contains("larger than 32 MiB"), "{input}: {out}");
        assert!(out.stdout.is_empty(), "{input}: nothing is printed on failure\n{out}");
    }
}
