//! Scenarios: every name a step uses is resolved here, so that `provflow test` never fails on
//! a typo halfway through a run against a real database.
use super::{ptr, unknown, Ctx, Findings};
use crate::diagnostic::{Finding, Part};
use crate::query::value_type;
use crate::suggest::did_you_mean;
use crate::syntax::{self, FieldSpec, Scalar, Step};
use provflow_ir as ir;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub fn lower(
    ctx: &Ctx<'_>,
    processes: &[Arc<ir::Process>],
    _targets: &[ir::Target],
    users: &ir::UserSchema,
    out: &mut Findings,
) -> Vec<ir::Scenario> {
    // Target indices are the ctx order, which the bundle's targets follow.
    ctx.scenarios
        .iter()
        .map(|named| {
            let mut pass = Pass { ctx, doc: named.doc, processes, users, out: &mut *out, created: BTreeSet::new() };
            let steps = named
                .def
                .steps
                .iter()
                .enumerate()
                .map(|(i, step)| pass.step(i, step))
                .collect::<Vec<ir::ScenarioStep>>();
            ir::Scenario { name: named.name.to_owned(), steps, location: ctx.location(named.doc, "") }
        })
        .collect()
}

struct Pass<'c, 'a> {
    ctx: &'c Ctx<'a>,
    doc: usize,
    processes: &'c [Arc<ir::Process>],
    users: &'c ir::UserSchema,
    out: &'c mut Findings,
    /// Logins created by the steps so far.
    created: BTreeSet<String>,
}

/// The kind of a step as written (its key), for pointers.
fn key(step: &Step) -> &'static str {
    match step {
        Step::CreateUser(_) => "create_user",
        Step::ModifyUser(_) => "modify_user",
        Step::EnableUser(_) => "enable_user",
        Step::DisableUser(_) => "disable_user",
        Step::DeleteUser(_) => "delete_user",
        Step::LockUser(_) => "lock_user",
        Step::UnlockUser(_) => "unlock_user",
        Step::Provision(_) => "provision",
        Step::SetForm(_) => "set_form",
        Step::CompleteTask(_) => "complete_task",
        Step::RejectTask(_) => "reject_task",
        Step::Recon(_) => "recon",
        Step::Resume(_) => "resume",
        Step::ExpectAccount(_) => "expect_account",
        Step::ExpectTask(_) => "expect_task",
        Step::ExpectSql(_) => "expect_sql",
        Step::ExpectNotification(_) => "expect_notification",
    }
}

fn scalar_json(s: &Scalar) -> serde_json::Value {
    match s {
        Scalar::String(v) => serde_json::Value::String(v.clone()),
        Scalar::Integer(i) => serde_json::Value::from(*i),
        Scalar::Number(n) => serde_json::Value::from(*n),
        Scalar::Boolean(b) => serde_json::Value::Bool(*b),
    }
}

impl Pass<'_, '_> {
    fn push(&mut self, f: Finding) {
        self.out.push((self.doc, f));
    }

