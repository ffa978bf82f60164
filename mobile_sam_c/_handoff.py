"""_handoff.py - what ``import mobile_sam_c`` does in a source checkout that has no compiled core:
hand the whole import over to the installed copy, or say in one line what to run.

Why: the README's ``pip install . && python -m mobile_sam_c`` runs in the checkout's root, where
Python finds the source folder ``mobile_sam_c/`` before the installed package, and a plain build
leaves the compiled ``_C`` only in the installed copy. We do not make the build drop a ``_C`` into
the source tree as well: that copy would go stale as soon as the C sources change, silently
shadowing a fresher install. Instead the installed copy is imported in full (its Python files and
its ``_C`` together, so the two always match) and registered under the package's name.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import warnings
from types import ModuleType
from typing import List, Optional, Sequence


def has_compiled_core(package_dirs: Sequence[str]) -> bool:
    """Whether one of the package's folders holds the compiled extension ``_C``."""
    return importlib.machinery.PathFinder.find_spec("_C", list(package_dirs)) is not None


def _same_dir(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a or os.curdir, b)
    except OSError:
        return False


def _installed_package_dir(name: str, source_dir: str) -> Optional[str]:
    """The first folder ``name`` on sys.path, other than the source tree, with a compiled ``_C``."""
    checkout = os.path.dirname(source_dir)
    entries: List[str] = [p for p in sys.path if isinstance(p, str) and not _same_dir(p, checkout)]
    for entry in entries:
        spec = importlib.machinery.PathFinder.find_spec(name, [entry])
        dirs = list(spec.submodule_search_locations or []) if spec is not None else []
        if dirs and not any(_same_dir(d, source_dir) for d in dirs) and has_compiled_core(dirs):
            return dirs[0]
    return None


def hand_over_to_installed_copy(name: str, source_dir: str, source_version: str) -> ModuleType:
    """Import the installed copy of package ``name`` in place of the source tree at
    ``source_dir`` (it replaces ``sys.modules[name]``), or raise a one-line ImportError."""
    installed = _installed_package_dir(name, source_dir)
    if installed is None:
        raise ImportError(
            f"{name}: the compiled core {name}._C is missing: {source_dir} is a source checkout "
            f"and no installed copy was found; run `pip install .` (or build in place with "
            f"`python setup.py build_ext --inplace`)", name=f"{name}._C")
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(installed, "__init__.py"), submodule_search_locations=[installed])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    installed_version = getattr(module, "__version__", "?")
    if installed_version != source_version:
        warnings.warn(f"{name}: running the installed {installed_version} from {installed}, not this "
                      f"checkout's {source_version} (it has no compiled core); reinstall with `pip install .`",
                      RuntimeWarning, stacklevel=3)
    return module
