//! Notification events and templates (seed 001, "OIM 11g notification framework").
//!
//! An event says which data its templates may use: entities (static data and params), the
//! bare attributes of the main user, and the columns its resolver query provides. Templates
//! are minijinja (legacy `$Token`s allowed); every variable they use must be one of those.
use rayon::prelude::*;

use super::{ptr, unknown, Ctx, Findings, Named};
use crate::diagnostic::{Finding, Part};
use crate::query::{self, line_col, lower_params, ParamProblem};
use crate::suggest::did_you_mean;
use crate::syntax::{self, EncodingName, EntityKind, MessageTypeName};
use crate::template::{self, Position, TemplateInfo};
use indexmap::IndexMap;
use provflow_ir as ir;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Attributes of a `Resource` entity.
pub const RESOURCE_ATTRIBUTES: [&str; 5] = ["Object_Name", "Process_Name", "Target_Name", "Status", "Account_Id"];
/// Attributes of a `Task` entity.
pub const TASK_ATTRIBUTES: [&str; 3] = ["Task_Name", "Task_Status", "Response"];
/// Values the runner binds to resolver parameters besides the user's attributes.
pub const RESOLVER_CONTEXT: [&str; 4] = ["usr_key", "usr_login", "account_id", "process"];

fn entity_name(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::User => "User",
        EntityKind::Resource => "Resource",
        EntityKind::Task => "Task",
    }
}

fn is_identifier(s: &str) -> bool {
    query::is_name(s)
}

pub fn lower_events(
    ctx: &Ctx<'_>,
    _targets: &[ir::Target],
    users: &ir::UserSchema,
    out: &mut Findings,
) -> Vec<ir::NotificationEvent> {
    // Resolver targets are indices into the bundle's targets, which follow the ctx order.
    ctx.events.iter().map(|named| lower_event(ctx, named.doc, named.name, named.def, users, out)).collect()
}

fn lower_event(
    ctx: &Ctx<'_>,
    doc: usize,
    name: &str,
    def: &syntax::NotificationEvent,
    users: &ir::UserSchema,
    out: &mut Findings,
) -> ir::NotificationEvent {
    // Template variable → what provides it, for duplicate checks.
    let mut taken: BTreeMap<String, String> =
        users.attributes.iter().map(|a| (a.variable.clone(), format!("the user attribute `{}`", a.name))).collect();
    let mut claim = |variable: &str, what: String, pointer: String, out: &mut Findings| {
        if !is_identifier(variable) {
            out.push((
                doc,
                Finding::error(
                    "PF501",
                    format!("`{variable}` cannot be used as a template variable"),
                    pointer,
                    Part::Value,
                    Some("a variable name is the name with spaces replaced by `_`: use letters, digits, spaces and `_` only".into()),
                ),
            ));
        } else if let Some(previous) = taken.get(variable) {
            out.push((
                doc,
                Finding::error(
                    "PF501",
                    format!("template variable `{variable}` of {what} is already provided by {previous}"),
                    pointer,
                    Part::Value,
                    Some("every variable of an event needs a distinct name: rename one of them".into()),
                ),
            ));
        } else {
            taken.insert(variable.to_owned(), what);
        }
    };

    let mut entities = |list: &[syntax::EntityRef], key: &str, out: &mut Findings| -> Vec<ir::EventEntity> {
        list.iter()
            .enumerate()
            .map(|(i, e)| {
                let variable = e.name.replace(' ', "_");
                claim(&variable, format!("entity `{}`", e.name), format!("/{key}/{i}/name"), out);
                ir::EventEntity { name: e.name.clone(), variable, entity: entity_name(e.entity).to_owned() }
            })
            .collect()
    };
    let static_data = entities(&def.static_data, "static_data", out);
    let params = entities(&def.params, "params", out);

    let resolver = def.resolver.as_ref().map(|r| {
        for column in r.provides.keys() {
            claim(
                column,
                format!("the resolver column `{column}`"),
                format!("/resolver/provides/{}", ptr(column)),
                out,
            );
        }
        lower_resolver(ctx, doc, r, users, out)
    });

    ir::NotificationEvent { name: name.to_owned(), static_data, params, resolver, location: ctx.location(doc, "") }
}

