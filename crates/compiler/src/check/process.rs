//! Processes: the task graph, adapters, conditions, status names and reconciliation, checked
//! and lowered to [`ir::Process`].
//!
//! Decisions the SPEC leaves open, made here:
//! - a form field's label defaults to its name, so `"<name> Updated"` works for unlabelled fields;
//! - a `"<X> Updated"` task that is also a `triggers` target is named after a user attribute,
//!   not a form field, and gets no PF206;
//! - target properties and `literal:` values are text: they may feed any non-secret parameter
//!   whose type parses the text (`literal:42` feeds a `Long`);
//! - widening is allowed: any non-secret type feeds a `String`, `Integer` feeds `Long` and
//!   `Double`, `Date` feeds `Timestamp` (`system.date` is a `Date`);
//! - task statuses accept the identity manager's codes (`C`, `MC`, `R`, `UC`, `X`, `PX`, `S`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::machinery::ast;
use provflow_ir as ir;
use provflow_lex::values;
use rayon::prelude::*;

use super::{ptr, unknown, Ctx, Findings};
use crate::diagnostic::{Finding, Part};
use crate::suggest::did_you_mean;
use crate::syntax;

/// Checks and lowers every process, one [`ir::Process`] per entry of `ctx.processes`.
pub fn lower(
    ctx: &Ctx<'_>,
    targets: &[ir::Target],
    query_sets: &[Arc<ir::QuerySet>],
    users: &ir::UserSchema,
    out: &mut Findings,
) -> Vec<Arc<ir::Process>> {
    // Targets are resolved through the typed documents rather than `targets`, so that a query
    // set is only used when it really is the one the target names.
    let _ = targets;
    let inputs = ctx.process_inputs_key();
    let lowered: Vec<(Arc<ir::Process>, Findings)> = ctx
        .processes
        .par_iter()
        .map(|named| {
            let lower = || {
                let (process, findings) = ProcessPass::new(ctx, named.doc, named.def, query_sets, users).run();
                (process, findings.into_iter().map(|f| (named.doc, f)).collect())
            };
            let shelf = ctx.memo.and_then(|m| {
                let key = ctx.process_key(inputs, &named.def.target);
                m.fingerprints.get(named.doc).map(|k| (&m.cache.processes, (*k, key)))
            });
            super::memoized(shelf, named.doc, lower)
        })
        .collect();
    super::merge(lowered, out)
}

fn value_type(t: syntax::TypeName) -> ir::ValueType {
    use syntax::TypeName as T;
    match t {
        T::String => ir::ValueType::String,
        T::GuardedString => ir::ValueType::GuardedString,
        T::Long => ir::ValueType::Long,
        T::Integer => ir::ValueType::Integer,
        T::Double => ir::ValueType::Double,
        T::Boolean => ir::ValueType::Boolean,
        T::Date => ir::ValueType::Date,
        T::Timestamp => ir::ValueType::Timestamp,
    }
}

fn field_type(spec: &syntax::FieldSpec) -> ir::ValueType {
    match spec {
        syntax::FieldSpec::Short(t) => value_type(*t),
        syntax::FieldSpec::Long(d) => value_type(d.ty),
    }
}

fn field_label<'s>(name: &'s str, spec: &'s syntax::FieldSpec) -> &'s str {
    match spec {
        syntax::FieldSpec::Long(syntax::FieldDef { label: Some(l), .. }) => l,
        _ => name,
    }
}

fn task_pointer(task: &str) -> String {
    format!("/tasks/{}", ptr(task))
}

fn task_status_names() -> impl Iterator<Item = &'static str> + Clone {
    ir::TaskStatus::ALL.into_iter().map(ir::TaskStatus::as_str)
}

fn object_status_names() -> impl Iterator<Item = &'static str> + Clone {
    ir::ObjectStatus::ALL.into_iter().map(ir::ObjectStatus::as_str)
}

/// Whether a value of type `source` may feed a parameter of type `param` (secrets aside).
fn widens(source: ir::ValueType, param: ir::ValueType) -> bool {
    use ir::ValueType as V;
    source == param
        || matches!(
            (source, param),
            (V::Long | V::Integer | V::Double | V::Boolean | V::Date | V::Timestamp, V::String)
                | (V::Integer, V::Long | V::Double)
                | (V::Date, V::Timestamp)
        )
}

/// Why text (a literal or a target property) is not a valid value of `ty`, if it is not: the
/// runner reads it with the same [`values::parse`] when it binds it.
fn text_problem(ty: ir::ValueType, text: &str) -> Option<values::Invalid> {
    values::parse(ty, text).err()
}

/// `30s`, `15m`, `2h`, `1d` → whole minutes (seconds round up).
fn duration_minutes(s: &str) -> Option<u64> {
    let unit = s.chars().last()?;
    let n: u64 = s.get(..s.len() - unit.len_utf8())?.parse().ok()?;
    match unit {
        's' => Some(n.div_ceil(60)),
        'm' => Some(n),
        'h' => n.checked_mul(60),
        'd' => n.checked_mul(24 * 60),
        _ => None,
    }
}

