"""Bad input: each raises mobile_sam_c.InputError (a ValueError and an AssertionError, since the
original validates with assert) whose message names the argument; calls out of order raise the
original's RuntimeError. Nothing crashes, and a failed call leaves the predictor as it was
(as the original's asserts, which run before any state changes, do)."""
import re

import numpy as np
import pytest
import torch

import reference as R

SIZE = (534, 800)
NAN, INF = float("nan"), float("inf")

C3 = np.array([[10.0, 20.0], [300.0, 40.0], [50.0, 500.0]])
L3 = np.array([1, 0, 1])
BOX = np.array([20.0, 30.0, 400.0, 300.0])
MASK = np.zeros((1, 256, 256), np.float32)


def _with(arr, idx, value):
    a = np.array(arr, dtype=np.float64 if np.asarray(arr).dtype.kind != "f" else np.asarray(arr).dtype, copy=True)
    a[idx] = value
    return a


@pytest.fixture(scope="module")
def _predictor(msc, model, random_embedding):
    """A predictor with an image set, and what it predicts for a fixed prompt."""
    p = msc.SamPredictor(model)
    p.set_image_embedding(random_embedding, original_size=SIZE)
    base = [np.array(np.asarray(x)) for x in p.predict(point_coords=C3, point_labels=L3, return_logits=True)]
    return p, (random_embedding, base)


@pytest.fixture
def ready(_predictor):
    """The shared predictor, its image (re)set so each test judges only its own call."""
    p, (emb, base) = _predictor
    if not p.is_image_set or tuple(p.original_size) != SIZE:
        p.set_image_embedding(emb, original_size=SIZE)
    return p, (emb, base)


def intact_problems(p, base):
    """What a rejected call changed of the image, its sizes and its embedding ([] if nothing)."""
    emb, _ = base
    if p.is_image_set is not True:
        return ["a rejected call unset the image (is_image_set is False)"]
    out = []
    if tuple(p.original_size) != SIZE:
        out.append(f"original_size became {p.original_size}")
    if tuple(p.input_size) != R.get_preprocess_shape(*SIZE):
        out.append(f"input_size became {p.input_size}")
    if not np.array_equal(np.asarray(p.get_image_embedding()), emb):
        out.append("the embedding changed")
    return out


def assert_intact(p, base):
    problems = intact_problems(p, base)
    assert not problems, "; ".join(problems)


def error_problems(msc, excinfo, names):
    e = excinfo.value
    if not isinstance(e, msc.InputError):
        return [f"raised {type(e).__name__} (not InputError): {e}"]
    msg = str(e)
    if not any(n in msg for n in names):
        return [f"message {msg!r} names none of {names}"]
    return []


def check_rejected(msc, excinfo, names, p, base):
    """The right exception, naming the argument, and the predictor left as it was."""
    problems = error_problems(msc, excinfo, names) + intact_problems(p, base)
    assert not problems, "; ".join(problems)


def test_input_error_class(msc):
    assert issubclass(msc.InputError, ValueError)
    assert issubclass(msc.InputError, AssertionError)


def test_assertion_error_callers_still_catch_it(ready):
    """Code written against the original (which asserts) keeps working."""
    p, base = ready
    with pytest.raises(AssertionError):
        p.predict(point_coords=C3)
    with pytest.raises(ValueError):
        p.predict(point_coords=C3)
    assert_intact(p, base)


# ---------------------------------------------------------------------------------------------
# predict (original frame)

