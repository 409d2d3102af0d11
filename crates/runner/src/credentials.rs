//! Connection strings and the secrets in them: the one place that knows where a password can
//! hide in a URL or a DSN, and the one way to remove it from a message.
//!
//! A connection string reaches provflow as `--state`, `--target NAME=URL` or a Target's
//! `url_env`. Its password may be in the URL's user info (`postgres://u:pw@h/db`, also
//! percent-encoded), in a parameter (`?password=pw`, MariaDB's `?pass=`-style options, an
//! `sslpassword`), in a key=value DSN (`host=h password='p w'`) or inside PostgreSQL's
//! `options` value. [`Credentials::of`] asks the drivers' own parsers (`postgres::Config`,
//! `mysql::Opts`) what they would send, and adds what a syntactic reading finds, so that a
//! string the drivers refuse (a malformed URL, an unknown option) still gives its password
//! up. Every secret is kept as written, percent-decoded and percent-encoded.
//!
//! - [`Credentials::scrub`] removes every secret of one connection string from a message;
//!   the targets keep the credentials of their URL and scrub every error with them.
//! - [`redact`] is a connection string as shown in messages: the password and every
//!   password-like parameter masked.
//! - [`remember`] records the secrets of every connection string the runner resolves, and
//!   [`scrub_known`] removes all of them from any text: the command line passes everything
//!   it prints through it, so no message of any command can show a password, whichever
//!   layer wrote it.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use crate::value::MASK;

/// The secrets of one connection string, longest first (so that a secret containing another
/// is masked whole).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    secrets: Vec<String>,
}

impl Drop for Credentials {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secrets);
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({} secret forms)", self.secrets.len())
    }
}

impl Credentials {
    /// Every secret of `conn`: what the PostgreSQL and MariaDB drivers parse as its password
    /// (and `password=` inside PostgreSQL `options`), plus the user-info password and the
    /// values of password-like parameters found by reading the text, each as written,
    /// percent-decoded and percent-encoded.
    pub fn of(conn: &str) -> Self {
        let mut found: Vec<String> = Vec::new();
        // The drivers read the string without libpq's TLS parameters (see `tls::split`).
        let for_drivers = crate::tls::split(conn).map_or_else(|_| conn.to_string(), |(rest, _)| rest);
        if let Ok(config) = postgres::Config::from_str(&for_drivers) {
            if let Some(p) = config.get_password() {
                found.push(String::from_utf8_lossy(p).into_owned());
            }
            if let Some(options) = config.get_options() {
                found.extend(parameter_values(options, false).into_iter().flat_map(|v| v.forms()));
            }
        }
        if let Ok(opts) = mysql::Opts::from_url(&for_drivers) {
            if let Some(p) = opts.get_pass() {
                found.push(p.to_string());
            }
        }
        for range in userinfo_passwords(conn) {
            if let Some(p) = conn.get(range.0..range.1) {
                found.push(p.to_string());
            }
        }
        let url = is_url(conn);
        found.extend(parameter_values(conn, url).into_iter().flat_map(|v| v.forms()));
        if url {
            // A parameter's value is percent-encoded in a URL: `options=-c%20password%3Dx`.
            if let Some((_, query)) = conn.split_once('?') {
                for pair in query.split('&') {
                    let value = pair.split_once('=').map_or("", |(_, v)| v);
                    let decoded = form_decode(value);
                    found.extend(parameter_values(&decoded, false).into_iter().flat_map(|v| v.forms()));
                }
            }
        }
        let mut secrets: Vec<String> = Vec::new();
        for s in found.into_iter().filter(|s| !s.is_empty()) {
            for form in [percent_decode(&s), form_decode(&s), percent_encode(&s, false), percent_encode(&s, true), s] {
                if !form.is_empty() && !secrets.contains(&form) {
                    secrets.push(form);
                }
            }
        }
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Credentials { secrets }
    }