fn lower_resolver(
    ctx: &Ctx<'_>,
    doc: usize,
    r: &syntax::ResolverDef,
    users: &ir::UserSchema,
    out: &mut Findings,
) -> ir::Resolver {
    let target = if r.target == "state" {
        ir::ResolverTarget::State
    } else if let Some(i) = ctx.target(&r.target) {
        ir::ResolverTarget::Target(i)
    } else {
        let known: Vec<&str> = std::iter::once("state").chain(ctx.targets.iter().map(|t| t.name)).collect();
        out.push((doc, unknown("PF502", "resolver target", &r.target, known.iter().copied(), "/resolver/target")));
        ir::ResolverTarget::State
    };

    let bindable: Vec<&str> =
        RESOLVER_CONTEXT.iter().copied().chain(users.attributes.iter().map(|a| a.name.as_str())).collect();
    for name in r.params.keys() {
        if !bindable.contains(&name.as_str()) {
            let help = match did_you_mean(name, bindable.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => {
                    "the runner binds `usr_key`, `usr_login`, `account_id`, `process` and the user's attributes by name"
                        .to_string()
                }
            };
            out.push((
                doc,
                Finding::error(
                    "PF503",
                    format!("the runner has no value for resolver parameter `{name}`"),
                    format!("/resolver/params/{}", ptr(name)),
                    Part::Key,
                    Some(help),
                ),
            ));
        }
    }

    let pieces = match query::split(&r.query) {
        Ok(p) => p,
        Err(e) => {
            let (line, col) = line_col(&r.query, e.offset());
            out.push((
                doc,
                Finding::error("PF503", format!("{e}"), "/resolver/query", Part::Value, Some(e.help())).at_inner(
                    line,
                    col,
                    e.len() as u32,
                ),
            ));
            Vec::new()
        }
    };
    let (lowered, problems) = lower_params(&pieces, &r.params, &IndexMap::new());
    if !pieces.is_empty() {
        for problem in problems {
            let finding = match problem {
                ParamProblem::Undeclared { name, offset, len } => {
                    let (line, col) = line_col(&r.query, offset);
                    Finding::error(
                        "PF503",
                        format!("placeholder `{{{name}}}` is not a resolver parameter"),
                        "/resolver/query",
                        Part::Value,
                        Some(format!("declare it under `params`, e.g. `{name}: String`")),
                    )
                    .at_inner(line, col, len as u32)
                }
                ParamProblem::Unused { name, .. } => Finding::error(
                    "PF503",
                    format!("resolver parameter `{name}` is not used in the query"),
                    format!("/resolver/params/{}", ptr(&name)),
                    Part::Key,
                    Some(format!("use it as `{{{name}}}` in `query`, or remove it")),
                ),
                ParamProblem::SeveralTags { name } | ParamProblem::InOutTagged { name } => Finding::error(
                    "PF503",
                    format!("resolver parameter `{name}` has more than one tag"),
                    format!("/resolver/params/{}/tags", ptr(&name)),
                    Part::Value,
                    Some("give at most one of IDENTIFIER, DOUBLEQUOTES, QUOTES".into()),
                ),
                ParamProblem::SecretIdentifier { name, .. } => Finding::error(
                    "PF503",
                    format!("resolver parameter `{name}` is a GuardedString tagged IDENTIFIER"),
                    format!("/resolver/params/{}/tags", ptr(&name)),
                    Part::Value,
                    Some("a secret is never an identifier: remove the tag".into()),
                ),
                ParamProblem::InOutTypeMismatch { name, .. } => Finding::error(
                    "PF503",
                    format!("resolver parameter `{name}` has conflicting types"),
                    format!("/resolver/params/{}", ptr(&name)),
                    Part::Key,
                    None,
                ),
            };
            out.push((doc, finding));
        }
    }
    ir::Resolver {
        target,
        source: r.query.clone(),
        segments: lowered.segments,
        params: lowered.params,
        provides: r
            .provides
            .iter()
            .map(|(name, ty)| ir::Column { name: name.clone(), ty: query::value_type(*ty) })
            .collect(),
    }
}

/// The data an event offers its templates.
struct Available<'a> {
    event: &'a str,
    /// Bare variables: the main user's attributes and the resolver's columns.
    bare: Vec<&'a str>,
    /// Entity variables and their attributes.
    entities: Vec<(&'a str, Vec<&'a str>)>,
    /// Variables of secret attributes: never available to a template.
    secrets: Vec<&'a str>,
}

