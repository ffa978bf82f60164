# test_decoder_kernels.py - the two ops the mask decoder's folded cross attention is made of:
# ops->matmul (a right operand packed during the call, either layout) and ops->softmax, vs float64.
import numpy as np
import pytest

from mobile_sam_c import _C

EPS = np.finfo(np.float32).eps


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# (m, n, k): the decoder's shapes for a 7-token prompt (heads x tokens = 56), the 16-token limit
# (128), tiny per-head products, and odd ones that leave partial register tiles and panels.
MATMUL_SHAPES = [(56, 4096, 256), (56, 256, 4096), (4096, 56, 256), (4096, 256, 56), (128, 4096, 256),
                 (7, 256, 16), (7, 16, 256), (7, 1, 16), (1, 1, 1), (13, 17, 5), (300, 33, 70), (5, 300, 1000)]


@pytest.mark.parametrize("w_is_kn", [False, True], ids=["w_nk", "w_kn"])
@pytest.mark.parametrize("m,n,k", MATMUL_SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in MATMUL_SHAPES])
def test_matmul_matches_float64(m, n, k, w_is_kn):
    rng = np.random.default_rng(m * 1000003 + n * 1009 + k)
    a, w = rand(rng, m, k), rand(rng, n, k)
    bias, res = rand(rng, n), rand(rng, m, n)
    wa = np.ascontiguousarray(w.T) if w_is_kn else w
    got = _C._matmul(a, wa, w_is_kn=w_is_kn, bias=bias, residual=res)
    want = a.astype(np.float64) @ w.astype(np.float64).T + bias + res
    # fp32 accumulation over k terms: bound by k eps times the sum of magnitudes
    bound = 2 * (k + 2) * EPS * (np.abs(a).astype(np.float64) @ np.abs(w).T + np.abs(bias) + np.abs(res))
    assert got.shape == (m, n) and got.dtype == np.float32
    assert np.all(np.abs(got - want) <= bound + 1e-30), float(np.max(np.abs(got - want) - bound))
    plain = _C._matmul(a, wa, w_is_kn=w_is_kn)
    np.testing.assert_allclose(plain, got - bias - res, rtol=0, atol=float(np.max(bound)) * 2 + 1e-6)


def test_matmul_equals_gemm_with_the_same_weight():
    """Packing during the call must give the same panels as packing at load: bit-identical."""
    rng = np.random.default_rng(1)
    a, w, bias = rand(rng, 333, 256), rand(rng, 128, 256), rand(rng, 128)
    assert np.array_equal(_C._matmul(a, w, bias=bias), _C._gemm(a, w, bias=bias))
    assert np.array_equal(_C._matmul(a, np.ascontiguousarray(w.T), w_is_kn=True, bias=bias),
                          _C._gemm(a, w, bias=bias))


def test_matmul_rejects_mismatched_shapes():
    a = np.zeros((4, 8), np.float32)
    with pytest.raises(ValueError, match="w must have 8 columns"):
        _C._matmul(a, np.zeros((3, 7), np.float32))
    with pytest.raises(ValueError, match="w must have 8 rows"):
        _C._matmul(a, np.zeros((7, 3), np.float32), w_is_kn=True)
    with pytest.raises(ValueError, match="bias must have shape"):
        _C._matmul(a, np.zeros((3, 8), np.float32), bias=np.zeros(4, np.float32))


def softmax64(x, scale):
    z = x.astype(np.float64) * np.float64(np.float32(scale))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# (count, stride, length): image->token (8 heads x 4096 rows of 7 tokens), token->image (56 rows
# of 4096), strided cases (rows longer than the softmax, short and long), single elements, odd tails.
SOFTMAX_SHAPES = [(32768, 7, 7), (56, 4096, 4096), (128, 4096, 4096), (40, 9, 5), (7, 1, 1), (3, 17, 17),
                  (1000, 3, 2), (65, 100, 100), (9, 80, 67)]


@pytest.mark.parametrize("ref", [False, True], ids=["fast", "ref"])
@pytest.mark.parametrize("scale", [0.25, 1.0])
@pytest.mark.parametrize("count,stride,length", SOFTMAX_SHAPES, ids=[f"{c}x{s}x{n}" for c, s, n in SOFTMAX_SHAPES])
def test_softmax_matches_float64(count, stride, length, scale, ref):
    rng = np.random.default_rng(count * 31 + stride * 7 + length)
    x = rand(rng, count, stride, scale=6.0)
    x[::5, :length] += 60.0  # large logits: exp would overflow without the max subtracted
    before = x.copy()
    got = _C._softmax(x, length, scale, ref)
    assert np.array_equal(x, before), "the hook works on a copy"
    want = softmax64(x[:, :length], scale)
    # fp32 rounding of the exponent argument (relative error |z| eps in exp) and of the sum
    z = np.abs(x[:, :length].astype(np.float64) * scale).max() * 2
    np.testing.assert_allclose(got[:, :length], want, rtol=2 * (z + length + 4) * EPS, atol=1e-30)
    assert np.array_equal(got[:, length:], x[:, length:]), "floats past length must be left alone"


def test_softmax_extreme_rows():
    x = np.array([[0.0, -1e30, -1e30], [88.0, 88.0, -88.0], [-100.0, -100.0, -100.0]], np.float32)
    got = _C._softmax(x)
    np.testing.assert_allclose(got, softmax64(x, 1.0), rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(got))


def test_softmax_rejects_bad_length():
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="length must be in 1..4"):
        _C._softmax(x, 5)
    with pytest.raises(ValueError, match="x must have dtype float32"):
        _C._softmax(x.astype(np.float64))
