"""isa_check.py - runs set_image + predict under every GEMM kernel this CPU has (MSAM_ISA=generic,
avx2, avx512), each in its own process, and checks they agree: the SIMD paths against plain C."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

CHILD = r"""
import json, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
import mobile_sam_c as msc
out, threads = sys.argv[1], int(sys.argv[2])
msc.set_num_threads(threads)
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:700, 0:1000]
img = np.stack([(xx * 0.25) % 256, (yy * 0.37) % 256, ((xx + yy) * 0.1) % 256], -1)
img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
p = msc.SamPredictor(msc.sam_model_registry["vit_t"](checkpoint=None))
p.set_image(img)
times = []
for _ in range(3):
    t = time.perf_counter(); p.set_image(img); times.append(time.perf_counter() - t)
masks, iou, low = p.predict(point_coords=np.array([[400, 300], [700, 500]]), point_labels=np.array([1, 0]),
                            box=np.array([100, 80, 800, 600]), return_logits=True)
ptimes = []
for _ in range(5):
    t = time.perf_counter(); p.predict(point_coords=np.array([[400, 300]]), point_labels=np.array([1])); ptimes.append(time.perf_counter() - t)
np.savez(out, emb=p.get_image_embedding(), iou=iou, low=low, masks=masks)
print(json.dumps({"isa": msc.cpu_isa(), "set_image_ms": 1e3 * float(np.median(times)),
                  "predict_ms": 1e3 * float(np.median(ptimes))}))
"""


def main() -> int:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count() or 1
    results, ok = {}, True
    with tempfile.TemporaryDirectory() as tmp:
        for isa in ("generic", "avx2", "avx512"):
            path = os.path.join(tmp, f"{isa}.npz")
            env = dict(os.environ, MSAM_ISA=isa)
            r = subprocess.run([sys.executable, "-c", CHILD, path, str(threads)], env=env, cwd=tmp,
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{isa}: FAILED\n{r.stderr[-3000:]}")
                ok = False
                continue
            info = json.loads(r.stdout.strip().splitlines()[-1])
            if info["isa"] != isa:
                print(f"{isa}: not available on this CPU (ran {info['isa']}), skipped")
                continue
            results[isa] = (info, dict(np.load(path)))
        base = results.get("generic")
        for isa, (info, arr) in results.items():
            line = f"{isa:8s} threads={threads} set_image {info['set_image_ms']:.1f} ms  predict {info['predict_ms']:.1f} ms"
            if base is not None and isa != "generic":
                d = {k: float(np.abs(arr[k] - base[1][k]).max()) for k in ("emb", "iou", "low", "masks")}
                line += "  max|diff| vs generic: " + ", ".join(f"{k} {v:.2e}" for k, v in d.items())
                if not (d["emb"] <= 1e-3 and d["iou"] <= 1e-3 and d["low"] <= 1e-3 and d["masks"] <= 1e-3):
                    ok = False
                    line += "  <-- MISMATCH"
            print(line)
    print("ISA CHECK", "PASS" if ok and base is not None else "FAIL")
    return 0 if ok and base is not None else 1


if __name__ == "__main__":
    sys.exit(main())
