"""SamAutomaticMaskGenerator against the original's (mobile_sam.SamAutomaticMaskGenerator) on the
same random weights: photos and settings (defaults; lowered thresholds so random weights give
dozens of masks; crop layers 1 and 2; small-region removal; each output mode). Same masks in the
same order, equal boxes / areas / scores to tolerance, segmentations equal except where the
reference logit is within MASK_BAND of the mask threshold. Needs the test extras
opencv-python-headless (the original's min_mask_region_area) and pycocotools (coco_rle)."""
import warnings

import numpy as np
import pytest
import torch

import reference as R

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from mobile_sam import SamAutomaticMaskGenerator as RefGenerator
    from mobile_sam.utils import amg as ref_amg

MASK_BAND = 1e-2    # as the other parity tests: pixels may disagree only where |ref logit - t| < this
SCORE_TOL = 1e-3    # predicted IoU (as end to end) and stability score

# Random weights give masks that cover the whole image, which NMS at 0.7 reduces to one and which
# every crop's edge filter drops: box_nms_thresh=1.0 keeps the dozens that pass the filters, and a
# mask threshold of 2.0 (Sam.mask_threshold, set on both models) gives masks that stay inside crops.
LOW = dict(pred_iou_thresh=0.001, stability_score_thresh=0.1, stability_score_offset=0.3, box_nms_thresh=1.0)
CASES = {
    "defaults": ("dog.jpg", {}, 0.0),
    "low-dog": ("dog.jpg", dict(points_per_side=6, **LOW), 0.0),
    "low-picture1": ("picture1.jpg", dict(points_per_side=6, points_per_batch=10, **LOW), 0.0),
    "nms-groceries": ("groceries.jpg", dict(points_per_side=5, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                            box_nms_thresh=0.7), 2.0),
    "crop1": ("picture1.jpg", dict(points_per_side=4, points_per_batch=7, pred_iou_thresh=0.0,
                                   stability_score_thresh=0.0, box_nms_thresh=0.9, crop_n_layers=1,
                                   crop_nms_thresh=0.9), 2.0),
    "crop2": ("picture1.jpg", dict(points_per_side=4, crop_n_layers=2, crop_n_points_downscale_factor=2,
                                   pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.9,
                                   crop_nms_thresh=0.8), 2.0),
    "small-regions": ("dog.jpg", dict(points_per_side=5, min_mask_region_area=300, **LOW), 0.0),
    "small-regions-crop1": ("picture1.jpg", dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                                 box_nms_thresh=0.9, crop_n_layers=1, crop_nms_thresh=0.9,
                                                 min_mask_region_area=2000), 2.0),
}


class _Threshold:
    """Sets mask_threshold on both models for a test and restores it."""

    def __init__(self, models, value):
        self.models, self.value = models, value

    def __enter__(self):
        self.saved = [m.__dict__.get("mask_threshold") for m in self.models]
        for m in self.models:
            m.mask_threshold = self.value

    def __exit__(self, *exc):
        for m, s in zip(self.models, self.saved):
            if s is None:
                del m.mask_threshold
            else:
                m.mask_threshold = s


class RefLogits:
    """The reference's full-size logits of a generated mask: its point on its crop, the output
    whose IoU prediction matches the record's (one set_image per crop, cached)."""

    def __init__(self, ref_model, image):
        self.pred = R.reference_predictor(ref_model)
        self.image, self.crop = image, None

    @torch.no_grad()
    def __call__(self, rec):
        x0, y0, w, h = rec["crop_box"]
        if self.crop != (x0, y0, w, h):
            self.pred.set_image(self.image[y0:y0 + h, x0:x0 + w])
            self.crop = (x0, y0, w, h)
        pt = np.array(rec["point_coords"], dtype=np.float64) - [x0, y0]
        coords = torch.as_tensor(self.pred.transform.apply_coords(pt, (h, w)))[None]
        logits, iou, _ = self.pred.predict_torch(coords, torch.ones(1, 1, dtype=torch.int), multimask_output=True,
                                                 return_logits=True)
        j = int(np.argmin(np.abs(iou[0].numpy() - rec["predicted_iou"])))
        full = np.full(self.image.shape[:2], -np.inf, dtype=np.float32)
        full[y0:y0 + h, x0:x0 + w] = logits[0, j].numpy()
        return full


