"""utils/amg.py - the helpers MobileSAM code imports from ``mobile_sam.utils.amg`` (point grids,
crop boxes, RLE, boxes, stability score, small-region removal), computed by the C core.

Arrays may be NumPy arrays or torch tensors: a torch tensor in gives a torch tensor out, as the
original's functions do; torch is never imported here unless the caller already did.
"""
from __future__ import annotations

import math
import sys
from itertools import product
from typing import Any, Dict, Generator, List, Sequence, Tuple

import numpy as np

from .. import _C

__all__ = [
    "area_from_rle",
    "batch_iterator",
    "batched_mask_to_box",
    "box_xyxy_to_xywh",
    "build_all_layer_point_grids",
    "build_point_grid",
    "calculate_stability_score",
    "coco_encode_rle",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "mask_to_rle",
    "mask_to_rle_pytorch",
    "remove_small_regions",
    "rle_to_mask",
    "uncrop_boxes_xyxy",
    "uncrop_points",
]


def _torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _to_numpy(x: Any) -> np.ndarray:
    if _torch_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _like(result: np.ndarray, original: Any) -> Any:
    """result as a torch tensor (on the original's device) when original is one."""
    if _torch_tensor(original):
        torch = sys.modules["torch"]
        return torch.from_numpy(np.ascontiguousarray(result)).to(original.device)
    return result


# ---- point grids and crops -------------------------------------------------------------------


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) points (x, y) at the centres of an n x n grid of cells over [0,1]x[0,1],
    row by row (x varies fastest)."""
    if int(n_per_side) < 1:
        raise _C.InputError(f"n_per_side must be an int >= 1, got {n_per_side!r}")
    n = int(n_per_side)
    half_cell = 1 / (2 * n)
    centres = np.linspace(half_cell, 1 - half_cell, n)
    xs, ys = np.meshgrid(centres, centres)  # ys constant along a row
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> List[np.ndarray]:
    """One grid per crop layer: layer i has int(n_per_side / scale_per_layer**i) points a side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(im_size: Tuple[int, ...], n_layers: int,
                        overlap_ratio: float) -> Tuple[List[List[int]], List[int]]:
    """Crop boxes (x0, y0, x1, y1) and their layer: the whole image, then for layer i >= 1 a
    2**i x 2**i grid of overlapping crops (column by column), as the original generator."""
    im_h, im_w = int(im_size[0]), int(im_size[1])
    boxes: List[List[int]] = [[0, 0, im_w, im_h]]
    layers: List[int] = [0]
    short_side = min(im_h, im_w)
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / per_side))
        crop_w = int(math.ceil((overlap * (per_side - 1) + im_w) / per_side))
        crop_h = int(math.ceil((overlap * (per_side - 1) + im_h) / per_side))
        xs = [int((crop_w - overlap) * i) for i in range(per_side)]
        ys = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(xs, ys):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(layer)
    return boxes, layers


def batch_iterator(batch_size: int, *args: Sequence[Any]) -> Generator[List[Any], None, None]:
    """Slices of batch_size items of each argument (all of one length), in step."""
    if not args or any(len(a) != len(args[0]) for a in args):
        raise _C.InputError("batch_iterator needs at least one sequence, all of the same length")
    if int(batch_size) < 1:
        raise _C.InputError(f"batch_size must be an int >= 1, got {batch_size!r}")
    n = len(args[0])
    for start in range(0, n, batch_size):
        yield [a[start:start + batch_size] for a in args]


# ---- boxes and points ------------------------------------------------------------------------


def box_xyxy_to_xywh(box_xyxy: Any) -> Any:
    """(x0, y0, x1, y1) -> (x0, y0, x1 - x0, y1 - y0), a copy of the same kind."""
    out = box_xyxy.clone() if _torch_tensor(box_xyxy) else np.array(box_xyxy, copy=True)
    out[2] = out[2] - out[0]
    out[3] = out[3] - out[1]
    return out


def uncrop_boxes_xyxy(boxes: Any, crop_box: List[int]) -> Any:
    x0, y0 = int(crop_box[0]), int(crop_box[1])
    return boxes + _like(np.array([x0, y0, x0, y0], dtype=np.int64), boxes)


def uncrop_points(points: Any, crop_box: List[int]) -> Any:
    return points + _like(np.array([int(crop_box[0]), int(crop_box[1])], dtype=np.int64), points)


