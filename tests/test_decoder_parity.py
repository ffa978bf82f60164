"""Prompt encoder + mask decoder + post-processing parity against MobileSAM's own PyTorch code.

The image embedding is given, not computed: the same 1x256x64x64 array goes into the reference
predictor (its attributes set as set_image would leave them) and into ours through
set_image_embedding. Two embeddings are used: N(0, 1) noise, and what the (randomised) reference
encoder computes for a real photo. Stages compared: sparse and dense prompt embeddings, IoU
predictions, low-res logits, final masks (logits with return_logits, else the binary masks).

Tolerances (ARCHITECTURE.md, fp32 parity path): logits, embeddings and IoU within 1e-3 absolute;
a binary mask may differ from the reference only where |reference logit| < 1e-2.
The largest differences seen are printed at the end of the session (conftest.py).
"""
import zlib

import numpy as np
import pytest
import torch

import reference as R

TOL = 1e-3          # max abs diff for logits, IoU, prompt embeddings
MASK_BAND = 1e-2    # binary masks may disagree only where |reference logit| < MASK_BAND

# Original sizes (H, W): landscape, portrait, the photo's own, tiny, single pixel, a 1-pixel-wide
# column, and sides that are not multiples of 16.
SIZES = [(1200, 1800), (1080, 810), (534, 800), (17, 23), (1, 1), (1023, 1), (777, 1001)]
# points10 / points11: with the padding point, 16 and 17 tokens, the largest prompt the decoder's
# folded cross attention takes and the smallest that goes the plain way (cross_attention.c).
KINDS = ["point1", "points3", "points8_mixed", "box", "box_points", "points10", "points11",
         "mask_feedback", "mask_random", "mask_only", "no_prompt"]


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def make_prompt(kind: str, size):
    """Prompts for predict() in the original image frame (what users pass)."""
    h, w = size
    rng = np.random.default_rng(_seed("prompt", kind, tuple(size)))

    def points(n):
        return np.stack([rng.uniform(0, w, n), rng.uniform(0, h, n)], axis=1).astype(np.float64)

    def box():
        xs = np.sort(rng.uniform(0, w, 2))
        ys = np.sort(rng.uniform(0, h, 2))
        return np.array([xs[0], ys[0], xs[1], ys[1]], dtype=np.float64)

    p = {}
    if kind == "point1":
        p["point_coords"], p["point_labels"] = points(1), np.array([1])
    elif kind in ("points3", "mask_feedback"):
        p["point_coords"], p["point_labels"] = points(3), np.array([1, 0, 1])
    elif kind == "points8_mixed":
        # every label, -1 ("not a point") included; int32 labels to vary the dtype
        p["point_coords"] = points(8)
        p["point_labels"] = np.array([1, 0, -1, 1, 0, 1, -1, 0], dtype=np.int32)
    elif kind in ("points10", "points11"):
        n = int(kind[len("points"):])
        p["point_coords"], p["point_labels"] = points(n), rng.integers(0, 2, n)
    elif kind == "box":
        p["box"] = box()
    elif kind == "box_points":
        p["box"] = box()
        p["point_coords"], p["point_labels"] = points(2), np.array([1, 0])
    elif kind == "mask_random":
        p["point_coords"], p["point_labels"] = points(1), np.array([1])
        p["mask_input"] = rng.normal(0.0, 4.0, (1, 256, 256)).astype(np.float32)
    elif kind == "mask_only":
        p["mask_input"] = rng.normal(0.0, 4.0, (1, 256, 256)).astype(np.float32)
    elif kind == "no_prompt":
        pass
    else:  # pragma: no cover
        raise KeyError(kind)
    return p


KINDS_PER_SIZE = 5


