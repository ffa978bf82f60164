# cuda_build.py - setup.py's CUDA part: whether to compile the CUDA backend with nvcc (a toolkit found,
# MOBILE_SAM_C_CUDA not "0"), and how: gencode flags, the static CUDA runtime, one nvcc at a time.
"""The real nvcc build of csrc/cuda (backend/*.cu, kernels/*.cu) for setup.py.

The extension links the CUDA runtime statically (libcudart_static.a: it opens the driver,
libcuda.so.1, only when CUDA is first used) and loads cuBLAS with dlopen when a CUDA context is made
(csrc/cuda/backend/cublas_loader.cu), so it needs no CUDA library to import and runs on the CPU
anywhere. Building needs nvcc and its toolkit's libcudart_static.a, no cuBLAS headers.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import List, Mapping, NamedTuple, Optional, Sequence

# SASS for Ampere (sm_80, also runs on sm_86/sm_89) and Hopper, and compute_90 PTX that the driver
# JIT-compiles for anything newer.
SASS_ARCHS = ("80", "90")
PTX_ARCH = "90"
NVCC_FLAGS = ["-std=c++17", "-O3", "-Xcompiler", "-fPIC,-fvisibility=hidden"]
# libcudart_static.a's own needs and the C++ runtime nvcc's host code uses; the runtime's symbols
# stay inside the extension (not exported, so in a process that also loads libcudart.so, e.g.
# torch's, neither runtime's calls bind to the other).
LINK_ARGS = ["-Wl,--exclude-libs,libcudart_static.a", "-lstdc++", "-ldl", "-lrt", "-lpthread"]

NO_TOOLKIT = "no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH)"


class Decision(NamedTuple):
    kind: str  # "emulation", "nvcc" or "cpu"
    nvcc: Optional[str]  # the compiler, for "nvcc"
    reason: str  # why "cpu" ("" when nothing needs saying)
    required: bool  # MOBILE_SAM_C_CUDA=1: no CUDA build is an error, not a fallback


class Toolkit(NamedTuple):
    nvcc: str
    version: str  # "13.0"
    gencode: List[str]
    archs: str  # for messages: "sm_80+sm_90+compute_90"
    cudart_static: str
    lib_dir: str  # the toolkit's library folder (the loader also looks there for libcublas)


class ProbeError(Exception):
    """nvcc cannot build the backend here; the message says why."""


def find_nvcc(env: Mapping[str, str]) -> Optional[str]:
    """CUDA_HOME/bin/nvcc, else nvcc on PATH, else None."""
    home = env.get("CUDA_HOME")
    if home and os.path.isfile(os.path.join(home, "bin", "nvcc")):
        return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc", path=env.get("PATH"))


def decide(env: Mapping[str, str]) -> Decision:
    """What setup.py builds, from the environment alone (no compiler is run)."""
    if env.get("MOBILE_SAM_C_CUDA_EMULATION") == "1":
        return Decision("emulation", None, "", False)
    wanted = env.get("MOBILE_SAM_C_CUDA", "").strip().lower()
    if wanted not in ("", "auto", "0", "1"):
        raise ValueError(f"MOBILE_SAM_C_CUDA must be 0, 1 or unset, got {env['MOBILE_SAM_C_CUDA']!r}")
    if wanted == "0":
        return Decision("cpu", None, "MOBILE_SAM_C_CUDA=0", False)
    nvcc = find_nvcc(env)
    if not nvcc:
        return Decision("cpu", None, NO_TOOLKIT, wanted == "1")
    return Decision("nvcc", nvcc, "", wanted == "1")


def _run(cmd: Sequence[str], cwd: Optional[str] = None) -> str:
    try:
        out = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ProbeError(f"{os.path.basename(cmd[0])} could not run: {e}") from None
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        raise ProbeError(f"`{' '.join(cmd)}` failed: {' / '.join(tail)}")
    return out.stdout + out.stderr


def _gencode(nvcc: str) -> List[str]:
    """-gencode flags for SASS_ARCHS and PTX_ARCH, less those this nvcc does not know."""
    try:
        known = set(re.findall(r"compute_(\d+)", _run([nvcc, "--list-gpu-arch"])))
    except ProbeError:  # nvcc before 11.x has no --list-gpu-arch: let the probe compile decide
        known = set(SASS_ARCHS) | {PTX_ARCH}
    sass = [a for a in SASS_ARCHS if a in known]
    ptx = PTX_ARCH if PTX_ARCH in known else (sass[-1] if sass else None)
    if not sass or ptx is None:
        raise ProbeError(f"nvcc knows none of sm_{', sm_'.join(SASS_ARCHS)} (too old a CUDA toolkit; 11.8+ needed)")
    flags = []
    for a in sass:
        flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    return flags + ["-gencode", f"arch=compute_{ptx},code=compute_{ptx}"]


def _toolkit_dirs(nvcc: str, env: Mapping[str, str]) -> List[str]:
    """Folders that may hold libcudart_static.a: CUDA_HOME's, and those nvcc itself links from."""
    dirs = []
    home = env.get("CUDA_HOME")
    if home:
        dirs += [os.path.join(home, d) for d in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib"))]
    # nvcc may be a wrapper script; its dry run names the real toolkit's library folders
    dry = _run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull])
    for line in dry.splitlines():
        if "LIBRARIES=" in line:
            dirs += [d for d in re.findall(r'-L"?([^"\s]+)"?', line) if not d.rstrip("/").endswith("stubs")]
        m = re.search(r"TOP=(\S+)", line)
        if m:
            dirs += [os.path.join(m.group(1), "lib64"), os.path.join(m.group(1), "lib")]
    real = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    dirs += [os.path.join(real, "lib64"), os.path.join(real, "lib")]
    return [os.path.normpath(d) for d in dirs]