    fn step(&mut self, i: usize, step: &Step) -> ir::ScenarioStep {
        let base = format!("/steps/{i}/{}", key(step));
        let location = self.ctx.location(self.doc, &format!("/steps/{i}"));
        let action = match step {
            Step::CreateUser(attrs) => {
                let attributes = self.attributes(attrs, &base);
                for a in self.users.attributes.iter().filter(|a| a.required) {
                    if !attrs.contains_key(&a.name) {
                        self.push(Finding::error(
                            "PF515",
                            format!("`create_user` needs the required attribute `{}`", a.name),
                            base.clone(),
                            Part::Key,
                            Some(format!("add `{}: ...` ({})", a.name, a.label)),
                        ));
                    }
                }
                if let Some(login) = attributes.get("usr_login") {
                    self.created.insert(login.clone());
                }
                ir::StepAction::CreateUser { attributes }
            }
            Step::ModifyUser(m) => {
                let user = self.user(&m.user, &format!("{base}/user"));
                let attributes = self.attributes(&m.attributes, &format!("{base}/attributes"));
                ir::StepAction::ModifyUser { user, attributes }
            }
            Step::EnableUser(u) => ir::StepAction::EnableUser { user: self.user(u, &base) },
            Step::DisableUser(u) => ir::StepAction::DisableUser { user: self.user(u, &base) },
            Step::DeleteUser(u) => ir::StepAction::DeleteUser { user: self.user(u, &base) },
            Step::LockUser(u) => ir::StepAction::LockUser { user: self.user(u, &base) },
            Step::UnlockUser(u) => ir::StepAction::UnlockUser { user: self.user(u, &base) },
            Step::Provision(p) | Step::SetForm(p) => {
                let process = self.process(&p.process, &base);
                let user = self.user(&p.user, &format!("{base}/user"));
                let form = self.form(process, &p.form, &base);
                let process = process.unwrap_or(0);
                if matches!(step, Step::Provision(_)) {
                    ir::StepAction::Provision { process, user, form }
                } else {
                    ir::StepAction::SetForm { process, user, form }
                }
            }
            Step::CompleteTask(t) | Step::RejectTask(t) => {
                let process = self.process(&t.process, &base);
                let user = self.user(&t.user, &format!("{base}/user"));
                let task = self.task(process, &t.task, &base);
                let (process, response) = (process.unwrap_or(0), t.response.clone());
                if matches!(step, Step::CompleteTask(_)) {
                    ir::StepAction::CompleteTask { process, user, task, response }
                } else {
                    ir::StepAction::RejectTask { process, user, task, response }
                }
            }
            Step::Recon(r) => ir::StepAction::Recon {
                process: self.process(&r.process, &base).unwrap_or(0),
                csv: r.csv.clone(),
                from_target: r.from_target,
            },
            Step::Resume(_) => ir::StepAction::Resume,
            Step::ExpectAccount(e) => {
                let process = self.process(&e.process, &base);
                let user = self.user(&e.user, &format!("{base}/user"));
                let status = ir::ObjectStatus::parse(&e.status).unwrap_or_else(|| {
                    let known = ir::ObjectStatus::ALL.map(ir::ObjectStatus::as_str);
                    self.push(unknown("PF516", "account status", &e.status, known, format!("{base}/status")));
                    ir::ObjectStatus::None
                });
                ir::StepAction::ExpectAccount { process: process.unwrap_or(0), user, status }
            }
            Step::ExpectTask(e) => {
                let process = self.process(&e.process, &base);
                let user = self.user(&e.user, &format!("{base}/user"));
                let task = self.task(process, &e.task, &base);
                let status = ir::TaskStatus::parse(&e.status).unwrap_or_else(|| {
                    let known = ir::TaskStatus::ALL.map(ir::TaskStatus::as_str);
                    self.push(unknown("PF516", "task status", &e.status, known, format!("{base}/status")));
                    ir::TaskStatus::Pending
                });
                ir::StepAction::ExpectTask { process: process.unwrap_or(0), user, task, status }
            }
            Step::ExpectSql(e) => {
                let target = self.ctx.target(&e.target).unwrap_or_else(|| {
                    let known: Vec<&str> = self.ctx.targets.iter().map(|t| t.name).collect();
                    self.push(unknown("PF512", "target", &e.target, known.iter().copied(), format!("{base}/target")));
                    0
                });
                ir::StepAction::ExpectSql { target, query: e.query.clone(), equals: scalar_json(&e.equals) }
            }
            Step::ExpectNotification(e) => {
                let template = self.ctx.template(&e.template).unwrap_or_else(|| {
                    let known: Vec<&str> = self.ctx.templates.iter().map(|t| t.name).collect();
                    let f = unknown(
                        "PF513",
                        "notification template",
                        &e.template,
                        known.iter().copied(),
                        format!("{base}/template"),
                    );
                    self.push(f);
                    0
                });
                let to = self.user(&e.to, &format!("{base}/to"));
                ir::StepAction::ExpectNotification {
                    template,
                    to,
                    subject_contains: e.subject_contains.clone(),
                    body_contains: e.body_contains.clone(),
                }
            }
        };
        ir::ScenarioStep { location, action }
    }

    /// A login used by a step: warns when no earlier step created it.
    fn user(&mut self, login: &str, pointer: &str) -> String {
        if !self.created.contains(login) {
            let help = match did_you_mean(login, self.created.iter().map(String::as_str)) {
                Some(s) => format!(
                    "did you mean `{s}`? Otherwise add a `create_user` step with `usr_login: {login}` before this one"
                ),
                None => format!("add a `create_user` step with `usr_login: {login}` before this one"),
            };
            self.push(Finding::warning(
                "PF519",
                format!("user `{login}` is not created by an earlier step of this scenario"),
                pointer,
                Part::Value,
                Some(help),
            ));
        }
        login.to_owned()
    }

    fn process(&mut self, name: &str, base: &str) -> Option<usize> {
        let found = self.ctx.process(name);
        if found.is_none() {
            let known: Vec<&str> = self.ctx.processes.iter().map(|p| p.name).collect();
            self.push(unknown("PF510", "process", name, known.iter().copied(), format!("{base}/process")));
        }
        found
    }

