//! The PostgreSQL target (`postgres` crate, synchronous: the engine runs one task at a time
//! per target, so an async runtime would only add a thread and a dependency tree).
//!
//! - `CALL p($1, $2, NULL)`: IN and INOUT values are binds, pure OUT slots are `NULL`;
//!   PostgreSQL 14+ returns the OUT/INOUT values as the one row of the CALL.
//! - Binds are typed by what the server inferred for each `$n` when preparing, so a `Long`
//!   fits an `integer`, `bigint` or `smallint` parameter alike. `Date` and `Timestamp` values
//!   are bound as binary `date`, `timestamp` or `timestamptz` values (`$1::date`), read from
//!   their canonical text by [`provflow_lex::values`]: a wall-clock timestamp as `timestamp`,
//!   one with an offset as the `timestamptz` instant (the server converts it to a `timestamp`
//!   parameter in the session's `TimeZone`). PostgreSQL keeps microseconds; finer fractions are
//!   rounded. A parameter of a type the driver cannot encode (`numeric`, `uuid`, a domain...)
//!   is sent as text cast to that type.
//! - Inlined values are quoted for PostgreSQL; `QUOTES` is refused when the server runs with
//!   `standard_conforming_strings = off` (a backslash would then escape).
//! - Errors carry the SQLSTATE; connection errors name host, port and database, never the
//!   password.

use postgres::types::{FromSql, ToSql, Type};
use postgres::{Client, Statement};
use provflow_ir::{self as ir, Dialect, ParamMode, Quoting, Segment, ValueType};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::credentials::Credentials;
use crate::pg_conn;
use crate::target::install::{self, ExecuteStatement};
use crate::target::{quote, sql_buffer, CallOutcome, Target, TargetError};
use crate::value::{Value, MASK};
use provflow_lex::values::{self, Stamp, Typed};
use zeroize::Zeroizing;

/// Connection and statement time limits of a network target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect and login (a `connect_timeout` in the URL wins on PostgreSQL).
    pub connect: Duration,
    /// Longest a single statement may run on the server.
    pub statement: Duration,
    /// After this much idle time the connection is checked before it is used.
    pub idle_check: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            statement: Duration::from_secs(60),
            idle_check: Duration::from_secs(5),
        }
    }
}

pub struct PostgresTarget {
    config: pg_conn::Prepared,
    client: Client,
    /// `host:port/database as user`, for messages.
    endpoint: String,
    timeouts: Timeouts,
    /// The secrets of the connection string, removed from every message.
    credentials: Credentials,
    standard_conforming_strings: bool,
    last_used: Instant,
    /// Set when a call failed with a broken connection: reconnect before the next one.
    broken: bool,
    /// Prepared statements by SQL text, for queries without inlined values (their text is
    /// the same on every call): a call is then one round trip instead of two.
    prepared: BTreeMap<String, Statement>,
}

/// More distinct statements than a query set has queries means something unusual; start over
/// rather than hold server memory without bound.
const MAX_PREPARED: usize = 256;

