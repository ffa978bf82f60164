"""predictor.py - SamPredictor: the original MobileSAM predictor's API over the C core's
Predictor type (set_image, predict and predict_torch run in C with the GIL released)."""
from __future__ import annotations

import operator
import sys
from typing import Any, Optional, Tuple

import numpy as np

from . import _C, kpi
from .build_sam import Sam
from .host_tensor import HostTensor, host_tensor
from .transforms import ResizeLongestSide

_DLPACK_CPU = 1
_DLPACK_CUDA = 2


def _host_array(x: Any, name: str, gpu_ok: bool = False) -> Any:
    """Any array (NumPy, a torch tensor, anything speaking DLPack or __array__) readable on the
    host, without copying where possible. Arrays on another device are refused by name, except
    GPU arrays where gpu_ok (a CUDA model takes them as they are, through DLPack)."""
    if x is None or isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__dlpack_device__"):
        dev = _dlpack_device(x, name)
        if gpu_ok and dev[0] == _DLPACK_CUDA:
            return x
        if dev[0] != _DLPACK_CPU:
            raise _C.InputError(f"{name} lives on DLPack device {tuple(dev)}; this model runs on the CPU, "
                                "so pass an array in host memory")
        if hasattr(x, "detach"):
            x = x.detach()
        try:
            return np.from_dlpack(x)
        except (TypeError, RuntimeError, BufferError, ValueError):
            pass
    return x


def _dlpack_device(x: Any, name: str) -> Tuple[int, int]:
    """x.__dlpack_device__() as (device type, device id), or an InputError naming the argument."""
    try:
        kind, index = x.__dlpack_device__()
        return operator.index(kind), operator.index(index)
    except Exception as e:
        raise _C.InputError(f"{name}.__dlpack_device__() must return a (device_type, device_id) pair "
                            f"of ints ({type(e).__name__}: {e})") from None


def _is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


class SamPredictor(_C.Predictor):
    """Computes an image embedding once (``set_image``), then masks for many prompts."""

    def __init__(self, sam_model: Sam) -> None:
        if not isinstance(sam_model, Sam):
            raise _C.InputError(f"sam_model must be a mobile_sam_c Sam (from sam_model_registry), got {type(sam_model).__name__}")
        super().__init__(sam_model._core)
        self.model = sam_model
        self.transform = ResizeLongestSide(_C.IMG_SIZE)

    def set_image(self, image: Any, image_format: str = "RGB") -> None:
        """Resize (long side 1024, Pillow-exact), normalise and encode an HxWx3 uint8 image."""
        probe = kpi.start(self)  # None unless someone listens to KPI events
        super().set_image(image, image_format)
        if probe is not None:
            kpi.set_image_done(probe, self, "set_image")

    def set_torch_image(self, transformed_image: Any, original_image_size: Tuple[int, ...]) -> None:
        """Encode a 1x3xHxW image of raw pixel values already resized (long side 1024)."""
        probe = kpi.start(self)  # None unless someone listens to KPI events
        super().set_torch_image(_host_array(transformed_image, "transformed_image"), original_image_size)
        if probe is not None:
            kpi.set_image_done(probe, self, "set_torch_image")

    def set_image_embedding(self, embedding: Any, original_size: Tuple[int, int],
                            input_size: Optional[Tuple[int, int]] = None) -> None:
        """Use a stored 1x256x64x64 embedding (from get_image_embedding) for the image of
        original_size; input_size defaults to the resized size ResizeLongestSide gives."""
        super().set_image_embedding(_host_array(embedding, "embedding"), original_size, input_size)

    def predict(self, point_coords: Any = None, point_labels: Any = None, box: Any = None,
                mask_input: Any = None, multimask_output: bool = True, return_logits: bool = False,
                as_numpy: bool = False, return_low_res: bool = True
                ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """Masks (CxHxW bool, or float logits), IoU predictions (C) and low-res logits
        (Cx256x256, or None when return_low_res=False) for prompts in original-image pixels."""
        probe = kpi.start(self)  # None unless someone listens to KPI events
        outs = super().predict(_host_array(point_coords, "point_coords"), _host_array(point_labels, "point_labels"),
                               _host_array(box, "box"), _host_array(mask_input, "mask_input"),
                               multimask_output, return_logits, as_numpy, return_low_res)
        if probe is not None:
            kpi.predict_done(probe, self, outs, as_numpy, return_low_res)
        return outs

    def predict_torch(self, point_coords: Any, point_labels: Any, boxes: Any = None,
                      mask_input: Any = None, multimask_output: bool = True,
                      return_logits: bool = False, as_numpy: bool = False,
                      return_low_res: bool = True, *, return_masks: bool = True) -> Tuple[Any, Any, Any]:
        """Batched prompts already in the 1024 input frame (BxNx2, BxN, Bx4, Bx1x256x256), one
        decoder pass per set. Torch tensors in give torch tensors out (zero-copy via DLPack).
        return_masks=False skips the post-processing: masks are None (IoU and low-res only)."""
        inputs = (point_coords, point_labels, boxes, mask_input)
        probe = kpi.start(self)  # None unless someone listens to KPI events
        gpu = self.device != "cpu"  # a CUDA model encodes GPU prompts on the GPU
        outs = super().predict_torch(_host_array(point_coords, "point_coords", gpu),
                                     _host_array(point_labels, "point_labels", gpu),
                                     _host_array(boxes, "boxes", gpu), _host_array(mask_input, "mask_input"),
                                     multimask_output, return_logits, as_numpy, return_low_res,
                                     return_masks=return_masks)
        if not as_numpy and any(_is_torch_tensor(x) for x in inputs):
            torch = sys.modules["torch"]
            outs = tuple(None if o is None else torch.from_dlpack(o) for o in outs)  # type: ignore[assignment]
        if probe is not None:
            kpi.predict_done(probe, self, outs, as_numpy, return_low_res)
        return outs

    # -- the original's attributes, for code written against it ----------------------------------

    def get_image_embedding(self) -> HostTensor:
        """The 1x256x64x64 image embedding: a NumPy array that also takes the torch calls code
        written for the original makes (``.cpu().numpy()``, ``.detach()``); see HostTensor."""
        return host_tensor(super().get_image_embedding())

    @property
    def features(self) -> Optional[HostTensor]:
        """The image embedding (as get_image_embedding) or None when no image is set."""
        return host_tensor(super().features)

    @property
    def orig_h(self) -> Optional[int]:
        """Height of the image set (the original declares orig_h/orig_w/input_h/input_w but
        leaves them None; here they hold the sizes), or None."""
        return None if self.original_size is None else self.original_size[0]

    @property
    def orig_w(self) -> Optional[int]:
        return None if self.original_size is None else self.original_size[1]

    @property
    def input_h(self) -> Optional[int]:
        """Height of the image after the resize to a 1024 long side, or None."""
        return None if self.input_size is None else self.input_size[0]

    @property
    def input_w(self) -> Optional[int]:
        return None if self.input_size is None else self.input_size[1]