def _cases():
    """Random embedding: each size with 5 of the 9 prompt kinds (rotating, so every kind meets
    several sizes and both multimask settings); the photo's embedding at its own size with every
    kind. Kept partial so the suite stays within a few minutes on two cores."""
    out = []
    for si, size in enumerate(SIZES):
        for j in range(KINDS_PER_SIZE):
            kind = KINDS[(si * KINDS_PER_SIZE + j) % len(KINDS)]
            mm = (si + j) % 2 == 0
            out.append(pytest.param("random", size, kind, mm,
                                    id=f"random-{size[0]}x{size[1]}-{kind}-{'multi' if mm else 'single'}"))
    for ki, kind in enumerate(KINDS):
        mm = ki % 2 == 0
        out.append(pytest.param("photo", None, kind, mm, id=f"photo-own-{kind}-{'multi' if mm else 'single'}"))
    # coverage of the grid itself: every kind with both multimask settings
    seen = {(p.values[2], p.values[3]) for p in out}
    assert all((k, m) in seen for k in KINDS for m in (True, False)), sorted(seen)
    return out


CASES = _cases()


as_np = R.as_np


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def embeddings(random_embedding, photo_embedding):
    emb, osz, _ = photo_embedding
    return {"random": (random_embedding, None), "photo": (emb, osz)}


@pytest.fixture(scope="module")
def ref_pred(ref_model):
    return R.reference_predictor(ref_model)


@pytest.fixture(scope="module")
def pred(msc, model):
    return msc.SamPredictor(model)


_REF_CACHE = {}


def resolve(embeddings, emb_name, size):
    emb, own = embeddings[emb_name]
    return emb, tuple(size) if size is not None else tuple(own)


def prompt_for(ref_pred, embeddings, emb_name, size, kind):
    """The predict() kwargs of a case (mask_feedback: the reference's own best low-res output)."""
    emb, size = resolve(embeddings, emb_name, size)
    p = make_prompt(kind, size)
    if kind == "mask_feedback":
        # the reference's own answer to the same points (multimask), best mask fed back
        _, iou, low = ref_result(ref_pred, embeddings, emb_name, size, "points3", True)
        p["mask_input"] = low[int(np.argmax(iou))][None].copy()
    return p


def ref_result(ref_pred, embeddings, emb_name, size, kind, multimask):
    """Reference (mask logits CxHxW, iou C, low-res Cx256x256), cached across return_logits."""
    key = ("predict", emb_name, size, kind, multimask)
    if key not in _REF_CACHE:
        emb, osz = resolve(embeddings, emb_name, size)
        p = prompt_for(ref_pred, embeddings, emb_name, size, kind)
        R.set_reference_embedding(ref_pred, emb, osz)
        _REF_CACHE[key] = ref_pred.predict(**p, multimask_output=multimask, return_logits=True)
    return _REF_CACHE[key]


def compare_outputs(where, ours, ref, multimask, return_logits, batch=None):
    """Compare (masks, iou, low_res) to the reference's (logits, iou, low_res); list the problems."""
    masks, iou, low = (as_np(x) for x in ours)
    ref_logits, ref_iou, ref_low = (np.asarray(x) for x in ref)
    problems = []
    c = 3 if multimask else 1
    lead = () if batch is None else (batch,)
    if ref_iou.shape != lead + (c,):  # the reference itself: guards the test's own bookkeeping
        raise AssertionError(f"{where}: reference iou shape {ref_iou.shape}, expected {lead + (c,)}")
    for name, arr, shape in (("masks", masks, ref_logits.shape), ("iou", iou, ref_iou.shape),
                             ("low_res", low, ref_low.shape)):
        if arr is None or tuple(arr.shape) != tuple(shape):
            problems.append(f"{name} shape {None if arr is None else tuple(arr.shape)} != reference {tuple(shape)}")
    if problems:
        return problems
    want_mask_dtype = np.float32 if return_logits else np.bool_
    for name, arr, dt in (("masks", masks, want_mask_dtype), ("iou", iou, np.float32), ("low_res", low, np.float32)):
        if arr.dtype != dt:
            problems.append(f"{name} dtype {arr.dtype} != {np.dtype(dt)}")

    d_iou = R.max_abs_diff(iou, ref_iou)
    d_low = R.max_abs_diff(low, ref_low)
    R.record("decoder: iou max|diff|", d_iou, where)
    R.record("decoder: low-res logits max|diff|", d_low, where)
    if not d_iou <= TOL:
        problems.append(f"iou max|diff| {d_iou:.3e} > {TOL} (ours {iou.ravel()[:6]}, ref {ref_iou.ravel()[:6]})")
    if not d_low <= TOL:
        problems.append(f"low-res logits max|diff| {d_low:.3e} > {TOL}")
    if return_logits:
        d_mask = R.max_abs_diff(masks, ref_logits)
        R.record("post: mask logits max|diff|", d_mask, where)
        msg = f"mask logits max|diff| {d_mask:.3e}"
        if not d_mask <= TOL:
            problems.append(f"{msg} > {TOL}")
    else:
        n, worst = R.mask_disagreement(masks, ref_logits, 0.0)
        R.record("post: |ref logit| at a mask disagreement", worst, where)
        msg = f"binary masks: {n} px disagree, max |ref logit| there {worst:.3e}"
        if not worst < MASK_BAND:
            problems.append(f"{msg} (allowed only where |ref logit| < {MASK_BAND})")
    print(f"{where}: iou {d_iou:.2e} low-res {d_low:.2e} {msg}")
    return problems


