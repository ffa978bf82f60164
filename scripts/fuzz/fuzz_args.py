"""fuzz_args.py - a random fuzzer of the Predictor's arguments (run it through supervise.py):
prompts, images, embeddings and sizes of every dtype, shape, layout (strided, zero-stride,
non-native) and wrapper (lists, __array__ hooks that raise or reset the predictor, junk DLPack).

Each call must return outputs of the documented shapes or raise InputError / TypeError, the
"image must be set" RuntimeError, or the hook's own exception; anything else is a finding, a
signal is a crash (supervise.py keeps the pickled arguments), a MemoryError under the cap an OOM."""
from __future__ import annotations

import argparse
import os
import pickle
import random
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, ROOT]

import supervise  # noqa: E402
import mobile_sam_c  # noqa: E402
from mobile_sam_c import _C, random_weights  # noqa: E402

# Known defect outside this harness's owner's files (csrc/python/predictor.c parse_size reads a
# list's items while user __index__ code can clear it): off unless asked for.
KNOWN = os.environ.get("MSAM_FUZZ_KNOWN_CRASHES") == "1"


class HookError(Exception):
    """What the fuzzer's own hooks raise: propagating it is right."""


PREDICTOR: Any = None
EMB: Optional[np.ndarray] = None


class ArrayHook:
    """An array-like whose __array__ returns, raises or first changes the predictor's state."""

    def __init__(self, arr: Any, action: str):
        self.arr, self.action = arr, action

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        if self.action == "raise":
            raise HookError("from __array__")
        if self.action == "reset":
            PREDICTOR.reset_image()
        elif self.action == "reembed":
            PREDICTOR.set_image_embedding(EMB, (7, 3000))
        elif self.action == "junk":
            return "not an array"
        a = np.asarray(self.arr)
        return a if dtype is None else a.astype(dtype)


class JunkDLPack:
    def __init__(self, arr: Any, dev: Any):
        self.arr, self.dev = arr, dev

    def __dlpack_device__(self) -> Any:
        return self.dev

    def __dlpack__(self, **kw: Any) -> Any:
        if self.dev == (1, 0):
            return np.asarray(self.arr).__dlpack__(**kw)
        raise HookError("from __dlpack__")


class IndexHook:
    """An int whose __index__ runs code: returns a value, raises, or (KNOWN) clears its list."""

    def __init__(self, value: int, action: str, holder: Optional[list] = None):
        self.value, self.action, self.holder = value, action, holder

    def __index__(self) -> int:
        if self.action == "raise":
            raise HookError("from __index__")
        if self.action == "clear" and self.holder is not None:
            self.holder.clear()
        if self.action == "reset":
            PREDICTOR.reset_image()
        return self.value


FLOATS = [0.0, -0.0, 0.5, 1.0, -1.0, 1023.999, 1024.0, 1e6, -1e6, 1e38, 3e38, -3e38, 1e300, 5e-324,
          float("nan"), float("inf"), float("-inf")]
DTYPES = ["<f8"] * 5 + ["<f4"] * 3 + ["<f2", ">f8", ">f4", "<i8", "<i4", "u1", "i1", "?", "<c8", "O", "<U3", "<M8[s]"]


def values(rng: random.Random, shape: Tuple[int, ...], kind: str) -> np.ndarray:
    n = int(np.prod(shape)) if shape else 1
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    if kind == "labels":
        v = nrng.integers(-1, 2, n).astype(float)
        if rng.random() < 0.2 and n:
            v[rng.randrange(n)] = rng.choice([2.0, -2.0, 0.5, float("nan"), 1e300])
    elif kind == "image":
        v = nrng.integers(0, 256, n).astype(float)
    else:
        v = nrng.uniform(-50, 1200, n)
        if rng.random() < 0.3 and n:
            for _ in range(rng.randint(1, 3)):
                v[rng.randrange(n)] = rng.choice(FLOATS)
    return v.reshape(shape)