/// An adapter variable source as written, before names are resolved.
#[derive(Debug, PartialEq)]
enum SourceSyntax<'s> {
    Form(&'s str),
    Child(&'s str),
    User(&'s str),
    Target(&'s str),
    Literal(&'s str),
    SystemDate,
    TaskOutput { task: &'s str, output: &'s str },
}

const SOURCE_FORMS: &str = "`form.<field>`, `child.<field>`, `user.<attribute>`, `target.<property>`, \
                            `literal:<value>`, `system.date` or `tasks.<task>.outputs.<name>`";

fn parse_source(s: &str) -> Option<SourceSyntax<'_>> {
    if let Some(v) = s.strip_prefix("literal:") {
        return Some(SourceSyntax::Literal(v));
    }
    if s == "system.date" {
        return Some(SourceSyntax::SystemDate);
    }
    if let Some(rest) = s.strip_prefix("tasks.") {
        // Task names may contain dots; the output name may not.
        let (task, output) = rest.rsplit_once(".outputs.")?;
        return (!task.is_empty() && !output.is_empty() && !output.contains('.'))
            .then_some(SourceSyntax::TaskOutput { task, output });
    }
    let (head, name) = s.split_once('.')?;
    if name.is_empty() {
        return None;
    }
    match head {
        "form" => Some(SourceSyntax::Form(name)),
        "child" => Some(SourceSyntax::Child(name)),
        "user" => Some(SourceSyntax::User(name)),
        "target" => Some(SourceSyntax::Target(name)),
        _ => None,
    }
}

/// What is known about a source's value for the type checks.
enum SourceValue<'s> {
    Typed(ir::ValueType),
    /// Text whose type is decided by parsing: literals and target properties.
    Text {
        text: String,
        literal: bool,
        what: &'s str,
    },
    /// Not checkable (an unknown name was already reported, or the user schema is not known).
    Unknown,
}

struct ProcessPass<'p> {
    ctx: &'p Ctx<'p>,
    doc: usize,
    def: &'p syntax::Process,
    users: &'p ir::UserSchema,
    /// `None` when the target or its query set is unknown (reported elsewhere).
    query_set: Option<&'p ir::QuerySet>,
    /// `None` when the target is unknown.
    properties: Option<&'p IndexMap<String, syntax::Scalar>>,
    task_names: Vec<&'p str>,
    /// Declaration index → index in the lowered (topological) order.
    position: Vec<usize>,
    /// Declaration index → whether something inserts the task after the process started.
    inserted: Vec<bool>,
    /// Declaration index → the child tables whose rows insert it.
    child_tables_of: Vec<Vec<&'p str>>,
    findings: Vec<Finding>,
}

impl<'p> ProcessPass<'p> {
    fn new(
        ctx: &'p Ctx<'p>,
        doc: usize,
        def: &'p syntax::Process,
        query_sets: &'p [Arc<ir::QuerySet>],
        users: &'p ir::UserSchema,
    ) -> ProcessPass<'p> {
        let target = ctx.target(&def.target).and_then(|i| ctx.targets.get(i));
        let query_set = target.and_then(|t| {
            ctx.query_set(&t.def.queries)
                .and_then(|i| query_sets.get(i))
                .map(|qs| &**qs)
                .filter(|qs| qs.name == t.def.queries)
        });
        let n = def.tasks.len();
        ProcessPass {
            ctx,
            doc,
            def,
            users,
            query_set,
            properties: target.map(|t| &t.def.properties),
            task_names: def.tasks.keys().map(String::as_str).collect(),
            position: (0..n).collect(),
            inserted: vec![false; n],
            child_tables_of: vec![Vec::new(); n],
            findings: Vec::new(),
        }
    }

    fn run(mut self) -> (ir::Process, Vec<Finding>) {
        let target = self.resolve_target();
        self.order_tasks();
        let form = self.lower_form();
        let triggers = self.lower_triggers();
        let mut tasks: Vec<Option<ir::Task>> = Vec::with_capacity(self.def.tasks.len());
        for (i, (name, task)) in self.def.tasks.iter().enumerate() {
            tasks.push(Some(self.lower_task(i, name, task, &form)));
        }
        self.check_reachability(&tasks);
        if !self.def.tasks.values().any(|t| t.required_for_completion) {
            self.findings.push(Finding::warning(
                "PF207",
                format!("process `{}` has no task with `required_for_completion: true`", self.def.name),
                "/tasks",
                Part::Key,
                Some(
                    "an account becomes Provisioned when every required task is Completed; mark the task that \
                     creates the account `required_for_completion: true`"
                        .into(),
                ),
            ));
        }
        let recon = self.def.recon.as_ref().map(|r| self.lower_recon(r, &form));

        let mut ordered: Vec<(usize, ir::Task)> =
            tasks.into_iter().enumerate().filter_map(|(i, t)| Some((*self.position.get(i)?, t?))).collect();
        ordered.sort_by_key(|(p, _)| *p);
        let process = ir::Process {
            name: self.def.name.clone(),
            process_type: match self.def.process_type {
                syntax::ProcessType::Provisioning => ir::ProcessType::Provisioning,
                syntax::ProcessType::Approval => ir::ProcessType::Approval,
            },
            object: self.def.object.clone(),
            default: self.def.default,
            target,
            form,
            tasks: ordered.into_iter().map(|(_, t)| t).collect(),
            triggers,
            recon,
            location: self.ctx.location(self.doc, "/name"),
        };
        (process, self.findings)
    }

    // -----------------------------------------------------------------------------------------
    // Names

    fn resolve_target(&mut self) -> usize {
        match self.ctx.target(&self.def.target) {
            Some(i) => i,
            None => {
                self.findings.push(unknown(
                    "PF203",
                    "target",
                    &self.def.target,
                    self.ctx.targets.iter().map(|t| t.name),
                    "/target",
                ));
                0
            }
        }
    }

    fn declared(&self, task: &str) -> Option<usize> {
        self.def.tasks.get_index_of(task)
    }

    /// Resolves a task reference to its lowered index, reporting PF201 when unknown.
    fn task_ref(&mut self, name: &str, pointer: String, context: &str) -> Option<usize> {
        match self.declared(name) {
            Some(i) => self.position.get(i).copied(),
            None => {
                let mut f = unknown("PF201", "task", name, self.task_names.iter().copied(), pointer);
                f.message = format!("unknown task `{name}` in `{context}`");
                self.findings.push(f);
                None
            }
        }
    }

    /// Like [`Self::task_ref`], and records that the task is inserted by something.
    fn inserted_ref(&mut self, name: &str, pointer: String, context: &str) -> Option<usize> {
        let lowered = self.task_ref(name, pointer, context);
        if let Some(slot) = self.declared(name).and_then(|i| self.inserted.get_mut(i)) {
            *slot = true;
        }
        lowered
    }

    fn task_status(&mut self, given: &str, pointer: String, part: Part) -> Option<ir::TaskStatus> {
        let status = ir::TaskStatus::parse(given);
        if status.is_none() {
            let mut f = unknown("PF208", "task status", given, task_status_names(), pointer);
            f.part = part;
            self.findings.push(f);
        }
        status
    }

    fn object_status(&mut self, given: &str, pointer: String, part: Part) -> Option<ir::ObjectStatus> {
        let status = ir::ObjectStatus::parse(given);
        if status.is_none() {
            let mut f = unknown("PF208", "object status", given, object_status_names(), pointer);
            f.part = part;
            self.findings.push(f);
        }
        status
    }

    /// `Ok(None)` when no user schema is known yet (nothing to check against).
    fn user_attribute(&self, name: &str) -> Result<Option<&'p ir::UserAttribute>, ()> {
        if self.users.attributes.is_empty() {
            return Ok(None);
        }
        self.users.attributes.iter().find(|a| a.name == name).map(Some).ok_or(())
    }

    fn unknown_user_attribute(&self, name: &str, pointer: String) -> Finding {
        unknown("PF405", "user attribute", name, self.users.attributes.iter().map(|a| a.name.as_str()), pointer)
    }

    // -----------------------------------------------------------------------------------------
    // Task graph

    /// Orders tasks topologically by `depends_on` (Kahn, ties by declaration order) and reports
    /// each cycle once; with a cycle the declaration order is kept.
    fn order_tasks(&mut self) {
        let n = self.def.tasks.len();
        let deps: Vec<Vec<(usize, usize)>> = self
            .def
            .tasks
            .values()
            .map(|t| t.depends_on.iter().enumerate().filter_map(|(j, d)| self.declared(d).map(|k| (j, k))).collect())
            .collect();
        self.report_cycles(&deps);

        let mut dependents: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        let mut waiting_on: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        for (i, (ds, waits)) in deps.iter().zip(waiting_on.iter_mut()).enumerate() {
            for &(_, k) in ds {
                waits.insert(k);
                if let Some(d) = dependents.get_mut(k) {
                    d.insert(i);
                }
            }
        }
        let mut ready: BTreeSet<usize> =
            waiting_on.iter().enumerate().filter(|(_, w)| w.is_empty()).map(|(i, _)| i).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &d in dependents.get(i).into_iter().flatten() {
                if let Some(waits) = waiting_on.get_mut(d) {
                    waits.remove(&i);
                    if waits.is_empty() {
                        ready.insert(d);
                    }
                }
            }
        }
        if order.len() == n {
            for (pos, &i) in order.iter().enumerate() {
                if let Some(p) = self.position.get_mut(i) {
                    *p = pos;
                }
            }
        }
    }

    /// Iterative depth-first search: every back edge closes one cycle, reported at the
    /// `depends_on` entry that is that edge.
    fn report_cycles(&mut self, deps: &[Vec<(usize, usize)>]) {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        fn set_mark(marks: &mut [Mark], at: usize, to: Mark) {
            if let Some(m) = marks.get_mut(at) {
                *m = to;
            }
        }
        let n = deps.len();
        let mut mark = vec![Mark::New; n];
        // Every index below comes from `deps`, whose entries are indexes of declared tasks.
        let name = |t: usize| self.task_names.get(t).copied().unwrap_or("?");
        for start in 0..n {
            if mark.get(start) != Some(&Mark::New) {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            set_mark(&mut mark, start, Mark::OnPath);
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                let Some(&(item, dep)) = deps.get(node).and_then(|d| d.get(*next)) else {
                    set_mark(&mut mark, node, Mark::Done);
                    stack.pop();
                    continue;
                };
                *next += 1;
                match mark.get(dep).copied().unwrap_or(Mark::Done) {
                    Mark::New => {
                        set_mark(&mut mark, dep, Mark::OnPath);
                        stack.push((dep, 0));
                    }
                    Mark::OnPath => {
                        let from = stack.iter().position(|&(t, _)| t == dep).unwrap_or(0);
                        let mut names: Vec<String> =
                            stack.iter().skip(from).map(|&(t, _)| format!("`{}`", name(t))).collect();
                        names.push(format!("`{}`", name(dep)));
                        let task = name(node);
                        self.findings.push(Finding::error(
                            "PF202",
                            format!("cycle in `depends_on`: {}", names.join(" → ")),
                            format!("{}/depends_on/{item}", task_pointer(task)),
                            Part::Value,
                            Some(format!(
                                "each arrow reads \"depends on\"; none of these tasks could ever start: remove \
                                 `{}` from the `depends_on` of `{task}` or another dependency of the cycle",
                                name(dep)
                            )),
                        ));
                    }
                    Mark::Done => {}
                }
            }
        }
    }

    fn check_reachability(&mut self, tasks: &[Option<ir::Task>]) {
        for (i, (name, def)) in self.def.tasks.iter().enumerate() {
            let updates_field = tasks.get(i).and_then(|t| t.as_ref()).is_some_and(|t| t.updates_field.is_some());
            let reachable = !def.conditional
                || def.condition.is_some()
                || self.inserted.get(i).copied().unwrap_or(false)
                || def.effect != syntax::EffectName::None
                || updates_field;
            if !reachable {
                self.findings.push(Finding::warning(
                    "PF205",
                    format!("conditional task `{name}` can never be inserted"),
                    task_pointer(name),
                    Part::Key,
                    Some(
                        "nothing generates, undoes, recovers, triggers or effects it, no child table inserts it and \
                         its name is no `<field label> Updated`: add it to a response's `generate`, an `undo` or \
                         `recovery` list, `triggers`, give it an `effect` or a `condition`, or remove \
                         `conditional: true`"
                            .into(),
                    ),
                ));
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Form and triggers

    fn lower_field(&mut self, name: &str, spec: &syntax::FieldSpec, pointer: String) -> ir::FormField {
        let (required, from, default) = match spec {
            syntax::FieldSpec::Short(_) => (false, None, None),
            syntax::FieldSpec::Long(d) => (d.required, d.from.as_deref(), d.default.as_ref()),
        };
        let ty = field_type(spec);
        let from_user = from.and_then(|from| {
            let from_pointer = format!("{pointer}/from");
            let Some(attribute) = from.strip_prefix("user.").filter(|a| !a.is_empty()) else {
                self.findings.push(Finding::error(
                    "PF404",
                    format!("invalid `from` source `{from}`"),
                    from_pointer,
                    Part::Value,
                    Some("a form field is prefilled from a user attribute: write `user.<attribute>`".into()),
                ));
                return None;
            };
            match self.user_attribute(attribute) {
                Err(()) => self.findings.push(self.unknown_user_attribute(attribute, from_pointer)),
                Ok(Some(attr)) if attr.ty.is_secret() != ty.is_secret() || !widens(attr.ty, ty) => {
                    self.findings.push(Finding::error(
                        "PF406",
                        format!(
                            "user attribute `{attribute}` is a {} but form field `{name}` is a {}",
                            attr.ty.as_str(),
                            ty.as_str()
                        ),
                        from_pointer,
                        Part::Value,
                        Some(format!("declare the field as {} or prefill it from another attribute", attr.ty.as_str())),
                    ))
                }
                Ok(_) => {}
            }
            Some(attribute.to_owned())
        });
        ir::FormField {
            name: name.to_owned(),
            ty,
            label: field_label(name, spec).to_owned(),
            required,
            from_user,
            default: default.map(syntax::Scalar::to_text),
        }
    }

    fn lower_form(&mut self) -> ir::Form {
        let form = &self.def.form;
        let fields = form
            .fields
            .iter()
            .map(|(name, spec)| self.lower_field(name, spec, format!("/form/fields/{}", ptr(name))))
            .collect();
        let mut child_tables = Vec::with_capacity(form.child_tables.len());
        for (table, def) in &form.child_tables {
            let base = format!("/form/child_tables/{}", ptr(table));
            let fields = def
                .fields
                .iter()
                .map(|(name, spec)| self.lower_field(name, spec, format!("{base}/fields/{}", ptr(name))))
                .collect();
            let hook = |this: &mut Self, task: Option<&String>, key: &str| {
                let task = task?;
                if let Some(slot) = this.declared(task).and_then(|i| this.child_tables_of.get_mut(i)) {
                    slot.push(table);
                }
                this.inserted_ref(task, format!("{base}/{key}"), key)
            };
            let on_insert = hook(self, def.on_insert.as_ref(), "on_insert");
            let on_delete = hook(self, def.on_delete.as_ref(), "on_delete");
            child_tables.push(ir::ChildTable { name: table.clone(), fields, on_insert, on_delete });
        }
        ir::Form { table: form.table.clone(), auto_save: form.auto_save, fields, child_tables }
    }

    fn lower_triggers(&mut self) -> Vec<ir::Trigger> {
        let mut triggers = Vec::with_capacity(self.def.triggers.len());
        for (attribute, task) in &self.def.triggers {
            let pointer = format!("/triggers/{}", ptr(attribute));
            if self.user_attribute(attribute).is_err() {
                let mut f = self.unknown_user_attribute(attribute, pointer.clone());
                f.part = Part::Key;
                self.findings.push(f);
            }
            if let Some(task) = self.inserted_ref(task, pointer, "triggers") {
                triggers.push(ir::Trigger { attribute: attribute.clone(), task });
            }
        }
        triggers
    }

    // -----------------------------------------------------------------------------------------
    // Tasks

    fn task_list(&mut self, task: &str, key: &str, names: &[String], inserts: bool) -> Vec<usize> {
        let base = task_pointer(task);
        names
            .iter()
            .enumerate()
            .filter_map(|(j, name)| {
                let pointer = format!("{base}/{key}/{j}");
                if inserts {
                    self.inserted_ref(name, pointer, key)
                } else {
                    self.task_ref(name, pointer, key)
                }
            })
            .collect()
    }

    fn lower_task(&mut self, index: usize, name: &str, def: &'p syntax::TaskDef, form: &ir::Form) -> ir::Task {
        let base = task_pointer(name);
        let depends_on = self.task_list(name, "depends_on", &def.depends_on, false);
        let undo = self.task_list(name, "undo", &def.undo, true);
        let recovery = self.task_list(name, "recovery", &def.recovery, true);

        let mut responses = Vec::with_capacity(def.responses.len());
        for (code, response) in &def.responses {
            let rbase = format!("{base}/responses/{}", ptr(code));
            let status = match &response.status {
                Some(s) => self.task_status(s, format!("{rbase}/status"), Part::Value),
                None => None,
            };
            let default = if code == "SUCCESS" { ir::TaskStatus::Completed } else { ir::TaskStatus::Rejected };
            let generate = response
                .generate
                .iter()
                .enumerate()
                .filter_map(|(j, t)| self.inserted_ref(t, format!("{rbase}/generate/{j}"), "generate"))
                .collect();
            responses.push(ir::Response {
                code: code.clone(),
                description: response.description.clone(),
                status: status.unwrap_or(default),
                generate,
            });
        }

        let mut status_map = BTreeMap::new();
        for (task_status, object_status) in &def.status_map {
            let pointer = format!("{base}/status_map/{}", ptr(task_status));
            let key = self.task_status(task_status, pointer.clone(), Part::Key);
            let value = self.object_status(object_status, pointer, Part::Value);
            if let (Some(k), Some(v)) = (key, value) {
                status_map.insert(k, v);
            }
        }

        let mut notify = BTreeMap::new();
        for (task_status, template) in &def.notify {
            let pointer = format!("{base}/notify/{}", ptr(task_status));
            let key = self.task_status(task_status, pointer.clone(), Part::Key);
            let value = self.ctx.template(template);
            if value.is_none() {
                self.findings.push(unknown(
                    "PF204",
                    "notification template",
                    template,
                    self.ctx.templates.iter().map(|t| t.name),
                    pointer,
                ));
            }
            if let (Some(k), Some(v)) = (key, value) {
                notify.insert(k, v);
            }
        }

        let action = self.lower_action(index, name, def, form);

        if def.complete_on_recovery && def.recovery.is_empty() {
            self.findings.push(Finding::warning(
                "PF412",
                format!("task `{name}` has `complete_on_recovery` but no `recovery` tasks"),
                format!("{base}/complete_on_recovery"),
                Part::Key,
                Some("list the tasks that repair a rejection in `recovery`, or remove `complete_on_recovery`".into()),
            ));
        }
        if let Some(table) = self.child_tables_of.get(index).and_then(|t| t.first()) {
            if !def.allow_multiple_instances {
                self.findings.push(Finding::warning(
                    "PF412",
                    format!(
                        "task `{name}` runs once per row of child table `{table}` but does not allow multiple \
                         instances"
                    ),
                    base.clone(),
                    Part::Key,
                    Some("add `allow_multiple_instances: true`, or a second row waits for the first row's task".into()),
                ));
            }
        }

        if let Some(condition) = &def.condition {
            self.check_condition(condition, format!("{base}/condition"), form);
        }

        let updates_field = name.strip_suffix(" Updated").and_then(|label| {
            let field = form.fields.iter().find(|f| f.label == label).map(|f| f.name.clone());
            let triggered = self.def.triggers.values().any(|t| t == name);
            if field.is_none() && !triggered {
                let labels = form.fields.iter().map(|f| f.label.as_str());
                let help = match did_you_mean(label, labels.clone()) {
                    Some(s) => format!("did you mean `{s} Updated`?"),
                    None => {
                        let all: Vec<String> = labels.map(|l| format!("`{l}`")).collect();
                        if all.is_empty() {
                            "the form has no fields; `<label> Updated` tasks run when a form field changes".to_owned()
                        } else {
                            format!(
                                "`<label> Updated` tasks run when a form field changes; the labels are {}",
                                all.join(", ")
                            )
                        }
                    }
                };
                self.findings.push(Finding::warning(
                    "PF206",
                    format!("task `{name}` is named after `{label}`, which is no form field label"),
                    base.clone(),
                    Part::Key,
                    Some(help),
                ));
            }
            field
        });

        ir::Task {
            name: name.to_owned(),
            description: def.description.clone(),
            duration_minutes: def.duration.as_deref().and_then(duration_minutes),
            conditional: def.conditional,
            condition: def.condition.clone(),
            required_for_completion: def.required_for_completion,
            effect: match def.effect {
                syntax::EffectName::None => ir::Effect::None,
                syntax::EffectName::Enables => ir::Effect::Enables,
                syntax::EffectName::Disables => ir::Effect::Disables,
            },
            disable_manual_insert: def.disable_manual_insert,
            allow_cancellation_while_pending: def.allow_cancellation_while_pending,
            allow_multiple_instances: def.allow_multiple_instances,
            retry: def.retry.map(|r| ir::Retry { count: r.count, period_minutes: r.period_minutes }),
            depends_on,
            responses,
            undo,
            recovery,
            complete_on_recovery: def.complete_on_recovery,
            status_map,
            notify,
            action,
            updates_field,
            location: self.ctx.location(self.doc, &base),
        }
    }

    fn lower_action(&mut self, index: usize, name: &str, def: &'p syntax::TaskDef, form: &ir::Form) -> ir::TaskAction {
        let base = task_pointer(name);
        if def.assignee.is_some() && !def.manual {
            self.findings.push(Finding::warning(
                "PF409",
                format!("task `{name}` has an `assignee` but is not manual"),
                format!("{base}/assignee"),
                Part::Key,
                Some("only a `manual: true` task waits in a work queue for its assignee; remove `assignee`".into()),
            ));
        }
        if def.manual && def.retry.is_some() {
            self.findings.push(Finding::error(
                "PF412",
                format!("manual task `{name}` cannot have a `retry`"),
                format!("{base}/retry"),
                Part::Key,
                Some(
                    "a person completes or rejects a manual task; retries are for adapter tasks: remove `retry`".into(),
                ),
            ));
        }
        match (&def.adapter, def.manual) {
            (Some(adapter), false) => ir::TaskAction::Adapter(self.lower_adapter(index, name, adapter, form)),
            (Some(adapter), true) => {
                self.findings.push(Finding::error(
                    "PF409",
                    format!("task `{name}` has both an `adapter` and `manual: true`"),
                    format!("{base}/manual"),
                    Part::Key,
                    Some("a task either runs a query or waits for a person: remove `manual` or `adapter`".into()),
                ));
                ir::TaskAction::Adapter(self.lower_adapter(index, name, adapter, form))
            }
            (None, true) => ir::TaskAction::Manual { assignee: def.assignee.clone() },
            (None, false) => {
                self.findings.push(Finding::error(
                    "PF409",
                    format!("task `{name}` has neither an `adapter` nor `manual: true`"),
                    base,
                    Part::Key,
                    Some(
                        "add `adapter: { query: ..., map: { ... } }` to run a query, or `manual: true` for a person \
                         to do the work"
                            .into(),
                    ),
                ));
                ir::TaskAction::Manual { assignee: def.assignee.clone() }
            }
        }
    }

    fn find_query(&mut self, query: &str, pointer: String) -> Option<(usize, &'p ir::Query)> {
        let set = self.query_set?;
        let found = set.queries.iter().enumerate().find(|(_, q)| q.name == query);
        if found.is_none() {
            let mut f = unknown("PF401", "query", query, set.queries.iter().map(|q| q.name.as_str()), pointer);
            f.message = format!("unknown query `{query}` in query set `{}`", set.name);
            self.findings.push(f);
        }
        found
    }

    fn lower_adapter(
        &mut self,
        index: usize,
        task: &str,
        adapter: &syntax::AdapterDef,
        form: &ir::Form,
    ) -> ir::Adapter {
        let base = format!("{}/adapter", task_pointer(task));
        let Some((query_index, query)) = self.find_query(&adapter.query, format!("{base}/query")) else {
            return ir::Adapter { query: 0, map: Vec::new() };
        };
        let is_input = |p: &ir::QueryParam| matches!(p.mode, ir::ParamMode::In | ir::ParamMode::InOut);
        for (param_name, _) in &adapter.map {
            let Some(param) = query.params.iter().find(|p| &p.name == param_name) else {
                let mut f = unknown(
                    "PF403",
                    "parameter",
                    param_name,
                    query.params.iter().filter(|p| is_input(p)).map(|p| p.name.as_str()),
                    format!("{base}/map/{}", ptr(param_name)),
                );
                f.message = format!("query `{}` has no parameter `{param_name}`", query.name);
                f.part = Part::Key;
                self.findings.push(f);
                continue;
            };
            if !is_input(param) {
                self.findings.push(Finding::error(
                    "PF403",
                    format!("`{param_name}` is an output of query `{}`, not an input", query.name),
                    format!("{base}/map/{}", ptr(param_name)),
                    Part::Key,
                    Some(format!(
                        "outputs are read after the call (`tasks.{task}.outputs.{param_name}`); remove this mapping"
                    )),
                ));
            }
        }
        let missing: Vec<String> = query
            .params
            .iter()
            .filter(|p| is_input(p) && !adapter.map.contains_key(&p.name))
            .map(|p| format!("`{}`", p.name))
            .collect();
        if !missing.is_empty() {
            let plural = if missing.len() == 1 { "" } else { "s" };
            self.findings.push(Finding::error(
                "PF402",
                format!("no mapping for parameter{plural} {} of query `{}`", missing.join(", "), query.name),
                format!("{base}/map"),
                Part::Key,
                Some(format!(
                    "map every input parameter to a source: {}",
                    missing.iter().map(|m| format!("{m}: form.<field>")).collect::<Vec<_>>().join(", ")
                )),
            ));
        }
        let mut map = Vec::new();
        for (param_index, param) in query.params.iter().enumerate().filter(|(_, p)| is_input(p)) {
            let Some(written) = adapter.map.get(&param.name) else { continue };
            let pointer = format!("{base}/map/{}", ptr(&param.name));
            if let Some(source) = self.resolve_source(index, written, param, &pointer, form) {
                map.push(ir::Mapping { param: param_index, source });
            }
        }
        ir::Adapter { query: query_index, map }
    }

    fn resolve_source(
        &mut self,
        task_index: usize,
        written: &str,
        param: &ir::QueryParam,
        pointer: &str,
        form: &ir::Form,
    ) -> Option<ir::Source> {
        let Some(parsed) = parse_source(written) else {
            let head = written.split(['.', ':']).next().unwrap_or(written);
            let help = match did_you_mean(head, ["form", "child", "user", "target", "literal", "system", "tasks"]) {
                Some(s) => format!("did you mean `{s}`? A source is {SOURCE_FORMS}"),
                None => format!("a source is {SOURCE_FORMS}"),
            };
            self.findings.push(Finding::error(
                "PF404",
                format!("invalid source `{written}` for parameter `{}`", param.name),
                pointer,
                Part::Value,
                Some(help),
            ));
            return None;
        };
        let (source, value) = match parsed {
            SourceSyntax::Form(field) => {
                let ty = form.fields.iter().find(|f| f.name == field).map(|f| f.ty);
                if ty.is_none() {
                    let mut f =
                        unknown("PF405", "form field", field, form.fields.iter().map(|f| f.name.as_str()), pointer);
                    f.message = format!("unknown form field `{field}` in `{written}`");
                    self.findings.push(f);
                }
                (ir::Source::Form(field.to_owned()), ty.map_or(SourceValue::Unknown, SourceValue::Typed))
            }
            SourceSyntax::Child(field) => {
                let tables: Vec<&ir::ChildTable> = form
                    .child_tables
                    .iter()
                    .filter(|t| {
                        self.child_tables_of.get(task_index).is_some_and(|names| names.contains(&t.name.as_str()))
                    })
                    .collect();
                let mut value = SourceValue::Unknown;
                if tables.is_empty() {
                    self.findings.push(Finding::error(
                        "PF405",
                        format!("`{written}` is only available in a child table's `on_insert` or `on_delete` task"),
                        pointer,
                        Part::Value,
                        Some(format!(
                            "name task `{}` in a child table's `on_insert`/`on_delete`, or map a `form.<field>`",
                            self.task_names.get(task_index).copied().unwrap_or_default()
                        )),
                    ));
                } else {
                    match tables.iter().find_map(|t| t.fields.iter().find(|f| f.name == field)) {
                        Some(f) => value = SourceValue::Typed(f.ty),
                        None => {
                            let names = tables.iter().flat_map(|t| t.fields.iter().map(|f| f.name.as_str()));
                            let mut f = unknown("PF405", "child table field", field, names, pointer);
                            f.message = format!("unknown child table field `{field}` in `{written}`");
                            self.findings.push(f);
                        }
                    }
                }
                (ir::Source::Child(field.to_owned()), value)
            }
            SourceSyntax::User(attribute) => {
                let value = match self.user_attribute(attribute) {
                    Ok(Some(a)) => SourceValue::Typed(a.ty),
                    Ok(None) => SourceValue::Unknown,
                    Err(()) => {
                        self.findings.push(self.unknown_user_attribute(attribute, pointer.to_owned()));
                        SourceValue::Unknown
                    }
                };
                (ir::Source::User(attribute.to_owned()), value)
            }
            SourceSyntax::Target(property) => {
                let value = match self.properties {
                    None => SourceValue::Unknown,
                    Some(props) => match props.get(property) {
                        Some(v) => SourceValue::Text { text: v.to_text(), literal: false, what: "target property" },
                        None => {
                            let mut f = unknown(
                                "PF405",
                                "target property",
                                property,
                                props.keys().map(String::as_str),
                                pointer,
                            );
                            f.message = format!("target `{}` has no property `{property}`", self.def.target);
                            self.findings.push(f);
                            SourceValue::Unknown
                        }
                    },
                };
                (ir::Source::Target(property.to_owned()), value)
            }
            SourceSyntax::Literal(text) => (
                ir::Source::Literal(text.to_owned()),
                SourceValue::Text { text: text.to_owned(), literal: true, what: "literal" },
            ),
            SourceSyntax::SystemDate => (ir::Source::SystemDate, SourceValue::Typed(ir::ValueType::Date)),
            SourceSyntax::TaskOutput { task, output } => {
                let (value, lowered) = self.task_output(task, output, pointer, written);
                (ir::Source::TaskOutput { task: lowered.unwrap_or(0), output: output.to_owned() }, value)
            }
        };
        self.check_source_type(written, &value, param, pointer);
        Some(source)
    }

    fn task_output(
        &mut self,
        task: &str,
        output: &str,
        pointer: &str,
        written: &str,
    ) -> (SourceValue<'static>, Option<usize>) {
        let Some(declared) = self.declared(task) else {
            let mut f = unknown("PF405", "task", task, self.task_names.iter().copied(), pointer);
            f.message = format!("unknown task `{task}` in `{written}`");
            self.findings.push(f);
            return (SourceValue::Unknown, None);
        };
        let lowered = self.position.get(declared).copied();
        let query = self
            .def
            .tasks
            .get_index(declared)
            .and_then(|(_, t)| t.adapter.as_ref())
            .and_then(|a| self.query_set.and_then(|s| s.queries.iter().find(|q| q.name == a.query)));
        let Some(query) = query else {
            // A manual task has no outputs; an unknown query was reported on that task.
            let manual = self.def.tasks.get_index(declared).is_some_and(|(_, t)| t.adapter.is_none());
            if manual {
                self.findings.push(Finding::error(
                    "PF405",
                    format!("task `{task}` runs no query, so it has no output `{output}`"),
                    pointer,
                    Part::Value,
                    Some("only adapter tasks have outputs: the OUT parameters of their query".into()),
                ));
            }
            return (SourceValue::Unknown, lowered);
        };
        let outputs = query.params.iter().filter(|p| matches!(p.mode, ir::ParamMode::Out | ir::ParamMode::InOut));
        match outputs.clone().find(|p| p.name == output) {
            Some(p) => (SourceValue::Typed(p.ty), lowered),
            None => {
                let mut f = unknown("PF405", "output", output, outputs.map(|p| p.name.as_str()), pointer);
                f.message = format!("query `{}` of task `{task}` has no output `{output}`", query.name);
                self.findings.push(f);
                (SourceValue::Unknown, lowered)
            }
        }
    }

    fn check_source_type(&mut self, written: &str, value: &SourceValue<'_>, param: &ir::QueryParam, pointer: &str) {
        let param_ty = param.ty;
        let finding = match value {
            SourceValue::Unknown => None,
            SourceValue::Typed(src) if src.is_secret() && !param_ty.is_secret() => Some(Finding::error(
                "PF407",
                format!(
                    "secret leak: `{written}` is a GuardedString but parameter `{}` is a {}",
                    param.name,
                    param_ty.as_str()
                ),
                pointer,
                Part::Value,
                Some(format!(
                    "a non-secret parameter can end up in logs, plans and the audit trail; declare `{}` as \
                     GuardedString in the query, or map a non-secret source",
                    param.name
                )),
            )),
            SourceValue::Typed(src) if param_ty.is_secret() && !src.is_secret() => Some(Finding::error(
                "PF408",
                format!("parameter `{}` is a GuardedString but `{written}` is a {}", param.name, src.as_str()),
                pointer,
                Part::Value,
                Some("feed a secret only from a secret: declare the form field (or attribute) as GuardedString".into()),
            )),
            SourceValue::Typed(src) if !widens(*src, param_ty) => Some(Finding::error(
                "PF406",
                format!(
                    "type mismatch: `{written}` is a {} but parameter `{}` is a {}",
                    src.as_str(),
                    param.name,
                    param_ty.as_str()
                ),
                pointer,
                Part::Value,
                Some(format!("map a {} source, or change the type of one side", param_ty.as_str())),
            )),
            SourceValue::Typed(_) => None,
            SourceValue::Text { literal, what, .. } if param_ty.is_secret() => Some(Finding::error(
                "PF408",
                format!("parameter `{}` is a GuardedString but `{written}` is a {what}", param.name),
                pointer,
                Part::Value,
                Some(if *literal {
                    "a literal is written in git and can never feed a secret: map a GuardedString form field".into()
                } else {
                    "target properties are plain text in git: map a GuardedString form field".into()
                }),
            )),
            SourceValue::Text { text, what, .. } => text_problem(param_ty, text).map(|problem| {
                Finding::error(
                    "PF406",
                    format!(
                        "type mismatch: {what} `{text}` is not a valid {} for parameter `{}`: {}",
                        param_ty.as_str(),
                        param.name,
                        problem.reason()
                    ),
                    pointer,
                    Part::Value,
                    Some(format!("write {}", problem.expected())),
                )
            }),
        };
        self.findings.extend(finding);
    }

    // -----------------------------------------------------------------------------------------
    // Conditions

    fn check_condition(&mut self, condition: &str, pointer: String, form: &ir::Form) {
        let expr = match minijinja::machinery::parse_expr(condition) {
            Ok(expr) => expr,
            Err(err) => {
                let detail = err.detail().map_or_else(|| err.kind().to_string(), str::to_owned);
                let mut f = Finding::error(
                    "PF410",
                    format!("`condition` is not a valid expression: {detail}"),
                    pointer,
                    Part::Value,
                    Some(
                        "a condition is a minijinja expression over `user`, `form` and `target`, e.g. \
                         `form.profile != \"DEFAULT\"`"
                            .into(),
                    ),
                );
                if let Some(range) = err.range() {
                    let (line, col) = inner_position(condition, range.start);
                    let len = condition.get(range.clone()).map_or(1, |s| s.chars().count());
                    f = f.at_inner(line, col, len as u32);
                }
                self.findings.push(f);
                return;
            }
        };
        let mut uses = Vec::new();
        collect_variables(&expr, &mut uses);
        for used in uses {
            let finding = match used {
                VariableUse::Top { name: "user" | "form" | "target", .. } => None,
                VariableUse::Top { name, offset } => {
                    let mut f = unknown("PF411", "variable", name, ["user", "form", "target"], pointer.clone());
                    f.message = format!("unknown variable `{name}` in `condition`");
                    if did_you_mean(name, ["user", "form", "target"]).is_none() {
                        f.help = Some("a condition may use `user`, `form` and `target`".into());
                    }
                    Some(f.at_position(condition, offset, name))
                }
                VariableUse::Attr { base: "form", name, offset } => {
                    (!form.fields.iter().any(|f| f.name == name)).then(|| {
                        let mut f = unknown(
                            "PF411",
                            "form field",
                            name,
                            form.fields.iter().map(|f| f.name.as_str()),
                            pointer.clone(),
                        );
                        f.message = format!("unknown form field `{name}` in `condition`");
                        f.at_position(condition, offset, name)
                    })
                }
                VariableUse::Attr { base: "user", name, offset } => self.user_attribute(name).is_err().then(|| {
                    let mut f = self.unknown_user_attribute(name, pointer.clone());
                    f.code = "PF411";
                    f.message = format!("unknown user attribute `{name}` in `condition`");
                    f.at_position(condition, offset, name)
                }),
                VariableUse::Attr { base: "target", name, offset } => {
                    self.properties.filter(|props| !props.contains_key(name)).map(|props| {
                        let mut f = unknown(
                            "PF411",
                            "target property",
                            name,
                            props.keys().map(String::as_str),
                            pointer.clone(),
                        );
                        f.message = format!("unknown target property `{name}` in `condition`");
                        f.at_position(condition, offset, name)
                    })
                }
                VariableUse::Attr { .. } => None,
            };
            self.findings.extend(finding);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Reconciliation

    fn lower_recon(&mut self, recon: &syntax::ReconDef, form: &ir::Form) -> ir::Recon {
        let query = match &recon.query {
            Some(name) => self.find_query(name, "/recon/query".into()),
            None => None,
        };
        if let Some((_, q)) = query {
            if q.columns.is_empty() {
                self.findings.push(Finding::error(
                    "PF413",
                    format!("recon query `{}` declares no `columns`", q.name),
                    "/recon/query",
                    Part::Value,
                    Some("declare the columns of its rows in the query set: `columns: { username: String }`".into()),
                ));
            }
        }
        let mut fields = Vec::with_capacity(recon.fields.len());
        for (name, def) in &recon.fields {
            let base = format!("/recon/fields/{}", ptr(name));
            let ty = value_type(def.ty);
            if let Some((_, q)) = query.filter(|(_, q)| !q.columns.is_empty()) {
                match q.columns.iter().find(|c| &c.name == name) {
                    None => {
                        let mut f = unknown("PF413", "column", name, q.columns.iter().map(|c| c.name.as_str()), &base);
                        f.message = format!("recon field `{name}` is no column of query `{}`", q.name);
                        f.part = Part::Key;
                        self.findings.push(f);
                    }
                    Some(c) if c.ty != ty => self.findings.push(Finding::error(
                        "PF413",
                        format!(
                            "recon field `{name}` is a {} but column `{name}` of query `{}` is a {}",
                            ty.as_str(),
                            q.name,
                            c.ty.as_str()
                        ),
                        format!("{base}/type"),
                        Part::Value,
                        Some(format!("write `type: {}`", c.ty.as_str())),
                    )),
                    Some(_) => {}
                }
            }
            let maps_pointer = format!("{base}/maps_to");
            let maps_to = if def.maps_to == "OIM_OBJECT_STATUS" {
                Some(ir::ReconTarget::ObjectStatus)
            } else if let Some(field) = def.maps_to.strip_prefix("form.").filter(|f| !f.is_empty()) {
                match form.fields.iter().find(|f| f.name == field) {
                    None => {
                        let mut f = unknown(
                            "PF405",
                            "form field",
                            field,
                            form.fields.iter().map(|f| f.name.as_str()),
                            maps_pointer.clone(),
                        );
                        f.message = format!("unknown form field `{field}` in `maps_to`");
                        self.findings.push(f);
                    }
                    Some(f) if f.ty != ty && !widens(ty, f.ty) => self.findings.push(Finding::error(
                        "PF406",
                        format!(
                            "recon field `{name}` is a {} but form field `{field}` is a {}",
                            ty.as_str(),
                            f.ty.as_str()
                        ),
                        maps_pointer.clone(),
                        Part::Value,
                        Some("map it to a field of the same type".into()),
                    )),
                    Some(_) => {}
                }
                Some(ir::ReconTarget::Form(field.to_owned()))
            } else if let Some(attribute) = def.maps_to.strip_prefix("user.").filter(|a| !a.is_empty()) {
                if self.user_attribute(attribute).is_err() {
                    self.findings.push(self.unknown_user_attribute(attribute, maps_pointer.clone()));
                }
                Some(ir::ReconTarget::User(attribute.to_owned()))
            } else {
                self.findings.push(Finding::error(
                    "PF404",
                    format!("invalid `maps_to` `{}`", def.maps_to),
                    maps_pointer.clone(),
                    Part::Value,
                    Some("a recon field maps to `form.<field>`, `user.<attribute>` or `OIM_OBJECT_STATUS`".into()),
                ));
                None
            };
            let mut values = BTreeMap::new();
            if !def.values.is_empty() && !matches!(maps_to, Some(ir::ReconTarget::ObjectStatus) | None) {
                self.findings.push(Finding::error(
                    "PF413",
                    format!("recon field `{name}` has `values` but does not map to `OIM_OBJECT_STATUS`"),
                    format!("{base}/values"),
                    Part::Key,
                    Some("`values` translates source values to object statuses; remove it or write `maps_to: OIM_OBJECT_STATUS`".into()),
                ));
            }
            for (source_value, status) in &def.values {
                let pointer = format!("{base}/values/{}", ptr(source_value));
                if let Some(s) = self.object_status(status, pointer, Part::Value) {
                    values.insert(source_value.clone(), s);
                }
            }
            fields.push(ir::ReconField {
                name: name.clone(),
                ty,
                maps_to: maps_to.unwrap_or(ir::ReconTarget::ObjectStatus),
                key: def.key,
                case_insensitive: def.case_insensitive,
                values,
            });
        }
        if !recon.fields.values().any(|f| f.key) {
            self.findings.push(Finding::error(
                "PF413",
                "reconciliation has no key field",
                "/recon/fields",
                Part::Key,
                Some("mark the field that identifies an account `key: true` (e.g. the user name)".into()),
            ));
        }
        let action = |a: syntax::ReconActionName| match a {
            syntax::ReconActionName::None => ir::ReconAction::None,
            syntax::ReconActionName::Create => ir::ReconAction::Create,
            syntax::ReconActionName::Link => ir::ReconAction::Link,
            syntax::ReconActionName::Update => ir::ReconAction::Update,
        };
        ir::Recon {
            query: query.map(|(i, _)| i),
            fields,
            no_match: action(recon.actions.no_match),
            one_entity_match: action(recon.actions.one_entity_match),
            one_process_match: action(recon.actions.one_process_match),
            multiple_matches: action(recon.actions.multiple_matches),
        }
    }
}

/// 0-based line and character column of a byte offset in `text`.
fn inner_position(text: &str, offset: usize) -> (u32, u32) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count());
    (line as u32, col as u32)
}

trait AtPosition {
    fn at_position(self, text: &str, offset: usize, name: &str) -> Finding;
}

impl AtPosition for Finding {
    fn at_position(self, text: &str, offset: usize, name: &str) -> Finding {
        let (line, col) = inner_position(text, offset);
        self.at_inner(line, col, name.chars().count() as u32)
    }
}

/// A variable read by a condition, with the byte offset of the name in the source.
enum VariableUse<'e> {
    Top { name: &'e str, offset: usize },
    Attr { base: &'e str, name: &'e str, offset: usize },
}

fn collect_variables<'e>(expr: &ast::Expr<'e>, uses: &mut Vec<VariableUse<'e>>) {
    use ast::Expr as E;
    let args = |args: &[ast::CallArg<'e>], uses: &mut Vec<VariableUse<'e>>| {
        for arg in args {
            match arg {
                ast::CallArg::Pos(e)
                | ast::CallArg::Kwarg(_, e)
                | ast::CallArg::PosSplat(e)
                | ast::CallArg::KwargSplat(e) => collect_variables(e, uses),
            }
        }
    };
    match expr {
        E::Var(v) => uses.push(VariableUse::Top { name: v.id, offset: v.span().start_offset as usize }),
        E::Const(_) => {}
        E::Slice(s) => {
            collect_variables(&s.expr, uses);
            for e in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                collect_variables(e, uses);
            }
        }
        E::UnaryOp(u) => collect_variables(&u.expr, uses),
        E::BinOp(b) => {
            collect_variables(&b.left, uses);
            collect_variables(&b.right, uses);
        }
        E::Compare(c) => {
            collect_variables(&c.expr, uses);
            for op in &c.ops {
                collect_variables(&op.expr, uses);
            }
        }
        E::IfExpr(i) => {
            collect_variables(&i.test_expr, uses);
            collect_variables(&i.true_expr, uses);
            if let Some(e) = &i.false_expr {
                collect_variables(e, uses);
            }
        }
        E::Filter(f) => {
            if let Some(e) = &f.expr {
                collect_variables(e, uses);
            }
            args(&f.args, uses);
        }
        E::Test(t) => {
            collect_variables(&t.expr, uses);
            args(&t.args, uses);
        }
        E::GetAttr(g) => {
            if let E::Var(base) = &g.expr {
                // The attribute name ends the span (`form.username`).
                let end = g.span().end_offset as usize;
                let offset = end.saturating_sub(g.name.len());
                uses.push(VariableUse::Top { name: base.id, offset: base.span().start_offset as usize });
                uses.push(VariableUse::Attr { base: base.id, name: g.name, offset });
            } else {
                collect_variables(&g.expr, uses);
            }
        }
        E::GetItem(g) => {
            collect_variables(&g.expr, uses);
            collect_variables(&g.subscript_expr, uses);
        }
        E::Call(c) => {
            collect_variables(&c.expr, uses);
            args(&c.args, uses);
        }
        E::List(l) => l.items.iter().for_each(|e| collect_variables(e, uses)),
        E::Tuple(t) => t.items.iter().for_each(|e| collect_variables(e, uses)),
        E::Map(m) => m.keys.iter().chain(&m.values).for_each(|e| collect_variables(e, uses)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Ctx;
    use crate::source::MemoryReader;
    use crate::SourceFile;

    /// A target `db` with properties, its query set `dbq`, and a notification template stub.
    const BASE: &str = r#"apiVersion: provflow/v1
kind: Target
name: db
dialect: sqlite
queries: dbq
properties: { tablespace: users, max_conn: 5 }
---
apiVersion: provflow/v1
kind: ConnectorQueries
name: dbq
dialect: sqlite
queries:
  CREATE_USER:
    query: "call create_user({name}, {pw})"
    params: { name: String, pw: GuardedString }
  SET_QUOTA:
    query: "call set_quota({name}, {quota})"
    params: { name: String, quota: Long }
  RESET:
    query: "call reset({name}, {response})"
    params: { name: String }
    outputs: { response: String }
  SEARCH:
    query: "select name, enabled from users"
    columns: { name: String, enabled: Boolean }
  GRANT:
    query: "call grant_role({name}, {role})"
    params: { name: String, role: String }
---
apiVersion: provflow/v1
kind: NotificationTemplate
name: Account Created
event: Account Provisioned
default_locale: en-US
locales: { en-US: { subject: s, short: s, long: l } }
---
"#;

    /// The header of process `P`; test bodies follow it.
    const HEADER: &str = "apiVersion: provflow/v1\nkind: Process\nname: P\nobject: O\ntarget: db\n";

    /// Stands in for the query-set pass: IN params, OUT outputs, INOUT for both, columns.
    fn query_set(cq: &syntax::ConnectorQueries) -> ir::QuerySet {
        let queries = cq
            .queries
            .iter()
            .map(|(name, q)| {
                let mut params: Vec<ir::QueryParam> = q
                    .params
                    .iter()
                    .map(|(n, spec)| ir::QueryParam {
                        name: n.clone(),
                        ty: value_type(spec.ty()),
                        mode: if q.outputs.contains_key(n) { ir::ParamMode::InOut } else { ir::ParamMode::In },
                        quoting: ir::Quoting::Bind,
                    })
                    .collect();
                params.extend(q.outputs.iter().filter(|(n, _)| !q.params.contains_key(*n)).map(|(n, t)| {
                    ir::QueryParam {
                        name: n.clone(),
                        ty: value_type(*t),
                        mode: ir::ParamMode::Out,
                        quoting: ir::Quoting::Bind,
                    }
                }));
                ir::Query {
                    name: name.clone(),
                    source: q.query.clone(),
                    segments: Vec::new(),
                    params,
                    call: None,
                    response_from: None,
                    errors: BTreeMap::new(),
                    columns: q
                        .columns
                        .iter()
                        .map(|(n, t)| ir::Column { name: n.clone(), ty: value_type(*t) })
                        .collect(),
                    idempotent: q.idempotent,
                    location: ir::Location::default(),
                }
            })
            .collect();
        ir::QuerySet {
            name: cq.name.clone(),
            dialect: ir::Dialect::Sqlite,
            install: Vec::new(),
            queries,
            procedures: Vec::new(),
            location: ir::Location::default(),
        }
    }

    fn attribute(name: &str, ty: ir::ValueType) -> ir::UserAttribute {
        ir::UserAttribute {
            name: name.into(),
            ty,
            label: name.into(),
            variable: name.into(),
            required: false,
            searchable: false,
            multi_valued: false,
            max_size: None,
            encrypted: false,
            builtin: true,
            allowed_values: Vec::new(),
        }
    }

    fn users() -> ir::UserSchema {
        ir::UserSchema {
            name: None,
            attributes: vec![
                attribute("usr_login", ir::ValueType::String),
                attribute("usr_first_name", ir::ValueType::String),
                attribute("usr_key", ir::ValueType::Long),
                attribute("usr_udf_pin", ir::ValueType::GuardedString),
            ],
        }
    }

    /// Lowers `BASE` + `process` (the body of process `P`); diagnostics as
    /// `CODE line:column message`, lines counted from the first line of `process`.
    fn run(process: &str, users: &ir::UserSchema) -> (Vec<ir::Process>, Vec<String>) {
        run_with_header(HEADER, process, users)
    }

    fn run_with_header(header: &str, process: &str, users: &ir::UserSchema) -> (Vec<ir::Process>, Vec<String>) {
        let text = format!("{BASE}{header}{process}");
        let offset = (BASE.lines().count() + header.lines().count()) as u32;
        let docs = super::super::test_docs(&text);
        let files = vec![SourceFile { path: "t.yaml".into(), text: Some(text.clone()) }];
        let reader = MemoryReader::new();
        let mut out = Findings::new();
        let ctx = Ctx::new(&reader, &files, &docs, &mut out);
        let sets: Vec<Arc<ir::QuerySet>> = ctx.query_sets.iter().map(|n| Arc::new(query_set(n.def))).collect();
        let processes: Vec<ir::Process> =
            lower(&ctx, &[], &sets, users, &mut out).into_iter().map(Arc::unwrap_or_clone).collect();
        let mut diags: Vec<(u32, u32, String)> = out
            .iter()
            .map(|(doc, f)| {
                let d = &docs[*doc];
                let diag = crate::resolve(&files[0], &d.spans, d.root, f);
                let line = i64::from(diag.line) - i64::from(offset);
                let sev = if diag.is_error() { "" } else { "warning " };
                let text = if HELPS.get() {
                    format!("{} {}", diag.code, diag.help.unwrap_or_default())
                } else {
                    format!("{} {line}:{} {sev}{}", diag.code, diag.column, diag.message)
                };
                (diag.line, diag.column, text)
            })
            .collect();
        diags.sort();
        (processes, diags.into_iter().map(|(_, _, s)| s).collect())
    }

    thread_local! {
        /// Makes [`run`] report `CODE help` instead of positions and messages.
        static HELPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    fn helps(process: &str) -> Vec<String> {
        HELPS.set(true);
        let (_, helps) = run(process, &users());
        HELPS.set(false);
        helps
    }

    #[test]
    fn help_texts_suggest_the_fix() {
        let helps = helps(
            r#"form: { fields: { username: String, password: { type: GuardedString, label: Password } } }
tasks:
  Create User:
    depends_on: [Creat User]
    responses: { X: { status: Complete } }
    adapter: { query: CREATE_USER, map: { name: from.username, pw: literal:x } }
  Passwrd Updated: { manual: true, condition: "usr.usr_login", status_map: { C: Provisoned } }
"#,
        );
        assert_eq!(
            helps,
            [
                "PF207 an account becomes Provisioned when every required task is Completed; mark the task that \
                 creates the account `required_for_completion: true`",
                "PF201 did you mean `Create User`?",
                "PF208 did you mean `Completed`?",
                "PF404 did you mean `form`? A source is `form.<field>`, `child.<field>`, `user.<attribute>`, \
                 `target.<property>`, `literal:<value>`, `system.date` or `tasks.<task>.outputs.<name>`",
                "PF408 a literal is written in git and can never feed a secret: map a GuardedString form field",
                "PF206 did you mean `Password Updated`?",
                "PF411 did you mean `user`?",
                "PF208 did you mean `Provisioned`?",
            ]
        );
    }

    /// Runs a case and compares its diagnostics; help texts are checked by [`helps`].
    fn check(process: &str, expected: &[&str]) {
        let (_, diags) = run(process, &users());
        assert_eq!(diags, expected, "\n{}", diags.join("\n"));
    }

    const VALID: &str = r#"form:
  fields:
    username: { type: String, label: User Name, required: true, from: user.usr_login }
    password: { type: GuardedString, label: Password }
    quota: Long
  child_tables:
    roles:
      fields: { role: String }
      on_insert: Add Role
tasks:
  Set Quota:
    depends_on: [Create User]
    duration: 2h
    adapter: { query: SET_QUOTA, map: { quota: literal:42, name: system.date } }
  Create User:
    required_for_completion: true
    adapter: { query: CREATE_USER, map: { name: form.username, pw: form.password } }
    responses:
      SUCCESS: { generate: [Reset] }
      DUPLICATE: { description: exists }
    status_map: { C: Provisioned, Cancelled: Revoked }
    notify: { Completed: Account Created }
    undo: [Approve]
  Reset:
    conditional: true
    adapter: { query: RESET, map: { name: form.username } }
  Password Updated:
    conditional: true
    condition: 'form.quota > 10 and user.usr_first_name != "" and target.tablespace'
    adapter: { query: RESET, map: { name: tasks.Reset.outputs.response } }
  Add Role:
    conditional: true
    allow_multiple_instances: true
    adapter: { query: GRANT, map: { name: target.tablespace, role: child.role } }
  Approve:
    manual: true
    assignee: admins
triggers:
  usr_first_name: Reset
recon:
  query: SEARCH
  fields:
    name: { type: String, maps_to: form.username, key: true }
    enabled: { type: Boolean, maps_to: OIM_OBJECT_STATUS, values: { "true": Enabled, "false": Disabled } }
"#;

    #[test]
    fn valid_process_lowers_without_findings() {
        let (processes, diags) = run(VALID.replace("system.date", "form.username").as_str(), &users());
        // RESET's output `response` is a String: fine for `name`.
        assert_eq!(diags, Vec::<String>::new());
        let p = &processes[0];
        let names: Vec<&str> = p.tasks.iter().map(|t| t.name.as_str()).collect();
        // Kahn: `Set Quota` waits for `Create User`; ties keep declaration order.
        assert_eq!(names, ["Create User", "Set Quota", "Reset", "Password Updated", "Add Role", "Approve"]);
        let (create, set_quota) = (&p.tasks[0], &p.tasks[1]);
        assert_eq!(set_quota.depends_on, [0]);
        assert_eq!(set_quota.duration_minutes, Some(120));
        assert_eq!(create.undo, [5]);
        assert_eq!(create.responses.len(), 2);
        assert_eq!(create.responses[0].code, "SUCCESS");
        assert_eq!(create.responses[0].status, ir::TaskStatus::Completed);
        assert_eq!(create.responses[0].generate, [2]);
        assert_eq!(create.responses[1].status, ir::TaskStatus::Rejected);
        assert_eq!(create.status_map.get(&ir::TaskStatus::Completed), Some(&ir::ObjectStatus::Provisioned));
        assert_eq!(create.notify.get(&ir::TaskStatus::Completed), Some(&0));
        // Mappings come in parameter order, whatever the order in the YAML.
        let ir::TaskAction::Adapter(adapter) = &set_quota.action else { panic!("adapter expected") };
        assert_eq!(adapter.query, 1);
        assert_eq!(
            adapter.map,
            [
                ir::Mapping { param: 0, source: ir::Source::Form("username".into()) },
                ir::Mapping { param: 1, source: ir::Source::Literal("42".into()) },
            ]
        );
        let ir::TaskAction::Adapter(updated) = &p.tasks[3].action else { panic!("adapter expected") };
        assert_eq!(updated.map[0].source, ir::Source::TaskOutput { task: 2, output: "response".into() });
        assert_eq!(p.tasks[3].updates_field.as_deref(), Some("password"));
        assert_eq!(p.tasks[5].action, ir::TaskAction::Manual { assignee: Some("admins".into()) });
        assert_eq!(p.form.fields[0].label, "User Name");
        assert_eq!(p.form.fields[2].label, "quota");
        assert_eq!(p.form.fields[0].from_user.as_deref(), Some("usr_login"));
        assert_eq!(p.form.child_tables[0].on_insert, Some(4));
        assert_eq!(p.triggers, [ir::Trigger { attribute: "usr_first_name".into(), task: 2 }]);
        let recon = p.recon.as_ref().expect("recon");
        assert_eq!(recon.query, Some(3));
        assert_eq!(recon.fields[1].maps_to, ir::ReconTarget::ObjectStatus);
        assert_eq!(recon.fields[1].values.get("false"), Some(&ir::ObjectStatus::Disabled));
    }

    #[test]
    fn system_date_feeding_a_string_is_lowered() {
        let (processes, diags) = run(VALID, &users());
        assert_eq!(diags, Vec::<String>::new());
        let ir::TaskAction::Adapter(a) = &processes[0].tasks[1].action else { panic!("adapter expected") };
        assert_eq!(a.map[0].source, ir::Source::SystemDate);
    }

    #[test]
    fn unknown_tasks_everywhere() {
        check(
            r#"form:
  child_tables:
    roles: { fields: { role: String }, on_insert: Add Rol }
tasks:
  Create User:
    required_for_completion: true
    manual: true
    depends_on: [Creat User]
    undo: [Nope]
    recovery: [Also Nope]
    responses: { SUCCESS: { generate: [Enable Usr] } }
  Enable User: { manual: true }
  Add Role: { manual: true, allow_multiple_instances: true }
triggers: { usr_first_name: Ghost }
"#,
            &[
                "PF201 3:51 unknown task `Add Rol` in `on_insert`",
                "PF201 8:18 unknown task `Creat User` in `depends_on`",
                "PF201 9:12 unknown task `Nope` in `undo`",
                "PF201 10:16 unknown task `Also Nope` in `recovery`",
                "PF201 11:40 unknown task `Enable Usr` in `generate`",
                "PF201 14:29 unknown task `Ghost` in `triggers`",
            ],
        );
    }

    #[test]
    fn did_you_mean_for_tasks_and_escaped_pointers() {
        let (_, diags) = run(
            "tasks:\n  a/b: { manual: true, required_for_completion: true, depends_on: [a/c] }\n  a/c~: { manual: true }\n",
            &users(),
        );
        assert_eq!(diags, ["PF201 2:68 unknown task `a/c` in `depends_on`"]);
    }

    #[test]
    fn cycles_are_named_once() {
        check(
            r#"tasks:
  A: { manual: true, required_for_completion: true, depends_on: [B] }
  B: { manual: true, depends_on: [C] }
  C: { manual: true, depends_on: [A] }
  D: { manual: true, depends_on: [D] }
"#,
            &["PF202 4:35 cycle in `depends_on`: `A` → `B` → `C` → `A`", "PF202 5:35 cycle in `depends_on`: `D` → `D`"],
        );
        // Declaration order survives a cycle.
        let (p, _) =
            run("tasks:\n  B: { manual: true, depends_on: [A] }\n  A: { manual: true, depends_on: [B] }\n", &users());
        assert_eq!(p[0].tasks[0].name, "B");
    }

    #[test]
    fn unknown_target_and_template() {
        let (_, diags) = run(
            "tasks:\n  T: { manual: true, required_for_completion: true, notify: { Completed: Account Creatd } }\n",
            &users(),
        );
        assert_eq!(diags, ["PF204 2:74 unknown notification template `Account Creatd`"]);
        let (_, diags) = run_with_header(
            &HEADER.replace("target: db", "target: dbb"),
            "tasks:\n  T: { manual: true, required_for_completion: true }\n",
            &users(),
        );
        assert_eq!(diags, ["PF203 0:9 unknown target `dbb`"]);
    }

    #[test]
    fn unreachable_and_misnamed_tasks_and_no_required_task() {
        check(
            r#"form:
  fields:
    password: { type: GuardedString, label: Password }
    quota: Long
tasks:
  Orphan: { manual: true, conditional: true }
  Guarded: { manual: true, conditional: true, condition: "form.quota > 1" }
  Enable: { manual: true, conditional: true, effect: enables }
  Passwrd Updated: { manual: true, conditional: true }
  Password Updated: { manual: true, conditional: true }
  quota Updated: { manual: true, conditional: true }
  First Name Updated: { manual: true, conditional: true }
triggers: { usr_first_name: First Name Updated }
"#,
            &[
                "PF207 5:1 warning process `P` has no task with `required_for_completion: true`",
                "PF205 6:3 warning conditional task `Orphan` can never be inserted",
                "PF205 9:3 warning conditional task `Passwrd Updated` can never be inserted",
                "PF206 9:3 warning task `Passwrd Updated` is named after `Passwrd`, which is no form field label",
            ],
        );
    }

    #[test]
    fn status_names() {
        check(
            r#"tasks:
  T:
    manual: true
    required_for_completion: true
    responses: { DONE: { status: Complete } }
    status_map: { Completed: Provisoned, XX: Revoked, MC: None, PX: Ready }
    notify: { Rejectd: Account Created }
"#,
            &[
                "PF208 5:34 unknown task status `Complete`",
                "PF208 6:30 unknown object status `Provisoned`",
                "PF208 6:42 unknown task status `XX`",
                "PF208 7:15 unknown task status `Rejectd`",
            ],
        );
    }

    #[test]
    fn adapter_queries_and_mappings() {
        check(
            r#"form:
  fields:
    username: String
    password: GuardedString
    quota: Long
    pin: Integer
tasks:
  A:
    required_for_completion: true
    adapter: { query: CREATE_USR, map: { name: form.username } }
  B:
    adapter: { query: CREATE_USER, map: { nam: form.username } }
  C:
    adapter: { query: RESET, map: { name: form.username, response: literal:x } }
  D:
    adapter: { query: SET_QUOTA, map: { name: from.username, quota: form.quot } }
"#,
            &[
                "PF401 10:23 unknown query `CREATE_USR` in query set `dbq`",
                "PF402 12:36 no mapping for parameters `name`, `pw` of query `CREATE_USER`",
                "PF403 12:43 query `CREATE_USER` has no parameter `nam`",
                "PF403 14:58 `response` is an output of query `RESET`, not an input",
                "PF404 16:47 invalid source `from.username` for parameter `name`",
                "PF405 16:69 unknown form field `quot` in `form.quot`",
            ],
        );
    }

    #[test]
    fn source_names() {
        check(
            r#"form:
  fields: { username: String }
  child_tables:
    roles: { fields: { role: String }, on_insert: Grant }
tasks:
  Grant:
    required_for_completion: true
    allow_multiple_instances: true
    adapter: { query: GRANT, map: { name: user.usr_logn, role: child.rol } }
  Other:
    depends_on: [Grant]
    adapter: { query: GRANT, map: { name: target.tablespac, role: child.role } }
  Third:
    adapter: { query: RESET, map: { name: tasks.Grnt.outputs.x } }
  Fourth:
    adapter: { query: RESET, map: { name: tasks.Third.outputs.respons } }
  Fifth:
    manual: true
  Sixth:
    adapter: { query: RESET, map: { name: tasks.Fifth.outputs.response } }
"#,
            &[
                "PF405 9:43 unknown user attribute `usr_logn`",
                "PF405 9:64 unknown child table field `rol` in `child.rol`",
                "PF405 12:43 target `db` has no property `tablespac`",
                "PF405 12:67 `child.role` is only available in a child table's `on_insert` or `on_delete` task",
                "PF405 14:43 unknown task `Grnt` in `tasks.Grnt.outputs.x`",
                "PF405 16:43 query `RESET` of task `Third` has no output `respons`",
                "PF405 20:43 task `Fifth` runs no query, so it has no output `response`",
            ],
        );
    }

    #[test]
    fn types_and_secrets() {
        check(
            r#"form:
  fields:
    username: String
    password: GuardedString
    quota: String
    small: Integer
tasks:
  Leak:
    required_for_completion: true
    adapter: { query: CREATE_USER, map: { name: form.password, pw: form.username } }
  Literal Secret:
    adapter: { query: CREATE_USER, map: { name: user.usr_udf_pin, pw: literal:hunter2 } }
  Property Secret:
    adapter: { query: CREATE_USER, map: { name: user.usr_key, pw: target.tablespace } }
  Quota:
    adapter: { query: SET_QUOTA, map: { name: literal:x, quota: form.quota } }
  Quota Literal:
    adapter: { query: SET_QUOTA, map: { name: system.date, quota: literal:4x2 } }
  Quota Ok:
    adapter: { query: SET_QUOTA, map: { name: target.max_conn, quota: target.max_conn } }
  Widening:
    adapter: { query: SET_QUOTA, map: { name: user.usr_key, quota: form.small } }
"#,
            &[
                "PF407 10:49 secret leak: `form.password` is a GuardedString but parameter `name` is a String",
                "PF408 10:68 parameter `pw` is a GuardedString but `form.username` is a String",
                "PF407 12:49 secret leak: `user.usr_udf_pin` is a GuardedString but parameter `name` is a String",
                "PF408 12:71 parameter `pw` is a GuardedString but `literal:hunter2` is a literal",
                "PF408 14:67 parameter `pw` is a GuardedString but `target.tablespace` is a target property",
                "PF406 16:65 type mismatch: `form.quota` is a String but parameter `quota` is a Long",
                "PF406 18:67 type mismatch: literal `4x2` is not a valid Long for parameter `quota`: not a whole number (digits with an optional sign)",
            ],
        );
    }

    #[test]
    fn task_kinds() {
        check(
            r#"form:
  child_tables:
    roles: { fields: { role: String }, on_insert: Grant }
tasks:
  Neither: { required_for_completion: true }
  Both: { manual: true, adapter: { query: RESET, map: { name: literal:x } } }
  Assigned: { adapter: { query: RESET, map: { name: literal:x } }, assignee: admins }
  Manual Retry: { manual: true, retry: { count: 2, period_minutes: 5 } }
  No Recovery: { manual: true, complete_on_recovery: true }
  Grant: { manual: true, conditional: true }
"#,
            &[
                "PF409 5:3 task `Neither` has neither an `adapter` nor `manual: true`",
                "PF409 6:11 task `Both` has both an `adapter` and `manual: true`",
                "PF409 7:68 warning task `Assigned` has an `assignee` but is not manual",
                "PF412 8:33 manual task `Manual Retry` cannot have a `retry`",
                "PF412 9:32 warning task `No Recovery` has `complete_on_recovery` but no `recovery` tasks",
                "PF412 10:3 warning task `Grant` runs once per row of child table `roles` but does not allow multiple instances",
            ],
        );
    }

    #[test]
    fn conditions() {
        check(
            r#"form:
  fields: { username: String }
tasks:
  A: { manual: true, required_for_completion: true, condition: "form.username ==" }
  B: { manual: true, condition: "from.username == 'x' and form.usrname and user.usr_frist_name" }
  C: { manual: true, condition: "target.tablespace and target.nope or usr_login | length > 0" }
  D:
    manual: true
    condition: |
      form.username
        and user.usr_login
        and frm
"#,
            &[
                "PF410 4:79 `condition` is not a valid expression: unexpected end of input, expected expression",
                "PF411 5:34 unknown variable `from` in `condition`",
                "PF411 5:64 unknown form field `usrname` in `condition`",
                "PF411 5:81 unknown user attribute `usr_frist_name` in `condition`",
                "PF411 6:63 unknown target property `nope` in `condition`",
                "PF411 6:71 unknown variable `usr_login` in `condition`",
                "PF411 12:13 unknown variable `frm` in `condition`",
            ],
        );
    }

    #[test]
    fn form_from_and_triggers() {
        check(
            r#"form:
  fields:
    a: { type: String, from: usr_login }
    b: { type: String, from: user.usr_logn }
    c: { type: Long, from: user.usr_first_name }
tasks:
  T: { manual: true, required_for_completion: true }
triggers: { usr_frst_name: T }
"#,
            &[
                "PF404 3:30 invalid `from` source `usr_login`",
                "PF405 4:30 unknown user attribute `usr_logn`",
                "PF406 5:28 user attribute `usr_first_name` is a String but form field `c` is a Long",
                "PF405 8:13 unknown user attribute `usr_frst_name`",
            ],
        );
    }

    #[test]
    fn unknown_user_schema_checks_nothing_about_users() {
        let empty = ir::UserSchema { name: None, attributes: Vec::new() };
        let (_, diags) = run(
            "form: { fields: { a: { type: String, from: user.anything } } }\ntasks:\n  T: { manual: true, required_for_completion: true, condition: user.whatever }\ntriggers: { custom: T }\n",
            &empty,
        );
        assert_eq!(diags, Vec::<String>::new());
    }

    #[test]
    fn recon() {
        check(
            r#"form: { fields: { username: String, enabled: Boolean } }
tasks:
  T: { manual: true, required_for_completion: true }
recon:
  query: SEARCH
  fields:
    nam: { type: String, maps_to: form.username }
    enabled: { type: String, maps_to: OIM_OBJECT_STATUS, values: { "true": Enabld } }
    name: { type: String, maps_to: usr_login, values: { x: Enabled } }
"#,
            &[
                "PF413 6:3 reconciliation has no key field",
                "PF413 7:5 recon field `nam` is no column of query `SEARCH`",
                "PF413 8:22 recon field `enabled` is a String but column `enabled` of query `SEARCH` is a Boolean",
                "PF208 8:76 unknown object status `Enabld`",
                "PF404 9:36 invalid `maps_to` `usr_login`",
            ],
        );
        check(
            "tasks:\n  T: { manual: true, required_for_completion: true }\nrecon:\n  query: CREATE_USER\n  fields:\n    u: { type: String, maps_to: form.nope, key: true }\n",
            &[
                "PF413 4:10 recon query `CREATE_USER` declares no `columns`",
                "PF405 6:33 unknown form field `nope` in `maps_to`",
            ],
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(duration_minutes("2h"), Some(120));
        assert_eq!(duration_minutes("90s"), Some(2));
        assert_eq!(duration_minutes("1d"), Some(1440));
        assert_eq!(duration_minutes("h"), None);
        assert_eq!(duration_minutes("99999999999999999999d"), None);
        assert_eq!(parse_source("tasks.a.b.outputs.c"), Some(SourceSyntax::TaskOutput { task: "a.b", output: "c" }));
        assert_eq!(parse_source("form."), None);
        assert_eq!(parse_source("literal:"), Some(SourceSyntax::Literal("")));
        assert!(text_problem(ir::ValueType::Long, "42").is_none());
        assert!(text_problem(ir::ValueType::Integer, "99999999999").is_some());
    }

    const PIPELINE: &str = r#"apiVersion: provflow/v1
kind: Target
name: db
dialect: sqlite
queries: dbq
---
apiVersion: provflow/v1
kind: ConnectorQueries
name: dbq
dialect: sqlite
queries:
  CREATE_USER:
    query: "insert into users(name, pw) values ({name}, {pw})"
    params: { name: String, pw: GuardedString }
  DELETE_USER:
    query: "delete from users where name = {name}"
    params: { name: String }
---
apiVersion: provflow/v1
kind: Process
name: P
object: O
target: db
form:
  fields:
    username: { type: String, label: User Name, from: user.usr_login }
    password: GuardedString
tasks:
  Create User:
    required_for_completion: true
    adapter: { query: CREATE_USER, map: { name: form.username, pw: form.password } }
    undo: [Delete User]
  Delete User:
    conditional: true
    adapter: { query: DELETE_USER, map: { name: form.username } }
"#;

    #[test]
    fn compiles_through_the_pipeline() {
        let c = crate::compile_bytes("t.yaml", PIPELINE.as_bytes());
        let diags: Vec<String> = c.diagnostics.iter().map(|d| format!("{} {}:{}", d.code, d.line, d.column)).collect();
        assert_eq!(diags, Vec::<String>::new());
        let bundle = c.bundle.expect("a bundle");
        assert_eq!(bundle.processes[0].tasks[0].undo, [1]);

        let broken = PIPELINE
            .replace("undo: [Delete User]", "undo: [Delete Usr]")
            .replace("pw: form.password", "pw: form.username");
        let c = crate::compile_bytes("t.yaml", broken.as_bytes());
        let diags: Vec<String> = c.diagnostics.iter().map(|d| format!("{} {}:{}", d.code, d.line, d.column)).collect();
        assert_eq!(diags, ["PF408 31:68", "PF201 32:12", "PF205 33:3"]);
        assert!(c.bundle.is_none());
    }
}