impl PostgresTarget {
    /// Connects to `url`: a URL (`postgres://user:password@host:port/database?...`) or a
    /// key=value DSN (`host=... user=... password=...`), as the `postgres` driver reads them.
    pub fn connect(url: &str, timeouts: &Timeouts) -> Result<Self, TargetError> {
        let credentials = Credentials::of(url);
        let mut prepared = pg_conn::prepare(url).map_err(|e| TargetError::refused(credentials.scrub(&e)))?;
        let config = &mut prepared.config;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeouts.connect);
        }
        if config.get_application_name().is_none() {
            config.application_name("provflow");
        }
        // Notices (e.g. the DBUM procedures' warnings) are not errors; keep them off stderr.
        config.notice_callback(|_| {});
        let endpoint = pg_conn::endpoint(config);
        let client = open(&prepared, &endpoint, &credentials)?;
        let mut target = PostgresTarget {
            config: prepared,
            client,
            endpoint,
            timeouts: *timeouts,
            credentials,
            standard_conforming_strings: true,
            last_used: Instant::now(),
            broken: false,
            prepared: BTreeMap::new(),
        };
        target.set_up_session()?;
        Ok(target)
    }

    /// Where this target connects, without credentials.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn set_up_session(&mut self) -> Result<(), TargetError> {
        let ms = self.timeouts.statement.as_millis();
        self.client.batch_execute(&format!("SET statement_timeout = {ms}")).map_err(|e| self.error(e, &[]))?;
        let row = self.client.query_one("SHOW standard_conforming_strings", &[]).map_err(|e| self.error(e, &[]))?;
        let value: String = row.try_get(0).map_err(|e| self.error(e, &[]))?;
        self.standard_conforming_strings = value.eq_ignore_ascii_case("on");
        Ok(())
    }

    /// Makes sure the connection is usable: reconnects once when it broke or went stale.
    fn ensure_connected(&mut self) -> Result<(), TargetError> {
        let stale = self.last_used.elapsed() >= self.timeouts.idle_check;
        let dead =
            self.broken || self.client.is_closed() || (stale && self.client.is_valid(self.timeouts.connect).is_err());
        if dead {
            self.client = open(&self.config, &self.endpoint, &self.credentials)?;
            // Statements belong to the session that prepared them.
            self.prepared.clear();
            self.broken = false;
            self.set_up_session()?;
        }
        self.last_used = Instant::now();
        Ok(())
    }

    /// Maps a driver error: SQLSTATE and the server's message for database errors; for
    /// connection errors a message naming the endpoint. Secrets are masked in both.
    fn error(&mut self, e: postgres::Error, values: &[Value]) -> TargetError {
        if let Some(db) = e.as_db_error() {
            let mut message = db.message().to_string();
            if let Some(postgres::error::ErrorPosition::Original(p)) = db.position() {
                message.push_str(&format!(" (at character {p})"));
            }
            return TargetError { sqlstate: Some(db.code().code().to_string()), message: self.scrub(&message, values) };
        }
        // Not from the server: the connection may be unusable (reset, timeout, protocol). The
        // call is not retried (it may have run); the next one starts on a fresh connection.
        self.broken = true;
        let message = format!("PostgreSQL at {}: {e}", self.endpoint);
        TargetError::refused(self.scrub(&message, values))
    }

    fn scrub(&self, message: &str, values: &[Value]) -> String {
        let mut out = self.credentials.scrub(message);
        for v in values {
            if let Value::Secret(s) = v {
                if !s.expose().is_empty() {
                    out = out.replace(s.expose(), MASK);
                }
            }
        }
        out
    }

    /// Renders the query for PostgreSQL: `$n` binds (with a text cast for dates and for
    /// parameters in `cast_text`), `NULL` for pure OUT slots, quoted inlined values.
    fn render(
        &self,
        query: &ir::Query,
        values: &[Value],
        cast_text: &BTreeMap<usize, String>,
    ) -> Result<(Zeroizing<String>, Binds), TargetError> {
        // Room for `$n::"schema"."type"` casts beside each bind.
        let mut sql = sql_buffer(query, values, 160);
        let mut binds: Vec<(usize, Value)> = Vec::new();
        for segment in &query.segments {
            match segment {
                Segment::Text(t) => sql.push_str(t),
                Segment::Out(_) => sql.push_str("NULL"),
                Segment::Bind(i) => {
                    let param =
                        query.params.get(*i).ok_or_else(|| TargetError::refused("query parameter out of range"))?;
                    let value = values.get(*i).cloned().unwrap_or(Value::Null);
                    refuse_nul(&value, &param.name)?;
                    binds.push((*i, value));
                    let n = binds.len();
                    match (cast_text.get(&n), param.ty) {
                        (Some(ty), _) => sql.push_str(&format!("${n}::text::{ty}")),
                        (None, ValueType::Date) => sql.push_str(&format!("${n}::date")),
                        (None, ValueType::Timestamp) if instant(value_of(&binds, n)) => {
                            sql.push_str(&format!("${n}::timestamptz"))
                        }
                        (None, ValueType::Timestamp) => sql.push_str(&format!("${n}::timestamp")),
                        (None, _) => sql.push_str(&format!("${n}")),
                    }
                }
                Segment::Inline(i) => {
                    let param =
                        query.params.get(*i).ok_or_else(|| TargetError::refused("query parameter out of range"))?;
                    if param.quoting == Quoting::Quotes && !self.standard_conforming_strings {
                        return Err(TargetError::refused(format!(
                            "`{}` cannot be inlined as a string literal: the server runs with standard_conforming_strings = off, where a backslash escapes; turn it on or bind the parameter",
                            param.name
                        )));
                    }
                    let value = values.get(*i).cloned().unwrap_or(Value::Null);
                    if matches!(param.quoting, Quoting::Identifier | Quoting::DoubleQuotes) {
                        check_identifier(&value, &param.name)?;
                    }
                    sql.push_str(&quote(&value, param.quoting, Dialect::Postgres).map_err(|e| named(e, &param.name))?);
                }
            }
        }
        Ok((sql, binds))
    }

    fn run(&mut self, query: &ir::Query, values: &[Value]) -> Result<CallOutcome, TargetError> {
        let mut cast_text = BTreeMap::new();
        // At most two rounds: the second casts the binds the driver cannot encode as text.
        for _round in 0..2 {
            let (sql, binds) = self.render(query, values, &cast_text)?;
            let cacheable = !query.segments.iter().any(|s| matches!(s, Segment::Inline(_)));
            let statement = match self.prepared.get(sql.as_str()) {
                Some(s) => s.clone(),
                None => {
                    let s = match self.client.prepare(&sql) {
                        Ok(s) => s,
                        Err(e) => return Err(self.error(e, values)),
                    };
                    if cacheable {
                        if self.prepared.len() >= MAX_PREPARED {
                            self.prepared.clear();
                        }
                        self.prepared.insert(sql.as_str().to_owned(), s.clone());
                    }
                    s
                }
            };
            let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(binds.len());
            let mut needs_cast = BTreeMap::new();
            for (n, ((index, value), ty)) in binds.iter().zip(statement.params()).enumerate() {
                let name = query.params.get(*index).map(|p| p.name.as_str()).unwrap_or("?");
                match bind(value, ty, cast_text.contains_key(&(n + 1))) {
                    Bind::Ready(b) => params.push(b),
                    Bind::CastText => {
                        needs_cast.insert(n + 1, quoted_type(ty));
                    }
                    Bind::Mismatch => {
                        return Err(TargetError::refused(format!(
                            "`{name}` is a {} but the server expects `{}` there",
                            query.params.get(*index).map(|p| p.ty.as_str()).unwrap_or("value"),
                            ty.name()
                        )))
                    }
                }
            }
            if !needs_cast.is_empty() {
                cast_text.extend(needs_cast);
                continue;
            }
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
            let mut outcome = CallOutcome::default();
            if statement.columns().is_empty() {
                if let Err(e) = self.client.execute(&statement, &refs) {
                    // The statement may be what failed (e.g. "cached plan must not change
                    // result type" after the procedure was redefined): prepare it afresh next time.
                    self.prepared.remove(sql.as_str());
                    return Err(self.error(e, values));
                }
                return Ok(outcome);
            }
            let rows = match self.client.query(&statement, &refs) {
                Ok(r) => r,
                Err(e) => {
                    self.prepared.remove(sql.as_str());
                    return Err(self.error(e, values));
                }
            };
            for row in &rows {
                let mut map = BTreeMap::new();
                for (i, column) in row.columns().iter().enumerate() {
                    map.insert(column.name().to_string(), read(row, i)?);
                }
                outcome.rows.push(map);
            }
            if let Some(call) = &query.call {
                outcome.outputs = outputs(query, call, rows.first())?;
                outcome.rows.clear();
            } else {
                let typed: BTreeMap<&str, ValueType> = query.columns.iter().map(|c| (c.name.as_str(), c.ty)).collect();
                for row in &mut outcome.rows {
                    for (name, v) in row.iter_mut() {
                        if let Some(ty) = typed.get(name.as_str()) {
                            *v = coerce(std::mem::replace(v, Value::Null), *ty, name)?;
                        }
                    }
                }
            }
            return Ok(outcome);
        }
        Err(TargetError::refused(format!("query `{}`: the server's parameter types could not be matched", query.name)))
    }
}

