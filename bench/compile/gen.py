#!/usr/bin/env python3
"""Generate a large, valid provflow bundle for the compile-speed benchmark.

    gen.py OUTDIR [--scale K] [--preset standard|long] [--schema PATH]

Scale 1 is 1,000 groups. Each group is one DBUM-style database account type:

  groups/NN/group-IIIII.yaml      Target + ConnectorQueries (20 queries) + Process (40 tasks)
  notifications/NN/notify-IIIII.yaml
                                  NotificationEvent + 2 NotificationTemplates (en-US, fr-FR)

so scale 1 is 2,000 files and 6,000 documents (1,000 of each of Target, ConnectorQueries,
Process, NotificationEvent; 2,000 NotificationTemplate). Scale K is K times that; group I has
the same content at every scale, so scale 10 is exactly ten times the work of scale 1.

`--preset long` writes the same groups with longer processes: each has 60 more tasks (100 in
all) half manual reviews, half with adapters, responses and some retries, all chained by `depends_on`; the 40
tasks of the standard preset are unchanged, byte for byte. Scale 1 is then about 49 MB.

Output is deterministic (no clocks, no hash ordering, a seeded PRNG per group). OUTDIR gets a
`manifest.json` with the generator's hash, the scale and the counts; a directory that already
holds a manifest is wiped before writing, any other non-empty directory is refused.

Only the Python 3 standard library is used.
"""

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import sys

GROUPS_PER_SCALE = 1000
STANDARD_TASKS = 40
LONG_EXTRA_TASKS = 60  # `--preset long`: tasks added to each process
FILES_PER_DIR = 100
SQLITE_EVERY = 5  # every 5th query set (and its target) uses the sqlite dialect

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# --------------------------------------------------------------------------------------------
# A tiny YAML emitter: plain scalars when unambiguous, JSON-style double quotes otherwise.
# --------------------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_ ./\-]*$")
_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "none"}


