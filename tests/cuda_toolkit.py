"""Where this machine's nvcc is, for the tests that compile csrc/cuda with the real compiler
(test_cuda_emulation.py, test_cuda_backend_emulated.py, test_cuda_build.py); setup.py's own search
(cuda_build.find_nvcc) looks in CUDA_HOME first."""
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


NVCC = find_nvcc()
