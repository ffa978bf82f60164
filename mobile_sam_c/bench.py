"""bench.py - ``mobile-sam-c bench``: the report of the predict modes (as_numpy x return_low_res) on
the device at hand, against legacy mode and MobileSAM's own PyTorch predictor, for deciding a mode.

Timings are medians and 95th percentiles over calls interleaved round-robin across the modes (so
load that drifts hits every mode alike), synchronised on a GPU. Memory per call is what the call
allocates and returns: tracemalloc's peak over the call (it sees Python's and NumPy's allocations,
so the NumPy outputs) plus any returned bytes it did not see (device memory, or buffers allocated
outside the tracer), measured on the last (untimed) warm-up call; the core's arena is allocated
once at load and not counted.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import json
import os
import platform
import sys
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import __version__, cpu_isa, get_num_threads, kpi, set_num_threads
from .bench_report import PYTORCH, markdown, plot
from .build_sam import Sam, weight_spec
from .checkpoint import CheckpointError, load_state_dict, validate_state_dict
from .predictor import SamPredictor
from .random_weights import random_state_dict

SAMPLE_IMAGE = Path(__file__).resolve().parent / "assets" / "dog.jpg"
CHECKPOINT_ENV = "MOBILE_SAM_C_CHECKPOINT"
RANDOM_SEED = 0
SCHEMA = 1

# (mode name, as_numpy, return_low_res): GPU-resident first, legacy (the original's outputs) last.
MODES: Tuple[Tuple[str, bool, bool], ...] = (
    ("gpu-resident", False, False),
    ("resident+low-res", False, True),
    ("numpy, no low-res", True, False),
    ("legacy", True, True),
)
LEGACY = "legacy"
DEVICES = ("cuda", "cpu")  # the GPU first; each is measured when this build and machine have it

ROW_FIELDS = ("device", "impl", "call", "mode", "as_numpy", "return_low_res", "status", "reason", "n",
              "median_ms", "p95_ms", "speedup_vs_legacy", "vs_pytorch", "transfers_per_frame",
              "memory_per_call_bytes", "output_bytes", "samples_ms")
OURS = "mobile_sam_c"


class BenchError(Exception):
    """A problem with the user's input (checkpoint, image): one line on stderr, exit status 2."""


# ---------------------------------------------------------------------------------------------
# Progress on stderr (no tqdm dependency): drawn only when stderr is a terminal.

class Progress:
    """A one-line bar on stderr, redrawn in place; silent when stderr is not a TTY or when off."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done = max(total, 1), 0
        self.enabled = enabled and sys.stderr.isatty()

    def step(self, label: str) -> None:
        self.done = min(self.done + 1, self.total)
        if self.enabled:
            width = 30
            fill = width * self.done // self.total
            sys.stderr.write(f"\rbench [{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} {label:<40.40}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# Measuring one call.

def _nbytes(outputs: Any) -> int:
    if outputs is None:
        return 0
    if isinstance(outputs, (tuple, list)):
        return sum(_nbytes(o) for o in outputs)
    n = getattr(outputs, "nbytes", None)
    if n is None and hasattr(outputs, "element_size"):  # torch tensors
        n = outputs.element_size() * outputs.numel()
    if n is None and hasattr(outputs, "shape") and hasattr(outputs, "dtype"):  # other array types
        try:
            n = int(np.prod(outputs.shape)) * np.dtype(str(outputs.dtype).replace("torch.", "")).itemsize
        except TypeError:
            n = None
    return int(n or 0)


def memory_of_call(call: Callable[[], Any]) -> Tuple[int, int]:
    """(memory per call, bytes returned) for one call: tracemalloc's peak over the call, plus the
    returned bytes tracemalloc did not see retained (device memory, untraced host buffers)."""
    gc.collect()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        outputs = call()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        if started:
            tracemalloc.stop()
    returned = _nbytes(outputs)
    del outputs
    return (peak - before) + max(0, returned - (after - before)), returned


def _percentiles(samples: Sequence[float]) -> Tuple[Optional[float], Optional[float]]:
    if not samples:
        return None, None
    med, p95 = np.percentile(np.asarray(samples, dtype=np.float64), [50, 95])
    return float(med), float(p95)


def _synchronizer(device: str) -> Callable[[], None]:
    """Waits for the device's queued work, so a GPU call is timed to its end; nothing on the CPU."""
    if not device.startswith("cuda"):
        return lambda: None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.synchronize
    return lambda: None


