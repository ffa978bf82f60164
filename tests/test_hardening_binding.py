"""Regression tests of issue 14 findings 3 and 7: user code run while the binding converts its
arguments cannot corrupt it; junk DLPack devices, coordinates that overflow after scaling and a
thread count the system cannot start all raise exceptions that say so."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mobile_sam_c
from mobile_sam_c import _C, random_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT, OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def weights():
    return {k: v for k, v in random_weights.random_state_dict(_C.weight_spec(), seed=14).items()}


@pytest.fixture(scope="module")
def predictor(weights):
    sam = mobile_sam_c.sam_model_registry["vit_t"](checkpoint=weights)
    p = mobile_sam_c.SamPredictor(sam)
    emb = np.random.default_rng(14).standard_normal((1, 256, 64, 64)).astype(np.float32)
    p.set_image_embedding(emb, (600, 800))
    return p


MUTATORS = {
    # adds thousands of keys: the table was sized from the dict's first length (heap overflow)
    "grow": "for i in range(5000): weights[f'extra.{i}'] = np.zeros(1, np.float32)",
    # deletes every key: the table held their UTF-8 names (use after free)
    "clear": "weights.clear(); gc.collect()",
}


@pytest.mark.parametrize("how", sorted(MUTATORS))
def test_model_init_while_array_hook_mutates_the_dict(how):
    """Finding 3: _C.Model converts a snapshot of (key, value) pairs it owns, so an __array__
    that grows or clears the dict mid-conversion changes nothing (in a child: it used to crash)."""
    r = _run(f"""
        import gc
        import numpy as np
        from mobile_sam_c import _C, random_weights
        src = random_weights.random_state_dict(_C.weight_spec(), seed=14)
        weights = {{"".join(reversed(k))[::-1] + "": v for k, v in src.items()}}  # keys owned only by the dict
        first = next(k for k, v in weights.items() if v.dtype == np.float32)
        class Hook:
            def __init__(self, a): self.a = a
            def __array__(self, dtype=None, copy=None):
                {MUTATORS[how]}
                return self.a
        weights[first] = Hook(weights[first])
        model = _C.Model(weights)
        print("OK", model.device)
    """)
    assert r.returncode == 0 and "OK cpu" in r.stdout, (r.returncode, r.stdout[-1000:], r.stderr[-2000:])


class _JunkDevice:
    def __init__(self, dev):
        self.dev = dev

    def __dlpack_device__(self):
        if isinstance(self.dev, BaseException):
            raise self.dev
        return self.dev

    def __dlpack__(self, **kw):
        raise AssertionError("not reached")


@pytest.mark.parametrize("dev", ["abc", (), (None, 0), ("x", 0), (1,), (1, 0, 0), KeyError("k")],
                         ids=["str", "empty", "none", "text", "short", "long", "raises"])
def test_junk_dlpack_device_is_an_input_error(predictor, dev):
    """Finding 7: a __dlpack_device__ that returns junk gives an InputError naming the argument."""
    with pytest.raises(mobile_sam_c.InputError, match="point_coords.__dlpack_device__"):
        predictor.predict(point_coords=_JunkDevice(dev), point_labels=np.array([1]))


@pytest.mark.parametrize("arg", ["point_coords", "box"])
def test_coordinates_that_overflow_after_scaling(predictor, arg):
    """Finding 7: 3e38 is finite but 3e38 * 1.28 is not a float32: say that, not "not finite"."""
    kw = ({"point_coords": np.array([[3e38, 5.0]]), "point_labels": np.array([1])} if arg == "point_coords"
          else {"box": np.array([0.0, 0.0, 10.0, 3e38])})
    with pytest.raises(mobile_sam_c.InputError, match=f"{arg} must be within the float32 range after scaling"):
        predictor.predict(**kw)
    fine = ({"point_coords": np.array([[2.0e38, 5.0]]) / 1e38, "point_labels": np.array([1])}
            if arg == "point_coords" else {"box": np.array([0.0, 0.0, 10.0, 3.0])})
    masks, iou, _ = predictor.predict(**fine, as_numpy=True)
    assert masks.shape[0] == 3 and np.isfinite(iou).all()


def test_thread_count_the_system_cannot_start_raises():
    """Finding 7: under an address-space cap 1024 threads cannot start; set_num_threads raises and
    keeps the old count (libgomp used to print and exit(1) the process at the next kernel)."""
    r = _run("""
        import resource
        import numpy as np
        from mobile_sam_c import _C
        _C.set_num_threads(2)
        a = np.ones((64, 512), np.float32); w = np.ones((512, 512), np.float32)
        ref = _C._gemm(a, w)
        vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), resource.RLIM_INFINITY))
        try:
            _C.set_num_threads(1024)
            print("NO RAISE")
        except RuntimeError as e:
            print("RAISED", e)
        assert _C.get_num_threads() == 2, _C.get_num_threads()
        assert np.array_equal(_C._gemm(a, w), ref)
        print("OK")
    """)
    assert r.returncode == 0 and "RAISED set_num_threads(1024)" in r.stdout and "OK" in r.stdout, (
        r.returncode, r.stdout[-1000:], r.stderr[-2000:])


def test_points_per_prompt_set_are_bounded(predictor):
    """A 100000x2 zero-stride array is 16 bytes of memory but would make the decoder attend over
    100,000 tokens for hours: more than MAX_PROMPT_POINTS (256) points per set is an InputError,
    before any compute."""
    n, most = 100_000, mobile_sam_c._C.MAX_PROMPT_POINTS
    coords = np.broadcast_to(np.array([10.0, 20.0]), (n, 2))
    with pytest.raises(mobile_sam_c.InputError, match=f"at most {most} points"):
        predictor.predict(point_coords=coords, point_labels=np.ones(n))
    with pytest.raises(mobile_sam_c.InputError, match=f"at most {most} points"):
        predictor.predict_torch(np.zeros((2, most + 1, 2)), np.ones((2, most + 1)))
    masks, iou, _ = predictor.predict(point_coords=coords[:most], point_labels=np.ones(most), as_numpy=True)
    assert np.isfinite(iou).all()


def test_size_pair_whose_index_clears_its_list():
    """A size pair whose item's __index__ clears the list while it is read (a SIGSEGV when C held
    borrowed items; the binding now reads a tuple of its own)."""
    script = textwrap.dedent("""
        import numpy as np
        import mobile_sam_c
        from mobile_sam_c import _C, random_weights
        sam = mobile_sam_c.sam_model_registry["vit_t"](checkpoint=random_weights.random_state_dict(_C.weight_spec(), seed=1))
        p = mobile_sam_c.SamPredictor(sam)
        class ClearsItsList:
            def __index__(self):
                size.clear()
                return 5
        size = [ClearsItsList(), 7]
        try:
            p.set_image_embedding(np.zeros((1, 256, 64, 64), np.float32), size)
        except mobile_sam_c.InputError:
            pass
        print("OK")
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT)
    assert r.returncode == 0 and "OK" in r.stdout, (r.returncode, r.stderr[-1000:])
