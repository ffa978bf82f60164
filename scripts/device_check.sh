#!/usr/bin/env bash
# device_check.sh - the one run a lent GPU machine makes: build with CUDA in place, the card, the CUDA
# tests, conformance, parity with the CPU, compute-sanitizer, a short benchmark (then the host CPU's
# GEMM/ISA checks), all in one report.
#
# Usage: scripts/device_check.sh [--dry-run]
#   Writes $OUT/device_check_report.txt (OUT: set by the device tool; else a new /tmp folder) and
#   prints the same. Every step has a time limit inside a total budget (DEVICE_CHECK_BUDGET, 480 s)
#   and a failing step does not stop the others; the summary says which passed, failed, were skipped.
#   With --dry-run, or where there is no GPU, it builds and runs the CPU side of each step (the
#   script's own code paths) and says "no GPU" for the rest. PYTHON (python3), DEVICE_CHECK_JOBS
#   (parallel compiles: up to 8 by the core count) may be set.
set -uo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d /tmp/device_check.XXXXXX)}
mkdir -p "$OUT"
REPORT=$OUT/device_check_report.txt
BUDGET=${DEVICE_CHECK_BUDGET:-480}
NPROC=$(nproc 2>/dev/null || echo 2)
JOBS=${DEVICE_CHECK_JOBS:-$(( NPROC > 8 ? 8 : NPROC ))}
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
START=$(date +%s)
RESULTS=()

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# run NAME CAP COMMAND...: COMMAND under `timeout` (CAP seconds, less if the budget is nearly spent)
run() {
    local name=$1 cap=$2 remaining limit t0 rc
    shift 2
    remaining=$(left)
    if (( remaining < 15 )); then
        RESULTS+=("SKIP  $name: the ${BUDGET}s budget was spent")
        printf '\n== %s: skipped (budget spent)\n' "$name"
        return
    fi
    limit=$(( cap < remaining ? cap : remaining ))
    printf '\n== %s  (limit %ss; %ss of %ss left)\n' "$name" "$limit" "$remaining" "$BUDGET"
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    case $rc in
        0) RESULTS+=("PASS  $name ($(( $(date +%s) - t0 ))s)") ;;
        124 | 137) RESULTS+=("FAIL  $name: stopped at its ${limit}s limit (incomplete)") ;;
        *) RESULTS+=("FAIL  $name (exit $rc, $(( $(date +%s) - t0 ))s)") ;;
    esac
}

not_run() {  # not_run NAME WHY
    RESULTS+=("SKIP  $1: $2")
    printf '\n== %s: not run (%s)\n' "$1" "$2"
}

