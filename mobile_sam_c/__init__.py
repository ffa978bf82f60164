"""mobile_sam_c - MobileSAM (Segment Anything with a TinyViT encoder) whose whole forward pass runs
in a C core. A drop-in for ``mobile_sam``: same registry, SamPredictor and ResizeLongestSide."""
from __future__ import annotations

from ._C import InputError, cpu_isa, get_num_threads, set_num_threads
from .build_sam import Sam, build_sam_vit_t, sam_model_registry
from .checkpoint import CheckpointError
from .predictor import SamPredictor
from .automatic_mask_generator import SamAutomaticMaskGenerator
from .transforms import ResizeLongestSide

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "InputError",
    "ResizeLongestSide",
    "Sam",
    "SamAutomaticMaskGenerator",
    "SamPredictor",
    "build_sam_vit_t",
    "cpu_isa",
    "get_num_threads",
    "sam_model_registry",
    "set_num_threads",
]