def is_box_near_crop_edge(boxes: Any, crop_box: List[int], orig_box: List[int], atol: float = 20.0) -> Any:
    """Per box: does an edge lie within atol of the crop's edge where that is not the image's?"""
    x0, y0 = float(crop_box[0]), float(crop_box[1])
    b = _to_numpy(boxes).astype(np.float32) + np.asarray([x0, y0, x0, y0], dtype=np.float32)
    near_crop = np.abs(b - np.asarray(crop_box, dtype=np.float32)) <= atol
    near_image = np.abs(b - np.asarray(orig_box, dtype=np.float32)) <= atol
    return _like(np.any(near_crop & ~near_image, axis=-1), boxes)


def batched_mask_to_box(masks: Any) -> Any:
    """XYXY boxes (inclusive pixel indices) of masks C1 x ... x H x W; [0, 0, 0, 0] for an
    empty mask; output C1 x ... x 4 (int64; float zeros when there are no elements at all)."""
    m = _to_numpy(masks)
    if m.ndim < 2:
        raise _C.InputError(f"masks must have at least 2 dimensions (..., H, W), got shape {m.shape}")
    if m.size == 0:
        return _like(np.zeros((*m.shape[:-2], 4), dtype=np.float32), masks)
    flat = m.reshape(-1, *m.shape[-2:])
    boxes = _C.amg_mask_box(flat)
    return _like(boxes.reshape(*m.shape[:-2], 4), masks)


def calculate_stability_score(masks: Any, mask_threshold: float, threshold_offset: float) -> Any:
    """IoU of the masks thresholded at mask_threshold +- threshold_offset, per mask (float32)."""
    m = _to_numpy(masks)
    if m.ndim < 2:
        raise _C.InputError(f"masks must have at least 2 dimensions (..., H, W), got shape {m.shape}")
    flat = m.reshape(-1, *m.shape[-2:])
    scores = _C.amg_stability_score(flat, float(mask_threshold), float(threshold_offset))
    return _like(scores.reshape(m.shape[:-2]), masks)


# ---- run-length encoding ---------------------------------------------------------------------


def mask_to_rle(masks: Any) -> List[Dict[str, Any]]:
    """COCO uncompressed RLEs ({"size": [h, w], "counts": [...]}) of B x H x W masks."""
    m = _to_numpy(masks)
    if m.ndim != 3:
        raise _C.InputError(f"masks must be B x H x W, got shape {m.shape}")
    h, w = int(m.shape[1]), int(m.shape[2])
    return [{"size": [h, w], "counts": _C.amg_rle_encode(m[i])} for i in range(m.shape[0])]


mask_to_rle_pytorch = mask_to_rle  # the original's name (it takes torch tensors; so does this)


def _rle_parts(rle: Dict[str, Any]) -> Tuple[int, int, Any]:
    try:
        h, w = rle["size"]
        counts = rle["counts"]
    except (TypeError, KeyError, ValueError):
        raise _C.InputError("rle must be a dict with 'size' [h, w] and 'counts' (uncompressed)") from None
    if isinstance(counts, (str, bytes)):
        raise _C.InputError("rle counts are compressed (coco_rle): decode with pycocotools, "
                            "or pass an uncompressed RLE")
    return int(h), int(w), counts


def rle_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    """The H x W bool mask of an uncompressed RLE."""
    h, w, counts = _rle_parts(rle)
    return _C.amg_rle_decode(counts, h, w)


def area_from_rle(rle: Dict[str, Any]) -> int:
    """Pixels set in an uncompressed RLE (the sum of its odd runs)."""
    return int(sum(_rle_parts(rle)[2][1::2]))


def coco_encode_rle(uncompressed_rle: Dict[str, Any]) -> Dict[str, Any]:
    """The COCO compressed RLE (counts as a str) of an uncompressed one; needs pycocotools."""
    from pycocotools import mask as coco_mask  # type: ignore[import-not-found]

    h, w, _ = _rle_parts(uncompressed_rle)
    encoded = coco_mask.frPyObjects(uncompressed_rle, h, w)
    encoded["counts"] = encoded["counts"].decode("utf-8")  # str, so it serialises to JSON
    return encoded


# ---- small regions ---------------------------------------------------------------------------


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> Tuple[np.ndarray, bool]:
    """Fill holes (mode="holes") or remove islands (mode="islands") smaller than area_thresh
    pixels, 8-connected as OpenCV's connectedComponentsWithStats; returns (mask, changed)."""
    if mode not in ("holes", "islands"):
        raise _C.InputError(f"mode must be 'holes' or 'islands', got {mode!r}")
    m = _to_numpy(mask)
    if m.ndim != 2:
        raise _C.InputError(f"mask must be an H x W bool array, got shape {m.shape}")
    return _C.amg_remove_small_regions(m, float(area_thresh), mode == "islands")
