//! Statements written for another database: the account-management syntax of Oracle, MySQL,
//! SQL Server, Sybase and DB2 that the legacy connector's query files hold, found in a query
//! of a PostgreSQL or MariaDB query set before the server refuses it at run time.
//!
//! [`foreign`] reads the query's tokens (through the dialect's lexer, so nothing inside quotes
//! or comments counts) and reports each construct the dialect does not have: PF318 for syntax
//! the server rejects (`ALTER USER … ACCOUNT LOCK` on PostgreSQL, `EXEC sp_addlogin`, DB2's
//! `GRANT CONNECT ON DATABASE TO USER`), PF319 for another database's system catalog
//! (`DBA_USERS`, `master..syslogins`, `SYSCAT.DBAUTH`), a warning because a table of that
//! name could be the user's own. The importer refuses entries with either, with the same
//! words. SQLite targets run emulated procedures and have no accounts: nothing is checked.

use provflow_ir::Dialect;
use provflow_lex::sql::{Lexer, TokenKind};

use crate::query::{split, Piece};

/// One construct of another database's SQL, at a character range of the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    pub offset: usize,
    pub len: usize,
    /// Another database's system catalog (PF319) rather than its syntax (PF318).
    pub catalog: bool,
    pub message: String,
    pub help: String,
}

/// A significant piece of query text: a placeholder is one item, whatever the lexer made of
/// its braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A keyword or unquoted name, upper-cased.
    Word(String),
    /// `{name}`.
    Placeholder(String),
    /// A string literal, quotes included, as written.
    Str(String),
    /// A quoted identifier, as written.
    Quoted(String),
    Punct(char),
    /// A number or anything else.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct At {
    pub item: Item,
    pub offset: usize,
    pub len: usize,
}

/// The significant items of `sql`, with character offsets; `None` when a quote or comment is
/// never closed or the placeholders do not parse (other checks report those).
pub(crate) fn items(sql: &str, dialect: Dialect) -> Option<Vec<At>> {
    let placeholders: Vec<(String, usize, usize)> = split(sql)
        .ok()?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Placeholder { name, offset, len } => Some((name, offset, len)),
            Piece::Text(_) => None,
        })
        .collect();
    let mut out: Vec<At> = Vec::new();
    let mut chars = 0usize;
    for token in Lexer::new(sql, dialect) {
        let t = token.ok()?;
        let (offset, len) = (chars, t.text.chars().count());
        chars += len;
        if let Some((name, at, plen)) = placeholders.iter().find(|(_, at, plen)| offset >= *at && offset < at + plen) {
            if out.last().is_none_or(|last| last.offset != *at) {
                out.push(At { item: Item::Placeholder(name.clone()), offset: *at, len: *plen });
            }
            continue;
        }
        let item = match t.kind {
            TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment => continue,
            TokenKind::Word => Item::Word(t.text.to_ascii_uppercase()),
            TokenKind::String | TokenKind::DollarString => Item::Str(t.text.to_string()),
            TokenKind::QuotedIdent => Item::Quoted(t.text.to_string()),
            TokenKind::Punct | TokenKind::Semicolon => Item::Punct(t.text.chars().next().unwrap_or(' ')),
            _ => Item::Other(t.text.to_string()),
        };
        out.push(At { item, offset, len });
    }
    Some(out)
}

fn word(at: Option<&At>) -> Option<&str> {
    match at.map(|a| &a.item) {
        Some(Item::Word(w)) => Some(w),
        _ => None,
    }
}

fn is_punct(at: Option<&At>, c: char) -> bool {
    matches!(at.map(|a| &a.item), Some(Item::Punct(p)) if *p == c)
}

/// A user or role name as a statement writes it: a name, a quoted name, a string or a
/// placeholder.
fn is_name(at: Option<&At>) -> bool {
    matches!(at.map(|a| &a.item), Some(Item::Word(_) | Item::Quoted(_) | Item::Str(_) | Item::Placeholder(_)))
}