# ---------------------------------------------------------------------------------------------
# the reference set-up itself (guards against a vacuous comparison)


def test_reference_is_not_degenerate(ref_pred, random_embedding):
    """With randomised weights the reference gives non-trivial masks and logits of O(1)."""
    R.set_reference_embedding(ref_pred, random_embedding, (534, 800))
    p = make_prompt("points3", (534, 800))
    logits, iou, low = ref_pred.predict(**p, multimask_output=True, return_logits=True)
    frac = (logits > 0).mean(axis=(1, 2))
    assert np.all(frac > 0.001) and np.all(frac < 0.999), frac
    assert 0.1 < float(np.abs(low).std()) < 100.0
    assert np.ptp(iou) > 1e-3
    # mask logits near 0 are rare: the 1e-2 band excuses few pixels
    assert (np.abs(logits) < MASK_BAND).mean() < 0.05


# ---------------------------------------------------------------------------------------------
# prompt encoder alone


def _pe_inputs(case):
    rng = np.random.default_rng(_seed("pe", case))

    def coords(b, n, lo=0.0, hi=1024.0):
        return rng.uniform(lo, hi, (b, n, 2)).astype(np.float32)

    def labels(b, n):
        return rng.choice(np.array([-1, 0, 1]), size=(b, n)).astype(np.int64)

    def boxes(b):
        xy = np.sort(rng.uniform(0, 1024, (b, 2, 2)), axis=1)  # x0<x1, y0<y1
        return xy.reshape(b, 4).astype(np.float32)

    def masks(b):
        return rng.normal(0, 4, (b, 1, 256, 256)).astype(np.float32)

    if case == "points_B1_N1":
        return dict(points=(coords(1, 1), np.ones((1, 1), np.int64)))
    if case == "points_B3_N5_mixed":
        lab = labels(3, 5)
        lab[0, :3] = [-1, 0, 1]
        return dict(points=(coords(3, 5), lab))
    if case == "points_outside_frame":
        return dict(points=(coords(2, 4, -300.0, 1500.0), labels(2, 4)))
    if case == "points_N8_int32_labels":
        return dict(points=(coords(1, 8), labels(1, 8).astype(np.int32)))
    if case == "boxes_B4":
        return dict(boxes=boxes(4))
    if case == "points_boxes_B2":
        return dict(points=(coords(2, 3), labels(2, 3)), boxes=boxes(2))
    if case == "masks_B2":
        return dict(masks=masks(2))
    if case == "points_masks_B2":
        return dict(points=(coords(2, 2), labels(2, 2)), masks=masks(2))
    if case == "boxes_masks_B3":
        return dict(boxes=boxes(3), masks=masks(3))
    if case == "nothing":
        return dict()
    raise KeyError(case)


PE_CASES = ["points_B1_N1", "points_B3_N5_mixed", "points_outside_frame", "points_N8_int32_labels",
            "boxes_B4", "points_boxes_B2", "masks_B2", "points_masks_B2", "boxes_masks_B3", "nothing"]


