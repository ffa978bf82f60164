"""cli.py - the ``mobile-sam-c`` command: segment one photo from point / box prompts and write the
best mask (and, on request, every mask and an overlay picture), so the package can be tried
without writing any Python."""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import CheckpointError, InputError, Sam, SamPredictor, __version__, cpu_isa, get_num_threads, set_num_threads
from .build_sam import IMG_SIZE, RandomWeightsWarning, sam_model_registry
from .overlay import draw_overlay

SAMPLE_IMAGE = Path(__file__).resolve().parent / "assets" / "dog.jpg"
CHECKPOINT_ENV = "MOBILE_SAM_C_CHECKPOINT"
Point = Tuple[float, float, int]
Box = Tuple[float, float, float, float]
# Masks are binary pictures: only lossless formats keep them exact (a JPEG would blur the edges).
MASK_FORMATS: Dict[str, str] = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
# Options whose value may start with '-' (a negative coordinate), which argparse takes for an option.
_NUMERIC_OPTIONS = ("--point", "--box")
_NEGATIVE_NUMBER = re.compile(r"^-[0-9.]")


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
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("image", nargs="?", type=Path, default=SAMPLE_IMAGE,
                   help="photo to segment (default: the bundled sample, a dog)")
    p.add_argument("--point", type=parse_point, action="append", default=[], metavar="X,Y[,LABEL]",
                   help="point prompt in pixels, LABEL 1 = foreground (default), 0 = background; "
                        "repeatable (default: one foreground point at the image centre if no --box)")
    p.add_argument("--box", type=parse_box, action="append", default=[], metavar="X0,Y0,X1,Y1",
                   help="box prompt in pixels; repeatable: several boxes are segmented in one batch "
                        "(with the points, if any, added to each) and --out gets their union")
    p.add_argument("--checkpoint", type=Path, default=os.environ.get(CHECKPOINT_ENV) or None,
                   help=f"MobileSAM weights, e.g. mobile_sam.pt (default: ${CHECKPOINT_ENV})")
    p.add_argument("--out", type=Path, default=Path("mask.png"),
                   help="output mask, .png (default: mask.png), .bmp or .tif")
    p.add_argument("--all-masks", action="store_true",
                   help="also write every mask the model returned, as OUT-<k> (OUT-box<b>-<k> with "
                        "several boxes), k counting from 1 in the model's order")
    p.add_argument("--overlay", type=Path, metavar="PICTURE",
                   help="also write the photo with the mask and the prompts drawn over it (.png, .jpg, ...)")
    p.add_argument("--threads", type=_positive_int, help="CPU threads (default: the library's)")
    p.add_argument("--single", action="store_true", help="ask for one mask instead of three")
    return p


