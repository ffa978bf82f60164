"""Drop-in compatibility of mobile_sam_c's SamPredictor / registry / ResizeLongestSide with
MobileSAM's own (the reference is run side by side; every expected value comes from it)."""
import re

import numpy as np
import pytest
import torch

import reference as R

TOL = 1e-3
MASK_BAND = 1e-2


as_np = R.as_np


def points_prompt(size, n=3, seed=0):
    h, w = size
    rng = np.random.default_rng(seed)
    coords = np.stack([rng.uniform(0, w, n), rng.uniform(0, h, n)], axis=1)
    labels = np.array(([1, 0] * n)[:n])
    return dict(point_coords=coords, point_labels=labels)


def box_prompt(size, seed=0):
    h, w = size
    rng = np.random.default_rng(seed)
    xs, ys = np.sort(rng.uniform(0, w, 2)), np.sort(rng.uniform(0, h, 2))
    return np.array([xs[0], ys[0], xs[1], ys[1]])


def assert_matches_reference(ours, ref_logits, ref_iou, ref_low, where=""):
    masks, iou, low = (as_np(x) for x in ours)
    assert masks.shape == ref_logits.shape, f"{where}: masks shape {masks.shape} != {ref_logits.shape}"
    d_iou, d_low = R.max_abs_diff(iou, ref_iou), R.max_abs_diff(low, ref_low)
    n, worst = R.mask_disagreement(masks, ref_logits)
    assert d_iou <= TOL, f"{where}: iou max|diff| {d_iou:.3e}"
    assert d_low <= TOL, f"{where}: low-res max|diff| {d_low:.3e}"
    assert worst < MASK_BAND, f"{where}: {n} mask px disagree where |ref logit| up to {worst:.3e}"


def ref_predict(ref_model, emb, size, **prompt):
    rp = R.reference_predictor(ref_model)
    R.set_reference_embedding(rp, emb, size)
    return rp.predict(**prompt, return_logits=True)


@pytest.fixture(scope="module")
def pred(msc, model):
    return msc.SamPredictor(model)


# ---------------------------------------------------------------------------------------------
# model and registry


def test_model_attributes(model, ref_model):
    assert str(model.device) == str(ref_model.device) == "cpu"
    assert model.image_encoder.img_size == ref_model.image_encoder.img_size == 1024
    assert model.mask_threshold == ref_model.mask_threshold == 0.0
    assert model.image_format == ref_model.image_format == "RGB"


