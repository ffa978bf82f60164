"""bench_cpu.py - mobile_sam_c against MobileSAM's own PyTorch code and ONNX Runtime on its export, on
the CPU, side by side in one run at one thread count with the same weights: speed is only a ratio."""
from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

warnings.filterwarnings("ignore")  # timm / registry / exporter chatter; errors still raise

import torch  # noqa: E402
from mobile_sam import SamPredictor as RefPredictor  # noqa: E402
from mobile_sam import sam_model_registry as ref_registry  # noqa: E402

import mobile_sam_c as msc  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# where a photo given by name is looked for: shared/images beside the checkout, the tests' photos
IMAGE_DIRS = (REPO.parent / "shared" / "images", REPO / "tests" / "data")
DEFAULT_IMAGE = "truck.jpg"
SHIPPED_IMAGE = Path(msc.__file__).resolve().parent / "assets" / "dog.jpg"  # in every install
Stats = Dict[str, float]


# ---------------------------------------------------------------------------------------------
# Models, all with the same weights.

@torch.no_grad()
def randomise_(ref: torch.nn.Module, seed: int) -> None:
    """Seeded random values for every float tensor, scaled so activations stay O(1) (the default
    init zeroes whole branches, so a wrong kernel there would go unseen in the parity check)."""
    g = torch.Generator().manual_seed(seed)
    for name, t in ref.state_dict().items():
        if not t.is_floating_point():
            continue
        r = torch.randn(t.shape, generator=g)
        if name.endswith("running_var"):
            r = 0.5 + r.abs()
        elif t.ndim >= 2:
            r = r / math.sqrt(t[0].numel())  # weights, embeddings: N(0, 1/fan_in)
        elif name.endswith("weight"):
            r = 1.0 + 0.1 * r  # norm scales
        else:
            r = 0.1 * r  # biases, running means
        t.copy_(r)


def build_reference(checkpoint: Optional[str], seed: int = 0) -> torch.nn.Module:
    ref = ref_registry["vit_t"](checkpoint=checkpoint)
    if checkpoint is None:
        randomise_(ref, seed)
    return ref.eval()  # eval() again: TinyViT caches its attention-bias table there


def build_ours(ref: Optional[torch.nn.Module], checkpoint: Optional[str]) -> msc.Sam:
    if ref is not None:
        return msc.sam_model_registry["vit_t"](
            checkpoint={k: v.detach().numpy() for k, v in ref.state_dict().items()})
    return msc.sam_model_registry["vit_t"](checkpoint=checkpoint)