def compare(ours, ref, ref_logits, threshold, where, small_regions=False):
    assert len(ours) == len(ref), f"{where}: {len(ours)} masks, the original {len(ref)}"
    worst_px = 0
    for i, (a, b) in enumerate(zip(ours, ref)):
        at = f"{where} mask {i}"
        assert list(a) == list(b), at  # the same keys in the same order
        assert a["crop_box"] == b["crop_box"] and a["point_coords"] == b["point_coords"], at
        assert all(isinstance(v, int) for v in a["bbox"] + a["crop_box"] + [a["area"]]), at
        d_iou, d_stab = abs(a["predicted_iou"] - b["predicted_iou"]), abs(a["stability_score"] - b["stability_score"])
        if np.isnan(a["stability_score"]) and np.isnan(b["stability_score"]):
            d_stab = 0.0  # no pixel above threshold - offset: 0 / 0 in both
        R.record("amg predicted_iou", d_iou, at)
        R.record("amg stability_score", d_stab, at)
        assert d_iou <= SCORE_TOL and d_stab <= SCORE_TOL, f"{at}: iou diff {d_iou}, stability diff {d_stab}"
        sa, sb = a["segmentation"], b["segmentation"]
        assert sa.dtype == np.bool_ and sa.shape == sb.shape, at
        dis = sa != sb
        n = int(dis.sum())
        if n:
            logits = ref_logits(b)
            worst = float(np.abs(logits[dis] - threshold).max())
            R.record("amg |ref logit - t| at mask disagreement", worst, at)
            if not small_regions:  # removal can move whole small regions after a band pixel flips
                assert worst < MASK_BAND, f"{at}: {n} pixels disagree, |ref logit - t| up to {worst}"
            assert n <= max(50, sa.size // 1000), f"{at}: {n} pixels disagree"
        worst_px = max(worst_px, n)
        assert abs(a["area"] - b["area"]) <= n, at
        assert a["area"] == int(sa.sum()), at
        if n == 0:
            assert a["bbox"] == b["bbox"], at
        else:
            assert max(abs(p - q) for p, q in zip(a["bbox"], b["bbox"])) <= 2, at
    R.record("amg disagreeing pixels per mask", worst_px, where)


@pytest.fixture(scope="module")
def images():
    return {}


def run_both(case, msc, model, ref_model, images, **extra):
    name, kw, threshold = CASES[case]
    image = images.setdefault(name, R.load_image(name))
    with _Threshold([model, ref_model], threshold):
        ours = msc.SamAutomaticMaskGenerator(model, **kw, **extra).generate(image)
        with torch.no_grad():
            ref = RefGenerator(ref_model, **kw, **extra).generate(image)
    return image, ours, ref, threshold


@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("small-regions")])
def test_generate_matches_original(case, msc, model, ref_model, images):
    image, ours, ref, threshold = run_both(case, msc, model, ref_model, images)
    compare(ours, ref, RefLogits(ref_model, image), threshold, case)
    if case != "defaults":
        assert len(ref) >= 10, f"{case}: the setting should give dozens of masks, got {len(ref)}"
    if case.startswith("crop"):
        assert len({tuple(r["crop_box"]) for r in ref}) > 1, f"{case}: no mask from a crop layer"


@pytest.mark.parametrize("case", ["small-regions", "small-regions-crop1"])
def test_small_region_removal_matches_original(case, msc, model, ref_model, images):
    image, ours, ref, threshold = run_both(case, msc, model, ref_model, images)
    compare(ours, ref, RefLogits(ref_model, image), threshold, case, small_regions=True)
    assert len(ref) >= 5