@pytest.mark.parametrize("hw", [(684, 1024), (1024, 1), (1024, 1024)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_preprocess_matches_reference(model, ref_model, hw):
    x = np.random.default_rng(hw[0] + hw[1]).uniform(0, 255, (1, 3) + hw).astype(np.float32)
    with torch.no_grad():
        want = ref_model.preprocess(torch.from_numpy(x)).numpy()
    got = as_np(model.preprocess(x))
    assert got.shape == want.shape == (1, 3, 1024, 1024)
    d = R.max_abs_diff(got, want)
    assert d <= 1e-5, f"preprocess max|diff| {d:.3e}"


def test_registry_keys_and_unsupported_variants(msc):
    assert set(msc.sam_model_registry) == set(R.ref_sam_model_registry)
    for key in sorted(set(R.ref_sam_model_registry) - {"vit_t"}):
        with pytest.raises(NotImplementedError) as ei:
            msc.sam_model_registry[key](checkpoint=None)
        assert "vit_t" in str(ei.value), f"{key}: message does not name vit_t: {ei.value}"


FP_SIZE = (60, 90)


def _fp_prompt():
    return dict(point_coords=np.array([[20.0, 30.0], [70.0, 10.0]]), point_labels=np.array([1, 0]),
                box=np.array([5.0, 4.0, 80.0, 50.0]))


def _fingerprint(model, emb):
    """IoU and low-res logits for a fixed prompt: equal outputs <=> equal weights (in practice)."""
    from mobile_sam_c import SamPredictor

    p = SamPredictor(model)
    p.set_image_embedding(emb, original_size=FP_SIZE)
    _, iou, low = p.predict(**_fp_prompt(), multimask_output=True)
    return [as_np(iou).copy(), as_np(low).copy()]


def test_checkpoint_forms_load_the_same_weights(msc, model, ref_model, ref_state_dict, random_embedding, tmp_path):
    """A Mapping of NumPy arrays, of torch tensors, a torch zip, a legacy torch file, an .npz
    and a .safetensors file holding the same state dict give the same model."""
    want = _fingerprint(model, random_embedding)
    # and that model is the reference (so the fingerprint is meaningful)
    rl, ri, rlow = ref_predict(ref_model, random_embedding, FP_SIZE, **_fp_prompt(), multimask_output=True)
    assert R.max_abs_diff(want[1], rlow) <= TOL and R.max_abs_diff(want[0], ri) <= TOL

    tsd = {k: torch.from_numpy(v.copy()) for k, v in ref_state_dict.items()}
    zip_path = tmp_path / "zip.pt"
    torch.save(tsd, zip_path)
    legacy_path = tmp_path / "legacy.pth"
    torch.save(tsd, legacy_path, _use_new_zipfile_serialization=False)
    npz_path = tmp_path / "weights.npz"
    np.savez(npz_path, **ref_state_dict)
    import safetensors.numpy

    st_path = tmp_path / "weights.safetensors"
    safetensors.numpy.save_file({k: np.ascontiguousarray(v) for k, v in ref_state_dict.items()}, str(st_path))

    forms = {
        "build_sam_vit_t(mapping numpy)": lambda: msc.build_sam_vit_t(checkpoint=ref_state_dict),
        "mapping of torch tensors": lambda: msc.sam_model_registry["vit_t"](checkpoint=tsd),
        "torch zip (str path)": lambda: msc.sam_model_registry["vit_t"](checkpoint=str(zip_path)),
        "torch legacy (Path)": lambda: msc.sam_model_registry["vit_t"](checkpoint=legacy_path),
        "npz": lambda: msc.sam_model_registry["vit_t"](checkpoint=str(npz_path)),
        "safetensors": lambda: msc.build_sam_vit_t(checkpoint=str(st_path)),
    }
    for name, build in forms.items():
        got = _fingerprint(build(), random_embedding)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b, err_msg=f"checkpoint form {name!r} gives other outputs")


def test_random_weights_are_deterministic(msc, model, random_embedding):
    a = _fingerprint(msc.sam_model_registry["vit_t"](checkpoint=None), random_embedding)
    b = _fingerprint(msc.build_sam_vit_t(), random_embedding)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # ... and they are not the weights we loaded elsewhere
    assert not np.array_equal(a[1], _fingerprint(model, random_embedding)[1])


# ---------------------------------------------------------------------------------------------
# predictor state


def test_predictor_attributes(msc, model, ref_model):
    p = msc.SamPredictor(model)
    rp = R.reference_predictor(ref_model)
    assert p.model is model
    assert str(p.device) == str(rp.device)
    assert isinstance(p.transform, msc.ResizeLongestSide)
    assert p.transform.target_length == rp.transform.target_length == 1024
    assert p.is_image_set is False and rp.is_image_set is False
    assert p.features is None and rp.features is None


def _ref_error(call):
    with pytest.raises(RuntimeError) as ei:
        call()
    return str(ei.value)


def test_is_image_set_transitions_and_reset(msc, model, ref_model, random_embedding):
    p = msc.SamPredictor(model)
    rp = R.reference_predictor(ref_model)
    msg_predict = _ref_error(lambda: rp.predict())
    msg_embed = _ref_error(lambda: rp.get_image_embedding())
    msg_torch = _ref_error(lambda: rp.predict_torch(None, None))

    def not_set():
        assert p.is_image_set is False
        assert p.features is None
        with pytest.raises(RuntimeError, match=re.escape(msg_predict)):
            p.predict(point_coords=np.array([[5.0, 5.0]]), point_labels=np.array([1]))
        with pytest.raises(RuntimeError, match=re.escape(msg_torch)):
            p.predict_torch(torch.zeros(1, 1, 2), torch.ones(1, 1, dtype=torch.int64))
        with pytest.raises(RuntimeError, match=re.escape(msg_embed)):
            p.get_image_embedding()

    not_set()
    p.set_image_embedding(random_embedding, original_size=(300, 400))
    assert p.is_image_set is True
    assert tuple(p.original_size) == (300, 400)
    assert tuple(p.input_size) == R.get_preprocess_shape(300, 400)
    p.predict(point_coords=np.array([[5.0, 5.0]]), point_labels=np.array([1]))
    p.reset_image()
    not_set()
    p.reset_image()  # idempotent
    not_set()
    p.set_image_embedding(random_embedding[0], original_size=(300, 400))
    assert p.is_image_set is True


def test_set_image_embedding_and_get_image_embedding(msc, model, ref_model, random_embedding):
    p = msc.SamPredictor(model)
    size = (480, 640)
    prompt = points_prompt(size, 2, 5)
    p.set_image_embedding(random_embedding, original_size=size)
    emb = as_np(p.get_image_embedding())
    assert emb.shape == (1, 256, 64, 64) and emb.dtype == np.float32
    np.testing.assert_array_equal(emb, random_embedding)
    np.testing.assert_array_equal(as_np(p.features), random_embedding)
    out4 = [as_np(x).copy() for x in p.predict(**prompt)]
    assert_matches_reference(out4, *ref_predict(ref_model, random_embedding, size, **prompt), where="4-D embedding")

    # a 256x64x64 embedding, and a torch tensor (DLPack) embedding, give the same result
    p.set_image_embedding(random_embedding[0].copy(), original_size=size)
    for a, b in zip(out4, p.predict(**prompt)):
        np.testing.assert_array_equal(as_np(b), a)
    p.set_image_embedding(torch.from_numpy(random_embedding.copy()), original_size=size)
    for a, b in zip(out4, p.predict(**prompt)):
        np.testing.assert_array_equal(as_np(b), a)


def test_set_image_embedding_explicit_input_size(msc, model, ref_model, random_embedding):
    size, input_size = (500, 800), (600, 1024)  # not what get_preprocess_shape would give
    p = msc.SamPredictor(model)
    p.set_image_embedding(random_embedding, original_size=size, input_size=input_size)
    assert tuple(p.input_size) == input_size and tuple(p.original_size) == size
    box = box_prompt(size, 3)
    rp = R.reference_predictor(ref_model)
    R.set_reference_embedding(rp, random_embedding, size, input_size)
    ref = rp.predict(box=box, return_logits=True)
    assert_matches_reference(p.predict(box=box), *ref, where="explicit input_size")


# ---------------------------------------------------------------------------------------------
# images through the encoder (our encoder on the small random model)


@pytest.fixture(scope="module")
def photo_state(msc, model, photo):
    p = msc.SamPredictor(model)
    p.set_image(photo)
    return p, as_np(p.get_image_embedding()).copy()


def test_set_image_sizes_and_embedding(photo_state, photo, photo_embedding, ref_model):
    p, emb = photo_state
    ref_emb, ref_osz, ref_isz = photo_embedding
    assert p.is_image_set is True
    assert tuple(p.original_size) == ref_osz and tuple(p.input_size) == ref_isz
    assert all(type(v) is int for v in tuple(p.original_size) + tuple(p.input_size))
    assert emb.shape == (1, 256, 64, 64)
    d = R.max_abs_diff(emb, ref_emb)
    R.record("encoder (set_image photo): embedding max|diff|", d, "dog.jpg")
    print(f"set_image(dog.jpg) embedding max|diff| {d:.3e}")
    assert d <= TOL, f"set_image embedding max|diff| {d:.3e} > {TOL}"
    # and a prediction from that state matches the reference's on its own embedding
    prompt = points_prompt(ref_osz, 3, 11)
    assert_matches_reference(p.predict(**prompt), *ref_predict(ref_model, ref_emb, ref_osz, **prompt),
                             where="predict after set_image")


@pytest.mark.parametrize("size", [(17, 23), (1023, 1)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_set_image_size_attributes(msc, model, size):
    img = R.random_image(size[0], size[1], seed=size[0])
    p = msc.SamPredictor(model)
    p.set_image(img)
    want_input = tuple(R.RefResizeLongestSide(1024).apply_image(img).shape[:2])
    assert tuple(p.original_size) == tuple(img.shape[:2])
    assert tuple(p.input_size) == want_input
    assert p.is_image_set


def test_set_image_bgr(msc, model, photo, photo_state):
    _, emb_rgb = photo_state
    p = msc.SamPredictor(model)
    p.set_image(photo[..., ::-1], image_format="BGR")  # a negative-stride view, as cv2 users pass
    d = R.max_abs_diff(as_np(p.get_image_embedding()), emb_rgb)
    assert d <= 1e-5, f"BGR input gives another embedding (max|diff| {d:.3e})"
    assert tuple(p.original_size) == photo.shape[:2]


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_set_torch_image(msc, model, photo, photo_state, photo_embedding, kind):
    """set_torch_image on the reference's transform of the photo == set_image on the photo."""
    _, emb_rgb = photo_state
    ref_emb, ref_osz, ref_isz = photo_embedding
    resized = R.RefResizeLongestSide(1024).apply_image(photo)
    x = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None].float()
    if kind == "numpy":
        x = x.numpy()
    p = msc.SamPredictor(model)
    p.set_torch_image(x, photo.shape[:2])
    assert p.is_image_set
    assert tuple(p.original_size) == ref_osz and tuple(p.input_size) == ref_isz
    emb = as_np(p.get_image_embedding())
    d_ref = R.max_abs_diff(emb, ref_emb)
    R.record("encoder (set_torch_image photo): embedding max|diff|", d_ref, kind)
    assert d_ref <= TOL, f"set_torch_image({kind}) embedding max|diff| vs reference {d_ref:.3e}"
    d_own = R.max_abs_diff(emb, emb_rgb)
    assert d_own <= 1e-4, f"set_torch_image({kind}) vs set_image: max|diff| {d_own:.3e}"


# ---------------------------------------------------------------------------------------------
# ResizeLongestSide


PREPROCESS_SIZES = [(1, 1), (1, 2000), (2000, 1), (17, 23), (534, 800), (800, 534), (1023, 1), (1024, 1024),
                    (1025, 1023), (1200, 1800), (777, 1001), (3, 7), (4000, 3000), (1365, 2048), (333, 333)]


def test_get_preprocess_shape(msc):
    tr = msc.ResizeLongestSide(1024)
    for h, w in PREPROCESS_SIZES:
        for L in (1024, 256, 1000):
            want = R.RefResizeLongestSide.get_preprocess_shape(h, w, L)
            assert tuple(msc.ResizeLongestSide.get_preprocess_shape(h, w, L)) == want, (h, w, L)
            assert tuple(tr.get_preprocess_shape(h, w, L)) == want, (h, w, L)


@pytest.mark.parametrize("size", [(534, 800), (1080, 810), (17, 23), (1023, 1), (1, 1)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_apply_coords_and_boxes(msc, size):
    ours, ref = msc.ResizeLongestSide(1024), R.RefResizeLongestSide(1024)
    rng = np.random.default_rng(size[0] * 7 + size[1])
    h, w = size
    inputs = [
        np.stack([rng.uniform(0, w, 5), rng.uniform(0, h, 5)], 1),                      # Nx2 float64
        np.stack([rng.integers(0, w + 1, 4), rng.integers(0, h + 1, 4)], 1),            # Nx2 int
        rng.uniform(-10, 2 * max(h, w), (3, 4, 2)).astype(np.float32),                 # BxNx2 float32
    ]
    for c in inputs:
        c_before = c.copy()
        got, want = ours.apply_coords(c, size), ref.apply_coords(c, size)
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(c, c_before)  # input untouched
        ct = torch.from_numpy(c.copy())
        got_t, want_t = ours.apply_coords_torch(ct, size), ref.apply_coords_torch(ct, size)
        assert isinstance(got_t, torch.Tensor) and got_t.dtype == want_t.dtype and got_t.shape == want_t.shape
        assert torch.equal(got_t, want_t)
        assert torch.equal(ct, torch.from_numpy(c))
    for b in (box_prompt(size, 1), np.stack([box_prompt(size, s) for s in range(3)]),
              box_prompt(size, 4).astype(np.float32)[None]):
        got, want = ours.apply_boxes(b, size), ref.apply_boxes(b, size)
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        bt = torch.from_numpy(np.atleast_2d(b).astype(np.float32))
        got_t, want_t = ours.apply_boxes_torch(bt, size), ref.apply_boxes_torch(bt, size)
        assert isinstance(got_t, torch.Tensor) and got_t.dtype == want_t.dtype and got_t.shape == want_t.shape
        assert torch.equal(got_t, want_t)


@pytest.mark.parametrize("size", [None, (1080, 810), (17, 23), (1, 1), (1023, 1), (5, 1500)],
                         ids=lambda s: "photo" if s is None else f"{s[0]}x{s[1]}")
def test_apply_image_matches_pillow_resize(msc, photo, size):
    img = photo if size is None else R.random_image(size[0], size[1], seed=size[1])
    want = R.RefResizeLongestSide(1024).apply_image(img)
    got = np.asarray(msc.ResizeLongestSide(1024).apply_image(img))
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() == 0, f"apply_image differs from the reference's Pillow resize: max {diff.max()}, {int((diff > 0).sum())} values"


# ---------------------------------------------------------------------------------------------
# predictions: repeatability, box shapes, output containers, DLPack


def test_repeated_predict_identical(pred, random_embedding, photo_embedding):
    size = (640, 480)
    a, b = points_prompt(size, 4, 3), dict(box=box_prompt(size, 3))
    pred.set_image_embedding(random_embedding, original_size=size)
    first = [as_np(x).copy() for x in pred.predict(**a, multimask_output=True, return_logits=True)]
    again = pred.predict(**a, multimask_output=True, return_logits=True)
    pred.predict(**b, multimask_output=False)
    third = pred.predict(**a, multimask_output=True, return_logits=True)
    pred.set_image_embedding(photo_embedding[0], original_size=(100, 100))
    pred.predict(**b)
    pred.set_image_embedding(random_embedding, original_size=size)
    fourth = pred.predict(**a, multimask_output=True, return_logits=True)
    for other in (again, third, fourth):
        for x, y in zip(first, other):
            np.testing.assert_array_equal(as_np(y), x)


def test_box_1x4_equals_box_4(pred, random_embedding):
    size = (700, 500)
    pred.set_image_embedding(random_embedding, original_size=size)
    box = box_prompt(size, 9)
    a = [as_np(x).copy() for x in pred.predict(box=box, return_logits=True)]
    b = pred.predict(box=box[None, :], return_logits=True)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(as_np(y), x)


def test_default_outputs_are_numpy_on_cpu(pred, ref_model, random_embedding):
    """On the CPU the default (as_numpy=False) predict returns NumPy arrays, like the original."""
    size = (300, 500)
    prompt = points_prompt(size, 1, 2)
    pred.set_image_embedding(random_embedding, original_size=size)
    ours = pred.predict(**prompt)
    rp = R.reference_predictor(ref_model)
    R.set_reference_embedding(rp, random_embedding, size)
    ref = rp.predict(**prompt)
    for name, a, r in zip(("masks", "iou", "low_res"), ours, ref):
        assert isinstance(a, np.ndarray), f"{name}: {type(a).__name__}"
        assert a.dtype == r.dtype and a.shape == r.shape, (name, a.dtype, r.dtype, a.shape, r.shape)


@pytest.mark.parametrize("return_logits", [False, True], ids=["bool", "logits"])
def test_dlpack_round_trip(pred, random_embedding, return_logits):
    size = (333, 555)
    prompt = points_prompt(size, 2, 4)
    pred.set_image_embedding(random_embedding, original_size=size)
    ref = pred.predict(**prompt, return_logits=return_logits, as_numpy=True)
    out = pred.predict(**prompt, return_logits=return_logits, as_numpy=False)
    tdt = {np.dtype(np.bool_): torch.bool, np.dtype(np.float32): torch.float32}
    for name, x, want in zip(("masks", "iou", "low_res"), out, ref):
        assert hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"), name
        n = np.from_dlpack(x)
        assert n.dtype == want.dtype and n.shape == want.shape, (name, n.dtype, n.shape)
        np.testing.assert_array_equal(n, want, err_msg=name)
        t = torch.from_dlpack(x)
        assert t.dtype == tdt[want.dtype] and tuple(t.shape) == want.shape, (name, t.dtype, t.shape)
        np.testing.assert_array_equal(t.numpy(), want, err_msg=name)


def test_predict_torch_returns_torch_tensors(pred, ref_model, random_embedding):
    size = (320, 400)
    ih, iw = R.get_preprocess_shape(*size)
    coords = torch.tensor([[[iw * 0.3, ih * 0.4], [iw * 0.6, ih * 0.5], [1.0, 2.0]]])
    labels = torch.tensor([[1, 0, 1]])
    pred.set_image_embedding(random_embedding, original_size=size)
    rp = R.reference_predictor(ref_model)
    R.set_reference_embedding(rp, random_embedding, size)
    for return_logits in (False, True):
        out = pred.predict_torch(coords, labels, multimask_output=True, return_logits=return_logits)
        with torch.no_grad():
            ref = rp.predict_torch(coords, labels, multimask_output=True, return_logits=return_logits)
        for name, o, r in zip(("masks", "iou", "low_res"), out, ref):
            assert isinstance(o, torch.Tensor), f"{name}: {type(o).__name__}"
            assert o.dtype == r.dtype and o.shape == r.shape and o.device.type == "cpu", (name, o.dtype, o.shape)
        assert R.max_abs_diff(out[2].numpy(), ref[2].numpy()) <= TOL
        if return_logits:
            assert R.max_abs_diff(out[0].numpy(), ref[0].numpy()) <= TOL


# ---------------------------------------------------------------------------------------------
# threads and sharing


def test_num_threads(msc, pred, random_embedding):
    old = msc.get_num_threads()
    assert isinstance(old, int) and old >= 1
    size = (512, 700)
    prompt = points_prompt(size, 3, 8)
    pred.set_image_embedding(random_embedding, original_size=size)
    try:
        outs = {}
        for n in (1, 2, 3):
            msc.set_num_threads(n)
            assert msc.get_num_threads() == n
            outs[n] = [as_np(x).copy() for x in pred.predict(**prompt, return_logits=True)]
        for n in (2, 3):
            for a, b in zip(outs[1], outs[n]):
                assert R.max_abs_diff(a, b) <= 1e-5, f"{n} threads vs 1 thread differ"
    finally:
        msc.set_num_threads(old)
    assert msc.get_num_threads() == old


def test_set_image_same_for_any_thread_count(msc, model, photo, photo_state):
    """The encoder's per-thread scratch is sized at load for max(threads, CPUs); asking for more
    threads than that must use fewer, not overrun, and every count gives the same embedding."""
    import os

    old = msc.get_num_threads()
    p = msc.SamPredictor(model)
    embs = {}
    try:
        for n in (1, 2, (os.cpu_count() or 1) + 3):
            msc.set_num_threads(n)
            p.set_image(photo)
            embs[n] = as_np(p.get_image_embedding()).copy()
    finally:
        msc.set_num_threads(old)
    for n, e in embs.items():
        assert np.array_equal(e, photo_state[1]), f"set_image with {n} threads differs"


def test_two_predictors_share_one_model(msc, model, ref_model, random_embedding, photo_embedding):
    p1, p2 = msc.SamPredictor(model), msc.SamPredictor(model)
    s1, s2 = (267, 400), (540, 405)
    e2 = photo_embedding[0]
    pr1, pr2 = points_prompt(s1, 3, 21), dict(box=box_prompt(s2, 22))
    ref1 = ref_predict(ref_model, random_embedding, s1, **pr1)
    ref2 = ref_predict(ref_model, e2, s2, **pr2)
    p1.set_image_embedding(random_embedding, original_size=s1)
    p2.set_image_embedding(e2, original_size=s2)
    o1 = [as_np(x).copy() for x in p1.predict(**pr1)]
    o2 = [as_np(x).copy() for x in p2.predict(**pr2)]
    assert_matches_reference(o1, *ref1, where="predictor 1")
    assert_matches_reference(o2, *ref2, where="predictor 2")
    assert tuple(p1.original_size) == s1 and tuple(p2.original_size) == s2
    # interleaved calls and a reset of one leave the other alone
    p1.reset_image()
    assert p1.is_image_set is False and p2.is_image_set is True
    for a, b in zip(o2, p2.predict(**pr2)):
        np.testing.assert_array_equal(as_np(b), a)
    p1.set_image_embedding(random_embedding, original_size=s1)
    for a, b in zip(o1, p1.predict(**pr1)):
        np.testing.assert_array_equal(as_np(b), a)
    np.testing.assert_array_equal(as_np(p2.get_image_embedding()), e2)
