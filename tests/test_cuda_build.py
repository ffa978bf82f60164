"""The real nvcc build of the CUDA backend (setup.py + cuda_build.py), built once into a temporary
directory: it needs no CUDA library to load (no libcudart or libcublas among its DT_NEEDED, no CUDA
runtime symbol exported), imports and predicts on the CPU, and asked for "cuda" it either raises
InputError saying what is missing (no GPU here) or makes the model and matches the CPU (a GPU).
Also the build's decisions (MOBILE_SAM_C_CUDA=0/1, no toolkit) and the cuBLAS loader's search.

Skips only without nvcc. Which branch of the "cuda" checks runs depends on whether this machine
has a GPU (conftest.cuda_available)."""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import elf_dynamic
from conftest import cuda_available
from cuda_toolkit import NVCC, build_extension

ROOT = Path(__file__).resolve().parents[1]
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (CI has it): the CUDA build was not made")

# What a "cuda" request must say without a GPU: which part is missing (csrc/cuda/backend/device_check.cu).
MISSING = re.compile(r"device 'cuda[^']*' is not available: (CUDA was requested but (no CUDA driver/GPU is available"
                     r"|the NVIDIA driver is too old|the GPU cannot be used)|this mobile_sam_c has no CUDA code for "
                     r"the GPU|cuBLAS could not be loaded)")


def _load_cuda_build():
    spec = importlib.util.spec_from_file_location("cuda_build", ROOT / "cuda_build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _path_without_nvcc():
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not os.path.exists(os.path.join(d, "nvcc")))


@pytest.fixture(scope="module")
def cuda_build(tmp_path_factory):
    """The extension built by setup.py with MOBILE_SAM_C_CUDA=1 (a CUDA build or a failed build):
    (temp dir, the .so, the build's stderr); the package with it under temp/pkg."""
    if NVCC is None:
        pytest.skip("nvcc not found (CI has it): the CUDA build was not made")
    tmp = tmp_path_factory.mktemp("cuda_build")
    env = dict(os.environ, MOBILE_SAM_C_CUDA="1")
    env.pop("MOBILE_SAM_C_CUDA_EMULATION", None)
    jobs = os.environ.get("MSAM_TEST_BUILD_JOBS", "1")  # parallel compiles (nvcc too); 1 on a shared machine
    so, log = build_extension(tmp, env, jobs)
    return tmp, so, log


def test_the_build_says_it_built_cuda_and_links_no_cuda_library(cuda_build):
    _, so, log = cuda_build
    assert re.search(r"mobile_sam_c: building the CUDA backend with \S+ \(CUDA \d+\.\d+, sm_80\+sm_90\+compute_90\)",
                     log), log[-2000:]
    needed = elf_dynamic.needed(str(so))
    assert not [n for n in needed if re.match(r"lib(cudart|cublas|cublasLt|cuda)\.so", n)], needed
    # the static runtime stays inside: no cuda* symbol exported for another library to bind to
    assert elf_dynamic.exported(str(so)) == ["PyInit__C"]


# Runs in a subprocess against the CUDA build (this process holds the in-place build).
CHECKS = textwrap.dedent(r'''
    import json, sys, warnings
    import numpy as np
    import torch
    import mobile_sam_c as msc
    from mobile_sam_c import _C
    from mobile_sam_c.random_weights import random_state_dict

    warnings.simplefilter("ignore")
    out = {"cuda_built": bool(_C.CUDA_BUILT), "file": _C.__file__}
    w = random_state_dict(_C.weight_spec(), seed=3)
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    prompt = dict(point_coords=np.array([[40.0, 50.0]], np.float32), point_labels=np.array([1], np.int32),
                  as_numpy=True, return_logits=True)

    def run(device):
        p = _C.Predictor(_C.Model(w, device))
        p.set_image(image)
        return p.predict(**prompt)

    masks, iou, low = run("cpu")
    out["cpu"] = {"masks": list(masks.shape), "low": list(low.shape), "finite": bool(np.isfinite(low).all())}

    def attempt(fn):
        try:
            return {"ok": True, "value": fn()}
        except Exception as e:
            return {"ok": False, "type": type(e).__name__, "input_error": isinstance(e, msc.InputError), "msg": str(e)}

    sam = msc.sam_model_registry["vit_t"]()

    def move(device):
        got = sam.to(device=device).device
        sam.to("cpu")
        return got

    out["attempts"] = {
        "check_device": attempt(lambda: _C.check_device("cuda")),
        "sam.to('cuda')": attempt(lambda: move("cuda")),
        "sam.to('cuda:0')": attempt(lambda: move("cuda:0")),
        "sam.to(torch.device('cuda'))": attempt(lambda: move(torch.device("cuda"))),
        "sam.cuda()": attempt(lambda: (sam.cuda().device, sam.cpu().device)[0]),
        "registry(device='cuda')": attempt(lambda: msc.sam_model_registry["vit_t"](device="cuda").device),
        "_C.Model(w, 'cuda')": attempt(lambda: _C.Model(w, "cuda").device),
        "_C._conformance('cuda')": attempt(lambda: [list(r) for r in _C._conformance("cuda", 0)]),
    }
    out["after"] = sam.device
    if out["attempts"]["check_device"]["ok"]:  # a GPU: the same prediction as the CPU's
        g_masks, g_iou, g_low = run("cuda")
        out["gpu_vs_cpu"] = {"iou": float(np.abs(np.asarray(g_iou) - iou).max()),
                             "low": float(np.abs(np.asarray(g_low) - low).max()),
                             "low_scale": float(np.abs(low).max())}
    print(json.dumps(out))
''')


