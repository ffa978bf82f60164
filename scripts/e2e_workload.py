"""e2e_workload.py - an end-to-end run of every public path of mobile_sam_c with random weights
and no torch, for the sanitizer build (ASan+UBSan see each C path once) and as a smoke test.

Loads weights through every file format, encodes a photo (or a synthetic image), predicts with
points, boxes, masks and batches, moves embeddings between predictors, runs two predictors on
two threads at once and forks a child; exits non-zero if any result is malformed."""
from __future__ import annotations

import io
import multiprocessing
import os
import sys
import tempfile
import threading

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import mobile_sam_c  # noqa: E402
from mobile_sam_c import _C, checkpoint, random_weights  # noqa: E402


def image() -> np.ndarray:
    for folder in (os.path.join(ROOT, "..", "shared", "images"), "/work/shared/images"):
        path = os.path.join(folder, "dog.jpg")
        if os.path.exists(path):
            from PIL import Image
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB").resize((200, 134)))
    yy, xx = np.mgrid[0:134, 0:200]
    return np.stack([xx % 256, yy * 2 % 256, (xx + yy) % 256], -1).astype(np.uint8)


def check(masks, iou, low, c, hw) -> None:
    masks, iou = np.asarray(masks), np.asarray(iou)
    assert masks.shape[-3:] == (c, *hw), masks.shape
    assert iou.shape[-1] == c and np.isfinite(iou).all(), iou
    if low is not None:
        low = np.asarray(low)
        assert low.shape[-3:] == (c, 256, 256) and np.isfinite(low).all()


def main() -> int:
    quick = "--quick" in sys.argv  # one encoder pass only (sanitizer builds run at -O0)
    state = random_weights.random_state_dict(_C.weight_spec(), seed=21)
    with tempfile.TemporaryDirectory() as tmp:  # the loader's paths under the sanitizers too
        path = os.path.join(tmp, "w.npz")
        np.savez_compressed(path, **state)
        loaded = checkpoint.load_state_dict(path)
        assert all(np.array_equal(loaded[k], v) for k, v in state.items())
        sam = mobile_sam_c.sam_model_registry["vit_t"](checkpoint=path)
    p = mobile_sam_c.SamPredictor(sam)
    img = image()
    hw = img.shape[:2]
    p.set_image(img)
    pts, lab = np.array([[50.0, 40.0], [150.0, 90.0]]), np.array([1, 0])
    m, iou, low = p.predict(pts, lab, multimask_output=True, as_numpy=True)
    check(m, iou, low, 3, hw)
    best = low[int(np.argmax(iou))][None]
    m2, iou2, low2 = p.predict(pts, lab, box=np.array([10, 10, 180, 120]), mask_input=best,
                               multimask_output=False, return_logits=True)
    check(np.from_dlpack(m2), np.from_dlpack(iou2), np.from_dlpack(low2), 1, hw)
    m3, iou3, _ = p.predict(box=np.array([[0, 0, 199, 133]]), return_low_res=False, as_numpy=True)
    check(m3, iou3, None, 3, hw)
    coords = p.transform.apply_coords(np.tile(pts, (4, 1, 1)), hw)
    boxes = np.tile([[5.0, 5.0, 400.0, 300.0]], (4, 1))
    bm, biou, blow = p.predict_torch(coords, np.tile(lab, (4, 1)), boxes=boxes, as_numpy=True)
    check(bm, biou, blow, 3, hw)
    _, iou_only, _ = p.predict_torch(coords, np.tile(lab, (4, 1)), boxes=boxes, return_masks=False, as_numpy=True)
    assert np.allclose(np.asarray(iou_only), biou, atol=1e-5)
    emb = p.get_image_embedding()
    q = mobile_sam_c.SamPredictor(sam)
    q.set_image_embedding(emb, hw)
    mq, iouq, _ = q.predict(pts, lab, as_numpy=True)
    assert np.array_equal(mq, m) and np.allclose(iouq, iou, atol=1e-6)
    if not quick:
        p.set_image(img[:, :, ::-1].copy(), "BGR")
        mb, ioub, _ = p.predict(pts, lab, as_numpy=True)
        assert np.array_equal(mb, m)
    p.reset_image()
    assert not p.is_image_set

    # two predictors computing at once (the GIL is released in C)
    results = {}

    def work(name: str, pred: mobile_sam_c.SamPredictor) -> None:
        results[name] = pred.predict(pts, lab, as_numpy=True)

    p.set_image_embedding(emb, hw)
    threads = [threading.Thread(target=work, args=(n, x)) for n, x in (("p", p), ("q", q))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(results["p"][0], results["q"][0])

    # a child forked after all that
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(np.sum, (q.predict(pts, lab, as_numpy=True)[1],)).get(timeout=300)
    assert np.isclose(child, iou.sum(), atol=1e-5)

    for n in (1, 2):
        mobile_sam_c.set_num_threads(n)
        mn, ioun, _ = q.predict(pts, lab, as_numpy=True)
        assert np.allclose(ioun, iou, atol=1e-5)
    print(f"e2e workload OK: image {hw}, threads {_C.get_num_threads()}, isa {_C.cpu_isa()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
