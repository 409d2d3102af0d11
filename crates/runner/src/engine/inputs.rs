//! The values an adapter's mappings read (form, user, target properties, child rows, earlier
//! tasks' outputs, the date) and a task's `condition` over them.

use provflow_ir::{self as ir, Bundle};
use std::collections::BTreeMap;

use crate::store::{ChildRow, FormData, TaskInstance, UserRecord};
use crate::value::{self, Value};

pub(super) fn query_of<'b>(
    bundle: &'b Bundle,
    process: &ir::Process,
    adapter: &ir::Adapter,
) -> Option<(&'b ir::Query, ir::Dialect)> {
    let target = bundle.targets.get(process.target)?;
    let set = bundle.query_sets.get(target.query_set)?;
    set.queries.get(adapter.query).map(|q| (q, target.dialect))
}

/// The data an adapter's mappings read from.
pub(super) struct Inputs<'x> {
    pub(super) bundle: &'x Bundle,
    pub(super) process: &'x ir::Process,
    pub(super) user: &'x UserRecord,
    pub(super) form: &'x FormData,
    pub(super) child: &'x ChildRow,
    pub(super) tasks: &'x [TaskInstance],
    pub(super) today: String,
}

impl Inputs<'_> {
    /// The value of every query parameter (OUT ones `Null`), typed by the parameter's type.
    /// `Err` says, for a person, why the task cannot run.
    pub(super) fn values(&self, adapter: &ir::Adapter) -> Result<Vec<Value>, String> {
        let Some((query, _)) = query_of(self.bundle, self.process, adapter) else {
            return Err("the task's query is missing from the bundle".into());
        };
        let mut values = vec![Value::Null; query.params.len()];
        for m in &adapter.map {
            let Some(param) = query.params.get(m.param) else { continue };
            let raw: Option<Value> = match &m.source {
                ir::Source::Form(f) => self.form.get(f).cloned(),
                ir::Source::Child(f) => self.child.get(f).cloned().map(Value::Text),
                ir::Source::User(a) => {
                    if a == "usr_login" {
                        Some(Value::Text(self.user.login.clone()))
                    } else {
                        self.user.attributes.get(a).cloned().map(Value::Text)
                    }
                }
                ir::Source::Target(p) => self
                    .bundle
                    .targets
                    .get(self.process.target)
                    .and_then(|t| t.properties.get(p).cloned())
                    .map(Value::Text),
                ir::Source::Literal(l) => Some(Value::Text(l.clone())),
                ir::Source::SystemDate => Some(Value::Text(self.today.clone())),
                ir::Source::TaskOutput { task, output } => self
                    .tasks
                    .iter()
                    .rfind(|t| t.task_index == *task)
                    .and_then(|t| t.outputs.get(output).cloned())
                    .map(Value::Text),
            };
            let value = match raw {
                None if param.ty.is_secret() => {
                    return Err(format!(
                        "the secret for `{}` is not available (secrets are kept across runs only with PROVFLOW_SECRET_KEY or .provflow/secret.key)",
                        param.name
                    ))
                }
                None | Some(Value::Null) => Value::Null,
                Some(Value::Secret(s)) if param.ty.is_secret() => Value::Secret(s),
                Some(Value::Secret(_)) => return Err(format!("a secret cannot feed the plain parameter `{}`", param.name)),
                Some(v) => {
                    let text = v.display();
                    value::typed(param.ty, &text).map_err(|e| format!("the value for `{}` {}", param.name, e.to_string().replacen('`', "(`", 1).replacen("` is", "`) is", 1)))?
                }
            };
            if let Some(slot) = values.get_mut(m.param) {
                *slot = value;
            }
        }
        Ok(values)
    }
}

/// Evaluates a task's `condition` over `user`, `form` (secrets left out) and `target`.
/// A condition that fails to evaluate does not hold.
pub(super) fn condition_holds(
    expr: &str,
    bundle: &Bundle,
    process: &ir::Process,
    user: &UserRecord,
    form: &FormData,
) -> bool {
    let env = minijinja::Environment::new();
    let Ok(compiled) = env.compile_expression(expr) else { return false };
    let mut user_attrs = user.attributes.clone();
    // Custom attributes answer to their short name too (`cost_center` for `usr_udf_cost_center`).
    let short: Vec<(String, String)> =
        user_attrs.iter().filter_map(|(k, v)| k.strip_prefix("usr_udf_").map(|s| (s.to_string(), v.clone()))).collect();
    for (k, v) in short {
        user_attrs.entry(k).or_insert(v);
    }
    user_attrs.insert("usr_login".into(), user.login.clone());
    user_attrs.insert("usr_status".into(), user.status.clone());
    let form_plain: BTreeMap<String, String> =
        form.iter().filter_map(|(k, v)| v.as_plain_text().map(|t| (k.clone(), t))).collect();
    let target = bundle.targets.get(process.target).map(|t| t.properties.clone()).unwrap_or_default();
    compiled
        .eval(minijinja::context! { user => user_attrs, form => form_plain, target => target })
        .map(|v| v.is_true())
        .unwrap_or(false)
}
