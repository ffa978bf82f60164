"""notebooks/quickstart.ipynb runs headless from top to bottom (nbclient, a fresh Python kernel in
the notebooks folder, random weights): a failing cell fails this test, and so CI."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

import mobile_sam_c

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs(monkeypatch):
    # the kernel imports the mobile_sam_c these tests import (an install, or an in-place build)
    package_parent = str(Path(mobile_sam_c.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p))
    monkeypatch.delenv("MOBILE_SAM_C_CHECKPOINT", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []) if out.get("output_type") == "stream")
    assert "RANDOM weights" in text and "device: cpu" in text, text
    assert "masks (3, 534, 800) bool" in text and "box mask (1, 534, 800)" in text, text
    assert "same pixels: True" in text, text
