"""build_sam.py - the model registry (``sam_model_registry["vit_t"](checkpoint=...)``) and ``Sam``, the
loaded model: checkpoint read and validated in Python, weights converted once by the C core."""
from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from . import _C
from .checkpoint import load_state_dict, validate_state_dict
from .random_weights import random_state_dict

IMG_SIZE = 1024
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32).reshape(1, 3, 1, 1)
PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32).reshape(1, 3, 1, 1)

Checkpoint = Union[None, str, "os.PathLike[str]", Mapping[str, Any]]


class RandomWeightsWarning(UserWarning):
    """The model was built without a checkpoint: its masks are meaningless."""


class _ImageEncoder:
    """Stands where the original's ``sam.image_encoder`` stands: ``img_size`` and a call."""

    img_size = IMG_SIZE

    def __init__(self, sam: "Sam") -> None:
        self._sam = sam

    def __call__(self, x: Any) -> np.ndarray:
        """1x3x1024x1024 normalised, padded input -> 1x256x64x64 image embedding."""
        return self._sam.image_encoder_stages(x)["neck"]


class Sam:
    """A loaded MobileSAM vit_t model (weights converted for the C core, read-only, shareable)."""

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(self, weights: Mapping[str, np.ndarray], device: str = "cpu") -> None:
        self._core = _C.Model(dict(weights), device)
        self.image_encoder = _ImageEncoder(self)
        self._aux: Optional[_C.Predictor] = None

    @property
    def device(self) -> str:
        return self._core.device

    def _aux_predictor(self) -> "_C.Predictor":
        if self._aux is None:
            self._aux = _C.Predictor(self._core)
        return self._aux

    def preprocess(self, x: Any) -> np.ndarray:
        """Like ``Sam.preprocess``: normalise a 1x3xHxW image of raw pixels, zero-pad to 1024."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 3 or max(x.shape[2:]) > IMG_SIZE:
            raise _C.InputError(f"x must have shape (B, 3, H, W) with H, W <= {IMG_SIZE}, got {x.shape}")
        x = (x - PIXEL_MEAN) / PIXEL_STD
        h, w = x.shape[-2:]
        return np.pad(x, ((0, 0), (0, 0), (0, IMG_SIZE - h), (0, IMG_SIZE - w)))

    def image_encoder_stages(self, x: Any) -> Dict[str, np.ndarray]:
        """Per-stage encoder outputs for a 1x3x1024x1024 normalised input, in the reference's
        shapes: patch_embed and neck as NCHW, layers.i as (1, H*W, C)."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape != (1, 3, IMG_SIZE, IMG_SIZE):
            raise _C.InputError(f"x must have shape (1, 3, {IMG_SIZE}, {IMG_SIZE}), got {x.shape}")
        raw = x * PIXEL_STD + PIXEL_MEAN  # the core normalises raw pixels itself
        stages = self._aux_predictor()._encoder_stages(raw)
        out: Dict[str, np.ndarray] = {}
        for name, hwc in stages.items():
            if name in ("patch_embed", "neck"):
                out[name] = np.ascontiguousarray(hwc.transpose(2, 0, 1))[None]
            else:
                out[name] = hwc.reshape(1, -1, hwc.shape[-1])
        return out

    def prompt_encoder_forward(self, points: Optional[Tuple[Any, Any]] = None, boxes: Any = None,
                               masks: Any = None) -> Tuple[np.ndarray, np.ndarray]:
        """Like ``sam.prompt_encoder(points=..., boxes=..., masks=...)`` (coordinates in the 1024
        frame): sparse BxTx256 and dense Bx256x64x64 embeddings."""
        coords, labels = points if points is not None else (None, None)
        sparse, dense = self._aux_predictor()._encode_prompts(coords, labels, boxes, masks)
        batch = sparse.shape[0]
        if dense.shape[0] != batch:
            dense = np.broadcast_to(dense, (batch,) + dense.shape[1:])
        return sparse, np.ascontiguousarray(dense)


def weight_spec() -> list:
    """[(name, shape, dtype)] of the tensors a MobileSAM vit_t checkpoint must hold."""
    return _C.weight_spec()


def build_sam_vit_t(checkpoint: Checkpoint = None, device: str = "cpu") -> Sam:
    """MobileSAM vit_t from a checkpoint path (torch zip or legacy, .safetensors, .npz) or a
    mapping of name -> array. ``checkpoint=None`` gives deterministic RANDOM weights (seed 0):
    everything runs, but the masks mean nothing."""
    spec = weight_spec()
    if checkpoint is None:
        warnings.warn("mobile_sam_c: no checkpoint given, the model has random weights (masks are "
                      "meaningless); pass checkpoint='mobile_sam.pt'", RandomWeightsWarning, stacklevel=2)
        state = random_state_dict(spec, seed=0)
    else:
        state = validate_state_dict(load_state_dict(checkpoint), spec)
    return Sam(state, device=device)


def _unsupported(name: str) -> Callable[..., Sam]:
    def build(checkpoint: Checkpoint = None, device: str = "cpu") -> Sam:
        raise NotImplementedError(f"mobile_sam_c implements MobileSAM's 'vit_t' only; '{name}' (the "
                                  "original SAM ViT) is not supported")
    build.__name__ = f"build_sam_{name}"
    return build


sam_model_registry: Dict[str, Callable[..., Sam]] = {
    "default": _unsupported("default"),
    "vit_h": _unsupported("vit_h"),
    "vit_l": _unsupported("vit_l"),
    "vit_b": _unsupported("vit_b"),
    "vit_t": build_sam_vit_t,
}