def probe(nvcc: str, env: Mapping[str, str], cc: Sequence[str]) -> Toolkit:
    """Check that nvcc compiles a kernel for our targets and that it links, with the host C
    compiler cc, into a shared object with the static runtime. ProbeError says what failed."""
    m = re.search(r"release (\d+\.\d+)", _run([nvcc, "--version"]))
    version = m.group(1) if m else "unknown"
    gencode = _gencode(nvcc)
    dirs = _toolkit_dirs(nvcc, env)
    static = next((os.path.join(d, "libcudart_static.a") for d in dirs
                   if os.path.isfile(os.path.join(d, "libcudart_static.a"))), None)
    if not static:
        raise ProbeError(f"the CUDA toolkit of {nvcc} has no libcudart_static.a (looked in {', '.join(dict.fromkeys(dirs))})")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.cu")
        with open(src, "w") as f:
            f.write("#include <cuda_runtime.h>\n__global__ void k(float *x) { x[threadIdx.x] = 1.0f; }\n"
                    'extern "C" int probe(void) { int n = 0; k<<<1, 32>>>(0);\n'
                    "  return (int)cudaGetDeviceCount(&n); }\n")
        obj, so = os.path.join(tmp, "probe.o"), os.path.join(tmp, "probe.so")
        _run([nvcc, "-c", *NVCC_FLAGS, *gencode, src, "-o", obj])
        _run([*cc, "-shared", "-o", so, obj, static, "-Wl,--no-undefined", *LINK_ARGS])
    archs = "+".join([f"sm_{a}" for a in SASS_ARCHS if f"code=sm_{a}" in " ".join(gencode)] +
                     [g.split("code=")[1] for g in gencode if "code=compute_" in g])
    return Toolkit(nvcc, version, gencode, archs, static, os.path.dirname(static))


def sources(root: str) -> List[str]:
    """The .cu files nvcc compiles (csrc/cuda/emu is the emulation's, never nvcc's)."""
    cuda = os.path.join(root, "csrc", "cuda")
    found = glob.glob(os.path.join(cuda, "backend", "*.cu")) + glob.glob(os.path.join(cuda, "kernels", "*.cu"))
    return sorted(found)


def compile_all(tk: Toolkit, srcs: Sequence[str], root: str, out_dir: str, include_dirs: Sequence[str],
                jobs: int = 1) -> List[str]:
    """Objects for srcs under out_dir, one nvcc per job (default one: nvcc is memory-hungry); a
    source is compiled again only when it or a header under csrc/ is newer than its object."""
    headers = glob.glob(os.path.join(root, "csrc", "**", "*.h"), recursive=True)
    newest_header = max((os.path.getmtime(h) for h in headers), default=0.0)
    defines = [f'-DMSAM_CUDA_ARCHS="{tk.archs}"', f'-DMSAM_CUDA_TOOLKIT_LIB="{tk.lib_dir}"']
    flags = [*NVCC_FLAGS, *tk.gencode, *defines] + [f"-I{d}" for d in include_dirs]
    todo, objects = [], []
    for src in srcs:
        rel = os.path.relpath(src, root)
        obj = os.path.join(out_dir, os.path.splitext(rel)[0] + ".o")
        objects.append(obj)
        if not os.path.exists(obj) or os.path.getmtime(obj) < max(os.path.getmtime(src), newest_header):
            todo.append((src, obj))
    running: List[subprocess.Popen] = []

    def wait_one() -> None:
        p = running.pop(0)
        err = p.communicate()[1]
        if p.returncode != 0:
            for q in running:
                q.kill()
            sys.stderr.write(err)
            raise RuntimeError(f"nvcc failed on {p.args[-3]} (exit {p.returncode})")

    for src, obj in todo:
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        print(f"nvcc {os.path.relpath(src, root)}", file=sys.stderr)
        if len(running) >= max(1, jobs):
            wait_one()
        running.append(subprocess.Popen([tk.nvcc, "-c", *flags, src, "-o", obj], cwd=root,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    while running:
        wait_one()
    return objects


def plan_stamp(path: str, text: str) -> str:
    """Write text to path only when it changed, so its mtime marks the last change of build plan
    (setup.py lists it in the extension's depends: switching CUDA on or off relinks)."""
    try:
        with open(path) as f:
            if f.read() == text:
                return path
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path