    /// No secret in the connection string.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `message` with every occurrence of every secret replaced by the mask.
    pub fn scrub(&self, message: &str) -> String {
        scrub_with(&self.secrets, message).into_owned()
    }
}

fn scrub_with<'a>(secrets: &[String], message: &'a str) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(message);
    for s in secrets {
        if out.contains(s.as_str()) {
            out = Cow::Owned(out.replace(s.as_str(), MASK));
        }
    }
    out
}

/// A connection string as shown in messages: the user-info password and the value of every
/// password-like parameter masked, and then every secret the drivers would find removed too.
/// A string that is no URL at all keeps its text, less any `password=` value in it.
pub fn redact(conn: &str) -> String {
    let mut ranges: Vec<(usize, usize)> = userinfo_passwords(conn);
    ranges.extend(parameter_values(conn, is_url(conn)).into_iter().map(|v| v.range));
    ranges.sort_unstable();
    let mut out = String::with_capacity(conn.len());
    let mut at = 0;
    for (start, end) in ranges {
        if end <= at {
            continue;
        }
        let start = start.max(at);
        out.push_str(conn.get(at..start).unwrap_or(""));
        out.push_str(MASK);
        at = end;
    }
    out.push_str(conn.get(at..).unwrap_or(""));
    Credentials::of(conn).scrub(&out)
}

/// A PostgreSQL key=value DSN (`host=h user=u password=...`) as the driver reads it: a
/// string that is not a URL, has a `=`, and parses.
pub fn is_key_value_dsn(conn: &str) -> bool {
    !conn.contains("://")
        && conn.contains('=')
        // An unknown sslmode still makes a DSN, refused with the choices when it is opened.
        && crate::tls::split(conn).map_or(true, |(rest, _)| postgres::Config::from_str(&rest).is_ok())
}

/// The secrets of every connection string this process has resolved (see [`remember`]).
static KNOWN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records the secrets of `conn`, so that [`scrub_known`] removes them from any text later.
/// The runner calls it for every connection string it resolves (`--state`, `--target`, a
/// Target's `url_env`).
pub fn remember(conn: &str) {
    let credentials = Credentials::of(conn);
    if credentials.is_empty() {
        return;
    }
    let mut known = KNOWN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for s in &credentials.secrets {
        if !known.contains(s) {
            known.push(s.clone());
        }
    }
    known.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
}

/// `text` without any secret of a connection string this process has resolved.
pub fn scrub_known(text: &str) -> Cow<'_, str> {
    let known = KNOWN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if known.is_empty() {
        return Cow::Borrowed(text);
    }
    match scrub_with(&known, text) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(s) => Cow::Owned(s),
    }
}

/// `scheme://...`: the query string is `&`-separated and percent-encoded.
fn is_url(conn: &str) -> bool {
    conn.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// The byte ranges of the user-info password of a URL (`scheme://user:PASSWORD@host`).
/// Read the strict way (the authority ends at the first `/`, `?` or `#`) and, when that finds
/// no `@`, the lenient way (up to the last `@` anywhere): a password with an unencoded `/` or
/// `?` makes the URL malformed, and must still be found.
fn userinfo_passwords(conn: &str) -> Vec<(usize, usize)> {
    let Some(scheme_end) = conn.find("://").map(|i| i + 3) else { return Vec::new() };
    let rest = conn.get(scheme_end..).unwrap_or("");
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..authority_len).unwrap_or("");
    let userinfo_end = match authority.rfind('@') {
        Some(at) => Some(at),
        None => rest.rfind('@'),
    };
    let Some(userinfo_end) = userinfo_end else { return Vec::new() };
    let userinfo = rest.get(..userinfo_end).unwrap_or("");
    let mut out = Vec::new();
    if let Some(colon) = userinfo.find(':') {
        let (start, end) = (scheme_end + colon + 1, scheme_end + userinfo_end);
        if start < end {
            out.push((start, end));
        }
    }
    // libpq (and the `postgres` driver) end the user info at the *first* `@`.
    if let Some(first_at) = rest.find('@').filter(|&a| a < userinfo_end) {
        if let Some(colon) = rest.get(..first_at).and_then(|u| u.find(':')) {
            let (start, end) = (scheme_end + colon + 1, scheme_end + first_at);
            if start < end {
                out.push((start, end));
            }
        }
    }
    out
}

