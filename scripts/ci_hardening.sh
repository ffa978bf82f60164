#!/usr/bin/env bash
# ci_hardening.sh - issue 14's CI steps in one script: the hardening regression tests, the loader
# and argument fuzzers for a fixed budget each, and the ASan+UBSan build with its workload.
# MSAM_FUZZ_SECONDS (default 60) sets each fuzzer's budget; about 7 minutes on 2 cores in all.
# Exits non-zero if any step fails; fuzz reports and reproducers stay under $MSAM_HARDENING_OUT.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
OUT="${MSAM_HARDENING_OUT:-$(mktemp -d /tmp/msam_hardening.XXXXXX)}"
SECONDS_EACH="${MSAM_FUZZ_SECONDS:-60}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
failed=()
step() {  # step NAME COMMAND...: runs it, records a failure, never stops the others
  local name="$1"; shift
  echo "=== $name"
  local t0=$SECONDS
  if "$@"; then echo "=== $name: ok ($((SECONDS - t0)) s)"; else echo "=== $name: FAILED ($((SECONDS - t0)) s)"; failed+=("$name"); fi
}
ls mobile_sam_c/_C*.so >/dev/null 2>&1 || "$PY" setup.py build_ext --inplace -q
step "hardening tests" "$PY" -m pytest -q -p no:cacheprovider tests/test_hardening_loader.py \
    tests/test_hardening_binding.py tests/test_hardening_fork.py
step "fuzz: checkpoint loader (${SECONDS_EACH} s)" "$PY" scripts/fuzz/supervise.py \
    --worker scripts/fuzz/fuzz_loader.py --seconds "$SECONDS_EACH" --out "$OUT/fuzz_loader"
step "fuzz: predictor arguments (${SECONDS_EACH} s)" "$PY" scripts/fuzz/supervise.py \
    --worker scripts/fuzz/fuzz_args.py --seconds "$SECONDS_EACH" --out "$OUT/fuzz_args"
step "ASan+UBSan build, tests and workload" scripts/sanitize.sh "$OUT/sanitize"
if [ ${#failed[@]} -gt 0 ]; then
  echo "ci_hardening: FAILED: ${failed[*]} (reports under $OUT)"
  exit 1
fi
echo "ci_hardening: all steps passed (reports under $OUT)"
