//! JSON Schemas generated from the source types, and structural validation with them.
//!
//! The schemas written to `schemas/` and the validators the compiler runs come from the same
//! generator, so the editor and `provflow compile` can never disagree on structure. One
//! exception, on purpose: task and object statuses are enums for the editor, but the compiler
//! validates them as text and checks them itself (PF208, PF516), with a "did you mean".
//!
//! The generated schemas are rewritten ([`for_editors`]) into forms yaml-language-server (the
//! engine of VS Code's YAML extension and of most other editors' YAML support) handles; each
//! rewrite keeps what the schema accepts.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

use crate::diagnostic::{Finding, Part};
use crate::suggest::did_you_mean;
use crate::syntax;

/// A kind of document and its schema file name.
pub struct KindSchema {
    pub kind: &'static str,
    pub file: &'static str,
    pub schema: Value,
}

fn settings() -> SchemaSettings {
    SchemaSettings::draft2020_12().for_deserialize()
}

fn root_for<T: JsonSchema>(kind: &'static str, file: &'static str) -> KindSchema {
    let schema = settings().into_generator().into_root_schema_for::<T>();
    let mut schema = schema.to_value();
    for_editors(&mut schema);
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("$id".into(), Value::String(format!("https://provflow.dev/schemas/{file}")));
    }
    KindSchema { kind, file, schema }
}

/// One schema per kind, in the order of [`syntax::KINDS`].
pub fn kind_schemas() -> Vec<KindSchema> {
    vec![
        root_for::<syntax::Target>("Target", "target.schema.json"),
        root_for::<syntax::ConnectorQueries>("ConnectorQueries", "connector-queries.schema.json"),
        root_for::<syntax::Process>("Process", "process.schema.json"),
        root_for::<syntax::NotificationEvent>("NotificationEvent", "notification-event.schema.json"),
        root_for::<syntax::NotificationTemplate>("NotificationTemplate", "notification-template.schema.json"),
        root_for::<syntax::UserSchema>("UserSchema", "user-schema.schema.json"),
        root_for::<syntax::Scenario>("Scenario", "scenario.schema.json"),
    ]
}

/// The schema of a whole definition file: any kind, chosen by `kind`.
pub fn file_schema() -> Value {
    let mut generator = settings().into_generator();
    let refs = [
        ("Target", generator.subschema_for::<syntax::Target>(), "A database the runner provisions into."),
        (
            "ConnectorQueries",
            generator.subschema_for::<syntax::ConnectorQueries>(),
            "The queries (stored-procedure calls) of a target type.",
        ),
        ("Process", generator.subschema_for::<syntax::Process>(), "A provisioning process definition."),
        (
            "NotificationEvent",
            generator.subschema_for::<syntax::NotificationEvent>(),
            "A notification event: the data its templates may use.",
        ),
        (
            "NotificationTemplate",
            generator.subschema_for::<syntax::NotificationTemplate>(),
            "A notification template, in one or more locales.",
        ),
        ("UserSchema", generator.subschema_for::<syntax::UserSchema>(), "The user profile's custom attributes."),
        ("Scenario", generator.subschema_for::<syntax::Scenario>(), "A declarative test against test databases."),
    ];
    let defs = generator.take_definitions(true);
    let kinds: Vec<&str> = refs.iter().map(|(k, _, _)| *k).collect();
    let kind_docs: Vec<&str> = refs.iter().map(|(_, _, d)| *d).collect();
    let branches: Vec<Value> = refs
        .iter()
        .map(|(k, r, _)| {
            json!({
                "if": { "properties": { "kind": { "const": k } }, "required": ["kind"] },
                "then": r.clone().to_value(),
            })
        })
        .collect();
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://provflow.dev/schemas/provflow.schema.json",
        "title": "provflow definition",
        "description": "A provflow definition document. `kind` selects which fields apply.",
        "type": "object",
        "required": ["apiVersion", "kind", "name"],
        "properties": {
            "apiVersion": { "const": syntax::API_VERSION, "description": "Always `provflow/v1`." },
            "kind": {
                "type": "string",
                "enum": kinds,
                "markdownEnumDescriptions": kind_docs,
                "description": "The kind of definition.",
            },
        },
        "allOf": branches,
        "$defs": Value::Object(defs),
    });
    for_editors(&mut schema);
    schema
}