PREDICT_CASES = [
    ("coords_without_labels", dict(point_coords=C3), ["point_labels"]),
    ("label_2", dict(point_coords=C3, point_labels=np.array([1, 2, 1])), ["point_labels"]),
    ("label_minus_2", dict(point_coords=C3, point_labels=np.array([1, -2, 0])), ["point_labels"]),
    ("label_99_int32", dict(point_coords=C3, point_labels=np.array([99, 1, 0], np.int32)), ["point_labels"]),
    ("coords_nan", dict(point_coords=_with(C3, (1, 0), NAN), point_labels=L3), ["point_coords"]),
    ("coords_inf", dict(point_coords=_with(C3, (2, 1), -INF), point_labels=L3), ["point_coords"]),
    ("coords_shape_2", dict(point_coords=np.array([10.0, 20.0]), point_labels=np.array([1])), ["point_coords"]),
    ("coords_Nx3", dict(point_coords=np.ones((3, 3)), point_labels=L3), ["point_coords"]),
    ("coords_1xNx2", dict(point_coords=C3[None], point_labels=L3), ["point_coords"]),
    ("labels_too_short", dict(point_coords=C3, point_labels=np.array([1, 0])), ["point_labels"]),
    ("labels_too_long", dict(point_coords=C3, point_labels=np.array([1, 0, 1, 1])), ["point_labels"]),
    ("box_len3", dict(box=np.array([1.0, 2.0, 3.0])), ["box"]),
    ("box_len5", dict(box=np.arange(5.0)), ["box"]),
    ("box_2x4", dict(box=np.stack([BOX, BOX])), ["box"]),
    ("box_nan", dict(box=_with(BOX, 2, NAN)), ["box"]),
    ("box_inf", dict(box=_with(BOX, 0, INF)), ["box"]),
    ("mask_256x256", dict(mask_input=np.zeros((256, 256), np.float32)), ["mask_input"]),
    ("mask_1x128x128", dict(mask_input=np.zeros((1, 128, 128), np.float32)), ["mask_input"]),
    ("mask_2x256x256", dict(mask_input=np.zeros((2, 256, 256), np.float32)), ["mask_input"]),
    ("mask_1x1x256x256", dict(mask_input=np.zeros((1, 1, 256, 256), np.float32)), ["mask_input"]),
    ("mask_nan", dict(mask_input=_with(MASK, (0, 5, 7), NAN)), ["mask_input"]),
    ("mask_inf", dict(mask_input=_with(MASK, (0, 255, 0), INF)), ["mask_input"]),
    ("box_ok_mask_bad", dict(box=BOX, mask_input=np.zeros((1, 64, 64), np.float32)), ["mask_input"]),
]


@pytest.mark.parametrize("kwargs,names", [c[1:] for c in PREDICT_CASES], ids=[c[0] for c in PREDICT_CASES])
def test_predict_rejects(msc, ready, kwargs, names):
    p, base = ready
    with pytest.raises(Exception) as ei:
        p.predict(**kwargs)
    check_rejected(msc, ei, names, p, base)


# ---------------------------------------------------------------------------------------------
# predict_torch (1024 frame, batched)


def _t(a, dtype=torch.float32):
    return torch.as_tensor(np.asarray(a), dtype=dtype)


TC = _t(np.random.default_rng(0).uniform(0, 1000, (2, 3, 2)))
TL = _t([[1, 0, 1], [1, 1, -1]], torch.int64)
TB = _t([[10, 10, 500, 600], [100, 50, 300, 400]])

PREDICT_TORCH_CASES = [
    ("coords_without_labels", (TC, None), {}, ["point_labels"]),
    ("labels_batch_mismatch", (TC, _t(np.ones((3, 3)), torch.int64)), {}, ["point_labels"]),
    ("labels_n_mismatch", (TC, _t(np.ones((2, 2)), torch.int64)), {}, ["point_labels"]),
    ("label_value_3", (TC, _t([[1, 3, 1], [1, 1, 1]], torch.int64)), {}, ["point_labels"]),
    ("coords_2d", (TC[0], TL[0]), {}, ["point_coords"]),
    ("coords_last_dim_3", (_t(np.ones((2, 3, 3))), TL), {}, ["point_coords"]),
    ("coords_nan", (_t(_with(TC.numpy(), (1, 2, 0), NAN)), TL), {}, ["point_coords"]),
    ("boxes_Bx3", (None, None), dict(boxes=_t(np.ones((2, 3)))), ["boxes"]),
    ("boxes_nan", (None, None), dict(boxes=_t(_with(TB.numpy(), (0, 1), NAN))), ["boxes"]),
    ("boxes_batch_vs_points", (TC, TL), dict(boxes=_t(np.tile(TB.numpy(), (2, 1))[:3])),
     ["boxes", "point_coords", "batch"]),
    ("mask_Bx256x256", (TC, TL), dict(mask_input=_t(np.zeros((2, 256, 256)))), ["mask_input"]),
    ("mask_Bx1x128x128", (TC, TL), dict(mask_input=_t(np.zeros((2, 1, 128, 128)))), ["mask_input"]),
    ("mask_batch_3_vs_2", (TC, TL), dict(mask_input=_t(np.zeros((3, 1, 256, 256)))), ["mask_input"]),
    ("mask_inf", (None, None), dict(mask_input=_t(_with(np.zeros((1, 1, 256, 256)), (0, 0, 3, 3), INF))),
     ["mask_input"]),
]


