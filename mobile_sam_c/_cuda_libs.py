"""_cuda_libs.py - loads the nvidia-cublas wheel's libcublas from wherever it is on sys.path, so the
core's own search (csrc/cuda/backend/cublas_loader.cu: dlopen by name, then the wheel next to this
package) finds it by its soname also when the wheel is elsewhere: an in-place build, a --user install."""
from __future__ import annotations

import ctypes
import importlib.util
import os
import re
from typing import List

_loaded: List[ctypes.CDLL] = []  # kept for the life of the process, as the core keeps its handle


def wheel_libraries() -> List[str]:
    """libcublas.so.N files of the nvidia-* wheels importable here (nvidia/cu13/lib from CUDA 13
    on, nvidia/cublas/lib before), newest major first."""
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        return []
    found = []
    for base in (spec.submodule_search_locations or []) if spec else []:
        for sub in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            lib = os.path.join(base, sub, "lib")
            if os.path.isdir(lib):
                found += [os.path.join(lib, f) for f in os.listdir(lib) if re.fullmatch(r"libcublas\.so\.\d+", f)]
    return sorted(set(found), key=lambda p: -int(p.rsplit(".", 1)[1]))


def preload_cublas() -> bool:
    """Load every wheel's libcublas found (cheap to repeat); whether one loaded."""
    ok = False
    for path in wheel_libraries():
        try:
            _loaded.append(ctypes.CDLL(path))
            ok = True
        except OSError:
            continue
    return ok
