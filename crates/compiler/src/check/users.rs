//! UserSchema: the built-in user attributes (seed 003) plus the custom ones (UDFs) of the
//! bundle's one `UserSchema`.
//!
//! Decision: there is no built-in password attribute. A user's password is never stored in
//! the profile: secrets reach targets only through `GuardedString` form fields fed from
//! `--secret` or `{ secret_env: VAR }`, so nothing secret can leak into a template variable.
use super::{ptr, Ctx, Findings};
use crate::diagnostic::{Finding, Part};
use crate::query::value_type;
use crate::syntax::TypeName;
use provflow_ir as ir;
use provflow_ir::ValueType as T;

/// `usr_status` values (seed 003, "User Status").
pub const USER_STATUSES: [&str; 4] = ["Active", "Disabled", "Deleted", "Disabled Until Start Date"];

/// The built-in attributes, in their fixed order: name, type, label, required.
const BUILTIN: &[(&str, T, &str, bool)] = &[
    ("usr_key", T::Long, "User Key", false),
    ("usr_login", T::String, "User Login", true),
    ("usr_first_name", T::String, "First Name", false),
    ("usr_middle_name", T::String, "Middle Name", false),
    ("usr_last_name", T::String, "Last Name", false),
    ("usr_display_name", T::String, "Display Name", false),
    ("usr_email", T::String, "Email", false),
    ("usr_telephone_number", T::String, "Telephone Number", false),
    ("usr_mobile", T::String, "Mobile", false),
    ("usr_title", T::String, "Title", false),
    ("usr_emp_no", T::String, "Employee Number", false),
    ("usr_emp_type", T::String, "Employee Type", false),
    ("usr_type", T::String, "Design Console Access", false),
    ("act_key", T::Long, "Organization", false),
    ("usr_manager_key", T::Long, "Manager", false),
    ("usr_status", T::String, "User Status", false),
    ("usr_locked", T::Boolean, "Locked", false),
    ("usr_locale", T::String, "Locale", false),
    ("usr_start_date", T::Date, "Start Date", false),
    ("usr_provisioning_date", T::Date, "Provisioning Date", false),
    ("usr_deprovisioning_date", T::Date, "Deprovisioning Date", false),
    ("usr_deprovisioned_date", T::Date, "Deprovisioned Date", false),
    ("usr_end_date", T::Date, "End Date", false),
    ("usr_automatically_delete_on", T::Date, "Automatically Delete On", false),
    ("usr_pwd_cant_change", T::Boolean, "Password Cannot Change", false),
    ("usr_pwd_must_change", T::Boolean, "Password Must Change", false),
    ("usr_pwd_never_expires", T::Boolean, "Password Never Expires", false),
    ("usr_pwd_expire_date", T::Date, "Password Expiry Date", false),
    ("usr_pwd_warn_date", T::Date, "Password Warning Date", false),
    ("usr_policy_update", T::Boolean, "Access Policy Update", false),
    ("usr_ldap_dn", T::String, "LDAP DN", false),
    ("usr_ldap_organization", T::String, "LDAP Organization", false),
    ("usr_ldap_organization_unit", T::String, "LDAP Organization Unit", false),
];

/// `usr_emp_type` values.
const EMPLOYEE_TYPES: [&str; 6] = ["Full-Time", "Part-Time", "Temp", "Intern", "Consultant", "Contractor"];
/// `usr_type` values (seed 003, "Design Console Access").
const USER_TYPES: [&str; 2] = ["End User", "End-User Administrator"];

/// The template variable of a label: spaces become `_`.
pub fn variable_of(label: &str) -> String {
    label.replace(' ', "_")
}

