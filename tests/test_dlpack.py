"""Outputs made in the model's backend memory and handed out from C (issue 9): the Array type's
DLPack export (versioned and legacy capsules, stream, max_version, dl_device, copy), its host
copies, and the modes of predict (as_numpy, return_low_res) on the CPU backend."""
import ctypes
import gc
import sys
import warnings

import numpy as np
import pytest
import torch

import mobile_sam_c
from mobile_sam_c import _C


@pytest.fixture(scope="module")
def predictor():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sam = mobile_sam_c.sam_model_registry["vit_t"]()
    p = mobile_sam_c.SamPredictor(sam)
    p.set_image(np.random.default_rng(4).integers(0, 256, (120, 90, 3), dtype=np.uint8))
    return p


PROMPT = dict(point_coords=np.array([[30.0, 40.0]], np.float32), point_labels=np.array([1], np.int32))


def _arrays(predictor, **kw):
    """predict's outputs and the backend Arrays behind them (NumPy views on the CPU)."""
    outs = predictor.predict(**PROMPT, **kw)
    return outs, [None if o is None else o.base for o in outs]


def test_cpu_outputs_are_numpy_views_of_backend_arrays(predictor):
    (masks, iou, low), (am, ai, al) = _arrays(predictor)
    for arr, out in [(am, masks), (ai, iou), (al, low)]:
        assert isinstance(arr, _C.Array)
        assert arr.__dlpack_device__() == (1, 0) and arr.device == "cpu"
        assert arr.shape == out.shape and arr.dtype == out.dtype and arr.ndim == out.ndim
        assert arr.nbytes == out.nbytes and len(arr) == out.shape[0]
        assert np.shares_memory(np.asarray(arr), out)
    assert masks.dtype == np.bool_ and masks.shape == (3, 120, 90)
    assert "mobile_sam_c.Array(shape=(3, 120, 90), dtype=bool, device='cpu')" == repr(am)


def test_both_modes_give_the_same_numbers(predictor):
    a = predictor.predict(**PROMPT, as_numpy=True, return_low_res=True)
    b = predictor.predict(**PROMPT, as_numpy=False, return_low_res=False)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert b[2] is None and a[2].shape == (3, 256, 256)
    for out in a:  # as_numpy=True: plain NumPy arrays
        assert isinstance(out, np.ndarray)


def test_numpy_from_dlpack_is_zero_copy_and_keeps_memory_alive(predictor):
    (_, iou, low), (_, ai, al) = _arrays(predictor)
    expect = low.copy()
    view = np.from_dlpack(al)
    assert np.shares_memory(view, low)
    del low, al
    gc.collect()
    np.testing.assert_array_equal(view, expect)  # the export holds the Array and its buffer


def test_torch_from_dlpack_zero_copy_for_floats_and_bools(predictor):
    (masks, iou, low), (am, ai, al) = _arrays(predictor)
    t = torch.from_dlpack(al)
    assert t.dtype == torch.float32 and tuple(t.shape) == low.shape
    assert t.data_ptr() == low.ctypes.data
    tm = torch.from_dlpack(am)
    assert tm.dtype == torch.bool and torch.equal(tm, torch.from_numpy(masks))
    low_copy = low.copy()
    del masks, iou, low, am, ai, al
    gc.collect()
    np.testing.assert_array_equal(t.numpy(), low_copy)


def _capsule_name(cap):
    get = ctypes.pythonapi.PyCapsule_GetName
    get.restype, get.argtypes = ctypes.c_char_p, [ctypes.py_object]
    return get(cap).decode()


def test_capsule_versions(predictor):
    (_, iou, _), (_, ai, _) = _arrays(predictor)
    assert _capsule_name(ai.__dlpack__()) == "dltensor"
    assert _capsule_name(ai.__dlpack__(max_version=(0, 8))) == "dltensor"
    assert _capsule_name(ai.__dlpack__(max_version=(1, 0))) == "dltensor_versioned"
    assert _capsule_name(ai.__dlpack__(max_version=(2, 3))) == "dltensor_versioned"
    # an unconsumed capsule releases its reference on the Array when it goes
    before = sys.getrefcount(ai)
    caps = [ai.__dlpack__(max_version=(1, 0)) for _ in range(50)] + [ai.__dlpack__() for _ in range(50)]
    assert sys.getrefcount(ai) == before + 100
    del caps
    gc.collect()
    assert sys.getrefcount(ai) == before


def test_copy_device_and_stream_arguments(predictor):
    (_, iou, _), (_, ai, _) = _arrays(predictor)
    copied = np.from_dlpack(ai, copy=True)
    assert not np.shares_memory(copied, iou) and np.array_equal(copied, iou)
    same = np.from_dlpack(ai, copy=False)
    assert np.shares_memory(same, iou)
    assert np.shares_memory(np.from_dlpack(ai, device="cpu"), iou)
    with pytest.raises(BufferError, match="dl_device"):
        ai.__dlpack__(dl_device=(2, 0))
    with pytest.raises(BufferError, match="stream must be None"):
        ai.__dlpack__(stream=1)
    with pytest.raises(mobile_sam_c.InputError, match="dl_device"):
        ai.__dlpack__(dl_device="cpu")
    with pytest.raises(mobile_sam_c.InputError, match="max_version"):
        ai.__dlpack__(max_version="x")
    with pytest.raises(TypeError):
        ai.__dlpack__(None)  # stream is keyword-only


def test_host_copies_on_request(predictor):
    (_, iou, low), (_, ai, al) = _arrays(predictor)
    assert al.cpu() is al  # already on the host
    np.testing.assert_array_equal(al.numpy(), low)
    assert np.shares_memory(al.numpy(), low)
    c = np.array(al, copy=True)
    assert not np.shares_memory(c, low) and np.array_equal(c, low)
    as64 = np.asarray(ai, dtype=np.float64)
    assert as64.dtype == np.float64 and np.allclose(as64, iou)


def test_return_low_res_false_makes_no_low_res_array(predictor):
    masks, iou, low = predictor.predict(**PROMPT, return_low_res=False)
    assert low is None
    m2, i2, l2 = predictor.predict_torch(np.array([[[30.0, 40.0]]], np.float32), np.array([[1]], np.int32),
                                         return_low_res=False)
    assert l2 is None and m2.shape == (1, 3, 120, 90)


def test_predict_torch_with_torch_inputs_gives_torch_outputs(predictor):
    coords = torch.tensor([[[30.0, 40.0]], [[10.0, 5.0]]])
    labels = torch.ones((2, 1), dtype=torch.int32)
    masks, iou, low = predictor.predict_torch(coords, labels)
    assert isinstance(masks, torch.Tensor) and masks.dtype == torch.bool and tuple(masks.shape) == (2, 3, 120, 90)
    assert isinstance(low, torch.Tensor) and low.dtype == torch.float32
    ref = predictor.predict_torch(coords.numpy(), labels.numpy())
    np.testing.assert_array_equal(masks.numpy(), ref[0])
    np.testing.assert_array_equal(iou.numpy(), ref[1])
