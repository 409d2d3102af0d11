#!/usr/bin/env bash
# Reconciliation throughput (SPEC §6): `provflow recon` over a generated N-row CSV against N
# accounts on the SQLite state store, with 1 and 2 threads, against a baseline that loads the
# same CSV with sqlite3's `.import` and applies the same updates with one `UPDATE ... FROM`.
#
#   bench/recon/run.sh [ROWS]        (default 1000000; needs sqlite3 and a release build)
#
# Every row changes (status Provisioned -> Enabled, a new badge id), so both sides write every
# account. provflow also validates each row, matches it, records one recon event per row and
# commits in batches (synchronous=NORMAL, the last commit FULL); the baseline does none of that.
# PROVFLOW=path/to/provflow compares another build (e.g. a copy of the previous one).
set -euo pipefail
ROWS=${1:-1000000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PF=${PROVFLOW:-$ROOT/target/release/provflow}
W=$(mktemp -d /tmp/provflow-bench-recon.XXXXXX)
trap 'rm -rf "$W"' EXIT
command -v sqlite3 >/dev/null || { echo "sqlite3 is required (apt-get install sqlite3)"; exit 2; }
cd "$W"
cp -r "$ROOT/definitions" .

# A store with the bundle saved (a real `provflow user create`), then N users and N accounts
# through one bulk INSERT ... SELECT each: the fast path, not N runs.
"$PF" --state sqlite:seed.db user create SEED --attr usr_first_name=S --attr usr_udf_cost_center=C --definitions definitions >/dev/null
HASH=$(sqlite3 seed.db "select hash from bundles limit 1")
sqlite3 seed.db <<SQL
PRAGMA journal_mode = WAL;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $ROWS)
INSERT INTO users(login, attributes, status, locked, created_at, updated_at, usr_key)
SELECT 'U' || i, json_object('usr_login', 'U' || i, 'usr_first_name', 'F' || i, 'usr_udf_cost_center', 'CC-1'), 'Active', 0, 0, 0, i + 1 FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $ROWS)
INSERT INTO accounts(process, user_login, bundle_hash, status, form, created_at, updated_at, usr_key)
SELECT 'Badge Access', 'U' || i, '$HASH', 'Provisioned', json_object('badge_id', 'OLD-' || i, 'access_level', 'STANDARD'), 0, 0, i + 1 FROM n;
SQL
awk -v n="$ROWS" 'BEGIN { print "login,badge_id,status"; for (i = 1; i <= n; i++) printf "U%d,B-%d,ACTIVE\n", i, i }' > rows.csv
sqlite3 seed.db "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null

now() { date +%s.%N; }
rate() { awk -v n="$ROWS" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }

cp seed.db base.db
t0=$(now)
sqlite3 base.db <<'SQL'
.mode csv
.import rows.csv csv_rows
UPDATE accounts SET
  status = CASE c.status WHEN 'ACTIVE' THEN 'Enabled' WHEN 'SUSPENDED' THEN 'Disabled' WHEN 'RETURNED' THEN 'Revoked' END,
  form = json_set(form, '$.badge_id', c.badge_id)
FROM csv_rows c WHERE accounts.process = 'Badge Access' AND accounts.user_login = c.login;
SQL
t1=$(now)
base=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
echo "baseline sqlite3 .import + UPDATE FROM: ${base}s, $(rate "$base") rows/s"

for threads in 1 2; do
  cp seed.db t$threads.db
  t0=$(now)
  "$PF" --state sqlite:t$threads.db recon definitions --process "Badge Access" --csv rows.csv --threads $threads
  t1=$(now)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  echo "provflow recon --threads $threads: ${secs}s, $(rate "$secs") rows/s, $(awk -v a="$base" -v b="$secs" 'BEGIN { printf "%.0f", 100 * a / b }')% of the baseline's rate"
  # A second run changes nothing.
  "$PF" --state sqlite:t$threads.db recon definitions --process "Badge Access" --csv rows.csv --threads $threads | tail -1
done
sqlite3 t1.db "select status, count(*) from accounts group by status"