fn open(config: &pg_conn::Prepared, endpoint: &str, credentials: &Credentials) -> Result<Client, TargetError> {
    config.connect().map_err(|(sqlstate, why)| TargetError {
        sqlstate,
        message: credentials.scrub(&format!("cannot connect to PostgreSQL at {endpoint}: {why}")),
    })
}

pub(crate) fn refuse_nul(value: &Value, name: &str) -> Result<(), TargetError> {
    let text = match value {
        Value::Text(s) => s.as_str(),
        Value::Secret(s) => s.expose(),
        _ => return Ok(()),
    };
    if text.contains('\0') {
        return Err(TargetError::refused(format!(
            "the value of `{name}` contains a NUL character, which cannot be sent to the target"
        )));
    }
    Ok(())
}

/// Names the parameter in a quoting refusal.
pub(crate) fn named(e: TargetError, name: &str) -> TargetError {
    TargetError { sqlstate: e.sqlstate, message: format!("`{name}`: {}", e.message) }
}

/// PostgreSQL silently truncates identifiers to 63 bytes (NAMEDATALEN - 1), which would
/// create or touch an object other than the one named, and rejects empty ones.
fn check_identifier(value: &Value, name: &str) -> Result<(), TargetError> {
    let len = match value {
        Value::Text(s) => s.len(),
        Value::Secret(s) => s.expose().len(),
        _ => return Ok(()),
    };
    if len == 0 {
        return Err(TargetError::refused(format!("the value of `{name}` is empty, which is not an identifier")));
    }
    if len > 63 {
        return Err(TargetError::refused(format!(
            "the value of `{name}` is {len} bytes long; PostgreSQL identifiers have at most 63 bytes and longer ones would be truncated"
        )));
    }
    Ok(())
}

