"""build_sam.py - the model registry (``sam_model_registry["vit_t"](checkpoint=...)``) and ``Sam``, the
loaded model: checkpoint read and validated in Python, weights converted once by the C core."""
from __future__ import annotations

import os
import sys
import warnings
from collections import OrderedDict
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from . import _C
from .checkpoint import load_state_dict, validate_state_dict
from .devices import device_name, is_dtype
from .random_weights import random_state_dict
from .sam_parts import ImageEncoder, MaskDecoder, PromptEncoder

# the model's input side and pixel statistics, from their one home (csrc/include/msam.h)
IMG_SIZE = _C.IMG_SIZE
PIXEL_MEAN = np.array(_C.PIXEL_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
PIXEL_STD = np.array(_C.PIXEL_STD, dtype=np.float32).reshape(1, 3, 1, 1)

Checkpoint = Union[None, str, "os.PathLike[str]", Mapping[str, Any]]


class RandomWeightsWarning(UserWarning):
    """The model was built without a checkpoint: its masks are meaningless."""


def _is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


class Sam:
    """A loaded MobileSAM vit_t model (weights converted for the C core, read-only, shareable).
    Stands where the original's ``Sam`` module stands: the same attributes user code reads, and
    ``to`` / ``cuda`` / ``cpu`` moving it between devices and ``eval`` (a clear error for a device
    that cannot be used here)."""

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(self, weights: Mapping[str, np.ndarray], device: str = "cpu",
                 state_source: Optional[Callable[[], Dict[str, np.ndarray]]] = None) -> None:
        self._core = _C.Model(dict(weights), device_name(device))
        self.image_encoder = ImageEncoder(self)
        self.prompt_encoder = PromptEncoder(self)
        self.mask_decoder = MaskDecoder()
        self.pixel_mean = PIXEL_MEAN.reshape(3, 1, 1).copy()
        self.pixel_std = PIXEL_STD.reshape(3, 1, 1).copy()
        self._aux: Optional[_C.Predictor] = None
        # state_dict() reads the weights again from where they came rather than keeping a
        # second copy of them alive next to the core's converted one.
        self._state_source = state_source

    @property
    def device(self) -> str:
        return self._core.device

    # -- torch.nn.Module's calls that drop-in code makes --------------------------------------

    def to(self, device: Any = None, dtype: Any = None, non_blocking: bool = False) -> "Sam":
        """Like ``module.to(device)``: the model moves to the device (its weights read again from
        where they came and converted there; predictors made before keep the old device); a device
        that cannot be used here raises InputError saying why. Only float32 is a dtype."""
        if is_dtype(device):
            device, dtype = None, device
        if dtype is not None and str(dtype).replace("torch.", "") != "float32":
            raise _C.InputError(f"dtype must be float32 (the C core computes in float32), got {dtype}")
        kind = None if device is None else device_name(device)  # InputError: what is missing for it here
        if kind is not None and kind != self.device:
            if self._state_source is None:
                raise _C.InputError(f"cannot move a model loaded on {self.device!r} to {str(device)!r}: it was built "
                                    "from weights it did not keep; build it there: "
                                    f"sam_model_registry['vit_t'](checkpoint, device={str(device)!r})")
            self._core = _C.Model(self._state_source(), kind)
            self._aux = None
        return self

    def cpu(self) -> "Sam":
        return self.to("cpu")

    def cuda(self, device: Any = None) -> "Sam":
        return self.to("cuda" if device is None else f"cuda:{device}" if isinstance(device, int) else device)

    def eval(self) -> "Sam":
        """No-op: the C core always computes in inference mode (BatchNorm folded, no dropout)."""
        return self

    def train(self, mode: bool = True) -> "Sam":
        if mode:
            raise _C.InputError("mode=True: mobile_sam_c runs inference only; it cannot be trained")
        return self

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """The weights as NumPy arrays by their MobileSAM names (``torch.from_numpy`` each to load
        them into the original), without the unused classifier head."""
        if self._state_source is None:
            raise _C.InputError("this Sam was built from weights it did not keep; build it with "
                                "sam_model_registry['vit_t'](checkpoint=...)")
        return OrderedDict(self._state_source())

    def postprocess_masks(self, masks: Any, input_size: Tuple[int, ...], original_size: Tuple[int, ...]) -> Any:
        """Like ``Sam.postprocess_masks``: BxCx256x256 low-res logits -> BxCxHxW logits at the
        original size (bilinear to 1024, crop to input_size, bilinear to original_size). A torch
        tensor in gives a torch tensor out."""
        torch_in = _is_torch_tensor(masks)
        low = np.asarray(masks.detach().cpu().numpy() if torch_in else masks, dtype=np.float32)
        if low.ndim != 4:
            raise _C.InputError(f"masks must have shape (B, C, H, W), got {low.shape}")
        ih, iw = (int(v) for v in input_size)
        oh, ow = (int(v) for v in original_size)
        out = np.empty(low.shape[:2] + (oh, ow), dtype=np.float32)
        for b in range(low.shape[0]):
            for c in range(low.shape[1]):
                full = _C._resize_bilinear_f32(low[b, c], IMG_SIZE, IMG_SIZE, ih, iw)
                out[b, c] = _C._resize_bilinear_f32(full, oh, ow)
        if torch_in:
            return sys.modules["torch"].from_numpy(out)
        return out

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

        def read() -> Dict[str, np.ndarray]:
            return random_state_dict(spec, seed=0)
    else:
        def read() -> Dict[str, np.ndarray]:
            return validate_state_dict(load_state_dict(checkpoint), spec)
    return Sam(read(), device=device, state_source=read)


def _unsupported(name: str) -> Callable[..., Sam]:
    def build(checkpoint: Checkpoint = None, device: str = "cpu") -> Sam:
        raise NotImplementedError(f"mobile_sam_c implements MobileSAM's 'vit_t' only; '{name}' (the "
                                  "original SAM ViT) is not supported")
    build.__name__ = f"build_sam_{name}"
    return build


build_sam_vit_h = _unsupported("vit_h")
build_sam_vit_l = _unsupported("vit_l")
build_sam_vit_b = _unsupported("vit_b")
build_sam = build_sam_vit_h  # as in the original, where build_sam is the vit_h builder

sam_model_registry: Dict[str, Callable[..., Sam]] = {
    "default": _unsupported("default"),
    "vit_h": build_sam_vit_h,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
    "vit_t": build_sam_vit_t,
}
