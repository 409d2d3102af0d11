#!/usr/bin/env bash
# Compile-speed benchmark: provflow's full compile against a structural-only baseline
# (js-yaml + ajv on the same files and the same committed JSON Schema), at 1x and 10x, and on
# a bundle of the same groups with longer processes (`gen.py --preset long`, about 49 MB).
#
#   bench/compile/run.sh
#
# Environment (all optional):
#   RUNS=3            timed runs per command and scale (the median is reported)
#   NO_BUILD=1        do not run `cargo build --release -p provflow-cli`
#   PROVFLOW=path     the provflow binary (default target/release/provflow)
#   SCHEMA=path       the whole-file schema (default schemas/provflow.schema.json)
#   SCALES="1 10"     the scales of the standard bundle; the scaling goal needs 1 and 10
#   LONG_SCALES="1"   the scales of the long-process bundle (empty: none)
#   NO_HYPERFINE=1    time with the bash loop even when hyperfine is installed
#
# Exit status: 0 when every goal passes, 1 when a goal fails or a bundle does not compile
# cleanly, 2 when something needed is missing.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

RUNS="${RUNS:-3}"
PROVFLOW="${PROVFLOW:-target/release/provflow}"
SCHEMA="${SCHEMA:-schemas/provflow.schema.json}"
SCALES="${SCALES-1 10}"
LONG_SCALES="${LONG_SCALES-1}"
OUT="bench/out"
MAX_SCALING=11   # 10x the bundle may take at most 11x the time
MAX_SHARE=0.5    # provflow may take at most this share of the baseline's time (1x bundles)

