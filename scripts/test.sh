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

# The editor tests drive the real yaml-language-server (tests/editor_schemas.rs) and package
# and activate the VS Code extension (tests/vscode_extension.rs), each installed from its
# lockfile (npm's cache makes it work offline once it has been fetched). Without node or npm
# the tests say SKIPPED; with CI=true or PROVFLOW_REQUIRE_EDITOR_TESTS=1 they fail.
if command -v npm >/dev/null 2>&1; then
  npm ci --prefix editors/yaml-ls-test --prefer-offline --no-audit --no-fund --loglevel=error
  npm ci --prefix editors/vscode --prefer-offline --no-audit --no-fund --loglevel=error
elif [ "${CI:-}" = "true" ] || [ "${PROVFLOW_REQUIRE_EDITOR_TESTS:-0}" = "1" ]; then
  echo "error: npm is not installed but the editor tests are required (CI or PROVFLOW_REQUIRE_EDITOR_TESTS=1)" >&2
  exit 2
fi

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