    /// A task of a process by name: its index in the lowered (topologically ordered) process.
    fn task(&mut self, process: Option<usize>, name: &str, base: &str) -> usize {
        let Some(p) = process else { return 0 };
        let Some(def) = self.ctx.processes.get(p) else { return 0 };
        if let Some((i, _)) = self.processes.get(p).and_then(|ir| ir.task(name)) {
            return i;
        }
        match def.def.tasks.get_index_of(name) {
            // Only when the process pass lowered nothing for this process (it had errors).
            Some(i) => i,
            None => {
                let mut f =
                    unknown("PF511", "task", name, def.def.tasks.keys().map(String::as_str), format!("{base}/task"));
                f.message = format!("process `{}` has no task `{name}`", def.name);
                self.push(f);
                0
            }
        }
    }

    /// User attributes of `create_user` / `modify_user`.
    fn attributes(&mut self, attrs: &indexmap::IndexMap<String, Scalar>, base: &str) -> BTreeMap<String, String> {
        let mut lowered = BTreeMap::new();
        for (name, value) in attrs {
            let pointer = format!("{base}/{}", ptr(name));
            let Some(attr) = self.users.attributes.iter().find(|a| a.name == *name) else {
                let mut f = unknown(
                    "PF514",
                    "user attribute",
                    name,
                    self.users.attributes.iter().map(|a| a.name.as_str()),
                    pointer,
                );
                f.part = Part::Key;
                if let Some(a) = self.users.attributes.iter().find(|a| a.variable == *name || a.label == *name) {
                    f.help = Some(format!("attributes are named by their internal name here: `{}`", a.name));
                }
                self.push(f);
                continue;
            };
            if attr.ty.is_secret() {
                self.push(Finding::error(
                    "PF518",
                    format!("`{name}` is a secret; a scenario cannot set it"),
                    pointer,
                    Part::Value,
                    Some("secrets never appear in definitions: leave the attribute out".into()),
                ));
                continue;
            }
            let text = value.to_text();
            if let Some(problem) = value_problem(attr, &text) {
                self.push(Finding::error(
                    "PF520",
                    format!("`{text}` is not a valid value of `{name}`: {problem}"),
                    pointer,
                    Part::Value,
                    match did_you_mean(&text, attr.allowed_values.iter().map(String::as_str)) {
                        Some(s) => Some(format!("did you mean `{s}`?")),
                        None if !attr.allowed_values.is_empty() => {
                            Some(format!("the allowed values are: {}", attr.allowed_values.join(", ")))
                        }
                        None => None,
                    },
                ));
            }
            lowered.insert(name.clone(), text);
        }
        lowered
    }

    /// Form values of `provision` / `set_form`.
    fn form(
        &mut self,
        process: Option<usize>,
        form: &indexmap::IndexMap<String, syntax::StepValue>,
        base: &str,
    ) -> BTreeMap<String, ir::StepValue> {
        let fields: Option<Vec<(&str, ir::ValueType)>> = process.and_then(|p| self.ctx.processes.get(p)).map(|p| {
            p.def
                .form
                .fields
                .iter()
                .map(|(name, spec)| {
                    let ty = match spec {
                        FieldSpec::Short(t) => *t,
                        FieldSpec::Long(d) => d.ty,
                    };
                    (name.as_str(), value_type(ty))
                })
                .collect()
        });
        let process_name = process.and_then(|p| self.ctx.processes.get(p)).map_or("", |p| p.name);
        let mut lowered = BTreeMap::new();
        for (name, value) in form {
            let pointer = format!("{base}/form/{}", ptr(name));
            let ty = match &fields {
                None => None,
                Some(fields) => match fields.iter().find(|(n, _)| n == name) {
                    Some((_, ty)) => Some(*ty),
                    None => {
                        let mut f = unknown("PF517", "form field", name, fields.iter().map(|(n, _)| *n), pointer);
                        f.message = format!("process `{process_name}` has no form field `{name}`");
                        f.part = Part::Key;
                        self.push(f);
                        continue;
                    }
                },
            };
            let v = match value {
                syntax::StepValue::Secret(s) => ir::StepValue::SecretEnv(s.secret_env.clone()),
                syntax::StepValue::Plain(p) => {
                    if ty.is_some_and(ir::ValueType::is_secret) {
                        self.push(Finding::error(
                            "PF518",
                            format!("form field `{name}` is a GuardedString given a plain value"),
                            pointer,
                            Part::Value,
                            Some(format!(
                                "secrets never appear in definitions: write `{name}: {{ secret_env: SOME_VARIABLE }}` and set that environment variable when running `provflow test`"
                            )),
                        ));
                    }
                    ir::StepValue::Plain(p.to_text())
                }
            };
            lowered.insert(name.clone(), v);
        }
        lowered
    }
}

