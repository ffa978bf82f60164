"""The ``python -m mobile_sam_c`` command, run in a subprocess: the masks it writes must be the masks
the Python API gives for the same prompts and (random) weights (negative points, several boxes in a
batch, every multimask output, an image too thin to resize), bad input must exit 2 with one line,
and a source checkout without a compiled core must hand over to the installed copy or say so."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
from PIL import Image

import mobile_sam_c as msc
import reference as R
from mobile_sam_c.build_sam import RandomWeightsWarning
from mobile_sam_c.cli import SAMPLE_IMAGE
from mobile_sam_c.overlay import draw_overlay

# the folder holding the mobile_sam_c these tests import (an install, or an in-place build)
PACKAGE_PARENT = str(Path(msc.__file__).resolve().parents[1])


def run_cli(args: List[str], cwd: Path, python_path: Optional[str] = PACKAGE_PARENT,
            python: Tuple[str, ...] = (sys.executable,)) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MOBILE_SAM_C_CHECKPOINT", "PYTHONPATH")}
    if python_path:
        env["PYTHONPATH"] = python_path
    return subprocess.run([*python, "-m", "mobile_sam_c", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as png:
        written = np.asarray(png.convert("L"))
    assert set(np.unique(written).tolist()) <= {0, 255}, f"{path.name}: mask is not binary"
    return written == 255


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
    "negative-point": (None, ["--point", "-5,-5"], dict(point_coords=[[-5.0, -5.0]], point_labels=[1])),
    "zidane-points-box": (R.image_path("zidane.jpg"),
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
    written = read_mask(out)
    expected = api_mask(predictor, src, api_prompt)
    assert np.array_equal(written, expected), (
        f"{name}: {int((written != expected).sum())} pixels differ from the API's mask")


def test_cli_batches_several_boxes_and_writes_every_mask(tmp_path: Path, predictor: msc.SamPredictor) -> None:
    boxes = [[10, 10, 300, 300], [400, 100, 700, 500], [0, 200, 800, 534]]
    point = [200.0, 250.0]
    args = [f"--box={','.join(map(str, b))}" for b in boxes] + ["--point", "200,250", "--all-masks",
                                                                  "--out", "m.png", "--overlay", "o.jpg"]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    with Image.open(SAMPLE_IMAGE) as im:
        image = np.asarray(im.convert("RGB"))
        predictor.set_image(image)
    size = image.shape[:2]
    t = predictor.transform
    masks, iou, _ = predictor.predict_torch(
        np.repeat(t.apply_coords(np.array([point]), size)[None], 3, 0).astype(np.float32),
        np.ones((3, 1), np.int64), boxes=t.apply_boxes(np.array(boxes, np.float64), size).astype(np.float32),
        as_numpy=True)
    assert masks.shape == (3, 3) + size
    for b in range(3):
        for k in range(3):
            assert np.array_equal(read_mask(tmp_path / f"m-box{b + 1}-{k + 1}.png"), masks[b, k]), (b, k)
    union = np.logical_or.reduce([masks[b, int(np.argmax(iou[b]))] for b in range(3)])
    assert np.array_equal(read_mask(tmp_path / "m.png"), union)
    assert proc.stdout.count("IoU-pred") == 3, proc.stdout
    # the overlay: the photo tinted where the union is, prompts drawn, written as the JPEG asked for
    with Image.open(tmp_path / "o.jpg") as ov:
        assert ov.format == "JPEG" and ov.size == (size[1], size[0])
    picture = np.asarray(draw_overlay(image, union, [(200.0, 250.0, 1)], [tuple(map(float, b)) for b in boxes]))
    far = np.ones(size, bool)  # pixels away from the drawn prompts
    far[240:261, 190:211] = False
    for x0, y0, x1, y1 in boxes:
        far[max(0, y0 - 3):y1 + 4, max(0, x0 - 3):x0 + 4] = far[max(0, y0 - 3):y1 + 4, max(0, x1 - 3):x1 + 4] = False
        far[max(0, y0 - 3):y0 + 4, max(0, x0 - 3):x1 + 4] = far[max(0, y1 - 3):y1 + 4, max(0, x0 - 3):x1 + 4] = False
    assert np.array_equal(picture[far & ~union], image[far & ~union])
    assert (picture[far & union] != image[far & union]).any(axis=-1).mean() > 0.95


def test_cli_segments_an_image_too_thin_to_resize(tmp_path: Path, predictor: msc.SamPredictor) -> None:
    image = R.random_image(1, 3000, seed=11)
    Image.fromarray(image).save(tmp_path / "thin.png")
    proc = run_cli(["thin.png", "--point", "1500,0", "--out", "m.png"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "too thin" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    with pytest.raises(msc.InputError):  # the API (like the original) refuses it as it is
        predictor.set_image(image)
    predictor.set_image(np.pad(image, ((0, 1), (0, 0), (0, 0))))  # what the CLI says it does
    masks, iou, _ = predictor.predict(point_coords=np.array([[1500.0, 0.0]]), point_labels=np.array([1]))
    assert np.array_equal(read_mask(tmp_path / "m.png"), masks[int(np.argmax(iou))][:1])


def test_cli_writes_the_format_its_extension_names(tmp_path: Path) -> None:
    proc = run_cli(["--out", "m.bmp", "--single", "--all-masks"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "m.bmp") as im, Image.open(tmp_path / "m-1.bmp") as one:
        assert im.format == one.format == "BMP"
    assert np.array_equal(read_mask(tmp_path / "m.bmp"), read_mask(tmp_path / "m-1.bmp"))
    assert not (tmp_path / "m-2.bmp").exists()


def test_cli_version(tmp_path: Path) -> None:
    proc = run_cli(["--version"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"mobile-sam-c {msc.__version__}", proc


def _checkout_without_core(tmp_path: Path) -> Path:
    """A copy of the package's Python files alone, as a fresh clone has them (no compiled _C)."""
    root = tmp_path / "checkout"
    shutil.copytree(Path(msc.__file__).parent, root / "mobile_sam_c",
                    ignore=shutil.ignore_patterns("_C.*", "*.so", "*.pyd", "__pycache__"))
    return root


