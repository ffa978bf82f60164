"""bench_amg.py - "segment everything": mobile_sam_c's SamAutomaticMaskGenerator against the
original's (mobile_sam), same weights, same threads, one run each, side by side: only ratios count."""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

warnings.filterwarnings("ignore")  # timm / registry chatter

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from bench_cpu import build_ours, build_reference, load_image, machine_info, resolve_image, set_threads  # noqa: E402
from mobile_sam import SamAutomaticMaskGenerator as RefGenerator  # noqa: E402

import mobile_sam_c as msc  # noqa: E402

# With random weights the model's IoU predictions are all below the default 0.88, so at the
# defaults our generator decodes only up to the IoU head (the filter runs in the decoder: a mask
# that fails it is not even upscaled to 256x256) while the original upscales all 3 x points^2 of
# them to full size. With real weights a share of the masks passes and is made; "no IoU filter"
# (pred_iou_thresh=0) makes and upscales every mask in both: our worst case.
SETTINGS = {
    "defaults": {},
    "defaults, 1 crop layer": {"crop_n_layers": 1},
    "no IoU filter": {"pred_iou_thresh": 0.0},
    "no IoU filter, 1 crop layer": {"pred_iou_thresh": 0.0, "crop_n_layers": 1},
}


def fallback_image(name: str) -> Path:
    path = resolve_image(name)
    if path.is_file():
        return path
    return Path(msc.__file__).resolve().parent / "assets" / "dog.jpg"


def run(gen_cls: Any, model: Any, image: Any, kw: Dict[str, Any]) -> Dict[str, Any]:
    """One generate: seconds, masks and their areas; when it raises, the seconds until it did
    (the original's crop merge raises IndexError when no crop gave a mask) and the error."""
    gen = gen_cls(model, **kw)
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            records = gen.generate(image)
    except Exception as e:  # reported in the table, timed up to the failure
        return {"s": time.perf_counter() - t0, "masks": None, "areas": None, "error": f"{type(e).__name__}: {e}"}
    return {"s": time.perf_counter() - t0, "masks": len(records), "areas": [r["area"] for r in records]}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image", default="truck.jpg", help="a photo in ../shared/images or a path (default truck.jpg; "
                    "the package's assets/dog.jpg when absent)")
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--checkpoint", default=None, help="mobile_sam.pt for both (default: the same random weights)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    set_threads(args.threads)
    ref = build_reference(args.checkpoint)
    ours = build_ours(ref if args.checkpoint is None else None, args.checkpoint)
    path = fallback_image(args.image)
    image = load_image(path)
    info = machine_info(args.threads)
    print(f"# {info['cpu']}, ISA {info['isa']}, {args.threads} threads, {info['usable_cores']} usable cores, "
          f"load average {info['load_avg_1m']:.2f} at start")
    print(f"# {path.name} {image.shape[1]}x{image.shape[0]}, points_per_side={args.points_per_side}, "
          f"weights: {args.checkpoint or 'random (same for both)'}; one run each")
    print("| setting | mobile_sam_c s | original s | original/ours | masks (ours / original) | same areas |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name in args.settings:
        kw = dict(SETTINGS[name], points_per_side=args.points_per_side)
        a = run(msc.SamAutomaticMaskGenerator, ours, image, kw)
        b = run(RefGenerator, ref, image, kw)
        same = "yes" if a["areas"] == b["areas"] else "no"
        if "error" in b or "error" in a:
            same = "n/a: " + "; ".join(f"{who} raised {r['error'][:80]} after {r['s']:.1f} s"
                                       for who, r in (("ours", a), ("original", b)) if "error" in r)
        rows.append({"setting": name, "kwargs": kw, "ours": a, "original": b, "same_areas": same})
        print(f"| {name} | {a['s']:.2f} | {b['s']:.2f} | {b['s'] / a['s']:.1f}x | {a['masks']} / {b['masks']} "
              f"| {same} |", flush=True)
    print(f"# load average {__import__('os').getloadavg()[0]:.2f} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "image": str(path), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
