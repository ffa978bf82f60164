"""The drop-in promise: one script written for the original MobileSAM (its README and the notebook
steps: points, box, box + point, a mask_input refinement loop, multimask choice by best score,
batched boxes through predict_torch, embedding export) runs with ``mobile_sam`` and again with only
the import changed to ``mobile_sam_c``, on the same checkpoint (random weights saved by torch.save),
and every output of the two runs is compared. Also the attributes and module paths such code reads."""
from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
import warnings
from typing import Any, Dict

import numpy as np
import pytest
import torch

import reference as R

# Written for the original; {package} is the only thing the two runs change.
SCRIPT = '''
import numpy as np
import torch
from PIL import Image

from {package} import sam_model_registry, SamPredictor
from {package}.utils.transforms import ResizeLongestSide

device = "cuda" if torch.cuda.is_available() and {use_cuda} else "cpu"
sam = sam_model_registry["vit_t"](checkpoint=CHECKPOINT)
sam.to(device=device)
sam.eval()
predictor = SamPredictor(sam)

image = np.array(Image.open(PHOTO).convert("RGB"))
predictor.set_image(image)
out = {{"original_size": tuple(predictor.original_size), "input_size": tuple(predictor.input_size)}}

# one point, three masks, keep the best by predicted IoU
input_point = np.array([[500, 375]])
input_label = np.array([1])
masks, scores, logits = predictor.predict(point_coords=input_point, point_labels=input_label,
                                          multimask_output=True)
best = int(np.argmax(scores))
out["point"] = (masks, scores, logits)
out["point_best"] = best

# refine: feed the best low-res logits back with a second point, a few times
mask_input = logits[best, :, :]
points = np.array([[500, 375], [1125, 625]])
labels = np.array([1, 1])
for step in range(3):
    masks, scores, logits = predictor.predict(point_coords=points, point_labels=labels,
                                              mask_input=mask_input[None, :, :], multimask_output=False)
    out[f"refine{{step}}"] = (masks, scores, logits)
    mask_input = logits[np.argmax(scores), :, :]

# a box, then a box with a background point
input_box = np.array([425, 600, 700, 875])
out["box"] = predictor.predict(point_coords=None, point_labels=None, box=input_box[None, :],
                               multimask_output=False)
out["box_point"] = predictor.predict(point_coords=np.array([[575, 750]]), point_labels=np.array([0]),
                                     box=input_box, multimask_output=False)

# several boxes in one batch
input_boxes = torch.tensor([[75, 275, 1725, 850], [425, 600, 700, 875], [1375, 550, 1650, 800],
                            [1240, 675, 1400, 750]], device=predictor.device)
transformed_boxes = predictor.transform.apply_boxes_torch(input_boxes, image.shape[:2])
masks, scores, logits = predictor.predict_torch(point_coords=None, point_labels=None,
                                                boxes=transformed_boxes, multimask_output=False)
out["batched"] = tuple(t.cpu().numpy() for t in (masks, scores, logits))

# export the embedding, as the ONNX example does
out["embedding"] = predictor.get_image_embedding().cpu().numpy()
out["features"] = predictor.features.cpu().numpy()

# what code reads from the model
out["img_size"] = sam.image_encoder.img_size
out["num_multimask_outputs"] = sam.mask_decoder.num_multimask_outputs
out["mask_threshold"] = sam.mask_threshold
out["image_format"] = sam.image_format
out["pixel_mean"] = np.asarray(sam.pixel_mean).reshape(-1).tolist()
out["pixel_std"] = np.asarray(sam.pixel_std).reshape(-1).tolist()
out["resize"] = ResizeLongestSide(sam.image_encoder.img_size).apply_image(image).shape
'''