@pytest.mark.parametrize("args,kwargs,names", [c[1:] for c in PREDICT_TORCH_CASES],
                         ids=[c[0] for c in PREDICT_TORCH_CASES])
def test_predict_torch_rejects(msc, ready, args, kwargs, names):
    p, base = ready
    with pytest.raises(Exception) as ei:
        p.predict_torch(*args, **kwargs)
    check_rejected(msc, ei, names, p, base)


# ---------------------------------------------------------------------------------------------
# set_image / set_torch_image / set_image_embedding

_IMG = R.random_image(40, 60, seed=3)

SET_IMAGE_CASES = [
    ("float32", dict(image=_IMG.astype(np.float32)), ["image"]),
    ("float64", dict(image=_IMG.astype(np.float64)), ["image"]),
    ("uint16", dict(image=_IMG.astype(np.uint16)), ["image"]),
    ("gray_HxW", dict(image=_IMG[..., 0].copy()), ["image"]),
    ("rgba_HxWx4", dict(image=np.concatenate([_IMG, _IMG[..., :1]], axis=2)), ["image"]),
    ("HxWx1", dict(image=_IMG[..., :1].copy()), ["image"]),
    ("batched_1xHxWx3", dict(image=_IMG[None]), ["image"]),
    ("empty_0xW", dict(image=np.zeros((0, 60, 3), np.uint8)), ["image"]),
    ("empty_Hx0", dict(image=np.zeros((40, 0, 3), np.uint8)), ["image"]),
    ("format_lowercase", dict(image=_IMG, image_format="rgb"), ["image_format"]),
    ("format_unknown", dict(image=_IMG, image_format="HSV"), ["image_format"]),
]


@pytest.mark.parametrize("kwargs,names", [c[1:] for c in SET_IMAGE_CASES], ids=[c[0] for c in SET_IMAGE_CASES])
def test_set_image_rejects(msc, ready, kwargs, names):
    p, base = ready
    with pytest.raises(Exception) as ei:
        p.set_image(**kwargs)
    check_rejected(msc, ei, names, p, base)


SET_TORCH_IMAGE_CASES = [
    ("long_side_512", torch.zeros(1, 3, 512, 384), ["transformed_image"]),
    ("long_side_1025", torch.zeros(1, 3, 1025, 700), ["transformed_image"]),
    ("no_batch_dim", torch.zeros(3, 1024, 768), ["transformed_image"]),
    ("four_channels", torch.zeros(1, 4, 1024, 768), ["transformed_image"]),
    ("channels_last", torch.zeros(1, 1024, 768, 3), ["transformed_image"]),
]


@pytest.mark.parametrize("x,names", [c[1:] for c in SET_TORCH_IMAGE_CASES], ids=[c[0] for c in SET_TORCH_IMAGE_CASES])
def test_set_torch_image_rejects(msc, ready, x, names):
    p, base = ready
    with pytest.raises(Exception) as ei:
        p.set_torch_image(x, (700, 900))
    check_rejected(msc, ei, names, p, base)


_E = np.zeros(R.EMBED_SHAPE, np.float32)

