#!/usr/bin/env sh
# The README's first command: provision a real DBUM account from definitions/ into the
# embedded SQLite default, with no server, and show the result.
#
#   scripts/demo.sh
#
# It runs in a fresh temporary working copy of definitions/ (its own .provflow/ state and
# target files), so it never touches the repository's .provflow/ and a second run starts
# from scratch again: idempotent by construction. Set PROVFLOW_DEMO_KEEP=1 to keep the
# directory (its path is printed) and look around with `provflow account show` there.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cargo build --quiet --manifest-path "$repo/Cargo.toml" -p provflow-cli
provflow="$repo/target/debug/provflow"

work=$(mktemp -d "${TMPDIR:-/tmp}/provflow-demo.XXXXXX")
if [ "${PROVFLOW_DEMO_KEEP:-}" != 1 ]; then
    trap 'rm -rf "$work"' EXIT
fi
cp -R "$repo/definitions" "$work/definitions"
cd "$work"

# The password comes from an environment variable, never from the command line.
DEMO_PASSWORD=${DEMO_PASSWORD:-demo-$(date +%s)}
export DEMO_PASSWORD

set -x
"$provflow" target install dbum-sqlite
"$provflow" user create JDOE --attr usr_first_name=John --attr usr_last_name=Doe --attr usr_udf_cost_center=CC-1001
"$provflow" run --process "DBUM Account" --user JDOE --secret password=env:DEMO_PASSWORD
"$provflow" account show --process "DBUM Account" --user JDOE
set +x

# What the stored procedure did on the target (the seed's "check the test table"):
if command -v sqlite3 >/dev/null 2>&1; then
    echo "--- target .provflow/targets/dbum-sqlite.db"
    sqlite3 -header -column .provflow/targets/dbum-sqlite.db \
        "SELECT username, profile FROM db_users; SELECT id, message FROM audit_log;"
fi

if [ "${PROVFLOW_DEMO_KEEP:-}" = 1 ]; then
    echo "kept $work"
fi
