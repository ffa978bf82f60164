"""fuzz_loader.py - a mutation fuzzer of mobile_sam_c.checkpoint.load_state_dict (run it through
supervise.py, which counts crashes and hangs). Seeds: a random-weight checkpoint in every format
(torch zip and legacy, safetensors, npz; written by torch when it is installed) plus crafted files.

Each input must load or raise CheckpointError; a MemoryError under the worker's address-space cap
is an out-of-memory finding, any other exception type an error finding, and every 50 inputs a
valid seed is reloaded and compared bit for bit (a hostile file must not change later loads)."""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import struct
import sys
import time
import warnings
import zipfile
from typing import Dict, List

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, ROOT, os.path.join(ROOT, "tests")]

import hostile_files as H  # noqa: E402
import supervise  # noqa: E402
from mobile_sam_c import _C, checkpoint, random_weights  # noqa: E402
from mobile_sam_c.checkpoint import CheckpointError  # noqa: E402

SEED_PREFIXES = ("prompt_encoder.", "mask_decoder.iou_prediction_head.layers.2.", "image_encoder.patch_embed.seq.0.")


def seed_state() -> Dict[str, np.ndarray]:
    """Random weights (random_weights, seed 14) of part of the model, as in the real file."""
    spec = [s for s in _C.weight_spec() if s[0].startswith(SEED_PREFIXES)]
    return random_weights.random_state_dict(spec, seed=14)


def write_seeds(folder: str) -> List[str]:
    os.makedirs(folder, exist_ok=True)
    state = seed_state()
    out: Dict[str, bytes] = {}
    b = io.BytesIO()
    np.savez(b, **state)
    out["npz"] = b.getvalue()
    b = io.BytesIO()
    np.savez_compressed(b, **state)
    out["npz_deflated"] = b.getvalue()
    try:
        import torch
        from safetensors.torch import save as st_save
    except ImportError:
        torch = None
    if torch is not None:
        ts = {k: torch.from_numpy(v.copy()) for k, v in state.items()}
        big = torch.arange(24, dtype=torch.float32).reshape(4, 6)
        ts["extra.view"] = big[1:3, ::2]  # a strided view into a shared storage
        ts["extra.transposed"] = big.t()
        ts["extra.half"] = torch.linspace(-2, 2, 7).half()
        ts["extra.bf16"] = torch.linspace(-2, 2, 7).bfloat16()
        ts["extra.neg"] = torch.linspace(-1, 1, 5).neg().conj()
        for name, legacy in (("torch_zip", False), ("torch_legacy", True)):
            b = io.BytesIO()
            torch.save(ts, b, _use_new_zipfile_serialization=not legacy)
            out[name] = b.getvalue()
        out["safetensors"] = st_save({k: v.contiguous() for k, v in ts.items()})
    else:  # the same layouts, written by hand
        data, _ = H.good_zip()
        out["torch_zip"] = data
    out["crafted_legacy_view"] = H.legacy_bytes(
        H.state_dict({"t": H.tensor(H.persid_storage("0", 8, view=(2, 4), legacy=True), 0, (2, 2), (2, 1))}),
        {"0": np.arange(8, dtype="<f4")})
    out["crafted_broadcast"] = H.torch_zip(H.state_dict(
        {f"t{i}": H.tensor(H.persid_storage("0", 1), 0, (64, 64), (0, 0)) for i in range(4)}), {"0": bytes(4)})
    neg = H.EMPTY_DICT + H.text("neg") + H.NEWTRUE + H.SETITEM  # issue 14's payloads, as starting points
    out["crafted_build_defaults"] = H.torch_zip(H.state_dict(
        {"t": H.tensor(H.persid_storage("0", 1), 0, (1,), (1,))},
        prefix=H.glob("torch._utils", "_rebuild_tensor_v2") + H.state({"__defaults__": H.tup(H.NEWFALSE, H.NONE, neg)})
        + H.BUILD + H.POP), {"0": bytes(4)})
    out["crafted_memo"] = H.torch_zip(H.state_dict({"t": H.tensor(H.persid_storage("0", 1), 0, (1,), (1,))},
                                                   prefix=H.NONE + H.long_binput(1 << 19) + H.POP), {"0": bytes(4)})
    paths = []
    for name, data in out.items():
        p = os.path.join(folder, name + ".seed")
        with open(p, "wb") as f:
            f.write(data)
        paths.append(p)
    return paths


TOKENS = [b"b", b"R", b"Q", b"0", b"(", b"t", b"u", b"s", b"\x81", b"\x85", b"\x86", b"\x87",
          b"r\xff\xff\xff\x03", b"q\xff", b"h\x00", b"j\xff\xff\x00\x00", b"\x8a\x08" + b"\xff" * 7 + b"\x7f",
          b"J\xff\xff\xff\x7f", b"cos\nsystem\n", b"ctorch\nFloatStorage\n", b"ctorch\nBFloat16Storage\n",
          b"ctorch._utils\n_rebuild_tensor_v2\n", b"ccollections\nOrderedDict\n", b"\x95" + b"\xff" * 8,
          H.state({"numel": H.integer(1 << 30)}) + H.BUILD, H.state({"__defaults__": H.NONE}) + H.BUILD,
          b'{"dtype":"F32","shape":[1073741824],"data_offsets":[0,4]}', b"\x93NUMPY\x01\x00",
          struct.pack("<Q", 1 << 40), struct.pack("<I", 0xFFFFFFFF), b"PK\x03\x04", b"PK\x01\x02"]
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 31, 1 << 32, (1 << 63) - 1, 1 << 62]