SET_EMBEDDING_CASES = [
    ("embedding_32x32", dict(embedding=np.zeros((1, 256, 32, 32), np.float32), original_size=SIZE), ["embedding"]),
    ("embedding_2d", dict(embedding=np.zeros((256, 64), np.float32), original_size=SIZE), ["embedding"]),
    ("embedding_128ch", dict(embedding=np.zeros((1, 128, 64, 64), np.float32), original_size=SIZE), ["embedding"]),
    ("embedding_batch2", dict(embedding=np.zeros((2, 256, 64, 64), np.float32), original_size=SIZE), ["embedding"]),
    ("embedding_nan", dict(embedding=_with(_E, (0, 3, 4, 5), NAN), original_size=SIZE), ["embedding"]),
    ("embedding_inf", dict(embedding=_with(_E, (0, 255, 63, 63), -INF), original_size=SIZE), ["embedding"]),
    ("original_size_zero", dict(embedding=_E, original_size=(0, 10)), ["original_size"]),
    ("original_size_negative", dict(embedding=_E, original_size=(10, -1)), ["original_size"]),
    ("original_size_len3", dict(embedding=_E, original_size=(10, 10, 3)), ["original_size"]),
]


@pytest.mark.parametrize("kwargs,names", [c[1:] for c in SET_EMBEDDING_CASES], ids=[c[0] for c in SET_EMBEDDING_CASES])
def test_set_image_embedding_rejects(msc, ready, kwargs, names):
    p, base = ready
    emb = kwargs["embedding"]
    with pytest.raises(Exception) as ei:
        p.set_image_embedding(emb, original_size=kwargs["original_size"])
    check_rejected(msc, ei, names, p, base)


# ---------------------------------------------------------------------------------------------
# out of order: the original's RuntimeError and message


def test_calls_before_an_image_is_set(msc, model, ref_model):
    rp = R.reference_predictor(ref_model)
    p = msc.SamPredictor(model)
    calls = [
        ("predict", lambda q: q.predict(point_coords=C3, point_labels=L3)),
        ("predict_torch", lambda q: q.predict_torch(TC, TL)),
        ("get_image_embedding", lambda q: q.get_image_embedding()),
    ]
    for name, call in calls:
        with pytest.raises(RuntimeError) as ref_ei:
            call(rp)
        with pytest.raises(RuntimeError, match=re.escape(str(ref_ei.value))) as ei:
            call(p)
        assert not isinstance(ei.value, msc.InputError), name
    assert p.is_image_set is False


# ---------------------------------------------------------------------------------------------
# weights


def test_bad_state_dicts_name_the_tensor(msc, ref_state_dict):
    key = "mask_decoder.iou_prediction_head.layers.2.weight"
    missing = {k: v for k, v in ref_state_dict.items() if k != key}
    with pytest.raises(msc.CheckpointError) as ei:
        msc.sam_model_registry["vit_t"](checkpoint=missing)
    assert key in str(ei.value), str(ei.value)

    key2 = "image_encoder.layers.1.blocks.0.attn.qkv.weight"
    wrong = dict(ref_state_dict)
    wrong[key2] = ref_state_dict[key2][:, :-1].copy()
    with pytest.raises(msc.CheckpointError) as ei:
        msc.sam_model_registry["vit_t"](checkpoint=wrong)
    assert key2 in str(ei.value), str(ei.value)


def test_missing_checkpoint_file(msc, tmp_path):
    path = tmp_path / "no_such_checkpoint.pt"
    with pytest.raises(OSError) as ei:
        R.ref_sam_model_registry["vit_t"](checkpoint=str(path))  # what the original raises
    with pytest.raises(type(ei.value)) as ours:
        msc.sam_model_registry["vit_t"](checkpoint=str(path))
    assert "no_such_checkpoint.pt" in str(ours.value)


def test_zz_predicts_as_before_after_all_rejections(_predictor):
    """Runs last in this module: after every rejected call above, predictions are unchanged."""
    p, (emb, base) = _predictor
    assert_intact(p, (emb, base))
    out = p.predict(point_coords=C3, point_labels=L3, return_logits=True)
    for a, b in zip(out, base):
        np.testing.assert_array_equal(np.asarray(a), b)