def test_checkout_without_core_hands_over_to_the_installed_copy(tmp_path: Path) -> None:
    """`pip install . && python -m mobile_sam_c` run in the checkout's root (README step 1)."""
    root = _checkout_without_core(tmp_path)
    proc = run_cli(["--out", "mask.png"], root)  # the install is on PYTHONPATH, the checkout first
    assert proc.returncode == 0, proc.stderr
    assert (root / "mask.png").is_file() and "Traceback" not in proc.stderr, proc.stderr
    code = "import mobile_sam_c, mobile_sam_c.cli as c; print(mobile_sam_c.__file__); print(c.__file__)"
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT)
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    installed = str(Path(msc.__file__).resolve().parent)
    assert all(str(Path(f).resolve()).startswith(installed) for f in out.stdout.split()), out.stdout


def test_checkout_without_core_and_no_install_says_what_to_run(tmp_path: Path) -> None:
    root = _checkout_without_core(tmp_path)
    # no site-packages (-S) and no PYTHONPATH (-E): only the checkout can be found
    proc = run_cli(["--out", "mask.png"], root, python_path=None, python=(sys.executable, "-S", "-E"))
    assert proc.returncode != 0 and not (root / "mask.png").exists()
    last = proc.stderr.strip().splitlines()[-1]
    assert "mobile_sam_c._C is missing" in last and "pip install ." in last, proc.stderr


BAD_ARGUMENTS = [
    (["no/such/photo.jpg"], "image not found"),
    ([".."], "is a directory"),
    (["--out", "m.jpg"], "lossy"),
    (["--out", "m.txt"], "--out"),
    (["--overlay", "o.xyz"], "--overlay"),
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
    assert len(proc.stderr.strip().splitlines()) == 1 or "usage:" in proc.stderr, proc.stderr
    assert not (tmp_path / "mask.png").exists() and not (tmp_path / "m.jpg").exists()
