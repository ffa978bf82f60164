"""host_tensor.py - HostTensor, the NumPy array that ``get_image_embedding()`` and ``features`` return:
it also answers the torch.Tensor calls that code written for the original makes on the embedding
(``.cpu().numpy()``, ``.detach()``, ``.clone()``, ``.to("cpu")``), so that code runs unchanged
without this package importing PyTorch."""
from __future__ import annotations

from typing import Any

import numpy as np


class HostTensor(np.ndarray):
    """An ndarray in host memory with a few torch.Tensor methods. Everything NumPy does with an
    ndarray works as usual; ``.numpy()`` gives the plain ndarray (the same memory)."""

    def cpu(self) -> "HostTensor":
        """Already in host memory: itself, as ``tensor.cpu()`` is for a CPU tensor."""
        return self

    def detach(self) -> "HostTensor":
        return self

    def numpy(self, force: bool = False) -> np.ndarray:
        """The same memory as a plain np.ndarray."""
        return self.view(np.ndarray)

    def clone(self) -> "HostTensor":
        return self.copy()

    def to(self, device: Any = None, *args: Any, **kwargs: Any) -> "HostTensor":
        """``.to('cpu')`` (or a torch.device('cpu')) is itself; any other device is refused."""
        if device is not None and str(device).split(":", 1)[0] != "cpu":
            raise ValueError(f"device {str(device)!r}: this array lives in host memory; use "
                             "torch.from_numpy(array.numpy()).to(device) to move it")
        return self

    def dim(self) -> int:
        return self.ndim

    def __reduce__(self) -> Any:
        """Pickled (and so sent between processes) as a plain ndarray: loading it needs NumPy only."""
        return self.view(np.ndarray).__reduce__()


def host_tensor(array: Any) -> Any:
    """``array`` viewed as a HostTensor (None stays None); shares its memory."""
    return None if array is None else np.asarray(array).view(HostTensor)
