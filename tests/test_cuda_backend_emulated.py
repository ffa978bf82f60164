"""The CUDA backend's op table (csrc/cuda/backend) without a GPU: the extension is built with
MOBILE_SAM_C_CUDA_EMULATION=1 (the backend and kernels compiled by the host C++ compiler against
csrc/cuda/emu) into a temporary directory, then run in a subprocess (this process already holds the
CPU-only build): the op-conformance suite on device "cuda", and the whole model on "cuda" against
the CPU backend on the same random weights and photo - embedding, masks, logits, IoU, the
GPU-resident predict's transfer counts and its device arrays.

What the emulation cannot show (speed, the real memory model, real cuBLAS) needs a GPU run."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import reference as R

ROOT = Path(__file__).resolve().parents[1]
BACKEND = sorted((ROOT / "csrc" / "cuda" / "backend").glob("*.cu"))
SEEDS = (0, 1, 2, 3)


from cuda_toolkit import NVCC, build_extension  # noqa: E402

# Runs in the subprocess, against the emulation build; writes every result to OUT (npz + json).
CHECKS = textwrap.dedent(r'''
    import json, sys
    import numpy as np
    import mobile_sam_c._C as C
    from mobile_sam_c.random_weights import random_state_dict

    out_dir, photo, seeds = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3].split(",")]
    meta, arrays = {"cuda_built": bool(C.CUDA_BUILT)}, {}
    meta["conformance"] = {s: C._conformance("cuda", s) for s in seeds}

    weights = random_state_dict(C.weight_spec(), seed=11)
    gpu_model = C.Model(weights, "cuda")
    cpu, gpu = C.Predictor(C.Model(weights, "cpu")), C.Predictor(gpu_model)
    meta["devices"] = [cpu.device, gpu.device]
    image = np.load(photo)
    meta["size"] = list(image.shape[:2])
    cpu.set_image(image)
    before = gpu.transfer_counts()
    gpu.set_image(image)
    after = gpu.transfer_counts()
    meta["set_image_counts"] = {k: after[k] - before[k] for k in after}
    arrays["emb_cpu"], arrays["emb_gpu"] = cpu.get_image_embedding(), gpu.get_image_embedding()

    # a frame already on the GPU (DLPack, device (2, 0)): resized there, Pillow-exact, so the
    # embedding is the host frame's bit for bit; BGR too; nothing copied back, nothing allocated
    frame = C._device_array(gpu_model, image)
    c0 = gpu.transfer_counts()
    gpu.set_image(frame)
    c1 = gpu.transfer_counts()
    meta["device_frame_counts"] = {k: c1[k] - c0[k] for k in c1}
    meta["device_frame_sizes"] = [list(gpu.original_size), list(gpu.input_size), list(cpu.input_size)]
    arrays["emb_gpu_frame"] = gpu.get_image_embedding()
    gpu.set_image(C._device_array(gpu_model, np.ascontiguousarray(image[:, :, ::-1])), "BGR")
    arrays["emb_gpu_frame_bgr"] = gpu.get_image_embedding()
    errors = []
    for bad in (C._device_array(gpu_model, image.astype(np.float32)), C._device_array(gpu_model, image[:, :, :2].copy())):
        try:
            gpu.set_image(bad)
            errors.append("accepted")
        except C.InputError as e:
            errors.append(str(e)[:40])
    meta["device_frame_errors"] = errors
    gpu.set_image(image)  # the host frame again, for what follows

    h, w = image.shape[:2]
    rng = np.random.default_rng(5)
    prompts = {
        "point": dict(point_coords=np.array([[w * 0.5, h * 0.55]], np.float32), point_labels=np.array([1], np.int32)),
        "box": dict(box=np.array([w * 0.2, h * 0.15, w * 0.8, h * 0.9], np.float32), multimask_output=False),
        "points_mask": dict(point_coords=np.array([[w * 0.3, h * 0.4], [w * 0.7, h * 0.6]], np.float32),
                            point_labels=np.array([1, 0], np.int32),
                            mask_input=rng.standard_normal((1, 256, 256)).astype(np.float32)),
    }

    def host(x):
        return None if x is None else np.asarray(x.numpy() if hasattr(x, "numpy") else x)

    for name, kw in prompts.items():
        # the CPU's logits (to judge mask disagreements) and masks; the GPU's resident masks, then logits
        for tag, p, extra in (("cpu", cpu, dict(return_logits=True, as_numpy=True)),
                              ("cpu_masks", cpu, dict(as_numpy=True, return_low_res=False))):
            t0 = p._op_trace()[1]
            m, iou, low = p.predict(**kw, **extra)
            cpu_ops = p._op_trace()[1] - t0
            arrays[f"{name}_{tag}"], arrays[f"{name}_{tag}_iou"] = host(m), host(iou)
            if low is not None:
                arrays[f"{name}_{tag}_low"] = host(low)
        c0, t0 = gpu.transfer_counts(), gpu._op_trace()[1]
        m, iou, low = gpu.predict(**kw, as_numpy=False, return_low_res=False)
        c1 = gpu.transfer_counts()
        meta[f"{name}_ops"] = [cpu_ops, gpu._op_trace()[1] - t0]  # the same call on both backends
        meta[f"{name}_resident_counts"] = {k: c1[k] - c0[k] for k in c1}
        meta[f"{name}_resident_types"] = [type(m).__name__, type(iou).__name__, repr(low)]
        meta[f"{name}_resident_dlpack"] = [list(m.__dlpack_device__()), list(iou.__dlpack_device__())]
        cai = m.__cuda_array_interface__
        meta[f"{name}_cai"] = [list(cai["shape"]) == list(m.shape), cai["typestr"], cai["version"], cai["stream"],
                               cai["strides"], cai["data"][1], cai["data"][0] != 0]
        streams = []
        for stream in (None, -1, 1):  # the legacy default stream and "no ordering": nothing to wait for
            m.__dlpack__(stream=stream)
            streams.append("ok")
        for stream in (0, -5, "s"):
            try:
                m.__dlpack__(stream=stream)
                streams.append("accepted")
            except BufferError:
                streams.append("BufferError")
        meta[f"{name}_streams"] = streams
        meta[f"{name}_host_copy_has_cai"] = hasattr(m.cpu(), "__cuda_array_interface__")
        arrays[f"{name}_gpu_masks"], arrays[f"{name}_gpu_masks_iou"] = m.numpy(), iou.numpy()
        m, iou, low = gpu.predict(**kw, return_logits=True, as_numpy=True)
        arrays[f"{name}_gpu"], arrays[f"{name}_gpu_iou"], arrays[f"{name}_gpu_low"] = host(m), host(iou), host(low)
        meta[f"{name}_legacy_types"] = [type(m).__name__, type(iou).__name__, type(low).__name__]

    # replay: the second decode of a prompt shape launches the recording of the first (one graph)
    kw = prompts["point"]
    c0 = gpu.transfer_counts()
    first = [host(x.numpy()) for x in gpu.predict(**kw, as_numpy=False, return_low_res=False)[:2]]
    c1 = gpu.transfer_counts()
    again = [host(x.numpy()) for x in gpu.predict(**kw, as_numpy=False, return_low_res=False)[:2]]
    c2 = gpu.transfer_counts()
    three = dict(point_coords=np.array([[w * 0.2, h * 0.3], [w * 0.6, h * 0.5], [w * 0.4, h * 0.8]], np.float32),
                 point_labels=np.array([1, 1, 0], np.int32), return_logits=True, as_numpy=True)
    new_shape = [gpu.predict(**three) for _ in range(2)]
    c3 = gpu.transfer_counts()
    meta["replays"] = [c1["replays"] - c0["replays"], c2["replays"] - c1["replays"], c3["replays"] - c2["replays"]]
    meta["replay_counts"] = {k: c2[k] - c1[k] for k in c2}
    arrays["replay_first_masks"], arrays["replay_again_masks"] = first[0], again[0]
    arrays["replay_first_iou"], arrays["replay_again_iou"] = first[1], again[1]
    arrays["three_gpu_rec"], arrays["three_gpu_rep"] = host(new_shape[0][0]), host(new_shape[1][0])
    arrays["three_gpu_rec_low"], arrays["three_gpu_rep_low"] = host(new_shape[0][2]), host(new_shape[1][2])
    arrays["three_cpu"] = host(cpu.predict(**three)[0])

    # GPU prompts (predict_torch, 1024 frame): encoded on the device, the same masks as host prompts
    pts = np.array([[[200.0, 300.0], [600.0, 500.0]], [[420.0, 120.0], [80.0, 700.0]]], np.float32)
    lab = np.array([[1, 0], [1, 1]], np.int64)
    bxs = np.array([[100, 120, 600, 500], [300, 50, 900, 700]], np.float32)
    host_out = gpu.predict_torch(pts, lab.astype(np.int32), bxs, return_logits=True, as_numpy=True)
    dev_in = [C._device_array(gpu_model, x) for x in (pts, lab.astype(np.int32), bxs)]
    c0 = gpu.transfer_counts()
    dev_out = gpu.predict_torch(*dev_in, return_logits=True, as_numpy=False)
    c1 = gpu.transfer_counts()
    meta["gpu_prompt_counts"] = {k: c1[k] - c0[k] for k in c1}
    for i, tag in enumerate(("masks", "iou", "low")):
        arrays[f"gpu_prompts_host_{tag}"], arrays[f"gpu_prompts_dev_{tag}"] = host(host_out[i]), dev_out[i].numpy()
    # int64 labels (torch's default), points only (a padding token), and a box alone
    only_pts = gpu.predict_torch(C._device_array(gpu_model, pts), C._device_array(gpu_model, lab),  # int64 labels
                                 return_logits=True, as_numpy=True)
    only_pts_host = gpu.predict_torch(pts, lab.astype(np.int32), return_logits=True, as_numpy=True)
    only_box = gpu.predict_torch(None, None, C._device_array(gpu_model, bxs), return_logits=True, as_numpy=True)
    only_box_host = gpu.predict_torch(None, None, bxs, return_logits=True, as_numpy=True)
    arrays["gpu_prompts_pts"], arrays["gpu_prompts_pts_host"] = host(only_pts[0]), host(only_pts_host[0])
    arrays["gpu_prompts_box"], arrays["gpu_prompts_box_host"] = host(only_box[0]), host(only_box_host[0])
    errors = []
    for args in ((C._device_array(gpu_model, pts), lab.astype(np.int32), None),            # mixed host / GPU
                 (C._device_array(gpu_model, pts), C._device_array(gpu_model, lab.astype(np.float32)), None),
                 (C._device_array(gpu_model, pts[:, :, :1].copy()), C._device_array(gpu_model, lab.astype(np.int32)), None)):
        try:
            gpu.predict_torch(*args)
            errors.append("accepted")
        except C.InputError as e:
            errors.append(str(e)[:30])
    meta["gpu_prompt_errors"] = errors

    # a batch of boxes in one pass (predict_torch's layout: B x 4 in the 1024 input frame)
    boxes = np.array([[100, 120, 600, 500], [300, 50, 900, 700], [0, 0, 1023, 680]], np.float32)
    for tag, p in (("cpu", cpu), ("gpu", gpu)):
        m, iou, low = p.predict_torch(None, None, boxes, return_logits=True, as_numpy=True)
        arrays[f"batch_{tag}"], arrays[f"batch_{tag}_iou"], arrays[f"batch_{tag}_low"] = host(m), host(iou), host(low)

    # the embedding path: the CPU's embedding handed to the CUDA predictor
    isz = cpu.input_size
    gpu.set_image_embedding(arrays["emb_cpu"], (h, w), tuple(isz))
    kw = prompts["point"]
    m, iou, low = gpu.predict(**kw, return_logits=True, as_numpy=True)
    arrays["embedpath_gpu"], arrays["embedpath_gpu_iou"] = host(m), host(iou)

    np.savez(out_dir + "/arrays.npz", **arrays)
    with open(out_dir + "/meta.json", "w") as f:
        json.dump(meta, f)
''')


@pytest.fixture(scope="module")
def emulation_build(tmp_path_factory):
    """The extension built with MOBILE_SAM_C_CUDA_EMULATION=1: (temp dir, its object files)."""
    tmp = tmp_path_factory.mktemp("cuda_emu")
    build_extension(tmp, dict(os.environ, MOBILE_SAM_C_CUDA_EMULATION="1"))
    return tmp


@pytest.fixture(scope="module")
def emulated(emulation_build):
    """CHECKS run on the emulation build: (meta, arrays)."""
    tmp = emulation_build
    run_env = dict(os.environ, PYTHONPATH=str(tmp / "pkg"))
    np.save(tmp / "photo.npy", R.load_image("dog.jpg"))  # the shared photo, as the subprocess reads it
    run = subprocess.run([sys.executable, "-c", CHECKS, str(tmp), str(tmp / "photo.npy"), ",".join(map(str, SEEDS))],
                         cwd=tmp, env=run_env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    with open(tmp / "meta.json") as f:
        meta = json.load(f)
    return meta, dict(np.load(tmp / "arrays.npz"))


def test_the_emulation_build_registers_cuda(emulated):
    meta, _ = emulated
    assert meta["cuda_built"] is True
    assert meta["devices"] == ["cpu", "cuda"]


@pytest.mark.parametrize("seed", SEEDS)
def test_every_op_of_the_cuda_table_conforms(emulated, seed):
    cases = emulated[0]["conformance"][str(seed)]
    ops = {op for op, _, _, _ in cases}
    # every op of the table is exercised (attention_probs only with few keys, so not every seed)
    assert ops >= {"linear", "matmul", "layernorm", "add", "activate", "add_row", "copy", "transpose",
                   "space_to_depth2", "normalize_pad", "conv3x3", "dwconv3x3", "window_attention", "attention",
                   "softmax", "upscale_masks", "resize_bilinear", "resize_bilinear_mask"}, ops
    bad = [c for c in cases if not c[2] <= c[3]]
    assert not bad, bad


def test_embedding_matches_the_cpu_backend(emulated):
    _, a = emulated
    assert a["emb_gpu"].shape == a["emb_cpu"].shape == (1, 256, 64, 64)
    assert np.abs(a["emb_gpu"] - a["emb_cpu"]).max() <= 1e-3


def test_a_frame_on_the_gpu_is_resized_there_pillow_exact(emulated):
    """set_image of a uint8 frame already in CUDA memory (DLPack): the resize runs on the device
    (resize_rgb8) and gives the host resize's bits, so the embedding equals the host frame's."""
    meta, a = emulated
    assert np.array_equal(a["emb_gpu_frame"], a["emb_gpu"])
    assert np.array_equal(a["emb_gpu_frame_bgr"], a["emb_gpu"])
    d = meta["device_frame_counts"]
    assert d["d2h"] == 0 and d["allocs"] == 0 and d["h2d"] == 1, d  # the resize plan only
    orig, inp, cpu_inp = meta["device_frame_sizes"]
    assert orig == meta["size"] and inp == cpu_inp
    assert [e.startswith("image on a GPU must be") for e in meta["device_frame_errors"]] == [True, True], \
        meta["device_frame_errors"]


def test_set_image_copies_in_and_allocates_nothing(emulated):
    d = emulated[0]["set_image_counts"]
    assert d["allocs"] == 0 and d["d2h"] == 0, d
    assert d["h2d"] == 1, d  # the resized frame, staged once


PROMPTS = ("point", "box", "points_mask")


@pytest.mark.parametrize("name", PROMPTS)
def test_gpu_resident_predict_moves_nothing_back_and_never_waits(emulated, name):
    meta, _ = emulated
    d = meta[f"{name}_resident_counts"]
    assert d["d2h"] == 0 and d["syncs"] == 0 and d["allocs"] == 0, d
    assert 1 <= d["h2d"] <= 2, d  # the prompt tokens (and a mask input)
    assert meta[f"{name}_resident_types"] == ["Array", "Array", "None"]
    assert meta[f"{name}_resident_dlpack"] == [[2, 0], [2, 0]]
    # __cuda_array_interface__ v3 on device arrays: shape, dtype, a writable device pointer, stream 1
    assert meta[f"{name}_cai"] == [True, "|b1", 3, 1, None, False, True]
    assert meta[f"{name}_streams"] == ["ok"] * 3 + ["BufferError"] * 3
    assert meta[f"{name}_host_copy_has_cai"] is False
    assert meta[f"{name}_legacy_types"] == ["ndarray", "ndarray", "ndarray"]
    cpu_ops, gpu_ops = meta[f"{name}_ops"]
    # the CPU backend's op sequence plus one device copy: the replayable decode writes the session's
    # IoU buffer, copied into the output after it (no staging, no other copy)
    assert gpu_ops == cpu_ops + 1 and cpu_ops > 0


@pytest.mark.parametrize("name", PROMPTS)
def test_masks_logits_and_iou_match_the_cpu_backend(emulated, name):
    _, a = emulated
    logits_cpu, logits_gpu = a[f"{name}_cpu"], a[f"{name}_gpu"]
    assert logits_gpu.shape == logits_cpu.shape
    assert np.abs(logits_gpu - logits_cpu).max() <= 1e-3 * max(1.0, np.abs(logits_cpu).max())
    assert np.abs(a[f"{name}_gpu_low"] - a[f"{name}_cpu_low"]).max() <= 1e-3 * max(1.0, np.abs(a[f"{name}_cpu_low"]).max())
    np.testing.assert_allclose(a[f"{name}_gpu_iou"], a[f"{name}_cpu_iou"], atol=1e-4)
    # the resident masks (.numpy() of the device arrays) against the CPU's masks
    masks_cpu, masks_gpu = a[f"{name}_cpu_masks"], a[f"{name}_gpu_masks"]
    assert masks_gpu.dtype == masks_cpu.dtype and masks_gpu.shape == masks_cpu.shape
    differ = masks_gpu != masks_cpu
    assert np.all(np.abs(logits_cpu[differ]) < 1e-2), np.abs(logits_cpu[differ]).max()
    assert masks_cpu.any() and not masks_cpu.all()  # a mask that has an edge, so the check means something
    np.testing.assert_allclose(a[f"{name}_gpu_masks_iou"], a[f"{name}_cpu_iou"], atol=1e-4)


def test_a_prompt_shape_seen_before_replays_its_recorded_decode(emulated):
    """predict's decode is captured into a graph per prompt shape (ops.h replay_begin/end) and
    launched whole after: same results as the recording run and as the CPU, one replay per call,
    still nothing copied back, no sync, no allocation."""
    meta, a = emulated
    # the first call of "point" here already replays (the loop above recorded it); the new
    # three-point shape records on its first call and replays on its second
    assert meta["replays"] == [1, 1, 1], meta["replays"]
    d = meta["replay_counts"]
    assert d["d2h"] == 0 and d["syncs"] == 0 and d["allocs"] == 0 and d["h2d"] == 1, d
    assert np.array_equal(a["replay_first_masks"], a["replay_again_masks"])
    assert np.array_equal(a["replay_first_iou"], a["replay_again_iou"])
    assert np.array_equal(a["three_gpu_rec"], a["three_gpu_rep"])
    assert np.array_equal(a["three_gpu_rec_low"], a["three_gpu_rep_low"])
    # and the replayed three-point decode is the CPU's (logits within the parity band)
    cpu = a["three_cpu"]
    assert np.abs(a["three_gpu_rep"] - cpu).max() <= 1e-3 * max(1.0, np.abs(cpu).max())


def test_gpu_prompts_are_encoded_on_the_device(emulated):
    """predict_torch with prompts already on the GPU (DLPack): tokens made by the device op
    (prompt_tokens), nothing copied in or back; the masks those of the same prompts from the host."""
    meta, a = emulated
    d = meta["gpu_prompt_counts"]
    assert d["h2d"] == 0 and d["d2h"] == 0 and d["syncs"] == 0 and d["allocs"] == 0, d
    for tag in ("masks", "iou", "low"):
        want, got = a[f"gpu_prompts_host_{tag}"], a[f"gpu_prompts_dev_{tag}"]
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max()), tag
    for kind in ("pts", "box"):
        want = a[f"gpu_prompts_{kind}_host"]
        assert np.abs(a[f"gpu_prompts_{kind}"] - want).max() <= 1e-4 * max(1.0, np.abs(want).max()), kind
    assert meta["gpu_prompt_errors"][0].startswith("point_coords, point_labels and"), meta["gpu_prompt_errors"]
    assert all(e.startswith("point_") for e in meta["gpu_prompt_errors"][1:]), meta["gpu_prompt_errors"]


def test_batched_boxes_match_the_cpu_backend(emulated):
    _, a = emulated
    assert a["batch_gpu"].shape == a["batch_cpu"].shape and a["batch_cpu"].shape[0] == 3
    assert np.abs(a["batch_gpu"] - a["batch_cpu"]).max() <= 1e-3 * max(1.0, np.abs(a["batch_cpu"]).max())
    np.testing.assert_allclose(a["batch_gpu_iou"], a["batch_cpu_iou"], atol=1e-4)


def test_an_embedding_set_on_the_cuda_predictor_predicts_as_the_cpu(emulated):
    _, a = emulated
    assert np.abs(a["embedpath_gpu"] - a["point_cpu"]).max() <= 1e-3 * max(1.0, np.abs(a["point_cpu"]).max())
    np.testing.assert_allclose(a["embedpath_gpu_iou"], a["point_cpu_iou"], atol=1e-4)


@pytest.mark.skipif(NVCC is None, reason="nvcc not found (CI has it): the op table was only emulated")
def test_the_op_table_compiles_with_nvcc(tmp_path):
    """The same sources under the real compiler and the real cuda_runtime.h, with no cuBLAS headers
    (cuBLAS is declared by backend/cublas_loader.h and loaded at run time), sm_80, sm_90 and PTX
    for newer, warnings as errors: a backend file only the emulation accepts fails. (The whole
    extension is built and linked by nvcc in tests/test_cuda_build.py.)"""
    for src in BACKEND:
        cmd = [NVCC, "-c", "-std=c++17", "-O3", "-Werror", "all-warnings",
               "-I", str(ROOT / "csrc"), "-I", str(ROOT / "csrc" / "include"),
               "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90",
               "-gencode", "arch=compute_90,code=compute_90", str(src), "-o", str(tmp_path / (src.stem + ".o"))]
        run = subprocess.run(cmd, capture_output=True, text=True)
        assert run.returncode == 0, " ".join(cmd) + "\n" + run.stdout + run.stderr


def test_counters_errors_trace_copies_and_strides_in_c(emulation_build):
    """tests/cuda_backend_probe.c, linked with the build's objects (all but the Python binding): the
    counters ops.h defines, first-error recording, the CPU's trace scheme, overlapping copies and
    matmul operands packed from strides cuBLAS cannot take."""
    tmp = emulation_build
    objs = [str(p) for p in (tmp / "build").rglob("*.o") if "python" not in p.relative_to(tmp / "build").parts]
    inc = [f"-I{ROOT / d}" for d in ("csrc", "csrc/include", "csrc/core", "csrc/host")]
    cc, cxx = os.environ.get("CC", "gcc"), os.environ.get("CXX", "g++")
    probe_o, probe = tmp / "probe.o", tmp / "probe"
    for cmd in ([cc, "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", *inc, "-c",
                 str(ROOT / "tests" / "cuda_backend_probe.c"), "-o", str(probe_o)],
                [cxx, "-o", str(probe), str(probe_o), *objs, "-fopenmp", "-lpthread", "-lm", "-ldl"]):
        run = subprocess.run(cmd, capture_output=True, text=True)
        assert run.returncode == 0, " ".join(cmd) + "\n" + run.stdout + run.stderr
    run = subprocess.run([str(probe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok (0 failed)"), run.stdout + run.stderr
