"""Where this machine's CUDA toolkit is, for the tests that compile csrc/cuda with the real nvcc
(test_cuda_emulation.py, test_cuda_backend_emulated.py): nvcc, and the cuBLAS headers."""
import os
import shutil
from pathlib import Path


def find_nvcc():
    """nvcc on PATH, else under CUDA_HOME, else None."""
    found = shutil.which("nvcc")
    home = os.environ.get("CUDA_HOME")
    if not found and home and (Path(home) / "bin" / "nvcc").exists():
        found = str(Path(home) / "bin" / "nvcc")
    return found


def find_cublas_include(nvcc):
    """The directory of cublas_v2.h: the toolkit's, or the nvidia-cublas wheel's, else None."""
    roots = [Path(nvcc).resolve().parent.parent / "include"] if nvcc else []
    if os.environ.get("CUDA_HOME"):
        roots.append(Path(os.environ["CUDA_HOME"]) / "include")
    try:
        import nvidia  # the wheels' namespace package

        for base in nvidia.__path__:
            roots += [p.parent for p in Path(base).glob("*/include/cublas_v2.h")]
    except ImportError:
        pass
    return next((r for r in roots if (r / "cublas_v2.h").exists()), None)


NVCC = find_nvcc()
CUBLAS_INCLUDE = find_cublas_include(NVCC)