def mutate_bytes(rng: random.Random, data: bytes, others: List[bytes]) -> bytes:
    d = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        n = len(d)
        pos = rng.randrange(n + 1) if n else 0
        if op == 0 and n:
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(n)
                d[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            d[rng.randrange(n)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
        elif op == 2:
            d[pos:pos] = rng.choice(TOKENS)
        elif op == 3 and n:
            d[pos: pos + rng.randint(1, 64)] = b""
        elif op == 4 and n:
            a = rng.randrange(n)
            d[pos:pos] = d[a: a + rng.randint(1, 256)]
        elif op == 5 and n:
            del d[rng.randrange(n):]
        elif op == 6 and others:
            o = rng.choice(others)
            a = rng.randrange(len(o))
            d[pos: pos + rng.randint(0, 64)] = o[a: a + rng.randint(1, 512)]
        elif op in (7, 8) and n >= 8:
            width = rng.choice((1, 2, 4, 8))
            i = rng.randrange(n - width + 1)
            v = rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)
            d[i: i + width] = v.to_bytes(width, "little")
    return bytes(d)


def mutate_zip(rng: random.Random, data: bytes, others: List[bytes]) -> bytes:
    """Mutate one member of a zip (or rename, drop, duplicate one) and write it back properly."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    if not members:
        return data
    i = rng.randrange(len(members))
    name, content = members[i]
    r = rng.random()
    if r < 0.75:
        members[i] = (name, mutate_bytes(rng, content, others))
    elif r < 0.85:
        members[i] = (name[: rng.randrange(len(name) + 1)] + rng.choice(["x", "/data.pkl", "../"]), content)
    elif r < 0.93:
        del members[i]
    else:
        members.append((name, mutate_bytes(rng, content, others)))
    out = io.BytesIO()
    method = rng.choice((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED))
    with zipfile.ZipFile(out, "w", method) as zf:
        for n, c in members:
            zf.writestr(n, c)
    return out.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", default=None, help="folder of seed files (written when missing)")
    ap.add_argument("--memory-mib", type=int, default=1536)
    ap.add_argument("--per-input-s", type=float, default=20.0)
    a = ap.parse_args()
    seed_dir = a.seeds or os.path.join(os.path.dirname(a.state), "seeds")
    paths = sorted(os.path.join(seed_dir, p) for p in os.listdir(seed_dir)) if os.path.isdir(seed_dir) else []
    if not paths:
        paths = write_seeds(seed_dir)
    seeds = [open(p, "rb").read() for p in paths]
    expected = {}
    for p in paths:  # what each seed loads as before any hostile input
        try:
            expected[p] = checkpoint.load_state_dict(p)
        except CheckpointError:
            pass
    warnings.simplefilter("ignore")  # zipfile's duplicate-name warnings, numpy's
    supervise.worker_setup(a.state, a.per_input_s, a.memory_mib)
    rng = random.Random(a.seed)
    cur = os.path.join(a.state, "current.bin")
    stats = {"inputs": 0, "findings": [], "outcomes": {}, "done": False}
    deadline = time.monotonic() + a.seconds
    last_write = 0.0

    def finding(kind: str, what: str) -> None:
        keep = os.path.join(a.state, f"finding-{len(stats['findings'])}.bin")
        os.replace(cur, keep) if os.path.exists(cur) else None
        stats["findings"].append({"kind": kind, "what": what[:500], "input": keep})

    while time.monotonic() < deadline:
        k = rng.randrange(len(seeds))
        data = seeds[k]
        try:
            data = mutate_zip(rng, data, seeds) if data[:2] == b"PK" and rng.random() < 0.5 else \
                mutate_bytes(rng, data, seeds)
        except Exception:  # noqa: BLE001 - a member zipfile cannot rewrite: mutate the bytes instead
            data = mutate_bytes(rng, data, seeds)
        with open(cur, "wb") as f:
            f.write(data)
        stats["inputs"] += 1
        outcome = "loaded"
        with supervise.Watchdog(a.per_input_s):
            try:
                checkpoint.load_state_dict(cur)
            except CheckpointError as e:
                cause = e.__cause__
                outcome = "refused" if cause is None else f"refused:{type(cause).__name__}"
                if cause is not None and not isinstance(cause, (zipfile.BadZipFile, OSError, EOFError)):
                    seen = stats.setdefault("examples", {}).setdefault(outcome, [])
                    if len(seen) < 3:  # what the loader did not check itself, for the report
                        seen.append(str(e)[-300:])
                if isinstance(cause, MemoryError):
                    finding("oom", str(e))
            except MemoryError as e:
                outcome = "MemoryError"
                finding("oom", f"MemoryError: {e}")
            except Exception as e:  # noqa: BLE001 - anything but CheckpointError is a finding
                outcome = type(e).__name__
                finding("errors", f"{type(e).__name__}: {e}")
        stats["outcomes"][outcome] = stats["outcomes"].get(outcome, 0) + 1
        if stats["inputs"] % 50 == 0 and expected:
            p = rng.choice(sorted(expected))
            again = checkpoint.load_state_dict(p)
            want = expected[p]
            if set(again) != set(want) or any(again[n].dtype != want[n].dtype or again[n].tobytes() != want[n].tobytes()
                                              for n in want):
                finding("errors", f"seed {os.path.basename(p)} loads differently after input {stats['inputs']}")
        now = time.monotonic()
        if now - last_write > 1.0:
            supervise.write_stats(a.state, stats)
            last_write = now
    stats["done"] = True
    supervise.write_stats(a.state, stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
