//! The user record's rules: short names of custom attributes, the generated display name, and
//! the checks against the user schema.

use provflow_ir as ir;
use std::collections::BTreeMap;

use super::{did_you_mean, hint, EngineError};
use crate::value;

/// Custom attributes may be given by their short name: `cost_center` for `usr_udf_cost_center`.
pub(super) fn normalize_attrs(schema: &ir::UserSchema, attrs: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    attrs
        .iter()
        .map(|(k, v)| {
            let known = |n: &str| schema.attributes.iter().any(|a| a.name == n);
            let udf = format!("usr_udf_{k}");
            if !known(k) && known(&udf) {
                (udf, v.clone())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

pub(super) fn generate_display_name(attrs: &mut BTreeMap<String, String>) {
    if attrs.get("usr_display_name").is_some_and(|d| !d.trim().is_empty()) {
        return;
    }
    let parts: Vec<&str> = ["usr_first_name", "usr_last_name"]
        .iter()
        .filter_map(|k| attrs.get(*k).map(|s| s.trim()).filter(|s| !s.is_empty()))
        .collect();
    if !parts.is_empty() {
        attrs.insert("usr_display_name".into(), parts.join(" "));
    }
}

/// Attributes the runner manages itself; never required from the person creating a user.
const MANAGED: &[&str] = &["usr_key", "usr_login", "usr_status", "usr_locked", "usr_display_name"];

/// Checks attributes against the user schema: names, types, allowed values, sizes, required
/// ones, and the date order start < provisioning < deprovisioning < end. All problems at once.
pub fn check_user(
    schema: &ir::UserSchema,
    attrs: &BTreeMap<String, String>,
    creating: bool,
) -> Result<(), EngineError> {
    let mut problems = Vec::new();
    for (name, value) in attrs {
        if name == "usr_status" || name == "usr_locked" {
            problems.push(format!(
                "`{name}` is managed by provflow: use `provflow user enable|disable|delete|lock|unlock`"
            ));
            continue;
        }
        if schema.attributes.is_empty() {
            continue;
        }
        let Some(attr) = schema.attributes.iter().find(|a| &a.name == name) else {
            let s = did_you_mean(name, schema.attributes.iter().map(|a| a.name.as_str()));
            problems.push(format!("unknown user attribute `{name}`{}", hint(&s)));
            continue;
        };
        if let Err(e) = value::typed(attr.ty, value) {
            problems.push(format!("user attribute `{name}`: {e}"));
        }
        if !attr.allowed_values.is_empty() && !attr.allowed_values.contains(value) {
            problems.push(format!("user attribute `{name}` must be one of {}", attr.allowed_values.join(", ")));
        }
        if let Some(max) = attr.max_size {
            if value.chars().count() > max as usize {
                problems.push(format!("user attribute `{name}` is longer than its {max} characters"));
            }
        }
    }
    if creating {
        for a in schema.attributes.iter().filter(|a| a.required && !MANAGED.contains(&a.name.as_str())) {
            if attrs.get(&a.name).is_none_or(|v| v.trim().is_empty()) {
                problems.push(format!(
                    "user attribute `{}` ({}) is required: add --attr {}=VALUE",
                    a.name, a.label, a.name
                ));
            }
        }
    }
    let order = ["usr_start_date", "usr_provisioning_date", "usr_deprovisioning_date", "usr_end_date"];
    let dates: Vec<(&str, &String)> = order.iter().filter_map(|k| attrs.get(*k).map(|v| (*k, v))).collect();
    for pair in dates.windows(2) {
        if let [(a, da), (b, db)] = pair {
            // Values that are no date were reported above.
            if value::wall_clock(da).zip(value::wall_clock(db)).is_some_and(|(ta, tb)| ta >= tb) {
                problems.push(format!("`{a}` ({da}) must come before `{b}` ({db})"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::Invalid(problems))
    }
}