/// Why a text value does not fit a user attribute, if it does not. Types are read by
/// [`provflow_lex::values::parse`], as the runner reads them.
fn value_problem(attr: &ir::UserAttribute, text: &str) -> Option<String> {
    if !attr.allowed_values.is_empty() && !attr.allowed_values.iter().any(|v| v == text) {
        return Some("not one of the allowed values".into());
    }
    if attr.max_size.is_some_and(|max| text.chars().count() > max as usize) {
        return Some("longer than `max_size`".into());
    }
    provflow_lex::values::parse(attr.ty, text).err().map(|e| format!("{}; expected {}", e.reason(), e.expected()))
}

#[cfg(test)]
mod tests {
    /// A diagnostic as (code, line, column).
    type Expected = (&'static str, u32, u32);

    use super::super::{Ctx, Findings};
    use crate::{compile_bytes, source::MemoryReader, SourceFile};
    use provflow_ir as ir;

    const DEFS: &str = "apiVersion: provflow/v1
kind: Process
name: DBUM Account
object: DBUM Account
target: t1
form:
  fields:
    username: String
    password: { type: GuardedString, label: Password }
tasks:
  Create User: { manual: true }
  Approve: { manual: true }
---
apiVersion: provflow/v1
kind: Target
name: t1
dialect: sqlite
queries: q
---
";

    /// The scenario diagnostics (PF51x, PF520) of a scenario with these steps.
    fn check(steps: &str) -> Vec<(&'static str, u32, u32)> {
        let yaml = format!("{DEFS}apiVersion: provflow/v1\nkind: Scenario\nname: s\nsteps:\n{steps}");
        compile_bytes("t.yaml", yaml.as_bytes())
            .diagnostics
            .iter()
            .filter(|d| d.code.starts_with("PF51") || d.code == "PF520")
            .map(|d| (d.code, d.line, d.column))
            .collect()
    }

    // The scenario's first step is on line 24.
    const S: u32 = 24;

    #[test]
    fn diagnostics() {
        let create = "  - create_user: { usr_login: JDOE }\n";
        let cases: Vec<(String, Vec<Expected>)> = vec![
            (
                format!(
                    "{create}  - provision: {{ process: DBUM Account, user: JDOE, form: {{ password: {{ secret_env: PW }} }} }}\n  - expect_task: {{ process: DBUM Account, user: JDOE, task: Approve, status: MC }}\n  - expect_account: {{ process: DBUM Account, user: JDOE, status: Provisioned }}\n  - expect_sql: {{ target: t1, query: select 1, equals: 1 }}\n"
                ),
                vec![],
            ),
            (format!("{create}  - provision: {{ process: DBUM Acount, user: JDOE }}\n"), vec![("PF510", S + 1, 27)]),
            (
                format!("{create}  - complete_task: {{ process: DBUM Account, user: JDOE, task: Aprove }}\n"),
                vec![("PF511", S + 1, 63)],
            ),
            (format!("{create}  - expect_sql: {{ target: t2, query: x, equals: 1 }}\n"), vec![("PF512", S + 1, 27)]),
            (
                format!("{create}  - expect_notification: {{ template: Nope, to: JDOE }}\n"),
                vec![("PF513", S + 1, 38)],
            ),
            ("  - create_user: { usr_login: A, usr_frist_name: B }\n".to_string(), vec![("PF514", S, 34)]),
            ("  - create_user: { usr_first_name: B }\n".to_string(), vec![("PF515", S, 5)]),
            (
                format!("{create}  - expect_account: {{ process: DBUM Account, user: JDOE, status: Provisoned }}\n"),
                vec![("PF516", S + 1, 66)],
            ),
            (
                format!("{create}  - expect_task: {{ process: DBUM Account, user: JDOE, task: Approve, status: Done }}\n"),
                vec![("PF516", S + 1, 78)],
            ),
            (
                format!("{create}  - set_form: {{ process: DBUM Account, user: JDOE, form: {{ usrname: X }} }}\n"),
                vec![("PF517", S + 1, 60)],
            ),
            (
                format!("{create}  - provision: {{ process: DBUM Account, user: JDOE, form: {{ password: hunter2 }} }}\n"),
                vec![("PF518", S + 1, 71)],
            ),
            ("  - disable_user: JDOE\n".to_string(), vec![("PF519", S, 19)]),
            ("  - create_user: { usr_login: A, usr_status: Actve }\n".to_string(), vec![("PF520", S, 46)]),
            ("  - create_user: { usr_login: A, usr_start_date: 2024-13-01 }\n".to_string(), vec![("PF520", S, 50)]),
        ];
        for (steps, want) in cases {
            assert_eq!(check(&steps), want, "{steps}");
        }
    }

    fn task(name: &str) -> ir::Task {
        ir::Task {
            name: name.to_owned(),
            description: None,
            duration_minutes: None,
            conditional: false,
            condition: None,
            required_for_completion: false,
            effect: ir::Effect::None,
            disable_manual_insert: false,
            allow_cancellation_while_pending: false,
            allow_multiple_instances: false,
            retry: None,
            depends_on: Vec::new(),
            responses: Vec::new(),
            undo: Vec::new(),
            recovery: Vec::new(),
            complete_on_recovery: false,
            status_map: Default::default(),
            notify: Default::default(),
            action: ir::TaskAction::Manual { assignee: None },
            updates_field: None,
            location: ir::Location::default(),
        }
    }

    /// Lowers the scenarios of `yaml` against hand-made process IR.
    fn lower_with(yaml: &str, processes: &[ir::Process]) -> (Vec<ir::Scenario>, Findings) {
        let files = vec![SourceFile { path: "t.yaml".into(), text: Some(yaml.to_owned()) }];
        let docs = super::super::test_docs(yaml);
        let mut out = Findings::new();
        let reader = MemoryReader::new();
        let ctx = Ctx::new(&reader, &files, &docs, &mut out);
        let users = ir::UserSchema { name: None, attributes: super::super::users::builtin_attributes() };
        let processes: Vec<std::sync::Arc<ir::Process>> = processes.iter().cloned().map(std::sync::Arc::new).collect();
        let scenarios = super::lower(&ctx, &processes, &[], &users, &mut out);
        (scenarios, out)
    }

    #[test]
    fn lowers_with_indices_from_the_process_ir() {
        let yaml = format!(
            "{DEFS}apiVersion: provflow/v1\nkind: Scenario\nname: s\nsteps:\n  - create_user: {{ usr_login: JDOE, usr_locked: true }}\n  - provision: {{ process: DBUM Account, user: JDOE, form: {{ password: {{ secret_env: PW }}, username: jdoe }} }}\n  - complete_task: {{ process: DBUM Account, user: JDOE, task: Create User, response: SUCCESS }}\n  - expect_task: {{ process: DBUM Account, user: JDOE, task: Approve, status: C }}\n  - resume: {{}}\n"
        );
        // The process pass ordered `Approve` before `Create User`.
        let process = ir::Process {
            name: "DBUM Account".into(),
            process_type: ir::ProcessType::Provisioning,
            object: "DBUM Account".into(),
            default: false,
            target: 0,
            form: ir::Form { table: None, auto_save: false, fields: Vec::new(), child_tables: Vec::new() },
            tasks: vec![task("Approve"), task("Create User")],
            triggers: Vec::new(),
            recon: None,
            location: ir::Location::default(),
        };
        let (scenarios, out) = lower_with(&yaml, &[process]);
        assert_eq!(out, Findings::new());
        let steps = &scenarios[0].steps;
        assert_eq!(steps.len(), 5);
        assert_eq!((steps[1].location.line, steps[1].location.column), (S + 1, 5));
        let ir::StepAction::CreateUser { attributes } = &steps[0].action else { panic!("{:?}", steps[0]) };
        assert_eq!(attributes.get("usr_locked").map(String::as_str), Some("true"));
        let ir::StepAction::Provision { process, user, form } = &steps[1].action else { panic!("{:?}", steps[1]) };
        assert_eq!((*process, user.as_str()), (0, "JDOE"));
        assert_eq!(form.get("password"), Some(&ir::StepValue::SecretEnv("PW".into())));
        assert_eq!(form.get("username"), Some(&ir::StepValue::Plain("jdoe".into())));
        assert_eq!(
            steps[2].action,
            ir::StepAction::CompleteTask { process: 0, user: "JDOE".into(), task: 1, response: Some("SUCCESS".into()) }
        );
        assert_eq!(
            steps[3].action,
            ir::StepAction::ExpectTask { process: 0, user: "JDOE".into(), task: 0, status: ir::TaskStatus::Completed }
        );
        assert_eq!(steps[4].action, ir::StepAction::Resume);
    }
}