def _compare_prompt_encoder(model, ref_model, where, kw):
    ref_sparse, ref_dense = R.reference_prompt_encoder(ref_model, **kw)
    sparse, dense = model.prompt_encoder_forward(points=kw.get("points"), boxes=kw.get("boxes"),
                                                 masks=kw.get("masks"))
    sparse, dense = as_np(sparse), as_np(dense)
    assert sparse.shape == ref_sparse.shape, f"{where}: sparse shape {sparse.shape} != reference {ref_sparse.shape}"
    assert dense.shape == ref_dense.shape, f"{where}: dense shape {dense.shape} != reference {ref_dense.shape}"
    assert sparse.dtype == np.float32 and dense.dtype == np.float32, (sparse.dtype, dense.dtype)
    ds = R.max_abs_diff(sparse, ref_sparse)
    dd = R.max_abs_diff(dense, ref_dense)
    R.record("prompt encoder: sparse max|diff|", ds, where)
    R.record("prompt encoder: dense max|diff|", dd, where)
    print(f"{where}: sparse {ds:.2e} dense {dd:.2e}")
    assert ds <= TOL and dd <= TOL, f"{where}: sparse max|diff| {ds:.3e}, dense max|diff| {dd:.3e} (tol {TOL})"


@pytest.mark.parametrize("case", PE_CASES)
def test_prompt_encoder_parity(model, ref_model, case):
    _compare_prompt_encoder(model, ref_model, f"prompt_encoder[{case}]", _pe_inputs(case))


@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_prompt_encoder_parity_on_predict_prompts(model, ref_model, size):
    """The predict cases' prompts, taken to the 1024 frame with the reference's transform."""
    tr = R.RefResizeLongestSide(R.IMG_SIZE)
    for kind in KINDS:
        if kind == "mask_feedback":
            continue  # same points as points3; its mask comes from the reference decoder
        p = make_prompt(kind, size)
        kw = {}
        if "point_coords" in p:
            c = tr.apply_coords(p["point_coords"], size).astype(np.float32)[None]
            kw["points"] = (c, np.asarray(p["point_labels"])[None])
        if "box" in p:
            kw["boxes"] = tr.apply_boxes(p["box"], size).astype(np.float32)
        if "mask_input" in p:
            kw["masks"] = p["mask_input"][None]
        _compare_prompt_encoder(model, ref_model, f"prompt_encoder[{size[0]}x{size[1]}-{kind}]", kw)


# ---------------------------------------------------------------------------------------------
# predict(): prompts in the original frame -> masks at the original size


@pytest.mark.parametrize("return_logits", [False, True], ids=["bool", "logits"])
@pytest.mark.parametrize("emb_name,size,kind,multimask", CASES)
def test_predict_parity(pred, ref_pred, embeddings, emb_name, size, kind, multimask, return_logits):
    emb, osz = resolve(embeddings, emb_name, size)
    ref = ref_result(ref_pred, embeddings, emb_name, size, kind, multimask)
    p = prompt_for(ref_pred, embeddings, emb_name, size, kind)

    pred.set_image_embedding(emb, original_size=osz)
    assert tuple(pred.original_size) == osz
    assert tuple(pred.input_size) == R.get_preprocess_shape(*osz)
    ours = pred.predict(**p, multimask_output=multimask, return_logits=return_logits)
    where = f"predict[{emb_name}-{osz[0]}x{osz[1]}-{kind}-mm{int(multimask)}-logits{int(return_logits)}]"
    problems = compare_outputs(where, ours, ref, multimask, return_logits)
    assert not problems, f"{where}: " + "; ".join(problems)


# ---------------------------------------------------------------------------------------------
# predict_torch(): batched prompts already in the 1024 frame


TORCH_SIZE = (481, 641)  # small: batches multiply the full-size masks; sizes are covered above