/// A parameter's name that holds a secret: `password`, `sslpassword`, `pass`, `pkcs12_pass`,
/// `pwd`, `passwd`, anything with `password` or `secret` in it. (`passfile` is a path.)
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.ends_with("pass") || k == "pwd" || k == "passwd"
}

/// The value of one password-like parameter: where it is in the text, as written (quotes
/// excluded) and with libpq's backslash escapes undone.
struct ParamValue {
    range: (usize, usize),
    raw: String,
    unescaped: String,
}

impl ParamValue {
    fn forms(self) -> [String; 2] {
        [self.raw, self.unescaped]
    }
}

/// Every `KEY=VALUE` (spaces around `=` allowed) whose key is password-like, wherever it
/// stands: a DSN, a URL's query, PostgreSQL `options`. A value is `'quoted'` (backslash
/// escapes) or runs to the next space (in a URL also to the next `&` or `#`).
fn parameter_values(text: &str, url: bool) -> Vec<ParamValue> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let rest = text.get(i..).unwrap_or("");
        let Some(c) = rest.chars().next() else { break };
        if !is_word(c) {
            i += c.len_utf8();
            continue;
        }
        let word_len = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        let key = rest.get(..word_len).unwrap_or("");
        i += word_len;
        let after = text.get(i..).unwrap_or("");
        let trimmed = after.trim_start();
        let Some(value_part) = trimmed.strip_prefix('=') else { continue };
        if !is_secret_key(key) {
            continue;
        }
        let skipped = value_part.len() - value_part.trim_start().len();
        let value_start = i + (after.len() - trimmed.len()) + 1 + skipped;
        let value_text = text.get(value_start..).unwrap_or("");
        let (range, raw, unescaped) = if let Some(quoted) = value_text.strip_prefix('\'') {
            let (len, unescaped) = quoted_value(quoted);
            let start = value_start + 1;
            ((start, start + len), quoted.get(..len).unwrap_or("").to_string(), unescaped)
        } else {
            let stop = |c: char| c.is_whitespace() || (url && matches!(c, '&' | '#'));
            let len = value_text.find(stop).unwrap_or(value_text.len());
            let raw = value_text.get(..len).unwrap_or("");
            ((value_start, value_start + len), raw.to_string(), provflow_lex::unescape_backslashes(raw))
        };
        if range.1 > range.0 {
            out.push(ParamValue { range, raw, unescaped });
        }
        i = range.1.max(i);
    }
    out
}

/// The length of a quoted value up to its closing quote (or the end of the text when
/// unterminated), and the value with backslash escapes undone.
fn quoted_value(text: &str) -> (usize, String) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\'' => return (at, value),
            '\\' => {
                if let Some((_, next)) = chars.next() {
                    value.push(next);
                }
            }
            other => value.push(other),
        }
    }
    (text.len(), value)
}

/// `%XX` decoded (invalid sequences kept as written; invalid UTF-8 replaced).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex =
            b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (c, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space), as the MariaDB driver reads
/// a URL's query.
fn form_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

