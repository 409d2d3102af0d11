#!/usr/bin/env bash
# The project's test command (README "Run the tests"). Runs every test of the workspace.
#
# Database tests read their URLs from the environment:
#   PROVFLOW_TEST_PG_URL       e.g. postgres://postgres@127.0.0.1:5432/test
#   PROVFLOW_TEST_MARIADB_URL  e.g. mysql://root@127.0.0.1:3306/test
# Without them those tests are skipped, and this script says so. With
# PROVFLOW_REQUIRE_DATABASES=1 (CI) a missing URL fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."

skipped=()
for var in PROVFLOW_TEST_PG_URL PROVFLOW_TEST_MARIADB_URL; do
  if [ -z "${!var:-}" ]; then
    if [ "${PROVFLOW_REQUIRE_DATABASES:-0}" = "1" ]; then
      echo "error: $var is not set but PROVFLOW_REQUIRE_DATABASES=1" >&2
      exit 2
    fi
    skipped+=("$var")
  fi
done

if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  cargo test --workspace --doc --quiet
else
  cargo test --workspace --no-fail-fast "$@"
fi

for var in "${skipped[@]}"; do
  case "$var" in
    PROVFLOW_TEST_PG_URL) what="PostgreSQL" ;;
    *) what="MariaDB" ;;
  esac
  echo "SKIPPED: the $what tests did not run: $var is not set (start $what and export $var to run them)" >&2
done