def wrong_shape(rng: random.Random, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    s = _wrong_shape(rng, shape)
    while int(np.prod(s)) > 1 << 18:  # keep the generator's own arrays small
        s = s[1:]
    return s


def _wrong_shape(rng: random.Random, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    r = rng.random()
    if r < 0.3:
        return tuple(rng.choice([0, 1, 2, 3, 5, 256]) for _ in range(rng.randint(0, 5)))
    s = list(shape)
    if r < 0.6 and s:
        i = rng.randrange(len(s))
        s[i] = max(0, s[i] + rng.choice([-1, 1, 2, -s[i]]))
    elif r < 0.8:
        s.insert(rng.randrange(len(s) + 1), rng.choice([1, 2]))
    elif s:
        s.pop(rng.randrange(len(s)))
    return tuple(s)


def layout(rng: random.Random, a: np.ndarray) -> np.ndarray:
    r = rng.random()
    if r < 0.12 and a.ndim:
        big = np.repeat(a, 2, axis=-1)
        return big[..., ::2]  # non-contiguous
    if r < 0.2 and a.ndim >= 2:
        return np.asfortranarray(a)
    if r < 0.3 and a.size:
        return np.broadcast_to(a.reshape(-1)[:1].reshape((1,) * a.ndim) if a.ndim else a, a.shape)  # stride 0
    if r < 0.36 and a.ndim:
        return a[::-1]
    if r < 0.4:
        a = a.copy()
        a.flags.writeable = False
    return a


def array_like(rng: random.Random, shape: Tuple[int, ...], kind: str) -> Any:
    if rng.random() < 0.08:
        return None
    if rng.random() < 0.3:
        shape = wrong_shape(rng, shape)
    v = values(rng, shape, kind)
    dt = rng.choice(DTYPES) if rng.random() < 0.5 else ("<f8" if kind != "image" else "u1")
    try:
        with np.errstate(all="ignore"):
            a = v.astype(dt)
    except (ValueError, TypeError, OverflowError):
        a = v
    a = layout(rng, a)
    r = rng.random()
    if r < 0.6:
        return a
    if r < 0.7:
        return a.tolist()
    if r < 0.76:
        return ArrayHook(a, rng.choice(["plain", "raise", "reset", "reembed", "junk"]))
    if r < 0.82:
        return JunkDLPack(a, rng.choice([(1, 0), (2, 0), "abc", (), (None, 0), (1, 0, 0), (1.5, 0)]))
    if r < 0.88:
        return rng.choice([0, 1.5, "abc", b"xy", {}, object(), [[]], [[1, 2], [3]], (1, 2, 3, 4)])
    if r < 0.94 and a.ndim == 1 and a.size and a.dtype.kind in "iuf" and np.isfinite(a).all():
        return [IndexHook(int(min(max(x, -1e9), 1e9)), rng.choice(["plain", "raise", "reset"])) for x in a]
    return a


def sizes(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.6:  # mostly small: masks are made at this size
        return (rng.randint(1, 300), rng.randint(1, 300)) if rng.random() < 0.9 else (rng.randint(1, 3000), 3000)
    if r < 0.7:
        return [rng.choice([0, -1, 1, 1 << 31, 100000]), rng.randint(1, 50)]
    if r < 0.8:
        return (IndexHook(rng.randint(1, 500), rng.choice(["plain", "raise", "reset"])), 40)
    if r < 0.85 and KNOWN:
        holder: list = []
        holder.extend([IndexHook(5, "clear", holder), 7])
        return holder
    return rng.choice([None, 5, "ab", (1.5, 2), (1, 2, 3), (np.int64(20), np.uint8(30))])


def check_outputs(out: Any, c: Optional[int], hw: Optional[Tuple[int, int]]) -> None:
    masks, iou, low = out
    iou = np.asarray(iou)
    assert iou.ndim >= 1 and np.isfinite(iou).all(), "IoU predictions not finite"
    if low is not None:
        low = np.asarray(low)
        assert low.shape[-2:] == (256, 256), f"low-res logits {low.shape}"
        assert np.isfinite(low).all(), f"low-res logits not finite {low.shape}"
    if masks is not None:
        masks = np.asarray(masks)
        if hw is not None:
            assert masks.shape[-2:] == tuple(hw), f"masks {masks.shape} for an image of {hw}"
        if c is not None:
            assert masks.shape[-3] == c, f"masks {masks.shape}, expected {c} per set"


def one_call(rng: random.Random) -> Tuple[str, Callable[[], Any], Any]:
    """(name, call, what the outputs must look like)."""
    p = PREDICTOR
    op = rng.random()
    if op < 0.5:
        n = rng.randint(1, 5)
        kw: Dict[str, Any] = {}
        if rng.random() < 0.7:
            kw["point_coords"] = array_like(rng, (n, 2), "coords")
            kw["point_labels"] = array_like(rng, (n,), "labels")
        if rng.random() < 0.4:
            kw["box"] = array_like(rng, rng.choice([(4,), (1, 4)]), "coords")
        if rng.random() < 0.2:
            kw["mask_input"] = array_like(rng, (1, 256, 256), "logits")
        multi = rng.random() < 0.5
        kw.update(multimask_output=multi, return_logits=rng.random() < 0.3,
                  as_numpy=rng.random() < 0.5, return_low_res=rng.random() < 0.7)
        # masks come at the image's size when the call ends (an __array__ hook may set another
        # image mid-call; which one the prompts then go with is predictor.c's locking, issue 14 #5)
        return "predict", lambda: p.predict(**kw), (3 if multi else 1, "after")
    if op < 0.75:
        b, n = rng.randint(1, 3), rng.randint(1, 4)
        args = [array_like(rng, (b, n, 2), "coords"), array_like(rng, (b, n), "labels")]
        kw = {"boxes": array_like(rng, (b, 4), "coords") if rng.random() < 0.4 else None,
              "mask_input": array_like(rng, (b, 1, 256, 256), "logits") if rng.random() < 0.15 else None,
              "multimask_output": rng.random() < 0.5, "as_numpy": rng.random() < 0.5,
              "return_masks": rng.random() < 0.5}
        return "predict_torch", lambda: p.predict_torch(*args, **kw), (None, None)
    if op < 0.94:
        emb = EMB if rng.random() < 0.7 else array_like(rng, (1, 256, 64, 64), "logits")
        osz = sizes(rng)
        isz = None if rng.random() < 0.7 else sizes(rng)
        return "set_image_embedding", lambda: p.set_image_embedding(emb, osz, isz), None
    if op < 0.98:  # an accepted image costs a whole encoder pass (seconds): few of them
        valid = rng.random() < 0.05
        shape = (rng.randint(1, 40), rng.randint(1, 40), 3)
        img = (np.random.default_rng(rng.randrange(1 << 30)).integers(0, 256, shape, dtype=np.uint8) if valid
               else array_like(rng, wrong_shape(rng, shape), "image"))
        fmt = rng.choice(["RGB", "BGR"]) if rng.random() < 0.9 else rng.choice(["rgb", "", "XYZ", "RGBA"])
        return "set_image", lambda: p.set_image(img, fmt), None
    which = rng.choice(["get_image_embedding", "reset_image", "encode_prompts", "set_torch_image"])
    if which == "encode_prompts":
        a = [array_like(rng, (1, 2, 2), "coords"), array_like(rng, (1, 2), "labels")]
        return which, lambda: p._encode_prompts(*a), None
    if which == "set_torch_image":
        img = array_like(rng, (1, 3, rng.randint(1, 40), 1024), "image") if rng.random() < 0.9 else None
        return which, lambda: p.set_torch_image(img, sizes(rng)), None
    return which, getattr(p, which), None


ALLOWED = (mobile_sam_c.InputError, TypeError, HookError)


def extreme_inputs(call: Callable[[], Any]) -> bool:
    """Whether the image embedding or this call's mask_input holds values near float32's limit
    (|v| > 1e30): sums of such values overflow in float32 in the reference too, so non-finite
    outputs are then expected, not a defect."""
    try:
        if PREDICTOR.is_image_set and np.abs(np.asarray(PREDICTOR.get_image_embedding())).max() > 1e30:
            return True
        cells = [c.cell_contents for c in (call.__closure__ or ())]
        kw = next((c for c in cells if isinstance(c, dict)), {})  # predict()'s keyword arguments
        mask = kw.get("mask_input")
        return mask is not None and np.abs(np.asarray(mask, dtype=np.float64)).max() > 1e30
    except Exception:  # noqa: BLE001 - a hook-made argument: cannot tell, so not lenient
        return False


def main() -> int:
    global PREDICTOR, EMB
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--memory-mib", type=int, default=3072)
    ap.add_argument("--per-input-s", type=float, default=60.0)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    sam = mobile_sam_c.sam_model_registry["vit_t"](checkpoint=random_weights.random_state_dict(_C.weight_spec(), seed=5))
    PREDICTOR = mobile_sam_c.SamPredictor(sam)
    EMB = np.random.default_rng(5).standard_normal((1, 256, 64, 64)).astype(np.float32)
    supervise.worker_setup(a.state, a.per_input_s, a.memory_mib)
    rng = random.Random(a.seed)
    cur = os.path.join(a.state, "current.bin")
    stats: Dict[str, Any] = {"inputs": 0, "findings": [], "outcomes": {}, "done": False}
    deadline = time.monotonic() + a.seconds
    last_write = 0.0
    while time.monotonic() < deadline:
        if not PREDICTOR.is_image_set and rng.random() < 0.9:
            PREDICTOR.set_image_embedding(EMB, (rng.randint(1, 400), rng.randint(1, 400)))
        state_seed = rng.randrange(1 << 62)
        try:
            name, call, expect = one_call(random.Random(state_seed))
        except Exception:  # noqa: BLE001 - the generator's own trouble, not the library's
            stats["outcomes"]["generator_error"] = stats["outcomes"].get("generator_error", 0) + 1
            continue
        with open(cur, "wb") as f:  # enough to replay: the generator's seed and the predictor's size
            pickle.dump({"op": name, "seed": state_seed, "original_size": PREDICTOR.original_size}, f)
        stats["inputs"] += 1
        outcome = "ok"
        with supervise.Watchdog(a.per_input_s):
            try:
                out = call()
                if expect is not None:
                    c, hw = expect
                    try:
                        check_outputs(out, c, PREDICTOR.original_size if hw == "after" else hw)
                    except AssertionError as e:
                        if "finite" not in str(e) or not extreme_inputs(call):
                            raise
                        outcome = "nonfinite_from_extreme_input"
            except ALLOWED as e:
                outcome = type(e).__name__
            except RuntimeError as e:
                outcome = "RuntimeError"
                if "image must be set" not in str(e):
                    stats["findings"].append({"kind": "errors", "what": f"{name}: RuntimeError: {e}"[:500],
                                              "seed": state_seed})
            except MemoryError as e:
                outcome = "MemoryError"
                stats["findings"].append({"kind": "oom", "what": f"{name}: {e}"[:500], "seed": state_seed})
            except Exception as e:  # noqa: BLE001
                outcome = type(e).__name__
                stats["findings"].append({"kind": "errors", "what": f"{name}: {type(e).__name__}: {e}"[:500],
                                          "seed": state_seed})
        key = f"{name}:{outcome}"
        stats["outcomes"][key] = stats["outcomes"].get(key, 0) + 1
        now = time.monotonic()
        if now - last_write > 1.0:
            supervise.write_stats(a.state, stats)
            last_write = now
    stats["done"] = True
    supervise.write_stats(a.state, stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
