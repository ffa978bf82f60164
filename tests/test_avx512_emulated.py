# test_avx512_emulated.py - the AVX-512 GEMM kernel on CPUs without AVX-512: the package is built
# again with MSAM_EMULATE_AVX512 (SIMDe's portable intrinsics) and the GEMM and model parity tests run on it.
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")
# The suites that exercise the GEMM: the kernel itself, then the whole model through it.
SUITES = ("test_gemm.py", "test_encoder_parity.py", "test_decoder_parity.py")


def _simde_include() -> str:
    """An include root holding simde/x86/avx512.h: MSAM_SIMDE_INCLUDE, else the SIMDe headers of
    the cmeel-simde package (a test extra: `pip install ".[test]"` installs it), else the system's.
    Nothing is fetched at test time."""
    roots = [os.environ.get("MSAM_SIMDE_INCLUDE", "")]
    try:
        dist = importlib.metadata.distribution("cmeel-simde")
        roots += [str(dist.locate_file(f)).rsplit(os.sep + "simde" + os.sep, 1)[0]
                  for f in dist.files or [] if str(f).endswith("simde/x86/avx512.h")]
    except importlib.metadata.PackageNotFoundError:
        pass
    roots += ["/usr/include", "/usr/local/include"]
    for root in roots:
        if root and os.path.isfile(os.path.join(root, "simde", "x86", "avx512.h")):
            return root
    pytest.fail("the AVX-512 emulation test needs SIMDe's headers: install the test extras "
                "(pip install \".[test]\", which brings cmeel-simde) or set MSAM_SIMDE_INCLUDE to a "
                "folder holding simde/x86/avx512.h")


@pytest.fixture(scope="module")
def emulated_build():
    work = tempfile.mkdtemp(prefix="msam_avx512_emu_")
    try:
        simde = _simde_include()
        src = os.path.join(work, "src")
        os.makedirs(src)
        for name in ("setup.py", "cuda_build.py", "pyproject.toml", "README.md"):
            shutil.copy(os.path.join(REPO, name), src)
        ignore = shutil.ignore_patterns("*.so", "*.pyd", "__pycache__", "build")
        for name in ("csrc", "mobile_sam_c"):
            shutil.copytree(os.path.join(REPO, name), os.path.join(src, name), ignore=ignore)
        env = dict(os.environ, MSAM_EMULATE_AVX512=simde, MOBILE_SAM_C_CUDA="0")  # the CPU kernels only
        proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=src,
                              env=env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        yield src
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(build: str, args, isa="avx512", timeout=1800):
    env = dict(os.environ, PYTHONPATH=build + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MSAM_ISA", None)
    if isa:
        env["MSAM_ISA"] = isa
    # outside the repository, so the source tree's mobile_sam_c cannot shadow the emulated build
    return subprocess.run([sys.executable] + args, env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=tempfile.gettempdir())


def test_emulated_build_runs_the_avx512_kernel(emulated_build):
    code = "import mobile_sam_c as m; print(m.cpu_isa(), m.__file__)"
    proc = _run(emulated_build, ["-c", code])
    assert proc.returncode == 0, proc.stderr
    isa, path = proc.stdout.split()
    assert isa == "avx512"
    assert path.startswith(emulated_build)
    # a cap still lowers the choice in this build
    proc = _run(emulated_build, ["-c", code], isa="avx2")
    assert proc.returncode == 0 and proc.stdout.split()[0] == "avx2", proc.stderr


@pytest.mark.parametrize("suite", SUITES)
def test_suite_on_emulated_avx512(emulated_build, suite):
    proc = _run(emulated_build, ["-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(TESTS, suite)])
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail, tail
