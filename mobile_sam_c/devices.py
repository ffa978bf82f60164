"""devices.py - which devices this build of mobile_sam_c can run a model on, checked in this one
place (``sam.to``, ``sam.cuda``, ``build_sam_vit_t(device=...)``), so the CUDA backend can relax it."""
from __future__ import annotations

from typing import Any, Tuple

from ._C import CUDA_BUILT, InputError

# The devices the compiled core can compute on in this build (the registry's, csrc/registry).
AVAILABLE_DEVICES: Tuple[str, ...] = ("cpu", "cuda") if CUDA_BUILT else ("cpu",)


def device_name(device: Any) -> str:
    """'cpu' / 'cuda' for a device given as a string ('cpu', 'cuda:0'), a torch.device or None
    (the CPU); an InputError naming the device when this build cannot run a model on it."""
    text = "cpu" if device is None else str(device)
    kind = text.split(":", 1)[0].strip().lower()
    if kind not in AVAILABLE_DEVICES:
        raise InputError(f"device {text!r} is not available: this build of mobile_sam_c computes on "
                         f"{' and '.join(repr(d) for d in AVAILABLE_DEVICES)} only (this build has no CUDA "
                         "backend); use device='cpu'")
    return kind


def is_dtype(value: Any) -> bool:
    """Whether ``value`` is a torch.dtype (``sam.to(torch.float32)`` passes one where a device goes)."""
    return type(value).__name__ == "dtype" and type(value).__module__ == "torch"
