#!/usr/bin/env bash
# cuda_emu_asan.sh - the CUDA kernels' emulation tests with AddressSanitizer compiled into the
# emulated kernels, so an out-of-bounds device access fails (the emulation alone cannot see one).
set -euo pipefail
cd "$(dirname "$0")/.."
cxx="${CXX:-g++}"
asan="$("$cxx" -print-file-name=libasan.so)"
stdcxx="$("$cxx" -print-file-name=libstdc++.so.6)"
# The sanitizer's runtime must load first; libstdc++ with it, or torch's import (which throws C++
# exceptions) trips the sanitizer's __cxa_throw interceptor.
export MSAM_CUDA_EMU_CXXFLAGS="-fsanitize=address -fno-omit-frame-pointer -g"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
LD_PRELOAD="$asan $stdcxx" exec python -m pytest -q -p no:cacheprovider tests/test_cuda_emulation.py \
    -k "not nvcc" "$@"
