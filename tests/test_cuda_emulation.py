"""test_cuda_emulation.py - the CUDA backend's kernels (csrc/cuda/kernels) built for the CPU with
our emulation shim (csrc/cuda/emu) and checked against numpy / torch, the shim's own barrier,
shuffle, atomic and capture semantics, and every .cu compiled by the real nvcc when it is on PATH.

No GPU is needed: g++ compiles the .cu files with MSAM_CUDA_EMULATION into a shared library that
ctypes loads. Arrays reach the kernels as on a GPU: ptr() copies each into device memory
(cudaMalloc + cudaMemcpy of the emulated runtime) and ok() copies them back. With
MSAM_CUDA_TEST_GPU=1 the same kernel tests run on a real GPU instead: nvcc builds the library,
the copies go through the real runtime, and the tests of the emulation itself are skipped.
"""
from __future__ import annotations

import concurrent.futures as cf
import ctypes
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "csrc" / "cuda"
KERNELS = sorted((CUDA_DIR / "kernels").glob("*.cu"))
EMU_SOURCES = sorted((CUDA_DIR / "emu").glob("*.cpp"))
SELFTEST = CUDA_DIR / "emu" / "selftest.cu"
CUBLAS_USERS = [CUDA_DIR / "emu" / "cublas_selftest.cu"]  # .cu files that call cuBLAS (msam_cublas.h)
CXX = os.environ.get("CXX", "g++")
# extra flags for the emulation build, e.g. "-fsanitize=address" (then run pytest with the
# sanitizer's runtime preloaded; see csrc/cuda/README.md)
EXTRA_FLAGS = os.environ.get("MSAM_CUDA_EMU_CXXFLAGS", "").split()
JOBS = max(2, min(8, os.cpu_count() or 2))  # parallel compiles
GPU_MODE = os.environ.get("MSAM_CUDA_TEST_GPU") == "1"
emulation_only = pytest.mark.skipif(GPU_MODE, reason="tests the emulation itself (MSAM_CUDA_TEST_GPU=1)")

c_float_p = ctypes.c_void_p
ORDERS = {"forward": 0, "reverse": 1, "shuffle": 2}
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


class Staging:
    """Device copies of the numpy arrays a call takes: ptr() uploads an array's whole buffer once
    (so views, strides and aliasing keep their meaning) and returns the view's device address;
    flush() synchronises, copies every buffer back into its array and frees the device memory."""

    H2D, D2H = 1, 2

    def __init__(self, lib):
        # the self-test's wrappers of cudaMalloc, cudaFree, cudaMemcpy, cudaDeviceSynchronize
        self.malloc, self.free = lib.msam_emu_selftest_malloc, lib.msam_emu_selftest_free
        self.copy, self.sync = lib.msam_emu_selftest_copy, lib.msam_emu_selftest_sync
        self.live = {}

    def ptr(self, a, offset=0):
        root = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        assert root.flags.c_contiguous or root.flags.f_contiguous, "stage a contiguous buffer"
        if id(root) not in self.live:
            d = ctypes.c_void_p()
            rc = self.malloc(ctypes.byref(d), max(root.nbytes, 1))
            assert rc == 0, f"cudaMalloc of {root.nbytes} bytes failed with {rc}"
            rc = self.copy(d, root.ctypes.data, root.nbytes, self.H2D)
            assert rc == 0, f"cudaMemcpy to the device failed with {rc}"
            self.live[id(root)] = (root, d.value)
        return ctypes.c_void_p(self.live[id(root)][1] + (a.ctypes.data - root.ctypes.data) + offset)

    def flush(self):
        self.sync()  # a failed launch's error is the test's to report, not ours
        for root, d in self.live.values():
            self.copy(root.ctypes.data, d, root.nbytes, self.D2H)
            self.free(d)
        self.live.clear()


STAGE: Staging | None = None


def ptr(a, offset=0):
    """An array's device address for a launcher (None stays NULL)."""
    return None if a is None else STAGE.ptr(a, offset)


def hptr(a):
    """A host address: arguments the host code reads itself (mean / std, copy destinations)."""
    return ctypes.c_void_p(a.ctypes.data)


def _run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return cmd, r.returncode, r.stdout + r.stderr


def _compile_all(cmds):
    with cf.ThreadPoolExecutor(JOBS) as ex:
        for cmd, rc, out in ex.map(_run, cmds):
            assert rc == 0, f"{' '.join(map(str, cmd))} failed:\n{out}"


# ---- the emulation library ---------------------------------------------------------------