enum Bind {
    Ready(Box<dyn ToSql + Sync>),
    /// The driver cannot encode this type: send text and let the server cast it.
    CastText,
    Mismatch,
}

/// A rendered query's binds: the parameter index and the value of each `$n`, in order.
type Binds = Vec<(usize, Value)>;

/// A secret bound as text. The copy handed to the driver lives as long as the call's binds
/// and is wiped when they drop; its `Debug` is masked.
struct SecretText(Zeroizing<String>);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl ToSql for SecretText {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.as_str().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }

    postgres::types::to_sql_checked!();
}

fn bind(value: &Value, ty: &Type, as_text: bool) -> Bind {
    if as_text || matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN) {
        return Bind::Ready(match value {
            Value::Secret(s) => Box::new(SecretText(Zeroizing::new(s.expose().to_owned()))),
            Value::Null => Box::new(None::<String>),
            other => Box::new(other.display()),
        });
    }
    // Dates and timestamps: the canonical text as a typed value; text that is not one of
    // provflow's forms (a `String` parameter in a date column) is left to the server's cast.
    let stamp = |s: &str| match values::parse(ValueType::Timestamp, s) {
        Ok(Typed::Timestamp(stamp)) => Some(stamp),
        _ => None,
    };
    match (value, ty) {
        (Value::Null, &Type::DATE) => return Bind::Ready(Box::new(None::<jiff::civil::Date>)),
        (Value::Null, &Type::TIMESTAMP) => return Bind::Ready(Box::new(None::<jiff::civil::DateTime>)),
        (Value::Null, &Type::TIMESTAMPTZ) => return Bind::Ready(Box::new(None::<jiff::Timestamp>)),
        (Value::Text(s), &Type::DATE) => {
            if let Ok(Typed::Date(d)) = values::parse(ValueType::Date, s) {
                return Bind::Ready(Box::new(d));
            }
        }
        (Value::Text(s), &Type::TIMESTAMP) => {
            if let Some(Stamp::Civil(dt)) = stamp(s) {
                return Bind::Ready(Box::new(dt));
            }
        }
        (Value::Text(s), &Type::TIMESTAMPTZ) => {
            if let Some(Stamp::Instant(ts)) = stamp(s) {
                return Bind::Ready(Box::new(ts));
            }
        }
        _ => {}
    }
    match (value, ty) {
        (Value::Null, &Type::BOOL) => Bind::Ready(Box::new(None::<bool>)),
        (Value::Null, &Type::INT2) => Bind::Ready(Box::new(None::<i16>)),
        (Value::Null, &Type::INT4) => Bind::Ready(Box::new(None::<i32>)),
        (Value::Null, &Type::INT8) => Bind::Ready(Box::new(None::<i64>)),
        (Value::Null, &Type::FLOAT4) => Bind::Ready(Box::new(None::<f32>)),
        (Value::Null, &Type::FLOAT8) => Bind::Ready(Box::new(None::<f64>)),
        (Value::Bool(b), &Type::BOOL) => Bind::Ready(Box::new(*b)),
        (Value::Int(i), &Type::INT2) => i16::try_from(*i).map_or(Bind::Mismatch, |v| Bind::Ready(Box::new(v))),
        (Value::Int(i), &Type::INT4) => i32::try_from(*i).map_or(Bind::Mismatch, |v| Bind::Ready(Box::new(v))),
        (Value::Int(i), &Type::INT8) => Bind::Ready(Box::new(*i)),
        (Value::Int(i), &Type::FLOAT8) => Bind::Ready(Box::new(*i as f64)),
        (Value::Double(d), &Type::FLOAT8) => Bind::Ready(Box::new(*d)),
        (Value::Int(i), &Type::FLOAT4) => Bind::Ready(Box::new(*i as f32)),
        (Value::Double(d), &Type::FLOAT4) => Bind::Ready(Box::new(*d as f32)),
        (_, &Type::BOOL | &Type::INT2 | &Type::INT4 | &Type::INT8 | &Type::FLOAT4 | &Type::FLOAT8) => Bind::Mismatch,
        // numeric, date, uuid, citext, domains...: the server parses the text.
        _ => Bind::CastText,
    }
}