impl<'a> Available<'a> {
    fn of(event: &'a ir::NotificationEvent, users: &'a ir::UserSchema) -> Self {
        let user_vars: Vec<&str> =
            users.attributes.iter().filter(|a| !a.ty.is_secret()).map(|a| a.variable.as_str()).collect();
        let secrets = users.attributes.iter().filter(|a| a.ty.is_secret()).map(|a| a.variable.as_str()).collect();
        let mut bare = user_vars.clone();
        if let Some(r) = &event.resolver {
            bare.extend(r.provides.iter().map(|c| c.name.as_str()));
        }
        let entities = event
            .static_data
            .iter()
            .chain(&event.params)
            .map(|e| {
                let attrs: Vec<&str> = match e.entity.as_str() {
                    "User" => user_vars.clone(),
                    "Resource" => RESOURCE_ATTRIBUTES.to_vec(),
                    _ => TASK_ATTRIBUTES.to_vec(),
                };
                (e.variable.as_str(), attrs)
            })
            .collect();
        Available { event: &event.name, bare, entities, secrets }
    }

    fn all(&self) -> Vec<&'a str> {
        let mut all: Vec<&str> = self.entities.iter().map(|(v, _)| *v).collect();
        all.extend(self.bare.iter().copied());
        all
    }

    fn check(&self, info: &TemplateInfo, pointer: &str, doc: usize, out: &mut Findings) {
        for u in &info.uses {
            let at = u.at;
            if let Some((_, attrs)) = self.entities.iter().find(|(v, _)| *v == u.name) {
                let Some(attr) = u.attributes.first() else { continue };
                if attrs.contains(&attr.name.as_str()) {
                    continue;
                }
                let help = match did_you_mean(&attr.name, attrs.iter().copied()) {
                    Some(s) => format!("did you mean `{}.{s}`?", u.name),
                    None if self.secrets.contains(&attr.name.as_str()) => {
                        "secret attributes are never available to templates".to_string()
                    }
                    None => format!("`{}` has: {}", u.name, attrs.join(", ")),
                };
                out.push((
                    doc,
                    finding_at(
                        Finding::error(
                            "PF508",
                            format!("`{}` has no attribute `{}`", u.name, attr.name),
                            pointer,
                            Part::Value,
                            Some(help),
                        ),
                        attr.at,
                    ),
                ));
            } else if !self.bare.contains(&u.name.as_str()) {
                let mut f = unknown("PF508", "template variable", &u.name, self.all(), pointer);
                f.message = format!("event `{}` provides no variable `{}`", self.event, u.name);
                if self.secrets.contains(&u.name.as_str()) {
                    f.help = Some(format!("`{}` is a secret attribute: secrets never appear in notifications", u.name));
                }
                out.push((doc, finding_at(f, at)));
            }
        }
    }
}

/// Template positions count in the template's text. In a folded (`>`) or escaped scalar that
/// text differs from the YAML source, so each finding is moved to the same text in the source.
fn remap_to_source(ctx: &Ctx<'_>, doc: usize, pointer: &str, src: &str, found: &mut [(usize, Finding)]) {
    for (_, f) in found.iter_mut().filter(|(_, f)| f.pointer == pointer) {
        let Some((line, column)) = f.inner else { continue };
        let offset: usize =
            src.split('\n').take(line as usize).map(|l| l.chars().count() + 1).sum::<usize>() + column as usize;
        f.inner = Some(super::queries::inner_at(ctx, doc, pointer, src, offset, f.inner_len as usize));
    }
}

fn finding_at(f: Finding, at: Position) -> Finding {
    f.at_inner(at.line, at.column, at.len)
}

/// Whether a locale key looks like a BCP-47 tag in its usual case: `fr`, `en-US`, `zh-Hant-TW`,
/// `es-419`.
fn is_locale(s: &str) -> bool {
    let mut parts = s.split('-');
    let lang = parts.next().unwrap_or("");
    if !(2..=3).contains(&lang.len()) || !lang.bytes().all(|b| b.is_ascii_lowercase()) {
        return false;
    }
    let mut rest: Vec<&str> = parts.collect();
    if let Some(script) = rest.first().filter(|p| p.len() == 4) {
        let mut b = script.bytes();
        if !(b.next().is_some_and(|c| c.is_ascii_uppercase()) && b.all(|c| c.is_ascii_lowercase())) {
            return false;
        }
        rest.remove(0);
    }
    match rest.as_slice() {
        [] => true,
        [region] => {
            (region.len() == 2 && region.bytes().all(|b| b.is_ascii_uppercase()))
                || (region.len() == 3 && region.bytes().all(|b| b.is_ascii_digit()))
        }
        _ => false,
    }
}

