# test_gemm.py - the fp32 GEMM (mobile_sam_c._C._gemm: packed, blocked, threaded SIMD kernel) against
# float64 numpy and against the plain reference _gemm_ref, for every kernel the CPU can run.
import math
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

from mobile_sam_c import _C

ACT_NONE, ACT_GELU, ACT_RELU = 0, 1, 2
ISAS = ("generic", "avx2", "avx512")


def _erf64(x):
    try:
        import torch

        return torch.erf(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))).numpy()
    except ImportError:
        return np.vectorize(math.erf, otypes=[np.float64])(x)


def expected(a, w, bias=None, act=ACT_NONE, residual=None):
    """float64 truth of act(a @ w.T + bias + residual)."""
    y = a.astype(np.float64) @ w.astype(np.float64).T
    if bias is not None:
        y += bias
    if residual is not None:
        y += residual
    if act == ACT_GELU:
        y = 0.5 * y * (1.0 + _erf64(y / math.sqrt(2.0)))
    elif act == ACT_RELU:
        y = np.maximum(y, 0.0)
    return y


def tolerance(k, truth):
    # fp32 dot products of k terms: the error grows like sqrt(k) times the size of the sums.
    scale = 1.0 + (float(np.sqrt(np.mean(truth * truth))) if truth.size else 0.0)
    return 1e-5 * math.sqrt(max(k, 1)) * scale


def operands(rng, m, n, k, bias=True, residual=False):
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    w = rng.uniform(-1, 1, (n, k)).astype(np.float32)
    b = rng.uniform(-1, 1, n).astype(np.float32) if bias else None
    r = rng.uniform(-2, 2, (m, n)).astype(np.float32) if residual else None
    return a, w, b, r


def check(a, w, b=None, act=ACT_NONE, r=None, against_ref=True):
    got = _C._gemm(a, w, b, act, r)
    assert got.dtype == np.float32 and got.shape == (a.shape[0], w.shape[0])
    assert got.flags.c_contiguous
    truth = expected(a, w, b, act, r)
    tol = tolerance(a.shape[1], truth)
    err = float(np.max(np.abs(got - truth))) if got.size else 0.0
    assert np.all(np.isfinite(got))
    assert err <= tol, f"max abs err {err:.3g} > {tol:.3g} (vs float64)"
    if against_ref:
        ref = _C._gemm_ref(a, w, b, act, r)
        err_ref = float(np.max(np.abs(got - ref))) if got.size else 0.0
        assert err_ref <= tol, f"max abs err {err_ref:.3g} > {tol:.3g} (vs _gemm_ref)"
        err_ref64 = float(np.max(np.abs(ref - truth))) if got.size else 0.0
        assert err_ref64 <= tol, f"_gemm_ref off by {err_ref64:.3g}"


SMALL_M = (1, 2, 3, 5, 7, 13, 64, 100)
NK = (1, 3, 17, 27, 31, 33, 64, 128, 160, 255, 288, 320, 480, 640, 1280, 2304)


def test_isa_name():
    assert _C._gemm_isa() in ISAS


@pytest.mark.parametrize("m", SMALL_M)
@pytest.mark.parametrize("n", NK)
def test_shapes_small_m(m, n):
    rng = np.random.default_rng(1000 * m + n)
    for i, k in enumerate(NK):
        # rotate through the epilogues so every (m, n) sees several of them
        v = (i + m + n) % 6
        a, w, b, r = operands(rng, m, n, k, bias=v % 2 == 0, residual=v >= 3)
        check(a, w, b, v % 3, r)


# M = 4096 (the 64 x 64 decoder / stage-3 token count): every N with a spread of K, and back.
@pytest.mark.parametrize("n", NK)
def test_shapes_m4096(n):
    rng = np.random.default_rng(n)
    for i, k in enumerate((1, 27, 33, 160, 255, 320)):
        v = (i + n) % 6
        a, w, b, r = operands(rng, 4096, n, k, bias=v % 2 == 0, residual=v >= 3)
        check(a, w, b, v % 3, r, against_ref=n * k <= 64 * 1024)


@pytest.mark.parametrize("k", (480, 640, 1280, 2304))
def test_shapes_m4096_long_k(k):
    rng = np.random.default_rng(k)
    for i, n in enumerate((1, 17, 160, 256, 320)):
        a, w, b, r = operands(rng, 4096, n, k, bias=True, residual=i % 2 == 1)
        check(a, w, b, i % 3, r, against_ref=False)


# The encoder's own shapes (M x K -> N, epilogue), M cut where the float64 check would be slow.
MODEL_SHAPES = [
    (4096, 64, 256, ACT_NONE, False), (4096, 256, 64, ACT_GELU, True), (4096, 64, 128, ACT_NONE, False),
    (2048, 128, 384, ACT_NONE, False), (2048, 128, 128, ACT_NONE, True), (2048, 128, 512, ACT_GELU, False),
    (2048, 512, 128, ACT_NONE, True), (4096, 160, 480, ACT_NONE, False), (4096, 160, 640, ACT_GELU, False),
    (4096, 640, 160, ACT_NONE, True), (1024, 320, 960, ACT_NONE, False), (1024, 320, 1280, ACT_GELU, False),
    (1024, 1280, 320, ACT_NONE, True), (4096, 320, 256, ACT_NONE, False), (1024, 2304, 256, ACT_RELU, False),
    (16384, 27, 32, ACT_GELU, False), (4096, 288, 64, ACT_GELU, False), (4096, 256, 128, ACT_RELU, False),
    (16, 256, 2048, ACT_RELU, False), (1, 256, 256, ACT_NONE, False), (9, 256, 2048, ACT_GELU, True),
]


