"""kpi.py - production telemetry: one KPI event per predict / set_image (to the ``mobile_sam_c.kpi``
logger and to user sinks) and rate-limited alerts when a pipeline falls off the GPU or slows down.

Events are built only when someone listens (a sink, the logger enabled for INFO, or an alert that
could fire for the predictor's device), so an unobserved predictor pays one flag check per call.
Emitting never raises into the caller: a failing sink or handler is reported once and skipped.

Environment variables (read at import, and again by ``configure(from_env=True)``):
  MOBILE_SAM_C_PRODUCTION=1                  alert on legacy mode (as_numpy=1) in production
  MOBILE_SAM_C_KPI_LATENCY_MS=2.0|off        predict latency alert on a GPU (default 2.0)
  MOBILE_SAM_C_KPI_CPU_LATENCY_MS=50|off     predict latency alert on the CPU (default off)
  MOBILE_SAM_C_KPI_ALERT_INTERVAL_S=60       at most one alert of each kind per interval
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = [
    "LOGGER", "Event", "Sink", "JsonLinesSink", "PrometheusExporter",
    "add_sink", "remove_sink", "configure", "settings", "check_alerts", "device_of",
]

LOGGER = logging.getLogger("mobile_sam_c.kpi")

Event = Dict[str, Any]
Sink = Callable[[Event], Any]

PREDICT_EVENT = "sam_predict_output"
SET_IMAGE_EVENT = "sam_set_image"

# DLPack device types (dlpack.h): kDLCPU, kDLCUDA, kDLCUDAHost (pinned host memory), kDLCUDAManaged.
_DLPACK_NAMES = {1: "cpu", 2: "cuda", 3: "cpu", 13: "cuda"}


# ---------------------------------------------------------------------------------------------
# Settings: thresholds from configure() and the environment.

class _Settings:
    """The alert thresholds. ``None`` switches an alert off."""

    def __init__(self) -> None:
        self.production = False
        self.latency_ms: Optional[float] = 2.0  # on a GPU
        self.cpu_latency_ms: Optional[float] = None
        self.alert_interval_s = 60.0
        self.gpu_residency = True

    def as_dict(self) -> Dict[str, Any]:
        return dict(vars(self))


_settings = _Settings()
_lock = threading.Lock()
_sinks: Tuple[Sink, ...] = ()
_reported_failures: set = set()  # ids of sinks (and "logging") whose failure was already reported
_last_alert: Dict[str, float] = {}
_suppressed: Dict[str, int] = {}
_clock = time.monotonic  # the rate limiter's clock (tests replace it)


def _env_threshold(name: str, default: Optional[float]) -> Optional[float]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    if raw.strip().lower() in ("off", "none", "no", "false"):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number of milliseconds or 'off'") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={raw!r}: expected a positive number of milliseconds or 'off'")
    return value


def _env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() not in ("0", "off", "no", "false")


def _check_threshold(name: str, value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of milliseconds or None (off), got {value!r}")
    return float(value)


_UNSET: Any = object()


def configure(*, production: bool = _UNSET, latency_ms: Optional[float] = _UNSET,
              cpu_latency_ms: Optional[float] = _UNSET, alert_interval_s: float = _UNSET,
              gpu_residency: bool = _UNSET, from_env: bool = False) -> Dict[str, Any]:
    """Set the alert thresholds; arguments left out keep their value. ``from_env=True`` first
    resets everything to the defaults and the MOBILE_SAM_C_* environment variables.
      production       alert when a predict runs in legacy mode (as_numpy=True)
      latency_ms       alert when a predict on a GPU takes longer (default 2.0; None = off)
      cpu_latency_ms   the same on the CPU backend (default None = off: CPU latency depends on the
                       machine and thread count by two orders of magnitude, so set your own)
      alert_interval_s at most one alert of each kind per interval (default 60; 0 = every time)
      gpu_residency    alert when a GPU model's outputs (as_numpy=False) are not on its GPU
    Returns the settings now in force."""
    global _settings
    with _lock:
        s = _Settings() if from_env else _settings
        if from_env:
            s.production = _env_flag("MOBILE_SAM_C_PRODUCTION", False)
            s.latency_ms = _env_threshold("MOBILE_SAM_C_KPI_LATENCY_MS", 2.0)
            s.cpu_latency_ms = _env_threshold("MOBILE_SAM_C_KPI_CPU_LATENCY_MS", None)
            interval = os.environ.get("MOBILE_SAM_C_KPI_ALERT_INTERVAL_S", "").strip()
            if interval:
                try:
                    s.alert_interval_s = float(interval)
                except ValueError:
                    raise ValueError(f"MOBILE_SAM_C_KPI_ALERT_INTERVAL_S={interval!r}: expected seconds") from None
        if production is not _UNSET:
            s.production = bool(production)
        if latency_ms is not _UNSET:
            s.latency_ms = _check_threshold("latency_ms", latency_ms)
        if cpu_latency_ms is not _UNSET:
            s.cpu_latency_ms = _check_threshold("cpu_latency_ms", cpu_latency_ms)
        if alert_interval_s is not _UNSET:
            if isinstance(alert_interval_s, bool) or not isinstance(alert_interval_s, (int, float)) \
                    or not alert_interval_s >= 0:
                raise ValueError(f"alert_interval_s must be a number of seconds >= 0, got {alert_interval_s!r}")
            s.alert_interval_s = float(alert_interval_s)
        if gpu_residency is not _UNSET:
            s.gpu_residency = bool(gpu_residency)
        _settings = s
        _last_alert.clear()
        _suppressed.clear()
        return s.as_dict()


def settings() -> Dict[str, Any]:
    """The alert settings now in force."""
    return _settings.as_dict()


# ---------------------------------------------------------------------------------------------
# Sinks.

def add_sink(sink: Sink) -> None:
    """Call ``sink(event)`` with every KPI event (a dict; see README "Telemetry"). Sinks run in the
    thread that called predict, so keep them quick; an exception is reported once and ignored."""
    global _sinks
    if not callable(sink):
        raise TypeError(f"sink must be callable with one event dict, got {type(sink).__name__}")
    with _lock:
        if sink not in _sinks:
            _sinks = _sinks + (sink,)


def remove_sink(sink: Sink) -> None:
    """Stop sending events to ``sink`` (no error if it was not registered)."""
    global _sinks
    with _lock:
        for removed in (s for s in _sinks if s == sink):
            _reported_failures.discard(id(removed))  # a later sink at the same address reports afresh
        _sinks = tuple(s for s in _sinks if s != sink)


def _report_failure(key: Any, what: str, exc: BaseException) -> None:
    """Report a sink's (or the logging machinery's) first failure; later ones pass silently."""
    if key in _reported_failures:
        return
    _reported_failures.add(key)
    try:
        LOGGER.error("mobile_sam_c.kpi: %s raised %s: %s; its later failures are not reported, the event "
                     "still goes to the other sinks", what, type(exc).__name__, exc)
    except Exception:
        pass


# ---------------------------------------------------------------------------------------------
# The fast path and the events.

def _is_gpu(device: str) -> bool:
    return device.startswith("cuda")


def listening(model_device: str) -> bool:
    """Whether anyone would see an event from a predictor on ``model_device``; checked before an
    event is built, so an unobserved predictor pays only this."""
    if _sinks or LOGGER.isEnabledFor(logging.INFO):
        return True
    s = _settings
    if not LOGGER.isEnabledFor(logging.WARNING):
        return False
    if _is_gpu(model_device):
        return s.production or s.gpu_residency or s.latency_ms is not None
    return s.production or s.cpu_latency_ms is not None


def device_of(x: Any) -> str:
    """'cpu', 'cuda:0'... for an output array; 'skipped' for None (an output not returned)."""
    if x is None:
        return "skipped"
    dev = getattr(x, "__dlpack_device__", None)
    if dev is not None:
        kind, index = (int(v) for v in dev())
        name = _DLPACK_NAMES.get(kind, f"dlpack{kind}")
        return name if name == "cpu" else f"{name}:{index}"
    return "cpu"  # NumPy arrays without DLPack support, lists: host memory


def _size(size: Any) -> Optional[List[int]]:
    return None if size is None else [int(v) for v in size]


class Probe:
    """What start() saw before the call: the clock and the core's device-to-host counter."""

    __slots__ = ("t0", "d2h")

    def __init__(self, predictor: Any) -> None:
        self.d2h = int(predictor.transfer_counts()["d2h"])
        self.t0 = time.perf_counter()