def _join_negative_values(argv: List[str]) -> List[str]:
    """['--point', '-5,-5'] -> ['--point=-5,-5'], so argparse reads a negative coordinate as a value."""
    out: List[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _NUMERIC_OPTIONS and i + 1 < len(argv) and _NEGATIVE_NUMBER.match(argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _mask_format(path: Path, option: str) -> str:
    fmt = MASK_FORMATS.get(path.suffix.lower())
    if fmt is None:
        kinds = ", ".join(sorted(MASK_FORMATS))
        why = "is lossy and would blur the mask" if path.suffix.lower() in (".jpg", ".jpeg", ".webp") \
            else "is not an image type for masks"
        raise CliError(f"{option} {path}: '{path.suffix or '(no extension)'}' {why}; use one of {kinds}")
    return fmt


def _picture_format(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise CliError(f"--overlay {path}: Pillow cannot write '{path.suffix or '(no extension)'}' "
                       "pictures; use .png or .jpg")
    return fmt


def _load_image(path: Path) -> np.ndarray:
    if path.is_dir():
        raise CliError(f"{path} is a directory; give one photo file (e.g. {path / 'photo.jpg'})")
    if not path.is_file():
        raise CliError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    except (UnidentifiedImageError, OSError) as e:
        raise CliError(f"cannot read image {path}: {e}") from None


def _pad_thin_image(image: np.ndarray) -> Tuple[np.ndarray, Optional[str]]:
    """An image so thin that the resize to a 1024 long side would round its short side to 0 pixels
    (e.g. 1x3000) is padded bottom/right with black, just enough to keep one row or column; the
    masks are cropped back. The original MobileSAM refuses such images (its resize fails)."""
    h, w = image.shape[:2]
    need = -(-max(h, w) // (2 * IMG_SIZE))  # the least short side that rounds to >= 1 pixel
    if min(h, w) >= need:
        return image, None
    pad = ((0, max(0, need - h)), (0, max(0, need - w)), (0, 0))
    note = (f"image {w}x{h} is too thin for the {IMG_SIZE}-pixel resize (its short side would round "
            f"to 0 pixels): padded to {w + pad[1][1]}x{h + pad[0][1]} with black for the model, masks cropped back")
    return np.pad(image, pad), note


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


def _describe(points: List[Point], boxes: List[Box]) -> str:
    parts = [f"point({x:g},{y:g},{'fg' if lab else 'bg'})" for x, y, lab in points]
    parts += ["box({:g},{:g},{:g},{:g})".format(*b) for b in boxes]
    return " ".join(parts)


def _segment(predictor: SamPredictor, points: List[Point], boxes: List[Box], multimask: bool
             ) -> Tuple[np.ndarray, np.ndarray]:
    """Masks (B x C x H x W bool) and IoU predictions (B x C): one prompt set per box (B = number
    of boxes, batched through predict_torch when there are several), else B = 1."""
    coords = np.array([p[:2] for p in points], dtype=np.float64) if points else None
    labels = np.array([p[2] for p in points], dtype=np.int64) if points else None
    if len(boxes) <= 1:
        masks, iou, _ = predictor.predict(
            point_coords=coords, point_labels=labels, box=np.array(boxes[0], dtype=np.float64) if boxes else None,
            multimask_output=multimask, as_numpy=True, return_low_res=False)
        return masks[None], iou[None]
    size = predictor.original_size
    batch = len(boxes)
    t_boxes = predictor.transform.apply_boxes(np.array(boxes, dtype=np.float64), size).astype(np.float32)
    t_coords = t_labels = None
    if coords is not None:
        t_coords = np.repeat(predictor.transform.apply_coords(coords, size)[None], batch, 0).astype(np.float32)
        t_labels = np.repeat(labels[None], batch, 0)
    masks, iou, _ = predictor.predict_torch(t_coords, t_labels, boxes=t_boxes, multimask_output=multimask,
                                            as_numpy=True, return_low_res=False)
    return masks, iou


def _save(picture: Image.Image, path: Path, fmt: str) -> None:
    try:
        picture.save(path, format=fmt)
    except OSError as e:
        raise CliError(f"cannot write {path}: {e}") from None


def run(args: argparse.Namespace) -> str:
    """Segment args.image, write args.out (and the extra outputs asked for), return the summary."""
    mask_fmt = _mask_format(args.out, "--out")
    overlay_fmt = _picture_format(args.overlay) if args.overlay is not None else None
    image = _load_image(args.image)
    h, w = image.shape[:2]
    model_image, note = _pad_thin_image(image)
    if note:
        print(f"mobile-sam-c: {note}", file=sys.stderr)
    points: List[Point] = args.point or ([] if args.box else [(w / 2, h / 2, 1)])
    model = _load_model(args.checkpoint)
    if args.threads is not None:
        set_num_threads(args.threads)
    predictor = SamPredictor(model)
    t0 = time.perf_counter()
    try:
        predictor.set_image(model_image)
        t1 = time.perf_counter()
        masks, iou = _segment(predictor, points, args.box, multimask=not args.single)
    except InputError as e:
        raise CliError(str(e)) from None
    t2 = time.perf_counter()
    masks = masks[:, :, :h, :w]  # drop the padding of a thin image, if any
    best = np.argmax(iou, axis=1)
    mask = np.logical_or.reduce([masks[b, k] for b, k in enumerate(best)])
    _save(Image.fromarray(mask.astype(np.uint8) * 255), args.out, mask_fmt)
    if args.all_masks:
        for b in range(masks.shape[0]):
            for k in range(masks.shape[1]):
                tag = f"-box{b + 1}-{k + 1}" if masks.shape[0] > 1 else f"-{k + 1}"
                path = args.out.with_name(args.out.stem + tag + args.out.suffix)
                _save(Image.fromarray(masks[b, k].astype(np.uint8) * 255), path, mask_fmt)
    if args.overlay is not None:
        _save(draw_overlay(image, mask, points, args.box), args.overlay, overlay_fmt or "PNG")
    chosen = ", ".join(f"{k + 1}/{iou.shape[1]} IoU-pred {float(iou[b, k]):.3f}" for b, k in enumerate(best))
    return (f"{args.image.name} {w}x{h} | {_describe(points, args.box)} | mask {chosen} "
            f"area {100.0 * mask.mean():.1f}% -> {args.out} | "
            f"set_image {1e3 * (t1 - t0):.0f} ms, predict {1e3 * (t2 - t1):.1f} ms | "
            f"{get_num_threads()} threads, {cpu_isa()}")


def main(argv: Optional[List[str]] = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "bench":
        from .bench import main as bench_main
        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(list(argv)))
    try:
        print(run(args))
    except CliError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    return 0
