"""cli.py - the ``mobile-sam-c`` command: segment one photo from point / box prompts and write the
best mask as a PNG, so the package can be tried (and timed) without writing any Python."""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import CheckpointError, InputError, Sam, SamPredictor, cpu_isa, get_num_threads, set_num_threads
from .build_sam import RandomWeightsWarning, sam_model_registry

SAMPLE_IMAGE = Path(__file__).resolve().parent / "assets" / "dog.jpg"
CHECKPOINT_ENV = "MOBILE_SAM_C_CHECKPOINT"
Point = Tuple[float, float, int]
Box = Tuple[float, float, float, float]


class CliError(Exception):
    """A problem with the user's input: printed as one line on stderr, exit status 2."""


def _numbers(text: str, what: str, counts: Tuple[int, ...]) -> List[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in counts or not all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return values


def parse_point(text: str) -> Point:
    """'X,Y' (foreground) or 'X,Y,LABEL' with LABEL 1 (foreground) or 0 (background)."""
    v = _numbers(text, "X,Y or X,Y,LABEL (numbers, LABEL 0 or 1)", (2, 3))
    label = v[2] if len(v) == 3 else 1.0
    if label not in (0.0, 1.0):
        raise argparse.ArgumentTypeError(f"{text!r}: LABEL must be 1 (foreground) or 0 (background)")
    return v[0], v[1], int(label)


def parse_box(text: str) -> Box:
    """'X0,Y0,X1,Y1': the top-left and bottom-right corners, in pixels of the original image."""
    x0, y0, x1, y1 = _numbers(text, "X0,Y0,X1,Y1 (four numbers)", (4,))
    if x1 < x0 or y1 < y0:
        raise argparse.ArgumentTypeError(f"{text!r}: X1,Y1 must lie right of / below X0,Y0")
    return x0, y0, x1, y1


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mobile-sam-c",
        description="Segment an image with MobileSAM (C core) and write the best mask as a PNG.")
    p.add_argument("image", nargs="?", type=Path, default=SAMPLE_IMAGE,
                   help="photo to segment (default: the bundled sample, a dog)")
    p.add_argument("--point", type=parse_point, action="append", default=[], metavar="X,Y[,LABEL]",
                   help="point prompt in pixels, LABEL 1 = foreground (default), 0 = background; "
                        "repeatable (default: one foreground point at the image centre if no --box)")
    p.add_argument("--box", type=parse_box, metavar="X0,Y0,X1,Y1", help="box prompt in pixels")
    p.add_argument("--checkpoint", type=Path, default=os.environ.get(CHECKPOINT_ENV) or None,
                   help=f"MobileSAM weights, e.g. mobile_sam.pt (default: ${CHECKPOINT_ENV})")
    p.add_argument("--out", type=Path, default=Path("mask.png"), help="output PNG (default: mask.png)")
    p.add_argument("--threads", type=_positive_int, help="CPU threads (default: the library's)")
    p.add_argument("--single", action="store_true", help="ask for one mask instead of three")
    return p


def _load_image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise CliError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    except (UnidentifiedImageError, OSError) as e:
        raise CliError(f"cannot read image {path}: {e}") from None


def _load_model(checkpoint: Optional[Path]) -> Sam:
    if checkpoint is None:
        print("mobile-sam-c: no checkpoint given, so the weights are RANDOM and the mask is "
              f"meaningless; pass the official mobile_sam.pt with --checkpoint or ${CHECKPOINT_ENV}",
              file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)
            return sam_model_registry["vit_t"](checkpoint=None)
    if not checkpoint.is_file():
        raise CliError(f"checkpoint not found: {checkpoint}")
    try:
        return sam_model_registry["vit_t"](checkpoint=checkpoint)
    except (CheckpointError, OSError) as e:
        raise CliError(f"cannot load checkpoint {checkpoint}: {e}") from None


def _describe(points: Sequence[Point], box: Optional[Box]) -> str:
    parts = [f"point({x:g},{y:g},{'fg' if lab else 'bg'})" for x, y, lab in points]
    if box is not None:
        parts.append("box({:g},{:g},{:g},{:g})".format(*box))
    return " ".join(parts)


def run(args: argparse.Namespace) -> str:
    """Segment args.image, write args.out, return the one-line summary."""
    image = _load_image(args.image)
    h, w = image.shape[:2]
    points: List[Point] = args.point or ([] if args.box is not None else [(w / 2, h / 2, 1)])
    model = _load_model(args.checkpoint)
    if args.threads is not None:
        set_num_threads(args.threads)
    predictor = SamPredictor(model)
    t0 = time.perf_counter()
    predictor.set_image(image)
    t1 = time.perf_counter()
    try:
        masks, iou, _ = predictor.predict(
            point_coords=np.array([p[:2] for p in points], dtype=np.float64) if points else None,
            point_labels=np.array([p[2] for p in points]) if points else None,
            box=None if args.box is None else np.array(args.box, dtype=np.float64),
            multimask_output=not args.single, as_numpy=True, return_low_res=False)
    except InputError as e:
        raise CliError(str(e)) from None
    t2 = time.perf_counter()
    best = int(np.argmax(iou))
    mask = masks[best]
    try:
        Image.fromarray(mask.astype(np.uint8) * 255).save(args.out, format="PNG")
    except OSError as e:
        raise CliError(f"cannot write {args.out}: {e}") from None
    return (f"{args.image.name} {w}x{h} | {_describe(points, args.box)} | mask {best + 1}/{len(iou)} "
            f"IoU-pred {float(iou[best]):.3f} area {100.0 * mask.mean():.1f}% -> {args.out} | "
            f"set_image {1e3 * (t1 - t0):.0f} ms, predict {1e3 * (t2 - t1):.1f} ms | "
            f"{get_num_threads()} threads, {cpu_isa()}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "bench":
        from .bench import main as bench_main
        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        print(run(args))
    except CliError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    return 0