/// Rewrites a generated schema, keeping what it accepts, into forms that yaml-language-server
/// (1.x, as VS Code, Neovim, Helix and Zed run it) handles:
///
/// - no `"default": null`: the server's completion quotes a string field's default and throws on
///   null, which silently ends the completion list part-way;
/// - an enum of `const`s with descriptions becomes `enum` with `markdownEnumDescriptions`: the
///   server shows the first description it finds among the schemas matching a value, and a
///   `oneOf` branch is matched before the field, so the field's hover showed the value's text;
/// - a union of bare types (`anyOf: [{type: string}, {type: integer}, ...]`, a scalar) becomes
///   one `type` list: the server's hover joins the descriptions of an `anyOf` whose branches all
///   "match" (it compares only titles and descriptions), which repeated the field's description;
/// - an optional field (`anyOf: [{$ref}, {type: null}]`) gets its description beside the `$ref`
///   too, for the same reason (the referenced type's own description won);
/// - a scenario step (a one-property `oneOf` branch) gets the branch's description on its
///   property, which is what the server shows on the step's key.
///
/// `tests/editor_schemas.rs` drives the real server and checks each of these.
fn for_editors(schema: &mut Value) {
    match schema {
        Value::Object(obj) => {
            if obj.get("default") == Some(&Value::Null) {
                obj.remove("default");
            }
            consts_to_enum(obj);
            types_to_type_list(obj);
            describe_optional_ref(obj);
            describe_variants(obj);
            obj.values_mut().for_each(for_editors);
        }
        Value::Array(items) => items.iter_mut().for_each(for_editors),
        _ => {}
    }
}

/// `oneOf: [{const, description}, ...]` → `enum` + `markdownEnumDescriptions`.
fn consts_to_enum(obj: &mut Map<String, Value>) {
    let Some(Value::Array(branches)) = obj.get("oneOf") else { return };
    let is_const = |b: &Value| {
        b.as_object().is_some_and(|b| {
            b.contains_key("const") && b.keys().all(|k| matches!(k.as_str(), "const" | "type" | "description"))
        })
    };
    if branches.is_empty() || !branches.iter().all(is_const) {
        return;
    }
    let values: Vec<Value> = branches.iter().filter_map(|b| b.get("const").cloned()).collect();
    let docs: Vec<Value> = branches
        .iter()
        .map(|b| b.get("description").cloned().unwrap_or_else(|| Value::String(String::new())))
        .collect();
    let all_strings = values.iter().all(Value::is_string);
    obj.remove("oneOf");
    if all_strings {
        obj.insert("type".into(), json!("string"));
    }
    obj.insert("enum".into(), Value::Array(values));
    obj.insert("markdownEnumDescriptions".into(), Value::Array(docs));
}

/// `anyOf: [{type: A}, {type: B, format}, ...]` → `type: [A, B, ...]`.
fn types_to_type_list(obj: &mut Map<String, Value>) {
    let Some(Value::Array(branches)) = obj.get("anyOf") else { return };
    let types: Option<Vec<Value>> = branches
        .iter()
        .map(|b| match b.as_object() {
            // `format` (`int64`, `double`) is only an annotation in draft 2020-12.
            Some(b) if b.keys().all(|k| k == "type" || k == "format") => {
                b.get("type").filter(|t| t.is_string()).cloned()
            }
            _ => None,
        })
        .collect();
    let Some(types) = types.filter(|t| t.len() > 1) else { return };
    obj.remove("anyOf");
    obj.insert("type".into(), Value::Array(types));
}

/// `{description, anyOf: [{$ref}, {type: null}]}`: the description beside the `$ref` as well.
fn describe_optional_ref(obj: &mut Map<String, Value>) {
    let Some(description) = obj.get("description").cloned() else { return };
    let Some(Value::Array(branches)) = obj.get_mut("anyOf") else { return };
    if branches.len() != 2 || !branches.iter().any(|b| b == &json!({ "type": "null" })) {
        return;
    }
    for branch in branches.iter_mut().filter_map(Value::as_object_mut) {
        if branch.contains_key("$ref") && !branch.contains_key("description") {
            branch.insert("description".into(), description.clone());
        }
    }
}

/// `oneOf: [{properties: {step: S}, required: [step], description}, ...]`: each branch's
/// description on its one property too.
fn describe_variants(obj: &mut Map<String, Value>) {
    let Some(Value::Array(branches)) = obj.get_mut("oneOf") else { return };
    for branch in branches.iter_mut().filter_map(Value::as_object_mut) {
        let Some(description) = branch.get("description").cloned() else { continue };
        let Some(Value::Object(properties)) = branch.get_mut("properties") else { continue };
        if properties.len() != 1 {
            continue;
        }
        if let Some(Value::Object(property)) = properties.values_mut().next() {
            property.entry("description").or_insert(description);
        }
    }
}

/// Every schema file `provflow schema` writes: name → pretty JSON with a final newline.
pub fn schema_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> =
        kind_schemas().into_iter().map(|k| (k.file.to_string(), pretty(&k.schema))).collect();
    files.push(("provflow.schema.json".into(), pretty(&file_schema())));
    files
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

