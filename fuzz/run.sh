#!/usr/bin/env bash
# Fuzz the compiler: `fuzz/run.sh [SECONDS] [TARGET]` (defaults: 600 seconds, target `compile`;
# the others are `legacy_queries`, `sql_lexer`, `lsp_requests`, the language server's
# handlers on arbitrary files and positions, and `yaml_readers`, the fast YAML reader against
# the general parser; the YAML targets get fuzz/yaml.dict's tokens).
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer, -Cpasses=sancov-module). With only a
# stable toolchain installed, RUSTC_BOOTSTRAP=1 lets stable rustc accept them. Install the
# tool once with `cargo install cargo-fuzz`.
#
# The corpus (fuzz/corpus/TARGET) is not committed: it is seeded from fuzz/seeds, every
# definitions/**/*.yaml and tests/fixtures/*.yaml (sql_lexer: every fuzz/seeds/*.sql and
# definitions/**/*.sql) on each run, and grows locally. Crashes land
# in fuzz/artifacts/TARGET; reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...
# and minimise it with `cargo fuzz tmin TARGET <file>`.
set -euo pipefail

seconds="${1:-600}"
target="${2:-compile}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
corpus="$here/corpus/$target"
dict=()

mkdir -p "$corpus"
# Copies every file named like $1 under the other arguments into the corpus, flattening paths
# into names so that files of the same name in two folders both survive.
seed() {
    local pattern="$1"
    shift
    for dir in "$@"; do
        [ -d "$dir" ] || continue
        find "$dir" -name "$pattern" -type f
    done | while read -r f; do
        rel="${f#"$root"/}"
        cp "$f" "$corpus/${rel//\//_}"
    done
}
if [ "$target" = "legacy_queries" ]; then
    cp "$here"/seeds/*.queries "$corpus"/
    seed '*.queries' "$root/tests/legacy_corpus"
elif [ "$target" = "sql_lexer" ]; then
    seed '*.sql' "$here/seeds" "$root/definitions"
else
    cp "$here"/seeds/*.yaml "$corpus"/
    seed '*.yaml' "$root/definitions" "$root/tests/fixtures"
    dict=(-dict="$here/yaml.dict")
fi

cd "$here"
export RUSTC_BOOTSTRAP=1
# -timeout: an input that takes 10 s is a hang; -rss_limit_mb: 2 GiB is "unbounded memory".
exec cargo fuzz run "$target" "$corpus" -- "${dict[@]}" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1