def s(value):
    """A scalar in YAML, safe in block and flow context."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if (
        _PLAIN.match(text)
        and text == text.strip()
        and text.lower() not in _RESERVED
        and "  " not in text
    ):
        return text
    return json.dumps(text, ensure_ascii=False)


def flow(mapping):
    """A flow mapping `{ k: v, ... }` of scalars or lists of scalars."""
    parts = []
    for key, value in mapping.items():
        parts.append(f"{s(key)}: {flow_value(value)}")
    return "{ " + ", ".join(parts) + " }"


def flow_value(value):
    if isinstance(value, dict):
        return flow(value)
    if isinstance(value, list):
        return "[" + ", ".join(flow_value(v) for v in value) + "]"
    return s(value)


def block_text(text, indent):
    """A `|` block scalar; `text` must end with a newline."""
    pad = " " * indent
    lines = text.rstrip("\n").split("\n")
    return "|\n" + "".join((pad + line if line else "") + "\n" for line in lines)


# --------------------------------------------------------------------------------------------
# Vocabulary (deterministic variety)
# --------------------------------------------------------------------------------------------

DEPARTMENTS = [
    "Finance", "Payroll", "Logistics", "Procurement", "Human Resources", "Treasury",
    "Claims", "Underwriting", "Research", "Marketing", "Customer Care", "Compliance",
    "Risk", "Warehouse", "Billing", "Engineering",
]
SYSTEMS = [
    "General Ledger", "Order Entry", "Inventory", "Time Sheets", "Contracts", "Invoicing",
    "Data Warehouse", "Case Management", "Policy Admin", "Asset Register", "Pricing",
    "Shipping", "Reporting", "Forecasting",
]
TABLESPACES = ["USERS", "APP_DATA", "FIN_DATA", "HR_DATA", "REPORTING", "STAGING"]
PROFILES = ["DEFAULT", "APP_USER", "BATCH", "REPORTING", "SERVICE"]
ROLES = ["APP_READ", "APP_WRITE", "APP_REPORT", "APP_ADMIN", "APP_AUDIT"]
TEAMS = ["DBA Operations", "Application Support", "Identity Governance", "Service Desk"]


# --------------------------------------------------------------------------------------------
# Form fields: name -> (type, label, extra)
# --------------------------------------------------------------------------------------------

def form_fields(rng):
    return [
        ("username", "String", "User Name", {"required": True, "from": "user.usr_login"}),
        ("password", "GuardedString", "Password", {"required": True}),
        ("profile", "String", "Profile", {"default": rng.choice(PROFILES)}),
        ("tablespace", "String", "Default Tablespace", {"default": rng.choice(TABLESPACES)}),
        ("temp_tablespace", "String", "Temporary Tablespace", {"default": "TEMP"}),
        ("quota", "Long", "Quota MB", {"required": True}),
        ("first_name", "String", "First Name", {"from": "user.usr_first_name"}),
        ("last_name", "String", "Last Name", {"from": "user.usr_last_name"}),
        ("locked", "Boolean", "Account Locked", {}),
        ("expiry", "Date", "Password Expiry", {}),
        ("max_sessions", "Integer", "Max Sessions", {}),
        ("weight", "Double", "Resource Weight", {}),
        ("valid_from", "Timestamp", "Valid From", {}),
        ("cost_center", "String", "Cost Center", {"default": "CC-%04d" % rng.randrange(10000)}),
    ]


# --------------------------------------------------------------------------------------------
# Connector queries: 20 per set. Each entry:
#   name -> dict(pg=query, lite=query, params=[(name, type, tags)], proc=(name, [param names]))
# `call` queries on sqlite get an emulated procedure of the same arity under `procedures:`.
# --------------------------------------------------------------------------------------------

N, PW = "__NAME__", "__PASSWORD__"


def P(name, typ, tags=None):
    return (name, typ, tags or [])


QUERIES = [
    ("CREATE_USER", dict(
        desc="Create the database user with its profile, tablespace and quota",
        call="create_user",
        params=[P(N, "String"), P(PW, "GuardedString"), P("__PROFILE__", "String"),
                P("__TABLESPACE__", "String"), P("__QUOTA__", "Long")],
        proc=["usr", "pwd", "profile", "ts", "quota"],
        proc_body=("INSERT INTO db_users(username, password, profile, tablespace, quota_mb, enabled)\n"
                   "  VALUES (:usr, :pwd, :profile, :ts, :quota, 1);\n"
                   "INSERT INTO audit_log(message) VALUES ('Added User ' || :usr);\n"),
        pg_errors={"23505": "DUPLICATE", "42939": "RESERVED_NAME"},
    )),
    ("GRANT_CONNECT", dict(
        desc="Allow the user to connect to the application database",
        pg="GRANT CONNECT ON DATABASE {__DATABASE__} TO {__NAME__}",
        lite="INSERT INTO db_grants(username, privilege, object_name) VALUES ({__NAME__}, 'CONNECT', {__DATABASE__})",
        params=[P("__DATABASE__", "String", ["IDENTIFIER"]), P(N, "String", ["IDENTIFIER"])],
        lite_params=[P("__DATABASE__", "String"), P(N, "String")],
    )),
    ("DELETE_USER", dict(
        desc="Drop the database user and everything it owns",
        call="drop_user",
        params=[P(N, "String")],
        proc=["usr"],
        proc_body=("DELETE FROM db_grants WHERE username = :usr;\n"
                   "DELETE FROM db_users WHERE username = :usr;\n"
                   "INSERT INTO audit_log(message) VALUES ('Dropped User ' || :usr);\n"),
        pg_errors={"42704": "NO_SUCH_USER"},
    )),
    ("ENABLE_USER", dict(
        desc="Allow the user to log in again",
        pg="ALTER ROLE {__NAME__} LOGIN",
        lite="UPDATE db_users SET enabled = 1 WHERE username = {__NAME__}",
        params=[P(N, "String", ["IDENTIFIER"])],
        lite_params=[P(N, "String")],
        idempotent=True,
    )),
    ("DISABLE_USER", dict(
        desc="Prevent the user from logging in",
        pg="ALTER ROLE {__NAME__} NOLOGIN",
        lite="UPDATE db_users SET enabled = 0 WHERE username = {__NAME__}",
        params=[P(N, "String", ["DOUBLEQUOTES"])],
        lite_params=[P(N, "String")],
        idempotent=True,
    )),
    ("RESET_PASSWORD", dict(
        desc="Set a new password; the procedure answers with a response code",
        call="reset_password",
        params=[P(N, "String"), P(PW, "GuardedString")],
        proc=["usr", "pwd"],
        proc_body="UPDATE db_users SET password = :pwd WHERE username = :usr;\n",
        pg_outputs={"response": "String"},
        pg_errors={"42704": "NO_SUCH_USER", "28P01": "PASSWORD_REJECTED"},
    )),
    ("GRANT_ROLE", dict(
        desc="Grant an application role",
        call="grant_role",
        params=[P(N, "String"), P("__ROLE__", "String")],
        proc=["usr", "role"],
        proc_body="INSERT INTO db_grants(username, privilege, object_name) VALUES (:usr, :role, 'ROLE');\n",
        pg_errors={"42704": "NO_SUCH_ROLE"},
    )),
    ("REVOKE_ROLE", dict(
        desc="Revoke an application role",
        call="revoke_role",
        params=[P(N, "String"), P("__ROLE__", "String")],
        proc=["usr", "role"],
        proc_body="DELETE FROM db_grants WHERE username = :usr AND privilege = :role AND object_name = 'ROLE';\n",
        idempotent=True,
    )),
    ("SET_PROFILE", dict(
        desc="Attach a resource profile",
        call="set_profile",
        params=[P(N, "String"), P("__PROFILE__", "String")],
        proc=["usr", "profile"],
        proc_body="UPDATE db_users SET profile = :profile WHERE username = :usr;\n",
        idempotent=True,
    )),
    ("SET_QUOTA", dict(
        desc="Set the quota on a tablespace",
        call="set_quota",
        params=[P(N, "String"), P("__TABLESPACE__", "String"), P("__QUOTA__", "Long")],
        proc=["usr", "ts", "quota"],
        proc_body="UPDATE db_users SET tablespace = :ts, quota_mb = :quota WHERE username = :usr;\n",
        idempotent=True,
    )),
    ("SET_TABLESPACE", dict(
        desc="Set the default and temporary tablespaces",
        call="set_tablespaces",
        params=[P(N, "String"), P("__TABLESPACE__", "String"), P("__TEMP_TABLESPACE__", "String")],
        proc=["usr", "ts", "temp_ts"],
        proc_body="UPDATE db_users SET tablespace = :ts, temp_tablespace = :temp_ts WHERE username = :usr;\n",
        idempotent=True,
    )),
    ("LOCK_USER", dict(
        desc="Lock or unlock the account",
        call="set_locked",
        params=[P(N, "String"), P("__LOCKED__", "Boolean")],
        proc=["usr", "locked"],
        proc_body="UPDATE db_users SET locked = :locked WHERE username = :usr;\n",
        idempotent=True,
    )),
    ("SET_EXPIRY", dict(
        desc="Set the password expiry date",
        call="set_password_expiry",
        params=[P(N, "String"), P("__EXPIRY__", "Date")],
        proc=["usr", "expiry"],
        proc_body="UPDATE db_users SET password_expiry = :expiry WHERE username = :usr;\n",
        idempotent=True,
    )),
    ("SET_SESSIONS", dict(
        desc="Limit the number of concurrent sessions",
        call="set_session_limit",
        params=[P(N, "String"), P("__LIMIT__", "Integer")],
        proc=["usr", "max_sessions"],
        proc_body="UPDATE db_users SET max_sessions = :max_sessions WHERE username = :usr;\n",
        idempotent=True,
    )),
    ("UPDATE_NAMES", dict(
        desc="Copy the user's first and last name into the account comment",
        call="update_names",
        params=[P(N, "String"), P("__FIRST__", "String"), P("__LAST__", "String")],
        proc=["usr", "first_name", "last_name"],
        proc_body="UPDATE db_users SET first_name = :first_name, last_name = :last_name WHERE username = :usr;\n",
        idempotent=True,
    )),
    ("GRANT_PRIVILEGE", dict(
        desc="Grant an object privilege",
        call="grant_privilege",
        params=[P(N, "String"), P("__PRIVILEGE__", "String"), P("__OBJECT__", "String")],
        proc=["usr", "privilege", "object_name"],
        proc_body="INSERT INTO db_grants(username, privilege, object_name) VALUES (:usr, :privilege, :object_name);\n",
        pg_errors={"42P01": "NO_SUCH_OBJECT", "42501": "NOT_ALLOWED"},
    )),
    ("REVOKE_PRIVILEGE", dict(
        desc="Revoke an object privilege",
        call="revoke_privilege",
        params=[P(N, "String"), P("__PRIVILEGE__", "String"), P("__OBJECT__", "String")],
        proc=["usr", "privilege", "object_name"],
        proc_body=("DELETE FROM db_grants\n"
                   "  WHERE username = :usr AND privilege = :privilege AND object_name = :object_name;\n"),
        idempotent=True,
    )),
    ("AUDIT_EVENT", dict(
        desc="Write an audit record in the application's own log",
        pg=("insert into app_audit(username, message, cost_center, logged_on) "
            "values ({__NAME__}, {__MESSAGE__}, {__COST_CENTER__}, {__DATE__})"),
        lite=("INSERT INTO audit_log(message, cost_center, logged_on) "
              "VALUES ({__NAME__} || ': ' || {__MESSAGE__}, {__COST_CENTER__}, {__DATE__})"),
        params=[P(N, "String"), P("__MESSAGE__", "String"), P("__COST_CENTER__", "String"),
                P("__DATE__", "Date")],
    )),
    ("SEARCH_USER", dict(
        desc="Accounts as the target sees them, for reconciliation",
        pg=("select rolname as username, rolcanlogin as enabled, coalesce(rolconnlimit, -1) as max_sessions "
            "from pg_roles where rolname like {pattern}"),
        lite="SELECT username, enabled, max_sessions FROM db_users WHERE username LIKE {pattern}",
        params=[P("pattern", "String")],
        columns={"username": "String", "enabled": "Boolean", "max_sessions": "Integer"},
    )),
    ("SET_WEIGHT", dict(
        desc="Record the licence weight of the account and when it becomes valid",
        call="set_weight",
        params=[P(N, "String"), P("__WEIGHT__", "Double"), P("__VALID_FROM__", "Timestamp")],
        proc=["usr", "weight", "valid_from"],
        proc_body="UPDATE db_users SET weight = :weight, valid_from = :valid_from WHERE username = :usr;\n",
        idempotent=True,
    )),
]
assert len(QUERIES) == 20
QUERY = dict(QUERIES)


def query_set_doc(name, dialect):
    pg = dialect == "postgres"
    out = [
        "apiVersion: provflow/v1\n",
        "kind: ConnectorQueries\n",
        f"name: {s(name)}\n",
        f"dialect: {dialect}\n",
        "queries:\n",
    ]
    procedures = []
    for qname, q in QUERIES:
        params = q["params"] if pg else q.get("lite_params", q["params"])
        outputs = q.get("pg_outputs") if pg else None
        if "call" in q:
            args = ["{%s}" % p[0] for p in params] + ["{%s}" % o for o in (outputs or {})]
            text = "call %s(%s)" % (q["call"], ", ".join(args))
            if not pg:
                procedures.append((q["call"], q["proc"], q["proc_body"]))
                assert len(q["proc"]) == len(args), qname
        else:
            text = q["pg"] if pg else q["lite"]
        out.append(f"  {qname}:\n")
        out.append(f"    # {q['desc']}\n")
        out.append(f"    query: {s(text)}\n")
        out.append("    params:\n")
        for pname, ptype, tags in params:
            if tags:
                out.append(f"      {pname}: {flow({'type': ptype, 'tags': tags})}\n")
            else:
                out.append(f"      {pname}: {ptype}\n")
        if outputs:
            out.append(f"    outputs: {flow(outputs)}\n")
            out.append(f"    response_from: {next(iter(outputs))}\n")
        errors = q.get("pg_errors") if pg else None
        if errors:
            out.append(f"    errors: {flow(errors)}\n")
        if "columns" in q:
            out.append(f"    columns: {flow(q['columns'])}\n")
        if q.get("idempotent"):
            out.append("    idempotent: true\n")
    if procedures:
        out.append("procedures:\n")
        for pname, pparams, body in procedures:
            out.append(f"  {pname}:\n")
            out.append(f"    params: {flow_value(pparams)}\n")
            out.append("    body: " + block_text(body, 6))
    return "".join(out)


def response_codes(qname, dialect):
    """The response codes a query can produce on this dialect, besides SUCCESS and UNKNOWN."""
    if dialect != "postgres":
        return []
    q = QUERY[qname]
    codes = list(q.get("pg_errors", {}).values())
    if q.get("pg_outputs"):
        codes.append("PASSWORD_REUSED")  # a value the procedure itself returns
    return codes


# --------------------------------------------------------------------------------------------
# The process: 40 tasks (100 with `--preset long`)
# --------------------------------------------------------------------------------------------

def build_tasks(ix, rng, dialect, templates, long=False):
    created_tpl, revoked_tpl = templates
    full_map = {
        "CREATE_USER": {N: "form.username", PW: "form.password", "__PROFILE__": "form.profile",
                        "__TABLESPACE__": "form.tablespace", "__QUOTA__": "form.quota"},
        "GRANT_CONNECT": {"__DATABASE__": "target.database", N: "form.username"},
        "DELETE_USER": {N: "form.username"},
        "ENABLE_USER": {N: "form.username"},
        "DISABLE_USER": {N: "form.username"},
        "RESET_PASSWORD": {N: "form.username", PW: "form.password"},
        "SET_PROFILE": {N: "form.username", "__PROFILE__": "form.profile"},
        "SET_QUOTA": {N: "form.username", "__TABLESPACE__": "form.tablespace", "__QUOTA__": "form.quota"},
        "SET_TABLESPACE": {N: "form.username", "__TABLESPACE__": "form.tablespace",
                           "__TEMP_TABLESPACE__": "form.temp_tablespace"},
        "LOCK_USER": {N: "form.username", "__LOCKED__": "form.locked"},
        "SET_EXPIRY": {N: "form.username", "__EXPIRY__": "form.expiry"},
        "SET_SESSIONS": {N: "form.username", "__LIMIT__": "form.max_sessions"},
        "UPDATE_NAMES": {N: "form.username", "__FIRST__": "form.first_name", "__LAST__": "form.last_name"},
        "SET_WEIGHT": {N: "form.username", "__WEIGHT__": "form.weight", "__VALID_FROM__": "form.valid_from"},
    }

    def adapter(qname, **override):
        m = dict(full_map.get(qname, {}))
        m.update(override)
        return {"query": qname, "map": m}

    def audit(message):
        return adapter("AUDIT_EVENT", **{N: "form.username", "__MESSAGE__": "literal:" + message,
                                         "__COST_CENTER__": "form.cost_center", "__DATE__": "system.date"})

    def responses(qname, success_desc, generate=None, extra=None):
        r = {"SUCCESS": {"description": success_desc, "status": "Completed"}}
        if generate:
            r["SUCCESS"]["generate"] = generate
        for code in response_codes(qname, dialect):
            r[code] = {"description": code.replace("_", " ").capitalize(), "status": "Rejected"}
        if extra:
            r.update(extra)
        r["UNKNOWN"] = {"description": "Unexpected error from the target", "status": "Rejected"}
        return r

    retry = lambda: {"count": rng.choice([2, 3, 5]), "period_minutes": rng.choice([5, 15, 30, 60])}
    team = rng.choice(TEAMS)
    T = {}

    # --- provisioning path (inserted when the account is provisioned) -----------------------
    cu_resp = responses("CREATE_USER", "User created", generate=["Audit Creation", "Grant Default Role"])
    if "DUPLICATE" in cu_resp:
        cu_resp["DUPLICATE"] = {"description": "A user of that name already exists", "status": "Rejected"}
    if "RESERVED_NAME" in cu_resp:
        cu_resp["RESERVED_NAME"] = {"description": "The name is reserved by the database",
                                    "status": "Unsuccessfully Completed"}
    T["Create User"] = dict(
        description="Create the database user with the password, profile and quota from the form",
        required_for_completion=True, disable_manual_insert=True,
        adapter=adapter("CREATE_USER"), responses=cu_resp, retry=retry(),
        undo=["Delete User"], recovery=["Manual Cleanup"], complete_on_recovery=False,
        status_map={"Completed": "Provisioned", "Rejected": "Provide Information", "Cancelled": "Revoked"},
        notify={"Completed": created_tpl},
    )
    T["Grant Connect"] = dict(
        description="Grant CONNECT on the application database",
        required_for_completion=True, depends_on=["Create User"],
        adapter=adapter("GRANT_CONNECT"), responses=responses("GRANT_CONNECT", "Connect granted"),
        retry=retry(), undo=["Revoke Connect"],
    )
    T["Set Tablespace"] = dict(
        description="Set default and temporary tablespaces", depends_on=["Create User"],
        adapter=adapter("SET_TABLESPACE"), responses=responses("SET_TABLESPACE", "Tablespaces set"),
    )
    T["Set Quota"] = dict(
        description="Set the quota on the default tablespace", required_for_completion=True,
        depends_on=["Create User", "Set Tablespace"],
        adapter=adapter("SET_QUOTA"), responses=responses("SET_QUOTA", "Quota set"), retry=retry(),
    )
    T["Set Profile"] = dict(
        description="Attach the resource profile", depends_on=["Create User"],
        adapter=adapter("SET_PROFILE"), responses=responses("SET_PROFILE", "Profile attached"),
    )
    T["Set Session Limit"] = dict(
        description="Limit concurrent sessions", depends_on=["Set Profile"],
        adapter=adapter("SET_SESSIONS"), responses=responses("SET_SESSIONS", "Limit set"),
        undo=["Restore Session Limit"],
    )
    T["Set Password Expiry"] = dict(
        description="Set when the initial password expires", depends_on=["Create User"],
        adapter=adapter("SET_EXPIRY"), responses=responses("SET_EXPIRY", "Expiry set"),
    )
    T["Sync Names"] = dict(
        description="Copy first and last name to the account", depends_on=["Create User"],
        adapter=adapter("UPDATE_NAMES"), responses=responses("UPDATE_NAMES", "Names copied"),
    )
    T["Set Resource Weight"] = dict(
        description="Record the licence weight", depends_on=["Set Quota"],
        adapter=adapter("SET_WEIGHT"), responses=responses("SET_WEIGHT", "Weight recorded"),
    )
    T["Verify Account"] = dict(
        description="A DBA checks the new account against the request and completes this task",
        manual=True, assignee=team, duration=rng.choice(["2h", "4h", "1d"]),
        required_for_completion=True, allow_cancellation_while_pending=True,
        depends_on=["Grant Connect", "Set Profile", "Set Quota"],
        responses={"SUCCESS": {"description": "Checked", "status": "Completed"},
                   "DENIED": {"description": "The DBA refused the account", "status": "Rejected"}},
        status_map={"Completed": "Provisioned"},
    )
    T["Send Welcome"] = dict(
        description="Record the hand-over to the user",
        depends_on=["Verify Account", "Set Resource Weight", "Sync Names", "Set Password Expiry",
                    "Set Session Limit"],
        adapter=audit("Account handed over"), responses=responses("AUDIT_EVENT", "Recorded"),
    )

    # --- conditional tasks generated by responses, undo and recovery ---------------------------
    T["Audit Creation"] = dict(
        description="Record the creation in the application's audit log",
        conditional=True, condition="user.usr_status == 'Active'",
        adapter=audit("Account created"), responses=responses("AUDIT_EVENT", "Recorded"),
        undo=["Audit Revocation"],
    )
    T["Grant Default Role"] = dict(
        description="Grant the target's default application role",
        conditional=True, condition="form.profile != 'SERVICE'",
        adapter=adapter("GRANT_ROLE", **{N: "form.username", "__ROLE__": "target.default_role"}),
        responses=responses("GRANT_ROLE", "Role granted"), retry=retry(),
        undo=["Revoke Default Role"],
    )
    T["Revoke Default Role"] = dict(
        description="Revoke the default role again", conditional=True,
        adapter=adapter("REVOKE_ROLE", **{N: "form.username", "__ROLE__": "target.default_role"}),
        responses=responses("REVOKE_ROLE", "Role revoked"),
    )
    T["Audit Revocation"] = dict(
        description="Record the revocation", conditional=True,
        adapter=audit("Account revoked"), responses=responses("AUDIT_EVENT", "Recorded"),
    )
    T["Delete User"] = dict(
        description="Drop the database user", conditional=True,
        adapter=adapter("DELETE_USER"),
        responses=responses("DELETE_USER", "User dropped"),
        status_map={"Completed": "Revoked"}, notify={"Completed": revoked_tpl}, retry=retry(),
    )
    if "NO_SUCH_USER" in T["Delete User"]["responses"]:
        T["Delete User"]["responses"]["NO_SUCH_USER"] = {
            "description": "The user was already gone", "status": "Completed"}
    T["Revoke Connect"] = dict(
        description="Revoke CONNECT on the application database", conditional=True,
        adapter=adapter("REVOKE_PRIVILEGE", **{N: "form.username", "__PRIVILEGE__": "literal:CONNECT",
                                               "__OBJECT__": "target.database"}),
        responses=responses("REVOKE_PRIVILEGE", "Connect revoked"),
    )
    T["Restore Session Limit"] = dict(
        description="Put the session limit back", conditional=True,
        adapter=adapter("SET_SESSIONS"), responses=responses("SET_SESSIONS", "Limit restored"),
    )
    T["Manual Cleanup"] = dict(
        description="Creation failed: a DBA removes leftovers by hand", conditional=True,
        manual=True, assignee=team, duration="1d",
        status_map={"Completed": "Provide Information"},
    )

    # --- effects (user enable / disable) -----------------------------------------------------
    T["Enable User"] = dict(
        description="Allow the user to log in", conditional=True, effect="enables",
        adapter=adapter("ENABLE_USER"), responses=responses("ENABLE_USER", "User enabled"),
        status_map={"Completed": "Enabled"}, retry=retry(),
    )
    T["Disable User"] = dict(
        description="Prevent the user from logging in", conditional=True, effect="disables",
        adapter=adapter("DISABLE_USER"), responses=responses("DISABLE_USER", "User disabled"),
        status_map={"Completed": "Disabled"}, retry=retry(),
    )
    T["Unlock Account"] = dict(
        description="Unlock the account when the user is enabled", conditional=True, effect="enables",
        allow_cancellation_while_pending=True,
        adapter=adapter("LOCK_USER", **{N: "form.username", "__LOCKED__": "form.locked"}),
        responses=responses("LOCK_USER", "Unlocked"),
    )
    T["Expire Password"] = dict(
        description="Expire the password when the user is disabled", conditional=True, effect="disables",
        adapter=adapter("SET_EXPIRY", **{N: "form.username", "__EXPIRY__": "system.date"}),
        responses=responses("SET_EXPIRY", "Password expired"),
    )

    # --- "<label> Updated" tasks (form field changes; two are also user triggers) ------------
    pw_resp = responses("RESET_PASSWORD", "Password changed")
    if "PASSWORD_REUSED" in pw_resp:
        pw_resp["PASSWORD_REUSED"] = {"description": "The password was used before", "status": "Rejected"}
    T["Password Updated"] = dict(
        description="Set the new password on the target", conditional=True,
        adapter=adapter("RESET_PASSWORD"), responses=pw_resp, retry=retry(),
    )
    for label, qname, ok in [
        ("Profile", "SET_PROFILE", "Profile changed"),
        ("Quota MB", "SET_QUOTA", "Quota changed"),
        ("Default Tablespace", "SET_TABLESPACE", "Tablespace changed"),
        ("Temporary Tablespace", "SET_TABLESPACE", "Temporary tablespace changed"),
        ("Account Locked", "LOCK_USER", "Lock state changed"),
        ("Password Expiry", "SET_EXPIRY", "Expiry changed"),
        ("Max Sessions", "SET_SESSIONS", "Session limit changed"),
        ("First Name", "UPDATE_NAMES", "Names updated"),
        ("Last Name", "UPDATE_NAMES", "Names updated"),
        ("Resource Weight", "SET_WEIGHT", "Weight changed"),
        ("Valid From", "SET_WEIGHT", "Validity changed"),
    ]:
        T[f"{label} Updated"] = dict(
            description=f"Propagate a change of {label.lower()} to the target", conditional=True,
            adapter=adapter(qname), responses=responses(qname, ok),
        )
    T["Cost Center Updated"] = dict(
        description="Record the new cost center", conditional=True,
        adapter=audit("Cost center changed"), responses=responses("AUDIT_EVENT", "Recorded"),
    )

    # --- child-table tasks -------------------------------------------------------------------
    T["Add Role"] = dict(
        description="Grant a role from the roles child table", conditional=True,
        allow_multiple_instances=True,
        adapter=adapter("GRANT_ROLE", **{N: "form.username", "__ROLE__": "child.role"}),
        responses=responses("GRANT_ROLE", "Role granted"),
    )
    T["Revoke Role"] = dict(
        description="Revoke a role removed from the child table", conditional=True,
        allow_multiple_instances=True,
        adapter=adapter("REVOKE_ROLE", **{N: "form.username", "__ROLE__": "child.role"}),
        responses=responses("REVOKE_ROLE", "Role revoked"),
    )
    T["Grant Privilege"] = dict(
        description="Grant an object privilege from the privileges child table", conditional=True,
        allow_multiple_instances=True,
        adapter=adapter("GRANT_PRIVILEGE", **{N: "form.username", "__PRIVILEGE__": "child.privilege",
                                              "__OBJECT__": "child.object_name"}),
        responses=responses("GRANT_PRIVILEGE", "Privilege granted"),
    )
    T["Revoke Privilege"] = dict(
        description="Revoke an object privilege removed from the child table", conditional=True,
        allow_multiple_instances=True,
        adapter=adapter("REVOKE_PRIVILEGE", **{N: "form.username", "__PRIVILEGE__": "child.privilege",
                                               "__OBJECT__": "child.object_name"}),
        responses=responses("REVOKE_PRIVILEGE", "Privilege revoked"),
    )
    assert len(T) == STANDARD_TASKS, len(T)
    if long:
        long_tasks(ix, T, adapter, responses)
        assert len(T) == STANDARD_TASKS + LONG_EXTRA_TASKS, len(T)
    return T


# --------------------------------------------------------------------------------------------
# `--preset long`: more tasks per process, with long descriptions
# --------------------------------------------------------------------------------------------

LONG_PHRASES = [
    "reviewed at each quarterly access recertification",
    "repeated when the target reports a transient failure",
    "the audit trail records the request and its approval",
    "a failure flags the account for the next reconciliation",
    "runs with the service account's privileges only",
    "visible once the application's connection pool recycles",
    "kept seven years after the account is removed",
    "operators may retry it by hand from the task console",
]
LONG_OBJECTS = ["orders", "invoices", "ledger_entries", "customers", "shipments", "contracts",
                "price_lists", "time_entries", "cases", "assets", "forecasts", "reports"]
LONG_PRIVILEGES = ["SELECT", "INSERT", "UPDATE", "DELETE"]


def long_description(rng, head):
    return f"{head}: {rng.choice(LONG_PHRASES)}."


def long_tasks(ix, T, adapter, responses):
    """`LONG_EXTRA_TASKS` more tasks for `--preset long`, added after the standard ones.

    A separate generator keeps the standard tasks identical to the standard preset's. The new
    tasks are not conditional (so reachable), each depends on the one before; half are manual
    reviews, half call the queries with the mappings the standard tasks already use."""
    rng = random.Random(0x10C0DE ^ (ix * 40503))
    previous = "Send Welcome"
    for n in range(1, LONG_EXTRA_TASKS + 1):
        kind = n % 4
        if kind == 0:
            obj = f"app.{rng.choice(LONG_OBJECTS)}_{n:02d}"
            priv = rng.choice(LONG_PRIVILEGES)
            name = f"Grant {priv.title()} On {obj.split('.')[1].replace('_', ' ').title()}"
            task = dict(
                description=long_description(rng, f"Grant {priv} on {obj}"),
                adapter=adapter("GRANT_PRIVILEGE", **{N: "form.username", "__PRIVILEGE__": "literal:" + priv,
                                                      "__OBJECT__": "literal:" + obj}),
                responses=responses("GRANT_PRIVILEGE", f"{priv} on {obj} granted"),
            )
        elif kind == 2:
            name = f"Reapply Profile {n:02d}"
            task = dict(
                description=long_description(rng, "Apply the resource profile again"),
                adapter=adapter("SET_PROFILE"),
                responses=responses("SET_PROFILE", "Profile applied"),
            )
        else:
            name = f"Review Step {n:02d}"
            task = dict(
                description=long_description(rng, f"A DBA reviews step {n}"),
                manual=True, assignee=rng.choice(TEAMS), duration=rng.choice(["2h", "4h", "1d"]),
            )
        if name in T:
            name = f"{name} ({n:02d})"
        task["depends_on"] = [previous]
        if "adapter" in task and n % 3 == 0:
            task["retry"] = {"count": rng.choice([2, 3, 5]), "period_minutes": rng.choice([5, 15, 30, 60])}
        T[name] = task
        previous = name


TASK_KEY_ORDER = [
    "description", "manual", "assignee", "duration", "conditional", "condition", "effect",
    "required_for_completion", "disable_manual_insert", "allow_cancellation_while_pending",
    "allow_multiple_instances", "depends_on", "adapter", "responses", "retry", "undo", "recovery",
    "complete_on_recovery", "status_map", "notify",
]


def process_doc(ix, rng, process_name, target_name, dialect, templates, long=False):
    dept = rng.choice(DEPARTMENTS)
    system = rng.choice(SYSTEMS)
    out = [
        "apiVersion: provflow/v1\n",
        "kind: Process\n",
        f"name: {s(process_name)}\n",
        f"# {dept} / {system}: database accounts on {target_name}\n",
        "type: provisioning\n",
        f"object: {s(process_name)}\n",
        "default: true\n",
        f"target: {s(target_name)}\n",
        "form:\n",
        f"  table: UD_DB{ix:05d}\n",
        "  auto_save: true\n",
        "  fields:\n",
    ]
    for fname, ftype, label, extra in form_fields(rng):
        out.append(f"    {fname}: {flow({'type': ftype, 'label': label, **extra})}\n")
    out += [
        "  child_tables:\n",
        "    roles:\n",
        "      fields: { role: String }\n",
        "      on_insert: Add Role\n",
        "      on_delete: Revoke Role\n",
        "    privileges:\n",
        "      fields: { privilege: String, object_name: String }\n",
        "      on_insert: Grant Privilege\n",
        "      on_delete: Revoke Privilege\n",
        "tasks:\n",
    ]
    for tname, task in build_tasks(ix, rng, dialect, templates, long).items():
        assert set(task) <= set(TASK_KEY_ORDER), set(task) - set(TASK_KEY_ORDER)
        out.append(f"  {s(tname)}:\n")
        for key in TASK_KEY_ORDER:
            if key not in task:
                continue
            value = task[key]
            if key == "adapter":
                out.append("    adapter:\n")
                out.append(f"      query: {value['query']}\n")
                out.append(f"      map: {flow(value['map'])}\n")
            elif key == "responses":
                out.append("    responses:\n")
                for code, resp in value.items():
                    out.append(f"      {code}: {flow(resp)}\n")
            else:
                out.append(f"    {key}: {flow_value(value)}\n")
    out += [
        "triggers:\n",
        "  usr_first_name: First Name Updated\n",
        "  usr_last_name: Last Name Updated\n",
        "recon:\n",
        "  query: SEARCH_USER\n",
        "  fields:\n",
        "    username: { type: String, maps_to: form.username, key: true, case_insensitive: true }\n",
        "    enabled: { type: Boolean, maps_to: OIM_OBJECT_STATUS, values: { \"true\": Enabled, \"false\": Disabled } }\n",
        "    max_sessions: { type: Integer, maps_to: form.max_sessions }\n",
        "  actions: { no_match: none, one_entity_match: link, one_process_match: update, multiple_matches: none }\n",
    ]
    return "".join(out), dept, system


def target_doc(ix, rng, target_name, dialect, qs_name):
    return "".join([
        "apiVersion: provflow/v1\n",
        "kind: Target\n",
        f"name: {target_name}\n",
        f"dialect: {dialect}\n",
        f"queries: {qs_name}\n",
        "connection:\n",
        f"  url_env: DBUM_{ix:05d}_URL\n",
        "properties:\n",
        f"  database: app_{ix:05d}\n",
        f"  default_role: {rng.choice(ROLES)}\n",
        f"  default_tablespace: {rng.choice(TABLESPACES).lower()}\n",
        f"  owner: {s(rng.choice(TEAMS))}\n",
    ])


# --------------------------------------------------------------------------------------------
# Notifications: one event and two templates per group
# --------------------------------------------------------------------------------------------

def event_doc(event_name, with_resolver):
    out = [
        "apiVersion: provflow/v1\n",
        "kind: NotificationEvent\n",
        f"name: {s(event_name)}\n",
        "static_data:\n",
        "  - { name: Granted User, entity: User }\n",
    ]
    if with_resolver:
        out += [
            "resolver:\n",
            "  target: state\n",
            '  query: "select count(*) as Account_Count from accounts where usr_key = {usr_key}"\n',
            "  params: { usr_key: Long }\n",
            "  provides: { Account_Count: Long }\n",
        ]
    return "".join(out)


def template_doc(tpl_name, event_name, process_name, dept, system, created, with_resolver):
    count_en = ("      {% if Account_Count > 1 %}<p>You now hold {{ Account_Count }} database accounts.</p>{% endif %}\n"
                if with_resolver else "")
    count_fr = ("      {% if Account_Count > 1 %}<p>Vous détenez désormais {{ Account_Count }} comptes.</p>{% endif %}\n"
                if with_resolver else "")
    out = [
        "apiVersion: provflow/v1\n",
        "kind: NotificationTemplate\n",
        f"name: {s(tpl_name)}\n",
        f"event: {s(event_name)}\n",
        "default_locale: en-US\n",
        "locales:\n",
    ]
    if created:
        out += [
            "  en-US:\n",
            "    encoding: UTF-8\n",
            "    type: html\n",
            f"    subject: {s('Your ' + process_name + ' account is ready, {{ Granted_User.First_Name }}')}\n",
            f"    short: {s('Account ready for {{ First_Name }} {{ Last_Name }}')}\n",
            "    long: |\n",
            "      <p>Hello $First_Name,</p>\n",
            f"      <p>Your account for {system} ({dept}) was provisioned on the database.</p>\n",
            "      <p>Log in with your user name; you will be asked to change the initial password.</p>\n",
            count_en,
            "      <p>Questions? Contact the service desk and quote {{ Granted_User.Last_Name | upper }}.</p>\n",
            "  fr-FR:\n",
            "    encoding: UTF-8\n",
            "    type: html\n",
            f"    subject: {s('Votre compte ' + process_name + ' est prêt, {{ Granted_User.First_Name }}')}\n",
            f"    short: {s('Compte prêt pour {{ First_Name }} {{ Last_Name }}')}\n",
            "    long: |\n",
            "      <p>Bonjour $First_Name,</p>\n",
            f"      <p>Votre compte pour {system} ({dept}) a été créé sur la base de données.</p>\n",
            "      <p>Connectez-vous avec votre identifiant ; le mot de passe initial devra être changé.</p>\n",
            count_fr,
            "      <p>Des questions ? Contactez le support en citant {{ Granted_User.Last_Name | upper }}.</p>\n",
        ]
    else:
        out += [
            "  en-US:\n",
            "    encoding: ASCII\n",
            "    type: text\n",
            f"    subject: {s('Your ' + process_name + ' account was removed')}\n",
            f"    short: {s('Account removed for {{ First_Name }}')}\n",
            "    long: |\n",
            "      Hello {{ Granted_User.First_Name }} {{ Granted_User.Last_Name }},\n",
            "\n",
            f"      your account for {system} ({dept}) has been revoked and the database user dropped.\n",
            "      {% if Account_Count is defined and Account_Count > 0 %}You still hold {{ Account_Count }} other accounts.{% endif %}\n"
            if with_resolver else "",
            "      If this is unexpected, contact the service desk.\n",
            "  fr-FR:\n",
            "    encoding: UTF-8\n",
            "    type: text\n",
            f"    subject: {s('Votre compte ' + process_name + ' a été supprimé')}\n",
            f"    short: {s('Compte supprimé pour {{ First_Name }}')}\n",
            "    long: |\n",
            "      Bonjour $First_Name $Last_Name,\n",
            "\n",
            f"      votre compte pour {system} ({dept}) a été révoqué.\n",
            "      Si cela vous surprend, contactez le support.\n",
        ]
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

def group(ix, long=False):
    """The two files of group `ix` (1-based): [(relative path, text), ...] and doc counts."""
    rng = random.Random(0x9F1C0DE ^ (ix * 2654435761))
    dialect = "sqlite" if ix % SQLITE_EVERY == 0 else "postgres"
    suffix = "lite" if dialect == "sqlite" else "pg"
    target_name = f"dbum-{ix:05d}-{suffix}"
    qs_name = f"dbum-{ix:05d}-{dialect}"
    process_name = f"DB Account {ix:05d}"
    event_name = f"Account Provisioned {ix:05d}"
    templates = (f"Account Created {ix:05d}", f"Account Revoked {ix:05d}")
    with_resolver = ix % 2 == 0

    process, dept, system = process_doc(ix, rng, process_name, target_name, dialect, templates, long)
    group_docs = [
        target_doc(ix, rng, target_name, dialect, qs_name),
        query_set_doc(qs_name, dialect),
        process,
    ]
    notify_docs = [
        event_doc(event_name, with_resolver),
        template_doc(templates[0], event_name, process_name, dept, system, True, with_resolver),
        template_doc(templates[1], event_name, process_name, dept, system, False, with_resolver),
    ]
    sub = f"{(ix - 1) // FILES_PER_DIR:03d}"
    return [
        (os.path.join("groups", sub, f"group-{ix:05d}.yaml"), group_docs),
        (os.path.join("notifications", sub, f"notify-{ix:05d}.yaml"), notify_docs),
    ]


def generator_hash():
    with open(os.path.abspath(__file__), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--scale", type=int, default=1, help="K: write K x 1,000 groups (default 1)")
    ap.add_argument("--preset", choices=["standard", "long"], default="standard",
                    help=f"long: {LONG_EXTRA_TASKS} more tasks per process, with long descriptions (default standard)")
    ap.add_argument("--schema", default=os.path.join(REPO, "schemas", "provflow.schema.json"),
                    help="schema the modeline of every file points at (written as a relative path)")
    args = ap.parse_args(argv)
    if args.scale < 1:
        ap.error("--scale must be >= 1")

    outdir = os.path.abspath(args.outdir)
    manifest_path = os.path.join(outdir, "manifest.json")
    if os.path.isdir(outdir) and os.listdir(outdir):
        if not os.path.exists(manifest_path):
            sys.exit(f"gen.py: {outdir} is not empty and holds no manifest.json; refusing to overwrite")
        shutil.rmtree(outdir)
    os.makedirs(outdir, exist_ok=True)

    schema = os.path.abspath(args.schema)
    files = 0
    total_bytes = 0
    kinds = {}
    made_dirs = set()
    for ix in range(1, args.scale * GROUPS_PER_SCALE + 1):
        for rel, docs in group(ix, args.preset == "long"):
            path = os.path.join(outdir, rel)
            d = os.path.dirname(path)
            if d not in made_dirs:
                os.makedirs(d, exist_ok=True)
                made_dirs.add(d)
            modeline = "# yaml-language-server: $schema=%s\n" % os.path.relpath(schema, d).replace(os.sep, "/")
            data = (modeline + "---\n".join(docs)).encode("utf-8")
            with open(path, "wb") as f:
                f.write(data)
            files += 1
            total_bytes += len(data)
            for doc in docs:
                kind = doc.split("kind: ", 1)[1].split("\n", 1)[0]
                kinds[kind] = kinds.get(kind, 0) + 1

    manifest = {
        "generator_sha256": generator_hash(),
        "scale": args.scale,
        "preset": args.preset,
        "files": files,
        "documents": sum(kinds.values()),
        "bytes": total_bytes,
        "kinds": dict(sorted(kinds.items())),
        "tasks": kinds.get("Process", 0) * (STANDARD_TASKS + (LONG_EXTRA_TASKS if args.preset == "long" else 0)),
        "queries": kinds.get("ConnectorQueries", 0) * 20,
    }
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
