//! Which database each of a bundle's targets is: `--target NAME=URL`, else the Target's
//! `url_env`, else (SQLite) the embedded default file. Opened on first use and kept.

use provflow_ir::{self as ir, Bundle};
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::target::{self, SqliteTarget, Target, TargetError};

/// Opens targets by name: `--target NAME=URL`, else the Target's `url_env`, else (sqlite) the
/// embedded default file.
pub trait TargetProvider {
    fn open(&mut self, bundle: &Bundle, target: usize) -> Result<&mut dyn Target, TargetError>;
    /// The file of a sqlite target, to tell whether it is the state store itself.
    fn sqlite_file(&self, bundle: &Bundle, target: usize) -> Option<PathBuf>;
}

pub struct Targets {
    overrides: BTreeMap<String, String>,
    base: PathBuf,
    open: BTreeMap<(String, usize), Box<dyn Target>>,
}

impl Targets {
    pub fn new(overrides: BTreeMap<String, String>, base: PathBuf) -> Self {
        for url in overrides.values() {
            crate::credentials::remember(url);
        }
        Targets { overrides, base, open: BTreeMap::new() }
    }

    /// The connection string of `t` (its secrets remembered for `credentials::scrub_known`).
    fn url(&self, t: &ir::Target) -> Option<String> {
        let url = self
            .overrides
            .get(&t.name)
            .cloned()
            .or_else(|| t.url_env.as_ref().and_then(|v| std::env::var(v).ok()).filter(|u| !u.is_empty()));
        if let Some(u) = &url {
            crate::credentials::remember(u);
        }
        url
    }
}

impl TargetProvider for Targets {
    fn open(&mut self, bundle: &Bundle, index: usize) -> Result<&mut dyn Target, TargetError> {
        let t = bundle.targets.get(index).ok_or_else(|| TargetError::refused("target index out of range"))?;
        let key = (bundle.hash.clone(), index);
        if !self.open.contains_key(&key) {
            let opened: Box<dyn Target> = match t.dialect {
                ir::Dialect::Sqlite => {
                    let url = self.url(t);
                    if let Some(u) = url.as_deref() {
                        target::check_sqlite_url(&t.name, u)?;
                    }
                    let path = target::sqlite_path(url.as_deref(), &t.name, &self.base);
                    let procedures =
                        bundle.query_sets.get(t.query_set).map(|q| q.procedures.clone()).unwrap_or_default();
                    Box::new(SqliteTarget::open(&path, procedures)?)
                }
                dialect => {
                    let url = self.url(t).ok_or_else(|| {
                        let var = t.url_env.as_deref().map_or(String::new(), |v| format!("set ${v} or "));
                        TargetError::refused(format!(
                            "{} target `{}` needs a URL: {var}pass --target {}=URL",
                            dialect.as_str(),
                            t.name,
                            t.name
                        ))
                    })?;
                    let timeouts = crate::target::postgres::Timeouts::default();
                    if dialect == ir::Dialect::Postgres {
                        Box::new(crate::target::postgres::PostgresTarget::connect(&url, &timeouts)?)
                    } else {
                        Box::new(crate::target::mariadb::MariadbTarget::connect(&url, &timeouts)?)
                    }
                }
            };
            self.open.insert(key.clone(), opened);
        }
        match self.open.get_mut(&key) {
            Some(t) => Ok(t.as_mut()),
            None => Err(TargetError::refused("target could not be opened")),
        }
    }

    fn sqlite_file(&self, bundle: &Bundle, index: usize) -> Option<PathBuf> {
        let t = bundle.targets.get(index)?;
        (t.dialect == ir::Dialect::Sqlite).then(|| target::sqlite_path(self.url(t).as_deref(), &t.name, &self.base))
    }
}
