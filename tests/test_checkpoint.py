"""Tests of mobile_sam_c.checkpoint (reading weights without PyTorch) and mobile_sam_c.random_weights,
against files written by the real torch.save / safetensors and against hostile or corrupt files."""
import collections
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import tempfile
import sys
import zipfile

import mobile_sam  # the reference (a test dependency): a missing one must fail, not skip
import numpy as np
import pytest
import torch

from mobile_sam_c import checkpoint, random_weights
from mobile_sam_c.checkpoint import CheckpointError

HEAD = ("image_encoder.norm_head.", "image_encoder.head.")


# ------------------------------------------------------------------------------------------
# Fixtures: the reference model's spec and a randomised state dict of it.

@pytest.fixture(scope="module")
def sam_ref():
    torch.manual_seed(0)
    return mobile_sam.sam_model_registry["vit_t"]().eval()


@pytest.fixture(scope="module")
def spec(sam_ref):
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", ""))
            for k, v in sam_ref.state_dict().items() if not k.startswith(HEAD)]


@pytest.fixture(scope="module")
def ref_state(sam_ref, spec):
    """The reference model's full state dict (head included) holding random_state_dict weights
    and distinct non-zero num_batches_tracked counters, as torch tensors."""
    sd = {k: v.clone() for k, v in sam_ref.state_dict().items()}
    for i, (k, v) in enumerate(random_weights.random_state_dict(spec, seed=3).items()):
        sd[k] = torch.from_numpy(v.copy())
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(1000 + i, dtype=torch.int64)
    return sd


def _np(t):
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.resolve_neg().numpy()


def _assert_same(loaded, expected):
    """loaded and expected (name -> numpy) hold the same names, dtypes, shapes and bytes."""
    assert set(loaded) == set(expected)
    for k, e in expected.items():
        a = loaded[k]
        assert isinstance(a, np.ndarray), k
        assert a.dtype == e.dtype and a.shape == e.shape, (k, a.dtype, e.dtype, a.shape, e.shape)
        assert a.tobytes() == np.ascontiguousarray(e).tobytes(), k
        assert a.flags.c_contiguous, k


def _save(fmt, state, path):
    if fmt == "zip":
        torch.save(state, path)
    elif fmt == "legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    elif fmt == "safetensors":
        from safetensors.torch import save_file
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path),
                  metadata={"note": "test"})
    elif fmt == "npz":
        with open(path, "wb") as f:
            np.savez(f, **{k: _np(v) for k, v in state.items()})
    else:
        raise AssertionError(fmt)
    return path


FORMATS = ["zip", "legacy", "safetensors", "npz"]


# ------------------------------------------------------------------------------------------
# Round trips.

@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_of_reference_state_dict(fmt, ref_state, spec, tmp_path):
    path = _save(fmt, ref_state, tmp_path / "weights.bin")
    loaded = checkpoint.load_state_dict(str(path))
    _assert_same(loaded, {k: _np(v) for k, v in ref_state.items()})
    again = checkpoint.load_state_dict(path)  # os.PathLike as well as str
    _assert_same(again, loaded)
    checked = checkpoint.validate_state_dict(loaded, spec)
    assert list(checked) == [n for n, _, _ in spec]  # the head is dropped
    assert checked["image_encoder.layers.1.blocks.0.attn.qkv.bias"].tobytes() == \
        loaded["image_encoder.layers.1.blocks.0.attn.qkv.bias"].tobytes()


def test_zip_checkpoint_from_state_dict_keeps_order(ref_state, tmp_path):
    path = _save("zip", ref_state, tmp_path / "m.pt")
    assert list(checkpoint.load_state_dict(path)) == list(ref_state)


def test_format_is_found_from_content_not_extension(ref_state, tmp_path):
    small = {k: v for k, v in list(ref_state.items())[:12]}
    expected = {k: _np(v) for k, v in small.items()}
    for fmt, misleading in [("zip", "w.safetensors"), ("legacy", "w.npz"),
                            ("safetensors", "w.pt"), ("npz", "w.pth")]:
        path = _save(fmt, small, tmp_path / misleading)
        _assert_same(checkpoint.load_state_dict(path), expected)


def test_mapping_of_numpy_arrays_and_of_torch_tensors(sam_ref, ref_state):
    expected = {k: _np(v) for k, v in ref_state.items()}
    _assert_same(checkpoint.load_state_dict(expected), expected)
    _assert_same(checkpoint.load_state_dict(ref_state), expected)
    # Parameters that require grad (detach is needed), and a result that does not alias them.
    params = dict(sam_ref.named_parameters())
    loaded = checkpoint.load_state_dict(params)
    _assert_same(loaded, {k: _np(v) for k, v in params.items()})
    name = "mask_decoder.iou_token.weight"
    loaded[name][...] = 123.0
    assert not torch.any(params[name] == 123.0)


