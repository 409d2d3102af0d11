-- DBUM database accounts on PostgreSQL (seed 000_8fecc4227594ac43: "Compile stored procedure").
--
-- Installed by `provflow target install dbum-pg`; safe to run again at any time: tables are
-- created only when missing and every procedure is CREATE OR REPLACE with an unchanged
-- signature. Needs PostgreSQL 14 or later (procedures with OUT parameters) and a connecting
-- role with CREATEROLE (the procedures run with the caller's rights, not SECURITY DEFINER, so
-- granting EXECUTE on them gives nobody more power than they already have).
--
-- Conventions shared by every procedure:
--   * Account names are folded to lower case, as PostgreSQL folds unquoted identifiers, so
--     that `psql -U jdoe` works for the identity manager's login JDOE. The reconciliation key
--     is therefore case-insensitive (see the process definitions).
--   * Names and literals reach dynamic SQL only through format('%I' / '%L').
--   * Only accounts tracked in dbum_users (created by insert_package) can be altered, granted
--     to, or dropped: a form that says `postgres` can never reset the superuser's password.
--   * Errors use the server's own SQLSTATEs, mapped to response codes in the ConnectorQueries:
--       42710 duplicate_object   -> DUPLICATE      (the role already exists)
--       42704 undefined_object   -> NO_SUCH_USER / NO_SUCH_ROLE
--       2BP01 dependent_objects_still_exist -> IN_USE (the role still owns objects)
--       22023 invalid_parameter_value, 42622 name_too_long -> UNKNOWN (task Rejected)
--   * Every change writes one row to dbum_audit_log, in the same transaction as the change
--     (PostgreSQL DDL is transactional, so a failed call leaves no audit row behind).

CREATE TABLE IF NOT EXISTS dbum_audit_log (
    id        bigserial   PRIMARY KEY,
    logged_at timestamptz NOT NULL DEFAULT now(),
    message   text        NOT NULL
);

