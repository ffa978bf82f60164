# setup.py - builds the extension mobile_sam_c._C from the C core (csrc/core, csrc/cpu) and its
# binding (csrc/python). C11, optimised, OpenMP when the compiler has it; SIMD chosen at run time.
# With a CUDA toolkit (CUDA_HOME, or nvcc on PATH) also the CUDA backend, compiled by nvcc
# (cuda_build.py); MOBILE_SAM_C_CUDA=0 builds the CPU backend only, =1 fails without a toolkit.
import glob
import os
import subprocess
import sys
import tempfile

import numpy

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # cuda_build.py, next to this file (a PEP 517 backend need not add it)
import cuda_build  # noqa: E402


def _sources():
    """Every C file under csrc/ (CUDA sources, csrc/cuda, are built separately)."""
    found = glob.glob(os.path.join("csrc", "**", "*.c"), recursive=True)
    return sorted(f for f in found if not f.startswith(os.path.join("csrc", "cuda") + os.sep))


# Test builds only: MOBILE_SAM_C_CUDA_EMULATION=1 also compiles the CUDA backend (csrc/cuda/backend,
# csrc/cuda/kernels) with the host C++ compiler against our CUDA emulation (csrc/cuda/emu), and
# registers it for device "cuda" (MSAM_WITH_CUDA), so its op table runs without a GPU.
CUDA_EMULATION = os.environ.get("MOBILE_SAM_C_CUDA_EMULATION") == "1"
CUDA_EMU_FLAGS = ["-std=c++17", "-O2", "-ffp-contract=off", "-DMSAM_CUDA_EMULATION", "-Wno-unknown-pragmas"]


def _cuda_emulation_sources():
    cuda = os.path.join("csrc", "cuda")
    found = []
    for pattern in (("backend", "*.cu"), ("kernels", "*.cu"), ("emu", "*.cpp")):
        found += glob.glob(os.path.join(cuda, *pattern))
    return sorted(found)


def _compile_cuda_as_cxx(compiler):
    """Let the C compiler take .cu (as C++) and .cpp files with the emulation's C++ flags."""
    compiler.src_extensions += [".cu", ".cpp"]
    compile_one = compiler._compile

    def _compile(obj, src, ext, cc_args, extra_postargs, pp_opts):
        if src.endswith((".cu", ".cpp")):
            cc_args = cc_args + (["-x", "c++"] if src.endswith(".cu") else [])
            extra_postargs = [f for f in extra_postargs if f not in ("-std=c11", "-O3")] + CUDA_EMU_FLAGS
        compile_one(obj, src, ext, cc_args, extra_postargs, pp_opts)

    compiler._compile = _compile


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


def _cuda_toolkit(compiler):
    """The toolkit to build the CUDA backend with, or None for a CPU-only build (one line on
    stderr says why; MOBILE_SAM_C_CUDA=1 makes that an error)."""
    try:
        decision = cuda_build.decide(os.environ)
    except ValueError as e:  # a MOBILE_SAM_C_CUDA that is not 0 or 1
        sys.exit(f"mobile_sam_c: {e}")
    if decision.kind != "nvcc":
        if decision.required:
            sys.exit(f"mobile_sam_c: MOBILE_SAM_C_CUDA=1 but {decision.reason}")
        if decision.reason:
            print(f"mobile_sam_c: {decision.reason}; building the CPU backend only", file=sys.stderr)
        return None
    try:
        tk = cuda_build.probe(decision.nvcc, os.environ, compiler.linker_so[:1])
    except cuda_build.ProbeError as e:
        if decision.required:
            sys.exit(f"mobile_sam_c: MOBILE_SAM_C_CUDA=1 but nvcc cannot build the CUDA backend: {e}")
        print(f"mobile_sam_c: nvcc cannot build the CUDA backend ({e}); building the CPU backend only",
              file=sys.stderr)
        return None
    print(f"mobile_sam_c: building the CUDA backend with {tk.nvcc} (CUDA {tk.version}, {tk.archs})", file=sys.stderr)
    return tk


def _add_cuda(ext, tk, build_temp, jobs):
    """nvcc-compiled objects of the CUDA backend, the static runtime and MSAM_WITH_CUDA into ext."""
    objs = cuda_build.compile_all(tk, cuda_build.sources(HERE), HERE, os.path.join(build_temp, "nvcc"),
                                  [os.path.join(HERE, d) for d in ext.include_dirs if not os.path.isabs(d)], jobs)
    ext.extra_objects += objs + [tk.cudart_static]
    ext.extra_link_args += cuda_build.LINK_ARGS
    ext.define_macros.append(("MSAM_WITH_CUDA", "1"))
    ext.depends += objs


class BuildExt(build_ext):
    def build_extensions(self):
        openmp = _compiler_accepts(self.compiler, "-fopenmp")
        if CUDA_EMULATION:
            _compile_cuda_as_cxx(self.compiler)
        tk = None if CUDA_EMULATION else _cuda_toolkit(self.compiler)
        plan = "emulation" if CUDA_EMULATION else f"cuda {tk.version} {tk.archs}" if tk else "cpu"
        # a change of plan (CUDA on or off) relinks an extension that is otherwise up to date
        stamp = cuda_build.plan_stamp(os.path.join(self.build_temp, "cuda_plan.txt"), plan + "\n")
        for ext in self.extensions:
            ext.depends.append(stamp)
            if tk:
                _add_cuda(ext, tk, self.build_temp, int(self.parallel or 1))
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

sources, link_args = _sources(), ["-lm", "-ldl"]
if CUDA_EMULATION:
    sources += _cuda_emulation_sources()
    define_macros.append(("MSAM_WITH_CUDA", "1"))
    link_args += ["-lstdc++", "-lpthread"]

ext = Extension(
    "mobile_sam_c._C",
    sources=sources,
    include_dirs=include_dirs,
    define_macros=define_macros,
    extra_compile_args=cflags,
    extra_link_args=link_args,
)

setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt})