@pytest.mark.parametrize("m,k,n,act,res", MODEL_SHAPES)
def test_model_shapes(m, k, n, act, res):
    rng = np.random.default_rng(m + 7 * k + 13 * n)
    a, w, b, r = operands(rng, m, n, k, bias=True, residual=res)
    check(a, w, b, act, r, against_ref=m * n * k <= 1 << 27)


@pytest.mark.parametrize("act", (ACT_NONE, ACT_GELU, ACT_RELU))
@pytest.mark.parametrize("bias", (False, True))
@pytest.mark.parametrize("res", (False, True))
def test_epilogues(act, bias, res):
    rng = np.random.default_rng(act * 4 + bias * 2 + res)
    for m, n, k in ((1, 1, 1), (7, 31, 17), (13, 33, 300), (100, 160, 640), (64, 255, 1280)):
        a, w, b, r = operands(rng, m, n, k, bias=bias, residual=res)
        check(a, w, b, act, r)


def test_gelu_accuracy():
    # k = 1 and power-of-two weights: the pre-activation is exact, so only the GELU is measured.
    x = np.concatenate([np.linspace(-12, 12, 200001), [-1e30, -100, -5.7, -4.0, 0.0, -0.0, 1e-30, 4.0, 100, 1e30]])
    a = x.astype(np.float32)[:, None]
    w = np.array([[1.0], [-1.0], [0.5], [2.0], [-0.25]] * 4, dtype=np.float32)[:19]  # 19: a column tail
    got = _C._gemm(a, w, None, ACT_GELU).astype(np.float64)
    z = a.astype(np.float64) * w[:, 0].astype(np.float64)[None, :]
    truth = 0.5 * z * (1.0 + _erf64(z / math.sqrt(2.0)))
    err = np.abs(got - truth)
    assert np.all(err <= 1e-6 * np.maximum(1.0, np.abs(z))), float(np.max(err / np.maximum(1.0, np.abs(z))))


def test_relu_and_none_exact_small():
    # integers: every path must agree exactly
    rng = np.random.default_rng(5)
    a = rng.integers(-4, 5, (37, 45)).astype(np.float32)
    w = rng.integers(-4, 5, (29, 45)).astype(np.float32)
    b = rng.integers(-4, 5, 29).astype(np.float32)
    r = rng.integers(-4, 5, (37, 29)).astype(np.float32)
    for act in (ACT_NONE, ACT_RELU):
        np.testing.assert_array_equal(_C._gemm(a, w, b, act, r), expected(a, w, b, act, r).astype(np.float32))


def test_degenerate_sizes():
    rng = np.random.default_rng(3)
    out = _C._gemm(np.zeros((0, 5), np.float32), np.ones((4, 5), np.float32))
    assert out.shape == (0, 4)
    # k = 0: an empty sum, only the epilogue remains
    b = rng.uniform(-1, 1, 6).astype(np.float32)
    r = rng.uniform(-1, 1, (3, 6)).astype(np.float32)
    out = _C._gemm(np.zeros((3, 0), np.float32), np.zeros((6, 0), np.float32), b, ACT_RELU, r)
    np.testing.assert_allclose(out, np.maximum(b + r, 0), rtol=0, atol=1e-7)
    out = _C._gemm(np.ones((2, 3), np.float32), np.zeros((0, 3), np.float32))
    assert out.shape == (2, 0)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(9)
    a, w, b, r = operands(rng, 50, 40, 30, bias=True, residual=True)
    copies = [x.copy() for x in (a, w, b, r)]
    _C._gemm(a, w, b, ACT_GELU, r)
    for x, c in zip((a, w, b, r), copies):
        np.testing.assert_array_equal(x, c)


def test_validation():
    a = np.ones((4, 8), np.float32)
    w = np.ones((3, 8), np.float32)
    cases = [
        (dict(a=a.astype(np.float64), w=w), "a"),
        (dict(a=a, w=w.astype(np.float16)), "w"),
        (dict(a=a[:, ::2], w=w[:, :4]), "a"),
        (dict(a=a, w=np.ones((3, 7), np.float32)), "w"),
        (dict(a=a.ravel(), w=w), "a"),
        (dict(a=a, w=w, bias=np.ones(4, np.float32)), "bias"),
        (dict(a=a, w=w, bias=np.ones((3, 1), np.float32)), "bias"),
        (dict(a=a, w=w, residual=np.ones((4, 4), np.float32)), "residual"),
        (dict(a=a, w=w, residual=np.ones((4, 3), np.int32)), "residual"),
        (dict(a=a, w=w, act=3), "act"),
        (dict(a=[[1.0] * 8] * 4, w=w), "a"),
    ]
    for kwargs, name in cases:
        for fn in (_C._gemm, _C._gemm_ref):
            with pytest.raises(ValueError, match=name):
                fn(**kwargs)


