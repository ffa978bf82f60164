"""automatic_mask_generator.py - SamAutomaticMaskGenerator: MobileSAM's "segment everything"
(a grid of point prompts, filtered and de-duplicated masks) with the per-mask work in C."""
from __future__ import annotations

import math
import numbers
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import _C
from .build_sam import Sam
from .predictor import SamPredictor
from .utils.amg import (area_from_rle, build_all_layer_point_grids, coco_encode_rle,
                        generate_crop_boxes, rle_to_mask)

_OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


def _check_int(value: Any, name: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < lo:
        raise _C.InputError(f"{name} must be an int >= {lo}, got {value!r}")
    return int(value)


def _check_real(value: Any, name: str, lo: float, hi: float, hi_open: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = lo <= v and (v < hi if hi_open else v <= hi)
    if not ok:
        bound = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]"
        raise _C.InputError(f"{name} must be a number in {bound}, got {value!r}")
    return float(value)


class _Masks:
    """The records of the masks kept so far, as parallel columns (RLEs, not pixels)."""

    def __init__(self, size: Tuple[int, int] = (0, 0)) -> None:
        self.size = size                        # the full image's (h, w)
        self.rles: List[List[int]] = []
        self.boxes: List[np.ndarray] = []       # int64 x0, y0, x1, y1 (full image)
        self.iou: List[np.ndarray] = []         # float32
        self.points: List[np.ndarray] = []      # float64 (x, y) in the full image
        self.stability: List[np.ndarray] = []   # float32
        self.crop_boxes: List[List[int]] = []

    def __len__(self) -> int:
        return len(self.rles)

    def columns(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        def cat(parts: List[np.ndarray], shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(shape, dtype=dtype)
        return (cat(self.boxes, (0, 4), np.int64), cat(self.iou, (0,), np.float32),
                cat(self.points, (0, 2), np.float64), cat(self.stability, (0,), np.float32))

    def add(self, other: "_Masks") -> None:
        for name in ("rles", "boxes", "iou", "points", "stability", "crop_boxes"):
            getattr(self, name).extend(getattr(other, name))

    def select(self, keep: np.ndarray) -> "_Masks":
        boxes, iou, points, stability = self.columns()
        out = _Masks(self.size)
        out.rles = [self.rles[i] for i in keep]
        out.crop_boxes = [self.crop_boxes[i] for i in keep]
        out.boxes, out.iou = [boxes[keep]], [iou[keep]]
        out.points, out.stability = [points[keep]], [stability[keep]]
        return out


class SamAutomaticMaskGenerator:
    """Masks for a whole image from a grid of point prompts (the original's arguments, defaults
    and output); the per-mask work (upscaling only the masks that pass the IoU filter, stability,
    boxes, RLE, NMS, small-region removal) runs in C with the GIL released."""

    def __init__(
        self,
        model: Sam,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[List[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
    ) -> None:
        self.crop_n_layers = _check_int(crop_n_layers, "crop_n_layers", 0)
        self.crop_n_points_downscale_factor = _check_int(
            crop_n_points_downscale_factor, "crop_n_points_downscale_factor", 1)
        if (points_per_side is None) == (point_grids is None):
            raise _C.InputError("exactly one of points_per_side and point_grids must be given (the other None)")
        if points_per_side is not None:
            n = _check_int(points_per_side, "points_per_side", 1)
            smallest = int(n / self.crop_n_points_downscale_factor**self.crop_n_layers)
            if smallest < 1:
                raise _C.InputError(
                    f"points_per_side={n} leaves crop layer {self.crop_n_layers} without points "
                    f"(int({n} / {self.crop_n_points_downscale_factor}**{self.crop_n_layers}) = 0): "
                    "raise points_per_side or lower crop_n_points_downscale_factor")
            self.point_grids = build_all_layer_point_grids(n, self.crop_n_layers,
                                                           self.crop_n_points_downscale_factor)
        else:
            self.point_grids = self._check_point_grids(point_grids, self.crop_n_layers)
        self.points_per_batch = _check_int(points_per_batch, "points_per_batch", 1)
        self.pred_iou_thresh = _check_real(pred_iou_thresh, "pred_iou_thresh", 0.0, 1.0)
        self.stability_score_thresh = _check_real(stability_score_thresh, "stability_score_thresh", 0.0, 1.0)
        self.stability_score_offset = _check_real(stability_score_offset, "stability_score_offset", 0.0, math.inf,
                                                  hi_open=True)
        self.box_nms_thresh = _check_real(box_nms_thresh, "box_nms_thresh", 0.0, 1.0)
        self.crop_nms_thresh = _check_real(crop_nms_thresh, "crop_nms_thresh", 0.0, 1.0)
        self.crop_overlap_ratio = _check_real(crop_overlap_ratio, "crop_overlap_ratio", 0.0, 1.0, hi_open=True)
        if isinstance(min_mask_region_area, bool) or not isinstance(min_mask_region_area, numbers.Real) \
                or not math.isfinite(float(min_mask_region_area)) or min_mask_region_area < 0:
            raise _C.InputError(f"min_mask_region_area must be a number >= 0, got {min_mask_region_area!r}")
        self.min_mask_region_area = min_mask_region_area
        if output_mode not in _OUTPUT_MODES:
            raise _C.InputError(f"output_mode must be one of {', '.join(_OUTPUT_MODES)}; got {output_mode!r}")
        if output_mode == "coco_rle":
            try:
                from pycocotools import mask as _coco  # type: ignore[import-not-found]  # noqa: F401
            except ImportError as e:
                raise ImportError("output_mode='coco_rle' needs pycocotools (pip install pycocotools); "
                                  "'uncompressed_rle' and 'binary_mask' need nothing more") from e
        self.output_mode = output_mode
        self.predictor = SamPredictor(model)

    @staticmethod
    def _check_point_grids(point_grids: Any, crop_n_layers: int) -> List[np.ndarray]:
        if not isinstance(point_grids, (list, tuple)) or len(point_grids) != crop_n_layers + 1:
            got = len(point_grids) if isinstance(point_grids, (list, tuple)) else type(point_grids).__name__
            raise _C.InputError(f"point_grids must be a list of crop_n_layers + 1 = {crop_n_layers + 1} "
                                f"arrays (one per crop layer), got {got}")
        grids = []
        for i, g in enumerate(point_grids):
            a = np.asarray(g)
            if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 1 or a.dtype.kind not in "fiu" \
                    or not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
                raise _C.InputError(f"point_grids[{i}] must be an N x 2 array (N >= 1) of (x, y) in [0, 1], "
                                    f"got shape {a.shape} dtype {a.dtype}")
            grids.append(a)
        return grids

    # ---- generate ----------------------------------------------------------------------------

    def generate(self, image: np.ndarray) -> List[Dict[str, Any]]:
        """Mask records for an HxWx3 uint8 RGB image, each a dict with segmentation, area, bbox
        (XYWH), predicted_iou, point_coords, stability_score and crop_box (XYWH)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
            raise _C.InputError(f"image must be an HxWx3 uint8 array, got shape {image.shape} dtype {image.dtype}")
        masks = self._generate_masks(image)
        if self.min_mask_region_area > 0:
            masks = self.postprocess_small_regions(masks, self.min_mask_region_area,
                                                   max(self.box_nms_thresh, self.crop_nms_thresh))
        h, w = int(image.shape[0]), int(image.shape[1])
        boxes, iou, points, stability = masks.columns()
        records = []
        for i, counts in enumerate(masks.rles):
            rle = {"size": [h, w], "counts": counts}
            if self.output_mode == "binary_mask":
                segmentation: Any = rle_to_mask(rle)
            elif self.output_mode == "coco_rle":
                segmentation = coco_encode_rle(rle)
            else:
                segmentation = rle
            x0, y0, x1, y1 = (int(v) for v in boxes[i])
            cx0, cy0, cx1, cy1 = masks.crop_boxes[i]
            records.append({
                "segmentation": segmentation,
                "area": area_from_rle(rle),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "predicted_iou": float(iou[i]),
                "point_coords": [[float(points[i, 0]), float(points[i, 1])]],
                "stability_score": float(stability[i]),
                "crop_box": [cx0, cy0, cx1 - cx0, cy1 - cy0],
            })
        return records

    def _generate_masks(self, image: np.ndarray) -> _Masks:
        orig_size = (int(image.shape[0]), int(image.shape[1]))
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, self.crop_n_layers, self.crop_overlap_ratio)
        data = _Masks(orig_size)
        for crop_box, layer in zip(crop_boxes, layer_idxs):
            data.add(self._process_crop(image, crop_box, layer, orig_size))
        if len(crop_boxes) > 1 and len(data):
            # Between crops prefer masks from smaller crops: score 1 / crop area (float32).
            areas = np.array([(b[2] - b[0]) * (b[3] - b[1]) for b in data.crop_boxes], dtype=np.int64)
            scores = np.float32(1.0) / areas.astype(np.float32)
            keep = _C.amg_nms(data.columns()[0].astype(np.float32), scores, self.crop_nms_thresh)
            data = data.select(keep)
        return data

    def _process_crop(self, image: np.ndarray, crop_box: List[int], layer: int,
                      orig_size: Tuple[int, int]) -> _Masks:
        x0, y0, x1, y1 = crop_box
        crop = np.ascontiguousarray(image[y0:y1, x0:x1, :])
        crop_size = (int(crop.shape[0]), int(crop.shape[1]))
        self.predictor.set_image(crop)
        input_size = tuple(self.predictor.input_size)
        points = self.point_grids[layer] * np.array(crop_size)[None, ::-1]
        data = _Masks()
        for start in range(0, len(points), self.points_per_batch):
            batch = points[start:start + self.points_per_batch]
            data.add(self._process_batch(batch, crop_size, input_size, crop_box, orig_size))
        self.predictor.reset_image()
        if len(data):
            boxes, iou, _, _ = data.columns()
            keep = _C.amg_nms(boxes.astype(np.float32), iou, self.box_nms_thresh)
            data = data.select(keep)
        return data

    def _process_batch(self, points: np.ndarray, crop_size: Tuple[int, int], input_size: Tuple[int, ...],
                       crop_box: List[int], orig_size: Tuple[int, int]) -> _Masks:
        coords = self.predictor.transform.apply_coords(points, crop_size).astype(np.float32)
        labels = np.ones((len(points), 1), dtype=np.int32)
        point_of = np.repeat(points, 3, axis=0)
        out = _Masks()
        if self.pred_iou_thresh > 0.0:
            # The IoU filter first, in the decoder: masks that fail it are never upscaled. low holds
            # the masks that pass, in order; flags say which (a non-host backend keeps them all).
            iou, low_res, flags = self.predictor._predict_filtered(coords[:, None, :], labels,
                                                                  self.pred_iou_thresh)
            iou, flags = np.asarray(iou, dtype=np.float32).reshape(-1), np.asarray(flags).reshape(-1)
            made = np.flatnonzero(flags)
            passing = iou[made] > np.float32(self.pred_iou_thresh)
            cand, low_res = made[passing], np.asarray(low_res, dtype=np.float32)[passing]
        else:
            _, iou, low_res = self.predictor.predict_torch(coords[:, None, :], labels, multimask_output=True,
                                                           return_logits=True, as_numpy=True,
                                                           return_low_res=True, return_masks=False)
            iou = np.asarray(iou, dtype=np.float32).reshape(-1)
            cand, low_res = np.arange(len(iou)), np.asarray(low_res, dtype=np.float32).reshape(-1, 256, 256)
        if len(cand) == 0:
            return out
        index, stability, boxes, rles = _C.amg_process_masks(
            low_res, orig_size, tuple(crop_box), input_size, self.stability_score_offset,
            self.stability_score_thresh,
            float(self.predictor.model.mask_threshold))
        kept = cand[index]
        out.rles = rles
        out.boxes, out.iou, out.stability = [boxes], [iou[kept]], [stability]
        out.points = [point_of[kept] + np.array([crop_box[0], crop_box[1]], dtype=np.int64)]
        out.crop_boxes = [list(crop_box) for _ in range(len(kept))]
        return out

    @staticmethod
    def postprocess_small_regions(mask_data: _Masks, min_area: float, nms_thresh: float) -> _Masks:
        """Fill small holes and remove small islands of every mask, then drop new duplicates by
        NMS preferring unchanged masks (the original's order and results; one mask at a time)."""
        if len(mask_data) == 0:
            return mask_data
        boxes_old = mask_data.columns()[0]
        new_boxes = np.zeros((len(mask_data), 4), dtype=np.int64)
        new_rles: Dict[int, List[int]] = {}
        scores = np.zeros(len(mask_data), dtype=np.float32)
        for i, counts in enumerate(mask_data.rles):
            mask = _C.amg_rle_decode(counts, mask_data.size[0], mask_data.size[1])
            mask, holes_changed = _C.amg_remove_small_regions(mask, float(min_area), False)
            mask, islands_changed = _C.amg_remove_small_regions(mask, float(min_area), True)
            new_boxes[i] = _C.amg_mask_box(mask[None])[0]
            if holes_changed or islands_changed:
                new_rles[i] = _C.amg_rle_encode(mask)
            else:
                scores[i] = 1.0
        keep = _C.amg_nms(new_boxes.astype(np.float32), scores, nms_thresh)
        for i in keep:
            if int(i) in new_rles:
                mask_data.rles[int(i)] = new_rles[int(i)]
                boxes_old[int(i)] = new_boxes[int(i)]
        mask_data.boxes = [boxes_old]
        return mask_data.select(keep)
