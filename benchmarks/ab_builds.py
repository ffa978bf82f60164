"""ab_builds.py - two builds of the extension (two _C*.so files) timed in one process, alternating
call by call, so a change is measured against the build before it under the same load.

    python benchmarks/ab_builds.py OLD_C.so NEW_C.so [--runs 20] [--threads 2] [--image PATH]

Both builds get the same seeded random weights and the same photo (timings do not depend on the
weight values); predict is timed after a warm-up predict on each image, as bench_cpu.py does.
"""
from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_build(path: str, tag: str):
    """The extension at path as module '<tag>._C' (its init symbol is PyInit__C either way)."""
    loader = importlib.machinery.ExtensionFileLoader(f"{tag}._C", path)
    spec = importlib.util.spec_from_file_location(f"{tag}._C", path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def photo(path: str | None) -> np.ndarray:
    from PIL import Image

    candidates = [path] if path else [str(ROOT.parent / "shared" / "images" / "truck.jpg"),
                                      str(ROOT / "mobile_sam_c" / "assets" / "dog.jpg")]
    for c in candidates:
        if c and os.path.exists(c):
            return np.asarray(Image.open(c).convert("RGB"))
    raise SystemExit("no photo found; pass --image")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image")
    args = ap.parse_args()

    from mobile_sam_c.random_weights import random_state_dict

    builds = {"old": load_build(args.old, "ab_old"), "new": load_build(args.new, "ab_new")}
    img = photo(args.image)
    h, w = img.shape[:2]
    coords = np.array([[w * 0.45, h * 0.55]], np.float32)
    labels = np.array([1], np.int32)
    preds = {}
    for name, C in builds.items():
        C.set_num_threads(args.threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            weights = random_state_dict(C.weight_spec(), seed=0)
        model = C.Model({k: v for k, v in weights.items() if v.dtype == np.float32}, "cpu")
        p = C.Predictor(model)
        p.set_image(img)
        p.predict(coords, labels)  # warm-up (first predict after the image)
        preds[name] = p
    same = [preds[n].predict(coords, labels) for n in ("old", "new")]
    agree = np.array_equal(same[0][0], same[1][0]) and np.allclose(same[0][1], same[1][1], atol=1e-5)

    times = {n: {"set_image": [], "predict": []} for n in builds}
    for r in range(args.runs):
        for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
            p = preds[name]
            t = time.perf_counter()
            p.set_image(img)
            times[name]["set_image"].append(time.perf_counter() - t)
            p.predict(coords, labels)  # the first predict after set_image, untimed (as bench_cpu.py)
            for _ in range(3):
                t = time.perf_counter()
                p.predict(coords, labels)
                times[name]["predict"].append(time.perf_counter() - t)
                time.sleep(0.05)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    print(f"CPU {cpu}, ISA {builds['new'].cpu_isa()}, threads {args.threads}, load {os.getloadavg()[0]:.1f}, "
          f"photo {w}x{h}, {args.runs} alternating runs; outputs agree: {agree}")
    print("| step | old ms (median, min-max) | new ms (median, min-max) | new/old |")
    print("|---|---|---|---|")
    for step in ("set_image", "predict"):
        o, n = (np.array(times[k][step]) * 1e3 for k in ("old", "new"))
        print(f"| {step} | {np.median(o):.1f} ({o.min():.1f}-{o.max():.1f}) | {np.median(n):.1f} "
              f"({n.min():.1f}-{n.max():.1f}) | {statistics.median(n) / statistics.median(o):.3f} |")


if __name__ == "__main__":
    main()