def test_output_modes(msc, model, ref_model, images):
    """uncompressed_rle / coco_rle give the original's encodings of the same masks."""
    name, kw, threshold = CASES["low-picture1"]
    image = images.setdefault(name, R.load_image(name))
    with _Threshold([model, ref_model], threshold):
        binary = msc.SamAutomaticMaskGenerator(model, **kw).generate(image)
        rle = msc.SamAutomaticMaskGenerator(model, **kw, output_mode="uncompressed_rle").generate(image)
        coco = msc.SamAutomaticMaskGenerator(model, **kw, output_mode="coco_rle").generate(image)  # pycocotools
        modes = [("uncompressed_rle", rle), ("coco_rle", coco)]
    assert len(binary) >= 10
    for mode, records in modes:
        assert len(records) == len(binary), mode
        for a, b in zip(records, binary):
            assert list(a) == list(b) and {k: a[k] for k in a if k != "segmentation"} == \
                {k: b[k] for k in b if k != "segmentation"}, mode
            expect = ref_amg.mask_to_rle_pytorch(torch.as_tensor(b["segmentation"])[None])[0]
            if mode == "coco_rle":
                expect = ref_amg.coco_encode_rle(expect)
            assert a["segmentation"] == expect, mode


def test_memory_bounded_batch_kernel_matches_postprocess(msc, model, images):
    """The C batch kernel's masks equal thresholding the predictor's own post-processed logits."""
    name = "groceries.jpg"
    image = images.setdefault(name, R.load_image(name))
    p = msc.SamPredictor(model)
    p.set_image(image)
    h, w = image.shape[:2]
    pts = np.array([[0.3 * w, 0.4 * h], [0.7 * w, 0.6 * h]], dtype=np.float32)
    coords = p.transform.apply_coords(pts, (h, w)).astype(np.float32)[:, None]
    logits, iou, low = p.predict_torch(coords, np.ones((2, 1), np.int32), return_logits=True, as_numpy=True)
    idx, stab, boxes, rles = msc._C.amg_process_masks(low.reshape(-1, 256, 256), (h, w), (0, 0, w, h),
                                                      p.input_size, 1.0, 0.0)
    flat = logits.reshape(-1, h, w)
    assert list(idx) == list(range(len(flat)))
    np.testing.assert_array_equal(stab, ref_amg.calculate_stability_score(torch.as_tensor(flat), 0.0, 1.0).numpy())
    masks = torch.as_tensor(flat > 0)
    np.testing.assert_array_equal(boxes, ref_amg.batched_mask_to_box(masks).numpy())
    assert [{"size": [h, w], "counts": c} for c in rles] == ref_amg.mask_to_rle_pytorch(masks)


@pytest.mark.parametrize("kwargs,match", [
    (dict(points_per_side=None), "points_per_side"),
    (dict(point_grids=[np.zeros((4, 2))]), "exactly one"),
    (dict(points_per_side=None, point_grids=[np.full((4, 2), 0.5)], crop_n_layers=1), "point_grids"),
    (dict(points_per_side=None, point_grids=[np.full((4, 3), 0.5)]), r"point_grids\[0\]"),
    (dict(points_per_side=None, point_grids=[np.full((4, 2), 1.5)]), r"point_grids\[0\]"),
    (dict(points_per_side=0), "points_per_side"),
    (dict(points_per_side=4, crop_n_layers=3, crop_n_points_downscale_factor=2), "points_per_side"),
    (dict(points_per_batch=0), "points_per_batch"),
    (dict(pred_iou_thresh=1.5), "pred_iou_thresh"),
    (dict(stability_score_thresh=-0.1), "stability_score_thresh"),
    (dict(stability_score_thresh=float("nan")), "stability_score_thresh"),
    (dict(stability_score_offset=-1.0), "stability_score_offset"),
    (dict(box_nms_thresh=2.0), "box_nms_thresh"),
    (dict(crop_nms_thresh=-0.5), "crop_nms_thresh"),
    (dict(crop_overlap_ratio=1.0), "crop_overlap_ratio"),
    (dict(crop_n_layers=-1), "crop_n_layers"),
    (dict(crop_n_points_downscale_factor=0), "crop_n_points_downscale_factor"),
    (dict(min_mask_region_area=-5), "min_mask_region_area"),
    (dict(output_mode="polygon"), "output_mode"),
])
def test_bad_arguments_name_the_argument(kwargs, match, msc, model):
    with pytest.raises(msc.InputError, match=match):
        msc.SamAutomaticMaskGenerator(model, **kwargs)


