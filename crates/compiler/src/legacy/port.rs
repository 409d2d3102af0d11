//! Porting a legacy entry's statement to the dialect it is imported for.
//!
//! The connector's query files hold the account statements of the database they were written
//! for: Oracle's `ALTER USER … ACCOUNT LOCK`, SQL Server's `ALTER LOGIN … DISABLE`, Sybase's
//! `sp_locklogin`. Kept as written, they compile and then fail on PostgreSQL or MariaDB. The
//! importer translates the statements of the account lifecycle that have an exact equivalent
//! ([`RULES`], whole-statement patterns; each translation is noted in the YAML), keeps what
//! the dialect runs as written, and refuses the rest with the reason the compiler would give
//! (PF318, PF319, [`crate::foreign`]) — an entry is never printed in a form that cannot run.

use provflow_ir::Dialect;

use super::LegacyParam;
use crate::foreign::{foreign, items, At, Item};

/// What becomes of one entry's statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ported {
    /// Runs on the dialect as written.
    Kept,
    /// The dialect's equivalent statement, and where the original came from.
    Translated { text: String, from: &'static str, note: &'static str },
    /// Cannot run on the dialect, and nothing equivalent exists that the importer could
    /// write: why, and what to write instead.
    Refused { reason: String, help: String },
}