/// Runs a read-only query on a borrowed connection (a notification resolver with
/// `target: state` on a PostgreSQL state store) inside a `READ ONLY` transaction, so that it
/// cannot change the store; returns the first row's columns. Binds are typed as for calls; a
/// parameter of a type the driver cannot encode is refused with the cast that fixes it.
pub(crate) fn query_first_row(
    client: &mut Client,
    sql: &str,
    binds: &[Value],
) -> Result<Option<BTreeMap<String, Value>>, TargetError> {
    let err = |e: postgres::Error| {
        let (sqlstate, message) = match e.as_db_error() {
            Some(db) => (Some(db.code().code().to_string()), db.message().to_string()),
            None => (None, pg_conn::failure(&e)),
        };
        TargetError { sqlstate, message: crate::credentials::scrub_known(&message).into_owned() }
    };
    let mut tx = client.build_transaction().read_only(true).start().map_err(err)?;
    let statement = tx.prepare(sql).map_err(err)?;
    let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(binds.len());
    for (n, (value, ty)) in binds.iter().zip(statement.params()).enumerate() {
        let name = format!("${}", n + 1);
        refuse_nul(value, &name)?;
        match bind(value, ty, false) {
            Bind::Ready(b) => params.push(b),
            Bind::CastText | Bind::Mismatch => {
                return Err(TargetError::refused(format!(
                    "the state store expects `{}` for parameter {name}, which provflow cannot send as that type; cast it in the query (`{name}::text::{}`)",
                    ty.name(),
                    ty.name()
                )))
            }
        }
    }
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
    // The first row, as on SQLite.
    let row = tx.query(&statement, &refs).map_err(err)?.into_iter().next();
    let mut out = None;
    if let Some(row) = row {
        let mut map = BTreeMap::new();
        for (i, column) in row.columns().iter().enumerate() {
            map.insert(column.name().to_string(), read(&row, i)?);
        }
        out = Some(map);
    }
    tx.rollback().map_err(err)?;
    Ok(out)
}

/// Whether a `Timestamp` value is an instant (written with an offset), bound as `timestamptz`.
fn instant(value: Option<&Value>) -> bool {
    matches!(value, Some(Value::Text(s))
        if matches!(values::parse(ValueType::Timestamp, s), Ok(Typed::Timestamp(Stamp::Instant(_)))))
}