def _torch_inputs(case, b, size):
    rng = np.random.default_rng(_seed("torch", case, b))
    ih, iw = R.get_preprocess_shape(*size)
    out = {"point_coords": None, "point_labels": None, "boxes": None, "mask_input": None}

    def coords(n):
        return torch.from_numpy(np.stack([rng.uniform(0, iw, (b, n)), rng.uniform(0, ih, (b, n))], -1).astype(np.float32))

    def boxes():
        xs = np.sort(rng.uniform(0, iw, (b, 2)), axis=1)
        ys = np.sort(rng.uniform(0, ih, (b, 2)), axis=1)
        return torch.from_numpy(np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], 1).astype(np.float32))

    if "points" in case:
        n = 4
        out["point_coords"] = coords(n)
        lab = rng.choice(np.array([-1, 0, 1]), size=(b, n))
        lab[:, 0] = 1
        out["point_labels"] = torch.from_numpy(lab.astype(np.int64))
    if "boxes" in case:
        out["boxes"] = boxes()
    if "masks" in case:
        out["mask_input"] = torch.from_numpy(rng.normal(0, 4, (b, 1, 256, 256)).astype(np.float32))
    if "mask_broadcast" in case:  # one mask for all B prompt sets (the reference broadcasts it)
        out["mask_input"] = torch.from_numpy(rng.normal(0, 4, (1, 1, 256, 256)).astype(np.float32))
    return out


TORCH_CASES = [
    # (case, B, multimask, return_logits, embedding)
    ("boxes", 1, True, False, "random"),
    ("boxes", 3, False, True, "random"),
    ("boxes", 5, True, False, "random"),
    ("points", 3, True, False, "random"),
    ("points", 3, False, True, "photo"),
    ("points_boxes", 3, False, False, "random"),
    ("points_boxes", 2, True, True, "photo"),
    ("points_masks", 2, True, False, "random"),
    ("points_mask_broadcast", 3, False, False, "random"),
    ("masks", 2, True, True, "random"),
]


@pytest.mark.parametrize("case,b,multimask,return_logits,emb_name", TORCH_CASES,
                         ids=[f"{c}-B{b}-mm{int(m)}-logits{int(r)}-{e}" for c, b, m, r, e in TORCH_CASES])
def test_predict_torch_parity(pred, ref_pred, embeddings, case, b, multimask, return_logits, emb_name):
    emb, _ = embeddings[emb_name]
    inp = _torch_inputs(case, b, TORCH_SIZE)
    R.set_reference_embedding(ref_pred, emb, TORCH_SIZE)
    with torch.no_grad():
        ref = ref_pred.predict_torch(inp["point_coords"], inp["point_labels"], inp["boxes"], inp["mask_input"],
                                     multimask_output=multimask, return_logits=True)
    ref = tuple(t.numpy() for t in ref)

    pred.set_image_embedding(emb, original_size=TORCH_SIZE)
    ours = pred.predict_torch(inp["point_coords"], inp["point_labels"], inp["boxes"], inp["mask_input"],
                              multimask_output=multimask, return_logits=return_logits)
    where = f"predict_torch[{case}-B{b}-mm{int(multimask)}-logits{int(return_logits)}-{emb_name}]"
    for name, t in zip(("masks", "iou", "low_res"), ours):
        assert isinstance(t, torch.Tensor), f"{where}: {name} is {type(t).__name__}, expected torch.Tensor for torch inputs"
    problems = compare_outputs(where, ours, ref, multimask, return_logits, batch=b)
    assert not problems, f"{where}: " + "; ".join(problems)


def test_predict_torch_numpy_inputs(pred, ref_pred, random_embedding):
    """NumPy prompts to predict_torch give NumPy outputs with the reference's values."""
    inp = _torch_inputs("points_boxes", 2, TORCH_SIZE)
    R.set_reference_embedding(ref_pred, random_embedding, TORCH_SIZE)
    with torch.no_grad():
        ref = ref_pred.predict_torch(inp["point_coords"], inp["point_labels"], inp["boxes"], None,
                                     multimask_output=True, return_logits=True)
    ref = tuple(t.numpy() for t in ref)
    pred.set_image_embedding(random_embedding, original_size=TORCH_SIZE)
    ours = pred.predict_torch(inp["point_coords"].numpy(), inp["point_labels"].numpy(), inp["boxes"].numpy(), None,
                              multimask_output=True, return_logits=False)
    for name, a in zip(("masks", "iou", "low_res"), ours):
        assert isinstance(a, np.ndarray), f"{name} is {type(a).__name__}, expected numpy.ndarray for NumPy inputs"
    problems = compare_outputs("predict_torch[numpy-in]", ours, ref, True, False, batch=2)
    assert not problems, "; ".join(problems)