SIGNATURES = {
    "msam_cuda_add": [c_float_p, c_float_p, c_float_p, c_float_p, ctypes.c_size_t],
    "msam_cuda_activate": [c_float_p, c_float_p, c_float_p, ctypes.c_size_t, ctypes.c_int],
    "msam_cuda_fill": [c_float_p, c_float_p, ctypes.c_size_t, ctypes.c_float],
    "msam_cuda_add_row": [c_float_p, c_float_p, c_float_p, c_float_p, ctypes.c_int, ctypes.c_int],
    "msam_cuda_layernorm": [c_float_p, c_float_p, c_float_p, ctypes.c_int, ctypes.c_int, c_float_p, c_float_p,
                            ctypes.c_float],
    "msam_cuda_layernorm_pe": [c_float_p, c_float_p, c_float_p, c_float_p, c_float_p, c_float_p, ctypes.c_int,
                               ctypes.c_int, c_float_p, c_float_p, ctypes.c_float],
    "msam_cuda_softmax": [c_float_p, c_float_p, ctypes.c_int, ctypes.c_ssize_t, ctypes.c_int, ctypes.c_float],
    "msam_cuda_transpose": [c_float_p, c_float_p, ctypes.c_ssize_t, c_float_p, ctypes.c_ssize_t, ctypes.c_int,
                            ctypes.c_int],
    "msam_cuda_space_to_depth2": [c_float_p, c_float_p, c_float_p, ctypes.c_int, ctypes.c_int, ctypes.c_int],
    "msam_cuda_normalize_pad": [c_float_p, c_float_p, ctypes.c_int, c_float_p, ctypes.c_int, ctypes.c_int,
                                ctypes.c_int, ctypes.c_ssize_t, ctypes.c_ssize_t, ctypes.c_ssize_t, c_float_p,
                                c_float_p, c_float_p],
    "msam_cuda_resize_bilinear": [c_float_p, c_float_p, ctypes.c_int, ctypes.c_int, ctypes.c_ssize_t, c_float_p,
                                  ctypes.c_int, ctypes.c_int, ctypes.c_ssize_t, ctypes.c_int, ctypes.c_int],
    "msam_cuda_resize_bilinear_mask": [c_float_p, c_float_p, ctypes.c_int, ctypes.c_int, ctypes.c_ssize_t,
                                       c_float_p, ctypes.c_int, ctypes.c_int, ctypes.c_ssize_t, ctypes.c_int,
                                       ctypes.c_int],
    "msam_cuda_dwconv3x3": [c_float_p, c_float_p, c_float_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                            ctypes.c_int, c_float_p, c_float_p, ctypes.c_int],
    "msam_cuda_window_attention": [c_float_p, c_float_p, c_float_p, c_float_p, ctypes.c_int, ctypes.c_int,
                                   ctypes.c_int, ctypes.c_int, ctypes.c_int, c_float_p, ctypes.c_float],
    "msam_cuda_attention": [c_float_p, c_float_p, c_float_p, ctypes.c_ssize_t, c_float_p, ctypes.c_ssize_t,
                            c_float_p, ctypes.c_ssize_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int],
    "msam_cuda_attention_probs": [c_float_p, c_float_p, ctypes.c_ssize_t, c_float_p, ctypes.c_ssize_t, c_float_p,
                                  ctypes.c_ssize_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int],
    "msam_cuda_im2col3x3": [c_float_p, c_float_p, c_float_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                            ctypes.c_int, ctypes.c_int],
    "msam_cuda_upscale_masks_tail": [c_float_p, c_float_p, c_float_p, ctypes.c_int, ctypes.c_int, c_float_p,
                                     c_float_p, ctypes.c_float, c_float_p, c_float_p, ctypes.c_int, c_float_p,
                                     ctypes.c_int],
    "msam_cuda_gemm_epilogue": [c_float_p, c_float_p, ctypes.c_ssize_t, ctypes.c_int, ctypes.c_int, c_float_p,
                                ctypes.c_int, c_float_p, ctypes.c_ssize_t],
    "msam_cuda_upscale_parts": [c_float_p] * 9 + [ctypes.c_int, ctypes.c_int],
    "msam_emu_selftest_reverse": [c_float_p, c_float_p, ctypes.c_int, ctypes.c_int, ctypes.c_int],
    "msam_emu_selftest_divergent": [c_float_p, ctypes.c_int],
    "msam_emu_selftest_shuffle": [c_float_p, ctypes.c_int, ctypes.c_int, ctypes.c_int],
    "msam_emu_selftest_vote": [c_float_p, ctypes.c_int],
    "msam_emu_selftest_block_reduce": [c_float_p, c_float_p, c_float_p, ctypes.c_int, ctypes.c_int, ctypes.c_int],
    "msam_emu_selftest_atomics": [c_float_p, c_float_p, c_float_p, c_float_p, c_float_p, ctypes.c_size_t],
    "msam_emu_selftest_limits": [c_float_p, ctypes.c_int],
    "msam_emu_selftest_graph": [c_float_p, c_float_p, c_float_p, ctypes.c_int, ctypes.c_int, c_float_p],
    "msam_emu_selftest_malloc": [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t],
    "msam_emu_selftest_free": [c_float_p],
    "msam_emu_selftest_copy": [c_float_p, c_float_p, ctypes.c_size_t, ctypes.c_int],
    "msam_emu_selftest_sync": [],
    "msam_emu_set_order": [ctypes.c_int, ctypes.c_uint],
    "msam_emu_selftest_sgemm": [ctypes.c_int] * 5 + [ctypes.c_float, c_float_p, ctypes.c_int, ctypes.c_longlong,
                                                     c_float_p, ctypes.c_int, ctypes.c_longlong, ctypes.c_float,
                                                     c_float_p, ctypes.c_int, ctypes.c_longlong, ctypes.c_int,
                                                     ctypes.c_int, c_float_p, ctypes.c_size_t],
    "msam_emu_cudaGetLastError": [],
    "msam_emu_cudaDeviceReset": [],
}


class Counters(ctypes.Structure):
    _fields_ = [(n, ctypes.c_longlong) for n in ("launches", "mallocs", "h2d", "d2h", "syncs")]


def build_gpu_library(out):
    """MSAM_CUDA_TEST_GPU=1: the kernels and the self-test built by nvcc for this machine's GPU."""
    assert NVCC, "MSAM_CUDA_TEST_GPU=1 needs nvcc"
    lib_path = out / "libmsam_cuda_kernels.so"
    arch = os.environ.get("MSAM_CUDA_TEST_ARCH", "native")  # e.g. sm_90 where nvcc cannot see the GPU
    _compile_all([[NVCC, "-shared", "-Xcompiler", "-fPIC", "-std=c++17", "-O3", f"-arch={arch}", "-o", str(lib_path)]
                  + [str(s) for s in KERNELS + [SELFTEST]]])
    return ctypes.CDLL(str(lib_path))


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    """The kernels, the shim and its self-test kernels as one ctypes library (or, with
    MSAM_CUDA_TEST_GPU=1, the kernels and self-test for the real GPU)."""
    global STAGE
    out = tmp_path_factory.mktemp("cuda_emu")
    if GPU_MODE:
        lib = build_gpu_library(out)
        for name, args in SIGNATURES.items():
            if hasattr(lib, name):
                getattr(lib, name).argtypes, getattr(lib, name).restype = args, ctypes.c_int
        STAGE = Staging(lib)
        yield lib
        STAGE = None
        return
    flags = [CXX, "-std=c++17", "-O2", "-fPIC", "-ffp-contract=off", "-Wall", "-Wextra", "-Wno-unknown-pragmas",
             "-DMSAM_CUDA_EMULATION"] + EXTRA_FLAGS + ["-c"]
    cmds, objs = [], []
    for src in EMU_SOURCES + KERNELS + [SELFTEST] + CUBLAS_USERS:
        obj = out / (src.parent.name + "_" + src.name + ".o")
        lang = ["-x", "c++"] if src.suffix == ".cu" else []
        cmds.append(flags + lang + [str(src), "-o", str(obj)])
        objs.append(str(obj))
    _compile_all(cmds)
    lib_path = out / "libmsam_cuda_emu.so"
    _compile_all([[CXX, "-shared", "-o", str(lib_path)] + EXTRA_FLAGS + objs + ["-lpthread"]])
    lib = ctypes.CDLL(str(lib_path))
    for name, args in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = ctypes.c_int
    lib.msam_emu_error_message.restype = ctypes.c_char_p
    lib.msam_emu_get_counters.argtypes = [ctypes.POINTER(Counters)]
    lib.msam_emu_get_counters.restype = None
    lib.msam_emu_set_order(0, 1)
    STAGE = Staging(lib)
    yield lib
    STAGE = None


@pytest.fixture(autouse=True)
def _flush_staged():
    """Device copies a test left staged (calls it only checked the status of) are freed after it."""
    yield
    if STAGE is not None:
        STAGE.flush()