struct Compiled {
    kind: &'static str,
    schema: Value,
    validator: Validator,
}

fn validators() -> &'static [Compiled] {
    static V: OnceLock<Vec<Compiled>> = OnceLock::new();
    V.get_or_init(|| {
        kind_schemas()
            .into_iter()
            .filter_map(|k| {
                let mut schema = k.schema;
                statuses_as_text(&mut schema);
                // The schemas are generated from our own types; a failure here is a bug that the
                // schema tests catch, so the kind is simply not validated structurally.
                let validator = jsonschema::draft202012::new(&schema).ok()?;
                Some(Compiled { kind: k.kind, schema, validator })
            })
            .collect()
    })
}

/// The compiler checks statuses itself (PF208, PF516: the location, the kind of status, a
/// "did you mean"), so its structural validation takes any string where the editor's schema
/// has the status enums.
fn statuses_as_text(schema: &mut Value) {
    let text = || json!({ "type": "string" });
    if let Some(Value::Object(defs)) = schema.get_mut("$defs") {
        for name in ["TaskStatus", "ObjectStatus"] {
            if let Some(def) = defs.get_mut(name) {
                *def = text();
            }
        }
    }
}

/// Validates one document against its kind's schema. Returns findings (empty when valid).
pub fn validate(kind: &str, doc: &Value) -> Vec<Finding> {
    let Some(c) = validators().iter().find(|c| c.kind == kind) else {
        return Vec::new();
    };
    if c.validator.is_valid(doc) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for err in c.validator.iter_errors(doc) {
        explain(&c.schema, &err, &mut out);
    }
    out.sort_by(|a, b| a.pointer.cmp(&b.pointer).then(a.code.cmp(b.code)));
    out.dedup_by(|a, b| a.pointer == b.pointer && a.code == b.code && a.message == b.message);
    out
}

fn instance_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn type_name(t: &str) -> &str {
    match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "`true` or `false`",
        "null" => "nothing",
        other => other,
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

/// Resolves the schema object that holds the failing keyword.
fn keyword_parent<'a>(root: &'a Value, err: &ValidationError<'_>) -> Option<&'a Value> {
    let uri = err.absolute_keyword_location()?;
    let fragment = uri.fragment()?.as_str();
    let decoded = fragment.replace("%24", "$");
    let parent = decoded.rsplit_once('/')?.0;
    root.pointer(parent)
}

fn property_names(schema: &Value) -> Vec<String> {
    schema.get("properties").and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

fn explain(root: &Value, err: &ValidationError<'_>, out: &mut Vec<Finding>) {
    let pointer = err.instance_path().as_str().to_string();
    let instance = err.instance();
    match err.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = keyword_parent(root, err).map(property_names).unwrap_or_default();
            for name in unexpected {
                let help = match did_you_mean(name, allowed.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if !allowed.is_empty() => format!("the fields allowed here are: {}", allowed.join(", ")),
                    None => "remove this field".to_string(),
                };
                out.push(Finding::error(
                    "PF102",
                    format!("unknown field `{name}`"),
                    format!("{pointer}/{}", crate::yaml::escape_token(name)),
                    Part::Key,
                    Some(help),
                ));
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let description = keyword_parent(root, err)
                .and_then(|s| s.pointer(&format!("/properties/{name}/description")))
                .and_then(Value::as_str)
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            out.push(Finding::error(
                "PF103",
                format!("missing required field `{name}`"),
                pointer,
                Part::Key,
                Some(format!("add `{name}`{description}")),
            ));
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => type_name(&t.to_string()).to_string(),
                TypeKind::Multiple(set) => {
                    let names: Vec<String> = set.iter().map(|t| type_name(&t.to_string()).to_string()).collect();
                    names.join(" or ")
                }
            };
            out.push(Finding::error(
                "PF104",
                format!("expected {expected}, found {}", instance_type(instance)),
                pointer,
                Part::Value,
                None,
            ));
        }
        ValidationErrorKind::Enum { options } => {
            let values: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), String::from)).collect())
                .unwrap_or_default();
            out.push(invalid_value(&pointer, instance, &values));
        }
        ValidationErrorKind::Constant { expected_value } => {
            let expected = expected_value.as_str().map_or_else(|| expected_value.to_string(), String::from);
            if pointer == "/apiVersion" {
                out.push(Finding::error(
                    "PF100",
                    format!("unsupported apiVersion {}", show(instance)),
                    pointer,
                    Part::Value,
                    Some(format!("write `apiVersion: {expected}`")),
                ));
            } else {
                out.push(invalid_value(&pointer, instance, &[expected]));
            }
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            explain_alternatives(root, &pointer, instance, context, out);
        }
        _ => {
            let field = pointer.rsplit('/').next().filter(|f| !f.is_empty()).map(|f| format!("`{f}` "));
            let message = format!("{}{}", field.unwrap_or_default(), constraint_message(err));
            out.push(Finding::error("PF106", message, pointer, Part::Value, None));
        }
    }
}

