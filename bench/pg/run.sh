#!/usr/bin/env sh
# Provisioning throughput on PostgreSQL: provflow's engine (1 and 2 worker threads, each with
# its own state store and connection) against the same CALLs made directly through the
# postgres driver at the same concurrency (see bench/pg/README.md).
#
#   DBUM_PG_URL=postgres://postgres@127.0.0.1:5432/provflow_test bench/pg/run.sh [ACCOUNTS] [ROUNDS] [THREADS]
#
# Defaults: 500 accounts per run, 3 rounds, threads 1,2. The roles created are dropped after
# each run; the DBUM procedures are installed (idempotently) first.
set -eu
: "${DBUM_PG_URL:?set DBUM_PG_URL to a PostgreSQL database where the bench may create roles}"
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
cargo build --quiet --release -p provflow-cli --bin provflow
cargo build --quiet --release -p provflow-runner --example pg_bench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
target/release/provflow compile definitions --out "$out/ir.json" >/dev/null
target/release/examples/pg_bench "$out/ir.json" "${1:-500}" "${2:-3}" "${3:-1,2}"
