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


@pytest.mark.parametrize("rows,cols", [(4096, 56), (4096, 40), (56, 4096), (17, 9), (8, 8), (7, 3), (1, 1), (300, 130)])
def test_transpose_is_exact(rows, cols):
    x = rand(np.random.default_rng(rows * 7 + cols), rows, cols)
    assert np.array_equal(_C._transpose(x), x.T)


# (nq, nk, heads, dh): layer 0's image->token scores (4096 image queries, 7 and 16 tokens, 8 heads
# of 16), a key count past one 8-key block with a tail, the 64-key limit, and odd small ones.
PROBS_SHAPES = [(4096, 7, 8, 16), (4096, 16, 8, 16), (33, 9, 2, 8), (13, 64, 1, 32), (3, 1, 3, 8), (17, 13, 4, 24)]


@pytest.mark.parametrize("ref", [False, True], ids=["fast", "ref"])
@pytest.mark.parametrize("nq,nk,heads,dh", PROBS_SHAPES, ids=[f"{a}x{b}x{c}x{d}" for a, b, c, d in PROBS_SHAPES])
def test_attention_probs_matches_float64(nq, nk, heads, dh, ref):
    rng = np.random.default_rng(nq + 31 * nk + 7 * heads + dh)
    q, k = rand(rng, nq, heads * dh, scale=2.0), rand(rng, nk, heads * dh, scale=2.0)
    q[::7] *= 8.0  # large scores: exp would overflow without the max subtracted
    got = _C._attention_probs(q, k, heads, ref)
    assert got.shape == (nq, heads * nk) and got.dtype == np.float32
    q64, k64 = q.astype(np.float64).reshape(nq, heads, dh), k.astype(np.float64).reshape(nk, heads, dh)
    s = np.einsum("ihd,jhd->ihj", q64, k64) / np.sqrt(dh)
    want = softmax64(s.reshape(-1, nk), 1.0).reshape(nq, heads * nk)
    # fp32 scores (dh-term sums) carry an absolute error into exp's argument
    z = np.einsum("ihd,jhd->ihj", np.abs(q64), np.abs(k64)).max() / np.sqrt(dh)
    np.testing.assert_allclose(got, want, rtol=4 * (z + nk + dh) * EPS, atol=1e-30)


def test_attention_probs_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible by heads"):
        _C._attention_probs(np.zeros((4, 12), np.float32), np.zeros((3, 12), np.float32), 5)
    with pytest.raises(ValueError, match="must share a width"):
        _C._attention_probs(np.zeros((4, 16), np.float32), np.zeros((3, 8), np.float32), 2)


# ---------------------------------------------------------------------------------------------
# ops->upscale_masks against MobileSAM's own modules (ConvTranspose2d, LayerNorm2d, GELU, then the
# hypernetwork product of MaskDecoder.predict_masks), in float64.

def upscale_reference(x, g, w1t, b1, gamma, beta, w2t, b2, hyper):
    import torch
    from mobile_sam.modeling.common import LayerNorm2d
    from torch import nn

    c1, c = w1t.shape[1], w2t.shape[1]
    up = nn.Sequential(nn.ConvTranspose2d(w1t.shape[0], c1, 2, 2), LayerNorm2d(c1), nn.GELU(),
                       nn.ConvTranspose2d(c1, c, 2, 2), nn.GELU()).double()
    with torch.no_grad():
        for mod, t in ((up[0].weight, w1t), (up[0].bias, b1), (up[1].weight, gamma), (up[1].bias, beta),
                       (up[3].weight, w2t), (up[3].bias, b2)):
            mod.copy_(torch.from_numpy(t.astype(np.float64)))
        img = torch.from_numpy(x.astype(np.float64)).reshape(g, g, -1).permute(2, 0, 1)[None]
        u = up(img)[0]  # c x 4g x 4g
        return (torch.from_numpy(hyper.astype(np.float64)) @ u.reshape(c, -1)).reshape(-1, 4 * g, 4 * g).numpy()