def start(predictor: Any) -> Optional[Probe]:
    """Called before a predict / set_image: a Probe when someone listens, else None (and nothing
    else happens). Never raises."""
    try:
        return Probe(predictor) if listening(predictor.device) else None
    except Exception as e:
        _report_failure("start", "mobile_sam_c.kpi.start", e)
        return None


def _elapsed(probe: Probe, predictor: Any) -> Tuple[float, int]:
    latency_ms = 1e3 * (time.perf_counter() - probe.t0)
    return latency_ms, int(predictor.transfer_counts()["d2h"]) - probe.d2h


def predict_done(probe: Probe, predictor: Any, outputs: Sequence[Any], as_numpy: bool,
                 return_low_res: bool) -> None:
    """Build the sam_predict_output event of a finished predict / predict_torch and emit it."""
    try:
        latency_ms, transfers = _elapsed(probe, predictor)
        masks, iou, low = outputs
        counted = masks if masks is not None else iou
        shape = getattr(counted, "shape", ())
        event = {
            "event": PREDICT_EVENT,
            "as_numpy": int(bool(as_numpy)),
            "return_low_res": int(bool(return_low_res)),
            "mask_device": device_of(masks),
            "iou_device": device_of(iou),
            "low_device": device_of(low),
            "latency_ms": latency_ms,
            "transfers": transfers,
            # predict: C masks; predict_torch: B x C (every mask returned, over the batch)
            "num_masks": int(math.prod(shape[:-2] if masks is not None else shape)),
            "image_size": _size(predictor.original_size),
        }
        emit(event, predictor.device)
    except Exception as e:
        _report_failure("predict_done", "building the sam_predict_output event", e)


