-- DBUM database accounts emulated on SQLite (seed 000_8fecc4227594ac43).
--
-- SQLite has neither accounts nor stored procedures, so this file creates the tables that
-- stand in for the database's user catalog (the seed's `select * from dba_users`) and for the
-- seed's audit ("test") table; the procedures themselves are the `procedures:` of the
-- dbum-sqlite ConnectorQueries, run by provflow in a SAVEPOINT with named binds.
-- Installed by `provflow target install dbum-sqlite`; safe to run again at any time.
--
-- This is a test stand-in: db_users.password holds the password as given, like a database
-- whose catalog you may read. Do not point it at anything real.

CREATE TABLE IF NOT EXISTS db_users (
    username   TEXT    NOT NULL PRIMARY KEY,
    password   TEXT    NOT NULL,
    profile    TEXT,
    enabled    INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS db_user_roles (
    username TEXT NOT NULL REFERENCES db_users(username) ON DELETE CASCADE,
    role     TEXT NOT NULL,
    PRIMARY KEY (username, role)
);

CREATE TABLE IF NOT EXISTS audit_log (
    id        INTEGER PRIMARY KEY,
    logged_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    message   TEXT    NOT NULL
);
