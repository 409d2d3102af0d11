//! The provflow runner: the state store, SQL targets and the task engine (SPEC §4).
#![forbid(unsafe_code)]

pub mod clock;
pub mod credentials;
pub mod engine;
pub mod html_text;
pub mod notify;
mod pg_conn;
pub mod recon;
pub mod scenario;
pub mod secret;
pub mod sqlite_conn;
pub mod store;
pub mod target;
pub mod tls;
pub mod value;
pub mod worker;