def set_image_done(probe: Probe, predictor: Any, method: str) -> None:
    """Build the sam_set_image event of a finished set_image / set_torch_image and emit it."""
    try:
        latency_ms, transfers = _elapsed(probe, predictor)
        event = {
            "event": SET_IMAGE_EVENT,
            "method": method,
            "device": predictor.device,
            "latency_ms": latency_ms,
            "transfers": transfers,
            "image_size": _size(predictor.original_size),
            "input_size": _size(predictor.input_size),
        }
        emit(event, predictor.device)
    except Exception as e:
        _report_failure("set_image_done", "building the sam_set_image event", e)


def _message(event: Event) -> str:
    if event.get("event") == PREDICT_EVENT:
        return ("{event} as_numpy={as_numpy} return_low_res={return_low_res} masks@{mask_device} "
                "iou@{iou_device} low@{low_device} {latency_ms:.3f} ms transfers={transfers} "
                "num_masks={num_masks} image={image_size}").format(**event)
    return " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in event.items())


def emit(event: Event, model_device: str = "cpu") -> None:
    """Deliver an event to the sinks and the logger (INFO, the dict as ``record.kpi``), then raise
    any alert it triggers. Never raises."""
    for sink in _sinks:
        try:
            sink(event)
        except Exception as e:
            _report_failure(id(sink), f"KPI sink {sink!r}", e)
    try:
        if LOGGER.isEnabledFor(logging.INFO):
            LOGGER.info("%s", _message(event), extra={"kpi": event})
    except Exception as e:
        _report_failure("logging", "the mobile_sam_c.kpi logger", e)
    try:
        for name, message in check_alerts(event, model_device):
            _alert(name, message, event)
    except Exception as e:
        _report_failure("alerts", "the KPI alert check", e)


# ---------------------------------------------------------------------------------------------
# Alerts.

def check_alerts(event: Mapping[str, Any], model_device: str) -> List[Tuple[str, str]]:
    """[(alert name, message)] for the conditions ``event`` meets, under the current settings
    (before rate limiting). The names: 'gpu_residency', 'latency', 'legacy_in_production'."""
    if event.get("event") != PREDICT_EVENT:
        return []
    s = _settings
    out: List[Tuple[str, str]] = []
    on_gpu = _is_gpu(model_device)
    if on_gpu and s.gpu_residency and not event["as_numpy"]:
        # 'cuda' (no index) from the core names its one device; 'cuda:1' must match exactly
        off = [f"{k}={event[k]}" for k in ("mask_device", "iou_device", "low_device")
               if event[k] != "skipped" and not (event[k] == model_device
                                                 or (model_device == "cuda" and _is_gpu(event[k])))]
        if off:
            out.append(("gpu_residency", f"GPU-resident pipeline broken: the model is on {model_device} but "
                                         f"outputs came back on {', '.join(off)} (as_numpy=0)"))
    limit = s.latency_ms if on_gpu else s.cpu_latency_ms
    if limit is not None and event["latency_ms"] > limit:
        out.append(("latency", f"predict took {event['latency_ms']:.3f} ms on {model_device}, above the "
                               f"{limit:g} ms threshold"))
    if s.production and event["as_numpy"]:
        out.append(("legacy_in_production", "legacy mode in production: predict(as_numpy=True) copies every "
                                            "output to host memory; use as_numpy=False"))
    return out


