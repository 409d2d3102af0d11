//! TLS to PostgreSQL and MariaDB (issue 11, item 1), through the `provflow` binary.
//!
//! Each test starts its own server on a free port with TLS on: a PostgreSQL 15 cluster
//! (`initdb`, trust authentication) or a MariaDB server (`mariadb-install-db`, root without a password),
//! with a CA and a certificate for `localhost` made at test time (`rcgen`); the server is
//! stopped at the end, also when an assertion failed. A third test uses the machine's own
//! servers: MariaDB on 3306 has no TLS, PostgreSQL on 5432 has Debian's snakeoil certificate.
//!
//! A test is skipped outside CI only when the server binaries are missing, and says so; with
//! `PROVFLOW_REQUIRE_DATABASES=1` that is a failure.

use provflow_runner::target::install::ExecuteStatement;
use provflow_runner::target::mariadb::MariadbTarget;
use provflow_runner::target::postgres::{PostgresTarget, Timeouts};
use provflow_runner::target::Target;
use provflow_runner::value::Value;
use provflow_tests::{database_url, run_bounded, RunOutput, TempProject};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const MARIADBD: &str = "/usr/sbin/mariadbd";
const MARIADB_INSTALL_DB: &str = "/usr/bin/mariadb-install-db";

/// The binaries a test needs; `false` (after saying why) when one is missing outside CI.
fn binaries_present(paths: &[&str]) -> bool {
    let missing: Vec<&str> = paths.iter().copied().filter(|p| !Path::new(p).is_file()).collect();
    if missing.is_empty() {
        return true;
    }
    let current = std::thread::current();
    let test = current.name().unwrap_or("<unnamed test>");
    let message = format!("{test}: {} not installed (the test starts its own TLS server)", missing.join(", "));
    if std::env::var("PROVFLOW_REQUIRE_DATABASES").is_ok_and(|v| v == "1") {
        panic!("PROVFLOW_REQUIRE_DATABASES=1 but {message}");
    }
    eprintln!("SKIPPED: {message}");
    false
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A CA, a certificate for `localhost` signed by it (key in `server.key`), and an unrelated CA.
struct Certs {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_certs(dir: &Path) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_params = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        p
    };
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params("provflow test CA").self_signed(&ca_key).unwrap();
    let other_key = KeyPair::generate().unwrap();
    let other_cert = ca_params("provflow unrelated CA").self_signed(&other_key).unwrap();
    let issuer = Issuer::new(ca_params("provflow test CA"), ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "localhost");
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();
    let certs = Certs {
        ca: write("ca.pem", ca_cert.pem()),
        other_ca: write("other-ca.pem", other_cert.pem()),
        cert: write("server.pem", server_cert.pem()),
        key: write("server.key", server_key.serialize_pem()),
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&certs.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    certs
}

/// Waits until `port` accepts connections; panics with the log when `child` died or time ran out.
fn wait_for_port(port: u16, child: &mut Child, log: &Path, what: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status}:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on {port} within 30 s:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

fn run_checked(cmd: &mut Command, what: &str) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL 15 server of the test's own: stopped (fast shutdown) when dropped.
struct PgServer {
    _dir: tempfile::TempDir,
    data: PathBuf,
    child: Child,
    port: u16,
    certs: Certs,
}

impl PgServer {
    fn start() -> PgServer {
        let dir = tempfile::Builder::new().prefix("provflow-tls-pg-").tempdir().unwrap();
        let certs = make_certs(dir.path());
        let data = dir.path().join("data");
        // PostgreSQL refuses to run as root: the cluster then belongs to `postgres`.
        let as_owner = |program: &str| {
            if is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--", program]);
                c
            } else {
                Command::new(program)
            }
        };
        if is_root() {
            run_checked(Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()), "chown");
        }
        run_checked(
            as_owner(&format!("{PG_BIN}/initdb")).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ]),
            "initdb",
        );
        let port = free_port();
        let log = dir.path().join("postgres.log");
        let mut child = as_owner(&format!("{PG_BIN}/postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on", "-c", "fsync=off"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", certs.cert.display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", certs.key.display()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, &log, "postgres");
        PgServer { _dir: dir, data, child, port, certs }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGINT to the postmaster (its pid is the first line of postmaster.pid): fast shutdown.
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string));
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-INT", &pid]).status();
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A MariaDB server of the test's own (root without a password on the socket and 127.0.0.1):
/// killed when dropped.
struct MariadbServer {
    _dir: tempfile::TempDir,
    child: Child,
    port: u16,
    certs: Certs,
}

