"""One predictor's image state stays consistent under concurrency (the lock covers every read and
write of it), and the documented image limits are checked before anything is allocated."""
import threading
import time
import warnings

import numpy as np
import pytest

import mobile_sam_c
from mobile_sam_c import _C


@pytest.fixture(scope="module")
def sam():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mobile_sam_c.sam_model_registry["vit_t"]()


def test_set_image_racing_predict_gives_results_of_one_image(sam):
    rng = np.random.default_rng(11)
    images = [rng.integers(0, 256, (90, 140, 3), dtype=np.uint8), rng.integers(0, 256, (160, 70, 3), dtype=np.uint8)]
    prompt = dict(point_coords=np.array([[20.0, 30.0]], np.float32), point_labels=np.array([1], np.int32),
                  return_logits=True)
    expected = []
    solo = mobile_sam_c.SamPredictor(sam)
    for img in images:
        solo.set_image(img)
        expected.append(solo.predict(**prompt))

    shared = mobile_sam_c.SamPredictor(sam)
    shared.set_image(images[0])
    stop = threading.Event()
    errors = []

    def setter():
        i = 0
        while not stop.is_set():
            i ^= 1
            try:
                shared.set_image(images[i])
            except Exception as e:  # pragma: no cover - reported below
                errors.append(repr(e))

    t = threading.Thread(target=setter)
    t.start()
    matched = [0, 0]
    try:
        deadline = time.monotonic() + 60
        n = 0
        while n < 12 and time.monotonic() < deadline:
            masks, iou, low = shared.predict(**prompt)
            n += 1
            hits = [k for k, (m, s, l) in enumerate(expected)
                    if m.shape == masks.shape and np.array_equal(m, masks) and np.array_equal(s, iou)
                    and np.array_equal(l, low)]
            assert hits, "a predict matched neither image (torn state)"
            matched[hits[0]] += 1
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    assert sum(matched) >= 6


def test_reset_racing_predict_is_a_clean_error_or_a_whole_result(sam):
    img = np.random.default_rng(5).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    p = mobile_sam_c.SamPredictor(sam)
    p.set_image(img)
    want = p.predict(point_coords=np.array([[5.0, 5.0]], np.float32), point_labels=np.array([1], np.int32))
    stop = threading.Event()

    def toggler():
        while not stop.is_set():
            p.reset_image()
            p.set_image(img)

    t = threading.Thread(target=toggler)
    t.start()
    try:
        for _ in range(10):
            try:
                got = p.predict(point_coords=np.array([[5.0, 5.0]], np.float32), point_labels=np.array([1], np.int32))
            except RuntimeError as e:
                assert "An image must be set" in str(e)
                continue
            assert all(np.array_equal(a, b) for a, b in zip(got, want))
    finally:
        stop.set()
        t.join()


def test_image_limits_are_checked_before_anything_is_allocated(sam):
    p = mobile_sam_c.SamPredictor(sam)
    pixel = np.zeros((1, 1, 3), np.uint8)
    huge = np.lib.stride_tricks.as_strided(pixel, shape=(1 << 20, 1 << 20, 3), strides=(0, 0, 1))
    t0 = time.monotonic()
    with pytest.raises(mobile_sam_c.InputError, match="image must be at least 1x1, at most 65536 pixels a side"):
        p.set_image(huge)
    wide = np.lib.stride_tricks.as_strided(pixel, shape=(20000, 20000, 3), strides=(0, 0, 1))
    with pytest.raises(mobile_sam_c.InputError, match="268435456 pixels in all"):
        p.set_image(wide)
    assert time.monotonic() - t0 < 5.0  # refused up front, not after resampling (was minutes)
    assert _C.MAX_IMAGE_SIDE == 65536 and _C.MAX_IMAGE_PIXELS == 1 << 28
    thin = np.random.default_rng(0).integers(0, 256, (3, 3000, 3), dtype=np.uint8)
    p.set_image(thin)  # extreme aspect ratios are within the limits
    assert p.input_size == (1, 1024) and p.original_size == (3, 3000)


def test_set_image_embedding_checks_sizes_as_set_image_would(sam):
    p = mobile_sam_c.SamPredictor(sam)
    emb = np.zeros((1, 256, 64, 64), np.float32)
    with pytest.raises(mobile_sam_c.InputError, match="original_size"):
        p.set_image_embedding(emb, (100000, 1))
    with pytest.raises(mobile_sam_c.InputError, match="original_size"):
        p.set_image_embedding(emb, (30000, 30000))
    with pytest.raises(mobile_sam_c.InputError, match="input_size must have its long side equal to 1024"):
        p.set_image_embedding(emb, (100, 100), (500, 500))
    assert not p.is_image_set
    p.set_image_embedding(emb, (100, 200))
    assert p.input_size == (512, 1024)
    masks, _, _ = p.predict(point_coords=np.array([[1.0, 1.0]], np.float32), point_labels=np.array([1], np.int32))
    assert masks.shape == (3, 100, 200)
    # a rejected embedding leaves the image that was set
    with pytest.raises(mobile_sam_c.InputError):
        p.set_image_embedding(np.full((1, 256, 64, 64), np.nan, np.float32), (50, 50))
    assert p.is_image_set and p.original_size == (100, 200)


def test_a_conversion_hook_that_sets_an_image_is_used_whole(sam):
    """predict converts its prompts with the lock free, then scales them for the image set at that
    moment and sizes the outputs for it under the lock: a conversion hook that sets an image (even
    on every call) gets results for that image, never a mix and never a loop."""
    p = mobile_sam_c.SamPredictor(sam)
    emb = np.zeros((1, 256, 64, 64), np.float32)
    p.set_image_embedding(emb, (40, 50))

    class SetsAnImage:
        def __init__(self, size):
            self.size = size

        def __array__(self, dtype=None, copy=None):
            p.set_image_embedding(emb, self.size)
            return np.array([[1.0, 2.0]], np.float32)

    for size in [(80, 30), (40, 50), (100, 100)]:
        masks, _, _ = p.predict(point_coords=SetsAnImage(size), point_labels=np.array([1], np.int32))
        assert masks.shape == (3,) + size
        ref_masks, _, _ = p.predict(point_coords=np.array([[1.0, 2.0]], np.float32), point_labels=np.array([1], np.int32))
        np.testing.assert_array_equal(masks, ref_masks)
