#!/usr/bin/env bash
# The worker benchmark: `provflow worker` processes draining N enqueued accounts of the DBUM
# PostgreSQL process, against a minimal SKIP LOCKED job queue written directly with the
# postgres driver (bench/worker/baseline), at the same connection counts, in the same run.
# See bench/worker/README.md.
#
#   bench/worker/run.sh                 N=20000 accounts, every configuration twice
#   N=2000 ROUNDS=1 bench/worker/run.sh  a quick run
#
# Environment: N (accounts, default 20000), ROUNDS (default 2), BW_SERVER (default
# postgres://postgres@127.0.0.1:5432, a server where this role may create databases and
# roles), ONLY (a space-separated subset of the configuration names below, e.g. "w1 base1").
# Writes bench/worker/results.md (override with RESULTS=FILE). Creates databases bw_PID_*
# and roles bw_PID_*, and drops them at the end, also on failure.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
N=${N:-20000}
ROUNDS=${ROUNDS:-2}
SERVER=${BW_SERVER:-postgres://postgres@127.0.0.1:5432}
RESULTS=${RESULTS:-bench/worker/results.md}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}

# name:workers:concurrency:batch (provflow) or name:workers (baseline).
CONFIGS=${ONLY:-"w1 base1 w2 base2 w4 base4 w1c4 w1b1"}
declare -A SPEC=(
    [w1]=1:1:16 [w2]=2:1:16 [w4]=4:1:16 [w1c4]=1:4:16 [w1b1]=1:1:1
    [base1]=1 [base2]=2 [base4]=4
)

echo "building (release)..." >&2
cargo build --quiet --release -p provflow-cli --bin provflow
cargo build --quiet --release --locked --manifest-path bench/worker/baseline/Cargo.toml
pf=$CARGO_TARGET_DIR/release/provflow
baseline=$CARGO_TARGET_DIR/release/worker-baseline

tag=bw_$$
prefix=BW_$$_ # logins; the procedures fold them to the roles bw_PID_1 .. bw_PID_N
work=$(mktemp -d)
pids=()

export PGOPTIONS="-c client_min_messages=warning"
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$SERVER/$1" -c "$2"; }

drop_roles() {
    # Commits every 500 drops: one transaction would take a lock per role.
    sql postgres "DO \$\$
        DECLARE r text; n int := 0;
        BEGIN
          FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE '${tag}\\_%' LOOP
            EXECUTE format('DROP ROLE %I', r);
            n := n + 1;
            IF n % 500 = 0 THEN COMMIT; END IF;
          END LOOP;
        END \$\$" >/dev/null
}

drop_dbs() {
    local db
    for db in "$@"; do
        sql postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    done
}