def test_mapping_with_array_protocol_objects_and_bad_values():
    class ArrayLike:
        def __array__(self, dtype=None, copy=None):
            return np.arange(6, dtype=np.float32).reshape(2, 3)

    out = checkpoint.load_state_dict({"a": ArrayLike(), "b": [1.5, 2.5]})
    assert out["a"].shape == (2, 3) and out["a"].dtype == np.float32
    assert out["b"].tolist() == [1.5, 2.5]
    with pytest.raises(CheckpointError, match="'s'"):
        checkpoint.load_state_dict({"s": "text"})
    with pytest.raises(CheckpointError, match="not a string"):
        checkpoint.load_state_dict({1: np.zeros(2)})


def _view_state():
    torch.manual_seed(1)
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    longs = torch.arange(24, dtype=torch.int64).reshape(4, 6)
    return {
        "full": base,
        "slice": base[2:4, 3:7],
        "transposed": base.t(),
        "row": base[5],
        "strided": base[:, ::3],
        "same_again": base,
        "expanded": torch.arange(3.0).reshape(3, 1).expand(3, 4),
        "scalar": torch.tensor(7, dtype=torch.int64),
        "long_view": longs[1:, 2:5].t(),
        "empty": torch.zeros(0, 5),
        "neg_view": torch.randn(4)._neg_view(),
        "param": torch.nn.Parameter(torch.randn(2, 3)),
        "param_slice": torch.nn.Parameter(base[1:3, 2:4].clone()),
    }


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_views_shared_storages_and_parameters(fmt, tmp_path):
    state = _view_state()
    path = _save(fmt, state, tmp_path / "views.pt")
    if fmt == "zip":  # the views really share storages in the file
        with zipfile.ZipFile(path) as zf:
            n_storages = sum("/data/" in n for n in zf.namelist())
        assert n_storages < len(state) - 4
    loaded = checkpoint.load_state_dict(path)
    _assert_same(loaded, {k: _np(v) for k, v in state.items()})
    assert np.array_equal(loaded["neg_view"], -state["neg_view"].resolve_neg().neg().numpy())
    # Every array is its own writable copy.
    loaded["slice"][0, 0] = -1.0
    assert loaded["full"][2, 3] == 23.0 and loaded["same_again"][2, 3] == 23.0
    assert all(a.flags.writeable for a in loaded.values())


@pytest.mark.parametrize("fmt", ["zip", "legacy", "safetensors", "mapping"])
def test_dtypes_fp16_bf16_fp64_and_ints(fmt, tmp_path):
    torch.manual_seed(2)
    x = torch.randn(5, 7)
    state = {
        "h": x.half(), "b": x.bfloat16(), "d": x.double(), "f": x,
        "i32": torch.arange(-3, 3, dtype=torch.int32), "i16": torch.arange(4, dtype=torch.int16),
        "i8": torch.arange(-2, 2, dtype=torch.int8), "u8": torch.arange(5, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]), "n": torch.tensor(5, dtype=torch.int64),
        "b0": torch.tensor(1.5, dtype=torch.bfloat16), "h0": torch.tensor(-2.5, dtype=torch.float16),
    }
    src = state if fmt == "mapping" else _save(fmt, state, tmp_path / "dtypes")
    loaded = checkpoint.load_state_dict(src)
    _assert_same(loaded, {k: _np(v) for k, v in state.items()})
    assert loaded["b"].dtype == np.float32  # bfloat16 widens exactly
    assert np.array_equal(loaded["b"], x.bfloat16().float().numpy())
    assert loaded["b0"].shape == () and loaded["b0"].dtype == np.float32 and float(loaded["b0"]) == 1.5
    spec = [("h", (5, 7), "float32"), ("b", (5, 7), "float32"), ("d", (5, 7), "float32"),
            ("i32", (6,), "int64"), ("u8", (5,), "int64")]
    out = checkpoint.validate_state_dict({k: loaded[k] for k, _, _ in spec}, spec)
    assert out["h"].dtype == np.float32 and np.array_equal(out["h"], x.half().float().numpy())
    assert np.array_equal(out["d"], x.double().float().numpy())
    assert out["i32"].dtype == np.int64 and out["i32"].tolist() == [-3, -2, -1, 0, 1, 2]
    assert out["u8"].dtype == np.int64