def _alert(name: str, message: str, event: Event) -> None:
    """Log one alert as a WARNING unless one of the same kind went out within the interval."""
    now = _clock()
    with _lock:
        last = _last_alert.get(name)
        if last is not None and now - last < _settings.alert_interval_s:
            _suppressed[name] = _suppressed.get(name, 0) + 1
            return
        _last_alert[name] = now
        skipped = _suppressed.pop(name, 0)
    if skipped:
        message += f" ({skipped} more since the last such alert, not logged)"
    LOGGER.warning("mobile_sam_c KPI alert [%s]: %s", name, message,
                   extra={"kpi": event, "kpi_alert": name})


# ---------------------------------------------------------------------------------------------
# Example sinks a team can wire in a few lines.

class JsonLinesSink:
    """Appends each event as one JSON line to a file: ``kpi.add_sink(JsonLinesSink("kpi.jsonl"))``."""

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> "JsonLinesSink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class PrometheusExporter:
    """Counters and latency histograms in Prometheus' text exposition format:
    ``exporter = PrometheusExporter(); kpi.add_sink(exporter)``, then serve ``exporter.text()``
    at /metrics (e.g. from http.server, or hand the text to your own endpoint)."""

    BUCKETS_MS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 2500.0)

    def __init__(self, prefix: str = "mobile_sam_c", buckets_ms: Sequence[float] = BUCKETS_MS) -> None:
        self.prefix = prefix
        self.buckets = tuple(sorted(float(b) for b in buckets_ms))
        self._lock = threading.Lock()
        self._counts: Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float] = {}
        self._hist: Dict[Tuple[str, Tuple[Tuple[str, str], ...]], List[float]] = {}

    def __call__(self, event: Event) -> None:
        kind = event.get("event")
        if kind == PREDICT_EVENT:
            labels = (("as_numpy", str(event["as_numpy"])), ("mask_device", str(event["mask_device"])),
                      ("return_low_res", str(event["return_low_res"])))
            metric = "predict"
        elif kind == SET_IMAGE_EVENT:
            labels, metric = (("device", str(event["device"])),), "set_image"
        else:
            return
        with self._lock:
            self._add(f"{metric}_total", labels, 1)
            self._add(f"{metric}_transfers_total", labels, event.get("transfers", 0))
            h = self._hist.setdefault((f"{metric}_latency_ms", labels), [0.0] * (len(self.buckets) + 2))
            for i, edge in enumerate(self.buckets):
                if event["latency_ms"] <= edge:
                    h[i] += 1
            h[-2] += 1  # count (the +Inf bucket)
            h[-1] += event["latency_ms"]  # sum

    def _add(self, name: str, labels: Tuple[Tuple[str, str], ...], value: float) -> None:
        self._counts[(name, labels)] = self._counts.get((name, labels), 0) + value

    @staticmethod
    def _labels(labels: Sequence[Tuple[str, str]]) -> str:
        inner = ",".join('{}="{}"'.format(k, v.replace("\\", "\\\\").replace('"', '\\"')) for k, v in labels)
        return "{" + inner + "}" if inner else ""

    def text(self) -> str:
        """The metrics now, in the text format Prometheus scrapes (version 0.0.4)."""
        lines: List[str] = []
        with self._lock:
            for name in sorted({n for n, _ in self._counts}):
                full = f"{self.prefix}_{name}"
                lines += [f"# HELP {full} mobile_sam_c KPI counter", f"# TYPE {full} counter"]
                for (n, labels), v in sorted(self._counts.items()):
                    if n == name:
                        lines.append(f"{full}{self._labels(labels)} {v:g}")
            for name in sorted({n for n, _ in self._hist}):
                full = f"{self.prefix}_{name}"
                lines += [f"# HELP {full} mobile_sam_c KPI latency in milliseconds", f"# TYPE {full} histogram"]
                for (n, labels), h in sorted(self._hist.items()):
                    if n != name:
                        continue
                    for edge, c in zip(self.buckets, h):
                        lines.append(f"{full}_bucket{self._labels(labels + (('le', f'{edge:g}'),))} {c:g}")
                    lines.append(f"{full}_bucket{self._labels(labels + (('le', '+Inf'),))} {h[-2]:g}")
                    lines.append(f"{full}_sum{self._labels(labels)} {h[-1]:.6g}")
                    lines.append(f"{full}_count{self._labels(labels)} {h[-2]:g}")
        return "\n".join(lines) + "\n"


def _configure_from_env_at_import() -> None:
    """A malformed MOBILE_SAM_C_* variable must not make ``import mobile_sam_c`` fail: warn, keep
    the defaults (``configure(from_env=True)`` raises the same error, naming the variable)."""
    try:
        configure(from_env=True)
    except ValueError as e:
        import warnings

        warnings.warn(f"mobile_sam_c.kpi: {e}; using the default alert settings", RuntimeWarning, stacklevel=2)


_configure_from_env_at_import()