/// What a SQL Server or Sybase system procedure stands for on `dialect`.
fn system_procedure_help(name: &str, dialect: Dialect) -> String {
    let pg = dialect == Dialect::Postgres;
    let equivalent = match name {
        "SP_ADDLOGIN" | "SP_GRANTLOGIN" => {
            if pg {
                "`CREATE ROLE {name} LOGIN PASSWORD {password}`"
            } else {
                "`CREATE USER {name} IDENTIFIED BY {password}`"
            }
        }
        "SP_DROPLOGIN" | "SP_DROPUSER" | "SP_REVOKEDBACCESS" => {
            if pg {
                "`DROP ROLE {name}`"
            } else {
                "`DROP USER {name}`"
            }
        }
        "SP_PASSWORD" => {
            if pg {
                "`ALTER ROLE {name} PASSWORD {password}`"
            } else {
                "`ALTER USER {name} IDENTIFIED BY {password}`"
            }
        }
        "SP_LOCKLOGIN" => {
            if pg {
                "`ALTER ROLE {name} NOLOGIN` (and `LOGIN` to unlock)"
            } else {
                "`ALTER USER {name} ACCOUNT LOCK` (and `UNLOCK`)"
            }
        }
        "SP_ADDROLEMEMBER" | "SP_ROLE" | "SP_CHANGEGROUP" => {
            "`GRANT {role} TO {name}` (and `REVOKE {role} FROM {name}`)"
        }
        "SP_DROPROLEMEMBER" => "`REVOKE {role} FROM {name}`",
        "SP_ADDUSER" | "SP_GRANTDBACCESS" => {
            if pg {
                "`GRANT CONNECT ON DATABASE <database> TO {name}` (a login and a user are one role)"
            } else {
                "`GRANT USAGE ON <database>.* TO {name}` (a login and a user are one account)"
            }
        }
        "SP_DEFAULTDB" | "SP_MODIFYLOGIN" => {
            if pg {
                "nothing: a PostgreSQL connection names its database; `ALTER ROLE {name} SET …` sets per-role defaults"
            } else {
                "nothing: a MariaDB connection chooses its database"
            }
        }
        _ => "the statement it stands for",
    };
    format!("write {equivalent} (tag names `IDENTIFIER` and passwords `QUOTES`)")
}

/// A MySQL `user@host` account name on PostgreSQL: the message and the help.
const HOST_PART: (&str, &str) = (
    "`user@host` is a MySQL/MariaDB account name: PostgreSQL roles have no host part",
    "name the role alone; which hosts it may connect from is pg_hba.conf's business",
);

/// Oracle's data dictionary views about accounts.
const ORACLE_VIEWS: [&str; 12] = [
    "DBA_USERS",
    "ALL_USERS",
    "USER_USERS",
    "DBA_ROLES",
    "DBA_ROLE_PRIVS",
    "DBA_SYS_PRIVS",
    "DBA_TAB_PRIVS",
    "DBA_PROFILES",
    "DBA_TABLESPACES",
    "DBA_TS_QUOTAS",
    "SESSION_PRIVS",
    "SYSTEM_PRIVILEGE_MAP",
];

/// SQL Server's catalog views about logins, users and databases (`sys.…`).
const SQL_SERVER_VIEWS: [&str; 10] = [
    "DATABASES",
    "SCHEMAS",
    "DATABASE_PRINCIPALS",
    "DATABASE_ROLE_MEMBERS",
    "DATABASE_PERMISSIONS",
    "SERVER_PRINCIPALS",
    "SERVER_ROLE_MEMBERS",
    "SYSLOGINS",
    "SYSUSERS",
    "OBJECTS",
];

/// Sybase's and SQL Server's compatibility catalog tables.
const SYBASE_TABLES: [&str; 8] = [
    "SYSLOGINS",
    "SYSUSERS",
    "SYSSRVROLES",
    "SYSDATABASES",
    "SYSROLES",
    "SYSLOGINROLES",
    "SYSALTERNATES",
    "SYSPROTECTS",
];

