"""Regression tests of issue 14's loader findings: a refused checkpoint must not change later
loads (1), a storage view must be checked when used (2), tiny files must not take gigabytes (6)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hostile_files as H  # noqa: E402
from mobile_sam_c import checkpoint  # noqa: E402
from mobile_sam_c.checkpoint import CheckpointError, UnsafeCheckpointError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OS_SYSTEM = H.glob("os", "system") + H.POP  # what the payloads end with: refused, so "harmless"


def _neg_defaults() -> bytes:
    """BUILD on the tensor-rebuild global: its metadata default becomes {'neg': True}."""
    meta = H.EMPTY_DICT + H.text("neg") + H.NEWTRUE + H.SETITEM
    return (H.glob("torch._utils", "_rebuild_tensor_v2")
            + H.state({"__defaults__": H.tup(H.NEWFALSE, H.NONE, meta)}) + H.BUILD + H.POP)


def _storage_attr(name: str, value: bytes) -> bytes:
    """BUILD with a dict state on the FloatStorage global (updates its __dict__)."""
    return (H.glob("torch", "FloatStorage") + H.EMPTY_DICT + H.text(name) + value + H.SETITEM
            + H.BUILD + H.POP)


POISON = {
    "rebuild_defaults_neg": _neg_defaults(),
    "float_storage_bf16": _storage_attr("bf16", H.NEWTRUE),
    "float_storage_dtype": _storage_attr("dtype", H.text(">f2")),
    "float_storage_slots": H.glob("torch", "FloatStorage") + H.state({"name": H.text("x")}) + H.BUILD + H.POP,
    "ordered_dict_slots": H.glob("collections", "OrderedDict") + H.state({"fromkeys": H.NONE}) + H.BUILD + H.POP,
}


@pytest.fixture()
def good(tmp_path):
    data, want = H.good_zip()
    path = tmp_path / "good.pt"
    path.write_bytes(data)
    return path, want


def _same(got, want):
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].tobytes() == want[k].tobytes(), k


@pytest.mark.parametrize("case", sorted(POISON))
def test_refused_checkpoint_does_not_change_later_loads(case, good, tmp_path):
    """Finding 1: each payload is refused, and the good file then loads bit for bit as before."""
    path, want = good
    _same(checkpoint.load_state_dict(path), want)
    hostile = tmp_path / f"{case}.pt"
    hostile.write_bytes(H.torch_zip(H.state_dict({}, prefix=POISON[case] + OS_SYSTEM), {}))
    with pytest.raises(UnsafeCheckpointError):
        checkpoint.load_state_dict(hostile)
    _same(checkpoint.load_state_dict(path), want)


def test_build_on_records_is_refused(good, tmp_path):
    """BUILD on a storage or a tensor the pickle made is refused, and a state dict's own
    _metadata state (torch writes one) is dropped, not set as attributes."""
    path, want = good
    entry = H.tensor(H.persid_storage("0", 12) + H.state({"numel": H.integer(1 << 20)}) + H.BUILD,
                     0, (3, 4), (4, 1))
    hostile = tmp_path / "storage_build.pt"
    hostile.write_bytes(H.torch_zip(H.state_dict({"w": entry}), {"0": bytes(48)}))
    with pytest.raises(UnsafeCheckpointError, match="state"):
        checkpoint.load_state_dict(hostile)
    entry = H.tensor(H.persid_storage("0", 12), 0, (3, 4), (4, 1)) + H.state({"size": H.NONE}) + H.BUILD
    hostile.write_bytes(H.torch_zip(H.state_dict({"w": entry}), {"0": bytes(48)}))
    with pytest.raises(UnsafeCheckpointError, match="state"):
        checkpoint.load_state_dict(hostile)
    meta = H.EMPTY_DICT + H.text("_metadata") + H.EMPTY_DICT + H.SETITEM + H.BUILD
    pkl = H.state_dict({"w": H.tensor(H.persid_storage("0", 12), 0, (3, 4), (4, 1))})
    hostile.write_bytes(H.torch_zip(pkl[:-1] + meta + H.STOP, {"0": bytes(48)}))
    assert checkpoint.load_state_dict(hostile)["w"].tolist() == [[0.0] * 4] * 3
    _same(checkpoint.load_state_dict(path), want)


def test_storage_view_resized_after_validation(tmp_path):
    """Finding 2: a legacy view of 4 floats whose numel BUILD rewrites to 64 after it was checked
    is refused; before, the tensor came back holding 60 floats of heap memory."""
    view = H.persid_storage("0", 4, view=(0, 4), legacy=True) + H.state({"numel": H.integer(64)}) + H.BUILD
    pkl = H.state_dict({"t": H.tensor(view, 0, (64,), (1,))})
    path = tmp_path / "view.pt"
    path.write_bytes(H.legacy_bytes(pkl, {"0": np.arange(4, dtype="<f4")}))
    with pytest.raises(CheckpointError):
        checkpoint.load_state_dict(path)


def test_storage_view_checked_when_used():
    """Defence in depth for finding 2: a view whose bounds no longer fit its storage is refused
    when its data is taken, however it got so."""
    st_type = checkpoint._stand_in("torch", "FloatStorage")
    root = checkpoint._Storage("0", st_type, 4, lambda: np.arange(4, dtype="<f4"))
    view = checkpoint._StorageView(root, 1, 3)
    assert view.data().tolist() == [1, 2, 3]
    object.__setattr__(view, "numel", 64)
    with pytest.raises(CheckpointError, match="outside"):
        view.data()


# ---------------------------------------------------------------------------------------------
# Finding 6: memory. Each file is loaded in a child whose address space is capped at 768 MiB
# above what it has after import (so the old loader's gigabytes fail there rather than here);
# tracemalloc's peak shows what the loader took.

CHILD = textwrap.dedent("""
    import json, resource, sys, tracemalloc
    from mobile_sam_c import checkpoint
    import mobile_sam_c._C  # loaded before the address space is measured
    vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (768 << 20), resource.RLIM_INFINITY))
    out = {}
    for path in sys.argv[1:]:
        tracemalloc.start()
        try:
            checkpoint.load_state_dict(path)
            err = None
        except BaseException as e:
            err = f"{type(e).__name__}: {e}"
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[path] = {"error": err, "peak": peak}
    print(json.dumps(out))