def run_script(package: str, checkpoint: str, photo: str) -> Dict[str, Any]:
    namespace: Dict[str, Any] = {"CHECKPOINT": checkpoint, "PHOTO": photo}
    source = SCRIPT.format(package=package, use_cuda=False)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        exec(compile(source, f"<drop-in script, {package}>", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ref_model):
    checkpoint = tmp_path_factory.mktemp("dropin") / "mobile_sam.pt"
    torch.save(ref_model.state_dict(), checkpoint)  # what users hold: a torch.save'd state dict
    photo = str(R.image_path("truck.jpg"))
    original = run_script("mobile_sam", str(checkpoint), photo)
    ours = run_script("mobile_sam_c", str(checkpoint), photo)
    return original, ours


def _full_logits(original: Dict[str, Any], low_res: np.ndarray) -> np.ndarray:
    """The original's own upscaled logits for low-res logits it returned (what it thresholded)."""
    pred = original["predictor"]
    with torch.no_grad():
        full = pred.model.postprocess_masks(torch.as_tensor(low_res), pred.input_size, pred.original_size)
    return full.numpy()


def _compare_prediction(name: str, original: Dict[str, Any], ref, got) -> None:
    (r_masks, r_scores, r_low), (masks, scores, low) = ref, got
    assert type(masks) is np.ndarray and masks.dtype == np.bool_ and masks.shape == r_masks.shape, name
    d_scores, d_low = R.max_abs_diff(scores, r_scores), R.max_abs_diff(low, r_low)
    R.record("drop-in script IoU", d_scores, name)
    R.record("drop-in script low-res logits", d_low, name)
    assert d_scores <= 1e-3 and d_low <= 1e-3, (name, d_scores, d_low)
    batched = r_low.ndim == 4
    ref_full = _full_logits(original, r_low if batched else r_low[None])
    n, worst = R.mask_disagreement(masks if batched else masks[None], ref_full)
    R.record("drop-in script |ref logit| at mask disagreement", worst, name)
    assert worst < 1e-2, f"{name}: {n} pixels disagree, |ref logit| up to {worst}"


def test_script_outputs_match_the_original(runs):
    original, ours = runs
    o, r = ours["out"], original["out"]
    assert set(o) == set(r)
    for key in ("original_size", "input_size", "img_size", "num_multimask_outputs", "mask_threshold",
                "image_format", "resize", "point_best"):
        assert o[key] == r[key], key
    np.testing.assert_allclose(o["pixel_mean"], r["pixel_mean"], rtol=1e-6)
    np.testing.assert_allclose(o["pixel_std"], r["pixel_std"], rtol=1e-6)
    for key in ("embedding", "features"):
        assert type(o[key]) is np.ndarray and o[key].shape == r[key].shape == R.EMBED_SHAPE, key
        d = R.max_abs_diff(o[key], r[key])
        R.record("drop-in script embedding", d, key)
        assert d <= 1e-3, (key, d)
    for key in ("point", "refine0", "refine1", "refine2", "box", "box_point", "batched"):
        _compare_prediction(key, original, r[key], o[key])


def test_predictor_attributes_like_the_original(runs):
    original, ours = runs
    ref_pred, pred = original["predictor"], ours["predictor"]
    assert pred.is_image_set is ref_pred.is_image_set is True
    assert (pred.orig_h, pred.orig_w) == tuple(ref_pred.original_size)
    assert (pred.input_h, pred.input_w) == tuple(ref_pred.input_size)
    assert str(pred.device) == str(ref_pred.device) == "cpu"
    assert pred.model is ours["sam"] and pred.transform.target_length == ref_pred.transform.target_length
    # the embedding answers torch's calls and is the same memory as a plain ndarray
    emb = pred.get_image_embedding()
    assert isinstance(emb, np.ndarray) and emb.detach().cpu() is emb and emb.to("cpu") is emb
    assert np.shares_memory(emb.numpy(), emb) and type(emb.numpy()) is np.ndarray
    assert emb.dim() == ref_pred.get_image_embedding().dim() == 4
    np.testing.assert_array_equal(torch.from_numpy(emb.cpu().numpy()).numpy(), emb)
    unpickled = pickle.loads(pickle.dumps(emb))  # another process needs NumPy only to load it
    assert type(unpickled) is np.ndarray and np.array_equal(unpickled, emb)
    pred.reset_image()
    ref_pred.reset_image()
    assert pred.features is None and ref_pred.features is None
    assert pred.orig_h is None and ref_pred.orig_h is None and pred.input_w is None


def test_sam_like_the_original(msc, model, ref_model):
    assert model.to(device="cpu") is model and model.cpu() is model and model.eval() is model
    assert model.to(torch.device("cpu")) is model and model.to(torch.float32) is model
    try:  # a CUDA build on a machine with a GPU: the model moves; otherwise an InputError says why not
        msc._C.check_device("cuda")
        cuda_here = True
    except msc.InputError:
        cuda_here = False
    for device in ("cuda", "cuda:1", torch.device("cuda", 0)):
        if cuda_here:
            assert model.to(device=device) is model and model.device == "cuda"
            assert model.cpu() is model and model.device == "cpu"
        else:
            with pytest.raises(msc.InputError, match="device 'cuda[:01]*' is not available"):
                model.to(device=device)
    with pytest.raises(msc.InputError, match="mps"):
        model.to(device="mps")
    if cuda_here:
        assert model.cuda() is model and model.device == "cuda" and model.cpu().device == "cpu"
        assert msc.sam_model_registry["vit_t"](checkpoint=None, device="cuda").device == "cuda"
    else:
        with pytest.raises(msc.InputError, match="cuda"):
            model.cuda()
        with pytest.raises(msc.InputError, match="cuda"):
            msc.sam_model_registry["vit_t"](checkpoint=None, device="cuda")
    with pytest.raises(msc.InputError, match="float16"):
        model.to(torch.float16)
    assert str(model.device) == str(ref_model.device) == "cpu"
    for attr in ("img_size",):
        assert getattr(model.image_encoder, attr) == getattr(ref_model.image_encoder, attr)
    for attr in ("embed_dim", "input_image_size", "image_embedding_size", "mask_input_size"):
        assert tuple(np.atleast_1d(getattr(model.prompt_encoder, attr))) == \
            tuple(np.atleast_1d(getattr(ref_model.prompt_encoder, attr))), attr
    for attr in ("transformer_dim", "num_multimask_outputs", "num_mask_tokens"):
        assert getattr(model.mask_decoder, attr) == getattr(ref_model.mask_decoder, attr), attr
    np.testing.assert_array_equal(model.pixel_mean, ref_model.pixel_mean.numpy())
    np.testing.assert_array_equal(model.pixel_std, ref_model.pixel_std.numpy())
    assert model.pixel_mean.shape == tuple(ref_model.pixel_mean.shape)


def test_state_dict_loads_into_the_original(model, ref_model, ref_state_dict):
    ours = model.state_dict()
    ref = ref_model.state_dict()
    unused_head = [k for k in ref if k not in ours]
    assert all(k.startswith(("image_encoder.head", "image_encoder.norm_head")) for k in unused_head), unused_head
    assert list(ours) == [k for k in ref if k in ours]
    for k, v in ours.items():
        np.testing.assert_array_equal(v, ref_state_dict[k], err_msg=k)
    # the documented way back into the original: torch.from_numpy each, strict=False for the head
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = R.ref_sam_model_registry["vit_t"]()
    result = fresh.load_state_dict({k: torch.from_numpy(v) for k, v in ours.items()}, strict=False)
    assert sorted(result.missing_keys) == sorted(unused_head) and not result.unexpected_keys


def test_postprocess_and_preprocess_like_the_original(model, ref_model):
    rng = np.random.default_rng(3)
    low = rng.standard_normal((2, 3, 256, 256)).astype(np.float32)
    for input_size, original_size in (((683, 1024), (1200, 1800)), ((1024, 576), (1280, 720))):
        with torch.no_grad():
            want = ref_model.postprocess_masks(torch.from_numpy(low), input_size, original_size).numpy()
        got = model.postprocess_masks(low, input_size, original_size)
        assert type(got) is np.ndarray and got.shape == want.shape
        d = R.max_abs_diff(got, want)
        R.record("postprocess_masks", d, str(original_size))
        assert d <= 1e-4, d
        as_torch = model.postprocess_masks(torch.from_numpy(low), input_size, original_size)
        assert isinstance(as_torch, torch.Tensor) and np.array_equal(as_torch.numpy(), got)
    x = rng.uniform(0, 255, (1, 3, 683, 1024)).astype(np.float32)
    with torch.no_grad():
        want = ref_model.preprocess(torch.from_numpy(x)).numpy()
    assert R.max_abs_diff(model.preprocess(x), want) <= 1e-5


def test_transforms_torch_paths_like_the_original(msc):
    from mobile_sam.utils.transforms import ResizeLongestSide as Ref

    from mobile_sam_c.utils.transforms import ResizeLongestSide

    ours, ref = ResizeLongestSide(1024), Ref(1024)
    size = (1200, 1800)
    coords = torch.tensor([[[500.0, 375.0], [-5.0, 1199.0]]])
    boxes = torch.tensor([[75, 275, 1725, 850], [425, 600, 700, 875]])
    for name, args in (("apply_coords_torch", (coords, size)), ("apply_boxes_torch", (boxes, size))):
        got, want = getattr(ours, name)(*args), getattr(ref, name)(*args)
        assert isinstance(got, torch.Tensor) and got.dtype == want.dtype and got.shape == want.shape, name
        torch.testing.assert_close(got, want)
    image = torch.rand(1, 3, 120, 200)
    torch.testing.assert_close(ours.apply_image_torch(image), ref.apply_image_torch(image))
    with pytest.raises(msc.InputError, match="torch tensor"):
        ours.apply_image_torch(np.zeros((1, 3, 120, 200), np.float32))


def test_module_paths_people_import():
    for module, names in (("mobile_sam_c", ("sam_model_registry", "SamPredictor")),
                          ("mobile_sam_c.predictor", ("SamPredictor",)),
                          ("mobile_sam_c.build_sam", ("sam_model_registry", "build_sam_vit_t", "build_sam")),
                          ("mobile_sam_c.utils.transforms", ("ResizeLongestSide",))):
        mod = importlib.import_module(module)
        for name in names:
            assert hasattr(mod, name), f"{module}.{name}"
    # torch only when the caller passes torch: importing the drop-in modules does not import it
    code = ("import sys, mobile_sam_c, mobile_sam_c.predictor, mobile_sam_c.utils.transforms, mobile_sam_c.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
