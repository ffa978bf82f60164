"""KPI telemetry (mobile_sam_c.kpi): the events of every predict mode, predict_torch and set_image
checked field by field against the core's counters and the outputs; sinks, the logger, the
example exporters; and each alert forced to fire, and checked not to fire otherwise."""
from __future__ import annotations

import json
import logging
import re
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List

import numpy as np
import pytest
import torch
from PIL import Image

import mobile_sam_c as msc
from mobile_sam_c import kpi
from mobile_sam_c.build_sam import RandomWeightsWarning

PREDICT_FIELDS = {"event", "as_numpy", "return_low_res", "mask_device", "iou_device", "low_device",
                  "latency_ms", "transfers", "num_masks", "image_size"}
SET_IMAGE_FIELDS = {"event", "method", "device", "latency_ms", "transfers", "image_size", "input_size"}
MODES = [(False, False), (False, True), (True, False), (True, True)]
POINT = dict(point_coords=np.array([[400.0, 260.0]]), point_labels=np.array([1]))
ENV = ("MOBILE_SAM_C_PRODUCTION", "MOBILE_SAM_C_KPI_LATENCY_MS", "MOBILE_SAM_C_KPI_CPU_LATENCY_MS",
       "MOBILE_SAM_C_KPI_ALERT_INTERVAL_S")


@pytest.fixture(scope="module")
def predictor() -> msc.SamPredictor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        model = msc.sam_model_registry["vit_t"](checkpoint=None)
    p = msc.SamPredictor(model)
    with Image.open(Path(msc.__file__).parent / "assets" / "dog.jpg") as im:
        p.set_image(np.asarray(im.convert("RGB")))
    return p


