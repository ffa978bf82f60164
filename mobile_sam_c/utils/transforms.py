"""utils/transforms.py - ``mobile_sam_c.utils.transforms.ResizeLongestSide``, the module path code
written for the original imports (``from mobile_sam.utils.transforms import ResizeLongestSide``)."""
from ..transforms import ResizeLongestSide

__all__ = ["ResizeLongestSide"]
