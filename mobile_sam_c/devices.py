"""devices.py - which devices a model can be made on here, checked in this one place (``Sam(...)``,
``sam.to``, ``sam.cuda``, ``build_sam_vit_t(device=...)``): the name, then for CUDA this build and
this machine, with an InputError that says what is missing and how to get it."""
from __future__ import annotations

from typing import Any, Tuple

from ._C import CUDA_BUILT, InputError, check_device

# The devices the compiled core can compute on in this build (the registry's, csrc/registry);
# "cuda" also needs a GPU, its driver and cuBLAS when a model is made (check_device).
AVAILABLE_DEVICES: Tuple[str, ...] = ("cpu", "cuda") if CUDA_BUILT else ("cpu",)

_NO_CUDA_BUILD = ("CUDA is not built into this mobile_sam_c (no CUDA toolkit was found when it was built, or "
                  "MOBILE_SAM_C_CUDA=0); to get it, install a CUDA toolkit, set CUDA_HOME or put nvcc on PATH, "
                  "and reinstall from source (pip install . in a checkout); use device='cpu' meanwhile")


def _check_cuda(text: str) -> None:
    """InputError naming device text when no CUDA model can be made here (no driver or GPU, cuBLAS
    missing); tries the nvidia-cublas wheel from sys.path before giving up on cuBLAS."""
    try:
        check_device("cuda")
        return
    except InputError as e:
        why = str(e)
    if why.startswith("cuBLAS"):
        from ._cuda_libs import preload_cublas

        if preload_cublas():
            try:
                check_device("cuda")
                return
            except InputError as e:
                why = str(e)
    raise InputError(f"device {text!r} is not available: {why}")


def device_name(device: Any) -> str:
    """'cpu' / 'cuda' for a device given as a string ('cpu', 'cuda:0'), a torch.device or None
    (the CPU); an InputError naming the device when no model can be made on it here."""
    text = "cpu" if device is None else str(device)
    kind = text.split(":", 1)[0].strip().lower()
    if kind == "cuda" and not CUDA_BUILT:
        raise InputError(f"device {text!r} is not available: {_NO_CUDA_BUILD}")
    if kind not in AVAILABLE_DEVICES:
        raise InputError(f"device {text!r} is not available: this build of mobile_sam_c computes on "
                         f"{' and '.join(repr(d) for d in AVAILABLE_DEVICES)} only; use device='cpu'")
    if kind == "cuda":
        _check_cuda(text)
    return kind


def is_dtype(value: Any) -> bool:
    """Whether ``value`` is a torch.dtype (``sam.to(torch.float32)`` passes one where a device goes)."""
    return type(value).__name__ == "dtype" and type(value).__module__ == "torch"
