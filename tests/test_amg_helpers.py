"""mobile_sam_c.utils.amg and the generator's C kernels (RLE, boxes, stability, NMS, small-region
removal) against the original's helpers (mobile_sam.utils.amg, torchvision, OpenCV) on random inputs.
Needs the test extras opencv-python-headless (the original's remove_small_regions) and pycocotools."""
import warnings

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms, nms

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from mobile_sam.utils import amg as ref_amg

from mobile_sam_c import InputError, _C
from mobile_sam_c.utils import amg

SEEDS = range(12)


def random_masks(rng, n, h, w):
    """Masks from thresholded smooth noise (blobs, holes, islands) or plain noise."""
    if rng.random() < 0.3:
        return rng.random((n, h, w)) < rng.random()
    coarse = rng.normal(size=(n, max(h // 6, 1) + 1, max(w // 6, 1) + 1))
    fine = coarse.repeat(6, axis=1).repeat(6, axis=2)[:, :h, :w] + 0.6 * rng.normal(size=(n, h, w))
    return fine > rng.normal(0.3, 0.5)


@pytest.mark.parametrize("n_per_side,n_layers,scale", [(32, 0, 1), (16, 2, 2), (7, 2, 2), (5, 1, 3)])
def test_point_grids_equal_original(n_per_side, n_layers, scale):
    ours = amg.build_all_layer_point_grids(n_per_side, n_layers, scale)
    ref = ref_amg.build_all_layer_point_grids(n_per_side, n_layers, scale)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size", [(534, 800), (1200, 1800), (770, 769), (3000, 4000), (17, 1000)])
@pytest.mark.parametrize("n_layers,overlap", [(0, 512 / 1500), (1, 512 / 1500), (3, 0.25), (2, 0.0)])
def test_crop_boxes_equal_original(size, n_layers, overlap):
    assert amg.generate_crop_boxes(size, n_layers, overlap) == ref_amg.generate_crop_boxes(size, n_layers, overlap)


@pytest.mark.parametrize("seed", SEEDS)
def test_rle_round_trip_equals_original(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 70, 2))
    masks = random_masks(rng, 4, h, w)
    masks[0] = True if seed % 2 else False  # a full and an empty mask
    ours = amg.mask_to_rle(masks)
    ref = ref_amg.mask_to_rle_pytorch(torch.as_tensor(masks))
    assert ours == ref
    assert amg.mask_to_rle_pytorch(torch.as_tensor(masks)) == ref  # torch input too
    for rle, m in zip(ref, masks):
        back = amg.rle_to_mask(rle)
        assert back.dtype == np.bool_ and back.shape == (h, w)
        np.testing.assert_array_equal(back, ref_amg.rle_to_mask(rle))
        np.testing.assert_array_equal(back, m)
        assert amg.area_from_rle(rle) == ref_amg.area_from_rle(rle) == int(m.sum())


@pytest.mark.parametrize("seed", SEEDS)
def test_boxes_equal_original(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 60, 2))
    masks = random_masks(rng, 6, h, w)
    masks[1] = False
    masks[2] = False
    masks[2, rng.integers(h), rng.integers(w)] = True  # a single pixel
    ref = ref_amg.batched_mask_to_box(torch.as_tensor(masks))
    ours = amg.batched_mask_to_box(masks)
    np.testing.assert_array_equal(ours, ref.numpy())
    # C1 x C2 x H x W and a single H x W, torch in -> torch out
    t = torch.as_tensor(masks.reshape(2, 3, h, w))
    got = amg.batched_mask_to_box(t)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
    assert torch.equal(got, ref_amg.batched_mask_to_box(t))
    assert torch.equal(amg.batched_mask_to_box(t[0, 0]), ref_amg.batched_mask_to_box(t[0, 0]))
    empty = torch.zeros(0, h, w, dtype=torch.bool)
    assert amg.batched_mask_to_box(empty).shape == ref_amg.batched_mask_to_box(empty).shape == (0, 4)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("offset", [1.0, 0.3, 0.0])
def test_stability_score_equals_original(seed, offset):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 80, 2))
    logits = (rng.normal(size=(2, 3, h, w)) * rng.uniform(0.5, 4)).astype(np.float32)
    logits[0, 0] = -5.0  # nothing above either limit: 0 / 0
    logits[0, 1, 0, 0] = 1.0  # exactly on a limit
    ref = ref_amg.calculate_stability_score(torch.as_tensor(logits), 0.0, offset).numpy()
    ours = amg.calculate_stability_score(logits, 0.0, offset)
    assert ours.dtype == np.float32 and ours.shape == (2, 3)
    np.testing.assert_array_equal(ours, ref)  # bit-exact, NaN where the original has NaN


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", ["holes", "islands"])
def test_remove_small_regions_equals_opencv_original(seed, mode):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(2, 90, 2))
    mask = random_masks(rng, 1, h, w)[0]
    for area in (1, 3, 10, 40, 200, h * w + 1):
        ours, changed = amg.remove_small_regions(mask, area, mode)
        ref, ref_changed = ref_amg.remove_small_regions(mask, area, mode)
        assert changed == ref_changed, (area, mode)
        assert ours.dtype == np.bool_
        np.testing.assert_array_equal(ours, ref, err_msg=f"area={area} mode={mode}")