cleanup() {
    local status=$?
    local p
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    drop_dbs "${tag}_state" "${tag}_target" "${tag}_queue" "${tag}_state_tpl" "${tag}_target_tpl" || true
    drop_roles || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
export PROVFLOW_SECRET_KEY
PROVFLOW_SECRET_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
export PW="Bw-$RANDOM-pass-$$"

# ----- templates: the target with the DBUM procedures, the state store with N enqueued accounts
echo "preparing $N users and accounts..." >&2
sql postgres "CREATE DATABASE ${tag}_target_tpl" >/dev/null
sql postgres "CREATE DATABASE ${tag}_state_tpl" >/dev/null
DBUM_PG_URL=$SERVER/${tag}_target_tpl "$pf" target install dbum-pg >/dev/null 2>&1
export PROVFLOW_STATE=$SERVER/${tag}_state_tpl
"$pf" user create "${prefix}1" --attr usr_udf_cost_center=CC1 >/dev/null
# The other users as copies of the row the store wrote for the first (usr_key from its sequence).
sql "${tag}_state_tpl" "INSERT INTO users(login, attributes, status, locked, created_at, updated_at)
    SELECT '${prefix}' || i, u.attributes, u.status, u.locked, u.created_at, u.updated_at
    FROM users u, generate_series(2, $N) AS i WHERE u.login = '${prefix}1'"
seq 1 "$N" | sed "s/^/${prefix}/" >"$work/logins.txt"
t0=$(now)
DBUM_PG_URL=$SERVER/${tag}_target_tpl "$pf" run definitions --process "DBUM Account PG" \
    --users "$work/logins.txt" --secret password=env:PW --enqueue >/dev/null 2>"$work/enqueue.err" ||
    { cat "$work/enqueue.err" >&2; exit 1; }
t1=$(now)
unset PROVFLOW_STATE
# Statistics, as a store that has been running a while has them (the copies inherit them);
# the baseline analyses its jobs table too.
sql "${tag}_state_tpl" "VACUUM ANALYZE" >/dev/null
enqueue_rate=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
echo "enqueued $N accounts in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s ($enqueue_rate accounts/s)" >&2

# Transactions committed in a database so far (the server's statistics, flushed within ~1 s
# of a backend's last transaction and when it exits).
xacts() { sleep 1; sql postgres "SELECT xact_commit FROM pg_stat_database WHERE datname = '$1'"; }

fresh() {
    drop_dbs "${tag}_state" "${tag}_target" "${tag}_queue"
    drop_roles
    sql postgres "CREATE DATABASE ${tag}_target TEMPLATE ${tag}_target_tpl" >/dev/null
}

# Runs one provflow configuration; sets RESULT to "seconds tasks/s claim50 claim99 next50 next99
# state_xacts target_xacts". (Not in a $(...) subshell: the workers' pids stay known to cleanup.)
run_provflow() {
    local workers=$1 concurrency=$2 batch=$3 name=$4
    fresh
    sql postgres "CREATE DATABASE ${tag}_state TEMPLATE ${tag}_state_tpl" >/dev/null
    local state=$SERVER/${tag}_state polls=0 k start end pending deadline
    deadline=$(( $(date +%s) + 600 + N / 5 ))
    pids=()
    start=$(now)
    for k in $(seq 1 "$workers"); do
        PROVFLOW_STATE=$state DBUM_PG_URL=$SERVER/${tag}_target "$pf" worker --concurrency "$concurrency" \
            --batch "$batch" --id "w$k" --log-format json 2>"$work/$name.w$k.log" &
        pids+=("$!")
    done
    while :; do
        # Every task Completed is the end, not every account Provisioned: the status map sets
        # that when Create User completes, and Profile Updated runs after it. No task Pending
        # means every task is done (Profile Updated is inserted Pending in the commit that
        # completes Create User); the partial index of Pending tasks keeps this poll cheap.
        # Checked after the run: 2N tasks Completed.
        pending=$(sql "${tag}_state" "SELECT count(*) FROM task_instances WHERE status = 'Pending'")
        polls=$((polls + 1))
        [ "$pending" -eq 0 ] && break
        for k in "${pids[@]}"; do
            kill -0 "$k" 2>/dev/null || { echo "$name: a worker exited early; its log:" >&2; tail -5 "$work/$name".w*.log >&2; exit 1; }
        done
        [ "$(date +%s)" -lt "$deadline" ] || { echo "$name: not done after $((deadline - ${start%.*})) s ($pending tasks Pending)" >&2; exit 1; }
        sleep 0.1
    done
    end=$(now)
    for k in "${pids[@]}"; do kill -TERM "$k"; done
    for k in "${pids[@]}"; do wait "$k" || { echo "$name: a worker failed to stop cleanly" >&2; exit 1; }; done
    pids=()
    local completed profiled
    completed=$(sql "${tag}_state" "SELECT count(*) FROM task_instances WHERE status = 'Completed'")
    profiled=$(sql "${tag}_target" "SELECT count(*) FROM dbum_users WHERE profile = 'DEFAULT'")
    if [ "$completed" -ne $((2 * N)) ] || [ "$profiled" -ne "$N" ]; then
        echo "$name: $completed tasks Completed (want $((2 * N))), $profiled roles with their profile (want $N)" >&2
        exit 1
    fi
    local sx tx lat
    sx=$(( $(xacts "${tag}_state") - polls - 1 )) # less this script's own queries
    tx=$(( $(xacts "${tag}_target") - 1 ))
    lat=$(python3 bench/worker/latency.py "$work/$name".w*.log)
    RESULT=$(awk -v a="$start" -v b="$end" -v n="$N" -v sx="$sx" -v tx="$tx" -v lat="$lat" 'BEGIN {
        split("claim_p50 claim_p99 next_p50 next_p99", keys, " ")
        out = sprintf("%.2f %.0f", b - a, 2 * n / (b - a))
        for (i = 1; i <= 4; i++) {
            v = lat; sub(".*\"" keys[i] "\": ", "", v); sub("[,}].*", "", v)
            out = out " " (v == "null" ? "-" : v)
        }
        print out, sx, tx
    }')
}

# Runs the baseline at W connections; sets RESULT to the same fields.
run_baseline() {
    local workers=$1 out sx tx
    fresh
    sql postgres "CREATE DATABASE ${tag}_queue" >/dev/null
    "$baseline" setup "$SERVER/${tag}_queue" "$N" "$prefix"
    local before
    before=$(xacts "${tag}_queue")
    out=$(BW_PW=$PW "$baseline" run "$SERVER/${tag}_queue" "$SERVER/${tag}_target" "$workers")
    local profiled
    profiled=$(sql "${tag}_target" "SELECT count(*) FROM dbum_users WHERE profile = 'DEFAULT'")
    [ "$profiled" -eq "$N" ] || { echo "baseline: $profiled roles with their profile (want $N)" >&2; exit 1; }
    sx=$(( $(xacts "${tag}_queue") - before ))
    tx=$(( $(xacts "${tag}_target") - 1 ))
    RESULT=$(echo "$out" | awk -v sx="$sx" -v tx="$tx" '{
        split("seconds tasks_per_s claim_p50 claim_p99 next_p50 next_p99", keys, " ")
        out = ""
        for (i = 1; i <= 6; i++) { v = $0; sub(".*\"" keys[i] "\":", "", v); sub("[,}].*", "", v); out = out (i > 1 ? " " : "") v }
        print out, sx, tx
    }')
}

declare -A R # R[name.round] = fields
for round in $(seq 1 "$ROUNDS"); do
    for name in $CONFIGS; do
        IFS=: read -r w c b <<<"${SPEC[$name]:?unknown configuration $name}"
        echo "round $round: $name..." >&2
        if [ -n "${c:-}" ]; then
            run_provflow "$w" "$c" "$b" "$name"
        else
            run_baseline "$w"
        fi
        R[$name.$round]=$RESULT
        echo "  $name: ${R[$name.$round]}" >&2
    done
done

# ----- the table
rate() { echo "${R[$1.$2]:-}" | cut -d' ' -f2; }
field() { echo "${R[$1.$2]:-}" | cut -d' ' -f"$3"; }
joined() { # name field: the rounds' values joined by " / "
    local r out=""
    for r in $(seq 1 "$ROUNDS"); do out+="${out:+ / }$(field "$1" "$r" "$2")"; done
    echo "$out"
}
{
    echo "N = $N accounts ($((2 * N)) tasks), $ROUNDS round(s), $(date -u +%Y-%m-%d), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); enqueue: $enqueue_rate accounts/s"
    echo
    echo "| configuration | provflow tasks/s | baseline tasks/s (same working connections) | ratio | claim→first outcome p50 / p99 ms (provflow; baseline) | dependent task ready→done p50 / p99 ms (provflow; baseline) | store / target transactions per task (provflow; baseline) |"
    echo "|---|---|---|---|---|---|---|"
    for name in $CONFIGS; do
        case $name in base*) continue ;; esac
        IFS=: read -r w c b <<<"${SPEC[$name]}"
        base=base$((w * c)) # the baseline with as many working connections
        ratios="" lat1="" lat2="" per=""
        for r in $(seq 1 "$ROUNDS"); do
            p=$(rate "$name" "$r") q=$(rate "$base" "$r")
            ratios+="${ratios:+ / }$(awk -v p="$p" -v q="$q" 'BEGIN { if (q > 0) printf "%.1f %%", 100 * p / q; else print "-" }')"
            lat1+="${lat1:+ · }$(field "$name" "$r" 3) / $(field "$name" "$r" 4); $(field "$base" "$r" 3) / $(field "$base" "$r" 4)"
            lat2+="${lat2:+ · }$(field "$name" "$r" 5) / $(field "$name" "$r" 6); $(field "$base" "$r" 5) / $(field "$base" "$r" 6)"
            per+="${per:+ · }$(awk -v n="$N" -v a="$(field "$name" "$r" 7)" -v b="$(field "$name" "$r" 8)" -v c="$(field "$base" "$r" 7)" -v d="$(field "$base" "$r" 8)" \
                'BEGIN { t = 2 * n; printf "%.2f / %.2f; %.2f / %.2f", a / t, b / t, c / t, d / t }')"
        done
        echo "| $w worker(s) × concurrency $c, batch $b | $(joined "$name" 2) | $(joined "$base" 2) | $ratios | $lat1 | $lat2 | $per |"
    done
} | tee "$RESULTS"
