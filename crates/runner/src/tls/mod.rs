//! TLS for the PostgreSQL and MariaDB connections (targets and the PostgreSQL state store):
//! libpq's `sslmode` and `sslrootcert` read from the connection string, a rustls client
//! configuration for each mode, and messages that say why a handshake was refused.
//!
//! | `sslmode` | TLS | certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `prefer` (default) | when the server offers it, else plain | no |
//! | `require` | always | no; with `sslrootcert` as `verify-ca` |
//! | `verify-ca` | always | chain up to the CA in `sslrootcert` |
//! | `verify-full` | always | chain, and the host name against the certificate |
//!
//! `verify-ca` and `verify-full` need a root certificate: `sslrootcert=PATH`, or for
//! PostgreSQL libpq's default `~/.postgresql/root.crt`; without one the connection is refused
//! before it is opened. Neither mode trusts the system's roots (as in libpq, where only
//! `sslrootcert=system` would). The `postgres` driver's own parser knows only `disable`,
//! `prefer` and `require`, and the `mysql` driver's none of these names, so [`split`] takes
//! both parameters out of the string and the drivers get what is left.

use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::credentials;

/// libpq's `sslmode` values that provflow implements (`allow` is not one of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// TLS or no connection at all.
    pub fn requires_tls(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TLS parameters of one connection string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsParams {
    pub mode: SslMode,
    /// `sslrootcert` as written.
    pub root_cert: Option<PathBuf>,
}

/// How the server's certificate is checked, after the defaults are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// No TLS.
    None,
    /// TLS without a certificate check (`prefer`, `require` without `sslrootcert`).
    Unverified,
    /// The chain up to the roots in this file (`verify-ca`, `require` with `sslrootcert`).
    Chain(PathBuf),
    /// The chain and the host name (`verify-full`).
    Full(PathBuf),
}

/// Which driver reads the parameters: PostgreSQL has libpq's default root file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Postgres,
    Mariadb,
}

impl TlsParams {
    /// The certificate check of these parameters; `Err` when a verifying mode has no root
    /// certificate to check against.
    pub fn check(&self, driver: Driver) -> Result<Check, String> {
        let root = || -> Result<PathBuf, String> {
            if let Some(p) = &self.root_cert {
                return Ok(p.clone());
            }
            let default = (driver == Driver::Postgres)
                .then(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".postgresql/root.crt")))
                .flatten();
            match default {
                Some(p) if p.is_file() => Ok(p),
                Some(p) => Err(format!(
                    "sslmode={} needs the CA certificate that signed the server's certificate: pass \
                     sslrootcert=PATH (no {} either)",
                    self.mode,
                    p.display()
                )),
                None => Err(format!(
                    "sslmode={} needs the CA certificate that signed the server's certificate: pass \
                     sslrootcert=PATH",
                    self.mode
                )),
            }
        };
        Ok(match self.mode {
            SslMode::Disable => Check::None,
            SslMode::Prefer => Check::Unverified,
            SslMode::Require => match &self.root_cert {
                Some(p) => Check::Chain(p.clone()),
                None => Check::Unverified,
            },
            SslMode::VerifyCa => Check::Chain(root()?),
            SslMode::VerifyFull => Check::Full(root()?),
        })
    }
}

/// `conn` without its `sslmode` and `sslrootcert` parameters, and their values (the last one
/// of each wins, as in libpq). Works on URLs (`postgres://`, `mysql://`: the query string) and
/// on PostgreSQL key=value DSNs. A string that is neither comes back as it is.
pub fn split(conn: &str) -> Result<(String, TlsParams), String> {
    let mut params = TlsParams::default();
    let mut take = |key: &str, value: String| -> Result<bool, String> {
        match key {
            "sslmode" => {
                params.mode = SslMode::parse(&value).ok_or_else(|| {
                    format!(
                        "sslmode=`{}` is not one of disable, prefer, require, verify-ca, verify-full",
                        credentials::scrub_known(&value)
                    )
                })?;
                Ok(true)
            }
            "sslrootcert" => {
                params.root_cert = Some(PathBuf::from(value));
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if conn.contains("://") {
        let Some((base, query)) = conn.split_once('?') else { return Ok((conn.to_string(), params)) };
        let mut kept: Vec<&str> = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(&credentials::percent_decode(key), credentials::percent_decode(value))? {
                kept.push(pair);
            }
        }
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else if conn.contains('=') {
        let mut out = String::with_capacity(conn.len());
        for (key, value, text) in dsn_pairs(conn) {
            match key {
                Some(k) if take(k, value)? => {}
                _ => out.push_str(text),
            }
        }
        out
    } else {
        conn.to_string()
    };
    Ok((rest, params))
}

/// A key=value DSN as (key, unescaped value, the pair's text with its leading whitespace)
/// pieces that concatenate back to `conn`. Text that does not parse is one piece without a
/// key, left for the driver to refuse.
fn dsn_pairs(conn: &str) -> Vec<(Option<&str>, String, &str)> {
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < conn.len() {
        match dsn_pair(conn, at) {
            Some((key, value, end)) if end > at => {
                pieces.push((Some(key), value, conn.get(at..end).unwrap_or("")));
                at = end;
            }
            _ => {
                pieces.push((None, String::new(), conn.get(at..).unwrap_or("")));
                break;
            }
        }
    }
    pieces
}

/// One `key = value` from `start` (leading whitespace included): key, unescaped value and
/// the end offset; `None` when there is no well-formed pair.
fn dsn_pair(conn: &str, start: usize) -> Option<(&str, String, usize)> {
    let rest = conn.get(start..)?;
    let mut chars = rest.char_indices().peekable();
    let skip_ws = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
    };
    skip_ws(&mut chars);
    let key_start = chars.peek().map(|(i, _)| *i)?;
    while chars.peek().is_some_and(|(_, c)| !c.is_whitespace() && *c != '=') {
        chars.next();
    }
    let key_end = chars.peek().map_or(rest.len(), |(i, _)| *i);
    let key = rest.get(key_start..key_end).filter(|k| !k.is_empty())?;
    skip_ws(&mut chars);
    if chars.next().map(|(_, c)| c) != Some('=') {
        return None;
    }
    skip_ws(&mut chars);
    let mut value = String::new();
    let quoted = chars.peek().is_some_and(|(_, c)| *c == '\'');
    if quoted {
        chars.next();
    }
    loop {
        let Some(&(i, c)) = chars.peek() else {
            if quoted {
                return None;
            }
            return Some((key, value, start + rest.len()));
        };
        if quoted && c == '\'' {
            return Some((key, value, start + i + 1));
        }
        if !quoted && c.is_whitespace() {
            return Some((key, value, start + i));
        }
        chars.next();
        if c == '\\' {
            if let Some((_, escaped)) = chars.next() {
                value.push(escaped);
            }
        } else {
            value.push(c);
        }
    }
}

/// The one crypto provider: ring (see ARCHITECTURE.md, TLS).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of `path` (PEM, one or more), as roots.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read sslrootcert={shown}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| format!("sslrootcert={shown} is not a PEM certificate file: {e}"))?;
        roots.add(cert).map_err(|e| format!("sslrootcert={shown}: a certificate in it is not usable as a CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert={shown} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"));
    }
    Ok(roots)
}