fn invalid_value(pointer: &str, instance: &Value, values: &[String]) -> Finding {
    let given = instance.as_str().map_or_else(|| instance.to_string(), String::from);
    let help = match did_you_mean(&given, values.iter().map(String::as_str)) {
        Some(s) => format!("did you mean `{s}`? The values allowed here are: {}", values.join(", ")),
        None => format!("the values allowed here are: {}", values.join(", ")),
    };
    Finding::error("PF105", format!("invalid value {}", show(instance)), pointer.to_string(), Part::Value, Some(help))
}

/// Explains a failed `anyOf`/`oneOf` by the branch the author most likely meant.
fn explain_alternatives(
    root: &Value,
    pointer: &str,
    instance: &Value,
    context: &[Vec<ValidationError<'static>>],
    out: &mut Vec<Finding>,
) {
    let at_root = |e: &ValidationError<'_>| e.instance_path().as_str() == pointer;
    // A list of constants (an enum whose values carry descriptions).
    let mut consts = Vec::new();
    let all_consts = context.iter().all(|branch| {
        branch.iter().all(|e| match e.kind() {
            ValidationErrorKind::Constant { expected_value } if at_root(e) => {
                consts.push(expected_value.as_str().map_or_else(|| expected_value.to_string(), String::from));
                true
            }
            _ => false,
        })
    });
    if all_consts && !consts.is_empty() {
        out.push(invalid_value(pointer, instance, &consts));
        return;
    }
    // Externally tagged alternatives (scenario steps): every branch requires its own key.
    let mut tags = Vec::new();
    let all_tagged = context.iter().all(|branch| {
        branch.iter().any(|e| match e.kind() {
            ValidationErrorKind::Required { property } if at_root(e) => {
                tags.push(property.as_str().unwrap_or_default().to_string());
                true
            }
            _ => false,
        })
    });
    if all_tagged && !tags.is_empty() {
        if let Some(obj) = instance.as_object() {
            for key in obj.keys() {
                let help = match did_you_mean(key, tags.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`? Allowed here: {}", tags.join(", ")),
                    None => format!("allowed here: {}", tags.join(", ")),
                };
                out.push(Finding::error(
                    "PF102",
                    format!("unknown entry `{key}`"),
                    format!("{pointer}/{}", crate::yaml::escape_token(key)),
                    Part::Key,
                    Some(help),
                ));
            }
            if obj.is_empty() || obj.len() > 1 {
                out.push(Finding::error(
                    "PF104",
                    format!("expected a mapping with exactly one of: {}", tags.join(", ")),
                    pointer.to_string(),
                    Part::Value,
                    None,
                ));
            }
            return;
        }
    }
    // Prefer the branches whose type matches the instance, then the one with the fewest errors.
    let type_matches = |branch: &Vec<ValidationError<'static>>| {
        !branch.iter().any(|e| at_root(e) && matches!(e.kind(), ValidationErrorKind::Type { .. }))
    };
    let best = context.iter().filter(|b| type_matches(b)).min_by_key(|b| b.len());
    match best {
        Some(branch) => {
            for e in branch {
                explain(root, e, out);
            }
        }
        None => {
            let mut expected: Vec<String> = Vec::new();
            for branch in context {
                for e in branch.iter().filter(|e| at_root(e)) {
                    if let ValidationErrorKind::Type { kind: TypeKind::Single(t) } = e.kind() {
                        let n = type_name(&t.to_string()).to_string();
                        if !expected.contains(&n) {
                            expected.push(n);
                        }
                    }
                }
            }
            out.push(Finding::error(
                "PF104",
                format!("expected {}, found {}", expected.join(" or "), instance_type(instance)),
                pointer.to_string(),
                Part::Value,
                None,
            ));
        }
    }
}

fn constraint_message(err: &ValidationError<'_>) -> String {
    match err.kind() {
        ValidationErrorKind::Pattern { pattern } => {
            format!("{} does not have the expected form (pattern `{pattern}`)", show(err.instance()))
        }
        ValidationErrorKind::MinLength { .. } => "must not be empty".into(),
        ValidationErrorKind::MinItems { limit } => format!("needs at least {limit} item(s)"),
        ValidationErrorKind::MaxItems { limit } => format!("takes at most {limit} item(s)"),
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
        _ => err.to_string(),
    }
}

/// A map of the JSON-Schema `properties` for completion tests and docs.
pub fn properties_of(schema: &Value) -> Map<String, Value> {
    schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default()
}
