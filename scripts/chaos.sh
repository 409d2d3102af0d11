#!/usr/bin/env bash
# The long chaos run of the worker fleet (issue 10): the CI test `worker_fleet::chaos_…` with
# more accounts and faults. 3 workers drain N DBUM accounts on a PostgreSQL target while
# workers are SIGKILLed (and restarted) and their state-store connections terminated; at the
# end no account is lost, no non-idempotent call was made twice, every held task carries its
# note, and every rescue came within lease + 5 s of the kill.
#
#   scripts/chaos.sh                      # 20,000 accounts, 80 kills, 20 cut connections
#   ACCOUNTS=5000 KILLS=30 CUTS=10 scripts/chaos.sh
#
# Needs the PostgreSQL of the machine (PROVFLOW_TEST_PG_URL, default the CI database).
set -euo pipefail
cd "$(dirname "$0")/.."
export PROVFLOW_TEST_PG_URL="${PROVFLOW_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/provflow_test}"
export PROVFLOW_REQUIRE_DATABASES=1
export PROVFLOW_CHAOS_ACCOUNTS="${ACCOUNTS:-20000}"
export PROVFLOW_CHAOS_KILLS="${KILLS:-80}"
export PROVFLOW_CHAOS_CUTS="${CUTS:-20}"
# RELEASE=0 reuses the debug build (the calls' test delay dominates the run either way).
profile=(--release)
[ "${RELEASE:-1}" = 0 ] && profile=()
cargo build "${profile[@]}" -q -p provflow-cli
cargo nextest run "${profile[@]}" -p provflow-tests --test worker_fleet --no-capture \
  -E 'test(chaos_kills_and_terminated_store_connections_lose_nothing_and_call_nothing_twice)' 2>&1 \
  | grep -E "chaos over|chaos figures|PASS|FAIL|panicked|Summary"
