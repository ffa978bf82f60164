"""Where this machine's nvcc is, for the tests that compile csrc/cuda with the real compiler
(test_cuda_emulation.py, test_cuda_backend_emulated.py, test_cuda_build.py); setup.py's own search
(cuda_build.find_nvcc) looks in CUDA_HOME first."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find_nvcc():
    """nvcc on PATH, else under CUDA_HOME, else None."""
    found = shutil.which("nvcc")
    home = os.environ.get("CUDA_HOME")
    if not found and home and (Path(home) / "bin" / "nvcc").exists():
        found = str(Path(home) / "bin" / "nvcc")
    return found


NVCC = find_nvcc()


def build_extension(tmp, env, jobs="1"):
    """setup.py build_ext with env into tmp (lib/, build/), then the package with that build under
    tmp/pkg (put it on PYTHONPATH): (the built .so, the build's stderr). Asserts the build passed."""
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "-j", jobs, "--build-lib", str(tmp / "lib"),
                            "--build-temp", str(tmp / "build")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    built = list((tmp / "lib" / "mobile_sam_c").glob("_C*"))
    assert len(built) == 1, built
    pkg = tmp / "pkg" / "mobile_sam_c"
    shutil.copytree(ROOT / "mobile_sam_c", pkg, ignore=shutil.ignore_patterns("_C*.so", "_C*.pyd", "__pycache__"))
    shutil.copy(built[0], pkg)
    return built[0], build.stderr