CREATE TABLE IF NOT EXISTS dbum_users (
    username   text        PRIMARY KEY,
    profile    text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Business roles that the `roles` child table of the process form can grant.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['dbum_read', 'dbum_write', 'dbum_report'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$$;

-- Validates and normalises an account name; raises for names PostgreSQL would silently
-- truncate (NAMEDATALEN 64) rather than create a role other than the one asked for.
CREATE OR REPLACE FUNCTION dbum_account_name(usr text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF usr IS NULL OR btrim(usr) = '' THEN
        RAISE EXCEPTION 'DBUM: the user name is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(lower(usr)) > 63 THEN
        RAISE EXCEPTION 'DBUM: user name "%" is longer than 63 bytes', usr USING ERRCODE = 'name_too_long';
    END IF;
    RETURN lower(usr);
END
$$;

-- Raises undefined_object unless the account is one that DBUM created.
CREATE OR REPLACE FUNCTION dbum_require_user(v_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM dbum_users WHERE username = v_name) THEN
        RAISE EXCEPTION 'DBUM: no such user "%"', v_name USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

-- The seed's InsertPackage(usr, pwd): create the login and record it.
CREATE OR REPLACE PROCEDURE insert_package(usr text, pwd text)
LANGUAGE plpgsql AS $$
DECLARE
    v_name text := dbum_account_name(usr);
BEGIN
    IF pwd IS NULL OR pwd = '' THEN
        -- format('%L', NULL) would give PASSWORD NULL: a login without a password.
        RAISE EXCEPTION 'DBUM: the password is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Raises duplicate_object (42710) when the role exists, managed or not.
    EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', v_name, pwd);
    -- A row left behind by a role dropped outside DBUM is taken over.
    INSERT INTO dbum_users(username) VALUES (v_name)
        ON CONFLICT (username) DO UPDATE SET profile = NULL, created_at = now();
    INSERT INTO dbum_audit_log(message) VALUES ('Added User ' || v_name);
END
$$;

CREATE OR REPLACE PROCEDURE enable_user(usr text)
LANGUAGE plpgsql AS $$
DECLARE
    v_name text := dbum_account_name(usr);
BEGIN
    PERFORM dbum_require_user(v_name);
    EXECUTE format('ALTER ROLE %I LOGIN', v_name);
    INSERT INTO dbum_audit_log(message) VALUES ('Enabled User ' || v_name);
END
$$;

CREATE OR REPLACE PROCEDURE disable_user(usr text)
LANGUAGE plpgsql AS $$
DECLARE
    v_name text := dbum_account_name(usr);
BEGIN
    PERFORM dbum_require_user(v_name);
    EXECUTE format('ALTER ROLE %I NOLOGIN', v_name);
    -- NOLOGIN stops new sessions only; end the open ones too. Best effort: a caller without
    -- pg_signal_backend still disables the login, with a warning.
    BEGIN
        PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = v_name;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE WARNING 'DBUM: could not end the open sessions of "%"', v_name;
    END;
    INSERT INTO dbum_audit_log(message) VALUES ('Disabled User ' || v_name);
END
$$;

-- Reports a missing account through its OUT parameter rather than an error: the response
-- code is 'SUCCESS' or 'NO_SUCH_USER' (the query's response_from).
CREATE OR REPLACE PROCEDURE reset_password(usr text, pwd text, OUT response text)
LANGUAGE plpgsql AS $$
DECLARE
    v_name text := dbum_account_name(usr);
BEGIN
    IF pwd IS NULL OR pwd = '' THEN
        RAISE EXCEPTION 'DBUM: the password is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM dbum_users WHERE username = v_name)
       OR NOT EXISTS (SELECT FROM pg_roles WHERE rolname = v_name) THEN
        response := 'NO_SUCH_USER';
        RETURN;
    END IF;
    EXECUTE format('ALTER ROLE %I PASSWORD %L', v_name, pwd);
    INSERT INTO dbum_audit_log(message) VALUES ('Reset Password for User ' || v_name);
    response := 'SUCCESS';
END
$$;

-- Dropping an account whose role is already gone succeeds and forgets it; an account that
-- DBUM never created is undefined_object (42704).
CREATE OR REPLACE PROCEDURE delete_user(usr text)
LANGUAGE plpgsql AS $$
DECLARE
    v_name text := dbum_account_name(usr);
BEGIN
    PERFORM dbum_require_user(v_name);
    -- Raises dependent_objects_still_exist (2BP01) while the role owns objects.
    EXECUTE format('DROP ROLE IF EXISTS %I', v_name);
    DELETE FROM dbum_users WHERE username = v_name;
    INSERT INTO dbum_audit_log(message) VALUES ('Deleted User ' || v_name);
END
$$;

CREATE OR REPLACE PROCEDURE set_profile(usr text, profile_name text)
LANGUAGE plpgsql AS $$
DECLARE
    v_name text := dbum_account_name(usr);
BEGIN
    PERFORM dbum_require_user(v_name);
    UPDATE dbum_users SET profile = profile_name WHERE username = v_name;
    INSERT INTO dbum_audit_log(message)
        VALUES ('Set Profile ' || coalesce(profile_name, '(none)') || ' for User ' || v_name);
END
$$;

-- Only group roles (NOLOGIN, not superuser) can be granted: membership in a login or
-- superuser role would hand out that role's objects and privileges.
CREATE OR REPLACE PROCEDURE grant_role(usr text, role_name text)
LANGUAGE plpgsql AS $$
DECLARE
    v_name text := dbum_account_name(usr);
BEGIN
    PERFORM dbum_require_user(v_name);
    IF NOT EXISTS (SELECT FROM pg_roles
                   WHERE rolname = role_name AND NOT rolcanlogin AND NOT rolsuper) THEN
        RAISE EXCEPTION 'DBUM: role "%" does not exist or cannot be granted', role_name
            USING ERRCODE = 'undefined_object';
    END IF;
    -- Granting a role the user already has is a notice, not an error: idempotent.
    EXECUTE format('GRANT %I TO %I', role_name, v_name);
    INSERT INTO dbum_audit_log(message)
        VALUES ('Granted Role ' || role_name || ' to User ' || v_name);
END
$$;

CREATE OR REPLACE PROCEDURE revoke_role(usr text, role_name text)
LANGUAGE plpgsql AS $$
DECLARE
    v_name text := dbum_account_name(usr);
BEGIN
    PERFORM dbum_require_user(v_name);
    -- A role that no longer exists cannot be held: nothing to revoke.
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
        -- Revoking a role the user does not have is a warning, not an error: idempotent.
        EXECUTE format('REVOKE %I FROM %I', role_name, v_name);
    END IF;
    INSERT INTO dbum_audit_log(message)
        VALUES ('Revoked Role ' || role_name || ' from User ' || v_name);
END
$$;