@pytest.fixture
def order(emu):
    """Sets the order in which a block's threads resume between sync points; back to forward after."""
    def set_order(name, seed=1):
        emu.msam_emu_set_order(ORDERS[name], seed)
    yield set_order
    emu.msam_emu_set_order(0, 1)


def ok(rc, emu):
    """The launch succeeded; its arrays are back on the host."""
    STAGE.flush()
    why = emu.msam_emu_error_message().decode() if hasattr(emu, "msam_emu_error_message") else ""
    assert rc == 0, f"launch failed with {rc}: {why}"


# ---- references ----------------------------------------------------------------------------

def gelu(x):
    return F.gelu(torch.from_numpy(x.astype(np.float64))).numpy()


def act_ref(x, act):
    return gelu(x) if act == 1 else np.maximum(x, 0) if act == 2 else x.astype(np.float64)


def layernorm_ref(x, g, b, eps):
    x = x.astype(np.float64)
    m = x.mean(1, keepdims=True)
    var = ((x - m) ** 2).mean(1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    return (x - m) * rstd * g + b, rstd[:, 0]


def softmax_ref(v, scale):
    s = v.astype(np.float64) * scale
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def window_attention_ref(qkv, pad_qkv, h, w, win, heads, dh, bias, scale):
    """Pads the map to whole windows with pad_qkv, attends within each window, crops."""
    hp, wp = -(-h // win) * win, -(-w // win) * win
    full = np.broadcast_to(pad_qkv.astype(np.float64), (hp, wp, heads * 3 * dh)).copy()
    full[:h, :w] = qkv.reshape(h, w, -1)
    n = win * win
    t = full.reshape(hp // win, win, wp // win, win, heads, 3, dh).transpose(0, 2, 4, 1, 3, 5, 6)
    t = t.reshape(hp // win, wp // win, heads, n, 3, dh)
    q, k, v = t[..., 0, :], t[..., 1, :], t[..., 2, :]
    s = np.einsum("abhid,abhjd->abhij", q, k) * scale + bias.reshape(heads, n, n)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    o = np.einsum("abhij,abhjd->abhid", p, v)  # windows, heads, tokens, dh
    o = o.reshape(hp // win, wp // win, heads, win, win, dh).transpose(0, 3, 1, 4, 2, 5).reshape(hp, wp, heads * dh)
    return o[:h, :w].reshape(h * w, heads * dh)


def attention_ref(q, k, v, heads, dh):
    nq, nk = q.shape[0], k.shape[0]
    q = q[:, : heads * dh].reshape(nq, heads, dh).astype(np.float64)
    k = k[:, : heads * dh].reshape(nk, heads, dh).astype(np.float64)
    v = v[:, : heads * dh].reshape(nk, heads, dh).astype(np.float64)
    s = np.einsum("ihd,jhd->hij", q, k) / np.sqrt(dh)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("hij,jhd->ihd", p, v).reshape(nq, heads * dh)


def torch_bilinear(x, size):
    t = torch.from_numpy(np.ascontiguousarray(x))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def fma_build_of_torch():
    """As tests/test_resize.py: torch's AVX2 / AVX-512 builds fuse the multiply-adds we reproduce."""
    try:
        return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    except Exception:
        return False


# ---- the emulation itself ------------------------------------------------------------------

@emulation_only
@pytest.mark.parametrize("name", ["forward", "reverse", "shuffle"])
def test_missing_barrier_is_caught(emu, order, name):
    """The same shared-memory reversal with and without its __syncthreads: with it the result is
    right in every resumption order; without it reads run ahead of the writes they need."""
    order(name, seed=3)
    rng = np.random.default_rng(0)
    blocks, threads = 3, 96
    x = rng.standard_normal(blocks * threads).astype(np.float32)
    want = x.reshape(blocks, threads)[:, ::-1].ravel()
    out = np.zeros_like(x)
    ok(emu.msam_emu_selftest_reverse(ptr(out), ptr(x), blocks, threads, 1), emu)
    assert np.array_equal(out, want)
    out[:] = 0
    ok(emu.msam_emu_selftest_reverse(ptr(out), ptr(x), blocks, threads, 0), emu)
    wrong = np.count_nonzero(~(out == want))
    assert wrong > 0, "a missing __syncthreads went unnoticed"
    # forward order: thread t runs to its end before t+1 starts, so every read of a later
    # thread's slot (half the block) sees the NaN the dynamic shared memory starts with
    if name == "forward":
        assert np.isnan(out.reshape(blocks, threads)[:, : threads // 2]).all()


@emulation_only
@pytest.mark.parametrize("mode,expect", [(0, "exited while"), (1, "waits at"), (2, "divergent warp shuffle")])
def test_divergent_barrier_is_reported_not_hung(emu, mode, expect):
    out = np.zeros(64, np.float32)
    rc = emu.msam_emu_selftest_divergent(ptr(out), mode)
    msg = emu.msam_emu_error_message().decode()
    assert rc == 719, (rc, msg)  # cudaErrorLaunchFailure
    assert expect in msg and "divergent" in msg, msg
    # a kernel failure is sticky, as on a GPU, until the device is reset
    assert emu.msam_emu_cudaGetLastError() == 719
    assert emu.msam_cuda_fill(None, ptr(out), 64, ctypes.c_float(1.0)) == 719
    emu.msam_emu_cudaDeviceReset()
    ok(emu.msam_cuda_fill(None, ptr(out), 64, ctypes.c_float(1.0)), emu)
    assert (out == 1).all()


def shuffle_expect(threads, width, arg):
    """CUDA's documented results of the four shuffles with a width (own value when out of range)."""
    exp = np.zeros((threads, 4), np.int32)
    for t in range(threads):
        lane, warp0 = t % 32, t - t % 32
        val = lambda lane_: (warp0 + lane_) * 10 + 7  # noqa: E731
        base = lane & ~(width - 1)
        x = lane ^ arg
        exp[t, 0] = val(x) if x < base + width else val(lane)
        exp[t, 1] = val(lane + arg) if (lane & (width - 1)) + arg < width else val(lane)
        exp[t, 2] = val(lane - arg) if (lane & (width - 1)) >= arg else val(lane)
        exp[t, 3] = val(base + ((lane * 3 + arg) % 32) % width)
    return exp


@pytest.mark.parametrize("threads,width,arg", [(32, 32, 1), (64, 32, 5), (96, 8, 3), (32, 16, 16), (64, 4, 2)])
def test_warp_shuffles_follow_cuda(emu, threads, width, arg):
    out = np.zeros((threads, 4), np.int32)
    ok(emu.msam_emu_selftest_shuffle(ptr(out), threads, width, arg), emu)
    assert np.array_equal(out, shuffle_expect(threads, width, arg))


def test_warp_votes(emu):
    threads = 64
    out = np.zeros((threads, 4), np.uint32)
    ok(emu.msam_emu_selftest_vote(ptr(out), threads), emu)
    for t in range(threads):
        w0 = t - t % 32
        ballot = sum(1 << lane for lane in range(32) if (w0 + lane) % 3 == 0)
        assert list(out[t]) == [ballot, int(w0 <= 40 < w0 + 32), 1, bin(ballot).count("1")], t


@emulation_only
def test_shuffle_in_partial_warp_is_reported(emu):
    out = np.zeros((40, 4), np.int32)
    rc = emu.msam_emu_selftest_shuffle(ptr(out), 40, 32, 1)
    assert rc == 719 and "not a multiple of 32" in emu.msam_emu_error_message().decode()
    emu.msam_emu_cudaDeviceReset()


@pytest.mark.parametrize("threads", [32, 128, 1024])
def test_block_reductions(emu, threads):
    rng = np.random.default_rng(threads)
    blocks, n = 5, 1000
    x = rng.standard_normal((blocks, n)).astype(np.float32)
    sums, maxs = np.zeros(blocks, np.float32), np.zeros(blocks, np.float32)
    ok(emu.msam_emu_selftest_block_reduce(ptr(sums), ptr(maxs), ptr(x), blocks, n, threads), emu)
    np.testing.assert_allclose(sums, x.astype(np.float64).sum(1), atol=1e-4)
    assert np.array_equal(maxs, x.max(1))


def test_atomics_from_concurrent_blocks(emu):
    rng = np.random.default_rng(1)
    n = 5000
    x = rng.uniform(-1, 1, n).astype(np.float32)
    count, imax = np.zeros(1, np.int32), np.full(1, -(2 ** 31), np.int32)
    fsum, fmax = np.zeros(1, np.float32), np.full(1, -np.inf, np.float32)
    ok(emu.msam_emu_selftest_atomics(ptr(count), ptr(fsum), ptr(imax), ptr(fmax), ptr(x), n), emu)
    assert count[0] == n
    assert imax[0] == (x * 1000).astype(np.int32).max()
    assert fmax[0] == x.max()
    assert abs(fsum[0] - x.astype(np.float64).sum()) < 1e-3


@emulation_only
def test_launch_limits(emu):
    out = np.zeros(1, np.float32)
    assert emu.msam_emu_selftest_limits(ptr(out), 0) == 9  # cudaErrorInvalidConfiguration
    assert "1 to 1024 threads" in emu.msam_emu_error_message().decode()
    assert emu.msam_emu_selftest_limits(ptr(out), 1) == 9
    assert "cudaFuncSetAttribute" in emu.msam_emu_error_message().decode()
    ok(emu.msam_emu_selftest_limits(ptr(out), 2), emu)
    assert out[0] == 16383


@emulation_only
def test_graph_capture_records_and_replays(emu):
    n = 300
    rng = np.random.default_rng(2)
    x, y0 = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    dev = []
    for _ in range(3):
        p = ctypes.c_void_p()
        ok(emu.msam_emu_selftest_malloc(ctypes.byref(p), n * 4), emu)
        dev.append(p)
    d_y, d_x, d_snap = dev
    ok(emu.msam_emu_selftest_copy(d_y, hptr(y0), n * 4, 1), emu)
    ok(emu.msam_emu_selftest_copy(d_x, hptr(x), n * 4, 1), emu)
    after_capture = np.zeros(n, np.float32)
    before = Counters()
    emu.msam_emu_get_counters(ctypes.byref(before))
    ok(emu.msam_emu_selftest_graph(d_y, d_x, d_snap, n, 3, hptr(after_capture)), emu)
    after = Counters()
    emu.msam_emu_get_counters(ctypes.byref(after))
    assert np.array_equal(after_capture, y0), "a captured launch ran during capture"
    y, snap = np.zeros(n, np.float32), np.zeros(n, np.float32)
    ok(emu.msam_emu_selftest_copy(hptr(y), d_y, n * 4, 2), emu)
    ok(emu.msam_emu_selftest_copy(hptr(snap), d_snap, n * 4, 2), emu)
    want = y0.copy()
    for _ in range(6):
        want = want + x
    assert np.array_equal(y, want) and np.array_equal(snap, want)
    assert after.launches - before.launches == 6  # 2 kernels x 3 replays, none at capture
    assert after.mallocs == before.mallocs  # the refused cudaMalloc allocated nothing
    # a device -> host copy of a range outside any allocation is refused
    assert emu.msam_emu_selftest_copy(hptr(y), d_y, n * 4 + 4, 2) == 1
    assert emu.msam_emu_cudaGetLastError() == 1  # reported once, then cleared (not sticky)
    assert emu.msam_emu_cudaGetLastError() == 0
    for p in dev:
        ok(emu.msam_emu_selftest_free(p), emu)


def colmajor(a, ld, rows, cols):
    """The rows x cols column-major matrix at a (leading dimension ld) as a numpy view."""
    return np.lib.stride_tricks.as_strided(a, (rows, cols), (4, ld * 4))


@emulation_only
@pytest.mark.parametrize("ta,tb,m,n,k,batch,capture", [(0, 0, 5, 7, 3, 1, 0), (1, 0, 33, 1, 70, 1, 1),
                                                       (0, 1, 1, 40, 9, 3, 0), (1, 1, 17, 19, 23, 2, 1),
                                                       (0, 0, 4, 4, 0, 1, 0)])
def test_cublas_sgemm(emu, ta, tb, m, n, k, batch, capture):
    """cuBLAS's column-major SGEMM (transposes, leading dimensions, alpha/beta, batches) on a stream,
    and captured into a graph: nothing runs at capture, the replay computes."""
    rng = np.random.default_rng(m * n + k)
    ar, ac = (k, m) if ta else (m, k)
    br, bc = (n, k) if tb else (k, n)
    lda, ldb, ldc = ar + 2, br + 1, m + 3
    sa, sb, sc = lda * ac + 5, ldb * bc + 1, ldc * n + 2
    A = rng.standard_normal(sa * batch).astype(np.float32)
    B = rng.standard_normal(sb * batch).astype(np.float32)
    C = rng.standard_normal(sc * batch).astype(np.float32)
    C0 = C.copy()
    alpha, beta = 0.75, -0.5
    after = np.zeros_like(C)
    rc = emu.msam_emu_selftest_sgemm(ta, tb, m, n, k, alpha, ptr(A), lda, sa if batch > 1 else 0, ptr(B), ldb,
                                     sb if batch > 1 else 0, beta, ptr(C), ldc, sc if batch > 1 else 0, batch,
                                     capture, hptr(after), C.size)
    ok(rc, emu)
    if capture:
        assert np.array_equal(after, C0), "the captured GEMM ran at capture"
    for i in range(batch):
        a = colmajor(A[i * sa:], lda, ar, ac).astype(np.float64)
        b = colmajor(B[i * sb:], ldb, br, bc).astype(np.float64)
        want = alpha * ((a.T if ta else a) @ (b.T if tb else b)) + beta * colmajor(C0[i * sc:], ldc, m, n)
        np.testing.assert_allclose(colmajor(C[i * sc:], ldc, m, n), want, atol=1e-4)
    # outside the m x n blocks nothing is written
    untouched = np.ones(C.size, bool)
    for i in range(batch):
        for j in range(n):
            untouched[i * sc + j * ldc: i * sc + j * ldc + m] = False
    assert np.array_equal(C[untouched], C0[untouched])


@emulation_only
def test_cublas_rejects_bad_leading_dimension(emu):
    x = np.zeros(64, np.float32)
    rc = emu.msam_emu_selftest_sgemm(0, 0, 4, 4, 4, 1.0, ptr(x), 3, 0, ptr(x), 4, 0, 0.0, ptr(x), 4, 0, 1, 0,
                                     ptr(x), 0)
    assert rc == 1000 + 7  # CUBLAS_STATUS_INVALID_VALUE: lda < m


# ---- the kernels ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 31, 1000, 70001])
def test_add_fill_broadcast(emu, n):
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    y = np.zeros(n, np.float32)
    ok(emu.msam_cuda_add(None, ptr(y), ptr(a), ptr(b), n), emu)
    assert np.array_equal(y, a + b)
    ok(emu.msam_cuda_add(None, ptr(a), ptr(a), ptr(b), n), emu)  # in place
    assert np.array_equal(a, y)
    ok(emu.msam_cuda_fill(None, ptr(y), n, ctypes.c_float(-2.5)), emu)
    assert (y == -2.5).all()
    rows, c = max(1, n // 100), 37
    row = rng.standard_normal(c).astype(np.float32)
    out = np.full(rows * c + 1, 7.0, np.float32)
    ok(emu.msam_cuda_add_row(None, ptr(out), None, ptr(row), rows, c), emu)  # broadcast
    assert np.array_equal(out[:-1].reshape(rows, c), np.broadcast_to(row, (rows, c))) and out[-1] == 7
    x = rng.standard_normal((rows, c)).astype(np.float32)
    ok(emu.msam_cuda_add_row(None, ptr(out), ptr(x), ptr(row), rows, c), emu)
    assert np.array_equal(out[:-1].reshape(rows, c), x + row)
    ok(emu.msam_cuda_add_row(None, ptr(x), ptr(x), ptr(row), rows, c), emu)  # in place
    assert np.array_equal(x, out[:-1].reshape(rows, c))


@pytest.mark.parametrize("act", [0, 1, 2])
def test_activate(emu, act):
    rng = np.random.default_rng(act)
    x = (rng.standard_normal(4099) * 4).astype(np.float32)
    x[:4] = [0.0, -0.0, 30.0, -30.0]
    y = np.zeros_like(x)
    ok(emu.msam_cuda_activate(None, ptr(y), ptr(x), x.size, act), emu)
    np.testing.assert_allclose(y, act_ref(x, act), rtol=2e-6, atol=1e-7)
    assert emu.msam_cuda_activate(None, ptr(y), ptr(x), x.size, 3) == 1  # not an msam_act


@pytest.mark.parametrize("rows,c", [(1, 1), (5, 7), (37, 70), (130, 256), (9, 320), (3, 1000)])
def test_layernorm_and_pe(emu, rows, c):
    rng = np.random.default_rng(rows * c)
    x = (rng.standard_normal((rows, c)) * 3 + 1).astype(np.float32)
    g, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    pe = rng.standard_normal((rows, c)).astype(np.float32)
    want, rstd_want = layernorm_ref(x, g, b, 1e-5)
    y, ype, rstd = np.zeros_like(x), np.zeros_like(x), np.zeros(rows, np.float32)
    ok(emu.msam_cuda_layernorm_pe(None, ptr(y), ptr(ype), ptr(rstd), ptr(x), ptr(pe), rows, c, ptr(g), ptr(b),
                                  1e-5), emu)
    tol = 2e-5 * max(1.0, np.abs(want).max())
    np.testing.assert_allclose(y, want, atol=tol)
    np.testing.assert_allclose(ype, want + pe, atol=tol)
    np.testing.assert_allclose(rstd, rstd_want, rtol=1e-5)
    xin = x.copy()  # y = x, in place, without the extras
    ok(emu.msam_cuda_layernorm(None, ptr(xin), ptr(xin), rows, c, ptr(g), ptr(b), 1e-6), emu)
    np.testing.assert_allclose(xin, layernorm_ref(x, g, b, 1e-6)[0], atol=tol)


@pytest.mark.parametrize("count,len_,stride,scale", [(1, 1, 1, 1.0), (3, 7, 9, 0.5), (5, 49, 49, 0.17),
                                                     (4, 196, 200, 1.0), (2, 700, 700, 2.0), (3, 4096, 4100, 0.25)])
def test_softmax(emu, count, len_, stride, scale):
    rng = np.random.default_rng(len_)
    buf = (rng.standard_normal(count * stride + 3) * 5).astype(np.float32)
    rows = np.lib.stride_tricks.as_strided(buf, (count, len_), (stride * 4, 4)).copy()
    ok(emu.msam_cuda_softmax(None, ptr(buf), count, stride, len_, scale), emu)
    got = np.lib.stride_tricks.as_strided(buf, (count, len_), (stride * 4, 4))
    np.testing.assert_allclose(got, softmax_ref(rows, scale), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 77), (45, 1), (31, 33), (45, 77), (130, 64)])
def test_transpose(emu, rows, cols):
    rng = np.random.default_rng(rows + cols)
    ldx, ldy = cols + 3, rows + 5
    x = rng.standard_normal((rows, ldx)).astype(np.float32)
    y = np.full((cols, ldy), 9.0, np.float32)
    ok(emu.msam_cuda_transpose(None, ptr(y), ldy, ptr(x), ldx, rows, cols), emu)
    assert np.array_equal(y[:, :rows], x[:, :cols].T) and (y[:, rows:] == 9).all()


@pytest.mark.parametrize("h,w,c", [(2, 2, 1), (3, 5, 3), (7, 7, 64), (16, 10, 33)])
def test_space_to_depth2(emu, h, w, c):
    x = np.random.default_rng(h * w).standard_normal((h, w, c)).astype(np.float32)
    ho, wo = h // 2, w // 2
    y = np.zeros((ho, wo, 4 * c), np.float32)
    ok(emu.msam_cuda_space_to_depth2(None, ptr(y), ptr(x), h, w, c), emu)
    want = x[: 2 * ho, : 2 * wo].reshape(ho, 2, wo, 2, c).transpose(0, 2, 1, 3, 4).reshape(ho, wo, 4 * c)
    assert np.array_equal(y, want)


U8, F32 = 1, 0


@pytest.mark.parametrize("side,h,w", [(64, 37, 50), (64, 64, 64), (32, 1, 1), (48, 48, 13)])
def test_normalize_pad(emu, side, h, w):
    """uint8 HWC with padded rows, the same frame as BGR (negative channel stride), and a float
    CHW view with strides (with one NaN counted): all equal the float32 arithmetic of predict.c."""
    rng = np.random.default_rng(side + h)
    row_stride = w * 3 + 5
    buf = rng.integers(0, 256, (h, row_stride), dtype=np.uint8)
    rgb = buf[:, : w * 3].reshape(h, w, 3)
    want = np.zeros((side, side, 3), np.float32)
    want[:h, :w] = (rgb.astype(np.float32) - MEAN) / STD  # float32 ops, as predict.c
    y = np.full((side, side, 3), np.nan, np.float32)
    ok(emu.msam_cuda_normalize_pad(None, ptr(y), side, ptr(buf), U8, h, w, 1, row_stride, 3, hptr(MEAN), hptr(STD),
                                   None), emu)
    assert np.array_equal(y, want)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    y[:] = np.nan
    ok(emu.msam_cuda_normalize_pad(None, ptr(y), side, ptr(bgr, 2), U8, h, w, -1, w * 3, 3,
                                   hptr(MEAN), hptr(STD), None), emu)
    assert np.array_equal(y, want)
    chw = np.ascontiguousarray(rgb.astype(np.float32).transpose(2, 1, 0)).transpose(0, 2, 1)
    if h * w > 1:
        chw[1, h - 1, w - 1] = np.nan
    bad = np.zeros(1, np.int32)
    y[:] = np.nan
    st = [s // 4 for s in chw.strides]
    ok(emu.msam_cuda_normalize_pad(None, ptr(y), side, ptr(chw), F32, h, w, st[0], st[1], st[2], hptr(MEAN), hptr(STD),
                                   ptr(bad)), emu)
    if h * w > 1:
        assert bad[0] == 1 and np.isnan(y[h - 1, w - 1, 1])
        y[h - 1, w - 1, 1] = want[h - 1, w - 1, 1]
    assert np.array_equal(y, want)


RESIZE_CASES = [((256, 256), (1024, 1024), None), ((256, 256), (1024, 1024), (684, 1000)),
                ((683, 1024), (300, 200), None), ((50, 60), (50, 60), None), ((7, 3), (5, 11), None),
                ((1, 1), (4, 4), None), ((97, 1), (300, 2), None), ((64, 64), (129, 33), (100, 40))]


@pytest.mark.parametrize("src,size,crop", RESIZE_CASES, ids=str)
def test_resize_bilinear_and_mask(emu, src, size, crop):
    rng = np.random.default_rng(src[0] * 7 + size[1])
    sh, sw = src
    ld = sw + 3
    x = rng.uniform(-1, 1, (sh, ld)).astype(np.float32)
    x[rng.random((sh, ld)) < 0.2] = 0.0  # exact zeros: 0 must give False in the mask
    plane = x[:, :sw]
    want = torch_bilinear(plane, size)
    ch, cw = (min(crop[0], size[0]), min(crop[1], size[1])) if crop else size  # a crop is clipped to the output
    want = want[:ch, :cw]
    dh, dw = size
    out = np.zeros((ch, cw + 2), np.float32)
    ok(emu.msam_cuda_resize_bilinear(None, ptr(x), sh, sw, ld, ptr(out), dh, dw, cw + 2, ch, cw), emu)
    got = out[:, :cw]
    assert np.abs(got - want).max() <= 1e-5
    if fma_build_of_torch() and dh + dw > 128:
        assert np.array_equal(got, want), f"{np.count_nonzero(got != want)} values differ from torch"
    mask = np.full((ch, cw + 2), 7, np.uint8)
    ok(emu.msam_cuda_resize_bilinear_mask(None, ptr(x), sh, sw, ld, ptr(mask), dh, dw, cw + 2, ch, cw), emu)
    assert np.array_equal(mask[:, :cw], (got > 0).astype(np.uint8)) and (mask[:, cw:] == 7).all()


@pytest.mark.parametrize("h,w,c,stride,act", [(1, 1, 1, 1, 0), (5, 7, 3, 1, 1), (8, 8, 64, 2, 1),
                                              (9, 5, 33, 2, 2), (16, 16, 128, 1, 1)])
def test_dwconv3x3(emu, h, w, c, stride, act):
    rng = np.random.default_rng(h * c + stride)
    x = rng.standard_normal((h, w, c)).astype(np.float32)
    w9c = rng.standard_normal((9, c)).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32)
    ho, wo = -(-h // stride), -(-w // stride)
    y = np.zeros((ho, wo, c), np.float32)
    ok(emu.msam_cuda_dwconv3x3(None, ptr(y), ptr(x), h, w, c, stride, ptr(w9c), ptr(bias), act), emu)
    t = torch.from_numpy(x.astype(np.float64)).permute(2, 0, 1)[None]
    k = torch.from_numpy(w9c.astype(np.float64).T.reshape(c, 1, 3, 3))
    ref = F.conv2d(t, k, torch.from_numpy(bias.astype(np.float64)), stride=stride, padding=1, groups=c)
    want = act_ref(ref[0].permute(1, 2, 0).numpy(), act)
    np.testing.assert_allclose(y, want, atol=2e-5)
    ok(emu.msam_cuda_dwconv3x3(None, ptr(y), ptr(x), h, w, c, stride, ptr(w9c), None, 0), emu)  # no bias
    want = F.conv2d(t, k, None, stride=stride, padding=1, groups=c)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(y, want, atol=2e-5)


@pytest.mark.parametrize("h,w,win,heads,dh", [(9, 9, 7, 2, 32), (5, 3, 7, 1, 16), (14, 20, 14, 2, 32),
                                              (16, 16, 7, 3, 8)])
def test_window_attention(emu, h, w, win, heads, dh):
    rng = np.random.default_rng(h * w + win)
    qkv = rng.standard_normal((h * w, heads * 3 * dh)).astype(np.float32)
    pad = rng.standard_normal(heads * 3 * dh).astype(np.float32)
    bias = rng.standard_normal((heads, win * win, win * win)).astype(np.float32)
    scale = dh ** -0.5
    y = np.full((h * w, heads * dh), np.nan, np.float32)
    ok(emu.msam_cuda_window_attention(None, ptr(y), ptr(qkv), ptr(pad), h, w, win, heads, dh, ptr(bias), scale), emu)
    np.testing.assert_allclose(y, window_attention_ref(qkv, pad, h, w, win, heads, dh, bias, scale), atol=2e-5)


@pytest.mark.parametrize("nq,nk,heads,dh", [(1, 1, 1, 1), (7, 300, 8, 16), (300, 7, 8, 32), (5, 64, 2, 64)])
def test_attention(emu, nq, nk, heads, dh):
    rng = np.random.default_rng(nq + nk)
    width = heads * dh
    q = rng.standard_normal((nq, width + 3)).astype(np.float32)
    k = (rng.standard_normal((nk, width + 1)) * 2).astype(np.float32)
    v = rng.standard_normal((nk, width + 5)).astype(np.float32)
    out = np.full((nq, width), np.nan, np.float32)
    ok(emu.msam_cuda_attention(None, ptr(out), ptr(q), width + 3, ptr(k), width + 1, ptr(v), width + 5, nq, nk,
                               heads, dh), emu)
    np.testing.assert_allclose(out, attention_ref(q, k, v, heads, dh), atol=2e-5)


@pytest.mark.parametrize("nq,nk,heads,dh", [(1, 1, 1, 1), (300, 7, 8, 16), (5, 70, 2, 64)])
def test_attention_probs(emu, nq, nk, heads, dh):
    rng = np.random.default_rng(nq * nk)
    width = heads * dh
    q = rng.standard_normal((nq, width + 2)).astype(np.float32)
    k = (rng.standard_normal((nk, width + 1)) * 2).astype(np.float32)
    ldp = heads * nk + 3
    P = np.full((nq, ldp), 5.0, np.float32)
    ok(emu.msam_cuda_attention_probs(None, ptr(P), ldp, ptr(q), width + 2, ptr(k), width + 1, nq, nk, heads, dh), emu)
    qh = q[:, :width].reshape(nq, heads, dh).astype(np.float64)
    kh = k[:, :width].reshape(nk, heads, dh).astype(np.float64)
    want = softmax_ref(np.einsum("ihd,jhd->ihj", qh, kh), 1 / np.sqrt(dh)).reshape(nq, heads * nk)
    np.testing.assert_allclose(P[:, : heads * nk], want, rtol=1e-5, atol=1e-7)
    assert (P[:, heads * nk:] == 5).all()


@pytest.mark.parametrize("h,w,cin,stride,oy0,rows", [(1, 1, 1, 1, 0, 1), (5, 7, 3, 1, 0, 5), (9, 6, 32, 2, 1, 3),
                                                     (8, 8, 17, 2, 2, 2)])
def test_im2col3x3_gives_the_convolution(emu, h, w, cin, stride, oy0, rows):
    """The patch rows times the conv3x3_create weight order equal torch's conv2d rows."""
    rng = np.random.default_rng(h * w * cin)
    x = rng.standard_normal((h, w, cin)).astype(np.float32)
    wo = -(-w // stride)
    cols = np.full((rows * wo, 9 * cin), np.nan, np.float32)
    ok(emu.msam_cuda_im2col3x3(None, ptr(cols), ptr(x), h, w, cin, stride, oy0, rows), emu)
    cout = 4
    wt = rng.standard_normal((cout, cin, 3, 3))
    wr = wt.reshape(cout, cin, 9).transpose(0, 2, 1).reshape(cout, 9 * cin)  # [cout][(ky*3+kx)*cin + ci]
    got = cols.astype(np.float64) @ wr.T
    ref = F.conv2d(torch.from_numpy(x.astype(np.float64)).permute(2, 0, 1)[None], torch.from_numpy(wt),
                   stride=stride, padding=1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, ref[oy0: oy0 + rows].reshape(rows * wo, cout), atol=1e-9)


def upscale_tail_ref(u1, g, c1, gamma, beta, eps, w2, b2, c, hyper):
    """The contract of ops.h in float64: sub-pixel LayerNorm + GELU, up2 + GELU, hypernetwork dots."""
    n = hyper.shape[0]
    v = u1.astype(np.float64).reshape(g * g * 4, c1)
    m = v.mean(1, keepdims=True)
    v = gelu((v - m) / np.sqrt(((v - m) ** 2).mean(1, keepdims=True) + eps) * gamma + beta)
    v = gelu(v @ w2.T.astype(np.float64) + (0 if b2 is None else b2)).reshape(g, g, 2, 2, 2, 2, c)  # y x t1 t2
    # t1 = (a, b), t2 = (d, e): Y = 4y + 2a + d, X = 4x + 2b + e
    logits = np.einsum("yxabdek,ik->iyadxbe", v, hyper.astype(np.float64))
    return logits.reshape(n, 4 * g, 4 * g)


@pytest.mark.parametrize("g,c1,c,n", [(1, 8, 4, 1), (3, 64, 32, 4), (4, 70, 33, 3)])
def test_upscale_masks_tail(emu, g, c1, c, n):
    rng = np.random.default_rng(g * c1 + c)
    u1 = rng.standard_normal((g * g, 4 * c1)).astype(np.float32)
    gamma, beta = rng.standard_normal(c1).astype(np.float32), rng.standard_normal(c1).astype(np.float32)
    w2 = (rng.standard_normal((4 * c, c1)) / np.sqrt(c1)).astype(np.float32)
    b2 = rng.standard_normal(4 * c).astype(np.float32)
    hyper = rng.standard_normal((n, c)).astype(np.float32)
    low = np.full((n, 4 * g, 4 * g), np.nan, np.float32)
    ok(emu.msam_cuda_upscale_masks_tail(None, ptr(low), ptr(u1), g, c1, ptr(gamma), ptr(beta), 1e-6, ptr(w2), ptr(b2),
                                        c, ptr(hyper), n), emu)
    np.testing.assert_allclose(low, upscale_tail_ref(u1, g, c1, gamma, beta, 1e-6, w2, b2, c, hyper), atol=5e-5)


@pytest.mark.parametrize("act", [0, 1, 2])
def test_gemm_epilogue(emu, act):
    rng = np.random.default_rng(act)
    rows, n, ldy, ldr = 13, 37, 40, 39
    y = rng.standard_normal((rows, ldy)).astype(np.float32)
    res = rng.standard_normal((rows, ldr)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    y0 = y.copy()
    ok(emu.msam_cuda_gemm_epilogue(None, ptr(y), ldy, rows, n, ptr(bias), act, ptr(res), ldr), emu)
    want = act_ref(y0[:, :n].astype(np.float64) + bias + res[:, :n], act)
    np.testing.assert_allclose(y[:, :n], want, rtol=1e-6, atol=1e-6)
    assert np.array_equal(y[:, n:], y0[:, n:])
    y2 = y0.copy()  # residual = y itself, no bias
    ok(emu.msam_cuda_gemm_epilogue(None, ptr(y2), ldy, rows, n, None, act, ptr(y2), ldy), emu)
    np.testing.assert_allclose(y2[:, :n], act_ref(2.0 * y0[:, :n].astype(np.float64), act), rtol=1e-6, atol=1e-6)


def test_upscale_parts(emu):
    rng = np.random.default_rng(3)
    pixels, width = 50, 24
    a, b, u0 = (rng.standard_normal((pixels, width)).astype(np.float32) for _ in range(3))
    f1, h = rng.standard_normal(width).astype(np.float32), rng.standard_normal(width).astype(np.float32)
    s0, s1 = rng.uniform(0.5, 2, pixels).astype(np.float32), rng.uniform(0.5, 2, pixels).astype(np.float32)
    u = np.zeros_like(a)
    ok(emu.msam_cuda_upscale_parts(None, ptr(u), ptr(a), ptr(b), ptr(u0), ptr(f1), ptr(h), ptr(s0), ptr(s1), pixels,
                                   width), emu)
    want = s1[:, None] * (s0[:, None] * (a + u0) + b + f1) + h  # float32, the same order
    np.testing.assert_allclose(u, want, rtol=1e-6, atol=1e-6)
    ok(emu.msam_cuda_upscale_parts(None, ptr(a), ptr(a), ptr(b), ptr(u0), ptr(f1), ptr(h), ptr(s0), ptr(s1), pixels,
                                   width), emu)  # in place
    assert np.array_equal(a, u)


@emulation_only
def test_results_do_not_depend_on_thread_interleaving(emu, order):
    """Kernels that share data between threads (barriers, shuffles) give bit-identical results
    whichever order a block's threads are resumed in: no missing barrier hides in them."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((37, 70)).astype(np.float32)
    g, b = rng.standard_normal(70).astype(np.float32), rng.standard_normal(70).astype(np.float32)
    qkv = rng.standard_normal((81, 2 * 3 * 16)).astype(np.float32)
    pad = rng.standard_normal(2 * 3 * 16).astype(np.float32)
    bias = rng.standard_normal((2, 49, 49)).astype(np.float32)
    plane = rng.uniform(-1, 1, (33, 40)).astype(np.float32)

    def run_all():
        ln = np.zeros_like(x)
        ok(emu.msam_cuda_layernorm(None, ptr(ln), ptr(x), 37, 70, ptr(g), ptr(b), 1e-5), emu)
        sm = x.copy()
        ok(emu.msam_cuda_softmax(None, ptr(sm), 37, 70, 70, 0.3), emu)
        tr = np.zeros((70, 37), np.float32)
        ok(emu.msam_cuda_transpose(None, ptr(tr), 37, ptr(x), 70, 37, 70), emu)
        rs = np.zeros((70, 90), np.float32)
        ok(emu.msam_cuda_resize_bilinear(None, ptr(plane), 33, 40, 40, ptr(rs), 70, 90, 90, 70, 90), emu)
        wa = np.zeros((81, 32), np.float32)
        ok(emu.msam_cuda_window_attention(None, ptr(wa), ptr(qkv), ptr(pad), 9, 9, 7, 2, 16, ptr(bias), 0.25), emu)
        at = np.zeros((37, 64), np.float32)
        ok(emu.msam_cuda_attention(None, ptr(at), ptr(x), 70, ptr(x), 70, ptr(x), 70, 37, 37, 4, 16), emu)
        ap = np.zeros((37, 4 * 37), np.float32)
        ok(emu.msam_cuda_attention_probs(None, ptr(ap), 4 * 37, ptr(x), 70, ptr(x), 70, 37, 37, 4, 16), emu)
        up = np.zeros((2, 8, 8), np.float32)
        ok(emu.msam_cuda_upscale_masks_tail(None, ptr(up), ptr(x), 2, 16, ptr(g), ptr(b), 1e-6, ptr(x), None, 8,
                                            ptr(x), 2), emu)
        return [ln, sm, tr, rs, wa, at, ap, up]

    base = run_all()
    for name, seed in [("reverse", 1), ("shuffle", 5), ("shuffle", 6)]:
        order(name, seed)
        for got, want in zip(run_all(), base):
            assert np.array_equal(got, want), name


def test_launchers_reject_bad_sizes(emu):
    y = np.zeros(16, np.float32)
    assert emu.msam_cuda_dwconv3x3(None, ptr(y), ptr(y), 2, 2, 1, 3, ptr(y), None, 0) == 1  # stride 3
    assert emu.msam_cuda_window_attention(None, ptr(y), ptr(y), ptr(y), 2, 2, 17, 1, 8, ptr(y), 1.0) == 1
    assert emu.msam_cuda_attention(None, ptr(y), ptr(y), 65, ptr(y), 65, ptr(y), 65, 1, 1, 1, 65) == 1
    assert emu.msam_cuda_im2col3x3(None, ptr(y), ptr(y), 4, 4, 1, 2, 1, 2) == 1  # rows past ho
    assert emu.msam_cuda_transpose(None, ptr(y), 1, ptr(y), 4, 4, 4) == 1  # ldy < rows
    assert emu.msam_cuda_normalize_pad(None, ptr(y), 2, ptr(y), U8, 3, 1, 1, 3, 3, hptr(MEAN), hptr(STD), None) == 1
    assert emu.msam_cuda_normalize_pad(None, ptr(y), 2, ptr(y), 2, 1, 1, 1, 3, 3, hptr(MEAN), hptr(STD), None) == 1
    # nothing to do is not an error and launches nothing
    assert emu.msam_cuda_add(None, ptr(y), ptr(y), ptr(y), 0) == 0
    assert emu.msam_cuda_softmax(None, ptr(y), 0, 4, 4, 1.0) == 0


# ---- the real compiler ---------------------------------------------------------------------

from cuda_toolkit import NVCC  # noqa: E402


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH (CI has it): the .cu files were only emulated")
def test_every_cu_compiles_with_nvcc(tmp_path):
    """sm_80 and sm_90 SASS and sm_90 PTX for every kernel file and the shim's self-test, warnings
    as errors, so a .cu that only the emulation accepts fails here."""
    cmds = []
    for src in KERNELS + [SELFTEST]:
        cmds.append([NVCC, "-c", "-std=c++17", "-O3", "-Werror", "all-warnings",
                     "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90",
                     "-gencode", "arch=compute_90,code=compute_90",  # PTX for newer GPUs
                     str(src), "-o", str(tmp_path / (src.stem + ".o"))])
    _compile_all(cmds)


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH (CI has it): the .cu files were only emulated")
def test_cublas_users_compile_with_nvcc(tmp_path):
    """The files that call cuBLAS compile with nvcc alone, against our declarations of the calls
    (backend/cublas_loader.h: cuBLAS is loaded at run time, so no cuBLAS headers are needed)."""
    cmds = [[NVCC, "-c", "-std=c++17", "-O3", "-Werror", "all-warnings",
             "-gencode", "arch=compute_80,code=sm_80", str(src), "-o", str(tmp_path / (src.stem + ".o"))]
            for src in CUBLAS_USERS]
    _compile_all(cmds)
