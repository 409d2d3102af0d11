//! The MariaDB target (`mysql` crate, synchronous, with the pure-Rust compression backend and
//! TLS through rustls: no C library to build). `sslmode` and `sslrootcert` in the URL take
//! libpq's names and meanings (see [`crate::tls`]); `prefer`, the default, connects in plain
//! when the server has no TLS.
//!
//! - OUT parameters go through session variables on the same connection:
//!   `CALL p(?, ?, @pf_out_3)` then `SELECT @pf_out_3`; an INOUT value is set first
//!   (`SET @pf_io_2 = ?`). The variables are cleared after every call, so a secret passed
//!   INOUT does not outlive it.
//! - Inlined values are quoted for the session's `sql_mode`, read at connect: backslashes are
//!   doubled unless `NO_BACKSLASH_ESCAPES`; `DOUBLEQUOTES` is a string literal unless
//!   `ANSI_QUOTES` makes `"` an identifier quote.
//! - `Date` and `Timestamp` values are sent as their canonical text (`2024-02-29`,
//!   `2024-02-29T10:00:00.5`). MariaDB refuses `Z` and offsets and its `DATETIME` has no time
//!   zone, so a timestamp written with an offset is sent as its UTC date and time. Dates and
//!   times read back are canonical text too, whichever protocol carried them.
//! - Errors carry the SQLSTATE in `TargetError::sqlstate` and the vendor number at the end of
//!   the message (`[MariaDB error 1396]`, see [`vendor_code`]), so an `errors` map may use
//!   either.

use mysql::consts::ColumnType;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, SslOpts};
use provflow_ir::{self as ir, Dialect, ParamMode, Quoting, Segment, ValueType};
use provflow_lex::values::{self, Stamp, Typed};
use std::collections::BTreeMap;
use std::time::Instant;

use crate::credentials::Credentials;
use crate::target::install::{self, ExecuteStatement};
use crate::target::postgres::{coerce, named, refuse_nul, Timeouts};
use crate::target::{inline_text, quoted, CallOutcome, Target, TargetError};
use crate::tls::{self, Check, Driver, SslMode, TlsParams};
use crate::value::{Value, MASK};
use zeroize::Zeroizing;

/// The session's `sql_mode` flags that change how literals are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqlMode {
    pub no_backslash_escapes: bool,
    pub ansi_quotes: bool,
}

/// How to connect: the driver's options and the TLS parameters they came from.
struct Connection {
    opts: Opts,
    tls: TlsParams,
    /// The host name the server's certificate is checked against.
    host: String,
}

pub struct MariadbTarget {
    opts: Connection,
    conn: Conn,
    endpoint: String,
    timeouts: Timeouts,
    /// The secrets of the connection URL, removed from every message.
    credentials: Credentials,
    sql_mode: SqlMode,
    last_used: Instant,
    broken: bool,
}

const VENDOR_PREFIX: &str = " [MariaDB error ";

/// The MariaDB error number of a target error, for `errors` maps keyed by number (`"1396"`).
/// The engine should look up `sqlstate` first, then this.
pub fn vendor_code(e: &TargetError) -> Option<&str> {
    let (_, tail) = e.message.rsplit_once(VENDOR_PREFIX)?;
    tail.strip_suffix(']').filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
}