/// The rustls client configuration of a check (`Check::None` has none).
pub fn client_config(check: &Check) -> Result<Option<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    let config = match check {
        Check::None => return Ok(None),
        Check::Unverified => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified { provider }))
            .with_no_client_auth(),
        Check::Chain(path) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(load_roots(path)?), provider)
                .build()
                .map_err(|e| format!("sslrootcert={}: {e}", path.display()))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly { webpki })).with_no_client_auth()
        }
        Check::Full(path) => builder.with_root_certificates(load_roots(path)?).with_no_client_auth(),
    };
    Ok(Some(config))
}

/// `prefer` and `require` without `sslrootcert`: the server's certificate is not checked, as
/// libpq does not check it in these modes. Only the certificate: the handshake signatures are
/// still verified with the certificate's key, so the connection is encrypted to whoever holds
/// that key. Built by [`client_config`] for `Check::Unverified` and nowhere else.
#[derive(Debug)]
struct Unverified {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full WebPKI check of the chain against `sslrootcert`, where a certificate
/// for another name is accepted. Every other failure (unknown issuer, expired, bad signature,
/// wrong usage) stands.
#[derive(Debug)]
struct ChainOnly {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The rustls error in `error` or its sources (also inside an `io::Error`, whose `source()`
/// skips the error it wraps).
fn rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&'a (dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        current = e.source();
    }
    None
}

/// What to tell the person when TLS refused the connection: `None` when `error` is no TLS
/// failure. `host` is the host name the certificate was checked against.
pub fn explain(error: &(dyn StdError + 'static), params: &TlsParams, host: &str) -> Option<String> {
    let root = params
        .root_cert
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.postgresql/root.crt".to_string());
    let e = rustls_error(error)?;
    Some(match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => format!(
            "the server's certificate is not signed by the CA in sslrootcert={root} (sslmode={}): point sslrootcert \
             at the CA certificate that signed the server's certificate",
            params.mode
        ),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { presented, .. }) => {
            let presented: Vec<&str> = presented.iter().map(|n| bare_name(n)).collect();
            let names: Vec<String> = presented.iter().map(|n| format!("`{n}`")).collect();
            let names = if names.is_empty() { "no host name".to_string() } else { names.join(", ") };
            let first = presented.first().copied().unwrap_or("NAME");
            format!(
                "the certificate is for {names}, not `{host}`: connect with host={first} or use sslmode=verify-ca \
                 (which checks the CA but not the host name)"
            )
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => format!(
            "the certificate is not for `{host}`: connect with the host name the certificate names, or use \
             sslmode=verify-ca (which checks the CA but not the host name)"
        ),
        rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "the server's certificate has expired: renew it on the server".to_string()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "the server's certificate is not valid yet: check the clocks of both machines".to_string(),
        other => format!("the TLS handshake failed (sslmode={}): {other}", params.mode),
    })
}

/// A name as rustls presents it (`DnsName("localhost")`) without its wrapping.
fn bare_name(presented: &str) -> &str {
    match (presented.find('"'), presented.rfind('"')) {
        (Some(a), Some(b)) if b > a => presented.get(a + 1..b).unwrap_or(presented),
        _ => presented,
    }
}

/// The message for a server that answered a TLS request with "no".
pub fn not_offered(mode: SslMode) -> String {
    format!(
        "the server does not offer TLS and sslmode={mode}: enable TLS on the server, or connect with \
         sslmode=prefer (TLS when offered) or sslmode=disable"
    )
}

#[cfg(test)]
mod tests;
