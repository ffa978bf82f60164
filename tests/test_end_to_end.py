"""End to end on real photos: set_image (resize, encoder) then predict with points, a box and both,
against MobileSAM's own predictor with the same randomised weights; plus repeatability and threads."""
import threading

import numpy as np
import pytest
import torch

import reference as R

# landscape, portrait, 16:9, and two whose long side is under 1024 (upscaled)
PHOTOS = ["truck.jpg", "bus.jpg", "zidane.jpg", "picture1.jpg", "groceries.jpg"]


def prompts_for(h, w):
    pts = np.array([[0.5 * w, 0.45 * h], [0.2 * w, 0.8 * h]])
    box = np.array([0.15 * w, 0.1 * h, 0.7 * w, 0.85 * h])
    return {
        "points": dict(point_coords=pts, point_labels=np.array([1, 0])),
        "box": dict(box=box),
        "both": dict(point_coords=pts[:1], point_labels=np.array([1]), box=box),
    }


@pytest.fixture(scope="module", params=PHOTOS)
def photo_pair(request, ref_model, model, msc):
    image = R.load_image(request.param)
    ref = R.reference_predictor(ref_model)
    with torch.no_grad():
        ref.set_image(image)
    ours = msc.SamPredictor(model)
    ours.set_image(image)
    return request.param, image, ref, ours


def test_set_image_end_to_end(photo_pair):
    name, image, ref, ours = photo_pair
    h, w = image.shape[:2]
    assert ours.original_size == tuple(ref.original_size) and ours.input_size == tuple(ref.input_size)
    emb = R.max_abs_diff(ours.get_image_embedding(), ref.features)
    R.record("end-to-end embedding", emb, name)
    assert emb <= 1e-3
    for kind, kw in prompts_for(h, w).items():
        for multimask in (True, False):
            with torch.no_grad():
                r_logits, r_iou, r_low = ref.predict(multimask_output=multimask, return_logits=True, **kw)
            masks, iou, low = ours.predict(multimask_output=multimask, **kw)
            d_iou, d_low = R.max_abs_diff(iou, r_iou), R.max_abs_diff(low, r_low)
            n, worst = R.mask_disagreement(masks, r_logits)
            where = f"{name} {kind} multimask={multimask}"
            R.record("end-to-end IoU", d_iou, where)
            R.record("end-to-end low-res logits", d_low, where)
            R.record("end-to-end |ref logit| at mask disagreement", worst, where)
            assert masks.dtype == np.bool_ and masks.shape == r_logits.shape
            assert d_iou <= 1e-3 and d_low <= 1e-3, where
            assert worst < 1e-2, f"{where}: {n} pixels disagree, |ref logit| up to {worst}"


def test_bgr_input_matches_rgb(model, msc):
    image = R.load_image("zidane.jpg")
    a, b = msc.SamPredictor(model), msc.SamPredictor(model)
    a.set_image(image)
    b.set_image(np.ascontiguousarray(image[..., ::-1]), image_format="BGR")
    np.testing.assert_array_equal(a.get_image_embedding(), b.get_image_embedding())


def test_repeated_calls_are_identical(model, msc):
    image = R.load_image("groceries.jpg")
    p = msc.SamPredictor(model)
    kw = prompts_for(*image.shape[:2])["both"]
    p.set_image(image)
    first = (p.get_image_embedding().copy(),) + tuple(p.predict(**kw))
    p.predict(**prompts_for(*image.shape[:2])["points"])  # something else in between
    p.set_image(image)
    second = (p.get_image_embedding().copy(),) + tuple(p.predict(**kw))
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)


def test_two_predictors_in_two_threads(model, msc):
    images = [R.load_image("bus.jpg"), R.load_image("zidane.jpg")]

    def run(image):
        p = msc.SamPredictor(model)
        p.set_image(image)
        return (p.get_image_embedding().copy(),) + tuple(p.predict(**prompts_for(*image.shape[:2])["both"]))

    alone = [run(im) for im in images]
    together = [None, None]
    errors = []

    def worker(i):
        try:
            together[i] = run(images[i])
        except BaseException as e:  # reported below; a thread must not die silently
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for a, b in zip(alone, together):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
