#!/usr/bin/env bash
# sanitize.sh - builds mobile_sam_c with AddressSanitizer + UndefinedBehaviorSanitizer (setup.py's
# MSAM_DEBUG=1) in a copy of the tree and runs the torch-free tests and the end-to-end workload.
# Usage: scripts/sanitize.sh [WORKDIR]. Exits non-zero on a sanitizer report or a failing test.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d /tmp/msam_sanitize.XXXXXX)}"
PY="${PYTHON:-python3}"
mkdir -p "$WORK/src" "$WORK/logs"
rm -f "$WORK"/logs/*
# the tracked and new files of the tree, not its build outputs
(cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$WORK/src"
rm -f "$WORK"/src/mobile_sam_c/_C*.so
echo "== ASan+UBSan build in $WORK/src"
(cd "$WORK/src" && MSAM_DEBUG=1 "$PY" setup.py build_ext --inplace -q 2>&1 | grep -E "error|warning: " | grep -v Deprecat) 
SO="$(ls "$WORK"/src/mobile_sam_c/_C*.so 2>/dev/null | head -1)"
[ -n "$SO" ] || { echo "sanitizer build failed"; exit 1; }
SYMS="$(nm -D "$SO")"
for sym in __asan_report_load4 __ubsan_handle_; do  # the build really is instrumented
  grep -q "$sym" <<<"$SYMS" || { echo "sanitizer build lacks $sym"; exit 1; }
done
CC="${CC:-gcc}"
ASAN_LIB="$($CC -print-file-name=libasan.so)"
UBSAN_LIB="$($CC -print-file-name=libubsan.so)"
for lib in "$ASAN_LIB" "$UBSAN_LIB"; do [ -f "$lib" ] || { echo "missing sanitizer runtime $lib"; exit 1; }; done
# The interpreter is not instrumented: the runtimes are preloaded, Python's allocator is bypassed
# so ASan sees every object allocation; leak checking is off (CPython frees little at exit).
run_sanitized() {
  env LD_PRELOAD="$ASAN_LIB:$UBSAN_LIB" PYTHONMALLOC=malloc \
      ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=99:log_path=$WORK/logs/asan:allocator_may_return_null=1" \
      UBSAN_OPTIONS="print_stacktrace=1:log_path=$WORK/logs/ubsan" \
      OPENBLAS_NUM_THREADS=1 PYTHONPATH="$WORK/src" "$@"
}
status=0
echo "== torch-free tests under the sanitizers"
(cd "$WORK/src" && run_sanitized "$PY" -m pytest -q -p no:cacheprovider --noconftest \
    tests/test_hardening_loader.py tests/test_hardening_binding.py 2>&1 | tail -5) || status=1
echo "== end-to-end workload under the sanitizers (it forks too)"
(cd "$WORK/src" && run_sanitized "$PY" scripts/e2e_workload.py --quick 2>&1 | tail -5) || status=1
if ls "$WORK"/logs/* >/dev/null 2>&1; then
  echo "== sanitizer reports"
  for f in "$WORK"/logs/*; do echo "-- $f"; head -60 "$f"; done
  status=1
fi
[ $status -eq 0 ] && echo "sanitizers: clean" || echo "sanitizers: FAILED"
exit $status