def test_bad_image_and_model(msc, model):
    gen = msc.SamAutomaticMaskGenerator(model, points_per_side=2)
    with pytest.raises(msc.InputError, match="image"):
        gen.generate(np.zeros((10, 10), np.uint8))
    with pytest.raises(msc.InputError, match="image"):
        gen.generate(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(msc.InputError, match="sam_model"):
        msc.SamAutomaticMaskGenerator(object())


def test_coco_rle_without_pycocotools_says_so(msc, model, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_pycocotools(name, *args, **kwargs):
        if name.startswith("pycocotools"):
            raise ImportError("No module named 'pycocotools'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pycocotools)
    with pytest.raises(ImportError, match="output_mode='coco_rle' needs pycocotools"):
        msc.SamAutomaticMaskGenerator(model, output_mode="coco_rle")


def test_importable_as_the_original_paths(msc):
    from mobile_sam_c.automatic_mask_generator import SamAutomaticMaskGenerator
    from mobile_sam_c.utils.amg import build_all_layer_point_grids, rle_to_mask  # noqa: F401

    assert msc.SamAutomaticMaskGenerator is SamAutomaticMaskGenerator


def test_masks_failing_the_iou_filter_are_never_upscaled(msc, model, images, monkeypatch):
    """Only masks with predicted IoU > pred_iou_thresh are made by the decoder (low-res logits) and
    reach the C kernel that upscales them; the ones it makes are bit for bit predict_torch's."""
    import mobile_sam_c.automatic_mask_generator as amg_module

    image = images.setdefault("dog.jpg", R.load_image("dog.jpg"))
    seen = []
    real_process = amg_module._C.amg_process_masks

    class Spy:
        def __getattr__(self, name):
            return getattr(msc._C, name)

        @staticmethod
        def amg_process_masks(low_res, *args, **kwargs):
            seen.append(("upscaled", len(low_res)))
            return real_process(low_res, *args, **kwargs)

    thresh = 0.001
    gen = msc.SamAutomaticMaskGenerator(model, points_per_side=4, pred_iou_thresh=thresh)
    real_filtered = gen.predictor._predict_filtered

    def filtered_spy(coords, labels, min_iou, *args, **kwargs):
        assert min_iou == thresh
        iou, low, flags = real_filtered(coords, labels, min_iou, *args, **kwargs)
        iou = np.asarray(iou)
        passing = iou > np.float32(thresh)
        assert np.array_equal(np.asarray(flags), passing)  # made exactly the passing masks
        assert len(low) == int(passing.sum())
        _, iou_all, low_all = gen.predictor.predict_torch(coords, labels, multimask_output=True, return_logits=True,
                                                          as_numpy=True, return_masks=False)
        assert np.array_equal(iou, iou_all)
        assert np.array_equal(np.asarray(low), np.asarray(low_all)[passing])
        seen.append(("passing", int(passing.sum()), int(iou.size)))
        return iou, low, flags

    monkeypatch.setattr(amg_module, "_C", Spy())
    gen.predictor._predict_filtered = filtered_spy
    gen.generate(image)
    passing = [s for s in seen if s[0] == "passing"]
    upscaled = [s[1] for s in seen if s[0] == "upscaled"]
    assert passing and 0 < sum(p[1] for p in passing) < sum(p[2] for p in passing)  # the filter drops some
    assert upscaled == [p[1] for p in passing if p[1] > 0]
