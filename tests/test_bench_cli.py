"""``mobile-sam-c bench``: ``--quick --json`` run in a subprocess, its report checked row by row
and field by field against direct measurements in this process (transfer counts, output bytes),
plus the command's dispatch, argument errors, the progress bar and the memory measure."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
from PIL import Image

import mobile_sam_c as msc
from mobile_sam_c import _C, bench, cli
from mobile_sam_c.build_sam import RandomWeightsWarning

REPEAT, IMAGE_REPEAT = 3, 1


def has_cuda_backend() -> bool:
    """Whether a model can be made on "cuda" here: a CUDA build on a machine with a GPU."""
    try:
        _C.check_device("cuda")
    except msc.InputError:
        return False
    return True


# why the bench has no "cuda" rows when has_cuda_backend() is False: the build, or the machine
NO_CUDA_REASON = "no CUDA backend" if not _C.CUDA_BUILT else "is not available"


def has_module(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def run_bench(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()  # no checkpoint, no alert settings from this shell
           if k not in ("MOBILE_SAM_C_CHECKPOINT", "MOBILE_SAM_C_PRODUCTION") and not k.startswith("MOBILE_SAM_C_KPI")}
    package_root = str(Path(msc.__file__).resolve().parents[1])  # the in-place build under test
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-m", "mobile_sam_c", "bench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory) -> Dict[str, Any]:
    tmp = tmp_path_factory.mktemp("bench")
    args = ["--quick", "--json", str(tmp / "report.json"), "--threads", str(msc.get_num_threads()),
            "--repeat", str(REPEAT), "--image-repeat", str(IMAGE_REPEAT)]
    if has_module("matplotlib"):
        args += ["--plot", str(tmp / "report.png")]
    proc = run_bench(args, tmp)
    assert proc.returncode == 0, proc.stderr
    return {"proc": proc, "report": json.loads((tmp / "report.json").read_text()), "tmp": tmp}


@pytest.fixture(scope="module")
def direct() -> Dict[str, Any]:
    """The same model, image and prompt as the bench, measured here: d2h copies and output bytes
    of one predict per mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        model = msc.sam_model_registry["vit_t"](checkpoint=None)
    p = msc.SamPredictor(model)
    with Image.open(bench.SAMPLE_IMAGE) as im:
        image = np.asarray(im.convert("RGB"))
    p.set_image(image)
    h, w = image.shape[:2]
    prompt = dict(point_coords=np.array([[w / 2, h / 2]]), point_labels=np.array([1]))
    p.predict(**prompt)  # the first predict after set_image also caches the image's share
    out = {}
    for mode, as_numpy, low in bench.MODES:
        before = p.transfer_counts()["d2h"]
        res = p.predict(**prompt, as_numpy=as_numpy, return_low_res=low)
        out[mode] = {"d2h": p.transfer_counts()["d2h"] - before,
                     "bytes": sum(0 if r is None else r.nbytes for r in res)}
    return out


def test_report_rows_and_fields(bench_run, direct):
    report = bench_run["report"]
    assert report["schema"] == bench.SCHEMA
    rows = report["rows"]
    for r in rows:
        assert set(r) == set(bench.ROW_FIELDS), r
    # every device: the four modes (GPU-resident first, legacy last) then set_image; PyTorch after
    expected = []
    for device in bench.DEVICES:
        expected += [(device, bench.OURS, "predict", m) for m, _, _ in bench.MODES]
        expected += [(device, bench.OURS, "set_image", None), (device, bench.PYTORCH, "predict", "legacy"),
                     (device, bench.PYTORCH, "set_image", None)]
    assert [(r["device"], r["impl"], r["call"], r["mode"]) for r in rows] == expected
    assert bench.MODES[0] == ("gpu-resident", False, False) and bench.MODES[-1] == ("legacy", True, True)

    cuda = [r for r in rows if r["device"] == "cuda"]
    if not has_cuda_backend():
        for r in cuda:
            assert r["status"] == "absent" and NO_CUDA_REASON in r["reason"]
            assert r["median_ms"] is None and r["samples_ms"] == []

    cpu = {(r["impl"], r["call"], r["mode"]): r for r in rows if r["device"] == "cpu"}
    legacy = cpu[(bench.OURS, "predict", "legacy")]
    for r in cpu.values():
        assert r["status"] == "measured" and r["reason"] is None, r
        n = REPEAT if r["call"] == "predict" else IMAGE_REPEAT
        assert r["n"] == n == len(r["samples_ms"])
        assert r["median_ms"] == pytest.approx(float(np.median(r["samples_ms"])))
        assert r["p95_ms"] == pytest.approx(float(np.percentile(r["samples_ms"], 95)))
        assert 0 < min(r["samples_ms"]) <= r["median_ms"] <= r["p95_ms"] <= max(r["samples_ms"])
        assert r["memory_per_call_bytes"] >= r["output_bytes"] >= 0
        ref = cpu[(bench.PYTORCH, r["call"], "legacy" if r["call"] == "predict" else None)]
        assert r["vs_pytorch"] == pytest.approx(ref["median_ms"] / r["median_ms"])
        if r["call"] == "predict":
            assert r["speedup_vs_legacy"] == pytest.approx(legacy["median_ms"] / r["median_ms"])
        else:
            assert r["speedup_vs_legacy"] is None
    assert legacy["speedup_vs_legacy"] == pytest.approx(1.0)
    for mode, as_numpy, low in bench.MODES:
        r = cpu[(bench.OURS, "predict", mode)]
        assert (r["as_numpy"], r["return_low_res"]) == (int(as_numpy), int(low))
        assert r["transfers_per_frame"] == direct[mode]["d2h"]  # the core's counters, per call
        assert r["output_bytes"] == direct[mode]["bytes"]
    assert cpu[(bench.OURS, "set_image", None)]["transfers_per_frame"] >= 0
    assert cpu[(bench.PYTORCH, "predict", "legacy")]["transfers_per_frame"] is None  # not counted
    # the low-res logits cost their bytes: 3 x 256 x 256 float32 more per call
    assert cpu[(bench.OURS, "predict", "legacy")]["output_bytes"] - \
        cpu[(bench.OURS, "predict", "numpy, no low-res")]["output_bytes"] == 3 * 256 * 256 * 4


