"""transforms.py - ResizeLongestSide, as MobileSAM's: images resized so the long side is 1024
(Pillow-exact bilinear in the C core), point and box coordinates scaled to match."""
from __future__ import annotations

import copy
import sys
from typing import Any, Tuple

import numpy as np

from . import _C


class ResizeLongestSide:
    """Resizes images to the longest side ``target_length`` and maps coordinates alike."""

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 -> resized HxWx3 uint8, bit-identical to the original (Pillow BILINEAR)."""
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise _C.InputError(f"image must be an HxWx3 uint8 array, got shape {arr.shape} dtype {arr.dtype}")
        h, w = self.get_preprocess_shape(arr.shape[0], arr.shape[1], self.target_length)
        return _C.resize_rgb8(arr, h, w)

    def apply_coords(self, coords: np.ndarray, original_size: Tuple[int, ...]) -> np.ndarray:
        """Coordinates (..., 2) as (x, y) in the original image -> the resized image (float64)."""
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(original_size[0], original_size[1], self.target_length)
        coords = copy.deepcopy(coords).astype(float)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size: Tuple[int, ...]) -> np.ndarray:
        """Boxes (B, 4) as (x0, y0, x1, y1) in the original image -> the resized image."""
        boxes = self.apply_coords(boxes.reshape(-1, 2, 2), original_size)
        return boxes.reshape(-1, 4)

    def apply_image_torch(self, image: Any) -> Any:
        """A BxCxHxW torch tensor resized so the long side is target_length, as the original does
        it (torch's antialiased bilinear interpolation; not bit-identical to apply_image)."""
        torch = sys.modules.get("torch")
        if torch is None or not isinstance(image, torch.Tensor) or image.ndim != 4:
            raise _C.InputError("image must be a BxCxHxW torch tensor (apply_image_torch works on torch "
                                f"tensors; use apply_image for an HxWx3 uint8 array), got {type(image).__name__}")
        size = self.get_preprocess_shape(image.shape[2], image.shape[3], self.target_length)
        return torch.nn.functional.interpolate(image, size, mode="bilinear", align_corners=False, antialias=True)

    def apply_coords_torch(self, coords: Any, original_size: Tuple[int, ...]) -> Any:
        """apply_coords for a tensor-like (torch tensors stay torch tensors, as float32)."""
        if isinstance(coords, np.ndarray):
            return self.apply_coords(coords, original_size).astype(np.float32)
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(original_size[0], original_size[1], self.target_length)
        coords = coords.detach().clone().float()
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes_torch(self, boxes: Any, original_size: Tuple[int, ...]) -> Any:
        boxes = self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size)
        return boxes.reshape(-1, 4)

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> Tuple[int, int]:
        """(new_h, new_w) with the long side equal to long_side_length, rounded half up."""
        scale = long_side_length * 1.0 / max(oldh, oldw)
        newh, neww = oldh * scale, oldw * scale
        return (int(newh + 0.5), int(neww + 0.5))