/// The value of bind `$n` (1-based).
fn value_of(binds: &[(usize, Value)], n: usize) -> Option<&Value> {
    binds.get(n.checked_sub(1)?).map(|(_, v)| v)
}

/// `"schema"."name"` of a type, for a cast.
fn quoted_type(ty: &Type) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    format!("{}.{}", q(ty.schema()), q(ty.name()))
}

/// Reads column `i` of a row into a value.
fn read(row: &postgres::Row, i: usize) -> Result<Value, TargetError> {
    let ty = row.columns().get(i).map(|c| c.type_().clone()).unwrap_or(Type::TEXT);
    let err = |e: postgres::Error| TargetError::refused(format!("cannot read column {}: {e}", i + 1));
    Ok(match ty {
        Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(err)?.map_or(Value::Null, Value::Bool),
        Type::INT2 => row.try_get::<_, Option<i16>>(i).map_err(err)?.map_or(Value::Null, |v| Value::Int(v.into())),
        Type::INT4 => row.try_get::<_, Option<i32>>(i).map_err(err)?.map_or(Value::Null, |v| Value::Int(v.into())),
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(err)?.map_or(Value::Null, Value::Int),
        Type::OID => row.try_get::<_, Option<u32>>(i).map_err(err)?.map_or(Value::Null, |v| Value::Int(v.into())),
        Type::FLOAT4 => row.try_get::<_, Option<f32>>(i).map_err(err)?.map_or(Value::Null, |v| Value::Double(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(err)?.map_or(Value::Null, Value::Double),
        _ => match row.try_get::<_, Option<AsText>>(i) {
            Ok(v) => v.map_or(Value::Null, |t| Value::Text(t.0)),
            Err(_) => {
                let name = row.columns().get(i).map(|c| c.name().to_string()).unwrap_or_default();
                return Err(TargetError::refused(format!(
                    "column `{name}` has the type `{}`, which provflow cannot read; cast it to text in the query (`{name}::text`)",
                    ty.name()
                )));
            }
        },
    })
}

/// A column value as text: text-like types as they are, dates, timestamps and numerics
/// formatted from their binary form.
struct AsText(String);

impl<'a> FromSql<'a> for AsText {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let fixed = |n: usize| -> Result<&[u8], Box<dyn std::error::Error + Sync + Send>> {
            raw.get(..n).ok_or_else(|| "short value".into())
        };
        match *ty {
            // `infinity` and `-infinity` are the largest and smallest values of the binary form.
            Type::DATE if fixed(4)? == i32::MAX.to_be_bytes() => Ok(AsText("infinity".into())),
            Type::DATE if fixed(4)? == i32::MIN.to_be_bytes() => Ok(AsText("-infinity".into())),
            Type::TIMESTAMP | Type::TIMESTAMPTZ if fixed(8)? == i64::MAX.to_be_bytes() => Ok(AsText("infinity".into())),
            Type::TIMESTAMP | Type::TIMESTAMPTZ if fixed(8)? == i64::MIN.to_be_bytes() => {
                Ok(AsText("-infinity".into()))
            }
            // The canonical forms of provflow_lex::values: `2024-02-29`, `2024-02-29T01:02:03.5`,
            // and for an instant `...Z`.
            Type::DATE => Ok(AsText(jiff::civil::Date::from_sql(ty, raw)?.to_string())),
            Type::TIMESTAMP => Ok(AsText(jiff::civil::DateTime::from_sql(ty, raw)?.to_string())),
            Type::TIMESTAMPTZ => Ok(AsText(jiff::Timestamp::from_sql(ty, raw)?.to_string())),
            Type::NUMERIC => Ok(AsText(format_numeric(raw).ok_or("malformed numeric")?)),
            Type::JSONB => Ok(AsText(String::from_utf8(raw.get(1..).unwrap_or_default().to_vec())?)),
            _ => Ok(AsText(String::from_utf8(raw.to_vec())?)),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
                | Type::JSON
                | Type::JSONB
                | Type::XML
                | Type::DATE
                | Type::TIMESTAMP
                | Type::TIMESTAMPTZ
                | Type::NUMERIC
        ) || ty.name() == "citext"
    }
}

fn format_numeric(raw: &[u8]) -> Option<String> {
    let word = |k: usize| raw.get(k..k + 2).and_then(|b| b.try_into().ok()).map(i16::from_be_bytes);
    let (ndigits, weight, sign, dscale) = (word(0)?, word(2)?, word(4)? as u16, word(6)?);
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i16> = (0..usize::try_from(ndigits).ok()?).map(|k| word(8 + 2 * k)).collect::<Option<_>>()?;
    // Digit k (base 10000) has weight `weight - k`.
    let digit = |w: i32| -> i16 {
        usize::try_from(i32::from(weight) - w).ok().and_then(|k| digits.get(k).copied()).unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for w in (0..=i32::from(weight)).rev() {
            if w == i32::from(weight) {
                out.push_str(&digit(w).to_string());
            } else {
                out.push_str(&format!("{:04}", digit(w)));
            }
        }
    }
    let scale = usize::try_from(dscale).unwrap_or(0);
    if scale > 0 {
        let mut fraction = String::new();
        let mut w = -1;
        while fraction.len() < scale {
            fraction.push_str(&format!("{:04}", digit(w)));
            w -= 1;
        }
        fraction.truncate(scale);
        out.push('.');
        out.push_str(&fraction);
    }
    Some(out)
}

/// Converts a value read from a database to the declared type of an output or column.
pub(crate) fn coerce(value: Value, ty: ValueType, name: &str) -> Result<Value, TargetError> {
    let mismatch = |v: &Value| {
        TargetError::refused(format!("`{name}` should be a {} but the target returned `{}`", ty.as_str(), v.display()))
    };
    Ok(match (ty, value) {
        (_, Value::Null) => Value::Null,
        (ValueType::String | ValueType::Date | ValueType::Timestamp, Value::Text(s)) => Value::Text(s),
        (
            ValueType::String | ValueType::Date | ValueType::Timestamp,
            v @ (Value::Int(_) | Value::Double(_) | Value::Bool(_)),
        ) => Value::Text(v.display()),
        (ValueType::GuardedString, Value::Text(s)) => Value::Secret(crate::value::Secret::new(s)),
        (ValueType::Long | ValueType::Integer, Value::Int(i)) => Value::Int(i),
        (ValueType::Long | ValueType::Integer, Value::Text(s)) => match s.trim().parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => return Err(mismatch(&Value::Text(s))),
        },
        (ValueType::Double, Value::Double(d)) => Value::Double(d),
        (ValueType::Double, Value::Int(i)) => Value::Double(i as f64),
        (ValueType::Double, Value::Text(s)) => match s.trim().parse::<f64>() {
            Ok(d) => Value::Double(d),
            Err(_) => return Err(mismatch(&Value::Text(s))),
        },
        (ValueType::Boolean, Value::Bool(b)) => Value::Bool(b),
        (ValueType::Boolean, Value::Int(i)) => Value::Bool(i != 0),
        (ValueType::Boolean, Value::Text(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "1" | "yes" | "y" | "on" => Value::Bool(true),
            "f" | "false" | "0" | "no" | "n" | "off" => Value::Bool(false),
            _ => return Err(mismatch(&Value::Text(s))),
        },
        (_, v) => return Err(mismatch(&v)),
    })
}

/// The OUT/INOUT values of a CALL's result row, by the query's output names: a column of that
/// name, else by position among the call's OUT/INOUT arguments (PostgreSQL names the columns
/// after the procedure's parameters, which may differ from the query's names).
fn outputs(
    query: &ir::Query,
    call: &ir::Call,
    row: Option<&postgres::Row>,
) -> Result<BTreeMap<String, Value>, TargetError> {
    let mut out = BTreeMap::new();
    let wanted: Vec<&ir::QueryParam> =
        call.args.iter().flatten().filter_map(|i| query.params.get(*i)).filter(|p| p.mode != ParamMode::In).collect();
    if wanted.is_empty() {
        return Ok(out);
    }
    let Some(row) = row else {
        return Err(TargetError::refused(format!(
            "the call of `{}` returned no row, so its OUT parameters have no values (PostgreSQL 14 or later is needed)",
            call.procedure
        )));
    };
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    for (position, param) in wanted.iter().enumerate() {
        let index = names.iter().position(|n| *n == param.name).or((names.len() == wanted.len()).then_some(position));
        let Some(index) = index else {
            return Err(TargetError::refused(format!(
                "the call of `{}` returned no column for the output `{}` (columns: {})",
                call.procedure,
                param.name,
                names.join(", ")
            )));
        };
        out.insert(param.name.clone(), coerce(read(row, index)?, param.ty, &param.name)?);
    }
    Ok(out)
}

impl ExecuteStatement for PostgresTarget {
    fn execute_statement(&mut self, sql: &str) -> Result<(), TargetError> {
        self.ensure_connected()?;
        match self.client.batch_execute(sql) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.error(e, &[])),
        }
    }
}

