#!/usr/bin/env sh
# Provisioning throughput: provflow's engine against the same stored-procedure statements run
# directly through rusqlite (see bench/runner/README.md).
#
#   bench/runner/run.sh [ACCOUNTS [BATCH]]   (defaults: 10000 accounts, the engine's default batch)
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
cargo build --quiet --release -p provflow-cli --bin provflow
cargo build --quiet --release -p provflow-runner --example provision_bench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
target/release/provflow compile definitions --out "$out/ir.json" >/dev/null
target/release/examples/provision_bench "$out/ir.json" "${1:-10000}" ${2:+"$2"}
