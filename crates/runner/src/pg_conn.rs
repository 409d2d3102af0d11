//! What the PostgreSQL state store and the PostgreSQL target share about connecting: how an
//! endpoint is named in messages and why a connection failed. Neither imports the other.

use postgres::{Client, Config, NoTls};
use std::str::FromStr;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::{self, Check, Driver, SslMode, TlsParams};

/// `host:port/database as user`, for messages: never the password.
pub(crate) fn endpoint(config: &Config) -> String {
    use postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
    let user = config.get_user().map(|u| format!(" as `{u}`")).unwrap_or_default();
    format!("{host}:{port}/{db}{user}")
}

/// Why a connection failed: the server's message, or the driver's error with its source
/// chain (the driver says only "error connecting to server"; the reason, refused, timed out
/// or unknown host, is in its sources). Not scrubbed: the caller removes the secrets.
pub(crate) fn failure(e: &postgres::Error) -> String {
    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    })
}

/// A connection string read for connecting: the driver's configuration, with the TLS mode
/// that `sslmode` asks for, and the TLS connector.
pub(crate) struct Prepared {
    pub config: Config,
    pub tls: TlsParams,
    connector: Option<MakeRustlsConnect>,
}

/// Reads `url` (a URL or key=value DSN, with libpq's `sslmode` and `sslrootcert`) and builds
/// its TLS connector. `Err` is not scrubbed: the caller removes the secrets.
pub(crate) fn prepare(url: &str) -> Result<Prepared, String> {
    let (rest, tls) = tls::split(url)?;
    let mut config = Config::from_str(&rest).map_err(|e| format!("not a PostgreSQL connection URL: {e}"))?;
    // libpq ignores sslmode on Unix-domain sockets, where the server never offers TLS.
    #[cfg(unix)]
    let local = !config.get_hosts().is_empty()
        && config.get_hosts().iter().all(|h| matches!(h, postgres::config::Host::Unix(_)));
    #[cfg(not(unix))]
    let local = false;
    let mode = if local { SslMode::Disable } else { tls.mode };
    config.ssl_mode(match mode {
        SslMode::Disable => postgres::config::SslMode::Disable,
        SslMode::Prefer => postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => postgres::config::SslMode::Require,
    });
    let check = if local { Check::None } else { tls.check(Driver::Postgres)? };
    let connector = tls::client_config(&check)?.map(MakeRustlsConnect::new);
    Ok(Prepared { config, tls, connector })
}

impl Prepared {
    /// Connects; `Err` says why (TLS refusals in words), not scrubbed.
    pub(crate) fn connect(&self) -> Result<Client, (Option<String>, String)> {
        let result = match &self.connector {
            Some(c) => self.config.connect(c.clone()),
            None => self.config.connect(NoTls),
        };
        result.map_err(|e| {
            let code = e.code().map(|c| c.code().to_string());
            let host = match self.config.get_hosts().first() {
                Some(postgres::config::Host::Tcp(h)) => h.clone(),
                _ => "localhost".to_string(),
            };
            if let Some(why) = tls::explain(&e, &self.tls, &host) {
                return (code, why);
            }
            let text = failure(&e);
            if text.contains("server does not support TLS") {
                return (code, tls::not_offered(self.tls.mode));
            }
            (code, text)
        })
    }
}