def test_report_header_and_overhead(bench_run):
    report = bench_run["report"]
    h = report["header"]
    for key in ("machine", "load_average", "cpu_isa", "threads", "device", "weights", "date", "image", "prompt",
                "quick", "versions", "memory_method", "transfers_method"):
        assert h[key] not in (None, ""), key
    assert h["cpu_isa"] == msc.cpu_isa()
    assert h["threads"] == msc.get_num_threads()
    assert h["device"] == ("cuda, cpu" if has_cuda_backend() else "cpu")
    assert h["weights"].startswith("random") and h["quick"] is True
    (o,) = report["kpi_overhead"]
    assert o["device"] == "cpu" and o["n"] == REPEAT and o["events_received"] == REPEAT
    assert o["without_listener_median_ms"] > 0 and o["with_sink_median_ms"] > 0
    assert o["nobody_listening"] is True  # a fresh process without MOBILE_SAM_C_* alert settings
    assert o["idle_check_us"] > 0 and o["event_to_sink_us"] > 0


def test_markdown_on_stdout(bench_run):
    out = bench_run["proc"].stdout
    report = bench_run["report"]
    assert out.startswith("# mobile_sam_c bench (--quick")
    for key in ("machine", "CPU ISA", "device", "weights", "date"):
        assert f"- {key}: " in out
    table = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| device")]
    assert len(table) == len(report["rows"])
    for line, r in zip(table, report["rows"]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:3] == [r["device"], r["impl"], r["call"]]
        if r["status"] == "measured":
            assert float(cells[4]) == pytest.approx(r["median_ms"], abs=0.006)
        else:
            assert cells[4].startswith("absent [")
    if not has_cuda_backend():
        assert ("this build has no CUDA backend" if not _C.CUDA_BUILT else NO_CUDA_REASON) in out
    assert "with nobody listening" in out


def test_plot_or_clean_error(bench_run, tmp_path):
    if has_module("matplotlib"):
        with Image.open(bench_run["tmp"] / "report.png") as im:
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    else:
        proc = run_bench(["--quick", "--plot", str(tmp_path / "x.png")], tmp_path)
        assert proc.returncode == 2 and "matplotlib" in proc.stderr and not (tmp_path / "x.png").exists()


def test_cli_dispatches_bench(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--help"])
    assert e.value.code == 0
    assert "mobile-sam-c bench" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--repeat", "0"], "--repeat must be a positive integer"),
    (["--threads", "-2"], "--threads must be a positive integer"),
    (["--image", "/nonexistent/photo.jpg"], "--image: file not found"),
    (["--checkpoint", "/nonexistent/mobile_sam.pt"], "--checkpoint: file not found"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_bench_argument_errors(capsys, args, message):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", *args])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_unreadable_inputs(capsys, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    assert cli.main(["bench", "--quick", "--checkpoint", str(junk)]) == 2
    assert f"cannot load checkpoint {junk}" in capsys.readouterr().err
    assert cli.main(["bench", "--quick", "--image", str(junk)]) == 2
    assert f"cannot read image {junk}" in capsys.readouterr().err


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(monkeypatch):
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    bar = bench.Progress(4, enabled=True)
    bar.step("cpu predict legacy")
    assert "\rbench [" in tty.getvalue() and "1/4" in tty.getvalue() and "cpu predict legacy" in tty.getvalue()
    bar.close()
    quiet = FakeTTY()
    monkeypatch.setattr(sys, "stderr", quiet)
    bench.Progress(4, enabled=False).step("x")  # --no-progress
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    bench.Progress(4, enabled=True).step("x")  # not a terminal
    assert quiet.getvalue() == "" and pipe.getvalue() == ""


class DeviceBuffer:
    """Stands for an output in device memory: bytes that tracemalloc cannot see."""

    nbytes = 12345


class ShapedBuffer:
    """An array type with a shape and a dtype but no nbytes (a bare DLPack-style array)."""

    shape = (2, 3)
    dtype = "float16"


def test_memory_of_call():
    memory, returned = bench.memory_of_call(lambda: np.ones(1 << 20, np.uint8))
    assert returned == 1 << 20 and memory >= 1 << 20
    memory, returned = bench.memory_of_call(lambda: (DeviceBuffer(), None))
    assert returned == 12345 and memory >= 12345
    memory, returned = bench.memory_of_call(lambda: np.ones(1 << 20).sum())  # a temporary, freed
    assert memory >= 8 << 20 and returned == 8
    memory, returned = bench.memory_of_call(lambda: [torch.zeros(3, 256, 256), ShapedBuffer()])
    assert returned == 3 * 256 * 256 * 4 + 6 * 2 and memory >= returned