def _row(device: str, impl: str, call: str, mode: Optional[str] = None, as_numpy: Optional[bool] = None,
         return_low_res: Optional[bool] = None) -> Dict[str, Any]:
    row: Dict[str, Any] = dict.fromkeys(ROW_FIELDS)
    row.update(device=device, impl=impl, call=call, mode=mode, status="measured", reason=None, samples_ms=[],
               as_numpy=None if as_numpy is None else int(as_numpy),
               return_low_res=None if return_low_res is None else int(return_low_res))
    return row


def _absent(device: str, impl: str, reason: str) -> List[Dict[str, Any]]:
    """The rows a device or implementation would have had, each saying why it is absent."""
    rows = [_row(device, impl, "predict", m, a, r) for m, a, r in MODES] if impl == OURS else \
        [_row(device, impl, "predict", LEGACY, True, True)]
    rows.append(_row(device, impl, "set_image"))
    for r in rows:
        r.update(status="absent", reason=reason)
    return rows


# ---------------------------------------------------------------------------------------------
# The implementations, with the same weights.

def _load_weights(checkpoint: Optional[Path]) -> Tuple[Mapping[str, np.ndarray], str]:
    """(state dict, how the header names it): random weights, or the checkpoint's sha256."""
    if checkpoint is None:
        return random_state_dict(weight_spec(), seed=RANDOM_SEED), \
            f"random (mobile_sam_c.random_weights, seed {RANDOM_SEED}; timings do not depend on weight values)"
    digest = hashlib.sha256()
    try:
        with open(checkpoint, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        state = validate_state_dict(load_state_dict(checkpoint), weight_spec())
    except (CheckpointError, OSError) as e:
        raise BenchError(f"cannot load checkpoint {checkpoint}: {e}") from None
    return state, f"{checkpoint.name} sha256 {digest.hexdigest()}"


def _pytorch_predictor(state: Mapping[str, np.ndarray], device: str) -> Tuple[Any, Optional[str]]:
    """MobileSAM's own SamPredictor with the same weights, or (None, why not)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torch
            from mobile_sam import SamPredictor as RefPredictor
            from mobile_sam import sam_model_registry as ref_registry
    except Exception as e:  # ImportError, or a broken torch install
        return None, f"MobileSAM's PyTorch code is not importable ({type(e).__name__}: {e})"
    if device.startswith("cuda") and not torch.cuda.is_available():
        return None, "PyTorch sees no CUDA device"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ref_registry["vit_t"](checkpoint=None)
    own = ref.state_dict()
    missing = [k for k in state if k not in own]
    if missing:
        return None, f"the reference has no tensor {missing[0]!r}"
    ref.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=False)
    ref = ref.to(device).eval()  # eval() after loading: TinyViT caches its attention biases there
    torch.set_num_threads(get_num_threads())
    return RefPredictor(ref), None


# ---------------------------------------------------------------------------------------------
# The benchmark.

class Plan:
    """How many calls: warm-up and timed, for predict and for set_image."""

    def __init__(self, quick: bool, repeat: Optional[int], image_repeat: Optional[int]) -> None:
        self.warmup = 1 if quick else 3
        self.repeat = repeat or (5 if quick else 50)
        self.image_repeat = image_repeat or (2 if quick else 8)


def _time_predicts(predictor: SamPredictor, prompt: Dict[str, np.ndarray], plan: Plan, sync: Callable[[], None],
                   progress: Progress, device: str) -> Dict[str, Dict[str, Any]]:
    """Per mode: latency samples (ms), device-to-host copies, and the memory of the last warm-up
    call (measured there, so tracemalloc's own cost never enters a timed call), round-robin."""
    stats: Dict[str, Dict[str, Any]] = {m: {"samples": [], "d2h": 0} for m, _, _ in MODES}
    for i in range(plan.warmup + plan.repeat):
        for mode, as_numpy, low_res in MODES:
            if i == plan.warmup - 1:
                stats[mode]["memory"] = memory_of_call(
                    lambda: predictor.predict(**prompt, as_numpy=as_numpy, return_low_res=low_res))
                progress.step(f"{device} predict {mode}")
                continue
            d2h = predictor.transfer_counts()["d2h"]
            sync()
            t0 = time.perf_counter()
            outputs = predictor.predict(**prompt, as_numpy=as_numpy, return_low_res=low_res)
            sync()
            dt = time.perf_counter() - t0
            del outputs
            if i >= plan.warmup:
                stats[mode]["samples"].append(1e3 * dt)
                stats[mode]["d2h"] += predictor.transfer_counts()["d2h"] - d2h
            progress.step(f"{device} predict {mode}")
    return stats


def _time_calls(call: Callable[[], Any], warmup: int, repeat: int, sync: Callable[[], None],
                progress: Progress, label: str) -> Tuple[List[float], Tuple[int, int]]:
    """Latency samples (ms) of the timed calls, and memory_of_call of the last warm-up call."""
    samples = []
    memory = (0, 0)
    for i in range(warmup + repeat):
        if i == warmup - 1:
            memory = memory_of_call(call)
            progress.step(label)
            continue
        sync()
        t0 = time.perf_counter()
        call()
        sync()
        if i >= warmup:
            samples.append(1e3 * (time.perf_counter() - t0))
        progress.step(label)
    return samples, memory


def _kpi_overhead(predictor: SamPredictor, prompt: Dict[str, np.ndarray], plan: Plan,
                  progress: Progress) -> Dict[str, Any]:
    """predict (GPU-resident mode) with nobody listening and with a sink, interleaved call by call."""
    events: List[Dict[str, Any]] = []
    samples: Dict[str, List[float]] = {"without": [], "with": []}
    for i in range(plan.repeat):
        for key in ("without", "with"):
            if key == "with":
                kpi.add_sink(events.append)
            try:
                t0 = time.perf_counter()
                predictor.predict(**prompt, as_numpy=False, return_low_res=False)
                samples[key].append(1e3 * (time.perf_counter() - t0))
            finally:
                kpi.remove_sink(events.append)
        progress.step("predict with / without a KPI sink")
    without, with_sink = _percentiles(samples["without"])[0], _percentiles(samples["with"])[0]
    # The telemetry's own cost, free of predict's noise: the check every call pays when nobody
    # listens, and building + delivering one event to a sink that does nothing.
    idle = not kpi.listening(predictor.device)
    outputs = predictor.predict(**prompt, as_numpy=False, return_low_res=False)
    loops = 2000 * plan.repeat
    t0 = time.perf_counter()
    for _ in range(loops):
        kpi.start(predictor)
    check_us = 1e6 * (time.perf_counter() - t0) / loops

    def null_sink(event: Dict[str, Any]) -> None:
        pass

    kpi.add_sink(null_sink)
    try:
        t0 = time.perf_counter()
        for _ in range(loops // 10):
            probe = kpi.start(predictor)
            if probe is not None:
                kpi.predict_done(probe, predictor, outputs, False, False)
        event_us = 1e6 * (time.perf_counter() - t0) / (loops // 10)
    finally:
        kpi.remove_sink(null_sink)
    return {"mode": "gpu-resident", "n": plan.repeat, "without_listener_median_ms": without,
            "with_sink_median_ms": with_sink, "events_received": len(events), "nobody_listening": idle,
            "idle_check_us": check_us, "event_to_sink_us": event_us}


def _bench_ours(model: Sam, image: np.ndarray, prompt: Dict[str, np.ndarray], plan: Plan,
                progress: Progress) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    device = model.device
    predictor = SamPredictor(model)
    sync = _synchronizer(device)
    d2h = predictor.transfer_counts()["d2h"]
    image_samples, image_memory = _time_calls(lambda: predictor.set_image(image), 1, plan.image_repeat, sync,
                                              progress, f"{device} set_image")
    image_d2h = (predictor.transfer_counts()["d2h"] - d2h) / (1 + plan.image_repeat)
    stats = _time_predicts(predictor, prompt, plan, sync, progress, device)
    rows = []
    for mode, as_numpy, low_res in MODES:
        row = _row(device, OURS, "predict", mode, as_numpy, low_res)
        s = stats[mode]
        row["samples_ms"] = s["samples"]
        row["n"] = len(s["samples"])
        row["median_ms"], row["p95_ms"] = _percentiles(s["samples"])
        row["transfers_per_frame"] = s["d2h"] / max(len(s["samples"]), 1)
        row["memory_per_call_bytes"], row["output_bytes"] = s["memory"]
        rows.append(row)
    row = _row(device, OURS, "set_image")
    row["samples_ms"], row["n"] = image_samples, len(image_samples)
    row["median_ms"], row["p95_ms"] = _percentiles(image_samples)
    row["memory_per_call_bytes"], row["output_bytes"] = image_memory
    row["transfers_per_frame"] = image_d2h
    rows.append(row)
    overhead = _kpi_overhead(predictor, prompt, plan, progress)
    overhead["device"] = device
    return rows, overhead


def _bench_pytorch(ref: Any, device: str, image: np.ndarray, prompt: Dict[str, np.ndarray], plan: Plan,
                   progress: Progress) -> List[Dict[str, Any]]:
    """MobileSAM's SamPredictor: set_image, and predict (NumPy outputs with the low-res logits,
    the only mode it has: legacy). Its device copies are not counted (no counters in PyTorch)."""
    sync = _synchronizer(device)
    set_image = _time_calls(lambda: ref.set_image(image), 1, plan.image_repeat, sync, progress,
                            f"{device} PyTorch set_image")
    predict = _time_calls(lambda: ref.predict(**prompt, multimask_output=True), plan.warmup, plan.repeat, sync,
                          progress, f"{device} PyTorch predict")
    rows = []
    for call, (s, memory) in (("predict", predict), ("set_image", set_image)):
        row = _row(device, PYTORCH, call, *((LEGACY, True, True) if call == "predict" else ()))
        row["samples_ms"], row["n"] = s, len(s)
        row["median_ms"], row["p95_ms"] = _percentiles(s)
        row["memory_per_call_bytes"], row["output_bytes"] = memory
        rows.append(row)
    return rows


def _ratios(rows: List[Dict[str, Any]]) -> None:
    """speedup_vs_legacy (our legacy predict on the device / this predict) and vs_pytorch (PyTorch's
    median for the same call and device / this one), where both were measured."""
    def median(device: str, impl: str, call: str, mode: Optional[str]) -> Optional[float]:
        for r in rows:
            if (r["device"], r["impl"], r["call"], r["mode"], r["status"]) == (device, impl, call, mode, "measured"):
                return r["median_ms"]
        return None

    for r in rows:
        if r["status"] != "measured" or not r["median_ms"]:
            continue
        if r["call"] == "predict":
            legacy = median(r["device"], OURS, "predict", LEGACY)
            r["speedup_vs_legacy"] = None if legacy is None else legacy / r["median_ms"]
        ref = median(r["device"], PYTORCH, r["call"], LEGACY if r["call"] == "predict" else None)
        r["vs_pytorch"] = None if ref is None else ref / r["median_ms"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load_average() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on Windows
        return None


def _header(weights: str, devices: List[str], quick: bool, image: Path, image_shape: Tuple[int, ...],
            prompt: Dict[str, np.ndarray]) -> Dict[str, Any]:
    torch = sys.modules.get("torch")
    return {
        "machine": f"{platform.system()} {platform.machine()}, {_cpu_model()}, {os.cpu_count()} logical CPUs",
        "load_average": _load_average(),  # 1-minute load when the report was made: other work on the machine
        "cpu_isa": cpu_isa(),
        "threads": get_num_threads(),
        "device": ", ".join(devices) if devices else "none",
        "weights": weights,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "image": f"{image.name} {image_shape[1]}x{image_shape[0]}",
        "prompt": "one foreground point at ({:g}, {:g}), multimask_output=True".format(*prompt["point_coords"][0]),
        "quick": bool(quick),
        "versions": {"mobile_sam_c": __version__, "numpy": np.__version__, "python": platform.python_version(),
                     "torch": getattr(torch, "__version__", None)},
        "memory_method": "tracemalloc peak over one call, the last warm-up one (Python and NumPy allocations, "
                         "so host outputs), plus returned bytes it did not see (device memory); the core's "
                         "arena, allocated at load, is not counted; PyTorch's own allocator is not traced "
                         "(its rows count outputs only)",
        "transfers_method": "device-to-host copies per call from the core's counters (transfer_counts()['d2h'])",
    }


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Measure everything; the report as a JSON-ready dict."""
    from PIL import Image

    if args.threads is not None:
        set_num_threads(args.threads)
    try:
        with Image.open(args.image) as im:
            image = np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    except OSError as e:  # PIL's UnidentifiedImageError is an OSError
        raise BenchError(f"cannot read image {args.image}: {e}") from None
    h, w = image.shape[:2]
    prompt = {"point_coords": np.array([[w / 2, h / 2]], dtype=np.float64), "point_labels": np.array([1])}
    state, weights = _load_weights(args.checkpoint)
    plan = Plan(args.quick, args.repeat, args.image_repeat)

    models: Dict[str, Sam] = {}
    rows: List[Dict[str, Any]] = []
    for device in DEVICES:
        try:
            models[device] = Sam(state, device=device)
        except (RuntimeError, ValueError) as e:
            why = f"this build has no CUDA backend ({e})" if "not built" in str(e) else str(e)
            rows += _absent(device, OURS, why) + _absent(device, PYTORCH, why)
    refs: Dict[str, Any] = {}
    for device in models:
        if args.no_pytorch:
            rows += _absent(device, PYTORCH, "skipped (--no-pytorch)")
            continue
        ref, why = _pytorch_predictor(state, device)
        if ref is None:
            rows += _absent(device, PYTORCH, str(why))
        else:
            refs[device] = ref

    per_device = 4 * (plan.warmup + plan.repeat) + 1 + plan.image_repeat + plan.repeat
    per_ref = 1 + plan.image_repeat + plan.warmup + plan.repeat
    progress = Progress(len(models) * per_device + len(refs) * per_ref, enabled=not args.no_progress)
    overhead = []
    measured: List[Dict[str, Any]] = []
    try:
        for device, model in models.items():
            device_rows, device_overhead = _bench_ours(model, image, prompt, plan, progress)
            measured += device_rows
            overhead.append(device_overhead)
            if device in refs:
                measured += _bench_pytorch(refs[device], device, image, prompt, plan, progress)
    finally:
        progress.close()
    rows = measured + rows
    order = {d: i for i, d in enumerate(DEVICES)}
    rows.sort(key=lambda r: order.get(r["device"], len(order)))  # stable: GPU first, then CPU
    _ratios(rows)
    return {"schema": SCHEMA, "header": _header(weights, list(models), args.quick, args.image, image.shape, prompt),
            "rows": rows, "kpi_overhead": overhead}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mobile-sam-c bench",
        description="Benchmark the predict modes (as_numpy x return_low_res), set_image and MobileSAM's PyTorch "
                    "predictor on this machine; a Markdown report on stdout.")
    p.add_argument("--quick", action="store_true", help="a few calls each: a check in seconds, not a measurement")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the report as JSON")
    p.add_argument("--plot", type=Path, metavar="PATH.png", help="latency distributions per mode (needs matplotlib)")
    p.add_argument("--checkpoint", type=Path, default=os.environ.get(CHECKPOINT_ENV) or None,
                   help=f"weights (default ${CHECKPOINT_ENV}, else random weights: timings do not depend on them)")
    p.add_argument("--image", type=Path, default=SAMPLE_IMAGE, help="photo to use (default: the bundled sample)")
    p.add_argument("--threads", type=int, help="CPU threads, for both implementations (default: the library's)")
    p.add_argument("--repeat", type=int, help="timed predict calls per mode (default 50; --quick 5)")
    p.add_argument("--image-repeat", type=int, help="timed set_image calls (default 8; --quick 2)")
    p.add_argument("--no-pytorch", action="store_true", help="skip MobileSAM's PyTorch rows")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is drawn only on a terminal)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("threads", "repeat", "image_repeat"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    for name in ("image", "checkpoint"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            parser.error(f"--{name}: file not found: {path}")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib (pip install 'mobile_sam_c[plot]')")
    try:
        report = run(args)
    except BenchError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(markdown(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if args.plot is not None:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
