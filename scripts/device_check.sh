#!/usr/bin/env bash
# device_check.sh - what a lent GPU machine checks in one run: build, the GEMM tests under every
# ISA its host CPU has (AVX-512 is not on the dev machines), and cross-ISA agreement with timings.
set -uo pipefail
export PYTHONUNBUFFERED=1
echo "== machine"; nproc; grep -m1 "model name" /proc/cpuinfo; grep -o -m1 -w avx512f /proc/cpuinfo || echo "no avx512f"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
python3 -c "import numpy, torch; print('numpy', numpy.__version__, 'torch', torch.__version__)" 2>/dev/null
echo "== build"
python3 -m pip install --no-build-isolation -q . 2>&1 | grep -v -i warning | tail -5
cd /tmp
python3 -c "import mobile_sam_c as m; print('default ISA', m.cpu_isa(), 'threads', m.get_num_threads())" || exit 1
cd - >/dev/null
echo "== GEMM tests (all ISAs)"
(cd /tmp && python3 -m pytest -q -p no:cacheprovider "$OLDPWD/tests/test_gemm.py") 2>&1 | tail -4
echo "== cross-ISA agreement, all cores then 2 threads"
python3 scripts/isa_check.py "$(nproc)"
python3 scripts/isa_check.py 2