class OrtSam:
    """The reference exported to ONNX (encoder; SamOnnxModel decoder) and run by ONNX Runtime.
    set_image = the reference's own preprocessing (PIL resize, normalise, pad in torch) + encoder."""

    def __init__(self, ref: torch.nn.Module, tmp: Path, threads: int) -> None:
        import onnxruntime as ort

        self.ref, self.transform = ref, RefPredictor(ref).transform
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        enc = tmp / "encoder.onnx"
        torch.onnx.export(ref.image_encoder, (torch.zeros(1, 3, 1024, 1024),), str(enc), opset_version=17,
                          dynamo=False, input_names=["image"], output_names=["embedding"])
        self.encoder = ort.InferenceSession(str(enc), opts, providers=["CPUExecutionProvider"])
        self.decoder: Optional[Any] = None
        self.decoder_error = ""
        try:
            self.decoder = ort.InferenceSession(str(self._export_decoder(tmp)), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # report and go on with the encoder alone
            self.decoder_error = f"failed: {type(e).__name__}: {e}".splitlines()[0][:200]
        self.features = np.zeros(0, np.float32)
        self.orig: Tuple[int, int] = (0, 0)

    def _export_decoder(self, tmp: Path) -> Path:
        from mobile_sam.utils.onnx import SamOnnxModel

        path = tmp / "decoder.onnx"
        inputs = (torch.randn(1, 256, 64, 64), torch.rand(1, 2, 2) * 1024, torch.tensor([[1.0, -1.0]]),
                  torch.zeros(1, 1, 256, 256), torch.zeros(1), torch.tensor([1200.0, 1800.0]))
        names = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"]
        # eval() first: the exporter restores the wrapper's mode afterwards, and a fresh module is in
        # training mode, which would leave the shared reference in it (BatchNorm on batch statistics).
        decoder = SamOnnxModel(self.ref, return_single_mask=False).eval()
        torch.onnx.export(decoder, inputs, str(path), opset_version=17,
                          dynamo=False, input_names=names, output_names=["masks", "iou", "low_res"],
                          dynamic_axes={"point_coords": {1: "n"}, "point_labels": {1: "n"}})
        return path

    @torch.inference_mode()
    def set_image(self, image: np.ndarray) -> None:
        x = torch.as_tensor(self.transform.apply_image(image)).permute(2, 0, 1).contiguous()[None]
        x = self.ref.preprocess(x)
        self.features = self.encoder.run(None, {"image": x.numpy()})[0]
        self.orig = (image.shape[0], image.shape[1])

    def predict(self, coords: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like SamPredictor.predict(multimask_output=True) with one point set (the padding point
        added as the ONNX example does)."""
        assert self.decoder is not None
        c = self.transform.apply_coords(np.concatenate([coords, [[0.0, 0.0]]])[None], self.orig)
        feeds = {"image_embeddings": self.features, "point_coords": c.astype(np.float32),
                 "point_labels": np.concatenate([labels, [-1]])[None].astype(np.float32),
                 "mask_input": np.zeros((1, 1, 256, 256), np.float32), "has_mask_input": np.zeros(1, np.float32),
                 "orig_im_size": np.array(self.orig, np.float32)}
        masks, iou, low = self.decoder.run(None, feeds)  # all 4 outputs; multimask keeps 1..3
        return masks[0, 1:] > 0.0, iou[0, 1:], low[0, 1:]


# ---------------------------------------------------------------------------------------------
# Timing and memory.

def stats(samples: List[float]) -> Stats:
    q1, med, q3 = np.percentile(samples, [25, 50, 75])
    return {"median_ms": 1e3 * med, "min_ms": 1e3 * min(samples), "max_ms": 1e3 * max(samples),
            "iqr_ms": 1e3 * (q3 - q1), "n": len(samples)}


# ONNX Runtime's thread pool keeps a core busy spin-waiting for about 50 ms after a run (measured
# here from /proc/self/task CPU times: 40-60 ms; OpenMP's, ours and torch's, under 10 ms). With a
# 50 ms pause, whatever ran next lost a core: our predict read 35 ms after it, 29.5 ms after 250 ms.
COOLDOWN_S = 0.25


def time_interleaved(fns: Dict[str, Callable[[], Any]], repeat: int, warmup: int) -> Dict[str, Stats]:
    """Round-robin over the implementations, so load that drifts during the run hits all alike.
    An untimed pause after each call lets the thread pool that just ran (OpenMP's, ONNX Runtime's)
    finish spin-waiting, so it does not take cores from the next implementation."""
    samples: Dict[str, List[float]] = {k: [] for k in fns}
    for i in range(warmup + repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                samples[name].append(time.perf_counter() - t0)
            time.sleep(COOLDOWN_S)
    return {k: stats(v) for k, v in samples.items()}


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def memory_child(impl: str, image_path: Path, threads: int, checkpoint: Optional[str]) -> Dict[str, Any]:
    """In a fresh process (which imports both libraries, so only differences are reported): the
    RSS the model adds when loaded, and the peak RSS during one set_image above the loaded state
    (VmHWM reset through /proc/self/clear_refs; the ru_maxrss delta where that is refused)."""
    set_threads(threads)
    image = load_image(image_path)
    gc.collect()
    empty_kb = _proc_status_kb("VmRSS")
    if impl == "ours":
        set_image: Callable[[np.ndarray], None] = msc.SamPredictor(build_ours(None, checkpoint)).set_image
    else:
        set_image = RefPredictor(ref_registry["vit_t"](checkpoint=checkpoint).eval()).set_image
    gc.collect()
    loaded_kb = _proc_status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        method, before_kb = "VmHWM after clear_refs", loaded_kb
    except OSError:
        method, before_kb = "ru_maxrss delta", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    set_image(image)
    after_kb = _proc_status_kb("VmHWM") if method.startswith("VmHWM") else resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss
    return {"model_load_mb": (loaded_kb - empty_kb) / 1024, "set_image_peak_delta_mb": (after_kb - before_kb) / 1024,
            "method": method}


def measure_memory(impl: str, image_path: Path, threads: int, checkpoint: Optional[str]) -> Dict[str, Any]:
    cmd = [sys.executable, __file__, "--memory-child", impl, "--images", str(image_path), "--threads", str(threads)]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Setup, report.

def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    msc.set_num_threads(n)


def load_image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def resolve_image(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    for d in IMAGE_DIRS:
        if (d / name).is_file():
            return d / name
    raise SystemExit(f"bench_cpu.py: image {name!r} not found (a path, or a name in "
                     f"{', '.join(str(d) for d in IMAGE_DIRS)})")


def default_images() -> List[Path]:
    """truck.jpg where a checkout has it, else the photo shipped inside the package."""
    for d in IMAGE_DIRS:
        if (d / DEFAULT_IMAGE).is_file():
            return [d / DEFAULT_IMAGE]
    print(f"bench_cpu.py: {DEFAULT_IMAGE} not found; timing the package's sample {SHIPPED_IMAGE}", file=sys.stderr)
    return [SHIPPED_IMAGE]


def machine_info(threads: int) -> Dict[str, Any]:
    cpu = platform.processor()
    if Path("/proc/cpuinfo").is_file():
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    versions = {}
    for pkg in ("mobile_sam_c", "torch", "onnxruntime", "numpy"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "isa": msc.cpu_isa(), "threads": threads, "load_avg_1m": os.getloadavg()[0],
            "python": platform.python_version(), "versions": versions}


def max_abs_diff(a: Any, b: Any) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def bench_image(path: Path, ours: msc.SamPredictor, ref: RefPredictor, ort_sam: Optional[OrtSam],
                repeat: int, warmup: int) -> Dict[str, Any]:
    image = load_image(path)
    h, w = image.shape[:2]
    coords, labels = np.array([[w / 2, h / 2]]), np.array([1])
    runners: Dict[str, Tuple[Callable[[], Any], Optional[Callable[[], Any]]]] = {
        "ours": (lambda: ours.set_image(image),
                 lambda: ours.predict(point_coords=coords, point_labels=labels, as_numpy=True)),
        "pytorch": (lambda: ref.set_image(image), lambda: ref.predict(point_coords=coords, point_labels=labels)),
    }
    if ort_sam is not None:
        runners["onnxruntime"] = (lambda: ort_sam.set_image(image),
                                  (lambda: ort_sam.predict(coords, labels)) if ort_sam.decoder is not None else None)
    out: Dict[str, Any] = {"size": [w, h]}
    out["set_image"] = time_interleaved({k: v[0] for k, v in runners.items()}, repeat, warmup)
    out["predict"] = time_interleaved({k: v[1] for k, v in runners.items() if v[1] is not None}, repeat, warmup)

    ours_masks, ours_iou, _ = ours.predict(point_coords=coords, point_labels=labels, as_numpy=True)
    ref_masks, ref_iou, _ = ref.predict(point_coords=coords, point_labels=labels)
    ref_emb = ref.features.numpy()
    parity = {"embedding_max_abs_diff": max_abs_diff(ours.get_image_embedding(), ref_emb),
              "embedding_max_abs_ref": float(np.abs(ref_emb).max()),
              "iou_max_abs_diff": max_abs_diff(ours_iou, ref_iou),
              "mask_pixels_differing": int((ours_masks != ref_masks).sum()), "mask_pixels": int(ref_masks.size)}
    if ort_sam is not None:
        parity["ort_embedding_max_abs_diff"] = max_abs_diff(ort_sam.features, ref_emb)
        if ort_sam.decoder is not None:
            parity["ort_iou_max_abs_diff"] = max_abs_diff(ort_sam.predict(coords, labels)[1], ref_iou)
    out["parity"] = parity
    return out


def _cell(s: Optional[Stats]) -> str:
    return "n/a" if s is None else f"{s['median_ms']:.1f} ({s['min_ms']:.1f}-{s['max_ms']:.1f})"


def _ratio(num: Optional[Stats], den: Optional[Stats]) -> str:
    return "n/a" if num is None or den is None else f"{num['median_ms'] / den['median_ms']:.2f}x"


def markdown(report: Dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"CPU: {m['cpu']} ({m['usable_cores']} usable cores), ISA {m['isa']}, {m['threads']} threads, "
             f"load avg {m['load_avg_1m']:.1f}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
             f"{report['config']['repeat']} timed runs after {report['config']['warmup']} warm-up run(s); "
             "ms as median (min-max)", "",
             "| image | step | mobile_sam_c ms | PyTorch ms | ONNX Runtime ms | PyTorch/ours | ORT/ours |",
             "|---|---|---|---|---|---|---|"]
    for name, r in report["images"].items():
        for step in ("set_image", "predict"):
            s = r[step]
            o, p, x = s.get("ours"), s.get("pytorch"), s.get("onnxruntime")
            lines.append(f"| {name} {r['size'][0]}x{r['size'][1]} | {step} | {_cell(o)} | {_cell(p)} | {_cell(x)} "
                         f"| {_ratio(p, o)} | {_ratio(x, o)} |")
    mem = report["memory"]
    lines += ["", f"Memory of one set_image on {mem['image']}, each in its own process:", "",
              "| | mobile_sam_c | PyTorch | PyTorch/ours |", "|---|---|---|---|"]
    for key, label in (("model_load_mb", "RSS added by loading the model (MB)"),
                       ("set_image_peak_delta_mb", "peak RSS during set_image above that (MB)")):
        o, p = mem["ours"].get(key), mem["pytorch"].get(key)
        cells = ["n/a" if v is None else f"{v:.0f}" for v in (o, p)]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {f'{p / o:.2f}x' if o and p else 'n/a'} |")
    for impl in ("ours", "pytorch"):
        if "error" in mem[impl]:
            lines.append(f"\nmemory ({impl}) failed: {mem[impl]['error']}")
    lines += ["", "Parity against the PyTorch reference (same weights; a fast but wrong build shows here):"]
    for name, r in report["images"].items():
        p = r["parity"]
        lines.append(f"- {name}: embedding max|ours-ref| {p['embedding_max_abs_diff']:.2e} (max|ref| "
                     f"{p['embedding_max_abs_ref']:.2f}), IoU max|diff| {p['iou_max_abs_diff']:.2e}, mask pixels "
                     f"differing {p['mask_pixels_differing']}/{p['mask_pixels']}" +
                     "".join(f", {k} {v:.2e}" for k, v in p.items() if k.startswith("ort_")))
    onnx = report["onnx"]
    lines.append(f"\nONNX Runtime: encoder {onnx['encoder']}, decoder {onnx['decoder']}")
    return "\n".join(lines)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="threads for every implementation (default 2)")
    p.add_argument("--images", nargs="+", help="paths, or names in ../shared/images or tests/data (default: "
                                               "truck.jpg, else the photo shipped in the package)")
    p.add_argument("--repeat", type=int, default=10, help="timed runs per measurement (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    p.add_argument("--quick", action="store_true", help="3 runs after 1 warm-up: checks the script, not the speed")
    p.add_argument("--checkpoint", help="mobile_sam.pt for both models (default: the same seeded random weights)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export and ONNX Runtime")
    p.add_argument("--json", type=Path, help="also write the full results here")
    p.add_argument("--memory-child", choices=["ours", "pytorch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.repeat, args.warmup = 3, 1
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    paths = [resolve_image(n) for n in args.images] if args.images else default_images()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, paths[0], args.threads, args.checkpoint)))
        return 0
    set_threads(args.threads)
    machine = machine_info(args.threads)  # before the run: the load average says how noisy it is
    ref_model = build_reference(args.checkpoint)
    ours, ref = msc.SamPredictor(build_ours(ref_model, None)), RefPredictor(ref_model)
    onnx = {"encoder": "skipped (--no-onnx)", "decoder": "skipped (--no-onnx)"}
    ort_sam: Optional[OrtSam] = None
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_onnx:
            try:
                ort_sam = OrtSam(ref_model, Path(tmp), args.threads)
                onnx = {"encoder": "ok (set_image includes the reference's resize/normalise/pad in torch)",
                        "decoder": ort_sam.decoder_error or "ok (SamOnnxModel, includes upscaling to the image size)"}
            except Exception as e:  # no exporter / no onnxruntime: report and go on without it
                onnx = {"encoder": f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}", "decoder": "n/a"}
        images = {p.name: bench_image(p, ours, ref, ort_sam, args.repeat, args.warmup) for p in paths}
    memory = {"image": paths[0].name, **{impl: measure_memory(impl, paths[0], args.threads, args.checkpoint)
                                         for impl in ("ours", "pytorch")}}
    report = {"machine": machine, "config": {"repeat": args.repeat, "warmup": args.warmup,
              "weights": args.checkpoint or "seeded random"}, "images": images, "memory": memory, "onnx": onnx}
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
