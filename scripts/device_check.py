"""device_check.py - the Python checks scripts/device_check.sh runs on a lent GPU machine, one
subcommand each, printing what they measured (exit 1 when a check fails, 2 when it cannot run):

  info                      the build (CUDA_BUILT, check_device("cuda")), Python packages, the GPU
  conformance D [SEEDS]     every op of device D's table against the C references (_C._conformance)
  parity D REF              set_image + predict on D against REF (random weights, the shipped photo):
                            embedding, IoU, low-res logits, masks; DLPack hand-off to torch / cupy
  workload D [--short]      a small end-to-end run for compute-sanitizer (--short: no encoder)
  bench D [REPEAT]          set_image and predict times (GPU-resident vs legacy), transfers per predict

Runs against whichever mobile_sam_c is imported (device_check.sh builds it in place first).
"""
import json
import os
import sys
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
warnings.simplefilter("ignore")

from mobile_sam_c import _C  # noqa: E402
from mobile_sam_c.random_weights import random_state_dict  # noqa: E402


def photo():
    from PIL import Image

    with Image.open(os.path.join(ROOT, "mobile_sam_c", "assets", "dog.jpg")) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def host(x):
    return None if x is None else np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def prompts(h, w):
    rng = np.random.default_rng(5)
    return {
        "point": dict(point_coords=np.array([[w * 0.5, h * 0.55]], np.float32), point_labels=np.array([1], np.int32)),
        "box": dict(box=np.array([w * 0.2, h * 0.15, w * 0.8, h * 0.9], np.float32), multimask_output=False),
        "points+mask": dict(point_coords=np.array([[w * 0.3, h * 0.4], [w * 0.7, h * 0.6]], np.float32),
                            point_labels=np.array([1, 0], np.int32),
                            mask_input=rng.standard_normal((1, 256, 256)).astype(np.float32)),
    }


def predictor(device, weights=None):
    weights = weights if weights is not None else random_state_dict(_C.weight_spec(), seed=11)
    return _C.Predictor(_C.Model(weights, device))