main() {
    echo "device_check.sh $(date -u '+%Y-%m-%d %H:%M UTC'), budget ${BUDGET}s, ${JOBS} parallel compiles$( ((DRY)) && echo ', --dry-run')"
    echo "tree: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' + local changes')"

    printf '\n== machine\n'
    echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), ${NPROC} cores"
    local gpu=0
    if ((!DRY)) && timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv; then
        gpu=1
        timeout 30 nvidia-smi | head -20
    else
        echo "GPU: none ($( ((DRY)) && echo 'dry run' || echo 'nvidia-smi finds no GPU'))"
    fi
    echo "nvcc: $(timeout 30 nvcc --version 2>/dev/null | grep -o 'release [0-9.]*, V[0-9.]*' || echo absent)"
    echo "compute-sanitizer: $(timeout 30 compute-sanitizer --version 2>/dev/null | grep -m1 -o 'Version .*' || echo absent)"
    echo "python: $($PY --version 2>&1)"

    run "build in place with CUDA (MOBILE_SAM_C_CUDA=1, -j ${JOBS})" 300 sh -c \
        'MOBILE_SAM_C_CUDA=1 "$0" setup.py build_ext --inplace -j "$1" > "$2" 2>&1' "$PY" "$JOBS" "$OUT/build.log"
    grep -E '^mobile_sam_c:|error' "$OUT/build.log" | head -20
    if ! ls mobile_sam_c/_C*.so > /dev/null 2>&1; then
        echo "no extension was built: the remaining steps cannot run (see $OUT/build.log)"
        tail -30 "$OUT/build.log"
        return
    fi
    run "build and module info" 60 "$PY" scripts/device_check.py info

    # a usable GPU = a GPU and a build that can make a CUDA model on it (driver, code for it, cuBLAS)
    local cuda=0
    if ((gpu)) && "$PY" -c "from mobile_sam_c import _C; _C.check_device('cuda')" 2> /dev/null; then cuda=1; fi
    ((gpu && !cuda)) && echo "a GPU is present but check_device('cuda') fails (see the info step): CUDA steps will fail"
    local dev=cuda
    if ((!gpu)); then
        dev=cpu
        echo
        echo "-- no GPU: the steps below run on 'cpu' to exercise this script's code, not the CUDA backend --"
    fi

    run "op conformance on '$dev' (seeds 0-5)" 90 "$PY" scripts/device_check.py conformance "$dev" 0,1,2,3,4,5
    run "parity: set_image + predict on '$dev' vs 'cpu'" 120 "$PY" scripts/device_check.py parity "$dev" cpu
    run "benchmark on '$dev'" 90 "$PY" scripts/device_check.py bench "$dev" $( ((gpu)) && echo 50 || echo 3)
    run "tests/test_cuda_build.py (its own nvcc build; GPU branch $( ((gpu)) && echo on || echo off))" 240 \
        env MSAM_TEST_BUILD_JOBS="$JOBS" "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda_build.py
    if ((gpu)); then
        run "compute-sanitizer memcheck (set_image + 6 predicts)" 150 compute-sanitizer --tool memcheck \
            --error-exitcode 9 --print-limit 20 "$PY" scripts/device_check.py workload cuda
        run "compute-sanitizer racecheck (decoder: 6 predicts on a stored embedding)" 120 compute-sanitizer \
            --tool racecheck --error-exitcode 9 --print-limit 20 "$PY" scripts/device_check.py workload cuda --short
        run "compute-sanitizer synccheck (decoder)" 90 compute-sanitizer --tool synccheck --error-exitcode 9 \
            --print-limit 20 "$PY" scripts/device_check.py workload cuda --short
        run "kernel tests on the GPU (MSAM_CUDA_TEST_GPU=1 tests/test_cuda_emulation.py)" 180 \
            env MSAM_CUDA_TEST_GPU=1 "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda_emulation.py
        run "compute-sanitizer racecheck (encoder: one set_image, with what time is left)" 150 compute-sanitizer \
            --tool racecheck --error-exitcode 9 --print-limit 20 "$PY" scripts/device_check.py workload cuda
    else
        for what in "compute-sanitizer memcheck" "compute-sanitizer racecheck" "compute-sanitizer synccheck" \
            "kernel tests on the GPU"; do
            not_run "$what" "no GPU"
        done
    fi

    # the host CPU's own checks (AVX-512 is not on the development machines), with what time is left
    run "GEMM tests under every ISA of this CPU (tests/test_gemm.py)" 120 \
        "$PY" -m pytest -q -p no:cacheprovider tests/test_gemm.py
    run "cross-ISA agreement of set_image + predict, all cores" 120 \
        env PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" scripts/isa_check.py "$NPROC"  # its children run elsewhere

    printf '\n== summary (%ss of %ss used)\n' "$(( $(date +%s) - START ))" "$BUDGET"
    printf '%s\n' "${RESULTS[@]}"
    ((!gpu)) && echo "NO GPU: nothing above ran the CUDA backend on a GPU; the 'cpu' steps only show the script works."
    cat << 'EOF'
Not checked by this script: CUDA-graph capture of predict (not built yet); GPUs other than this one
(sm_80 SASS and the compute_90 PTX JIT path are compiled, not run, on a Hopper); "cuda:N" with N > 0
(the backend uses the current device); speed against PyTorch on the GPU; compute-sanitizer's
initcheck and leakcheck; tests/test_cuda_backend_emulated.py (the emulation; CI runs it); any step
above marked SKIP or stopped at its limit.
EOF
    echo "report: $REPORT (build log: $OUT/build.log)"
}

main "$@" 2>&1 | tee "$REPORT"
grep -q '^FAIL' "$REPORT" && exit 1
exit 0
