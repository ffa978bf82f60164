"""The two resamplers against their references: resize_rgb8 must be bit-identical to Pillow's
BILINEAR resize (what MobileSAM's ResizeLongestSide does through torchvision), _resize_bilinear_f32
must match torch's bilinear interpolate (align_corners=False) used on the masks, and
_resize_bilinear_mask must equal its result > 0 exactly."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import reference as R
from mobile_sam_c import _C


def photos():
    paths = R.photo_paths()
    assert paths, f"no photos in {[str(d) for d in R.DATA_DIRS]}"
    return paths


def load(path):
    return np.array(Image.open(path).convert("RGB"))


def pillow(img, nh, nw):
    return np.array(Image.fromarray(np.ascontiguousarray(img)).resize((nw, nh), Image.BILINEAR))


def target_size(h, w, long_side=1024):
    s = long_side / max(h, w)
    return int(h * s + 0.5), int(w * s + 0.5)


def assert_same(got, want, what):
    assert got.dtype == np.uint8 and got.shape == want.shape, (what, got.shape, want.shape)
    if not np.array_equal(got, want):
        diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
        pytest.fail(f"{what}: {np.count_nonzero(diff)} values differ from Pillow, max by {diff.max()}")


@pytest.fixture
def threads():
    """Set the core's thread count for one test; back to the default afterwards."""
    yield _C.set_num_threads
    _C.set_num_threads(0)


# ---- uint8, Pillow-exact -------------------------------------------------------------------