def test_remove_small_islands_keeps_first_largest_on_ties():
    mask = np.zeros((9, 12), dtype=bool)
    mask[1:3, 8:10] = True   # 4 px, first in raster order
    mask[5:7, 1:3] = True    # 4 px
    mask[7, 10] = True       # 1 px
    ours, changed = amg.remove_small_regions(mask, 5, "islands")
    ref, ref_changed = ref_amg.remove_small_regions(mask, 5, "islands")
    assert changed and ref_changed
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("thresh", [0.7, 0.5, 0.0, 1.0])
def test_nms_equals_torchvision(seed, thresh):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    xy = rng.integers(0, 200, size=(n, 2))
    wh = rng.integers(0, 120, size=(n, 2))  # zero-size boxes included
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.integers(0, 8, size=n).astype(np.float32) / 8  # many ties
    if seed % 2:
        scores = rng.random(n).astype(np.float32)
    tb, ts = torch.as_tensor(boxes), torch.as_tensor(scores)
    ours = _C.amg_nms(boxes, scores, thresh)
    np.testing.assert_array_equal(ours, nms(tb, ts, thresh).numpy())
    # the generator's call: batched_nms with one category (<= 1000 boxes: the same order)
    np.testing.assert_array_equal(ours, batched_nms(tb, ts, torch.zeros(n), thresh).numpy())


def test_crop_edge_and_uncrop_helpers_equal_original():
    rng = np.random.default_rng(3)
    boxes = rng.integers(0, 300, size=(50, 4))
    crop, orig = [100, 40, 400, 300], [0, 0, 400, 500]
    tb = torch.as_tensor(boxes)
    np.testing.assert_array_equal(amg.is_box_near_crop_edge(boxes, crop, orig),
                                  ref_amg.is_box_near_crop_edge(tb, crop, orig).numpy())
    assert torch.equal(amg.uncrop_boxes_xyxy(tb, crop), ref_amg.uncrop_boxes_xyxy(tb, crop))
    pts = torch.as_tensor(rng.random((7, 2)) * 100)
    assert torch.equal(amg.uncrop_points(pts, crop), ref_amg.uncrop_points(pts, crop))
    assert torch.equal(amg.box_xyxy_to_xywh(tb[0]), ref_amg.box_xyxy_to_xywh(tb[0]))
    assert [list(b) for b in amg.batch_iterator(3, list(range(8)))] == \
        [list(b) for b in ref_amg.batch_iterator(3, list(range(8)))]


def test_coco_encode_rle_equals_original():
    rng = np.random.default_rng(5)
    for rle in ref_amg.mask_to_rle_pytorch(torch.as_tensor(random_masks(rng, 3, 41, 57))):
        assert amg.coco_encode_rle(rle) == ref_amg.coco_encode_rle(rle)


def test_bad_helper_input_names_the_argument():
    with pytest.raises(InputError, match="mode"):
        amg.remove_small_regions(np.zeros((4, 4), bool), 3, "blobs")
    with pytest.raises(InputError, match="mask"):
        amg.remove_small_regions(np.zeros(4, bool), 3, "holes")
    with pytest.raises(InputError, match="sum to"):
        amg.rle_to_mask({"size": [3, 4], "counts": [5, 2]})
    with pytest.raises(InputError, match="counts"):
        amg.rle_to_mask({"size": [3, 4], "counts": [5, -2, 9]})
    with pytest.raises(InputError, match="compressed"):
        amg.rle_to_mask({"size": [3, 4], "counts": "abc"})
    with pytest.raises(InputError, match="masks"):
        amg.batched_mask_to_box(np.zeros(5, bool))
    with pytest.raises(InputError, match="boxes"):
        _C.amg_nms(np.zeros((3, 3), np.float32), np.zeros(3, np.float32), 0.5)
    with pytest.raises(InputError, match="low_res"):
        _C.amg_process_masks(np.zeros((2, 64, 64), np.float32), (10, 10), (0, 0, 10, 10), (10, 10), 1.0, 0.9)
    with pytest.raises(InputError, match="crop_box"):
        _C.amg_process_masks(np.zeros((1, 256, 256), np.float32), (10, 10), (0, 0, 11, 10), (10, 10), 1.0, 0.9)