/// The usual spelling of a locale written in another case or with `_` (`en_us` → `en-US`).
fn canonical_locale(s: &str) -> String {
    s.split(['-', '_'])
        .enumerate()
        .map(|(i, p)| match (i, p.len()) {
            (0, _) => p.to_ascii_lowercase(),
            (_, 4) => {
                let lower = p.to_ascii_lowercase();
                let mut c = lower.chars();
                c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
            }
            _ => p.to_ascii_uppercase(),
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The 0-based line and column of the first non-ASCII character.
fn first_non_ascii(src: &str) -> Option<Position> {
    let (offset, _) = src.chars().enumerate().find(|(_, c)| !c.is_ascii())?;
    let (line, column) = line_col(src, offset);
    Some(Position { line, column, len: 1 })
}

pub fn lower_templates(
    ctx: &Ctx<'_>,
    events: &[ir::NotificationEvent],
    users: &ir::UserSchema,
    out: &mut Findings,
) -> Vec<Arc<ir::NotificationTemplate>> {
    // Templates are independent: parse them on every core, then merge findings in order. An
    // editor's compile reuses the result of every template whose inputs did not change.
    let inputs = ctx.template_inputs_key();
    let lowered: Vec<(Arc<ir::NotificationTemplate>, Findings)> = ctx
        .templates
        .par_iter()
        .map(|named| {
            let shelf =
                ctx.memo.and_then(|m| m.fingerprints.get(named.doc).map(|k| (&m.cache.templates, (*k, inputs))));
            super::memoized(shelf, named.doc, || lower_template(ctx, named, events, users))
        })
        .collect();
    super::merge(lowered, out)
}

/// One template: its event, locales, sender and every template text checked.
fn lower_template(
    ctx: &Ctx<'_>,
    named: &Named<'_, syntax::NotificationTemplate>,
    events: &[ir::NotificationEvent],
    users: &ir::UserSchema,
) -> (ir::NotificationTemplate, Findings) {
    let mut found = Findings::new();
    let out = &mut found;
    let (doc, def) = (named.doc, named.def);
    let event = ctx.event(&def.event);
    if event.is_none() {
        out.push((
            doc,
            unknown("PF504", "notification event", &def.event, ctx.events.iter().map(|e| e.name), "/event"),
        ));
    }
    let available = event.and_then(|i| events.get(i)).map(|e| Available::of(e, users));

    if !def.locales.contains_key(&def.default_locale) {
        let mut f =
            unknown("PF505", "locale", &def.default_locale, def.locales.keys().map(String::as_str), "/default_locale");
        f.message = format!("default locale `{}` is not one of the template's locales", def.default_locale);
        out.push((doc, f));
    }

    let from = def.from.as_deref().and_then(|text| match provflow_lex::mailbox::parse_mailbox(text) {
                Ok(m) => Some(m),
                Err(e) => {
                    out.push((
                        doc,
                        Finding::error(
                            "PF521",
                            format!("`from` is not a usable sender: {e}"),
                            "/from",
                            Part::Value,
                            Some("write `local@domain` or `Display Name <local@domain>`, e.g. `Identity and Access Management <iam@example.com>`".into()),
                        ),
                    ));
                    None
                }
            });

    let mut locales: Vec<ir::LocalizedMessage> = def
                .locales
                .iter()
                .map(|(locale, l)| {
                    let base = format!("/locales/{}", ptr(locale));
                    if !is_locale(locale) {
                        let canonical = canonical_locale(locale);
                        let help = if is_locale(&canonical) {
                            format!("write `{canonical}`")
                        } else {
                            "write a BCP-47 language tag such as `en-US`, `fr` or `pt-BR`".to_string()
                        };
                        out.push((
                            doc,
                            Finding::error("PF506", format!("`{locale}` is not a locale tag"), base.clone(), Part::Key, Some(help)),
                        ));
                    }
                    let mut variables = Vec::new();
                    for (field, src) in [("subject", &l.subject), ("short", &l.short), ("long", &l.long)] {
                        let pointer = format!("{base}/{field}");
                        let first_new = out.len();
                        match template::analyse(src) {
                            Err(e) => out.push((
                                doc,
                                finding_at(
                                    Finding::error(
                                        "PF507",
                                        format!("template syntax error in `{field}`: {}", e.message().trim_start_matches("syntax error: ")),
                                        pointer.clone(),
                                        Part::Value,
                                        Some("templates are minijinja: `{{ Variable }}`, `{% if ... %}...{% endif %}`; write `$$` for a literal `$` before a name".into()),
                                    ),
                                    e.position(),
                                ),
                            )),
                            Ok(info) => {
                                if let Some(a) = &available {
                                    a.check(&info, &pointer, doc, out);
                                }
                                variables.extend(info.names());
                            }
                        }
                        remap_to_source(ctx, doc, &pointer, src, out.get_mut(first_new..).unwrap_or_default());
                        let first_ascii = out.len();
                        if l.encoding == EncodingName::Ascii {
                            if let Some(at) = first_non_ascii(src) {
                                out.push((
                                    doc,
                                    finding_at(
                                        Finding::error(
                                            "PF509",
                                            format!("non-ASCII character in `{field}` of an ASCII template"),
                                            pointer.clone(),
                                            Part::Value,
                                            Some("use `encoding: UTF-8`, or write the text in ASCII only".into()),
                                        ),
                                        at,
                                    ),
                                ));
                            }
                        }
                        remap_to_source(ctx, doc, &pointer, src, out.get_mut(first_ascii..).unwrap_or_default());
                    }
                    variables.sort();
                    variables.dedup();
                    ir::LocalizedMessage {
                        locale: locale.clone(),
                        encoding: match l.encoding {
                            EncodingName::Utf8 => ir::Encoding::Utf8,
                            EncodingName::Ascii => ir::Encoding::Ascii,
                        },
                        message_type: match l.message_type {
                            MessageTypeName::Html => ir::MessageType::Html,
                            MessageTypeName::Text => ir::MessageType::Text,
                        },
                        subject: template::rewrite_legacy_tokens(&l.subject),
                        short: template::rewrite_legacy_tokens(&l.short),
                        long: template::rewrite_legacy_tokens(&l.long),
                        variables,
                    }
                })
                .collect();
    locales.sort_by(|a, b| a.locale.cmp(&b.locale));
    let template = ir::NotificationTemplate {
        name: named.name.to_owned(),
        event: event.unwrap_or(0),
        default_locale: def.default_locale.clone(),
        locales,
        from,
        location: ctx.location(doc, ""),
    };
    (template, found)
}

#[cfg(test)]
mod tests {
    /// A diagnostic as (code, line, column).
    type Expected = (&'static str, u32, u32);

    use crate::compile_bytes;

    const EVENT: &str = "apiVersion: provflow/v1
kind: NotificationEvent
name: Account Provisioned
static_data:
  - { name: Granted User, entity: User }
params:
  - { name: Resource Info, entity: Resource }
resolver:
  target: state
  query: \"select count(*) as Account_Count from accounts where usr_key = {usr_key}\"
  params: { usr_key: Long }
  provides: { Account_Count: Long }
---
";

    /// (code, line, column, message) of every diagnostic.
    fn check(yaml: &str) -> Vec<(&'static str, u32, u32, String)> {
        compile_bytes("t.yaml", yaml.as_bytes())
            .diagnostics
            .into_iter()
            .map(|d| (d.code, d.line, d.column, d.message))
            .collect()
    }

    fn codes(yaml: &str) -> Vec<(&'static str, u32, u32)> {
        check(yaml).into_iter().map(|(c, l, col, _)| (c, l, col)).collect()
    }

    /// A template of the event above; `locales` is the YAML under `locales:` (indented by 2).
    fn template(head: &str, locales: &str) -> String {
        format!(
            "{EVENT}apiVersion: provflow/v1\nkind: NotificationTemplate\nname: T\nevent: Account Provisioned\n{head}locales:\n{locales}"
        )
    }

    // The template's `locales:` key is on line 19; its first locale on line 20.
    const L: u32 = 20;

    #[test]
    fn positions_in_folded_and_escaped_templates_point_at_the_source() {
        let yaml = "apiVersion: provflow/v1\nkind: NotificationEvent\nname: E\nstatic_data: [{ name: Granted User, entity: User }]\n---\napiVersion: provflow/v1\nkind: NotificationTemplate\nname: T\nevent: E\ndefault_locale: en-US\nlocales:\n  en-US:\n    subject: \"Hello \\\"you\\\" {{ Frist_Name }}\"\n    long: >\n      Dear {{ First_Name }},\n      your account {{ Granted_User.Last_Nme }} is ready.\n";
        assert_eq!(codes(yaml), vec![("PF508", 13, 32), ("PF508", 16, 36)]);
    }

    #[test]
    fn template_diagnostics() {
        let dl = "default_locale: en-US\n";
        let cases: Vec<(String, Vec<Expected>)> = vec![
            // Everything the event offers.
            (
                template(
                    dl,
                    "  en-US:\n    subject: \"{{ Resource_Info.Object_Name }} for $First_Name\"\n    long: |\n      {{ Granted_User.Last_Name }} {{ Account_Count }}\n      {% for r in Roles_Of(Account_Count) %}{{ r }}{% endfor %}\n",
                ),
                vec![("PF508", L + 4, 19)],
            ),
            // Unknown variable in a block scalar, third line.
            (
                template(dl, "  en-US:\n    subject: Hi\n    long: |\n      line one\n      line two\n      x {{ Frist_Name }}\n"),
                vec![("PF508", L + 5, 12)],
            ),
            // Legacy token, misspelled, in a quoted subject.
            (template(dl, "  en-US:\n    subject: \"Hi $Frist_Name\"\n    long: x\n"), vec![("PF508", L + 1, 19)]),
            // Unknown attribute of an entity.
            (
                template(dl, "  en-US:\n    subject: \"{{ Resource_Info.Objct_Name }}\"\n    long: x\n"),
                vec![("PF508", L + 1, 32)],
            ),
            // Syntax error on the second line of a block scalar.
            (template(dl, "  en-US:\n    subject: x\n    long: |\n      ok\n      {{ a + }}\n"), vec![("PF507", L + 4, 14)]),
            // ASCII template with a non-ASCII character.
            (
                template(dl, "  en-US:\n    encoding: ASCII\n    subject: x\n    long: |\n      Hello\n      Ça va\n"),
                vec![("PF509", L + 5, 7)],
            ),
            // default_locale and locale keys.
            (template("default_locale: en-GB\n", "  en-US: { subject: x, long: y }\n"), vec![("PF505", 18, 17)]),
            (template("default_locale: en_us\n", "  en_us: { subject: x, long: y }\n"), vec![("PF506", L, 3)]),
            // A sender that is not a mailbox, one that would inject a header, a good one.
            (template("default_locale: en-US\nfrom: iam at example.com\n", "  en-US: { subject: x, long: y }\n"), vec![("PF521", 19, 7)]),
            (
                template("default_locale: en-US\nfrom: \"IAM <iam@example.com>\\r\\nBcc: x@evil.example\"\n", "  en-US: { subject: x, long: y }\n"),
                vec![("PF521", 19, 7)],
            ),
            (template("default_locale: en-US\nfrom: Gestion des accès <iam@example.com>\n", "  en-US: { subject: x, long: y }\n"), vec![]),
            // Unknown event.
            (
                template(dl, "  en-US: { subject: x, long: y }\n").replace("event: Account Provisioned", "event: Account Provisoned"),
                vec![("PF504", 17, 8)],
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(codes(&yaml), want, "{yaml}");
        }
    }

    #[test]
    fn messages_say_what_and_how() {
        let yaml = template(
            "default_locale: en-US\n",
            "  en-US:\n    subject: \"{{ Resource_Info.Objct_Name }} {{ Frist_Name }}\"\n    long: x\n",
        );
        let c = compile_bytes("t.yaml", yaml.as_bytes());
        let got: Vec<(&str, Option<&str>)> =
            c.diagnostics.iter().map(|d| (d.message.as_str(), d.help.as_deref())).collect();
        assert_eq!(
            got,
            vec![
                ("`Resource_Info` has no attribute `Objct_Name`", Some("did you mean `Resource_Info.Object_Name`?")),
                ("event `Account Provisioned` provides no variable `Frist_Name`", Some("did you mean `First_Name`?")),
            ]
        );
    }

    #[test]
    fn event_diagnostics() {
        let cases: Vec<(String, Vec<Expected>)> = vec![
            (EVENT.trim_end_matches("---\n").to_string(), vec![]),
            (
                EVENT.replace("Resource Info", "Granted User").trim_end_matches("---\n").to_string(),
                vec![("PF501", 7, 13)],
            ),
            (
                EVENT.replace("Resource Info", "First Name").trim_end_matches("---\n").to_string(),
                vec![("PF501", 7, 13)],
            ),
            (
                EVENT.replace("Resource Info", "Resource-Info").trim_end_matches("---\n").to_string(),
                vec![("PF501", 7, 13)],
            ),
            (
                EVENT.replace("target: state", "target: stat").trim_end_matches("---\n").to_string(),
                vec![("PF502", 9, 11)],
            ),
            (
                EVENT.replace("= {usr_key}", "= {usr_ky}").trim_end_matches("---\n").to_string(),
                vec![("PF503", 10, 74), ("PF503", 11, 13)],
            ),
            (
                EVENT
                    .replace("{usr_key}\"", "{usr_key} and {colour}\"")
                    .replace("{ usr_key: Long }", "{ usr_key: Long, colour: String }")
                    .trim_end_matches("---\n")
                    .to_string(),
                vec![("PF503", 11, 28)],
            ),
            (EVENT.replace("{usr_key}\"", "{usr_key\"").trim_end_matches("---\n").to_string(), vec![("PF503", 10, 74)]),
        ];
        for (yaml, want) in cases {
            assert_eq!(codes(&yaml), want, "{yaml}");
        }
    }

    #[test]
    fn lowers_events_and_templates() {
        let yaml = template(
            "default_locale: fr-FR\n",
            "  fr-FR:\n    type: html\n    subject: \"Bonjour $First_Name\"\n    long: \"{{ Resource_Info.Object_Name }} {{ Account_Count }}\"\n  en-US: { subject: \"Hi $First_Name.\", long: x, encoding: ASCII }\n",
        );
        let c = compile_bytes("t.yaml", yaml.as_bytes());
        assert_eq!(c.diagnostics, vec![]);
        let b = c.bundle.expect("compiles");
        let e = &b.events[0];
        assert_eq!(e.static_data[0].variable, "Granted_User");
        assert_eq!(e.params[0].entity, "Resource");
        let r = e.resolver.as_ref().expect("resolver");
        assert_eq!(r.target, provflow_ir::ResolverTarget::State);
        assert_eq!(r.segments[1], provflow_ir::Segment::Bind(0));
        assert_eq!(r.provides[0].name, "Account_Count");
        let t = &b.templates[0];
        assert_eq!(t.event, 0);
        let locales: Vec<&str> = t.locales.iter().map(|l| l.locale.as_str()).collect();
        assert_eq!(locales, vec!["en-US", "fr-FR"]);
        assert_eq!(t.locales[0].subject, "Hi {{ First_Name }}.");
        assert_eq!(t.locales[0].encoding, provflow_ir::Encoding::Ascii);
        assert_eq!(t.locales[1].message_type, provflow_ir::MessageType::Html);
        assert_eq!(t.locales[1].variables, vec!["Account_Count", "First_Name", "Resource_Info"]);
        assert_eq!(t.from, None);

        let yaml = template(
            "default_locale: en-US\nfrom: '\"Doe, Jo\" <jo@example.com>'\n",
            "  en-US: { subject: x, long: y }\n",
        );
        let c = compile_bytes("t.yaml", yaml.as_bytes());
        assert_eq!(c.diagnostics, vec![]);
        let from = c.bundle.expect("compiles").templates[0].from.clone();
        assert_eq!(from, Some(provflow_ir::Mailbox { name: Some("Doe, Jo".into()), address: "jo@example.com".into() }));
    }

    #[test]
    fn a_bad_sender_says_why_without_echoing_it() {
        let yaml = template(
            "default_locale: en-US\nfrom: \"IAM\\e[31m <iam@example.com>\"\n",
            "  en-US: { subject: x, long: y }\n",
        );
        let found = check(&yaml);
        assert_eq!(found.len(), 1, "{found:?}");
        let (code, _, _, message) = &found[0];
        assert_eq!(*code, "PF521");
        assert!(message.contains("U+001B") && !message.contains('\u{1b}'), "{message}");
    }
}