impl Target for PostgresTarget {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn call(&mut self, query: &ir::Query, values: &[Value]) -> Result<CallOutcome, TargetError> {
        self.ensure_connected()?;
        self.run(query, values)
    }

    /// Runs the script statement by statement; an error names the statement's line.
    fn install(&mut self, sql: &str) -> Result<(), TargetError> {
        // The script may redefine the procedures the prepared statements call.
        self.prepared.clear();
        install::install_lines(self, sql, Dialect::Postgres)
    }

    fn query_scalar(&mut self, sql: &str) -> Result<Option<Value>, TargetError> {
        self.ensure_connected()?;
        let rows = match self.client.query(sql, &[]) {
            Ok(r) => r,
            Err(e) => return Err(self.error(e, &[])),
        };
        match rows.first() {
            Some(row) if !row.is_empty() => read(row, 0).map(Some),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_dates_timestamps_and_numerics_format_as_text() {
        let text = |ty: Type, raw: &[u8]| AsText::from_sql(&ty, raw).map(|t| t.0).ok();
        assert_eq!(text(Type::DATE, &0i32.to_be_bytes()).as_deref(), Some("2000-01-01"));
        assert_eq!(text(Type::DATE, &(-1i32).to_be_bytes()).as_deref(), Some("1999-12-31"));
        assert_eq!(text(Type::DATE, &8825i32.to_be_bytes()).as_deref(), Some("2024-02-29"));
        assert_eq!(text(Type::DATE, &i32::MAX.to_be_bytes()).as_deref(), Some("infinity"));
        let micros = 86_400_000_000i64 + 3_723_000_001;
        assert_eq!(text(Type::TIMESTAMP, &micros.to_be_bytes()).as_deref(), Some("2000-01-02T01:02:03.000001"));
        assert_eq!(text(Type::TIMESTAMPTZ, &micros.to_be_bytes()).as_deref(), Some("2000-01-02T01:02:03.000001Z"));
        assert_eq!(text(Type::TIMESTAMPTZ, &i64::MIN.to_be_bytes()).as_deref(), Some("-infinity"));
        assert_eq!(text(Type::DATE, &[0, 1]), None, "a short value is an error, not a panic");
        // 12345.678 : ndigits 3, weight 1, sign +, dscale 3, digits [1, 2345, 6780]
        let raw: Vec<u8> = [3i16, 1, 0, 3, 1, 2345, 6780].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(format_numeric(&raw).as_deref(), Some("12345.678"));
        // -0.05 : ndigits 1, weight -1, sign -, dscale 2, digits [500]
        let raw: Vec<u8> = [1i16, -1, 0x4000, 2, 500].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(format_numeric(&raw).as_deref(), Some("-0.05"));
    }

    #[test]
    fn outputs_are_coerced_to_their_declared_types() {
        let cases = [
            (Value::Text("t".into()), ValueType::Boolean, Some(Value::Bool(true))),
            (Value::Int(0), ValueType::Boolean, Some(Value::Bool(false))),
            (Value::Text("42".into()), ValueType::Long, Some(Value::Int(42))),
            (Value::Text("x".into()), ValueType::Long, None),
            (Value::Int(7), ValueType::String, Some(Value::Text("7".into()))),
            (Value::Null, ValueType::Integer, Some(Value::Null)),
        ];
        for (v, ty, want) in cases {
            assert_eq!(coerce(v.clone(), ty, "o").ok(), want, "{v:?} {ty:?}");
        }
    }
}