impl MariadbTarget {
    /// Connects to `url` (`mysql://user:password@host:port/database`).
    pub fn connect(url: &str, timeouts: &Timeouts) -> Result<Self, TargetError> {
        let credentials = Credentials::of(url);
        let (rest, tls) = tls::split(url).map_err(|e| TargetError::refused(credentials.scrub(&e)))?;
        let parsed = Opts::from_url(&rest)
            .map_err(|e| TargetError::refused(credentials.scrub(&format!("not a MariaDB connection URL: {e}"))))?;
        let host = parsed.get_ip_or_hostname().into_owned();
        let endpoint = format!(
            "{}:{}/{}{}",
            parsed.get_ip_or_hostname(),
            parsed.get_tcp_port(),
            parsed.get_db_name().unwrap_or(""),
            parsed.get_user().map(|u| format!(" as `{u}`")).unwrap_or_default()
        );
        // A statement may run up to its server-side limit; the socket waits a little longer.
        let socket = timeouts.statement + std::time::Duration::from_secs(5);
        let ssl = ssl_opts(&tls).map_err(|e| TargetError::refused(credentials.scrub(&e)))?;
        let mut builder = OptsBuilder::from_opts(parsed)
            .tcp_connect_timeout(Some(timeouts.connect))
            .read_timeout(Some(socket))
            .write_timeout(Some(socket))
            .ssl_opts(ssl);
        if tls.mode.requires_tls() {
            // The driver would otherwise move a local connection to the server's Unix socket,
            // where it does not use TLS.
            builder = builder.prefer_socket(false);
        }
        let opts: Opts = builder.into();
        let connection = Connection { opts, tls, host };
        let conn = open(&connection, &endpoint, &credentials)?;
        let mut target = MariadbTarget {
            opts: connection,
            conn,
            endpoint,
            timeouts: *timeouts,
            credentials,
            sql_mode: SqlMode::default(),
            last_used: Instant::now(),
            broken: false,
        };
        target.set_up_session()?;
        Ok(target)
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn sql_mode(&self) -> SqlMode {
        self.sql_mode
    }

    fn set_up_session(&mut self) -> Result<(), TargetError> {
        let seconds = self.timeouts.statement.as_secs_f64();
        // utf8mb4 end to end, so that every value lands byte-exact and no multi-byte charset
        // can swallow an escaping backslash.
        let setup = format!("SET NAMES utf8mb4 COLLATE utf8mb4_bin, SESSION max_statement_time = {seconds}");
        if let Err(e) = self.conn.query_drop(setup) {
            return Err(self.error(e, &[]));
        }
        self.refresh_sql_mode()
    }

    fn refresh_sql_mode(&mut self) -> Result<(), TargetError> {
        let mode: Option<String> = match self.conn.query_first("SELECT @@SESSION.sql_mode") {
            Ok(m) => m,
            Err(e) => return Err(self.error(e, &[])),
        };
        self.sql_mode = parse_sql_mode(mode.as_deref().unwrap_or(""));
        Ok(())
    }

    fn ensure_connected(&mut self) -> Result<(), TargetError> {
        let stale = self.last_used.elapsed() >= self.timeouts.idle_check;
        if self.broken || (stale && self.conn.ping().is_err()) {
            self.conn = open(&self.opts, &self.endpoint, &self.credentials)?;
            self.broken = false;
            self.set_up_session()?;
        }
        self.last_used = Instant::now();
        Ok(())
    }

    fn error(&mut self, e: mysql::Error, values: &[Value]) -> TargetError {
        let error = match e {
            mysql::Error::MySqlError(db) => TargetError {
                sqlstate: Some(db.state.clone()),
                message: format!("{}{VENDOR_PREFIX}{}]", db.message, db.code),
            },
            other => {
                if matches!(other, mysql::Error::IoError(_) | mysql::Error::DriverError(_)) {
                    self.broken = true;
                }
                TargetError::refused(format!("MariaDB at {}: {other}", self.endpoint))
            }
        };
        let mut message = self.credentials.scrub(&error.message);
        for v in values {
            if let Value::Secret(s) = v {
                if !s.expose().is_empty() {
                    message = message.replace(s.expose(), MASK);
                }
            }
        }
        TargetError { sqlstate: error.sqlstate, message }
    }

    /// Renders the query for MariaDB: `?` binds, `@pf_out_N` / `@pf_io_N` session variables
    /// for OUT / INOUT parameters of calls, quoted inlined values. Returns the SQL, its binds,
    /// the INOUT variables to set first and the output variables to read after.
    fn render(&self, query: &ir::Query, values: &[Value]) -> Result<Rendered, TargetError> {
        let mut r = Rendered::default();
        let is_call = query.call.is_some();
        for segment in &query.segments {
            match segment {
                Segment::Text(t) => r.sql.push_str(t),
                Segment::Out(i) => {
                    let variable = format!("@pf_out_{}", i + 1);
                    r.sql.push_str(&variable);
                    r.outputs.push((*i, variable));
                }
                Segment::Bind(i) => {
                    let param =
                        query.params.get(*i).ok_or_else(|| TargetError::refused("query parameter out of range"))?;
                    let value = zoneless(param.ty, values.get(*i).cloned().unwrap_or(Value::Null));
                    refuse_nul(&value, &param.name)?;
                    if is_call && param.mode == ParamMode::InOut {
                        let variable = format!("@pf_io_{}", i + 1);
                        r.sql.push_str(&variable);
                        r.set_first.push((variable.clone(), value));
                        r.outputs.push((*i, variable));
                    } else {
                        r.sql.push('?');
                        r.binds.push(value);
                    }
                }
                Segment::Inline(i) => {
                    let param =
                        query.params.get(*i).ok_or_else(|| TargetError::refused("query parameter out of range"))?;
                    let value = zoneless(param.ty, values.get(*i).cloned().unwrap_or(Value::Null));
                    r.sql.push_str(&quote(&value, param.quoting, self.sql_mode).map_err(|e| named(e, &param.name))?);
                }
            }
        }
        Ok(r)
    }

    fn run(&mut self, query: &ir::Query, values: &[Value]) -> Result<CallOutcome, TargetError> {
        let r = self.render(query, values)?;
        for (variable, value) in &r.set_first {
            if let Err(e) = self.conn.exec_drop(format!("SET {variable} = ?"), vec![to_mysql(value)]) {
                return Err(self.error(e, values));
            }
        }
        let result = if r.binds.is_empty() {
            self.conn.query_iter(&r.sql).and_then(collect)
        } else {
            let params: Vec<mysql::Value> = r.binds.iter().map(to_mysql).collect();
            self.conn.exec_iter(&r.sql, params).and_then(collect)
        };
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                let err = self.error(e, values);
                self.clear_variables(&r);
                return Err(err);
            }
        };
        let mut outcome = CallOutcome::default();
        if query.call.is_some() {
            if !r.outputs.is_empty() {
                let select =
                    format!("SELECT {}", r.outputs.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(", "));
                let read = self.conn.query_iter(&select).and_then(collect);
                self.clear_variables(&r);
                let read = match read {
                    Ok(rows) => rows,
                    Err(e) => return Err(self.error(e, values)),
                };
                let row = read.into_iter().next().unwrap_or_default();
                for (index, variable) in &r.outputs {
                    let Some(param) = query.params.get(*index) else { continue };
                    let value = row.get(variable).cloned().unwrap_or(Value::Null);
                    outcome.outputs.insert(param.name.clone(), coerce(value, param.ty, &param.name)?);
                }
            }
        } else {
            outcome.rows = rows;
            let typed: BTreeMap<&str, ir::ValueType> = query.columns.iter().map(|c| (c.name.as_str(), c.ty)).collect();
            for row in &mut outcome.rows {
                for (name, v) in row.iter_mut() {
                    if let Some(ty) = typed.get(name.as_str()) {
                        *v = coerce(std::mem::replace(v, Value::Null), *ty, name)?;
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// Best effort: the connection may be the thing that failed.
    fn clear_variables(&mut self, r: &Rendered) {
        if r.outputs.is_empty() {
            return;
        }
        let sets: Vec<String> = r.outputs.iter().map(|(_, v)| format!("{v} = NULL")).collect();
        let _ = self.conn.query_drop(format!("SET {}", sets.join(", ")));
    }
}

#[derive(Default)]
struct Rendered {
    sql: String,
    binds: Vec<Value>,
    set_first: Vec<(String, Value)>,
    /// (parameter index, session variable) of every OUT and INOUT parameter.
    outputs: Vec<(usize, String)>,
}

/// The driver's TLS options for `tls` (see [`crate::tls`]). The `mysql` crate's verifier also
/// trusts the Mozilla roots it bundles besides `sslrootcert` (see ARCHITECTURE.md, TLS).
fn ssl_opts(tls: &TlsParams) -> Result<Option<SslOpts>, String> {
    let check = tls.check(Driver::Mariadb)?;
    Ok(match check.clone() {
        Check::None => None,
        Check::Unverified => Some(SslOpts::default().with_danger_accept_invalid_certs(true)),
        Check::Chain(path) | Check::Full(path) => {
            let chain_only = matches!(check, Check::Chain(_));
            // Read here so that a missing or empty file is named before connecting.
            tls::load_roots(&path)?;
            Some(SslOpts::default().with_root_cert_path(Some(path)).with_danger_skip_domain_validation(chain_only))
        }
    })
}

fn open(connection: &Connection, endpoint: &str, credentials: &Credentials) -> Result<Conn, TargetError> {
    let mut result = Conn::new(connection.opts.clone());
    if connection.tls.mode == SslMode::Prefer
        && matches!(result, Err(mysql::Error::DriverError(mysql::DriverError::TlsNotSupported)))
    {
        // `prefer`: the server said it has no TLS before anything was sent; connect in plain.
        result = Conn::new(OptsBuilder::from_opts(connection.opts.clone()).ssl_opts(None::<SslOpts>));
    }
    result.map_err(|e| {
        // A refused certificate is a rustls error inside an I/O error, which the driver wraps
        // in one of three variants.
        let refused = match &e {
            mysql::Error::IoError(io) => tls::explain(io, &connection.tls, &connection.host),
            mysql::Error::CodecError(codec) => tls::explain(codec, &connection.tls, &connection.host),
            mysql::Error::TlsError(t) => tls::explain(t, &connection.tls, &connection.host),
            _ => None,
        };
        let (sqlstate, detail) = match &e {
            _ if refused.is_some() => (None, refused.unwrap_or_default()),
            mysql::Error::MySqlError(db) => {
                (Some(db.state.clone()), format!("{}{VENDOR_PREFIX}{}]", db.message, db.code))
            }
            mysql::Error::DriverError(mysql::DriverError::TlsNotSupported) => {
                (None, tls::not_offered(connection.tls.mode))
            }
            // The driver's Display of its own errors is a Debug dump (`DriverError { ... }`).
            mysql::Error::DriverError(driver) => (None, driver.to_string()),
            mysql::Error::IoError(io) => (None, io.to_string()),
            other => (None, other.to_string()),
        };
        TargetError {
            sqlstate,
            message: credentials.scrub(&format!("cannot connect to MariaDB at {endpoint}: {detail}")),
        }
    })
}

pub fn parse_sql_mode(mode: &str) -> SqlMode {
    let has = |flag: &str| mode.split(',').any(|m| m.trim().eq_ignore_ascii_case(flag));
    SqlMode {
        no_backslash_escapes: has("NO_BACKSLASH_ESCAPES"),
        // ANSI implies ANSI_QUOTES, but the server lists ANSI_QUOTES itself in @@sql_mode.
        ansi_quotes: has("ANSI_QUOTES") || has("ANSI"),
    }
}

/// Quotes a value for inlining into MariaDB SQL text under `mode`.
pub fn quote(value: &Value, quoting: Quoting, mode: SqlMode) -> Result<Zeroizing<String>, TargetError> {
    let text = inline_text(value)?;
    let text = text.as_ref();
    let literal = |q: char| quoted(text, q, !mode.no_backslash_escapes);
    if text.is_empty() && (quoting == Quoting::Identifier || (quoting == Quoting::DoubleQuotes && mode.ansi_quotes)) {
        return Err(TargetError::refused("an empty value is not an identifier"));
    }
    Ok(match quoting {
        Quoting::Bind => return Err(TargetError::refused("a bind parameter is never inlined")),
        Quoting::Identifier => quoted(text, '`', false),
        // In an identifier a backslash is an ordinary character.
        Quoting::DoubleQuotes if mode.ansi_quotes => quoted(text, '"', false),
        Quoting::DoubleQuotes => literal('"'),
        Quoting::Quotes => literal('\''),
    })
}

/// A `Timestamp` instant (`...Z`) as its UTC date and time, which MariaDB accepts; every other
/// value as it is.
fn zoneless(ty: ValueType, value: Value) -> Value {
    match (ty, &value) {
        (ValueType::Timestamp, Value::Text(s)) => match values::parse(ty, s) {
            Ok(Typed::Timestamp(stamp @ Stamp::Instant(_))) => Value::Text(stamp.civil().to_string()),
            _ => value,
        },
        _ => value,
    }
}

/// A date or time column's text (the text protocol's `2024-02-29 10:00:00`) in canonical
/// form; text that is no provflow date (a zero date `0000-00-00`) as MariaDB sent it.
fn temporal_text(ty: ColumnType, text: String) -> String {
    let as_type = match ty {
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => ValueType::Date,
        ColumnType::MYSQL_TYPE_DATETIME
        | ColumnType::MYSQL_TYPE_DATETIME2
        | ColumnType::MYSQL_TYPE_TIMESTAMP
        | ColumnType::MYSQL_TYPE_TIMESTAMP2 => ValueType::Timestamp,
        _ => return text,
    };
    values::canonical(as_type, &text).unwrap_or(text)
}

fn to_mysql(value: &Value) -> mysql::Value {
    match value {
        Value::Null => mysql::Value::NULL,
        Value::Text(s) => mysql::Value::Bytes(s.as_bytes().to_vec()),
        Value::Secret(s) => mysql::Value::Bytes(s.expose().as_bytes().to_vec()),
        Value::Int(i) => mysql::Value::Int(*i),
        Value::Double(d) => mysql::Value::Double(*d),
        Value::Bool(b) => mysql::Value::Int(i64::from(*b)),
    }
}

fn from_mysql(value: &mysql::Value, ty: ColumnType) -> Value {
    use mysql::Value as M;
    match value {
        M::NULL => Value::Null,
        M::Int(i) => Value::Int(*i),
        M::UInt(u) => i64::try_from(*u).map(Value::Int).unwrap_or_else(|_| Value::Text(u.to_string())),
        M::Float(f) => Value::Double(f64::from(*f)),
        M::Double(d) => Value::Double(*d),
        M::Bytes(b) => {
            let text = String::from_utf8_lossy(b).into_owned();
            // The text protocol sends numbers as text.
            let integer = matches!(
                ty,
                ColumnType::MYSQL_TYPE_TINY
                    | ColumnType::MYSQL_TYPE_SHORT
                    | ColumnType::MYSQL_TYPE_INT24
                    | ColumnType::MYSQL_TYPE_LONG
                    | ColumnType::MYSQL_TYPE_LONGLONG
            );
            let float = matches!(ty, ColumnType::MYSQL_TYPE_FLOAT | ColumnType::MYSQL_TYPE_DOUBLE);
            if integer {
                text.parse().map(Value::Int).unwrap_or(Value::Text(text))
            } else if float {
                text.parse().map(Value::Double).unwrap_or(Value::Text(text))
            } else {
                Value::Text(temporal_text(ty, text))
            }
        }
        M::Date(y, mo, d, h, mi, s, us) => {
            let date = i16::try_from(*y).ok().zip(i8::try_from(*mo).ok()).zip(i8::try_from(*d).ok());
            let date = date.and_then(|((y, mo), d)| jiff::civil::Date::new(y, mo, d).ok());
            let time = i8::try_from(*h).ok().zip(i8::try_from(*mi).ok()).zip(i8::try_from(*s).ok());
            let nanos = i32::try_from(*us).ok().and_then(|us| us.checked_mul(1000));
            let time = time.zip(nanos).and_then(|(((h, mi), s), ns)| jiff::civil::Time::new(h, mi, s, ns).ok());
            let date_only = matches!(ty, ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE);
            Value::Text(match (date, time) {
                (Some(date), _) if date_only => date.to_string(),
                (Some(date), Some(time)) => date.to_datetime(time).to_string(),
                // A zero or invalid date MariaDB keeps (`0000-00-00`) is no calendar date: its
                // digits, as MariaDB shows them.
                _ if date_only => format!("{y:04}-{mo:02}-{d:02}"),
                _ => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
            })
        }
        M::Time(neg, days, h, mi, s, us) => {
            let sign = if *neg { "-" } else { "" };
            let hours = u64::from(*days) * 24 + u64::from(*h);
            let fraction = if *us == 0 { String::new() } else { format!(".{us:06}") };
            Value::Text(format!("{sign}{hours:02}:{mi:02}:{s:02}{fraction}"))
        }
    }
}

/// The rows of the first result set that has columns; every further set is drained so the
/// connection is ready for the next statement (a CALL returns one set per SELECT inside).
fn collect<P: mysql::prelude::Protocol>(
    mut result: mysql::QueryResult<'_, '_, '_, P>,
) -> Result<Vec<BTreeMap<String, Value>>, mysql::Error> {
    let mut rows = Vec::new();
    let mut taken = false;
    while let Some(set) = result.iter() {
        let columns: Vec<(String, ColumnType)> =
            set.columns().as_ref().iter().map(|c| (c.name_str().into_owned(), c.column_type())).collect();
        for row in set {
            let row = row?;
            if taken || columns.is_empty() {
                continue;
            }
            let values = row.unwrap();
            let map = columns.iter().zip(&values).map(|((name, ty), v)| (name.clone(), from_mysql(v, *ty))).collect();
            rows.push(map);
        }
        taken = taken || !columns.is_empty();
    }
    Ok(rows)
}

impl ExecuteStatement for MariadbTarget {
    fn execute_statement(&mut self, sql: &str) -> Result<(), TargetError> {
        self.ensure_connected()?;
        let result = self.conn.query_iter(sql).and_then(collect);
        match result {
            // `SET [SESSION] sql_mode = ...` changes how literals must be quoted.
            Ok(_) if sql.get(..3).is_some_and(|w| w.eq_ignore_ascii_case("set")) => self.refresh_sql_mode(),
            Ok(_) => Ok(()),
            Err(e) => Err(self.error(e, &[])),
        }
    }
}

impl Target for MariadbTarget {
    fn dialect(&self) -> Dialect {
        Dialect::Mariadb
    }

    fn call(&mut self, query: &ir::Query, values: &[Value]) -> Result<CallOutcome, TargetError> {
        self.ensure_connected()?;
        self.run(query, values)
    }

    /// Runs the script statement by statement (`DELIMITER` directives understood); an error
    /// names the statement's line.
    fn install(&mut self, sql: &str) -> Result<(), TargetError> {
        let result = install::install_lines(self, sql, Dialect::Mariadb);
        // A script may change the session's sql_mode (dbum-mariadb.sql does), and quoting
        // depends on it.
        self.refresh_sql_mode()?;
        result
    }

    fn query_scalar(&mut self, sql: &str) -> Result<Option<Value>, TargetError> {
        self.ensure_connected()?;
        let columns_first = |e: mysql::Error| e;
        let result = self.conn.query_iter(sql).and_then(|mut r| {
            let mut first: Option<Value> = None;
            let mut done = false;
            while let Some(set) = r.iter() {
                let types: Vec<ColumnType> = set.columns().as_ref().iter().map(|c| c.column_type()).collect();
                for row in set {
                    let row = row?;
                    if !done {
                        if let (Some(v), Some(ty)) = (row.as_ref(0), types.first()) {
                            first = Some(from_mysql(v, *ty));
                        }
                        done = !types.is_empty();
                    }
                }
            }
            Ok(first)
        });
        match result.map_err(columns_first) {
            Ok(v) => Ok(v),
            Err(e) => Err(self.error(e, &[])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Secret;

    #[test]
    fn quoting_follows_the_sql_mode() {
        let t = |s: &str| Value::Text(s.into());
        let default = SqlMode::default();
        let nbe = SqlMode { no_backslash_escapes: true, ansi_quotes: false };
        let ansi = SqlMode { no_backslash_escapes: false, ansi_quotes: true };
        let cases = [
            (t("it's\\"), Quoting::Quotes, default, Some("'it''s\\\\'")),
            (t("it's\\"), Quoting::Quotes, nbe, Some("'it''s\\'")),
            (t("\\\"; drop"), Quoting::DoubleQuotes, default, Some("\"\\\\\"\"; drop\"")),
            (t("a\\\"b"), Quoting::DoubleQuotes, ansi, Some("\"a\\\"\"b\"")),
            (t("a`b\\"), Quoting::Identifier, default, Some("`a``b\\`")),
            (Value::Secret(Secret::new("p'w")), Quoting::Quotes, default, Some("'p''w'")),
            (t("a\0"), Quoting::Quotes, default, None),
            (Value::Null, Quoting::Identifier, default, None),
        ];
        for (v, q, mode, want) in cases {
            assert_eq!(quote(&v, q, mode).ok().as_ref().map(|s| s.as_str()), want, "{v:?} {q:?} {mode:?}");
        }
    }

    #[test]
    fn sql_mode_flags_and_vendor_codes() {
        assert_eq!(
            parse_sql_mode("STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES"),
            SqlMode { no_backslash_escapes: true, ansi_quotes: false }
        );
        assert_eq!(
            parse_sql_mode("REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI"),
            SqlMode { no_backslash_escapes: false, ansi_quotes: true }
        );
        let e = TargetError {
            sqlstate: Some("HY000".into()),
            message: format!("Operation CREATE USER failed{VENDOR_PREFIX}1396]"),
        };
        assert_eq!(vendor_code(&e), Some("1396"));
        assert_eq!(vendor_code(&TargetError::refused("x [MariaDB error y]")), None);
    }
}