/// Every byte but the unreserved ones as `%XX`, upper- or lower-case hex.
fn percent_encode(s: &str, lower: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(conn: &str, message: &str) -> String {
        Credentials::of(conn).scrub(message)
    }

    #[test]
    fn every_form_gives_its_password() {
        let cases = [
            ("postgres://u:Pw-1@h:5432/db", "Pw-1"),
            ("postgresql://u@h/db?password=Pw-2&sslmode=disable", "Pw-2"),
            ("host=h user=u password=Pw-3 dbname=x", "Pw-3"),
            ("host=127.0.0.1 port=1 password='P W\\'4'", "P W'4"),
            ("host=h password = Pw-5", "Pw-5"),
            ("mysql://u:Pw-6@h:3306/db", "Pw-6"),
            ("mysql://u@h/db?password=Pw-7", "Pw-7"),
            ("postgres://u:p%40ss8@h/db", "p@ss8"),
            ("postgres://u@h/db?options=-c%20password%3DPw-9", "Pw-9"),
            ("host=h options='-c password=Pw-10'", "Pw-10"),
            ("postgres://u@h/db?sslpassword=Pw-11", "Pw-11"),
            ("mysql://u@h/db?password=Pw-12&bogus=1", "Pw-12"),
            // Malformed: an unencoded `/` and `?` in the password.
            ("postgres://u:Pw/13?x@h/db", "Pw/13?x"),
            ("postgres://u:Pw-14@h:notaport/db", "Pw-14"),
        ];
        // Failures name the case, never the text: it would show the password.
        for (case, (conn, password)) in cases.into_iter().enumerate() {
            let encoded = percent_encode(password, false);
            let message = format!("failed with {password} (encoded {encoded})");
            let out = masked(conn, &message);
            assert!(!out.contains(password) && !out.contains(&encoded), "case {case}: the password is left");
            assert!(out.starts_with("failed with ********"), "case {case}: the wrong text was masked");
            let shown = redact(conn);
            assert!(!shown.contains(password) && !shown.contains(&encoded), "case {case}: redact shows the password");
            assert!(shown.contains(MASK), "case {case}: redact masks nothing");
        }
    }

    #[test]
    fn the_encoded_form_of_a_decoded_password_is_caught() {
        let out = masked("postgres://u:p%40ss@h/db", "p@ss and p%40ss and p%40SS");
        assert_eq!(out, "******** and ******** and p%40SS");
    }

    #[test]
    fn redacted_urls_keep_what_is_not_secret() {
        assert_eq!(redact("postgres://u:pw@h/x?password=pw"), "postgres://u:********@h/x?password=********");
        assert_eq!(redact("postgres://u@h:5432/x?sslmode=disable"), "postgres://u@h:5432/x?sslmode=disable");
        assert_eq!(redact("host=h user=u password='a b' dbname=x"), "host=h user=u password='********' dbname=x");
        assert_eq!(redact("mysql://root@127.0.0.1:3306/t"), "mysql://root@127.0.0.1:3306/t");
        assert_eq!(redact("sqlite:.provflow/state.db"), "sqlite:.provflow/state.db");
        assert_eq!(redact("passfile=/x/.pgpass host=h"), "passfile=/x/.pgpass host=h");
    }

    #[test]
    fn key_value_dsns_are_told_from_names_and_paths() {
        assert!(is_key_value_dsn("host=h port=1 password='a b'"));
        assert!(is_key_value_dsn("dbname=x"));
        for other in ["dbum-pg=host=h", "postgres://u@h/db", "state.db", "sqlite:a=b.db", "host"] {
            assert!(!is_key_value_dsn(other), "{other}");
        }
    }

    #[test]
    fn strings_without_secrets_give_none() {
        for conn in ["postgres://u@h/db", "sqlite:x.db", "plain/path.db", "", "host=h user=u", "mysql://u@h/db"] {
            assert!(Credentials::of(conn).is_empty(), "{conn}");
        }
    }

    #[test]
    fn remembered_secrets_are_scrubbed_from_any_text() {
        remember("postgres://u:Remembered-pw@h/db");
        assert_eq!(scrub_known("x Remembered-pw y"), "x ******** y");
        assert!(matches!(scrub_known("nothing here"), Cow::Borrowed(_)));
    }
}