@pytest.fixture(scope="module")
def checked(cuda_build):
    tmp, _, _ = cuda_build
    env = dict(os.environ, PYTHONPATH=str(tmp / "pkg"))
    run = subprocess.run([sys.executable, "-c", CHECKS], cwd=tmp, env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_cuda_build_imports_and_predicts_on_the_cpu(checked, cuda_build):
    assert checked["cuda_built"] is True
    assert Path(checked["file"]).resolve() == (cuda_build[0] / "pkg" / "mobile_sam_c" / cuda_build[1].name).resolve()
    assert checked["cpu"] == {"masks": [3, 120, 160], "low": [3, 256, 256], "finite": True}


@pytest.mark.skipif(cuda_available(), reason="a GPU is present: test_cuda_is_made_on_a_gpu checks that branch")
def test_cuda_without_a_gpu_is_an_input_error_saying_what_is_missing(checked):
    for how, got in checked["attempts"].items():
        assert not got["ok"], (how, got)
        assert got["input_error"] and got["type"] == "InputError", (how, got)  # never MemoryError
        if how.startswith(("_C.", "check_device")):  # the core's own words, without the device prefix
            assert MISSING.search(f"device 'cuda' is not available: {got['msg']}"), (how, got["msg"])
        else:
            assert MISSING.search(got["msg"]), (how, got["msg"])
    assert checked["after"] == "cpu"  # a failed move leaves the model where it was


@pytest.mark.skipif(not cuda_available(), reason="no GPU: test_cuda_without_a_gpu_... checks that branch")
def test_cuda_is_made_on_a_gpu(checked):
    a = checked["attempts"]
    assert a["check_device"] == {"ok": True, "value": None}
    for how in ("sam.to('cuda')", "sam.to('cuda:0')", "sam.to(torch.device('cuda'))", "sam.cuda()",
                "registry(device='cuda')", "_C.Model(w, 'cuda')"):
        assert a[how] == {"ok": True, "value": "cuda"}, (how, a[how])
    rows = a["_C._conformance('cuda')"]
    assert rows["ok"] and rows["value"], rows
    assert [r for r in rows["value"] if not r[2] <= r[3]] == []  # (op, case, err, tol)
    d = checked["gpu_vs_cpu"]
    assert d["iou"] <= 1e-3 and d["low"] <= 1e-3 * max(1.0, d["low_scale"]), d


# ---- the cuBLAS loader's search (no GPU needed: loading cuBLAS does not touch the device) ------

def _wheel_cublas():
    """libcublas.so.N of the nvidia-cublas wheel (torch's CUDA build depends on it)."""
    spec = importlib.util.spec_from_file_location("_cuda_libs", ROOT / "mobile_sam_c" / "_cuda_libs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    found = mod.wheel_libraries()
    assert found, "the nvidia-cublas wheel is needed here (pip install nvidia-cublas)"
    return Path(found[0])


def _system_has_cublas():
    """Whether the loader can find a libcublas without the wheel: the ld.so cache, LD_LIBRARY_PATH,
    the toolkit the build baked in."""
    import ctypes.util

    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
    dirs += _load_cuda_build()._toolkit_dirs(NVCC, os.environ)
    return ctypes.util.find_library("cublas") is not None or any(any(Path(d).glob("libcublas.so*")) for d in dirs)


@needs_nvcc
def test_the_cublas_loader_finds_the_wheel_and_says_what_it_tried(cuda_build, tmp_path):
    """tests/cublas_loader_probe.cu linked with the build's cublas_loader.o, placed as the extension
    would be (site/pkg/), with and without the wheel beside it."""
    tmp, _, _ = cuda_build
    loader = tmp / "build" / "nvcc" / "csrc" / "cuda" / "backend" / "cublas_loader.o"
    wheel = _wheel_cublas()
    bare, beside = tmp_path / "bare", tmp_path / "beside"
    for site in (bare, beside):
        (site / "pkg").mkdir(parents=True)
    # the wheel's layout next to the package: site/nvidia/<cuNN or cublas>/lib
    (beside / "nvidia" / wheel.parent.parent.name).mkdir(parents=True)
    (beside / "nvidia" / wheel.parent.parent.name / "lib").symlink_to(wheel.parent)
    probe = bare / "pkg" / "probe"
    build = subprocess.run([NVCC, "-std=c++17", f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'csrc' / 'include'}",
                            str(ROOT / "tests" / "cublas_loader_probe.cu"), str(loader), "-ldl", "-o", str(probe)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    shutil.copy(probe, beside / "pkg" / "probe")
    env = {k: v for k, v in os.environ.items() if k not in ("MOBILE_SAM_C_CUBLAS", "LD_LIBRARY_PATH", "LD_PRELOAD")}

    def run(exe, *args, **extra):
        r = subprocess.run([str(exe), *args], env=dict(env, **extra), capture_output=True, text=True, timeout=120)
        return r.returncode, r.stdout.strip()

    system = _system_has_cublas()
    rc, out = run(bare / "pkg" / "probe")
    if rc:  # nothing on this system: the message says how to get cuBLAS and where it looked
        assert out.startswith("failed: cuBLAS could not be loaded (pip install nvidia-cublas, or set "
                              "MOBILE_SAM_C_CUBLAS to a libcublas.so); tried libcublas.so."), out
        assert f"in {bare.resolve()}/nvidia/" in out, out
    else:
        assert system, out  # found without help only where the system has a libcublas
    rc, out = run(beside / "pkg" / "probe")
    assert rc == 0, out
    if not system:  # the wheel beside the package, found from the extension's own path
        assert out == f"loaded: {beside.resolve()}/nvidia/{wheel.parent.parent.name}/lib/{wheel.name}", out
    rc, out = run(bare / "pkg" / "probe", MOBILE_SAM_C_CUBLAS=str(wheel))
    assert (rc, out) == (0, f"loaded: {wheel}")
    # a copy already loaded (mobile_sam_c/_cuda_libs.py preloads the wheel's) is found by its soname
    rc, out = run(bare / "pkg" / "probe", str(wheel))
    assert (rc, out) == (0, f"loaded: {wheel}")
    # a library that loads but is not cuBLAS is named with what it lacks
    rc, out = run(bare / "pkg" / "probe", MOBILE_SAM_C_CUBLAS="libm.so.6")
    if not system:
        assert rc == 1 and "libm.so.6 has no cublasCreate_v2" in out, out


# ---- the build's decisions -------------------------------------------------------------------

def test_the_build_decides_from_the_environment(tmp_path):
    cb = _load_cuda_build()
    empty = str(tmp_path / "empty")
    home = tmp_path / "cuda"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "nvcc").write_text("#!/bin/sh\nexit 1\n")
    (home / "bin" / "nvcc").chmod(0o755)
    assert cb.decide({"MOBILE_SAM_C_CUDA": "0", "CUDA_HOME": str(home)}) == ("cpu", None, "MOBILE_SAM_C_CUDA=0", False)
    assert cb.decide({"PATH": empty}) == ("cpu", None, cb.NO_TOOLKIT, False)
    assert cb.decide({"PATH": empty, "MOBILE_SAM_C_CUDA": "1"}) == ("cpu", None, cb.NO_TOOLKIT, True)
    assert cb.decide({"PATH": empty, "CUDA_HOME": str(home)}) == ("nvcc", str(home / "bin" / "nvcc"), "", False)
    assert cb.decide({"PATH": str(home / "bin")}).nvcc == str(home / "bin" / "nvcc")
    assert cb.decide({"MOBILE_SAM_C_CUDA_EMULATION": "1", "MOBILE_SAM_C_CUDA": "0"}).kind == "emulation"
    with pytest.raises(ValueError, match="MOBILE_SAM_C_CUDA must be 0, 1 or unset"):
        cb.decide({"MOBILE_SAM_C_CUDA": "yes"})
    # nvcc that cannot compile: the probe says so (setup.py then builds the CPU backend only)
    with pytest.raises(cb.ProbeError):
        cb.probe(str(home / "bin" / "nvcc"), {"PATH": empty}, ["cc"])


@pytest.mark.parametrize("why", ["no toolkit", "broken nvcc"])
def test_cuda_required_but_unavailable_fails_the_build_at_once(tmp_path, why):
    """MOBILE_SAM_C_CUDA=1 stops the build with the reason before compiling anything."""
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "MOBILE_SAM_C_CUDA_EMULATION")}
    env.update(PATH=_path_without_nvcc(), MOBILE_SAM_C_CUDA="1")
    if why == "broken nvcc":
        (tmp_path / "cuda" / "bin").mkdir(parents=True)
        nvcc = tmp_path / "cuda" / "bin" / "nvcc"
        nvcc.write_text("#!/bin/sh\necho 'nvcc: broken on purpose' >&2\nexit 1\n")
        nvcc.chmod(0o755)
        env["CUDA_HOME"] = str(tmp_path / "cuda")
    run = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
                          "--build-temp", str(tmp_path / "build")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode != 0
    expected = ("MOBILE_SAM_C_CUDA=1 but no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH)"
                if why == "no toolkit" else "MOBILE_SAM_C_CUDA=1 but nvcc cannot build the CUDA backend:")
    assert expected in run.stderr, run.stderr[-2000:]
    assert not list((tmp_path / "build").rglob("*.o")), "nothing is compiled first"
