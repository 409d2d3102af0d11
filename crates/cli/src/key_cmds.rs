//! `provflow key generate` and `provflow key rotate`: the key that seals secrets at rest.

use provflow_runner::clock::{Clock, CommandClock};
use provflow_runner::secret::SecretKey;
use provflow_runner::store;
use serde_json::json;

use crate::args::{Format, Global, KeyCommand};
use crate::exit;
use crate::out::{self, errln, outln};

pub fn key(global: &Global, command: KeyCommand) -> u8 {
    match command {
        KeyCommand::Generate { out } => {
            let written = SecretKey::generate().and_then(|k| k.write_new_file(&out));
            match written {
                Ok(()) => {
                    if global.format == Format::Json {
                        out::json(&json!({ "written": out.display().to_string() }));
                    } else {
                        outln!("wrote a new key to {} (readable by you only); keep a copy somewhere safe: without it the sealed secrets cannot be read", out.display());
                    }
                    exit::OK
                }
                Err(e) => {
                    errln!("error: {e}");
                    exit::USAGE
                }
            }
        }
        KeyCommand::Rotate { new_key } => rotate(global, &new_key),
    }
}

fn rotate(global: &Global, new_key: &std::path::Path) -> u8 {
    let fail = |e: &dyn std::fmt::Display| {
        errln!("error: {e}");
        exit::USAGE
    };
    if let Err(why) = CommandClock::check() {
        return fail(&why);
    }
    let new = match SecretKey::read_file(new_key) {
        Ok(k) => k,
        Err(e) => return fail(&e),
    };
    let current = match SecretKey::discover(&crate::runner_cmds::key_file()) {
        Ok(Some(k)) => k,
        Ok(None) => {
            return fail(&"no current key: set PROVFLOW_SECRET_KEY or .provflow/secret.key to the key the store is sealed under (a store without one keeps no secrets, and needs no rotation)")
        }
        Err(e) => return fail(&e),
    };
    if current.same_as(&new) {
        return fail(&format!(
            "`{}` holds the key in use already; generate a new one with `provflow key generate --out FILE`",
            new_key.display()
        ));
    }
    let mut st = match store::open(&global.state, Some(current), Box::new(|| CommandClock.now())) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let live = crate::worker_cmds::live_workers(&*st);
    if live > 0 {
        return fail(&format!("{live} live worker(s) hold the current key (see `provflow worker list`): stop them first, rotate, then start them with the new key"));
    }
    let done = match st.key_rotate(&new) {
        Ok(d) => d,
        Err(e) => {
            errln!("error: {e}");
            errln!("nothing changed: the store is still sealed under the current key");
            return exit::FAILED;
        }
    };
    if global.format == Format::Json {
        out::json(
            &json!({ "accounts": done.accounts, "secrets": done.secrets, "new_key": new_key.display().to_string() }),
        );
    } else {
        outln!(
            "re-sealed {} secret(s) of {} account(s) under the key in {}",
            done.secrets,
            done.accounts,
            new_key.display()
        );
        errln!(
            "now use the new key everywhere: `mv {} .provflow/secret.key` (or set PROVFLOW_SECRET_KEY to it) here and on every worker; the old key no longer opens this store",
            new_key.display()
        );
    }
    exit::OK
}