@pytest.fixture(autouse=True)
def clean_kpi(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Default settings from an environment without MOBILE_SAM_C_* variables, no sinks, and the
    kpi logger at its default level, before and after each test."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    kpi.configure(from_env=True)
    logger_level = kpi.LOGGER.level
    sinks = kpi._sinks
    kpi._sinks = ()
    yield
    kpi._sinks = sinks
    kpi.LOGGER.setLevel(logger_level)
    kpi._reported_failures.clear()
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    kpi.configure(from_env=True)


@pytest.fixture
def events() -> Iterator[List[Dict[str, Any]]]:
    got: List[Dict[str, Any]] = []
    kpi.add_sink(got.append)
    yield got
    kpi.remove_sink(got.append)


def d2h(p: msc.SamPredictor) -> int:
    return p.transfer_counts()["d2h"]


# ---------------------------------------------------------------------------------------------
# Events


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("as_numpy,return_low_res", MODES)
def test_predict_event_fields(predictor, events, as_numpy, return_low_res, multimask):
    before = d2h(predictor)
    t0 = time.perf_counter()
    masks, iou, low = predictor.predict(**POINT, multimask_output=multimask, as_numpy=as_numpy,
                                        return_low_res=return_low_res)
    wall_ms = 1e3 * (time.perf_counter() - t0)
    after = d2h(predictor)
    assert len(events) == 1
    e = events[0]
    assert set(e) == PREDICT_FIELDS
    assert e["event"] == "sam_predict_output"
    assert e["as_numpy"] == int(as_numpy) and e["return_low_res"] == int(return_low_res)
    assert e["mask_device"] == "cpu" and e["iou_device"] == "cpu"  # NumPy outputs on the CPU build
    assert e["low_device"] == ("cpu" if return_low_res else "skipped")
    assert (low is None) == (not return_low_res)
    assert 0 < e["latency_ms"] <= wall_ms
    assert e["transfers"] == after - before
    assert e["num_masks"] == masks.shape[0] == iou.shape[0] == (3 if multimask else 1)
    assert e["image_size"] == list(predictor.original_size) == [534, 800]
    json.dumps(e)  # JSON-ready as it stands


@pytest.mark.parametrize("return_masks", [True, False])
@pytest.mark.parametrize("as_numpy,return_low_res", MODES)
def test_predict_torch_event_fields(predictor, events, as_numpy, return_low_res, return_masks):
    boxes = torch.tensor([[100.0, 100.0, 500.0, 400.0], [600.0, 50.0, 900.0, 600.0]])
    before = d2h(predictor)
    masks, iou, low = predictor.predict_torch(None, None, boxes=boxes, as_numpy=as_numpy,
                                              return_low_res=return_low_res, return_masks=return_masks)
    after = d2h(predictor)
    assert len(events) == 1
    e = events[0]
    assert set(e) == PREDICT_FIELDS
    assert e["as_numpy"] == int(as_numpy) and e["return_low_res"] == int(return_low_res)
    assert e["mask_device"] == ("cpu" if return_masks else "skipped")
    assert e["iou_device"] == "cpu"
    assert e["low_device"] == ("cpu" if return_low_res else "skipped")
    assert e["transfers"] == after - before
    assert tuple(iou.shape) == (2, 3)
    assert e["num_masks"] == 6  # B x C masks over the batch
    if return_masks:
        assert tuple(masks.shape[:2]) == (2, 3)
    assert e["image_size"] == list(predictor.original_size)


def test_set_image_events(predictor, events):
    image = np.asarray(Image.open(Path(msc.__file__).parent / "assets" / "dog.jpg").convert("RGB"))
    before = d2h(predictor)
    predictor.set_image(image)
    mid = d2h(predictor)
    x = np.ascontiguousarray(np.asarray(msc.ResizeLongestSide(1024).apply_image(image), np.float32)
                             .transpose(2, 0, 1)[None])
    predictor.set_torch_image(x, image.shape[:2])
    after = d2h(predictor)
    assert [e["event"] for e in events] == ["sam_set_image", "sam_set_image"]
    for e, method, transfers in ((events[0], "set_image", mid - before), (events[1], "set_torch_image", after - mid)):
        assert set(e) == SET_IMAGE_FIELDS
        assert e["method"] == method
        assert e["device"] == predictor.device == "cpu"
        assert e["latency_ms"] > 0
        assert e["transfers"] == transfers
        assert e["image_size"] == [534, 800] and e["input_size"] == [684, 1024]


def test_logger_gets_event_on_record(predictor, caplog):
    with caplog.at_level(logging.INFO, logger="mobile_sam_c.kpi"):
        predictor.predict(**POINT, as_numpy=False, return_low_res=False)
    recs = [r for r in caplog.records if r.name == "mobile_sam_c.kpi"]
    assert len(recs) == 1 and recs[0].levelno == logging.INFO
    e = recs[0].kpi
    assert e["event"] == "sam_predict_output" and set(e) == PREDICT_FIELDS
    msg = recs[0].getMessage()
    assert msg.startswith("sam_predict_output") and "as_numpy=0" in msg and "low@skipped" in msg


def test_failing_sink_reported_once_and_skipped(predictor, events, caplog):
    calls = []

    def broken(event):
        calls.append(event)
        raise RuntimeError("disk full")

    kpi.add_sink(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="mobile_sam_c.kpi"):
            outs = [predictor.predict(**POINT, as_numpy=True) for _ in range(3)]
    finally:
        kpi.remove_sink(broken)
    assert all(o[0].shape == (3, 534, 800) for o in outs)  # predict itself unharmed
    assert len(calls) == 3 and len(events) == 3  # the other sink still gets every event
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "disk full" in errors[0].getMessage()


def test_failing_event_builder_never_raises(predictor, events, monkeypatch, caplog):
    monkeypatch.setattr(kpi, "device_of", lambda x: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="mobile_sam_c.kpi"):
        masks, iou, low = predictor.predict(**POINT, as_numpy=True)
    assert masks.shape == (3, 534, 800) and events == []
    assert any("ZeroDivisionError" in r.getMessage() for r in caplog.records)


def test_nobody_listening_builds_nothing(predictor, monkeypatch):
    built = []
    monkeypatch.setattr(kpi, "Probe", lambda p: built.append(p))
    kpi.LOGGER.setLevel(logging.WARNING)
    assert not kpi.listening("cpu")  # defaults on the CPU: no sink, no INFO, no alert that could fire
    predictor.predict(**POINT)
    predictor.predict_torch(np.array([[[400.0, 260.0]]]), np.array([[1]]))
    assert built == []
    kpi.LOGGER.setLevel(logging.INFO)  # someone listens: the same calls build events
    predictor.predict(**POINT)
    assert len(built) == 1
    kpi.LOGGER.setLevel(logging.WARNING)
    assert kpi.listening("cuda")  # on a GPU the residency and latency alerts are on by default
    kpi.configure(cpu_latency_ms=50.0)
    assert kpi.listening("cpu")


class FakeDeviceArray:
    def __init__(self, kind: int, index: int) -> None:
        self.dev = (kind, index)

    def __dlpack_device__(self):
        return self.dev


def test_device_of():
    assert kpi.device_of(None) == "skipped"
    assert kpi.device_of(np.zeros(3)) == "cpu"
    assert kpi.device_of(torch.zeros(3)) == "cpu"
    assert kpi.device_of(FakeDeviceArray(1, 0)) == "cpu"
    assert kpi.device_of(FakeDeviceArray(2, 0)) == "cuda:0"
    assert kpi.device_of(FakeDeviceArray(2, 3)) == "cuda:3"


def test_json_lines_sink(predictor, events, tmp_path):
    path = tmp_path / "kpi.jsonl"
    with kpi.JsonLinesSink(path) as sink:
        kpi.add_sink(sink)
        try:
            for as_numpy, low in MODES:
                predictor.predict(**POINT, as_numpy=as_numpy, return_low_res=low)
        finally:
            kpi.remove_sink(sink)
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == events and len(events) == 4


def test_prometheus_exporter(predictor, events):
    exporter = kpi.PrometheusExporter(buckets_ms=(1.0, 2.0, 1e9))
    kpi.add_sink(exporter)
    try:
        for as_numpy, low in MODES + [(False, False)]:
            predictor.predict(**POINT, as_numpy=as_numpy, return_low_res=low)
    finally:
        kpi.remove_sink(exporter)
    exporter({"event": "sam_predict_output", "as_numpy": 0, "return_low_res": 0, "mask_device": "cuda:0",
              "latency_ms": 1.5, "transfers": 0})
    exporter({"event": "sam_set_image", "device": "cpu", "latency_ms": 700.0, "transfers": 0})
    samples = {}
    for line in exporter.text().splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    resident = 'as_numpy="0",mask_device="cpu",return_low_res="0"'
    assert samples[f"mobile_sam_c_predict_total{{{resident}}}"] == 2
    assert samples[f"mobile_sam_c_predict_total{{{resident.replace('cpu', 'cuda:0')}}}"] == 1
    assert samples['mobile_sam_c_predict_total{as_numpy="1",mask_device="cpu",return_low_res="1"}'] == 1
    resident_events = [e for e in events if e["as_numpy"] == 0 and e["return_low_res"] == 0]
    transfers = sum(e["transfers"] for e in resident_events)
    assert samples[f"mobile_sam_c_predict_transfers_total{{{resident}}}"] == transfers
    gpu = 'as_numpy="0",mask_device="cuda:0",return_low_res="0"'
    assert samples[f'mobile_sam_c_predict_latency_ms_bucket{{{gpu},le="1"}}'] == 0
    assert samples[f'mobile_sam_c_predict_latency_ms_bucket{{{gpu},le="2"}}'] == 1
    assert samples[f'mobile_sam_c_predict_latency_ms_bucket{{{gpu},le="+Inf"}}'] == 1
    assert samples[f"mobile_sam_c_predict_latency_ms_count{{{gpu}}}"] == 1
    assert samples[f"mobile_sam_c_predict_latency_ms_sum{{{gpu}}}"] == pytest.approx(1.5)
    assert samples[f"mobile_sam_c_predict_latency_ms_sum{{{resident}}}"] == pytest.approx(
        sum(e["latency_ms"] for e in resident_events), rel=1e-5)
    assert samples['mobile_sam_c_set_image_latency_ms_bucket{device="cpu",le="2"}'] == 0
    assert samples['mobile_sam_c_set_image_total{device="cpu"}'] == 1
    assert re.search(r"^# TYPE mobile_sam_c_predict_latency_ms histogram$", exporter.text(), re.M)


def test_add_sink_and_configure_validate():
    with pytest.raises(TypeError, match="sink"):
        kpi.add_sink("not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latency_ms"):
        kpi.configure(latency_ms=-1.0)
    with pytest.raises(ValueError, match="cpu_latency_ms"):
        kpi.configure(cpu_latency_ms=float("nan"))
    with pytest.raises(ValueError, match="alert_interval_s"):
        kpi.configure(alert_interval_s=-5)
    kpi.remove_sink(print)  # not registered: no error


# ---------------------------------------------------------------------------------------------
# Alerts: check_alerts on forced conditions, then through real predict calls.


def event(**kw: Any) -> Dict[str, Any]:
    e = {"event": "sam_predict_output", "as_numpy": 0, "return_low_res": 0, "mask_device": "cuda:0",
         "iou_device": "cuda:0", "low_device": "skipped", "latency_ms": 0.5, "transfers": 0, "num_masks": 3,
         "image_size": [534, 800]}
    e.update(kw)
    return e


def names(e: Dict[str, Any], device: str) -> List[str]:
    return [n for n, _ in kpi.check_alerts(e, device)]


def test_gpu_residency_alert_condition():
    assert names(event(), "cuda") == []
    assert names(event(), "cuda:0") == []
    assert names(event(mask_device="cpu"), "cuda") == ["gpu_residency"]
    assert names(event(low_device="cpu", return_low_res=1), "cuda:0") == ["gpu_residency"]
    assert names(event(iou_device="cuda:1"), "cuda:0") == ["gpu_residency"]  # another GPU
    assert names(event(mask_device="cpu", iou_device="cpu"), "cpu") == []  # a CPU model
    assert names(event(mask_device="cpu", as_numpy=1), "cuda") == []  # NumPy asked for (legacy alert's job)
    kpi.configure(gpu_residency=False)
    assert names(event(mask_device="cpu"), "cuda") == []


def test_latency_alert_condition():
    assert kpi.settings()["latency_ms"] == 2.0 and kpi.settings()["cpu_latency_ms"] is None
    assert names(event(latency_ms=2.5), "cuda") == ["latency"]
    assert names(event(latency_ms=2.0), "cuda") == []
    assert names(event(latency_ms=500.0, mask_device="cpu", iou_device="cpu"), "cpu") == []  # off on the CPU
    kpi.configure(cpu_latency_ms=40.0, latency_ms=None)
    assert names(event(latency_ms=41.0, mask_device="cpu", iou_device="cpu"), "cpu") == ["latency"]
    assert names(event(latency_ms=39.0, mask_device="cpu", iou_device="cpu"), "cpu") == []
    assert names(event(latency_ms=99.0), "cuda") == []


def test_legacy_in_production_alert_condition():
    assert names(event(as_numpy=1, mask_device="cpu", iou_device="cpu"), "cpu") == []
    kpi.configure(production=True)
    assert names(event(as_numpy=1, mask_device="cpu", iou_device="cpu"), "cpu") == ["legacy_in_production"]
    assert names(event(as_numpy=0, mask_device="cpu", iou_device="cpu"), "cpu") == []
    assert names({"event": "sam_set_image", "latency_ms": 1e6}, "cpu") == []  # predict events only


def test_alert_settings_from_environment(monkeypatch):
    monkeypatch.setenv("MOBILE_SAM_C_PRODUCTION", "1")
    monkeypatch.setenv("MOBILE_SAM_C_KPI_LATENCY_MS", "off")
    monkeypatch.setenv("MOBILE_SAM_C_KPI_CPU_LATENCY_MS", "35")
    monkeypatch.setenv("MOBILE_SAM_C_KPI_ALERT_INTERVAL_S", "5")
    s = kpi.configure(from_env=True)
    assert (s["production"], s["latency_ms"], s["cpu_latency_ms"], s["alert_interval_s"]) == (True, None, 35.0, 5.0)
    assert kpi.configure(production=False)["cpu_latency_ms"] == 35.0  # other settings kept
    monkeypatch.setenv("MOBILE_SAM_C_KPI_CPU_LATENCY_MS", "fast")
    with pytest.raises(ValueError, match="MOBILE_SAM_C_KPI_CPU_LATENCY_MS"):
        kpi.configure(from_env=True)


def alerts(caplog) -> List[str]:
    return [r.kpi_alert for r in caplog.records if r.levelno == logging.WARNING and hasattr(r, "kpi_alert")]


def test_alerts_fire_from_predict(predictor, caplog):
    kpi.configure(alert_interval_s=0)
    with caplog.at_level(logging.WARNING, logger="mobile_sam_c.kpi"):
        predictor.predict(**POINT, as_numpy=True)
        assert alerts(caplog) == []  # defaults on a CPU model: nothing fires
        kpi.configure(production=True)
        predictor.predict(**POINT, as_numpy=True)
        assert alerts(caplog) == ["legacy_in_production"]
        predictor.predict(**POINT, as_numpy=False)
        assert alerts(caplog) == ["legacy_in_production"]
        kpi.configure(production=False, cpu_latency_ms=1e-6)  # every predict is slower than that
        predictor.predict(**POINT)
        assert alerts(caplog) == ["legacy_in_production", "latency"]
        kpi.configure(cpu_latency_ms=1e7)
        predictor.predict(**POINT)
        assert alerts(caplog) == ["legacy_in_production", "latency"]
    record = [r for r in caplog.records if getattr(r, "kpi_alert", None) == "latency"][0]
    assert record.kpi["event"] == "sam_predict_output" and "threshold" in record.getMessage()


class GpuClaimingPredictor(msc.SamPredictor):
    """A predictor whose model claims to be on a GPU while its outputs are NumPy arrays."""

    @property
    def device(self) -> str:
        return "cuda"


def test_gpu_residency_alert_from_predict(predictor, caplog, monkeypatch):
    fake = GpuClaimingPredictor(predictor.model)
    fake.set_image_embedding(predictor.get_image_embedding(), predictor.original_size)
    kpi.configure(alert_interval_s=0, latency_ms=None)
    with caplog.at_level(logging.WARNING, logger="mobile_sam_c.kpi"):
        fake.predict(**POINT, as_numpy=False)
        assert alerts(caplog) == ["gpu_residency"]
        fake.predict(**POINT, as_numpy=True)  # host outputs asked for: not this alert
        assert alerts(caplog) == ["gpu_residency"]
        monkeypatch.setattr(kpi, "device_of", lambda x: "skipped" if x is None else "cuda:0")
        fake.predict(**POINT, as_numpy=False)  # outputs on the model's GPU: resident, no alert
        assert alerts(caplog) == ["gpu_residency"]
        kpi.configure(latency_ms=1e-6)  # the default GPU threshold path
        fake.predict(**POINT, as_numpy=False)
        assert alerts(caplog) == ["gpu_residency", "latency"]


def test_alerts_rate_limited(predictor, caplog, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(kpi, "_clock", lambda: now[0])
    kpi.configure(production=True, alert_interval_s=60)
    with caplog.at_level(logging.WARNING, logger="mobile_sam_c.kpi"):
        for t in (1000.0, 1010.0, 1059.0):
            now[0] = t
            predictor.predict(**POINT, as_numpy=True)
        assert alerts(caplog) == ["legacy_in_production"]
        now[0] = 1061.0
        predictor.predict(**POINT, as_numpy=True)
        assert alerts(caplog) == ["legacy_in_production"] * 2
    assert "2 more since the last such alert" in caplog.records[-1].getMessage()
