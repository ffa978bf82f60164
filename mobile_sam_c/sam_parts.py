"""sam_parts.py - what stands where the original's ``sam.image_encoder``, ``sam.prompt_encoder`` and
``sam.mask_decoder`` stand: the sizes and counts user code reads from them, and calls into the core."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Tuple

import numpy as np

from . import _C

if TYPE_CHECKING:
    from .build_sam import Sam

IMG_SIZE = _C.IMG_SIZE  # csrc/include/msam.h
EMBED_DIM = 256
EMBED_SIZE = 64  # the image embedding's side: 1024 / 16


class ImageEncoder:
    """``sam.image_encoder``: ``img_size`` and a call on a 1x3x1024x1024 normalised image."""

    img_size = IMG_SIZE

    def __init__(self, sam: "Sam") -> None:
        self._sam = sam

    def __call__(self, x: Any) -> np.ndarray:
        """1x3x1024x1024 normalised, padded input -> 1x256x64x64 image embedding."""
        return self._sam.image_encoder_stages(x)["neck"]


class PromptEncoder:
    """``sam.prompt_encoder``: its sizes, and a call like the original's (1024-frame coordinates)."""

    embed_dim = EMBED_DIM
    input_image_size: Tuple[int, int] = (IMG_SIZE, IMG_SIZE)
    image_embedding_size: Tuple[int, int] = (EMBED_SIZE, EMBED_SIZE)
    mask_input_size: Tuple[int, int] = (4 * EMBED_SIZE, 4 * EMBED_SIZE)

    def __init__(self, sam: "Sam") -> None:
        self._sam = sam

    def __call__(self, points: Optional[Tuple[Any, Any]] = None, boxes: Any = None,
                 masks: Any = None) -> Tuple[np.ndarray, np.ndarray]:
        """Sparse BxTx256 and dense Bx256x64x64 prompt embeddings."""
        return self._sam.prompt_encoder_forward(points=points, boxes=boxes, masks=masks)


class MaskDecoder:
    """``sam.mask_decoder``: the sizes and counts of MobileSAM's decoder (it runs inside predict)."""

    transformer_dim = EMBED_DIM
    num_multimask_outputs = 3
    num_mask_tokens = num_multimask_outputs + 1
    iou_head_depth = 3
    iou_head_hidden_dim = 256