def convT_as_linear(wt):
    """ConvTranspose2d weight [cin][cout][2][2] as the linear [(dy*2+dx)*cout + o][cin] (decoder.c)."""
    cin, cout = wt.shape[:2]
    return np.ascontiguousarray(wt.transpose(2, 3, 1, 0).reshape(4 * cout, cin))


# MobileSAM's widths on its 64 x 64 map and on maps that end in a partial pixel block; small
# widths that leave register-tile and panel tails; n = 1 (single mask), 3 (multimask), 4.
UPSCALE_CASES = [(64, 256, 64, 32, 3), (64, 256, 64, 32, 1), (5, 256, 64, 32, 4), (7, 24, 12, 8, 3),
                 (1, 16, 4, 8, 2), (9, 40, 20, 12, 1)]


@pytest.mark.parametrize("ref", [False, True], ids=["fused", "ref"])
@pytest.mark.parametrize("g,cin,c1,c,n", UPSCALE_CASES, ids=[f"g{g}_{a}_{b}_{c}_n{n}" for g, a, b, c, n in UPSCALE_CASES])
def test_upscale_masks_matches_mobile_sam(g, cin, c1, c, n, ref):
    rng = np.random.default_rng(g * 1000 + cin + c1 + c + n)
    x = rand(rng, g * g, cin)
    w1t, b1 = rand(rng, cin, c1, 2, 2, scale=cin ** -0.5), rand(rng, c1, scale=0.1)
    gamma, beta = 1.0 + rand(rng, c1, scale=0.1), rand(rng, c1, scale=0.1)
    w2t, b2 = rand(rng, c1, c, 2, 2, scale=c1 ** -0.5), rand(rng, c, scale=0.1)
    hyper = rand(rng, n, c)
    got = _C._upscale_masks(x, convT_as_linear(w1t), np.tile(b1, 4), gamma, beta, convT_as_linear(w2t),
                            np.tile(b2, 4), hyper, 1e-6, ref)
    want = upscale_reference(x, g, w1t, b1, gamma, beta, w2t, b2, hyper)
    assert got.shape == (n, 4 * g, 4 * g) and got.dtype == np.float32
    # fp32 through two products, a normalisation and the logits' c-term sums, each feeding values of
    # order one into the |hyper|-weighted sum (observed: 6.7e-6 against 16.9 at MobileSAM's widths)
    scale = np.abs(hyper).sum(axis=1).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=float(scale) * 32 * EPS)


def test_upscale_masks_fused_equals_reference_on_mobile_sam_shapes():
    """The fused op and the unfused plain reference agree to fp32 rounding (every placement)."""
    rng = np.random.default_rng(7)
    x = rand(rng, 64 * 64, 256)
    args = (convT_as_linear(rand(rng, 256, 64, 2, 2, scale=1 / 16)), rand(rng, 256, scale=0.1),
            1.0 + rand(rng, 64, scale=0.1), rand(rng, 64, scale=0.1),
            convT_as_linear(rand(rng, 64, 32, 2, 2, scale=1 / 8)), rand(rng, 128, scale=0.1), rand(rng, 3, 32))
    fused, plain = _C._upscale_masks(x, *args), _C._upscale_masks(x, *args, ref=True)
    np.testing.assert_allclose(fused, plain, rtol=0, atol=1e-4)
    assert np.corrcoef(fused.ravel(), plain.ravel())[0, 1] > 0.999999


def test_upscale_masks_rejects_bad_shapes():
    z = np.zeros
    good = [z((16, 8), np.float32), z((16, 8), np.float32), z(16, np.float32), z(4, np.float32), z(4, np.float32),
            z((8, 4), np.float32), z(8, np.float32), z((1, 2), np.float32)]
    assert _C._upscale_masks(*good).shape == (1, 16, 16)
    with pytest.raises(ValueError, match="x must have g\\*g rows"):
        _C._upscale_masks(z((15, 8), np.float32), *good[1:])
    with pytest.raises(ValueError, match="inconsistent shapes"):
        _C._upscale_masks(*good[:7], z((5, 2), np.float32))
    with pytest.raises(ValueError, match="w1 must have dtype float32"):
        _C._upscale_masks(good[0], good[1].astype(np.float64), *good[2:])


