"""mobile_sam_c - MobileSAM (Segment Anything with a TinyViT encoder) whose whole forward pass runs
in a C core. A drop-in for ``mobile_sam``: same registry, SamPredictor and ResizeLongestSide."""
from __future__ import annotations

import os as _os

# The one version string: pyproject.toml reads it from here (tool.setuptools.dynamic).
__version__ = "0.1.0"

from ._handoff import has_compiled_core as _has_compiled_core  # noqa: E402

if not _has_compiled_core(__path__):
    # A source checkout without a build (e.g. `pip install . && python -m mobile_sam_c` run in the
    # checkout's root): the installed copy takes over, or a one-line ImportError says what to run.
    from ._handoff import hand_over_to_installed_copy as _hand_over

    _hand_over(__name__, _os.path.dirname(_os.path.abspath(__file__)), __version__)
else:
    from ._C import InputError, cpu_isa, get_num_threads, set_num_threads
    from .build_sam import Sam, build_sam_vit_t, sam_model_registry
    from .checkpoint import CheckpointError
    from .predictor import SamPredictor
    from .automatic_mask_generator import SamAutomaticMaskGenerator
    from .transforms import ResizeLongestSide

__all__ = [
    "CheckpointError",
    "InputError",
    "ResizeLongestSide",
    "Sam",
    "SamAutomaticMaskGenerator",
    "SamPredictor",
    "__version__",
    "build_sam_vit_t",
    "cpu_isa",
    "get_num_threads",
    "sam_model_registry",
    "set_num_threads",
]