@pytest.mark.parametrize("path", photos(), ids=lambda p: p.name)
def test_photos_bit_exact(path):
    img = load(path)
    h, w = img.shape[:2]
    sizes = [target_size(h, w), target_size(h, w, 333), (h // 3, w // 2), (h, 1000), (1001, w),
             (h + 29, w * 5 // 4), (1, 1), (7, 1023)]
    for nh, nw in sizes:
        assert_same(_C.resize_rgb8(img, nh, nw), pillow(img, nh, nw), f"{path.name} -> {nh}x{nw}")


@pytest.mark.parametrize("path", photos(), ids=lambda p: p.name)
def test_thread_count_does_not_change_result(path, threads):
    img = load(path)
    nh, nw = target_size(*img.shape[:2])
    want = pillow(img, nh, nw)
    for n in (1, 2, 3):
        threads(n)
        assert_same(_C.resize_rgb8(img, nh, nw), want, f"{n} threads")
        assert_same(_C.resize_rgb8(img[::-1], 300, 200), pillow(img[::-1], 300, 200), f"{n} threads")


def test_bgr_equals_rgb_of_flipped():
    img = load(photos()[0])
    bgr = np.ascontiguousarray(img[..., ::-1])
    for nh, nw in [target_size(*img.shape[:2]), (100, 333), img.shape[:2]]:
        want = pillow(img, nh, nw)
        assert_same(_C.resize_rgb8(bgr, nh, nw, bgr=True), want, f"bgr {nh}x{nw}")
        assert_same(_C.resize_rgb8(bgr[..., ::-1], nh, nw), want, f"flipped view {nh}x{nw}")
        assert_same(_C.resize_rgb8(bgr, nh, nw, True), want, "bgr positional")


def test_non_contiguous_inputs():
    rng = np.random.default_rng(11)
    base = load(photos()[-1])
    rgba = np.concatenate([base, rng.integers(0, 256, base.shape[:2] + (1,), dtype=np.uint8)], axis=2)
    views = {
        "slice": base[13:-7:2, 5::3],
        "negative strides": base[::-1, ::-1],
        "negative rows only": base[::-2],
        "pixel stride 4": rgba[:, :, :3],
        "channel stride != 1 (fortran)": np.asfortranarray(base),
        "channel stride != 1 (transposed CHW)": np.ascontiguousarray(base.transpose(2, 0, 1)).transpose(1, 2, 0),
        "reversed channels": base[:, :, ::-1],
    }
    for name, v in views.items():
        assert not v.flags.c_contiguous, name
        before = v.copy()
        for nh, nw in [target_size(*v.shape[:2]), (v.shape[0] // 2 + 1, v.shape[1] + 5)]:
            assert_same(_C.resize_rgb8(v, nh, nw), pillow(v, nh, nw), f"{name} -> {nh}x{nw}")
        assert np.array_equal(v, before), f"{name}: input was modified"
        bgr = _C.resize_rgb8(v[:, :, ::-1], 64, 96, bgr=True)
        assert_same(bgr, pillow(v, 64, 96), f"{name} bgr reversed view")


def test_array_likes_and_result_is_fresh():
    pil = Image.open(photos()[0]).convert("RGB")
    out = _C.resize_rgb8(pil, 77, 99)  # anything numpy converts (here __array_interface__)
    assert isinstance(out, np.ndarray) and out.flags.c_contiguous and out.flags.owndata
    assert_same(out, np.array(pil.resize((99, 77), Image.BILINEAR)), "PIL image input")
    img = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    same = _C.resize_rgb8(img, 5, 4)
    assert_same(same, img, "same size is a copy")
    assert not np.shares_memory(same, img)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (3, 2), (2, 3), (2, 2), (5, 9)])
def test_upscale_tiny(shape):
    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    nh, nw = target_size(*shape)
    assert_same(_C.resize_rgb8(img, nh, nw), pillow(img, nh, nw), f"{shape} -> {nh}x{nw}")


def test_all_small_sizes():
    """Every size 1..6 to every size 1..12: edges, one-pixel axes and both pass orders."""
    rng = np.random.default_rng(5)
    for h in range(1, 7):
        for w in range(1, 7):
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            for nh in range(1, 13):
                for nw in range(1, 13):
                    assert_same(_C.resize_rgb8(img, nh, nw), pillow(img, nh, nw), f"{h}x{w} -> {nh}x{nw}")


def test_pass_order_boundary():
    """Pillow 13 resizes vertically first when the height shrinks by more than twice the width;
    the two orders round differently, so sizes on both sides of that line must match."""
    rng = np.random.default_rng(9)
    img = rng.integers(0, 256, (61, 40, 3), dtype=np.uint8)
    for nw in (30, 31, 29, 40 - 1, 41, 80):
        for nh in range(10, 61, 3):
            assert_same(_C.resize_rgb8(img, nh, nw), pillow(img, nh, nw), f"61x40 -> {nh}x{nw}")


def test_random_sizes():
    """Seeded random images from 1x1 to 3000x4000 to targets of every kind."""
    rng = np.random.default_rng(20240607)
    cases = [((3000, 4000), target_size(3000, 4000)), ((4000, 3000), target_size(4000, 3000)),
             ((3000, 4000), (1, 1)), ((2999, 1), (1024, 1)), ((1, 3999), (3, 1024))]
    for i in range(22):
        h = int(np.exp(rng.uniform(0, np.log(3000))))
        w = int(np.exp(rng.uniform(0, np.log(4000))))
        if i % 2:
            h, w = w, h
        kind = i % 3
        if kind == 0:
            nh, nw = (max(1, v) for v in target_size(h, w))
        elif kind == 1:
            nh, nw = int(rng.integers(1, 1400)), int(rng.integers(1, 1400))
        else:
            nh, nw = max(1, int(h * rng.uniform(0.05, 3.0))), max(1, int(w * rng.uniform(0.05, 3.0)))
        cases.append(((h, w), (nh, nw)))
    for (h, w), (nh, nw) in cases:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        assert_same(_C.resize_rgb8(img, nh, nw), pillow(img, nh, nw), f"{h}x{w} -> {nh}x{nw}")


def test_resize_longest_side_matches_mobile_sam():
    from mobile_sam.utils.transforms import ResizeLongestSide as Reference

    from mobile_sam_c import ResizeLongestSide

    ours, ref = ResizeLongestSide(1024), Reference(1024)
    rng = np.random.default_rng(3)
    images = [load(p) for p in photos()]
    images += [rng.integers(0, 256, s + (3,), dtype=np.uint8) for s in [(1, 1), (3, 2), (500, 37), (1500, 1100)]]
    for img in images:
        want = ref.apply_image(img)
        got = ours.apply_image(img)
        assert_same(got, want, f"ResizeLongestSide {img.shape}")


# ---- float32, torch bilinear --------------------------------------------------------------


def torch_bilinear(x, size):
    t = torch.from_numpy(np.ascontiguousarray(x))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def fma_build_of_torch():
    """torch's CPU kernels fuse multiply-adds in its AVX2 / AVX-512 builds; our kernel reproduces
    that, so on those builds its generic path (C == 1, output H + W > 128) matches bit for bit."""
    try:
        return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    except Exception:
        return False


FLOAT_CASES = [
    ((256, 256), (1024, 1024), None),
    ((256, 256), (1000, 700), None),
    ((256, 256), (1024, 1024), (684, 1024)),
    ((256, 256), (1024, 1024), (1024, 768)),
    ((683, 1024), (1800, 1200), None),
    ((768, 1024), (534, 800), None),
    ((1024, 683), (4000, 3000), None),
    ((300, 200), (300, 700), None),
    ((50, 60), (50, 60), None),
    ((7, 3), (5, 11), None),
    ((1, 1), (4, 4), None),
    ((1, 5), (3, 9), None),
    ((97, 1), (300, 2), None),
]


@pytest.mark.parametrize("src,size,crop", FLOAT_CASES, ids=str)
def test_bilinear_f32_matches_torch(src, size, crop):
    rng = np.random.default_rng(src[0] * 7 + size[1])
    x = rng.uniform(-20, 20, src).astype(np.float32)
    want = torch_bilinear(x, size)
    if crop is None:
        got = _C._resize_bilinear_f32(x, *size)
    else:
        got = _C._resize_bilinear_f32(x, *size, *crop)
        want = want[: crop[0], : crop[1]]
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5
    if fma_build_of_torch() and size[0] + size[1] > 128:
        assert np.array_equal(got, want), f"{np.count_nonzero(got != want)} values differ"


def test_bilinear_f32_sam_postprocess_chain():
    """256 -> 1024, crop to the resized input, -> original size; the crop is a strided view."""
    rng = np.random.default_rng(4)
    low = rng.uniform(-20, 20, (256, 256)).astype(np.float32)
    for orig in [(1800, 1200), (534, 800), (1080, 810)]:
        inp = target_size(*orig)
        full = torch_bilinear(low, (1024, 1024))
        want = torch_bilinear(full[: inp[0], : inp[1]], orig)
        up = _C._resize_bilinear_f32(low, 1024, 1024, *inp)
        assert np.array_equal(up, full[: inp[0], : inp[1]]) or np.abs(up - full[: inp[0], : inp[1]]).max() <= 1e-5
        got = _C._resize_bilinear_f32(full[: inp[0], : inp[1]], *orig)
        assert np.abs(got - want).max() <= 1e-5
        chained = _C._resize_bilinear_f32(up, *orig)
        assert np.abs(chained - want).max() <= 1e-5


def test_bilinear_f32_strided_and_threads(threads):
    rng = np.random.default_rng(8)
    x = rng.uniform(-20, 20, (300, 400)).astype(np.float32)
    views = [x[::-1], x[10:250, 3:333], x[::2, ::3], np.asfortranarray(x)]
    for v in views:
        want = torch_bilinear(v, (517, 611))
        results = []
        for n in (1, 2, 5):
            threads(n)
            results.append(_C._resize_bilinear_f32(v, 517, 611))
            assert np.abs(results[-1] - want).max() <= 1e-5
        assert all(np.array_equal(r, results[0]) for r in results)


# ---- uint8 masks, the fused resize + threshold ----------------------------------------------


def crossing_plane(rng, shape):
    """Logit-like values with many sign changes, runs of exact zeros (so the interpolated value
    is exactly 0.0 in places, which must give False) and both signed zeros."""
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    x[rng.random(shape) < 0.2] = 0.0
    x[rng.random(shape) < 0.05] = -0.0
    x[rng.random(shape) < 0.05] = np.float32(1e-42)  # subnormals: products round to 0 or not
    h, w = shape
    if h > 2 and w > 2:
        x[h // 3: 2 * h // 3, w // 4: w // 2] = 0.0
    return x


def assert_mask_matches(x, dh, dw, crop=None):
    args = (x, dh, dw) + (tuple(crop) if crop else ())
    want = _C._resize_bilinear_f32(*args) > 0
    got = _C._resize_bilinear_mask(*args)
    assert got.dtype == np.bool_ and got.shape == want.shape, (got.dtype, got.shape, want.shape)
    if not np.array_equal(got, want):
        pytest.fail(f"{x.shape} -> {dh}x{dw} crop {crop}: {np.count_nonzero(got != want)} pixels differ")


MASK_SIZES = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100, 256, 257, 683]


def test_bilinear_mask_equals_thresholded_f32_all_sizes():
    """Up- and downscales, 1xN and Nx1, sizes around the 8 / 16 / 32-wide vector steps."""
    rng = np.random.default_rng(31)
    for sh in MASK_SIZES[::2]:
        for sw in MASK_SIZES:
            x = crossing_plane(rng, (sh, sw))
            for dh, dw in [(1, 1), (1, 37), (37, 1), (sh, sw), (2 * sh + 1, 3 * sw), (max(1, sh // 3), max(1, sw // 5)),
                           (int(rng.integers(1, 700)), int(rng.integers(1, 1100)))]:
                assert_mask_matches(x, dh, dw)


@pytest.mark.parametrize("src,size,crop", FLOAT_CASES + [((256, 256), (1024, 1024), (683, 1024)),
                                                         ((256, 256), (1024, 1024), (1, 1)),
                                                         ((256, 256), (1024, 1024), (1024, 5)),
                                                         ((1000, 3), (7, 1000), (7, 999))], ids=str)
def test_bilinear_mask_cases(src, size, crop):
    rng = np.random.default_rng(src[1] * 13 + size[0])
    assert_mask_matches(crossing_plane(rng, src), *size, crop)


def test_bilinear_mask_strided_and_threads(threads):
    rng = np.random.default_rng(12)
    x = crossing_plane(rng, (300, 400))
    views = [x[::-1], x[10:250, 3:333], x[::2, ::3], np.asfortranarray(x), x[:, -9:], x[:1]]
    for v in views:
        want = _C._resize_bilinear_f32(v, 517, 611) > 0
        for n in (1, 2, 3):
            threads(n)
            got = _C._resize_bilinear_mask(v, 517, 611)
            assert np.array_equal(got, want), f"{v.shape} with {n} threads"


def test_bilinear_mask_sam_postprocess_chain(threads):
    """The predict chain: 256 -> 1024 cropped to the resized input, then -> original size."""
    rng = np.random.default_rng(6)
    low = crossing_plane(rng, (256, 256)) * 20
    for orig in [(1200, 1800), (1800, 1200), (534, 800), (1080, 810), (1, 1), (3, 2000)]:
        inp = tuple(max(1, v) for v in target_size(*orig))
        up = _C._resize_bilinear_f32(low, 1024, 1024, *inp)
        want = _C._resize_bilinear_f32(up, *orig) > 0
        for n in (1, 2):
            threads(n)
            assert np.array_equal(_C._resize_bilinear_mask(up, *orig), want), f"{orig}, {n} threads"


def test_predict_masks_are_thresholded_logits():
    """predict's masks (the fused kernel) are exactly its logits (the float kernel) > 0."""
    import warnings

    import mobile_sam_c as msc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = msc.SamPredictor(msc.sam_model_registry["vit_t"](checkpoint=None))
    rng = np.random.default_rng(2)
    for shape in [(333, 517), (1200, 1800)]:
        pred.set_image(rng.integers(0, 256, shape + (3,), dtype=np.uint8))
        pt, lb = np.array([[shape[1] // 2, shape[0] // 3]]), np.array([1])
        masks, _, _ = pred.predict(pt, lb, multimask_output=True)
        logits, _, _ = pred.predict(pt, lb, multimask_output=True, return_logits=True)
        assert masks.dtype == np.bool_ and masks.shape == logits.shape == (3,) + shape
        assert np.array_equal(masks, np.asarray(logits) > 0)


# ---- bad arguments -------------------------------------------------------------------------


def test_resize_rgb8_bad_arguments():
    img = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(_C.InputError, match=r"image must be an HxWx3 uint8 array, got shape \(4, 5\) dtype float32"):
        _C.resize_rgb8(np.zeros((4, 5), np.float32), 2, 2)
    bad_images = [np.zeros((4, 5, 3), np.float32), np.zeros((4, 5, 4), np.uint8), np.zeros((4, 5), np.uint8),
                  np.zeros((0, 5, 3), np.uint8), np.zeros((4, 0, 3), np.uint8), np.zeros((2, 4, 5, 3), np.uint8),
                  np.zeros((4, 5, 3), np.int16), "not an image", None, [[1, 2], [3]]]
    for bad in bad_images:
        with pytest.raises(_C.InputError, match="image must be"):
            _C.resize_rgb8(bad, 2, 2)
    for nh, nw, name in [(0, 2, "new_h"), (2, 0, "new_w"), (-3, 2, "new_h"), (2, 1 << 30, "new_w")]:
        with pytest.raises(_C.InputError, match=name):
            _C.resize_rgb8(img, nh, nw)
    with pytest.raises(TypeError):
        _C.resize_rgb8(img, 2.5, 2)
    with pytest.raises(TypeError):
        _C.resize_rgb8(img, 2)
    assert issubclass(_C.InputError, ValueError)


def test_resize_bilinear_f32_bad_arguments():
    x = np.zeros((8, 8), np.float32)
    for bad in [np.zeros((8, 8), np.float64), np.zeros((2, 8, 8), np.float32), np.zeros((0, 8), np.float32), "x"]:
        with pytest.raises(_C.InputError, match="plane must be a 2-D float32 array"):
            _C._resize_bilinear_f32(bad, 4, 4)
    for args, name in [((0, 4), "dh"), ((4, -1), "dw"), ((4, 4, 5), "crop_h"), ((4, 4, 4, 0), "crop_w"),
                       ((4, 4, 0, 4), "crop_h")]:
        with pytest.raises(_C.InputError, match=name):
            _C._resize_bilinear_f32(x, *args)


def test_resize_bilinear_mask_bad_arguments():
    x = np.zeros((8, 8), np.float32)
    for bad in [np.zeros((8, 8), np.float64), np.zeros((2, 8, 8), np.float32), np.zeros((0, 8), np.float32), "x"]:
        with pytest.raises(_C.InputError, match="plane must be a 2-D float32 array"):
            _C._resize_bilinear_mask(bad, 4, 4)
    for args, name in [((0, 4), "dh"), ((4, -1), "dw"), ((4, 4, 5), "crop_h"), ((4, 4, 4, 0), "crop_w")]:
        with pytest.raises(_C.InputError, match=name):
            _C._resize_bilinear_mask(x, *args)