""")


def _load_in_capped_child(paths):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", CHILD, *map(str, paths)], capture_output=True, text=True,
                       timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _bombs(tmp_path):
    """name -> (file, what the error must say, or None where a clean load is right)."""
    files = {}

    def put(name, data, match):
        p = tmp_path / f"{name}.bin"
        p.write_bytes(data)
        files[name] = (p, match)

    one = H.tensor(H.persid_storage("0", 1), 0, (1,), (1,))
    deflated, size, crc = H.zeros_deflated(1024)
    big = H.tensor(H.persid_storage("0", size // 4), 0, (1,), (1,))
    put("storage_inflates_1gib", H.zip_bytes([
        H.Member("archive/data.pkl", H.state_dict({"t": big})),
        H.Member("archive/data/0", deflated=deflated, size=size, crc=crc)]), "memory limit")
    put("member_longer_than_storage", H.zip_bytes([
        H.Member("archive/data.pkl", H.state_dict({"t": one})),
        H.Member("archive/data/0", deflated=deflated, size=size, crc=crc)]), None)
    put("byteorder_inflates_1gib", H.zip_bytes([
        H.Member("archive/data.pkl", H.state_dict({"t": one})),
        H.Member("archive/byteorder", deflated=deflated, size=size, crc=crc),
        H.Member("archive/data/0", bytes(4))]), "byteorder")
    head = H.npy_header((size // 4,))
    npy, nsize, ncrc = H.zeros_deflated(1024, head)
    put("npz_inflates_1gib", H.zip_bytes([H.Member("a.npy", deflated=npy, size=nsize, crc=ncrc)]),
        "memory limit")
    lying, lsize, lcrc = H.zeros_deflated(1024, H.npy_header((4,)))
    put("npz_member_longer_than_header", H.zip_bytes([H.Member("a.npy", deflated=lying, size=lsize,
                                                               crc=lcrc)]), "needs 16 bytes")
    broadcast = {f"t{i}": H.tensor(H.persid_storage("0", 1), 0, (1 << 24,), (0,)) for i in range(200)}
    put("broadcast_200x", H.torch_zip(H.state_dict(broadcast), {"0": bytes(4)}), "memory limit")
    memo = H.NONE + H.long_binput(1 << 26) + H.POP
    put("memo_2_26", H.torch_zip(H.state_dict({"t": one}, prefix=memo), {"0": bytes(4)}), "memo")
    legacy_memo = H.legacy_bytes(H.state_dict({}, prefix=memo), {})
    put("legacy_memo_2_26", legacy_memo, "memo")
    flood = H.MARK + b"]" * (4 << 20) + b"1"  # 4M empty lists (~240 MB of objects), then POP_MARK
    put("opcode_flood_4m", H.torch_zip(H.state_dict({"t": one}, prefix=flood), {"0": bytes(4)}), "opcodes")
    return files


def test_small_files_cannot_take_gigabytes(tmp_path):
    """Finding 6: ~1-2 MB files that inflate, broadcast or index their way to gigabytes are
    refused before the memory is taken (peak under 64 MiB; broadcasts stop at the memory limit),
    each with a message saying why; then the good file loads in the same child."""
    files = _bombs(tmp_path)
    good_data, _ = H.good_zip()
    good_path = tmp_path / "good.pt"
    good_path.write_bytes(good_data)
    results = _load_in_capped_child([p for p, _ in files.values()] + [good_path])
    for name, (path, match) in files.items():
        r = results[str(path)]
        bound = checkpoint.default_max_bytes() + (16 << 20) if name.startswith("broadcast") else 64 << 20
        assert r["peak"] < bound, (name, r)
        if match is None:
            assert r["error"] is None, (name, r)
        else:
            assert r["error"] is not None and "CheckpointError" in r["error"], (name, r)
            assert match in r["error"] and "MemoryError" not in r["error"], (name, r)
    assert results[str(good_path)]["error"] is None


def test_hostile_files_do_not_change_a_later_load(tmp_path, good):
    """Every hostile file of this module, loaded in turn, then the good one: bit for bit."""
    path, want = good
    for name, payload in POISON.items():
        p = tmp_path / f"p_{name}.pt"
        p.write_bytes(H.torch_zip(H.state_dict({}, prefix=payload + OS_SYSTEM), {}))
        with pytest.raises(CheckpointError):
            checkpoint.load_state_dict(p)
    small = {k: v for k, v in _small_bombs().items()}
    for name, data in small.items():
        p = tmp_path / f"s_{name}.pt"
        p.write_bytes(data)
        with pytest.raises(CheckpointError):
            checkpoint.load_state_dict(p)
    _same(checkpoint.load_state_dict(path), want)


def _small_bombs():
    one = H.tensor(H.persid_storage("0", 1), 0, (1,), (1,))
    broadcast = {f"t{i}": H.tensor(H.persid_storage("0", 1), 0, (1 << 24,), (0,)) for i in range(200)}
    return {"broadcast": H.torch_zip(H.state_dict(broadcast), {"0": bytes(4)}),
            "memo": H.torch_zip(H.state_dict({"t": one}, prefix=H.NONE + H.long_binput(1 << 26) + H.POP),
                                {"0": bytes(4)})}


def test_memory_limit_is_from_the_model_and_adjustable(good):
    """The default limit follows the model's parameter count; max_bytes overrides it."""
    from mobile_sam_c import _C
    params = sum(int(np.prod(shape)) for _, shape, _ in _C.weight_spec())
    assert checkpoint.default_max_bytes() >= 16 * params
    path, want = good
    with pytest.raises(CheckpointError, match="memory limit"):
        checkpoint.load_state_dict(path, max_bytes=64)
    _same(checkpoint.load_state_dict(path, max_bytes=1 << 20), want)