def upscale_from_u(u, g, gamma, beta, w2, b2, hyper, eps=1e-6):
    """float64 numpy: the rest of ops->upscale_masks from the first map u (g*g x 4*c1, sub-pixel
    order), with the placement of ops.h written out: row ((y*g + x)*4 + t1)*4 + t2 of the second
    map lands at (4y + 2(t1//2) + t2//2, 4x + 2(t1%2) + t2%2)."""
    import torch

    gelu = lambda v: 0.5 * v * (1.0 + torch.erf(torch.from_numpy(v / np.sqrt(2.0))).numpy())  # noqa: E731
    c1, c = gamma.size, w2.shape[0] // 4
    v = u.astype(np.float64).reshape(-1, c1)
    v = (v - v.mean(1, keepdims=True)) / np.sqrt(v.var(1, keepdims=True) + eps) * gamma + beta
    v = gelu(gelu(v) @ w2.astype(np.float64).T + b2).reshape(-1, c)
    logits = v @ hyper.astype(np.float64).T  # 16 g^2 x n
    r = np.arange(16 * g * g)
    px, t1, t2 = r // 16, (r // 4) % 4, r % 4
    Y = 4 * (px // g) + 2 * (t1 // 2) + t2 // 2
    X = 4 * (px % g) + 2 * (t1 % 2) + t2 % 2
    out = np.zeros((hyper.shape[0], 4 * g, 4 * g))
    out[:, Y, X] = logits.T
    return out


@pytest.mark.parametrize("g,k,c1,c,n", [(64, 56, 64, 32, 3), (64, 128, 64, 32, 1), (5, 9, 64, 32, 4), (3, 7, 8, 4, 2)],
                         ids=["mobile_sam_k56", "k128", "partial_block", "small"])
def test_upscale_masks_parts_matches_float64(g, k, c1, c, n):
    """The decoder's split first product (msam_upscale_parts): u = s1 (s0 (p0 m0 + u0) + p1 m1 + f1) + h."""
    rng = np.random.default_rng(g + 7 * k + c1 + n)
    P, W = g * g, 4 * c1
    p0, p1 = rng.random((P, k), dtype=np.float32), rng.random((P, k), dtype=np.float32)
    m0, m1 = rand(rng, k, W, scale=0.3), rand(rng, k, W, scale=0.3)
    u0, f1, h = rand(rng, P, W), rand(rng, W, scale=0.1), rand(rng, W, scale=0.1)
    s0, s1 = (0.5 + rng.random(P, dtype=np.float32)), (0.5 + rng.random(P, dtype=np.float32))
    gamma, beta = 1.0 + rand(rng, c1, scale=0.1), rand(rng, c1, scale=0.1)
    w2, b2, hyper = rand(rng, 4 * c, c1, scale=c1 ** -0.5), rand(rng, 4 * c, scale=0.1), rand(rng, n, c)
    got = _C._upscale_masks_parts(p0, p1, m0, m1, u0, f1, h, s0, s1, gamma, beta, w2, b2, hyper)
    d = lambda a: a.astype(np.float64)  # noqa: E731
    u = d(s1)[:, None] * (d(s0)[:, None] * (d(p0) @ d(m0) + d(u0)) + d(p1) @ d(m1) + d(f1)) + d(h)
    want = upscale_from_u(u, g, gamma, beta, w2, b2, hyper)
    assert got.shape == want.shape and got.dtype == np.float32
    scale = np.abs(hyper).sum(axis=1).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=float(scale) * 32 * EPS)


def test_upscale_masks_parts_rejects_bad_k():
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    args = [z(4, 129), z(4, 129), z(129, 16), z(129, 16), z(4, 16), z(16), z(16), z(4), z(4), z(4), z(4), z(8, 4),
            z(8), z(1, 2)]
    with pytest.raises(ValueError, match="1 <= k <= 128"):
        _C._upscale_masks_parts(*args)