/// Every construct of another database's SQL in `sql`, in text order.
pub fn foreign(sql: &str, dialect: Dialect) -> Vec<Foreign> {
    if dialect == Dialect::Sqlite {
        return Vec::new();
    }
    let Some(items) = items(sql, dialect) else { return Vec::new() };
    let srv = dialect.server();
    let pg = dialect == Dialect::Postgres;
    let mut out = Vec::new();
    let mut push = |from: &At, to: &At, catalog: bool, message: String, help: String| {
        let len = (to.offset + to.len).saturating_sub(from.offset);
        out.push(Foreign { offset: from.offset, len, catalog, message, help });
    };
    let w = |i: usize| word(items.get(i));
    let first = w(0).unwrap_or("");

    // SQL Server / Sybase system procedures, with or without EXEC.
    let procedure_at = match first {
        "EXEC" | "EXECUTE" => 1,
        _ => 0,
    };
    if let Some(name) = w(procedure_at).filter(|n| n.starts_with("SP_") || n.starts_with("XP_")) {
        if let (Some(from), Some(to)) = (items.first(), items.get(procedure_at)) {
            push(
                from,
                to,
                false,
                format!(
                    "`{}` is a SQL Server / Sybase system procedure: {srv} has no such procedure",
                    name.to_lowercase()
                ),
                system_procedure_help(name, dialect),
            );
        }
        return out;
    }
    if first == "EXEC" {
        if let Some(from) = items.first() {
            push(
                from,
                from,
                false,
                format!("`EXEC` is SQL Server / Sybase syntax: {srv} has no such statement"),
                if pg {
                    "run a procedure with `call p(...)`".into()
                } else {
                    "run a procedure with `CALL p(...)`".into()
                },
            );
        }
    }

    // Statement-level syntax, by leading keywords.
    let second = w(1).unwrap_or("");
    let user_stmt = matches!(first, "CREATE" | "ALTER" | "DROP") && matches!(second, "USER" | "LOGIN" | "ROLE");
    if user_stmt && second == "LOGIN" {
        if let (Some(from), Some(to)) = (items.first(), items.get(1)) {
            push(
                from,
                to,
                false,
                format!(
                    "`{first} LOGIN` is SQL Server syntax: {srv} has no logins apart from its {}",
                    if pg { "roles" } else { "users" }
                ),
                if pg {
                    "a login is a role with LOGIN: `CREATE ROLE {name} LOGIN PASSWORD {password}`, `ALTER ROLE {name} LOGIN` / `NOLOGIN` to enable or disable it, `DROP ROLE {name}`".into()
                } else {
                    "a login is a user: `CREATE USER {name} IDENTIFIED BY {password}`, `ALTER USER {name} ACCOUNT UNLOCK` / `ACCOUNT LOCK` to enable or disable it, `DROP USER {name}`".into()
                },
            );
        }
    }
    if user_stmt && second != "LOGIN" {
        // The clauses after the name (a MySQL `name@host` counts as one name).
        let mut i = 3;
        if is_punct(items.get(3), '@') && is_name(items.get(4)) {
            if pg {
                if let (Some(from), Some(to)) = (items.get(2), items.get(4)) {
                    push(from, to, false, HOST_PART.0.into(), HOST_PART.1.into());
                }
            }
            i = 5;
        }
        let clause = w(i).unwrap_or("");
        let next = w(i + 1).unwrap_or("");
        let oracle_clause = match (clause, next) {
            ("IDENTIFIED", "EXTERNALLY" | "GLOBALLY") => Some(2),
            ("DEFAULT" | "TEMPORARY", "TABLESPACE") => Some(2),
            ("PROFILE" | "QUOTA", _) => Some(1),
            _ => None,
        };
        if let (Some(n), Some(from)) = (oracle_clause, items.get(i)) {
            let to = items.get(i + n - 1).unwrap_or(from);
            let clause_text = if n == 2 { format!("{clause} {next}") } else { clause.to_string() };
            let help = match (clause, pg) {
                ("IDENTIFIED", true) => "external and directory authentication is configured in pg_hba.conf: create the role with `CREATE ROLE {name} LOGIN`",
                ("IDENTIFIED", false) => "MariaDB authenticates through plugins: `CREATE USER {name} IDENTIFIED VIA <plugin>`",
                ("DEFAULT", true) => "a role's default tablespace is a setting: `ALTER ROLE {name} SET default_tablespace = {tablespace}`",
                ("TEMPORARY", true) => "a role's temporary tablespaces are a setting: `ALTER ROLE {name} SET temp_tablespaces = {tablespace}`",
                ("DEFAULT" | "TEMPORARY", false) => "MariaDB users have no tablespaces: leave the clause out",
                (_, true) => "PostgreSQL has no profiles or quotas on roles: `VALID UNTIL` and `CONNECTION LIMIT` are the role's own limits",
                (_, false) => "MariaDB has no profiles or quotas: `PASSWORD EXPIRE INTERVAL n DAY` and `WITH MAX_USER_CONNECTIONS n` are the account's own limits",
            };
            push(
                from,
                to,
                false,
                format!("`{clause_text}` in `{first} {second}` is Oracle syntax: {srv} refuses it"),
                help.into(),
            );
        } else if pg && second == "USER" && matches!(clause, "IDENTIFIED" | "ACCOUNT") {
            if let Some(from) = items.get(i) {
                let to = items.get(i + 1).unwrap_or(from);
                let help = match (first, clause) {
                    ("CREATE", _) => "write `CREATE ROLE {name} LOGIN PASSWORD {password}` (tag the password `QUOTES`)",
                    (_, "IDENTIFIED") => "write `ALTER ROLE {name} PASSWORD {password}` (tag the password `QUOTES`)",
                    _ => "write `ALTER ROLE {name} NOLOGIN` to lock the account and `ALTER ROLE {name} LOGIN` to unlock it",
                };
                push(
                    from,
                    to,
                    false,
                    format!(
                        "`{first} USER … {}` is Oracle/MySQL syntax: PostgreSQL refuses it",
                        format!("{clause} {next}").trim_end()
                    ),
                    help.into(),
                );
            }
        } else if second == "USER"
            && first == "CREATE"
            && matches!(clause, "FOR" | "FROM" | "WITHOUT")
            && next == "LOGIN"
        {
            if let Some(from) = items.get(i) {
                push(
                    from,
                    items.get(i + 1).unwrap_or(from),
                    false,
                    format!("`CREATE USER … {clause} LOGIN` is SQL Server syntax: {srv} refuses it"),
                    if pg {
                        "a login and a database user are one role on PostgreSQL: `CREATE ROLE {name} LOGIN`, then `GRANT CONNECT ON DATABASE <database> TO {name}`".into()
                    } else {
                        "a login and a database user are one account on MariaDB: `CREATE USER {name}`, then `GRANT USAGE ON <database>.* TO {name}`".into()
                    },
                );
            }
        }
    }
    if pg && first == "SET" && second == "PASSWORD" {
        if let (Some(from), Some(to)) = (items.first(), items.get(1)) {
            push(
                from,
                to,
                false,
                "`SET PASSWORD` is MySQL/MariaDB syntax: PostgreSQL refuses it".into(),
                "write `ALTER ROLE {name} PASSWORD {password}` (tag the password `QUOTES`)".into(),
            );
        }
    }
    if pg && first == "SHOW" && matches!(second, "DATABASES" | "PRIVILEGES" | "GRANTS" | "TABLES" | "USERS" | "ROLES") {
        if let (Some(from), Some(to)) = (items.first(), items.get(1)) {
            push(
                from,
                to,
                false,
                format!("`SHOW {second}` is MySQL/MariaDB syntax: PostgreSQL's SHOW reads a setting, and it has none of that name"),
                "query the catalog instead: `pg_database`, `pg_roles`, `pg_auth_members`, `information_schema.table_privileges`".into(),
            );
        }
    }
    if matches!(first, "GRANT" | "REVOKE") {
        let grant = first == "GRANT";
        // DB2: `… TO USER x` / `… FROM USER x`, `USE OF TABLESPACE`, `CREATEIN`, `ON DATABASE`
        // without a name.
        // Where the privileges end: the first ON, TO or FROM.
        let privileges_end =
            items.iter().position(|a| matches!(word(Some(a)), Some("ON" | "TO" | "FROM"))).unwrap_or(items.len());
        for (k, at) in items.iter().enumerate() {
            let here = word(Some(at));
            let next = w(k + 1);
            let in_privileges = k < privileges_end;
            let db2 = match (here, next) {
                // `TO user@host` is MariaDB's own account name.
                (Some("TO" | "FROM"), Some("USER" | "GROUP"))
                    if (!pg || next == Some("USER")) && !is_punct(items.get(k + 2), '@') =>
                {
                    Some((k, 2, ""))
                }
                (Some("USE"), Some("OF")) if in_privileges && w(k + 2) == Some("TABLESPACE") => Some((k, 3, "")),
                (Some("CREATEIN" | "DBADM" | "SECADM" | "BINDADD" | "CREATETAB" | "IMPLICIT_SCHEMA"), _)
                    if in_privileges =>
                {
                    Some((k, 1, ""))
                }
                (Some("DATABASE"), Some("TO" | "FROM")) if w(k.wrapping_sub(1)) == Some("ON") => {
                    Some((k - 1, 2, " with no database name"))
                }
                _ => None,
            };
            if let Some((start, n, detail)) = db2 {
                let (from, to) = (items.get(start).unwrap_or(at), items.get(start + n - 1).unwrap_or(at));
                let what: Vec<&str> = (start..start + n).filter_map(w).collect();
                push(
                    from,
                    to,
                    false,
                    format!("`{}`{detail} in `{first}` is DB2 syntax: {srv} refuses it", what.join(" ")),
                    if pg {
                        "PostgreSQL grants to a role by name (`GRANT CONNECT ON DATABASE <database> TO {name}`, `GRANT CREATE ON SCHEMA <schema> TO {name}`, `GRANT CREATE ON TABLESPACE <tablespace> TO {name}`)".into()
                    } else {
                        "MariaDB grants privileges on objects to an account (`GRANT CREATE ON <database>.* TO {name}`)"
                            .into()
                    },
                );
                break;
            }
        }
        // Oracle system privileges: `GRANT CREATE SESSION TO x`, keywords with no `ON`.
        let has_on = items.iter().any(|a| word(Some(a)) == Some("ON"));
        let verb_end = items.iter().position(|a| matches!(word(Some(a)), Some("TO" | "FROM")));
        let privilege_words = [
            "CREATE",
            "ALTER",
            "DROP",
            "SELECT",
            "INSERT",
            "UPDATE",
            "DELETE",
            "EXECUTE",
            "UNLIMITED",
            "RESTRICTED",
            "BECOME",
        ];
        if let (false, Some(end), Some(p)) = (has_on, verb_end, w(1)) {
            if privilege_words.contains(&p) && end > 2 {
                if let (Some(from), Some(to)) = (items.get(1), items.get(end - 1)) {
                    let what: Vec<&str> = (1..end).filter_map(w).collect();
                    push(
                        from,
                        to,
                        false,
                        format!("`{}` is an Oracle system privilege: {srv} has no privilege of that name", what.join(" ")),
                        match (what.first().copied(), what.get(1).copied(), pg, grant) {
                            (Some("CREATE"), Some("SESSION"), true, true) => "the right to log in is the role's LOGIN attribute: `ALTER ROLE {name} LOGIN`".into(),
                            (Some("CREATE"), Some("SESSION"), true, false) => "the right to log in is the role's LOGIN attribute: `ALTER ROLE {name} NOLOGIN`".into(),
                            (Some("CREATE"), Some("SESSION"), false, _) => "every MariaDB account may connect (the USAGE privilege): `GRANT USAGE ON *.* TO {name}`".into(),
                            _ => format!("grant the {srv} privilege on the object it concerns (`GRANT CREATE ON SCHEMA …`)"),
                        },
                    );
                }
            }
        }
        // MySQL accounts on PostgreSQL.
        if pg {
            if let Some(k) = items.iter().position(|a| a.item == Item::Punct('@')) {
                if let (Some(from), Some(to)) = (items.get(k.wrapping_sub(1)), items.get(k + 1)) {
                    push(from, to, false, HOST_PART.0.into(), HOST_PART.1.into());
                }
            }
        }
    }

    // Another database's catalog: `a..b` (SQL Server / Sybase), schema-qualified system
    // catalogs, Oracle's dictionary views, Sybase's system tables after FROM / JOIN.
    for (k, at) in items.iter().enumerate() {
        if is_punct(Some(at), '.') && is_punct(items.get(k + 1), '.') {
            let from = items.get(k.wrapping_sub(1)).unwrap_or(at);
            let to = items.get(k + 2).unwrap_or(at);
            push(
                from,
                to,
                false,
                "`database..table` is SQL Server / Sybase syntax: {srv} refuses the empty owner between the dots"
                    .replace("{srv}", srv),
                "name the table `schema.table` as the target database lays it out".into(),
            );
            continue;
        }
        let Some(name) = word(Some(at)) else { continue };
        let qualified = is_punct(items.get(k + 1), '.');
        let after_from = matches!(w(k.wrapping_sub(1)), Some("FROM" | "JOIN"));
        let member = if qualified { w(k + 2) } else { None };
        let catalog: Option<(&str, &str)> = match (name, member) {
            // Schema-qualified tables are read after FROM or JOIN (elsewhere `x.y` may be an
            // alias's column).
            ("SYSCAT" | "SYSIBM", Some(_)) if after_from => Some(("DB2", "catalog view")),
            // PostgreSQL has no `sys` schema; MariaDB's holds its own views, not these.
            ("SYS", Some(m))
                if after_from
                    && (pg || SQL_SERVER_VIEWS.contains(&m) || m.starts_with("SQL_") || m.starts_with("SERVER_")) =>
            {
                Some(("SQL Server", "catalog view"))
            }
            ("MASTER", Some(_)) if after_from => Some(("SQL Server / Sybase", "master database")),
            ("MYSQL", Some(_)) if pg && after_from => Some(("MySQL/MariaDB", "system table")),
            (n, None) if after_from && ORACLE_VIEWS.contains(&n) => Some(("Oracle", "data dictionary view")),
            ("DUAL", None) if after_from && pg => Some(("Oracle", "dummy table")),
            (n, None) if after_from && SYBASE_TABLES.contains(&n) => Some(("Sybase / SQL Server", "system table")),
            _ => None,
        };
        if let Some((origin, kind)) = catalog {
            let to = if qualified { items.get(k + 2).unwrap_or(at) } else { at };
            let shown: String = match member {
                Some(m) => format!("{}.{}", name, m).to_lowercase(),
                None => name.to_lowercase(),
            };
            push(
                at,
                to,
                true,
                format!("`{shown}` is {origin}'s {kind}: {srv} has none of that name, so the query fails unless you created it"),
                if pg {
                    "read PostgreSQL's own catalog: roles in `pg_roles`, memberships in `pg_auth_members`, databases in `pg_database`, tablespaces in `pg_tablespace`".into()
                } else {
                    "read MariaDB's own catalog: accounts in `mysql.user` (or `information_schema.USER_PRIVILEGES`), roles in `mysql.roles_mapping`, databases in `information_schema.SCHEMATA`".into()
                },
            );
        }
    }
    out.sort_by_key(|f| f.offset);
    out.dedup_by_key(|f| f.offset);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(sql: &str, dialect: Dialect) -> Vec<(String, bool, String)> {
        foreign(sql, dialect)
            .into_iter()
            .map(|f| (sql.chars().skip(f.offset).take(f.len).collect(), f.catalog, f.message))
            .collect()
    }

    #[test]
    fn oracle_account_syntax() {
        let pg = Dialect::Postgres;
        let maria = Dialect::Mariadb;
        assert_eq!(found("ALTER USER {n} ACCOUNT LOCK", pg)[0].0, "ACCOUNT LOCK");
        assert!(found("ALTER USER {n} ACCOUNT LOCK", maria).is_empty());
        assert_eq!(found("CREATE USER {n} IDENTIFIED BY {p}", pg)[0].0, "IDENTIFIED BY");
        assert!(found("CREATE USER {n} IDENTIFIED BY {p}", maria).is_empty());
        assert_eq!(found("ALTER USER {n} DEFAULT TABLESPACE {t}", maria)[0].0, "DEFAULT TABLESPACE");
        assert_eq!(found("create user {n} identified externally", maria)[0].0, "identified externally");
        assert_eq!(found("ALTER USER {n} PROFILE {p}", pg)[0].0, "PROFILE");
        assert_eq!(found("GRANT CREATE SESSION TO {n}", maria)[0].0, "CREATE SESSION");
        assert!(found("GRANT {r} TO {n}", pg).is_empty());
        assert!(found("GRANT SELECT ON t TO {n}", pg).is_empty());
        assert!(found("CREATE ROLE {n} LOGIN PASSWORD {p}", pg).is_empty());
    }

    #[test]
    fn sql_server_sybase_db2_and_mysql_syntax() {
        let pg = Dialect::Postgres;
        let maria = Dialect::Mariadb;
        assert_eq!(found("EXEC sp_addlogin {n}, {p}", pg)[0].0, "EXEC sp_addlogin");
        assert_eq!(found("sp_locklogin {n}, 'lock'", maria)[0].0, "sp_locklogin");
        assert_eq!(found("ALTER LOGIN {n} DISABLE", maria)[0].0, "ALTER LOGIN");
        assert_eq!(found("CREATE USER {n} FOR LOGIN {l}", pg)[0].0, "FOR LOGIN");
        assert_eq!(found("GRANT CONNECT ON DATABASE TO USER {n}", pg)[0].0, "ON DATABASE");
        assert_eq!(found("GRANT USE OF TABLESPACE {t} TO USER {n}", maria)[0].0, "USE OF TABLESPACE");
        assert_eq!(found("CREATE USER {n}@{h} IDENTIFIED BY {p}", pg)[0].0, "{n}@{h}");
        assert!(found("CREATE USER {n}@{h} IDENTIFIED BY {p}", maria).is_empty());
        assert_eq!(found("SET PASSWORD FOR {n}@{h} = PASSWORD({p})", pg)[0].0, "SET PASSWORD");
        assert!(found("SET PASSWORD FOR {n}@{h} = PASSWORD({p})", maria).is_empty());
        assert_eq!(found("SHOW PRIVILEGES", pg)[0].0, "SHOW PRIVILEGES");
        assert!(found("SHOW PRIVILEGES", maria).is_empty());
    }

    #[test]
    fn other_catalogs_are_warnings_and_quotes_hide_everything() {
        let pg = Dialect::Postgres;
        let f = found("SELECT username FROM dba_users WHERE username = {n}", pg);
        assert_eq!(f, [("dba_users".to_string(), true, "`dba_users` is Oracle's data dictionary view: PostgreSQL has none of that name, so the query fails unless you created it".to_string())]);
        assert_eq!(found("select name from master..syslogins", Dialect::Mariadb)[0].0, "master..syslogins");
        assert_eq!(found("SELECT * FROM SYSCAT.DBAUTH", pg)[0].0, "SYSCAT.DBAUTH");
        assert_eq!(found("SELECT name FROM sys.sql_logins", pg)[0].0, "sys.sql_logins");
        assert_eq!(found("SELECT User FROM mysql.user", pg)[0].0, "mysql.user");
        assert!(found("SELECT User FROM mysql.user", Dialect::Mariadb).is_empty());
        assert!(found("SELECT 'ALTER USER x ACCOUNT LOCK' -- EXEC sp_addlogin", pg).is_empty());
        assert!(found("call sp_helper({n})", pg).is_empty());
        assert!(found("ALTER USER {n} ACCOUNT LOCK", Dialect::Sqlite).is_empty());
    }

    #[test]
    fn the_dialects_own_statements_are_not_flagged() {
        let pg = Dialect::Postgres;
        let maria = Dialect::Mariadb;
        for sql in [
            "GRANT CREATE ON SCHEMA s TO {n}",
            "GRANT SELECT ON t TO {n}",
            "GRANT CONNECT ON DATABASE d TO {n}",
            "REVOKE ALL PRIVILEGES ON DATABASE d FROM {n}",
            "GRANT {r} TO {n} WITH ADMIN OPTION",
            "ALTER ROLE {n} LOGIN",
            "CREATE USER {n} WITH PASSWORD {p}",
            "SHOW search_path",
            "GRANT SELECT ON dbadm TO {n}",
            "SELECT master.id FROM accounts master",
            "SELECT sys.x FROM t sys",
        ] {
            assert!(found(sql, pg).is_empty(), "{sql}: {:?}", found(sql, pg));
        }
        for sql in [
            "GRANT USAGE ON *.* TO {n}",
            "GRANT SELECT ON db.* TO user@localhost",
            "SELECT * FROM sys.schema_table_statistics",
            "ALTER USER {n} ACCOUNT LOCK",
            "SET PASSWORD FOR {n}@{h} = PASSWORD({p})",
        ] {
            assert!(found(sql, maria).is_empty(), "{sql}: {:?}", found(sql, maria));
        }
    }
}
