# setup.py - builds the extension mobile_sam_c._C from the C core (csrc/core, csrc/cpu) and its
# binding (csrc/python). C11, optimised, OpenMP when the compiler has it; SIMD chosen at run time.
import glob
import os
import subprocess
import sys
import tempfile

import numpy

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def _sources():
    """Every C file under csrc/ (CUDA sources, csrc/cuda, are built separately)."""
    found = glob.glob(os.path.join("csrc", "**", "*.c"), recursive=True)
    return sorted(f for f in found if not f.startswith(os.path.join("csrc", "cuda") + os.sep))


def _compiler_accepts(compiler, flag):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void){return omp_get_max_threads() < 0;}\n")
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=[flag])
            compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=[flag])
            return True
        except Exception:
            return False


class BuildExt(build_ext):
    def build_extensions(self):
        openmp = _compiler_accepts(self.compiler, "-fopenmp")
        for ext in self.extensions:
            if openmp:
                ext.extra_compile_args.append("-fopenmp")
                ext.extra_link_args.append("-fopenmp")
            else:
                print("mobile_sam_c: compiler has no OpenMP; building single-threaded", file=sys.stderr)
        super().build_extensions()


cflags = ["-std=c11", "-O3", "-fno-math-errno", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-fvisibility=hidden"]
if os.environ.get("MSAM_DEBUG"):
    cflags = [f for f in cflags if f != "-O3"] + ["-O0", "-g", "-fsanitize=address,undefined"]

include_dirs = [os.path.join("csrc", "include"), os.path.join("csrc", "core"), os.path.join("csrc", "host"), "csrc",
                numpy.get_include()]
define_macros = []
# Test builds only: MSAM_EMULATE_AVX512=1 (SIMDe under /usr/include) or =<SIMDe include root> runs
# the AVX-512 GEMM kernel on any x86-64 CPU through SIMDe's portable intrinsics; AVX2 and FMA, where
# the CPU has them, make the emulation use the same fused multiply-adds as the hardware would.
emulate = os.environ.get("MSAM_EMULATE_AVX512")
if emulate:
    define_macros.append(("MSAM_EMULATE_AVX512", "1"))
    if emulate != "1":
        include_dirs.append(emulate)
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        flags = []
    if "avx2" in flags and "fma" in flags:
        cflags += ["-mavx2", "-mfma"]

ext = Extension(
    "mobile_sam_c._C",
    sources=_sources(),
    include_dirs=include_dirs,
    define_macros=define_macros,
    extra_compile_args=cflags,
    extra_link_args=["-lm", "-ldl"],
)

setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt})
