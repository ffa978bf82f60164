"""overlay.py - a picture of a segmentation for people: the photo with the mask tinted over it and
the prompts drawn on top (foreground points green, background points red, boxes as outlines)."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

MASK_COLOUR = np.array([30, 144, 255], dtype=np.float32)  # a blue that reads on most photos
FOREGROUND = (0, 230, 64)
BACKGROUND = (255, 40, 40)
BOX_COLOUR = (0, 230, 64)


def draw_overlay(image: np.ndarray, mask: np.ndarray, points: Sequence[Tuple[float, float, int]],
                 boxes: Sequence[Tuple[float, float, float, float]], alpha: float = 0.5) -> Image.Image:
    """HxWx3 uint8 photo + HxW bool mask + prompts in pixels -> an RGB picture of the same size."""
    tinted = image.astype(np.float32)
    tinted[mask] = (1.0 - alpha) * tinted[mask] + alpha * MASK_COLOUR
    picture = Image.fromarray(np.clip(tinted + 0.5, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(picture)
    size = max(image.shape[:2])
    width = max(1, size // 300)  # lines and markers that stay visible on small and large photos
    radius = max(3, size // 100)
    for x0, y0, x1, y1 in boxes:
        draw.rectangle([x0, y0, x1, y1], outline=BOX_COLOUR, width=width)
    for x, y, label in points:
        colour = FOREGROUND if label == 1 else BACKGROUND
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour,
                     outline=(255, 255, 255), width=max(1, width // 2))
    return picture
