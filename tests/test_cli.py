"""The ``python -m mobile_sam_c`` command, run in a subprocess: the PNG it writes must be the mask
the Python API gives for the same prompt and (random) weights, and bad input must exit 2 cleanly."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
from PIL import Image

import mobile_sam_c as msc
from mobile_sam_c.build_sam import RandomWeightsWarning
from mobile_sam_c.cli import SAMPLE_IMAGE

IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "images"


def run_cli(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MOBILE_SAM_C_CHECKPOINT"}
    return subprocess.run([sys.executable, "-m", "mobile_sam_c", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def predictor() -> msc.SamPredictor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        model = msc.sam_model_registry["vit_t"](checkpoint=None)
    return msc.SamPredictor(model)


def api_mask(pred: msc.SamPredictor, image: Path, prompt: Dict[str, list]) -> np.ndarray:
    with Image.open(image) as im:
        pred.set_image(np.asarray(im.convert("RGB")))
    masks, iou, _ = pred.predict(**{k: np.array(v) for k, v in prompt.items()}, as_numpy=True)
    return masks[int(np.argmax(iou))]


# name: (image or None for the bundled sample, CLI prompt arguments, the same prompt for predict)
CASES: Dict[str, Tuple[Optional[Path], List[str], Dict[str, list]]] = {
    "sample-default-prompt": (None, [], dict(point_coords=[[400.0, 267.0]], point_labels=[1])),
    "zidane-points-box": (IMAGES / "zidane.jpg",
                          ["--point", "640,400", "--point", "300,200,0", "--box", "500,100,900,700"],
                          dict(point_coords=[[640.0, 400.0], [300.0, 200.0]], point_labels=[1, 0],
                               box=[500.0, 100.0, 900.0, 700.0])),
}


@pytest.mark.parametrize("name", list(CASES))
def test_cli_mask_matches_api(tmp_path: Path, predictor: msc.SamPredictor, name: str) -> None:
    image, prompt, api_prompt = CASES[name]
    out = tmp_path / "mask.png"
    threads = msc.get_num_threads()  # the CLI runs at the thread count the API runs at here
    args = ([] if image is None else [str(image)]) + prompt + ["--out", str(out), "--threads", str(threads)]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "RANDOM" in proc.stderr and "MOBILE_SAM_C_CHECKPOINT" in proc.stderr, proc.stderr
    assert "IoU" in proc.stdout and f"{threads} threads" in proc.stdout, proc.stdout

    src = image or SAMPLE_IMAGE
    with Image.open(out) as png, Image.open(src) as im:
        assert png.format == "PNG" and png.size == im.size, (png.size, im.size)
        written = np.asarray(png.convert("L"))
    assert set(np.unique(written).tolist()) <= {0, 255}, f"{name}: mask is not binary"
    expected = api_mask(predictor, src, api_prompt)
    assert np.array_equal(written == 255, expected), (
        f"{name}: {int(((written == 255) != expected).sum())} pixels differ from the API's mask")


BAD_ARGUMENTS = [
    (["no/such/photo.jpg"], "image not found"),
    (["--point", "10"], "--point"),
    (["--point", "1,2,5"], "LABEL"),
    (["--point", "a,b"], "--point"),
    (["--box", "1,2,3"], "--box"),
    (["--box", "9,9,1,1"], "--box"),
    (["--threads", "0"], "--threads"),
    (["--checkpoint", "no/such/mobile_sam.pt"], "checkpoint not found"),
]


@pytest.mark.parametrize("args,needle", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_cli_bad_arguments_exit_2(tmp_path: Path, args: List[str], needle: str) -> None:
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "mask.png").exists()
