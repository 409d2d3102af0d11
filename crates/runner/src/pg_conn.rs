//! What the PostgreSQL state store and the PostgreSQL target share about connecting: how an
//! endpoint is named in messages and why a connection failed. Neither imports the other.

use postgres::Config;

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
