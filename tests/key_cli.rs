//! `provflow key generate` and `provflow key rotate` through the binary, and the modes of the
//! files that hold secrets: the state store, the SQLite targets and the key file are readable
//! by their owner only; a key file others can read is refused. On PostgreSQL too (`--state`
//! from PROVFLOW_TEST_PG_URL, a fresh database; skipped without it unless required).

#[path = "runner_common.rs"]
mod common;

use common::{Database, Project};
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const DBUM: &str = "DBUM Account";

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn rotate_story(p: &Project) {
    // A key generated into the default place, private.
    let out = p.expect(0, &["key", "generate"], &[]);
    assert!(out.stdout.contains(".provflow/secret.key"), "{out}");
    let key_file = p.path().join(".provflow/secret.key");
    #[cfg(unix)]
    assert_eq!((mode(&key_file), mode(&p.path().join(".provflow"))), (0o600, 0o700));
    let first = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(first.trim().len(), 64);
    assert!(!out.stdout.contains(first.trim()) && !out.stderr.contains(first.trim()), "the key is never printed");
    // Never replaced.
    let again = p.pf(&["key", "generate"], &[]);
    assert_eq!(again.code(), Some(2), "{again}");
    assert!(again.stderr.contains("key rotate"), "{again}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), first);

    p.install_dbum();
    p.create_user("JDOE");
    let pw = [("PW", "r0tate-Secret")];
    p.json(0, &["run", p.ir(), "--process", DBUM, "--user", "JDOE", "--secret", "password=env:PW"], &pw);

    // Rotation: to the same key refused; to a new key, every secret re-sealed.
    p.expect(2, &["key", "rotate", "--new-key", ".provflow/secret.key"], &[]);
    p.expect(0, &["key", "generate", "--out", "next.key"], &[]);
    let done = p.json(0, &["key", "rotate", "--new-key", "next.key"], &[]);
    assert_eq!((done["accounts"].as_u64(), done["secrets"].as_u64()), (Some(1), Some(1)), "{done}");
    // The old key is refused with the reason; the new one works and the secret still opens:
    // a password change needs nothing new, the stored password is used by the task.
    let old = p.pf(&["account", "list"], &[]);
    assert_eq!(old.code(), Some(2), "{old}");
    assert!(old.stderr.contains("sealed under another key"), "{old}");
    std::fs::rename(p.path().join("next.key"), &key_file).unwrap();
    p.expect(0, &["account", "list"], &[]);
    p.expect(0, &["user", "disable", "JDOE"], &[]);
    p.expect(0, &["user", "enable", "JDOE"], &[]);
    let a = p.account(DBUM, "JDOE");
    assert_eq!(a["account"]["status"], "Enabled", "{a}");

    // A key file others can read is refused, with the fix.
    #[cfg(unix)]
    {
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = p.pf(&["account", "list"], &[]);
        assert_eq!(refused.code(), Some(2), "{refused}");
        assert!(refused.stderr.contains("chmod 600"), "{refused}");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[test]
fn keys_are_generated_private_and_rotated_on_a_sqlite_store() {
    let p = Project::new();
    rotate_story(&p);
    #[cfg(unix)]
    {
        assert_eq!(mode(&p.state_db()), 0o600, "the state store");
        assert_eq!(mode(&p.dbum_db()), 0o600, "the SQLite target");
        assert_eq!(mode(&p.path().join(".provflow/targets")), 0o700);
    }
}

#[test]
fn keys_are_rotated_on_a_postgres_store() {
    let Some(db) = Database::new() else { return };
    let mut p = Project::new();
    p.global = vec!["--state".into(), db.url.clone()];
    rotate_story(&p);
    assert_eq!(db.count("select count(*) from store_meta where name = 'key_check'"), 1);
}