def _rewrite_zip(src, dst, edit):
    """Copy the zip src to dst; edit(name, data) returns new data, or None to drop the member."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)
    return dst


def test_big_endian_zip_archive(tmp_path):
    torch.manual_seed(3)
    state = {"f": torch.randn(3, 4), "l": torch.arange(5, dtype=torch.int64) - 2,
             "h": torch.randn(6).half(), "b": torch.randn(2, 2).bfloat16(),
             "t": torch.randn(4, 3).t()}
    itemsize = {"0": 4, "1": 8, "2": 2, "3": 2, "4": 4}  # storages are keyed in pickling order
    src = _save("zip", state, tmp_path / "little.pt")

    def to_big(name, data):
        if name.endswith("/byteorder"):
            return b"big"
        if "/data/" in name:
            n = itemsize[name.rsplit("/", 1)[1]]
            return np.frombuffer(data, dtype=f"<u{n}").astype(f">u{n}").tobytes()
        return data

    big = _rewrite_zip(src, tmp_path / "big.pt", to_big)
    _assert_same(checkpoint.load_state_dict(big), {k: _np(v) for k, v in state.items()})
    odd = _rewrite_zip(src, tmp_path / "odd.pt",
                       lambda n, d: b"middle" if n.endswith("/byteorder") else d)
    with pytest.raises(CheckpointError, match="byte order"):
        checkpoint.load_state_dict(odd)
    # Without a byteorder record (torch < 2.1) the data is little-endian.
    none = _rewrite_zip(src, tmp_path / "none.pt",
                        lambda n, d: None if n.endswith("/byteorder") else d)
    _assert_same(checkpoint.load_state_dict(none), {k: _np(v) for k, v in state.items()})


# ------------------------------------------------------------------------------------------
# Hostile pickles: refused, and nothing they ask for runs.

class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _evil_pickle(marker, protocol=2, wrap=True):
    return pickle.dumps({"w": _Evil(marker)} if wrap else _Evil(marker), protocol=protocol)


def test_control_the_payload_really_runs_under_plain_pickle(tmp_path):
    marker = tmp_path / "control"
    pickle.loads(_evil_pickle(marker))
    assert marker.exists()


def _assert_refused(path, marker, global_name="system"):
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_state_dict(path)
    assert isinstance(info.value, pickle.UnpicklingError)
    assert isinstance(info.value, checkpoint.UnsafeCheckpointError)
    msg = str(info.value)
    assert global_name in msg and "refusing to load" in msg and str(path) in msg
    assert marker is None or not marker.exists()
    return msg


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_zip_data_pkl(protocol, tmp_path):
    marker = tmp_path / "pwned"
    src = _save("zip", {"w": torch.ones(3)}, tmp_path / "good.pt")
    bad = _rewrite_zip(src, tmp_path / "bad.pt",
                       lambda n, d: _evil_pickle(marker, protocol) if n.endswith("data.pkl") else d)
    msg = _assert_refused(bad, marker)
    assert "posix.system" in msg or "os.system" in msg or "nt.system" in msg


@pytest.mark.parametrize("position", [0, 2, 3])
def test_malicious_legacy_file(position, tmp_path):
    marker = tmp_path / "pwned"
    parts = [pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), pickle.dumps(1001, protocol=2),
             pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
             pickle.dumps({}, protocol=2), pickle.dumps([], protocol=2)]
    parts[position] = _evil_pickle(marker, wrap=position == 3)
    path = tmp_path / "legacy_bad.pt"
    path.write_bytes(b"".join(parts))
    _assert_refused(path, marker)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_malicious_plain_pickle(protocol, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "plain.pkl"
    path.write_bytes(_evil_pickle(marker, protocol, wrap=False))
    _assert_refused(path, marker)


def test_whole_module_and_torchscript_are_refused(tmp_path):
    path = _save("zip", torch.nn.Linear(2, 2), tmp_path / "module.pt")
    _assert_refused(path, None, "torch.nn.modules.linear.Linear")
    legacy = _save("legacy", torch.nn.Linear(2, 2), tmp_path / "module_legacy.pt")
    _assert_refused(legacy, None, "torch.nn.modules.linear.Linear")
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(scripted))
    assert "TorchScript" in _assert_refused(scripted, None, "__torch__")


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_training_checkpoint_wrapping_a_state_dict(fmt, small_state, tmp_path):
    path = _save(fmt, {"model": small_state, "epoch": 3, "note": "x"}, tmp_path / "train.pt")
    _assert_same(checkpoint.load_state_dict(path), {k: _np(v) for k, v in small_state.items()})
    other = _save(fmt, {"weights": small_state, "epoch": 3}, tmp_path / "other.pt")
    _assert_corrupt(other, "not a tensor")


def test_plain_pickle_of_a_dict_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="not a torch.save checkpoint"):
        checkpoint.load_state_dict(path)


# ------------------------------------------------------------------------------------------
# Corrupt files.

def _assert_corrupt(path, match=None):
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_state_dict(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)
    if match is not None:
        assert match in str(info.value), str(info.value)
    return str(info.value)


@pytest.fixture(scope="module")
def small_state():
    torch.manual_seed(4)
    return {"a.weight": torch.randn(64, 32), "a.bias": torch.randn(64),
            "bn.num_batches_tracked": torch.tensor(3), "c.weight": torch.randn(16, 8, 3, 3)}


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_files(fmt, small_state, tmp_path):
    full = _save(fmt, small_state, tmp_path / "full").read_bytes()
    cuts = sorted({1, 2, 7, 8, 9, 30, 64, 200, len(full) // 3, len(full) // 2,
                   len(full) - 100, len(full) - 22, len(full) - 1})
    for cut in cuts:
        path = tmp_path / f"cut{cut}"
        path.write_bytes(full[:cut])
        _assert_corrupt(path)


def test_empty_file_and_random_bytes(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _assert_corrupt(empty, "empty")
    rng = np.random.default_rng(5)
    for i, prefix in enumerate([b"", b"PK\x03\x04", b"PK\x05\x06", b"\x80\x02", b"\x80\x05",
                                struct.pack("<Q", 40) + b"{", b"\x93NUMPY", b""]):
        path = tmp_path / f"random{i}"
        path.write_bytes(prefix + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        _assert_corrupt(path)


def test_zip_archives_that_are_not_checkpoints(small_state, tmp_path):
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("archive/notes.txt", "hello")
        zf.writestr("archive/data/0", b"\0" * 16)
    _assert_corrupt(plain, "no data.pkl")
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    _assert_corrupt(empty, "no data.pkl")
    src = _save("zip", small_state, tmp_path / "good.pt")
    no_pkl = _rewrite_zip(src, tmp_path / "no_pkl.pt",
                          lambda n, d: None if n.endswith("data.pkl") else d)
    _assert_corrupt(no_pkl, "no data.pkl")


def test_zip_storage_missing_short_or_damaged(small_state, tmp_path):
    src = _save("zip", small_state, tmp_path / "good.pt")
    missing = _rewrite_zip(src, tmp_path / "missing.pt",
                           lambda n, d: None if n.endswith("/data/1") else d)
    _assert_corrupt(missing, "data/1")
    short = _rewrite_zip(src, tmp_path / "short.pt",
                         lambda n, d: d[:-4] if n.endswith("/data/0") else d)
    _assert_corrupt(short, "data/0")
    # Flip one byte of a storage inside the archive: the CRC check catches it.
    raw = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        info = zf.getinfo(next(n for n in zf.namelist() if n.endswith("/data/0")))
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
    raw[info.header_offset + 30 + name_len + extra_len + 100] ^= 0xFF
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(bytes(raw))
    _assert_corrupt(flipped)


class _FakeStorage:
    def __init__(self, key, stype, numel, view=False):
        self.key, self.stype, self.numel, self.view = key, stype, numel, view


class _FakeTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _TorchPickler(pickle.Pickler):
    legacy = False

    def persistent_id(self, obj):
        if isinstance(obj, _FakeStorage):
            pid = ("storage", obj.stype, obj.key, "cpu", obj.numel)
            return pid + (obj.view if obj.view is not False else None,) if self.legacy else pid
        if isinstance(obj, str) and obj.startswith("PID:"):
            return obj[4:]
        return None


def _crafted_zip(path, obj, storages):
    buf = io.BytesIO()
    _TorchPickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            zf.writestr(f"archive/data/{key}", data)
        zf.writestr("archive/version", "3\n")
    return path


def _crafted_legacy(path, obj, storages, counts=None):
    """storages: key -> float32 bytes; counts overrides the element count written before each."""
    buf = io.BytesIO()
    for head in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(head, buf, protocol=2)
    p = _TorchPickler(buf, protocol=2)
    p.legacy = True
    p.dump(obj)
    pickle.dump(sorted(storages), buf, protocol=2)
    for key in sorted(storages):
        count = (counts or {}).get(key, len(storages[key]) // 4)
        buf.write(struct.pack("<q", count) + storages[key])
    path.write_bytes(buf.getvalue())
    return path


FLOATS = np.arange(10, dtype="<f4").tobytes()


def test_crafted_zip_control_loads(tmp_path):
    """The crafting helpers write valid files: the same tensor with in-range values loads."""
    st = _FakeStorage("0", torch.FloatStorage, 10)
    path = _crafted_zip(tmp_path / "ok.pt", {"t": _FakeTensor(st, 2, (2, 3), (1, 2))}, {"0": FLOATS})
    t = checkpoint.load_state_dict(path)["t"]
    assert t.tolist() == [[2, 4, 6], [3, 5, 7]]
    legacy = _crafted_legacy(tmp_path / "ok_legacy.pt",
                             {"t": _FakeTensor(st, 2, (2, 3), (1, 2))}, {"0": FLOATS})
    assert checkpoint.load_state_dict(legacy)["t"].tolist() == [[2, 4, 6], [3, 5, 7]]
    view = _FakeStorage("0", torch.FloatStorage, 10, view=("v", 4, 6))
    legacy_view = _crafted_legacy(tmp_path / "view_legacy.pt",
                                  {"t": _FakeTensor(view, 1, (2,), (2,))}, {"0": FLOATS})
    assert checkpoint.load_state_dict(legacy_view)["t"].tolist() == [5, 7]


BAD_TENSORS = {
    "offset_past_end": (10, (1,), (1,), "reaches element"),
    "size_past_end": (0, (11,), (1,), "reaches element"),
    "stride_past_end": (1, (2, 2), (5, 4), "reaches element"),
    "last_element_plus_one": (5, (2, 3), (3, 1), "reaches element"),
    "negative_stride": (9, (3,), (-1,), "negative"),
    "negative_offset": (-1, (2,), (1,), "negative"),
    "negative_size": (0, (-2,), (1,), "negative"),
    "huge_broadcast": (0, (1 << 20, 1 << 20), (0, 0), "expand"),
    "size_not_tuple": (0, "abc", (1,), "size"),
    "float_offset": (0.5, (1,), (1,), "offset"),
    "rank_mismatch": (0, (2, 2), (1,), "differ"),
}


@pytest.mark.parametrize("case", sorted(BAD_TENSORS))
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_offsets_and_strides_outside_the_storage(case, fmt, tmp_path):
    offset, size, stride, match = BAD_TENSORS[case]
    st = _FakeStorage("0", torch.FloatStorage, 10)
    obj = {"t": _FakeTensor(st, offset, size, stride)}
    path = tmp_path / f"{case}.pt"
    if fmt == "zip":
        _crafted_zip(path, obj, {"0": FLOATS})
    else:
        _crafted_legacy(path, obj, {"0": FLOATS})
    _assert_corrupt(path, match)


def test_crafted_storage_problems(tmp_path):
    ok = {"0": FLOATS}
    big = _FakeStorage("0", torch.FloatStorage, 11)  # claims more than the member holds
    _assert_corrupt(_crafted_zip(tmp_path / "a.pt", {"t": _FakeTensor(big, 0, (1,), (1,))}, ok),
                    "expected 44")
    escape = _FakeStorage("../../../etc/passwd", torch.FloatStorage, 1)
    _assert_corrupt(_crafted_zip(tmp_path / "b.pt", {"t": _FakeTensor(escape, 0, (1,), (1,))}, ok),
                    "missing")
    plain_pid = {"t": "PID:0"}
    _assert_corrupt(_crafted_zip(tmp_path / "c.pt", plain_pid, ok), "storage reference")
    not_tensor = {"t": 3, "u": _FakeTensor(_FakeStorage("0", torch.FloatStorage, 10), 0, (1,), (1,))}
    _assert_corrupt(_crafted_zip(tmp_path / "d.pt", not_tensor, ok), "not a tensor")
    _assert_corrupt(_crafted_zip(tmp_path / "e.pt", [1, 2], ok), "not a dict")
    st = _FakeStorage("0", torch.FloatStorage, 10)
    _assert_corrupt(_crafted_legacy(tmp_path / "f.pt", {"t": _FakeTensor(st, 0, (1,), (1,))}, ok,
                                    counts={"0": 9}), "holds 9 elements")
    view = _FakeStorage("0", torch.FloatStorage, 10, view=("v", 8, 6))
    _assert_corrupt(_crafted_legacy(tmp_path / "g.pt", {"t": _FakeTensor(view, 0, (1,), (1,))}, ok),
                    "outside storage")
    _assert_corrupt(_crafted_legacy(tmp_path / "h.pt", {"t": _FakeTensor(st, 0, (1,), (1,))},
                                    {"0": FLOATS, "1": FLOATS}), "no tensor refers")


def _safetensors_bytes(header, data, header_len=None):
    h = json.dumps(header).encode() if isinstance(header, dict) else header
    return struct.pack("<Q", len(h) if header_len is None else header_len) + h + data


@pytest.mark.parametrize("case", ["header_too_long", "not_json", "not_object", "duplicate",
                                  "offsets_past_data", "offsets_wrong_length", "bad_dtype",
                                  "negative_shape", "reversed_offsets"])
def test_corrupt_safetensors(case, tmp_path):
    data = np.arange(6, dtype="<f4").tobytes()
    good = {"t": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
    ok_path = tmp_path / "ok.safetensors"
    ok_path.write_bytes(_safetensors_bytes(good, data))
    assert checkpoint.load_state_dict(ok_path)["t"].tolist() == [[0, 1, 2], [3, 4, 5]]
    entry = dict(good["t"])
    raw = None
    header_len = None
    if case == "header_too_long":
        header_len = 10 ** 6
    elif case == "not_json":
        raw = b"{not json at all"
    elif case == "not_object":
        raw = b"[1, 2]    "
    elif case == "duplicate":
        raw = (b'{"t": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, '
               b'"t": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}')
    elif case == "offsets_past_data":
        entry["data_offsets"] = [0, 28]
        entry["shape"] = [7]
    elif case == "offsets_wrong_length":
        entry["data_offsets"] = [0, 20]
    elif case == "bad_dtype":
        entry["dtype"] = "F8_E4M3"
    elif case == "negative_shape":
        entry["shape"] = [-2, -3]
    elif case == "reversed_offsets":
        entry["data_offsets"] = [24, 0]
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(_safetensors_bytes(raw if raw is not None else {"t": entry}, data, header_len))
    _assert_corrupt(path)


def test_npz_with_object_array_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    with open(path, "wb") as f:
        np.savez(f, a=np.array([{"x": 1}], dtype=object))
    _assert_corrupt(path)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoint.load_state_dict(tmp_path / "nope.pt")
    with pytest.raises(TypeError):
        checkpoint.load_state_dict(42)


# ------------------------------------------------------------------------------------------
# validate_state_dict.

def test_validate_converts_and_returns_exactly_the_spec(spec, ref_state):
    state = {k: _np(v) for k, v in ref_state.items()}
    name64 = "mask_decoder.output_upscaling.0.weight"
    name16 = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
    transposed = "image_encoder.layers.1.blocks.0.attn.qkv.weight"
    state[name64] = state[name64].astype(np.float64)
    state[name16] = state[name16].astype(np.float16)
    state[transposed] = np.asfortranarray(state[transposed])
    nbt = "image_encoder.patch_embed.seq.0.bn.num_batches_tracked"
    state[nbt] = state[nbt].astype(np.int32)
    out = checkpoint.validate_state_dict(state, spec)
    assert list(out) == [n for n, _, _ in spec]
    for name, shape, dtype in spec:
        a = out[name]
        assert a.shape == shape and a.dtype == np.dtype(dtype) and a.flags.c_contiguous, name
        assert a.dtype.isnative
    assert np.array_equal(out[name64], _np(ref_state[name64]))
    assert np.array_equal(out[name16], _np(ref_state[name16]).astype(np.float16).astype(np.float32))
    assert np.array_equal(out[transposed], _np(ref_state[transposed]))
    assert out[nbt].dtype == np.int64 and int(out[nbt]) == int(ref_state[nbt])
    # Like PyTorch, a 1-element vector (e.g. a 0-d tensor that np.ascontiguousarray widened)
    # fills a 0-d tensor; any other shape does not.
    state[nbt] = np.array([5], np.int64)
    assert checkpoint.validate_state_dict(state, spec)[nbt].shape == ()
    state[nbt] = np.array([5, 6], np.int64)
    with pytest.raises(CheckpointError, match="size mismatch for " + nbt):
        checkpoint.validate_state_dict(state, spec)


def test_validate_reports_every_problem_at_once(spec, ref_state):
    state = {k: _np(v) for k, v in ref_state.items()}
    del state["image_encoder.neck.1.bias"]
    del state["mask_decoder.iou_token.weight"]
    state["extra.weight"] = np.zeros(3, np.float32)
    state["image_encoder.extra_buffer"] = np.zeros(2, np.float32)
    state["image_encoder.head.weight"] = np.zeros((7, 7), np.float32)  # ignored: classifier head
    state["image_encoder.neck.0.weight"] = np.zeros((256, 320, 3, 3), np.float32)
    state["mask_decoder.mask_tokens.weight"] = np.zeros((4, 256), np.int64)
    state["image_encoder.layers.0.blocks.0.conv1.bn.num_batches_tracked"] = np.float32(1.0)
    nan_name = "prompt_encoder.no_mask_embed.weight"
    state[nan_name] = state[nan_name].copy()
    state[nan_name][0, 3] = np.nan
    inf_name = "mask_decoder.output_upscaling.1.bias"
    state[inf_name] = state[inf_name].copy()
    state[inf_name][1] = -np.inf
    overflow = "mask_decoder.output_upscaling.3.bias"
    state[overflow] = state[overflow].astype(np.float64)
    state[overflow][0] = 1e300  # finite as float64, inf as float32
    with pytest.raises(CheckpointError) as info:
        checkpoint.validate_state_dict(state, spec)
    msg = str(info.value)
    assert msg.startswith("Error(s) in loading state_dict")
    assert 'Missing key(s) in state_dict: "image_encoder.neck.1.bias", "mask_decoder.iou_token.weight".' in msg
    assert "Unexpected key(s) in state_dict:" in msg
    assert '"extra.weight"' in msg and '"image_encoder.extra_buffer"' in msg
    assert "image_encoder.head.weight" not in msg
    assert ("size mismatch for image_encoder.neck.0.weight: copying a param with shape "
            "(256, 320, 3, 3) from checkpoint, the shape in current model is (256, 320, 1, 1).") in msg
    assert "dtype mismatch for mask_decoder.mask_tokens.weight" in msg and "int64" in msg
    assert "dtype mismatch for image_encoder.layers.0.blocks.0.conv1.bn.num_batches_tracked" in msg
    assert f"non-finite values in {nan_name}: 1 NaN" in msg
    assert f"non-finite values in {inf_name}: 0 NaN and 1 inf" in msg
    assert f"non-finite values in {overflow}" in msg
    err = info.value
    assert err.missing_keys == ["image_encoder.neck.1.bias", "mask_decoder.iou_token.weight"]
    assert sorted(err.unexpected_keys) == ["extra.weight", "image_encoder.extra_buffer"]
    assert len(err.mismatches) == 3 and len(err.nonfinite) == 3


def test_validate_lists_at_most_twenty_of_a_kind(spec, ref_state):
    state = {k: _np(v) for k, v in ref_state.items()}
    dropped = [n for n, _, _ in spec][:35]
    for n in dropped:
        del state[n]
    for i in range(25):
        state[f"junk.{i}"] = np.zeros(1, np.float32)
    with pytest.raises(CheckpointError) as info:
        checkpoint.validate_state_dict(state, spec)
    msg = str(info.value)
    assert all(f'"{n}"' in msg for n in dropped[:20])
    assert f'"{dropped[20]}"' not in msg
    assert "and 15 more (35 in all)" in msg and "and 5 more (25 in all)" in msg


def test_validate_custom_ignore_prefixes(spec, ref_state):
    state = {k: _np(v) for k, v in ref_state.items()}
    with pytest.raises(CheckpointError, match="image_encoder.head.weight"):
        checkpoint.validate_state_dict(state, spec, ignore_prefixes=())
    state["aux.x"] = np.zeros(1, np.float32)
    out = checkpoint.validate_state_dict(state, spec, ignore_prefixes=checkpoint.HEAD_PREFIXES + ("aux.",))
    assert len(out) == len(spec)


# ------------------------------------------------------------------------------------------
# random_state_dict.

def test_random_state_dict_is_deterministic_and_matches_spec(spec):
    a = random_weights.random_state_dict(spec, seed=0)
    b = random_weights.random_state_dict(spec, seed=0)
    c = random_weights.random_state_dict(spec, seed=1)
    assert list(a) == [n for n, _, _ in spec]
    for name, shape, dtype in spec:
        assert a[name].shape == shape and a[name].dtype == np.dtype(dtype), name
        assert a[name].flags.c_contiguous
        assert a[name].tobytes() == b[name].tobytes(), name
        if dtype == "float32":
            assert a[name].tobytes() != c[name].tobytes(), name
    # A value depends on (seed, name) only, not on the order of the spec.
    r = random_weights.random_state_dict(list(reversed(spec)), seed=0)
    assert all(r[n].tobytes() == a[n].tobytes() for n in a)
    assert checkpoint.validate_state_dict(a, spec).keys() == a.keys()


def test_random_state_dict_scales(spec):
    sd = random_weights.random_state_dict(spec, seed=0)
    shapes = {n: s for n, s, _ in spec}
    for name, a in sd.items():
        if name.endswith("num_batches_tracked"):
            assert a.dtype == np.int64 and a.shape == () and int(a) == 0
        elif name.endswith("running_var"):
            assert a.min() >= 0.5 and a.max() <= 1.5
        elif name.endswith(".weight") and len(shapes[name]) == 1:  # LayerNorm / LayerNorm2d / BN
            assert abs(a.mean() - 1.0) < 0.1 and a.min() > 0.4, name
    for name in ["image_encoder.neck.1.weight", "image_encoder.neck.3.weight",
                 "prompt_encoder.mask_downscaling.4.weight", "mask_decoder.output_upscaling.1.weight",
                 "mask_decoder.transformer.norm_final_attn.weight"]:
        assert abs(sd[name].mean() - 1.0) < 0.1 and 0.03 < sd[name].std() < 0.2, name
    qkv = sd["image_encoder.layers.3.blocks.0.attn.qkv.weight"]
    assert abs(qkv.std() * np.sqrt(320) - 1.0) < 0.05
    conv = sd["image_encoder.neck.2.weight"]
    assert abs(conv.std() * np.sqrt(256 * 9) - 1.0) < 0.05
    assert abs(sd["mask_decoder.transformer.layers.0.mlp.lin1.bias"].std() - 0.02) < 0.005
    assert 0.8 < sd["mask_decoder.mask_tokens.weight"].std() < 1.2
    assert 0.8 < sd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].std() < 1.3
    assert 0.4 < sd["image_encoder.layers.2.blocks.0.attn.attention_biases"].std() < 0.6
    # The cross-attention projections contain "token" in their names but are Linear layers.
    q = sd["mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"]
    assert abs(q.std() * 16.0 - 1.0) < 0.05


def test_random_weights_give_a_finite_well_scaled_forward(sam_ref, spec):
    from mobile_sam import SamPredictor

    model = sam_ref
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    sd = random_weights.random_state_dict(spec, seed=0)
    full = dict(saved)
    full.update({k: torch.from_numpy(v) for k, v in sd.items()})
    try:
        model.load_state_dict(full, strict=True)
        predictor = SamPredictor(model)
        image = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
        with torch.no_grad():
            predictor.set_image(image)
            feats = predictor.features
            masks, iou, low = predictor.predict(point_coords=np.array([[40.0, 30.0]]),
                                                point_labels=np.array([1]), multimask_output=True,
                                                return_logits=True)
    finally:
        model.load_state_dict(saved)
    assert torch.isfinite(feats).all() and 0.3 < feats.std().item() < 3.0
    assert np.isfinite(masks).all() and np.isfinite(iou).all()
    assert 1e-3 < masks.std() < 100.0 and np.abs(iou).max() < 100.0


# ------------------------------------------------------------------------------------------
# The package reads every format without PyTorch.

def test_reading_needs_no_torch(ref_state, tmp_path):
    small = {k: v for k, v in list(ref_state.items())[:20]}
    paths = [str(_save(fmt, small, tmp_path / f"w_{fmt}")) for fmt in FORMATS]
    ref = {k: _np(v) for k, v in small.items()}
    np.savez(tmp_path / "ref.npz", **ref)
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any attempt to import torch now fails\n"
        "import numpy as np\n"
        "from mobile_sam_c import checkpoint, random_weights\n"
        f"ref = dict(np.load({str(tmp_path / 'ref.npz')!r}))\n"
        f"for p in {paths!r}:\n"
        "    d = checkpoint.load_state_dict(p)\n"
        "    assert set(d) == set(ref), p\n"
        "    assert all(d[k].tobytes() == ref[k].tobytes() for k in ref), p\n"
        "random_weights.random_state_dict([('a.weight', (2, 3), 'float32')])\n"
        "print('OK')\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    # outside the repository, so the source tree (no built _C) cannot shadow the installed package
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300, cwd=tempfile.gettempdir())
    assert res.returncode == 0 and res.stdout.strip() == "OK", res.stderr


def test_checkpoint_module_source_does_not_import_torch():
    import ast
    import inspect
    for mod in (checkpoint, random_weights):
        tree = ast.parse(inspect.getsource(mod))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "torch" for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "torch"