/// What a pattern becomes on one dialect.
#[derive(Debug, Clone, Copy)]
enum To {
    /// Runs as written.
    Same,
    /// `$x` stands for the placeholder the pattern's `$x` matched.
    Text(&'static str),
    /// No equivalent: why.
    Refuse(&'static str),
}

/// A whole statement of another database, as a pattern: words match case-insensitively, `$x`
/// matches a placeholder, `?WORD` an optional word, `'text'` a string literal, and any other
/// single character that punctuation character.
struct Rule {
    pattern: &'static str,
    from: &'static str,
    postgres: To,
    mariadb: To,
    note: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        pattern: "CREATE USER $n IDENTIFIED BY $p",
        from: "Oracle/MySQL",
        postgres: To::Text("CREATE ROLE $n LOGIN PASSWORD $p"),
        mariadb: To::Same,
        note: "an account is a role that may log in",
    },
    Rule {
        pattern: "ALTER USER $n IDENTIFIED BY $p",
        from: "Oracle/MySQL",
        postgres: To::Text("ALTER ROLE $n PASSWORD $p"),
        mariadb: To::Same,
        note: "a role's password",
    },
    Rule {
        pattern: "ALTER USER $n ACCOUNT LOCK",
        from: "Oracle/MySQL",
        postgres: To::Text("ALTER ROLE $n NOLOGIN"),
        mariadb: To::Same,
        note: "a locked account is a role that may not log in",
    },
    Rule {
        pattern: "ALTER USER $n ACCOUNT UNLOCK",
        from: "Oracle/MySQL",
        postgres: To::Text("ALTER ROLE $n LOGIN"),
        mariadb: To::Same,
        note: "an unlocked account is a role that may log in",
    },
    Rule {
        pattern: "GRANT CREATE SESSION TO $n",
        from: "Oracle",
        postgres: To::Text("ALTER ROLE $n LOGIN"),
        mariadb: To::Text("GRANT USAGE ON *.* TO $n"),
        note: "the right to connect",
    },
    Rule {
        pattern: "REVOKE CREATE SESSION FROM $n",
        from: "Oracle",
        postgres: To::Text("ALTER ROLE $n NOLOGIN"),
        mariadb: To::Refuse("every MariaDB account may connect (USAGE cannot be revoked): lock the account with `ALTER USER {name} ACCOUNT LOCK`"),
        note: "the right to connect",
    },
    Rule {
        pattern: "ALTER USER $n DEFAULT TABLESPACE $t",
        from: "Oracle",
        postgres: To::Text("ALTER ROLE $n SET default_tablespace = $t"),
        mariadb: To::Refuse("MariaDB users have no default tablespace: leave the entry out"),
        note: "a role's default tablespace is a setting",
    },
    Rule {
        pattern: "ALTER USER $n TEMPORARY TABLESPACE $t",
        from: "Oracle",
        postgres: To::Text("ALTER ROLE $n SET temp_tablespaces = $t"),
        mariadb: To::Refuse("MariaDB users have no temporary tablespace: leave the entry out"),
        note: "a role's temporary tablespaces are a setting",
    },
    Rule {
        pattern: "ALTER LOGIN $n ENABLE",
        from: "SQL Server",
        postgres: To::Text("ALTER ROLE $n LOGIN"),
        mariadb: To::Text("ALTER USER $n ACCOUNT UNLOCK"),
        note: "an enabled login",
    },
    Rule {
        pattern: "ALTER LOGIN $n DISABLE",
        from: "SQL Server",
        postgres: To::Text("ALTER ROLE $n NOLOGIN"),
        mariadb: To::Text("ALTER USER $n ACCOUNT LOCK"),
        note: "a disabled login",
    },
    Rule {
        pattern: "?EXEC sp_addlogin $n , $p",
        from: "SQL Server / Sybase",
        postgres: To::Text("CREATE ROLE $n LOGIN PASSWORD $p"),
        mariadb: To::Text("CREATE USER $n IDENTIFIED BY $p"),
        note: "a login",
    },
    Rule {
        pattern: "?EXEC sp_droplogin $n",
        from: "SQL Server / Sybase",
        postgres: To::Text("DROP ROLE $n"),
        mariadb: To::Text("DROP USER $n"),
        note: "a login",
    },
    Rule {
        pattern: "?EXEC sp_password NULL , $p , $n",
        from: "SQL Server",
        postgres: To::Text("ALTER ROLE $n PASSWORD $p"),
        mariadb: To::Text("ALTER USER $n IDENTIFIED BY $p"),
        note: "an administrator's password reset",
    },
    Rule {
        pattern: "?EXEC sp_locklogin $n , 'lock'",
        from: "Sybase",
        postgres: To::Text("ALTER ROLE $n NOLOGIN"),
        mariadb: To::Text("ALTER USER $n ACCOUNT LOCK"),
        note: "a locked login",
    },
    Rule {
        pattern: "?EXEC sp_locklogin $n , 'unlock'",
        from: "Sybase",
        postgres: To::Text("ALTER ROLE $n LOGIN"),
        mariadb: To::Text("ALTER USER $n ACCOUNT UNLOCK"),
        note: "an unlocked login",
    },
    Rule {
        pattern: "?EXEC sp_addrolemember $r , $n",
        from: "SQL Server",
        postgres: To::Text("GRANT $r TO $n"),
        mariadb: To::Text("GRANT $r TO $n"),
        note: "a role membership",
    },
    Rule {
        pattern: "?EXEC sp_droprolemember $r , $n",
        from: "SQL Server",
        postgres: To::Text("REVOKE $r FROM $n"),
        mariadb: To::Text("REVOKE $r FROM $n"),
        note: "a role membership",
    },
    Rule {
        pattern: "?EXEC sp_role 'grant' , $r , $n",
        from: "Sybase",
        postgres: To::Text("GRANT $r TO $n"),
        mariadb: To::Text("GRANT $r TO $n"),
        note: "a role membership",
    },
    Rule {
        pattern: "?EXEC sp_role 'revoke' , $r , $n",
        from: "Sybase",
        postgres: To::Text("REVOKE $r FROM $n"),
        mariadb: To::Text("REVOKE $r FROM $n"),
        note: "a role membership",
    },
];

/// The placeholders a pattern matched, by the pattern's `$x`.
type Captures = Vec<(&'static str, String)>;

fn matches(pattern: &'static str, items: &[At]) -> Option<Captures> {
    let mut captures = Vec::new();
    let mut at = 0;
    for part in pattern.split_whitespace() {
        let item = items.get(at).map(|a| &a.item);
        if let Some(optional) = part.strip_prefix('?') {
            if matches!(item, Some(Item::Word(w)) if w.eq_ignore_ascii_case(optional)) {
                at += 1;
            }
            continue;
        }
        let ok = match (part.strip_prefix('$'), item) {
            (Some(key), Some(Item::Placeholder(name))) => {
                captures.push((key, name.clone()));
                true
            }
            (Some(_), _) => false,
            (None, Some(Item::Str(s))) => part.starts_with('\'') && s.eq_ignore_ascii_case(part),
            (None, Some(Item::Punct(c))) => part.len() == 1 && part.starts_with(*c),
            (None, Some(Item::Word(w))) => w.eq_ignore_ascii_case(part),
            _ => false,
        };
        if !ok {
            return None;
        }
        at += 1;
    }
    // A trailing `;` is the statement's end.
    let rest = items.get(at..).unwrap_or_default();
    match rest {
        [] => Some(captures),
        [one] if one.item == Item::Punct(';') => Some(captures),
        _ => None,
    }
}

fn fill(template: &str, captures: &Captures) -> String {
    template
        .split(' ')
        .map(|part| {
            let (key, tail) = match part.strip_prefix('$') {
                Some(rest) => {
                    let end = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
                    (Some(rest.get(..end).unwrap_or(rest)), rest.get(end..).unwrap_or(""))
                }
                None => (None, ""),
            };
            match key.and_then(|k| captures.iter().find(|(c, _)| *c == k)) {
                Some((_, name)) => format!("{{{name}}}{tail}"),
                None => part.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A placeholder that stands for a privilege (`GRANT {privilege} TO …`): keywords, which no
/// placeholder can carry.
fn privilege_placeholder(items: &[At], params: &[LegacyParam]) -> Option<String> {
    if !matches!(items.first().map(|a| &a.item), Some(Item::Word(w)) if w == "GRANT" || w == "REVOKE") {
        return None;
    }
    let Some(Item::Placeholder(name)) = items.get(1).map(|a| &a.item) else { return None };
    let declared = params.iter().any(|p| &p.name == name);
    (declared && name.to_ascii_lowercase().contains("priv")).then(|| name.clone())
}

/// Ports the statement `text` (the new query syntax: placeholders `{x}`, literal braces
/// doubled) of an entry with `params` to `dialect`.
pub(crate) fn port(text: &str, params: &[LegacyParam], dialect: Dialect) -> Ported {
    if dialect == Dialect::Sqlite {
        return Ported::Kept;
    }
    let Some(items) = items(text, dialect) else { return Ported::Kept };
    if let Some(name) = privilege_placeholder(&items, params) {
        return Ported::Refused {
            reason: format!(
                "`{{{name}}}` stands for a privilege, which is SQL keywords (`CREATE TABLE`, `SELECT`): no placeholder can carry them (as a name the server reads `\"CREATE TABLE\"`, as a bind it refuses the statement)"
            ),
            help: "write one entry per privilege with its keywords in the text: `GRANT SELECT ON … TO {name}`".into(),
        };
    }
    for rule in RULES {
        let Some(captures) = matches(rule.pattern, &items) else { continue };
        let to = if dialect == Dialect::Postgres { rule.postgres } else { rule.mariadb };
        return match to {
            To::Same => Ported::Kept,
            To::Text(template) => {
                Ported::Translated { text: fill(template, &captures), from: rule.from, note: rule.note }
            }
            To::Refuse(why) => Ported::Refused {
                reason: format!("this {} statement has no {} equivalent", rule.from, dialect.server()),
                help: why.into(),
            },
        };
    }
    match foreign(text, dialect).into_iter().next() {
        Some(f) => Ported::Refused { reason: f.message, help: f.help },
        None => Ported::Kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str) -> LegacyParam {
        LegacyParam { name: name.into(), ty: "String".into(), tag: None }
    }

    fn ported(text: &str, dialect: Dialect) -> Ported {
        let names: Vec<String> = crate::query::split(text)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| match p {
                crate::query::Piece::Placeholder { name, .. } => Some(name),
                crate::query::Piece::Text(_) => None,
            })
            .collect();
        let params: Vec<LegacyParam> = names.iter().map(|n| param(n)).collect();
        port(text, &params, dialect)
    }

    fn translated(text: &str, dialect: Dialect) -> String {
        match ported(text, dialect) {
            Ported::Translated { text, .. } => text,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn lifecycle_statements_translate() {
        let pg = Dialect::Postgres;
        let maria = Dialect::Mariadb;
        assert_eq!(translated("CREATE USER {n} IDENTIFIED BY {p}", pg), "CREATE ROLE {n} LOGIN PASSWORD {p}");
        assert_eq!(ported("create user {n} identified by {p};", maria), Ported::Kept);
        assert_eq!(translated("alter user {n} account lock", pg), "ALTER ROLE {n} NOLOGIN");
        assert_eq!(translated("EXEC sp_password NULL, {p}, {n}", maria), "ALTER USER {n} IDENTIFIED BY {p}");
        assert_eq!(translated("sp_locklogin {n}, 'unlock'", pg), "ALTER ROLE {n} LOGIN");
        assert_eq!(translated("sp_role 'grant', {r}, {n}", maria), "GRANT {r} TO {n}");
        assert_eq!(
            translated("ALTER USER {n} DEFAULT TABLESPACE {t}", pg),
            "ALTER ROLE {n} SET default_tablespace = {t}"
        );
        assert_eq!(translated("GRANT CREATE SESSION TO {n}", maria), "GRANT USAGE ON *.* TO {n}");
        assert_eq!(ported("GRANT {r} TO {n}", pg), Ported::Kept);
        assert_eq!(ported("call insertPackage ({n},{p})", pg), Ported::Kept);
        assert_eq!(ported("ALTER USER {n} ACCOUNT LOCK", Dialect::Sqlite), Ported::Kept);
    }

    #[test]
    fn the_rest_is_refused_with_a_reason() {
        let refused = |text: &str, dialect| match ported(text, dialect) {
            Ported::Refused { reason, help } => (reason, help),
            other => panic!("{text}: {other:?}"),
        };
        let (reason, _) = refused("ALTER USER {n} DEFAULT TABLESPACE {t}", Dialect::Mariadb);
        assert_eq!(reason, "this Oracle statement has no MariaDB equivalent");
        let (reason, help) = refused("GRANT {privilege} TO {n}", Dialect::Postgres);
        assert!(reason.contains("stands for a privilege"), "{reason}");
        assert!(help.contains("one entry per privilege"), "{help}");
        let (reason, _) = refused("EXEC sp_addlogin {n}, {p}, {db}", Dialect::Postgres);
        assert!(reason.contains("`sp_addlogin` is a SQL Server / Sybase system procedure"), "{reason}");
        let (reason, _) = refused("CREATE USER {n}@{h} IDENTIFIED BY {p}", Dialect::Postgres);
        assert!(reason.contains("user@host"), "{reason}");
        let (reason, _) = refused("SELECT username FROM DBA_USERS", Dialect::Postgres);
        assert!(reason.contains("Oracle's data dictionary view"), "{reason}");
    }
}