# The bundles, in order: `scaleK` (standard preset) and `longK` (long processes).
BUNDLES=()
for s in $SCALES; do BUNDLES+=("scale$s"); done
for s in $LONG_SCALES; do BUNDLES+=("long$s"); done
[[ ${#BUNDLES[@]} -gt 0 ]] || { echo "run.sh: SCALES and LONG_SCALES are both empty" >&2; exit 2; }
preset_of() { [[ $1 == long* ]] && echo long || echo standard; }
scale_of() { local b="${1#long}"; echo "${b#scale}"; }

die() { echo "run.sh: $*" >&2; exit 2; }
for tool in python3 node npm; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

# --- 1. build -------------------------------------------------------------------------------
if [[ "${NO_BUILD:-0}" != 1 ]]; then
  echo "== cargo build --release -p provflow-cli"
  cargo build --release -p provflow-cli
fi
[[ -x "$PROVFLOW" ]] || die "no provflow binary at $PROVFLOW"
[[ -f "$SCHEMA" ]] || die "no schema at $SCHEMA (generate it with \`provflow schema\`)"

# --- 2. the baseline's dependencies (pinned by package-lock.json) -----------------------------
if [[ ! -d bench/compile/node_modules/ajv || ! -d bench/compile/node_modules/js-yaml ]]; then
  echo "== npm ci (bench/compile)"
  (cd bench/compile && npm ci --no-audit --no-fund --silent)
fi

# --- 3. bundles: regenerate only when missing or written by another generator version -------
gen_hash="$(sha256sum bench/compile/gen.py | cut -d' ' -f1)"
manifest_field() { # FILE FIELD
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$1" "$2" 2>/dev/null || true
}
for b in "${BUNDLES[@]}"; do
  dir="$OUT/$b"
  m="$dir/manifest.json"
  s="$(scale_of "$b")" preset="$(preset_of "$b")"
  if [[ -f "$m" && "$(manifest_field "$m" generator_sha256)" == "$gen_hash" && "$(manifest_field "$m" scale)" == "$s" \
        && "$(manifest_field "$m" preset)" == "$preset" ]]; then
    echo "== $dir is up to date"
  else
    echo "== generating $dir"
    start=$(date +%s%N)
    python3 bench/compile/gen.py "$dir" --scale "$s" --preset "$preset" >/dev/null
    echo "   $(( ($(date +%s%N) - start) / 1000000 )) ms"
  fi
done

# --- 4. preflight: both sides must accept the bundle, or the comparison means nothing -------
# The first bundle of each preset (the others repeat its groups).
preflight=()
for b in "${BUNDLES[@]}"; do
  p="$(preset_of "$b")"
  [[ " ${preflight[*]} " == *" $p:"* ]] || preflight+=("$p:$b")
done
for pb in "${preflight[@]}"; do
dir="$OUT/${pb#*:}"
echo "== preflight: provflow compile $dir"
diag="$(mktemp)" err="$(mktemp)"
rc=0
"$PROVFLOW" compile "$dir" --format json >"$diag" 2>"$err" || rc=$?
ndiag=$(grep -c . "$diag" || true)
if [[ $rc -ne 0 ]]; then
  echo "FAIL: provflow compile exited $rc on the generated bundle ($ndiag diagnostics); the first ones:" >&2
  head -n 20 "$diag" >&2
  head -n 20 "$err" >&2
  rm -f "$diag" "$err"
  exit 1
elif [[ $ndiag -ne 0 ]]; then
  echo "   note: $ndiag warnings (exit 0); the first ones:"
  head -n 5 "$diag"
fi
rm -f "$diag" "$err"
echo "== preflight: node baseline.mjs $SCHEMA $dir"
if ! node bench/compile/baseline.mjs "$SCHEMA" "$dir" >/dev/null; then
  echo "FAIL: the schema rejects documents that provflow accepts (see above): schema and compiler disagree" >&2
  exit 1
fi
done

# --- 5. timing -------------------------------------------------------------------------------
# Both commands are timed end to end as processes (start-up, reading files and output
# included), alternately, after one untimed warm-up run each so that both see a warm page
# cache. The median of RUNS runs is reported.
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

time_ns() { # CMD... -> prints elapsed ns; fails when the command fails
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null 2>&1 || { echo "run.sh: command failed: $*" >&2; return 1; }
  t1=$(date +%s%N)
  echo $(( t1 - t0 ))
}

declare -A PF AJ
use_hyperfine=0
if [[ "${NO_HYPERFINE:-0}" != 1 ]] && command -v hyperfine >/dev/null; then use_hyperfine=1; fi
if [[ $use_hyperfine == 1 ]]; then
  echo "== timing with hyperfine ($RUNS runs each, 1 warm-up)"
else
  echo "== timing with a bash loop ($RUNS runs each, 1 warm-up; install hyperfine for more detail)"
fi
for s in "${BUNDLES[@]}"; do
  dir="$OUT/$s"
  pf_cmd=("$PROVFLOW" compile "$dir" --format json)
  aj_cmd=(node bench/compile/baseline.mjs "$SCHEMA" "$dir")
  if [[ $use_hyperfine == 1 ]]; then
    json="$(mktemp)"
    hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$json" \
      --command-name "provflow scale$s" "${pf_cmd[*]}" \
      --command-name "ajv scale$s" "${aj_cmd[*]}" >&2
    medians="$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"]
if any(any(c != 0 for c in x.get("exit_codes", [0])) for x in r):
    sys.exit("a timed command exited non-zero")
print(" ".join(str(int(x["median"] * 1e9)) for x in r))' "$json")"
    rm -f "$json"
    read -r "PF[$s]" "AJ[$s]" <<<"$medians"
  else
    time_ns "${pf_cmd[@]}" >/dev/null
    time_ns "${aj_cmd[@]}" >/dev/null
    pf_runs=() aj_runs=()
    for ((i = 0; i < RUNS; i++)); do
      pf_runs+=("$(time_ns "${pf_cmd[@]}")")
      aj_runs+=("$(time_ns "${aj_cmd[@]}")")
    done
    PF[$s]=$(printf '%s\n' "${pf_runs[@]}" | median)
    AJ[$s]=$(printf '%s\n' "${aj_runs[@]}" | median)
  fi
  echo "   $s: provflow $(awk -v n="${PF[$s]}" 'BEGIN{printf "%.3f", n/1e9}') s, ajv $(awk -v n="${AJ[$s]}" 'BEGIN{printf "%.3f", n/1e9}') s"
done

# --- 6. report -------------------------------------------------------------------------------
echo
echo "machine: $(nproc) CPUs; $("$PROVFLOW" --version 2>/dev/null || echo "provflow ?"); node $(node --version)"
printf '%-8s %7s %7s %7s %8s %11s %9s %9s %9s\n' bundle files docs tasks MB provflow_s ajv_s ajv/pf pf/ajv
fail=0
for b in "${BUNDLES[@]}"; do
  m="$OUT/$b/manifest.json"
  printf '%-8s %7s %7s %7s %8s %11s %9s %9s %9s\n' "$b" \
    "$(manifest_field "$m" files)" "$(manifest_field "$m" documents)" "$(manifest_field "$m" tasks)" \
    "$(awk -v b="$(manifest_field "$m" bytes)" 'BEGIN{printf "%.1f", b/1e6}')" \
    "$(awk -v n="${PF[$b]}" 'BEGIN{printf "%.3f", n/1e9}')" \
    "$(awk -v n="${AJ[$b]}" 'BEGIN{printf "%.3f", n/1e9}')" \
    "$(awk -v a="${AJ[$b]}" -v p="${PF[$b]}" 'BEGIN{printf "%.2fx", a/p}')" \
    "$(awk -v a="${AJ[$b]}" -v p="${PF[$b]}" 'BEGIN{printf "%.2fx", p/a}')"
done
echo "(ajv/pf above 1x: provflow's full compile is faster; pf/ajv: the share of the baseline's time it takes)"
echo
# goal OK_TEXT FAIL_TEXT AWK_CONDITION NAME=VALUE...: one PASS or FAIL line; a FAIL fails the run
goal() {
  local ok="$1" ko="$2" cond="$3" vars=()
  shift 3
  for kv in "$@"; do vars+=(-v "$kv"); done
  if awk "${vars[@]}" "BEGIN{exit !($cond)}"; then echo "PASS  $ok"; else echo "FAIL  $ko"; fail=1; fi
}
for b in "${BUNDLES[@]}"; do
  goal "$b: provflow full compile is faster than the structural-only baseline" \
    "$b: provflow full compile is not faster than the structural-only baseline" \
    'p < a' a="${AJ[$b]}" p="${PF[$b]}"
done
for b in scale1 long1; do
  [[ -n "${PF[$b]:-}" ]] || { echo "SKIP  share: $b not measured"; continue; }
  share=$(awk -v a="${AJ[$b]}" -v p="${PF[$b]}" 'BEGIN{printf "%.2f", p/a}')
  goal "share $b: provflow / baseline = ${share}x <= ${MAX_SHARE}x" \
    "share $b: provflow / baseline = ${share}x > ${MAX_SHARE}x" 'f <= m' f="$share" m="$MAX_SHARE"
done
if [[ -n "${PF[scale1]:-}" && -n "${PF[scale10]:-}" ]]; then
  factor=$(awk -v a="${PF[scale10]}" -v b="${PF[scale1]}" 'BEGIN{printf "%.2f", a/b}')
  ajv_factor=$(awk -v a="${AJ[scale10]}" -v b="${AJ[scale1]}" 'BEGIN{printf "%.2f", a/b}')
  goal "scaling: provflow(10x) / provflow(1x) = ${factor}x <= ${MAX_SCALING}x  (ajv: ${ajv_factor}x)" \
    "scaling: provflow(10x) / provflow(1x) = ${factor}x > ${MAX_SCALING}x  (ajv: ${ajv_factor}x)" \
    'f <= m' f="$factor" m="$MAX_SCALING"
else
  echo "SKIP  scaling: needs scales 1 and 10 (SCALES=\"$SCALES\")"
fi
exit $fail