impl MariadbServer {
    fn start() -> MariadbServer {
        let dir = tempfile::Builder::new().prefix("provflow-tls-mariadb-").tempdir().unwrap();
        let certs = make_certs(dir.path());
        let data = dir.path().join("data");
        let user = if is_root() { "--user=root" } else { "--no-defaults" };
        run_checked(
            Command::new(MARIADB_INSTALL_DB).arg("--no-defaults").arg(format!("--datadir={}", data.display())).args([
                user,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ]),
            "mariadb-install-db",
        );
        let port = free_port();
        let log = dir.path().join("mariadbd.log");
        let mut child = Command::new(MARIADBD)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(user)
            .arg(format!("--port={port}"))
            .arg(format!("--socket={}", dir.path().join("mariadbd.sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("mariadbd.pid").display()))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
            ])
            .arg(format!("--ssl-cert={}", certs.cert.display()))
            .arg(format!("--ssl-key={}", certs.key.display()))
            .arg(format!("--ssl-ca={}", certs.ca.display()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, &log, "mariadbd");
        MariadbServer { _dir: dir, child, port, certs }
    }
}

impl Drop for MariadbServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throw-away copy of `definitions/` whose commands reach the target through `url_env`.
struct Project {
    dir: TempProject,
    url_env: &'static str,
}

impl Project {
    fn new(url_env: &'static str) -> Self {
        let dir = TempProject::new();
        dir.copy_from_repo("definitions");
        Project { dir, url_env }
    }

    /// `provflow ARGS` with `url` in the target's variable; `PROVFLOW_STATE` unset.
    fn pf(&self, url: &str, args: &[&str]) -> RunOutput {
        let mut cmd = self.dir.provflow();
        cmd.args(args)
            .env_remove("DBUM_PG_URL")
            .env_remove("DBUM_MARIADB_URL")
            .env_remove("PROVFLOW_STATE")
            .env(self.url_env, url);
        run_bounded(&mut cmd, DEADLINE)
    }

    fn expect(&self, code: i32, url: &str, args: &[&str]) -> RunOutput {
        let out = self.pf(url, args);
        assert_eq!(out.code(), Some(code), "provflow {} with {url}\n{out}", args.join(" "));
        out
    }
}

/// `needle` in stderr and no `password` anywhere in the output.
fn says(out: &RunOutput, needle: &str, password: &str) {
    assert!(out.stderr.contains(needle), "expected `{needle}` in stderr\n{out}");
    assert!(!out.stderr.contains(password) && !out.stdout.contains(password), "the password leaked\n{out}");
}

fn scalar(t: &mut dyn Target, sql: &str) -> Option<Value> {
    t.query_scalar(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Whether a PostgreSQL session at `url` runs over TLS (`pg_stat_ssl`).
fn pg_session_uses_tls(url: &str) -> bool {
    let mut t = PostgresTarget::connect(url, &Timeouts::default()).unwrap_or_else(|e| panic!("{url}: {e}"));
    let v = scalar(&mut t, "select ssl::text from pg_stat_ssl where pid = pg_backend_pid()");
    v == Some(Value::Text("true".into()))
}

/// Whether a MariaDB session at `url` runs over TLS (its `Ssl_version` is not empty).
fn mariadb_session_uses_tls(url: &str) -> bool {
    let mut t = MariadbTarget::connect(url, &Timeouts::default()).unwrap_or_else(|e| panic!("{url}: {e}"));
    let sql = "select variable_value from information_schema.session_status where variable_name = 'SSL_VERSION'";
    !matches!(scalar(&mut t, sql), None | Some(Value::Null)) && scalar(&mut t, sql) != Some(Value::Text(String::new()))
}

#[test]
fn postgres_target_and_state_store_over_tls() {
    if !binaries_present(&[&format!("{PG_BIN}/initdb"), &format!("{PG_BIN}/postgres")]) {
        return;
    }
    let server = PgServer::start();
    let port = server.port;
    let (ca, other) = (server.certs.ca.display().to_string(), server.certs.other_ca.display().to_string());
    let password = format!("Tls-pw-{}", std::process::id());
    let url = |host: &str, mode: &str, root: &str| {
        let root = if root.is_empty() { String::new() } else { format!("&sslrootcert={root}") };
        format!("postgres://postgres:{password}@{host}:{port}/postgres?sslmode={mode}{root}")
    };
    let p = Project::new("DBUM_PG_URL");

    // verify-full with the host name of the certificate: install, then check the catalog.
    let full = url("localhost", "verify-full", &ca);
    p.expect(0, &full, &["target", "install", "dbum-pg"]);
    p.expect(0, &full, &["target", "check", "dbum-pg"]);
    assert!(pg_session_uses_tls(&full));

    // A CA that did not sign the server's certificate.
    let out = p.expect(2, &url("localhost", "verify-full", &other), &["target", "check", "dbum-pg"]);
    says(&out, &format!("the server's certificate is not signed by the CA in sslrootcert={other}"), &password);

    // An address that is not the certificate's name.
    let out = p.expect(2, &url("127.0.0.1", "verify-full", &ca), &["target", "check", "dbum-pg"]);
    says(&out, "the certificate is for `localhost`, not `127.0.0.1`: connect with host=localhost", &password);
    says(&out, "sslmode=verify-ca", &password);

    // verify-ca checks the chain only: 127.0.0.1 is fine; a wrong CA is still refused.
    p.expect(0, &url("127.0.0.1", "verify-ca", &ca), &["target", "check", "dbum-pg"]);
    let out = p.expect(2, &url("127.0.0.1", "verify-ca", &other), &["target", "install", "dbum-pg"]);
    says(&out, "is not signed by the CA in sslrootcert=", &password);
    // require with sslrootcert is verify-ca; without it, TLS without a check.
    let out = p.expect(2, &url("127.0.0.1", "require", &other), &["target", "check", "dbum-pg"]);
    says(&out, "is not signed by the CA", &password);
    p.expect(0, &url("127.0.0.1", "require", ""), &["target", "check", "dbum-pg"]);
    assert!(pg_session_uses_tls(&url("127.0.0.1", "require", "")));
    // verify-full without any root certificate is refused before connecting.
    let no_root = format!("postgres://postgres:{password}@localhost:{port}/postgres?sslmode=verify-full");
    let out = p.pf(&no_root, &["target", "check", "dbum-pg"]);
    if !std::env::var_os("HOME").is_some_and(|h| Path::new(&h).join(".postgresql/root.crt").is_file()) {
        assert_eq!(out.code(), Some(2), "{out}");
        says(&out, "sslmode=verify-full needs the CA certificate", &password);
    }

    // prefer (the default) uses TLS when offered; disable does not.
    assert!(pg_session_uses_tls(&format!("postgres://postgres@127.0.0.1:{port}/postgres")));
    assert!(!pg_session_uses_tls(&url("127.0.0.1", "disable", "")));
    p.expect(0, &url("127.0.0.1", "disable", ""), &["target", "check", "dbum-pg"]);

    // A key=value DSN takes the same parameters.
    let dsn = format!(
        "host=localhost port={port} user=postgres password='{password}' dbname=postgres sslmode=verify-full sslrootcert='{ca}'"
    );
    p.expect(0, &dsn, &["target", "check", "dbum-pg"]);
    let dsn_ip = dsn.replace("host=localhost", "host=127.0.0.1");
    let out = p.expect(2, &dsn_ip, &["target", "check", "dbum-pg"]);
    says(&out, "not `127.0.0.1`", &password);

    // The state store over TLS: verify-full works, a wrong CA is refused with exit 2.
    let state = url("localhost", "verify-full", &ca);
    p.expect(
        0,
        "",
        &[
            "--state",
            &state,
            "user",
            "create",
            "TLSUSER",
            "--attr",
            "usr_first_name=T",
            "--attr",
            "usr_last_name=L",
            "--attr",
            "usr_udf_cost_center=CC-1",
        ],
    );
    let out = p.expect(0, "", &["--state", &state, "user", "list"]);
    assert!(out.stdout.contains("TLSUSER"), "{out}");
    let out = p.expect(2, "", &["--state", &url("localhost", "verify-full", &other), "user", "list"]);
    says(&out, "is not signed by the CA in sslrootcert=", &password);
    let out = p.expect(2, "", &["--state", &url("127.0.0.1", "verify-full", &ca), "user", "list"]);
    says(&out, "the certificate is for `localhost`, not `127.0.0.1`", &password);
    let out = p.expect(0, "", &["--state", &url("127.0.0.1", "verify-ca", &ca), "user", "list"]);
    assert!(out.stdout.contains("TLSUSER"), "{out}");
}

#[test]
fn mariadb_target_over_tls() {
    if !binaries_present(&[MARIADBD, MARIADB_INSTALL_DB]) {
        return;
    }
    let server = MariadbServer::start();
    let port = server.port;
    let (ca, other) = (server.certs.ca.display().to_string(), server.certs.other_ca.display().to_string());
    let password = format!("Tls-pw-{}", std::process::id());
    {
        // The tests' user has a password, so that messages can be checked for it.
        let admin = format!("mysql://root@127.0.0.1:{port}/?sslmode=disable");
        let mut t = MariadbTarget::connect(&admin, &Timeouts::default()).unwrap_or_else(|e| panic!("{e}"));
        for sql in [
            "CREATE DATABASE provflow_test".to_string(),
            format!("CREATE USER 'pf'@'127.0.0.1' IDENTIFIED BY '{password}'"),
            "GRANT ALL ON *.* TO 'pf'@'127.0.0.1' WITH GRANT OPTION".to_string(),
        ] {
            t.execute_statement(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
    let url = |host: &str, mode: &str, root: &str| {
        let root = if root.is_empty() { String::new() } else { format!("&sslrootcert={root}") };
        format!("mysql://pf:{password}@{host}:{port}/provflow_test?sslmode={mode}{root}")
    };
    let p = Project::new("DBUM_MARIADB_URL");

    let full = url("localhost", "verify-full", &ca);
    p.expect(0, &full, &["target", "install", "dbum-mariadb"]);
    p.expect(0, &full, &["target", "check", "dbum-mariadb"]);
    assert!(mariadb_session_uses_tls(&full));

    let out = p.expect(2, &url("localhost", "verify-full", &other), &["target", "check", "dbum-mariadb"]);
    says(&out, &format!("the server's certificate is not signed by the CA in sslrootcert={other}"), &password);

    let out = p.expect(2, &url("127.0.0.1", "verify-full", &ca), &["target", "check", "dbum-mariadb"]);
    says(&out, "the certificate is for `localhost`, not `127.0.0.1`: connect with host=localhost", &password);

    p.expect(0, &url("127.0.0.1", "verify-ca", &ca), &["target", "check", "dbum-mariadb"]);
    let out = p.expect(2, &url("127.0.0.1", "verify-ca", &other), &["target", "check", "dbum-mariadb"]);
    says(&out, "is not signed by the CA in sslrootcert=", &password);

    // require without a CA, and prefer (the default), use TLS; disable does not.
    p.expect(0, &url("127.0.0.1", "require", ""), &["target", "check", "dbum-mariadb"]);
    assert!(mariadb_session_uses_tls(&url("127.0.0.1", "require", "")));
    assert!(mariadb_session_uses_tls(&format!("mysql://pf:{password}@127.0.0.1:{port}/provflow_test")));
    assert!(!mariadb_session_uses_tls(&url("127.0.0.1", "disable", "")));

    let out = p.expect(2, &url("localhost", "verify-ca", ""), &["target", "check", "dbum-mariadb"]);
    says(&out, "sslmode=verify-ca needs the CA certificate", &password);
}

/// The machine's servers: MariaDB on 3306 without TLS, PostgreSQL on 5432 with TLS (Debian's
/// snakeoil certificate, which is its own CA).
#[test]
fn the_machines_servers_with_and_without_tls() {
    let (Some(mariadb), Some(pg)) = (database_url("PROVFLOW_TEST_MARIADB_URL"), database_url("PROVFLOW_TEST_PG_URL"))
    else {
        return;
    };
    let with = |url: &str, params: &str| {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{params}")
    };
    // Connected and read the catalog: exit 0 or 1 (mismatches), never 2.
    let connected = |out: &RunOutput| {
        assert!(matches!(out.code(), Some(0 | 1)), "{out}");
        assert!(out.stderr.contains("target check "), "{out}");
    };

    let p = Project::new("DBUM_MARIADB_URL");
    let out = p.expect(2, &with(&mariadb, "sslmode=require"), &["target", "check", "dbum-mariadb"]);
    says(&out, "the server does not offer TLS and sslmode=require", "\u{0}");
    let out = p.expect(
        2,
        &with(&mariadb, "sslmode=verify-full&sslrootcert=/etc/ssl/certs/ssl-cert-snakeoil.pem"),
        &["target", "check", "dbum-mariadb"],
    );
    says(&out, "the server does not offer TLS and sslmode=verify-full", "\u{0}");
    connected(&p.pf(&with(&mariadb, "sslmode=prefer"), &["target", "check", "dbum-mariadb"]));
    connected(&p.pf(&with(&mariadb, "sslmode=disable"), &["target", "check", "dbum-mariadb"]));
    assert!(!mariadb_session_uses_tls(&mariadb), "prefer fell back to plain");

    let p = Project::new("DBUM_PG_URL");
    connected(&p.pf(&with(&pg, "sslmode=disable"), &["target", "check", "dbum-pg"]));
    assert!(!pg_session_uses_tls(&with(&pg, "sslmode=disable")));
    let snakeoil = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
    let served = {
        let mut t = PostgresTarget::connect(&pg, &Timeouts::default()).unwrap_or_else(|e| panic!("{e}"));
        (scalar(&mut t, "show ssl"), scalar(&mut t, "show ssl_cert_file"))
    };
    if served != (Some(Value::Text("on".into())), Some(Value::Text(snakeoil.into()))) || !Path::new(snakeoil).is_file()
    {
        eprintln!("NOTE: the server on {pg} does not serve {snakeoil} ({served:?}): its verify-ca case is left out");
        return;
    }
    assert!(pg_session_uses_tls(&pg), "prefer (the default) uses the server's TLS");
    connected(&p.pf(&with(&pg, &format!("sslmode=verify-ca&sslrootcert={snakeoil}")), &["target", "check", "dbum-pg"]));
    let other = TempProject::new();
    let certs = make_certs(other.path());
    let out = p.expect(
        2,
        &with(&pg, &format!("sslmode=verify-ca&sslrootcert={}", certs.ca.display())),
        &["target", "check", "dbum-pg"],
    );
    says(&out, "is not signed by the CA in sslrootcert=", "\u{0}");
}