def test_thread_count_does_not_change_results():
    # tasks split at whole register tiles and K is blocked the same way for any thread count, so
    # every element is computed by the same instructions: results are bitwise identical
    rng = np.random.default_rng(13)
    saved = _C.get_num_threads()
    try:
        for m, n, k in ((4096, 160, 640), (13, 2048, 256), (1000, 33, 1280), (7, 17, 27)):
            a, w, b, r = operands(rng, m, n, k, bias=True, residual=True)
            outs = []
            for t in (1, 2, 3):
                _C.set_num_threads(t)
                outs.append(_C._gemm(a, w, b, ACT_GELU, r))
            for o in outs[1:]:
                np.testing.assert_array_equal(o, outs[0])
    finally:
        _C.set_num_threads(saved)


def test_threads_release_gil():
    # the GIL is released around the compute: concurrent calls must each stay correct
    import threading

    rng = np.random.default_rng(11)
    jobs = [operands(rng, 300, 70 + i, 90, bias=True, residual=True) for i in range(4)]
    results = [None] * len(jobs)

    def work(i):
        a, w, b, r = jobs[i]
        results[i] = _C._gemm(a, w, b, ACT_GELU, r)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for (a, w, b, r), got in zip(jobs, results):
        truth = expected(a, w, b, ACT_GELU, r)
        assert np.max(np.abs(got - truth)) <= tolerance(90, truth)


# ---- every ISA the CPU has, each in its own process (the choice is made once per process) ----

_SUBPROCESS_CHECK = textwrap.dedent(
    """
    import math, sys
    import numpy as np
    sys.path.insert(0, {tests_dir!r})
    import test_gemm as T
    from mobile_sam_c import _C
    print(_C._gemm_isa())
    if len(sys.argv) > 1:
        rng = np.random.default_rng(0)
        shapes = [(1, 1, 1), (2, 3, 5), (5, 17, 27), (7, 31, 33), (13, 33, 64), (64, 64, 255),
                  (100, 160, 288), (100, 255, 640), (37, 288, 1280), (70, 320, 2304), (6, 480, 128),
                  (4096, 64, 27), (513, 640, 320), (8, 1280, 160), (3, 2048, 256), (16, 2304, 17)]
        for i, (m, n, k) in enumerate(shapes):
            for act in (0, 1, 2):
                a, w, b, r = T.operands(rng, m, n, k, bias=(i + act) % 2 == 0, residual=(i + act) % 3 != 0)
                T.check(a, w, b, act, r, against_ref=m * n * k <= 1 << 24)
        T.test_gelu_accuracy()
        T.test_relu_and_none_exact_small()
        T.test_degenerate_sizes()
        print("OK")
    """
)


def _run_isa(isa, full):
    env = dict(os.environ)
    env.pop("MSAM_ISA", None)
    if isa is not None:
        env["MSAM_ISA"] = isa
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(_C.__file__)))
    env["PYTHONPATH"] = pkg_parent + os.pathsep + env.get("PYTHONPATH", "")
    code = _SUBPROCESS_CHECK.format(tests_dir=os.path.dirname(os.path.abspath(__file__)))
    args = [sys.executable, "-c", code] + (["full"] if full else [])
    # run outside the repository: with `-c` the working directory comes first on sys.path, and
    # the source tree's mobile_sam_c (no built _C) must not shadow the installed package
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900,
                          cwd=tempfile.gettempdir())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.split()
    return lines[0], lines


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def test_isa_detection_matches_cpu():
    best, _ = _run_isa(None, full=False)
    assert best in ISAS
    flags = _cpu_flags()
    if _C._avx512_emulated:  # a test build whose AVX-512 kernel runs on SIMDe, on any CPU
        assert best == "avx512"
    elif flags is not None and {"sse2"} <= flags:  # x86 Linux: the best kernel the flags allow
        want = "avx512" if "avx512f" in flags else "avx2" if {"avx2", "fma"} <= flags else "generic"
        assert best == want
    # an unknown cap is ignored, never fatal
    assert _run_isa("bogus", full=False)[0] == best


@pytest.mark.parametrize("isa", ISAS)
def test_each_isa(isa):
    best, _ = _run_isa(None, full=False)  # the best the CPU has
    if ISAS.index(isa) > ISAS.index(best):
        # asking for more than the CPU has falls back to the best it has, without crashing; the
        # kernel itself is checked on such CPUs by test_avx512_emulated.py
        got, lines = _run_isa(isa, full=True)
        assert got == best
        assert lines[-1] == "OK"
        pytest.skip(f"this CPU lacks {isa} (it fell back to {best}, as it should); the {isa} kernel "
                    "is tested on such CPUs by test_avx512_emulated.py")
    got, lines = _run_isa(isa, full=True)
    assert got == isa
    assert lines[-1] == "OK"