def sync():
    """Wait for the GPU (the extension's stream included: one process, one primary context)."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            return "torch.cuda.synchronize"
    except ImportError:
        pass
    try:
        import cupy

        cupy.cuda.runtime.deviceSynchronize()
        return "cupy deviceSynchronize"
    except Exception:
        return None


def cmd_info(args):
    out = {"python": sys.version.split()[0], "numpy": np.__version__, "CUDA_BUILT": bool(_C.CUDA_BUILT),
           "module": _C.__file__}
    try:
        _C.check_device("cuda")
        out["check_device('cuda')"] = "ok"
    except Exception as e:
        out["check_device('cuda')"] = f"{type(e).__name__}: {e}"
    with open("/proc/self/maps") as f:  # which cuBLAS check_device loaded (before torch loads its own)
        out["libcublas loaded"] = sorted({ln.split()[-1] for ln in f if "libcublas.so" in ln}) or "none"
    for name in ("torch", "cupy"):
        try:
            mod = __import__(name)
            out[name] = mod.__version__
        except Exception as e:
            out[name] = f"absent ({type(e).__name__})"
    try:
        import torch

        out["torch.cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except Exception:
        pass
    print(json.dumps(out, indent=1))
    return 0


def cmd_conformance(args):
    device = args[0]
    seeds = [int(s) for s in (args[1] if len(args) > 1 else "0,1,2,3,4,5").split(",")]
    worst, bad, n = {}, [], 0
    t0 = time.perf_counter()
    for seed in seeds:
        for op, case, err, tol in _C._conformance(device, seed):
            n += 1
            ratio = err / tol if tol else (0.0 if err == 0 else float("inf"))
            if ratio > worst.get(op, (-1.0, ""))[0]:
                worst[op] = (ratio, case)
            if not err <= tol:
                bad.append((seed, op, case, err, tol))
    print(f"{device}: {n} cases over seeds {seeds} in {time.perf_counter() - t0:.1f} s, {len(bad)} over tolerance")
    for op, (ratio, case) in sorted(worst.items()):
        print(f"  {op:22s} worst err/tol {ratio:8.3g}  ({case})")
    for b in bad[:20]:
        print("  FAIL", b)
    return 1 if bad or not n else 0


def cmd_parity(args):
    device, ref = args[0], args[1]
    weights = random_state_dict(_C.weight_spec(), seed=11)
    a, b = predictor(device, weights), predictor(ref, weights)
    image = photo()
    h, w = image.shape[:2]
    a.set_image(image)
    b.set_image(image)
    ea, eb = host(a.get_image_embedding()), host(b.get_image_embedding())
    scale = float(np.abs(eb).max())
    emb = float(np.abs(ea - eb).max())
    print(f"{device} vs {ref}, image {w}x{h}, random weights (seed 11)")
    print(f"  embedding       max |diff| {emb:.3g} (max |ref| {scale:.3g}, rel {emb / scale:.3g})")
    failed = emb > 1e-3 * scale
    for name, kw in prompts(h, w).items():
        ma, ia, la = a.predict(**kw, return_logits=True, as_numpy=True)
        mb, ib, lb = b.predict(**kw, return_logits=True, as_numpy=True)
        ka, _, _ = a.predict(**kw, as_numpy=True, return_low_res=False)
        kb, _, _ = b.predict(**kw, as_numpy=True, return_low_res=False)
        d_iou = float(np.abs(ia - ib).max())
        d_low = float(np.abs(la - lb).max())
        low_scale = max(1.0, float(np.abs(lb).max()))
        d_logit = float(np.abs(ma - mb).max())
        differ = ka != kb
        near = float(np.abs(mb[differ]).max()) if differ.any() else 0.0  # the reference logit where masks differ
        print(f"  {name:12s} IoU {d_iou:.3g}  low-res logits {d_low:.3g} (max |ref| {low_scale:.3g})  "
              f"logits {d_logit:.3g}  mask pixels differing {int(differ.sum())} (ref |logit| there <= {near:.3g})")
        failed |= d_iou > 1e-3 or d_low > 1e-3 * low_scale or near > 5e-2
    # GPU-resident outputs handed to torch / cupy without a copy
    m, iou, _ = a.predict(**prompts(h, w)["point"], as_numpy=False, return_low_res=False)
    print(f"  resident outputs: {type(m).__name__} on DLPack device {m.__dlpack_device__()}")
    for lib in ("torch", "cupy"):
        try:
            mod = __import__(lib)
            t = mod.from_dlpack(m)
            same = bool(np.array_equal(t.cpu().numpy() if lib == "torch" else mod.asnumpy(t), host(m)))
            print(f"  {lib}.from_dlpack: {getattr(t, 'device', '?')}, equal to .numpy(): {same}")
            failed |= not same
        except ImportError:
            print(f"  {lib}: not installed")
        except Exception as e:
            print(f"  {lib}.from_dlpack FAILED: {type(e).__name__}: {e}")
            failed = True
    print("  tolerances: embedding 1e-3 x max|ref|, IoU 1e-3, low-res 1e-3 x max(1, max|ref|), masks differ only "
          "where |ref logit| < 0.05")
    return 1 if failed else 0


def cmd_workload(args):
    device, short = args[0], "--short" in args
    p = predictor(device)
    image = photo()
    h, w = image.shape[:2]
    if short:  # the decoder and post-processing only: a stored embedding instead of the encoder
        emb = np.random.default_rng(1).standard_normal((1, 256, 64, 64)).astype(np.float32)
        p.set_image_embedding(emb, (h, w), (int(1024 * h / max(h, w) + 0.5), int(1024 * w / max(h, w) + 0.5)))
    else:
        p.set_image(image)
    for kw in prompts(h, w).values():
        host(p.predict(**kw, as_numpy=False, return_low_res=False)[0])
        p.predict(**kw, as_numpy=True, return_low_res=True)
    print(f"workload on {device} ({'short' if short else 'full'}): ok")
    return 0


def _times(fn, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def cmd_bench(args):
    device = args[0]
    n = int(args[1]) if len(args) > 1 else 50
    p = predictor(device)
    image = photo()
    h, w = image.shape[:2]
    kw = prompts(h, w)["point"]
    how = sync() if device == "cuda" else "host (CPU)"
    wait = sync if device == "cuda" else (lambda: None)

    def set_image():
        p.set_image(image)
        wait()

    set_image()
    si = _times(set_image, max(3, n // 10))
    print(f"{device}: waits by {how}; image {w}x{h}, one point, multimask")
    print(f"  set_image                      median {np.median(si):8.3f} ms  (n={len(si)})")
    for label, as_numpy, low in (("GPU-resident (False, False)", False, False), ("legacy (True, True)", True, True)):
        def one():
            p.predict(**kw, as_numpy=as_numpy, return_low_res=low)
            wait()

        for _ in range(5):
            one()
        lat = _times(one, n)
        c0 = p.transfer_counts()
        t0 = time.perf_counter()
        for _ in range(n):
            p.predict(**kw, as_numpy=as_numpy, return_low_res=low)
        wait()
        thr = (time.perf_counter() - t0) * 1e3 / n
        c1 = p.transfer_counts()
        per = {k: (c1[k] - c0[k]) / n for k in c1}
        print(f"  predict {label:28s} median {np.median(lat):8.3f} ms, p95 {np.percentile(lat, 95):8.3f} ms, "
              f"back-to-back {thr:8.3f} ms/call; per predict {per}")
    return 0


COMMANDS = {"info": cmd_info, "conformance": cmd_conformance, "parity": cmd_parity, "workload": cmd_workload,
            "bench": cmd_bench}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
