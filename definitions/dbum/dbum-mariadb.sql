-- DBUM database accounts on MariaDB 10.11 (seed 000_8fecc4227594ac43: "Compile stored procedure").
--
-- Written for the `mariadb` command-line client (DELIMITER directives); installed by
-- `provflow target install dbum-mariadb` or by hand:
--     mariadb -h 127.0.0.1 -u root test < dbum-mariadb.sql
-- Safe to run again at any time: tables and roles are created only when missing and every
-- routine is CREATE OR REPLACE. The connecting account needs CREATE USER, GRANT OPTION on the
-- business roles, and SELECT on mysql.global_priv and mysql.roles_mapping. The procedures are
-- SQL SECURITY INVOKER: EXECUTE on them gives nobody more power than they already have.
--
-- Conventions shared by every procedure (they mirror dbum-postgres.sql):
--   * Accounts are 'name'@'%', the name folded to lower case like on PostgreSQL.
--   * Names and literals reach dynamic SQL only through QUOTE() (account names are string
--     literals in MariaDB's grammar; role names are backtick identifiers with ` doubled).
--     This relies on the session not running with NO_BACKSLASH_ESCAPES, the default: the
--     routines keep the sql_mode they were created with, and this script pins it below.
--   * Only accounts tracked in dbum_users (created by insert_package) can be altered,
--     granted to, or dropped: a form that says `root` never touches root.
--   * Errors are SIGNALled with the SQLSTATEs PostgreSQL uses for the same conditions, so
--     the ConnectorQueries of both dialects map the same codes:
--       42710 -> DUPLICATE   (the account already exists)
--       42704 -> NO_SUCH_USER / NO_SUCH_ROLE
--       22023 -> UNKNOWN     (empty or too long name, empty password; the task is Rejected)
--   * MariaDB commits implicitly around account DDL, so each procedure runs the DDL first
--     and writes dbum_users and its dbum_audit_log row only after the DDL succeeded: a failed
--     call leaves no audit row behind.

SET SESSION sql_mode = 'STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION';

CREATE TABLE IF NOT EXISTS dbum_audit_log (
    id        BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    logged_at TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    message   VARCHAR(1024)   NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS dbum_users (
    username   VARCHAR(128) NOT NULL PRIMARY KEY,
    profile    VARCHAR(128),
    created_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Business roles that the `roles` child table of the process form can grant.
CREATE ROLE IF NOT EXISTS dbum_read;
CREATE ROLE IF NOT EXISTS dbum_write;
CREATE ROLE IF NOT EXISTS dbum_report;

DELIMITER //

-- Runs one statement of dynamic SQL. The text lives in a local variable, never in a session
-- (@) variable, so a password in it does not outlive the call.
CREATE OR REPLACE PROCEDURE dbum_execute(IN stmt TEXT)
    SQL SECURITY INVOKER
BEGIN
    PREPARE dbum_stmt FROM stmt;
    EXECUTE dbum_stmt;
    DEALLOCATE PREPARE dbum_stmt;
END //

-- Validates and normalises an account name (mysql.user.User is CHAR(128)).
CREATE OR REPLACE FUNCTION dbum_account_name(usr VARCHAR(512)) RETURNS VARCHAR(128)
    DETERMINISTIC NO SQL SQL SECURITY INVOKER
BEGIN
    IF usr IS NULL OR TRIM(usr) = '' THEN
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = 'DBUM: the user name is empty';
    END IF;
    IF CHAR_LENGTH(usr) > 128 THEN
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = 'DBUM: the user name is longer than 128 characters';
    END IF;
    RETURN LOWER(usr);
END //

-- The account as it appears in account-management statements: 'name'@'%'.
CREATE OR REPLACE FUNCTION dbum_account(v_name VARCHAR(128)) RETURNS VARCHAR(300)
    DETERMINISTIC NO SQL SQL SECURITY INVOKER
BEGIN
    RETURN CONCAT(QUOTE(v_name), '@', QUOTE('%'));
END //

-- SIGNALs 42704 unless the account is one that DBUM created and it still exists.
CREATE OR REPLACE PROCEDURE dbum_require_user(IN v_name VARCHAR(128))
    READS SQL DATA SQL SECURITY INVOKER
BEGIN
    DECLARE v_msg VARCHAR(255);
    IF NOT EXISTS (SELECT 1 FROM dbum_users WHERE username = v_name)
       OR NOT EXISTS (SELECT 1 FROM mysql.global_priv WHERE User = v_name AND Host = '%') THEN
        SET v_msg = CONCAT('DBUM: no such user ''', v_name, '''');
        SIGNAL SQLSTATE '42704' SET MESSAGE_TEXT = v_msg;
    END IF;
END //

-- The seed's InsertPackage(usr, pwd): create the login and record it.
CREATE OR REPLACE PROCEDURE insert_package(IN usr VARCHAR(512), IN pwd VARCHAR(512))
    MODIFIES SQL DATA SQL SECURITY INVOKER
BEGIN
    DECLARE v_name VARCHAR(128) DEFAULT dbum_account_name(usr);
    DECLARE v_msg VARCHAR(255);
    IF pwd IS NULL OR pwd = '' THEN
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = 'DBUM: the password is empty';
    END IF;
    -- Any host counts: 'root'@'%' would be a new account next to 'root'@'localhost', but a
    -- name that exists on some host is never handed to a person.
    IF EXISTS (SELECT 1 FROM mysql.global_priv WHERE User = v_name) THEN
        SET v_msg = CONCAT('DBUM: user ''', v_name, ''' already exists');
        SIGNAL SQLSTATE '42710' SET MESSAGE_TEXT = v_msg;
    END IF;
    CALL dbum_execute(CONCAT('CREATE USER ', dbum_account(v_name), ' IDENTIFIED BY ', QUOTE(pwd)));
    -- A row left behind by an account dropped outside DBUM is taken over.
    INSERT INTO dbum_users(username) VALUES (v_name)
        ON DUPLICATE KEY UPDATE profile = NULL, created_at = CURRENT_TIMESTAMP;
    INSERT INTO dbum_audit_log(message) VALUES (CONCAT('Added User ', v_name));
END //

CREATE OR REPLACE PROCEDURE enable_user(IN usr VARCHAR(512))
    MODIFIES SQL DATA SQL SECURITY INVOKER
BEGIN
    DECLARE v_name VARCHAR(128) DEFAULT dbum_account_name(usr);
    CALL dbum_require_user(v_name);
    CALL dbum_execute(CONCAT('ALTER USER ', dbum_account(v_name), ' ACCOUNT UNLOCK'));
    INSERT INTO dbum_audit_log(message) VALUES (CONCAT('Enabled User ', v_name));
END //

CREATE OR REPLACE PROCEDURE disable_user(IN usr VARCHAR(512))
    MODIFIES SQL DATA SQL SECURITY INVOKER
BEGIN
    DECLARE v_name VARCHAR(128) DEFAULT dbum_account_name(usr);
    DECLARE v_id BIGINT UNSIGNED;
    DECLARE v_done BOOLEAN DEFAULT FALSE;
    DECLARE sessions CURSOR FOR
        SELECT ID FROM information_schema.PROCESSLIST WHERE USER = v_name;
    DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = TRUE;
    CALL dbum_require_user(v_name);
    CALL dbum_execute(CONCAT('ALTER USER ', dbum_account(v_name), ' ACCOUNT LOCK'));
    -- ACCOUNT LOCK stops new sessions only; end the open ones too. Best effort: a session that
    -- ended meanwhile (1094) or a caller without CONNECTION ADMIN (1095) still disables.
    BEGIN
        DECLARE CONTINUE HANDLER FOR 1094, 1095 BEGIN END;
        OPEN sessions;
        kill_loop: LOOP
            FETCH sessions INTO v_id;
            IF v_done THEN
                LEAVE kill_loop;
            END IF;
            KILL CONNECTION v_id;
        END LOOP;
        CLOSE sessions;
    END;
    INSERT INTO dbum_audit_log(message) VALUES (CONCAT('Disabled User ', v_name));
END //

-- Reports a missing account through its OUT parameter rather than an error: the response
-- code is 'SUCCESS' or 'NO_SUCH_USER' (the query's response_from).
CREATE OR REPLACE PROCEDURE reset_password(IN usr VARCHAR(512), IN pwd VARCHAR(512), OUT response VARCHAR(32))
    MODIFIES SQL DATA SQL SECURITY INVOKER
BEGIN
    DECLARE v_name VARCHAR(128) DEFAULT dbum_account_name(usr);
    IF pwd IS NULL OR pwd = '' THEN
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = 'DBUM: the password is empty';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM dbum_users WHERE username = v_name)
       OR NOT EXISTS (SELECT 1 FROM mysql.global_priv WHERE User = v_name AND Host = '%') THEN
        SET response = 'NO_SUCH_USER';
    ELSE
        CALL dbum_execute(CONCAT('ALTER USER ', dbum_account(v_name), ' IDENTIFIED BY ', QUOTE(pwd)));
        INSERT INTO dbum_audit_log(message) VALUES (CONCAT('Reset Password for User ', v_name));
        SET response = 'SUCCESS';
    END IF;
END //

-- Dropping an account that is already gone succeeds and forgets it; an account that DBUM
-- never created is 42704.
CREATE OR REPLACE PROCEDURE delete_user(IN usr VARCHAR(512))
    MODIFIES SQL DATA SQL SECURITY INVOKER
BEGIN
    DECLARE v_name VARCHAR(128) DEFAULT dbum_account_name(usr);
    DECLARE v_msg VARCHAR(255);
    IF NOT EXISTS (SELECT 1 FROM dbum_users WHERE username = v_name) THEN
        SET v_msg = CONCAT('DBUM: no such user ''', v_name, '''');
        SIGNAL SQLSTATE '42704' SET MESSAGE_TEXT = v_msg;
    END IF;
    CALL dbum_execute(CONCAT('DROP USER IF EXISTS ', dbum_account(v_name)));
    DELETE FROM dbum_users WHERE username = v_name;
    INSERT INTO dbum_audit_log(message) VALUES (CONCAT('Deleted User ', v_name));
END //

CREATE OR REPLACE PROCEDURE set_profile(IN usr VARCHAR(512), IN profile_name VARCHAR(128))
    MODIFIES SQL DATA SQL SECURITY INVOKER
BEGIN
    DECLARE v_name VARCHAR(128) DEFAULT dbum_account_name(usr);
    CALL dbum_require_user(v_name);
    UPDATE dbum_users SET profile = profile_name WHERE username = v_name;
    INSERT INTO dbum_audit_log(message)
        VALUES (CONCAT('Set Profile ', COALESCE(profile_name, '(none)'), ' for User ', v_name));
END //

-- Only roles (not accounts) can be granted; granting a role twice is a no-op.
CREATE OR REPLACE PROCEDURE grant_role(IN usr VARCHAR(512), IN role_name VARCHAR(128))
    MODIFIES SQL DATA SQL SECURITY INVOKER
BEGIN
    DECLARE v_name VARCHAR(128) DEFAULT dbum_account_name(usr);
    DECLARE v_msg VARCHAR(255);
    CALL dbum_require_user(v_name);
    IF role_name IS NULL
       OR NOT EXISTS (SELECT 1 FROM mysql.user WHERE User = role_name AND is_role = 'Y') THEN
        SET v_msg = CONCAT('DBUM: role ''', COALESCE(role_name, ''), ''' does not exist');
        SIGNAL SQLSTATE '42704' SET MESSAGE_TEXT = v_msg;
    END IF;
    CALL dbum_execute(CONCAT('GRANT `', REPLACE(role_name, '`', '``'), '` TO ', dbum_account(v_name)));
    INSERT INTO dbum_audit_log(message) VALUES (CONCAT('Granted Role ', role_name, ' to User ', v_name));
END //

-- Revoking a role the account does not hold (or that no longer exists) is a no-op, so that
-- the call is idempotent like on PostgreSQL (a plain REVOKE would fail with 1141).
CREATE OR REPLACE PROCEDURE revoke_role(IN usr VARCHAR(512), IN role_name VARCHAR(128))
    MODIFIES SQL DATA SQL SECURITY INVOKER
BEGIN
    DECLARE v_name VARCHAR(128) DEFAULT dbum_account_name(usr);
    CALL dbum_require_user(v_name);
    IF EXISTS (SELECT 1 FROM mysql.roles_mapping
               WHERE User = v_name AND Host = '%' AND Role = role_name) THEN
        CALL dbum_execute(CONCAT('REVOKE `', REPLACE(role_name, '`', '``'), '` FROM ', dbum_account(v_name)));
    END IF;
    INSERT INTO dbum_audit_log(message) VALUES (CONCAT('Revoked Role ', role_name, ' from User ', v_name));
END //

DELIMITER ;
