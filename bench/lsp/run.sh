#!/usr/bin/env bash
# Language-server benchmark: how long after a one-character edit the editor has the compiler's
# diagnostics, on the compile benchmark's bundle (2,000 files). The reference in the same run
# is a full `provflow compile` of the same bundle (what a server without a cache would do).
#
#   bench/lsp/run.sh
#
# Environment (all optional):
#   EDITS=200          one-character edits measured per mode (alternately breaking and mending
#                      a name: in a process, then in a query set; see latency.py)
#   NO_BUILD=1         do not run `cargo build --release -p provflow-cli`
#   PROVFLOW=path      the provflow binary (default target/release/provflow)
#   GOAL_P99_MS=100    the goal for the 99th percentile
#
# Prints the figures as JSON; exit 0 when the goal is met, 1 when not, 2 when something is
# missing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
EDITS="${EDITS:-200}"
PROVFLOW="${PROVFLOW:-target/release/provflow}"
GOAL_P99_MS="${GOAL_P99_MS:-100}"
OUT="bench/out/scale1"

if [[ "${NO_BUILD:-0}" != 1 ]]; then
  cargo build --release -p provflow-cli
fi
[[ -x "$PROVFLOW" ]] || { echo "run.sh: no provflow binary at $PROVFLOW" >&2; exit 2; }
if [[ ! -f "$OUT/manifest.json" ]]; then
  echo "== generating $OUT"
  python3 bench/compile/gen.py "$OUT" --scale 1 >/dev/null
fi

echo "== full compile of $OUT (reference)"
start=$(date +%s%N)
"$PROVFLOW" compile "$OUT" >/dev/null
compile_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "   ${compile_ms} ms"

status=0
for mode in process queries; do
  echo "== $EDITS one-character edits through provflow lsp (MODE=$mode)"
  result="$(MODE=$mode python3 bench/lsp/latency.py "$PROVFLOW" "$OUT" "$EDITS")"
  echo "{\"full_compile_ms\": $compile_ms, \"lsp\": $result, \"goal_p99_ms\": $GOAL_P99_MS}"
  p99="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["p99_ms"])' "$result")"
  if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' "$p99" "$GOAL_P99_MS"; then
    echo "PASS ($mode): p99 ${p99} ms <= ${GOAL_P99_MS} ms"
  else
    echo "FAIL ($mode): p99 ${p99} ms > ${GOAL_P99_MS} ms"
    status=1
  fi
done
exit $status