/// The built-in attributes, always present.
pub fn builtin_attributes() -> Vec<ir::UserAttribute> {
    BUILTIN
        .iter()
        .map(|&(name, ty, label, required)| {
            let allowed: &[&str] = match name {
                "usr_status" => &USER_STATUSES,
                "usr_emp_type" => &EMPLOYEE_TYPES,
                "usr_type" => &USER_TYPES,
                _ => &[],
            };
            ir::UserAttribute {
                name: name.to_owned(),
                ty,
                label: label.to_owned(),
                variable: variable_of(label),
                required,
                searchable: matches!(name, "usr_login" | "usr_first_name" | "usr_last_name" | "usr_email"),
                multi_valued: false,
                max_size: None,
                encrypted: false,
                builtin: true,
                allowed_values: allowed.iter().map(|s| (*s).to_owned()).collect(),
            }
        })
        .collect()
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub fn lower(ctx: &Ctx<'_>, out: &mut Findings) -> ir::UserSchema {
    let mut attributes = builtin_attributes();
    // The first schema in file order is the bundle's; the others are reported.
    let mut schemas: Vec<_> = ctx.user_schemas.iter().collect();
    schemas.sort_by_key(|s| s.doc);
    let Some((first, rest)) = schemas.split_first() else {
        return ir::UserSchema { name: None, attributes };
    };
    for other in rest {
        out.push((
            other.doc,
            Finding::error(
                "PF601",
                format!("a second UserSchema `{}`; a bundle has at most one", other.name),
                "/name",
                Part::Value,
                Some(format!(
                    "move the attributes of `{}` into UserSchema `{}` (in {}) and delete this document",
                    other.name,
                    first.name,
                    ctx.file_of(first.doc)
                )),
            ),
        ));
    }

    let doc = first.doc;
    for (name, def) in &first.def.attributes {
        let at = format!("/attributes/{}", ptr(name));
        let variable = variable_of(&def.label);
        if attributes.iter().any(|a| a.builtin && a.name == *name) {
            out.push((
                doc,
                Finding::error(
                    "PF602",
                    format!("custom attribute `{name}` redefines a built-in attribute"),
                    at.clone(),
                    Part::Key,
                    Some(format!(
                        "`{name}` exists without being declared; give the custom attribute another name, such as `usr_udf_{}`",
                        name.trim_start_matches("usr_")
                    )),
                ),
            ));
            continue;
        }
        if let Some(clash) = attributes.iter().find(|a| a.variable == variable) {
            out.push((
                doc,
                Finding::error(
                    "PF602",
                    format!(
                        "label `{}` of `{name}` gives the template variable `{variable}`, already used by `{}`",
                        def.label, clash.name
                    ),
                    format!("{at}/label"),
                    Part::Value,
                    Some(format!(
                        "templates name attributes by label (spaces become `_`); give `{name}` a label that does not \
                         read `{}`",
                        clash.label
                    )),
                ),
            ));
        } else if !is_identifier(&variable) {
            out.push((
                doc,
                Finding::warning(
                    "PF604",
                    format!("label `{}` gives `{variable}`, which templates cannot use as a variable", def.label),
                    format!("{at}/label"),
                    Part::Value,
                    Some("a template variable is the label with spaces replaced by `_`: use letters, digits, spaces and `_` only".into()),
                ),
            ));
        }
        if def.ty != TypeName::String {
            if !def.values.is_empty() {
                out.push((
                    doc,
                    Finding::error(
                        "PF603",
                        format!("`values` on `{name}`, which is not a String attribute"),
                        format!("{at}/values"),
                        Part::Key,
                        Some(
                            "allowed values apply to String attributes only: remove `values` or make the type `String`"
                                .into(),
                        ),
                    ),
                ));
            }
            if def.max_size.is_some() {
                out.push((
                    doc,
                    Finding::error(
                        "PF603",
                        format!("`max_size` on `{name}`, which is not a String attribute"),
                        format!("{at}/max_size"),
                        Part::Key,
                        Some(
                            "a maximum size in characters applies to String attributes only: remove `max_size`".into(),
                        ),
                    ),
                ));
            }
        }
        attributes.push(ir::UserAttribute {
            name: name.clone(),
            ty: value_type(def.ty),
            label: def.label.clone(),
            variable,
            required: def.required,
            searchable: def.searchable,
            multi_valued: def.multi_valued,
            max_size: def.max_size,
            encrypted: def.encrypted,
            builtin: false,
            allowed_values: def.values.clone(),
        });
    }
    ir::UserSchema { name: Some(first.name.to_owned()), attributes }
}

#[cfg(test)]
mod tests {
    /// A diagnostic as (code, line, column).
    type Expected = (&'static str, u32, u32);

    use crate::compile_bytes;

    /// (code, line, column) of every diagnostic.
    fn check(yaml: &str) -> Vec<(&'static str, u32, u32)> {
        compile_bytes("t.yaml", yaml.as_bytes()).diagnostics.iter().map(|d| (d.code, d.line, d.column)).collect()
    }

    const HEAD: &str = "apiVersion: provflow/v1\nkind: UserSchema\n";

    #[test]
    fn diagnostics() {
        let cases: &[(&str, &[Expected])] = &[
            ("name: a\nattributes:\n  cost_center: { type: String, label: Cost Center }\n", &[]),
            ("name: a\nattributes:\n  usr_email: { type: String, label: Mail }\n", &[("PF602", 5, 3)]),
            ("name: a\nattributes:\n  x: { type: String, label: First Name }\n", &[("PF602", 5, 29)]),
            (
                "name: a\nattributes:\n  x: { type: String, label: Cost Center }\n  y: { type: String, label: Cost_Center }\n",
                &[("PF602", 6, 29)],
            ),
            ("name: a\nattributes:\n  x: { type: Integer, label: X, values: [a] }\n", &[("PF603", 5, 33)]),
            ("name: a\nattributes:\n  x: { type: Long, label: X, max_size: 3 }\n", &[("PF603", 5, 30)]),
            ("name: a\nattributes:\n  x: { type: String, label: E-mail }\n", &[("PF604", 5, 29)]),
            ("name: a\n---\napiVersion: provflow/v1\nkind: UserSchema\nname: b\n", &[("PF601", 7, 7)]),
        ];
        for (body, want) in cases {
            let yaml = format!("{HEAD}{body}");
            assert_eq!(check(&yaml), *want, "{yaml}");
        }
    }

    #[test]
    fn lowers_builtins_first_then_custom_in_yaml_order() {
        let yaml = format!(
            "{HEAD}name: default\nattributes:\n  zeta: {{ type: String, label: Zeta Code, max_size: 4, values: [a, b] }}\n  alpha: {{ type: Integer, label: Alpha }}\n"
        );
        let c = compile_bytes("t.yaml", yaml.as_bytes());
        let bundle = c.bundle.expect("compiles");
        let attrs = &bundle.user_schema.attributes;
        assert_eq!(bundle.user_schema.name.as_deref(), Some("default"));
        assert_eq!(attrs[0].name, "usr_key");
        assert_eq!(attrs[1].name, "usr_login");
        assert!(attrs[1].required);
        let n = attrs.len();
        assert_eq!((attrs[n - 2].name.as_str(), attrs[n - 1].name.as_str()), ("zeta", "alpha"));
        assert_eq!(attrs[n - 2].variable, "Zeta_Code");
        assert_eq!(attrs[n - 2].allowed_values, vec!["a", "b"]);
        assert_eq!(attrs[n - 2].max_size, Some(4));
        assert!(!attrs[n - 1].builtin && attrs[0].builtin);
        let status = attrs.iter().find(|a| a.name == "usr_status").expect("usr_status");
        assert_eq!(status.allowed_values, super::USER_STATUSES);
        assert!(attrs.iter().any(|a| a.name == "usr_first_name" && a.variable == "First_Name"));
    }
}