# ---------------------------------------------------------------------------------------------
# output options: return_low_res, as_numpy


@pytest.mark.parametrize("multimask", [True, False], ids=["multi", "single"])
def test_return_low_res_false(pred, ref_pred, random_embedding, multimask):
    size = (540, 405)
    p = make_prompt("box_points", size)
    pred.set_image_embedding(random_embedding, original_size=size)
    m1, i1, l1 = (as_np(x) for x in pred.predict(**p, multimask_output=multimask))
    m2, i2, l2 = pred.predict(**p, multimask_output=multimask, return_low_res=False)
    assert l1 is not None and l2 is None
    np.testing.assert_array_equal(as_np(m2), m1)
    np.testing.assert_array_equal(as_np(i2), i1)
    # and those masks are the reference's
    R.set_reference_embedding(ref_pred, random_embedding, size)
    ref = ref_pred.predict(**p, multimask_output=multimask, return_logits=True)
    problems = compare_outputs("predict[return_low_res=False]", (m2, i2, l1), ref, multimask, False)
    assert not problems, "; ".join(problems)

    inp = _torch_inputs("boxes", 2, size)
    t1 = pred.predict_torch(None, None, inp["boxes"], None, multimask_output=multimask)
    t2 = pred.predict_torch(None, None, inp["boxes"], None, multimask_output=multimask, return_low_res=False)
    assert t1[2] is not None and t2[2] is None
    np.testing.assert_array_equal(as_np(t2[0]), as_np(t1[0]))
    np.testing.assert_array_equal(as_np(t2[1]), as_np(t1[1]))


@pytest.mark.parametrize("return_logits", [False, True], ids=["bool", "logits"])
def test_as_numpy_matches_original_types(pred, ref_pred, random_embedding, return_logits):
    size = (389, 501)
    p = make_prompt("points3", size)
    R.set_reference_embedding(ref_pred, random_embedding, size)
    ref = ref_pred.predict(**p, multimask_output=True, return_logits=return_logits)
    pred.set_image_embedding(random_embedding, original_size=size)
    ours = pred.predict(**p, multimask_output=True, return_logits=return_logits, as_numpy=True)
    default = pred.predict(**p, multimask_output=True, return_logits=return_logits)
    for name, a, r, d in zip(("masks", "iou", "low_res"), ours, ref, default):
        assert type(a) is np.ndarray, f"{name}: {type(a).__name__}, expected numpy.ndarray"
        assert a.dtype == r.dtype, f"{name}: dtype {a.dtype} != original's {r.dtype}"
        assert a.shape == r.shape, f"{name}: shape {a.shape} != original's {r.shape}"
        np.testing.assert_array_equal(a, as_np(d), err_msg=f"{name}: as_numpy=True differs from as_numpy=False")
    if return_logits:
        assert R.max_abs_diff(ours[0], ref[0]) <= TOL
    else:
        ref_logits = ref_pred.predict(**p, multimask_output=True, return_logits=True)[0]
        assert R.mask_disagreement(ours[0], ref_logits)[1] < MASK_BAND

    # predict_torch(as_numpy=True) with torch inputs: NumPy, shaped like the original's tensors
    inp = _torch_inputs("boxes", 1, size)
    with torch.no_grad():
        ref_t = ref_pred.predict_torch(None, None, inp["boxes"], None, multimask_output=False,
                                       return_logits=return_logits)
    ours_t = pred.predict_torch(None, None, inp["boxes"], None, multimask_output=False,
                                return_logits=return_logits, as_numpy=True)
    for name, a, r in zip(("masks", "iou", "low_res"), ours_t, ref_t):
        assert type(a) is np.ndarray, f"predict_torch {name}: {type(a).__name__}, expected numpy.ndarray"
        assert a.shape == tuple(r.shape), f"predict_torch {name}: shape {a.shape} != original's {tuple(r.shape)}"
        assert a.dtype == r.numpy().dtype, f"predict_torch {name}: dtype {a.dtype} != original's {r.numpy().dtype}"
