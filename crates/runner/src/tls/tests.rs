use super::*;

fn ok(conn: &str) -> (String, TlsParams) {
    split(conn).unwrap()
}

#[test]
fn urls_lose_their_tls_parameters_and_keep_the_rest() {
    let (rest, p) = ok("postgres://u:pw@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem");
    assert_eq!(rest, "postgres://u:pw@h:5432/db?application_name=x");
    assert_eq!(p, TlsParams { mode: SslMode::VerifyFull, root_cert: Some(PathBuf::from("/etc/ca.pem")) });
    let (rest, p) = ok("mysql://root@127.0.0.1:3306/t?sslmode=require");
    assert_eq!(rest, "mysql://root@127.0.0.1:3306/t");
    assert_eq!(p.mode, SslMode::Require);
    let (rest, p) = ok("postgres://h/db");
    assert_eq!(rest, "postgres://h/db");
    assert_eq!(p, TlsParams::default());
    assert_eq!(p.mode, SslMode::Prefer, "prefer is the default");
    // The last one wins, as in libpq.
    assert_eq!(ok("postgres://h/db?sslmode=disable&sslmode=verify-ca").1.mode, SslMode::VerifyCa);
}

#[test]
fn key_value_dsns_lose_their_tls_parameters_and_keep_the_rest() {
    let (rest, p) = ok("host=localhost sslmode=verify-full sslrootcert='/a b/ca.pem' password='x y' dbname=d");
    assert_eq!(rest, "host=localhost password='x y' dbname=d");
    assert_eq!(p, TlsParams { mode: SslMode::VerifyFull, root_cert: Some(PathBuf::from("/a b/ca.pem")) });
    let (rest, p) = ok("sslmode = require host=h");
    assert_eq!(rest, " host=h");
    assert_eq!(p.mode, SslMode::Require);
    let (rest, p) = ok("host=h sslrootcert=/c\\ d.pem");
    assert_eq!(rest, "host=h");
    assert_eq!(p.root_cert, Some(PathBuf::from("/c d.pem")));
    // What does not parse is left for the driver to refuse.
    assert_eq!(ok("host=h password='open").0, "host=h password='open");
}

#[test]
fn an_unknown_sslmode_is_refused_with_the_choices() {
    let e = split("postgres://h/db?sslmode=allow").unwrap_err();
    assert!(e.contains("disable, prefer, require, verify-ca, verify-full"), "{e}");
    assert!(split("host=h sslmode=verify_full").is_err());
}

#[test]
fn verifying_modes_need_a_root_certificate() {
    let p = TlsParams { mode: SslMode::VerifyFull, root_cert: None };
    let e = p.check(Driver::Mariadb).unwrap_err();
    assert!(e.contains("sslrootcert=PATH"), "{e}");
    let p = TlsParams { mode: SslMode::Require, root_cert: Some("/ca.pem".into()) };
    assert_eq!(p.check(Driver::Mariadb).unwrap(), Check::Chain("/ca.pem".into()), "require with a CA is verify-ca");
    let p = TlsParams { mode: SslMode::Require, root_cert: None };
    assert_eq!(p.check(Driver::Postgres).unwrap(), Check::Unverified);
}

#[test]
fn a_root_file_without_certificates_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, "not a certificate").unwrap();
    let e = load_roots(&path).unwrap_err();
    assert!(e.contains("holds no PEM certificate"), "{e}");
    let e = load_roots(&dir.path().join("missing.pem")).unwrap_err();
    assert!(e.contains("cannot read sslrootcert="), "{e}");
}
