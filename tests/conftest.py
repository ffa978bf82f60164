"""Shared fixtures: the randomised PyTorch reference, our model loaded from its state dict, and
the image embeddings the tests need (each computed once per session: the reference encoder takes
seconds on a small CPU).

GPU-only tests carry ``@pytest.mark.gpu`` (or use ``requires_gpu``) and are skipped when no CUDA
device is present; the only other skip is test_gemm's for a SIMD kernel the CPU lacks (that
kernel is then tested through SIMDe by test_avx512_emulated.py).
"""
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reference as R  # noqa: E402

torch.set_num_threads(2)

REFERENCE_SEED = 20240607
EMBEDDING_SEED = 7
PHOTO = "dog.jpg"  # 534x800 landscape, one of segment-anything's notebook photos


def cuda_available() -> bool:
    try:
        return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0
    except Exception:  # a CUDA build of torch on a machine without a driver
        return False


requires_gpu = pytest.mark.gpu


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU; skipped when no CUDA device is present")


def pytest_collection_modifyitems(config, items):
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device on this machine")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not R.OBSERVED:
        return
    terminalreporter.section("mobile_sam_c parity: largest observed differences vs the reference")
    for line in R.summary_lines():
        terminalreporter.write_line(line)


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def reference_bundle():
    """(ref_sam, state_dict_numpy): the reference vit_t with every tensor randomised."""
    return R.build_random_reference(REFERENCE_SEED)


@pytest.fixture(scope="session")
def ref_model(reference_bundle):
    return reference_bundle[0]


@pytest.fixture(scope="session")
def ref_state_dict(reference_bundle):
    return reference_bundle[1]


@pytest.fixture(scope="session")
def msc():
    import mobile_sam_c

    return mobile_sam_c


@pytest.fixture(scope="session")
def model(msc, ref_state_dict):
    """Our model, loaded from the reference's state dict given as a Mapping of NumPy arrays."""
    return msc.sam_model_registry["vit_t"](checkpoint=ref_state_dict)


@pytest.fixture(scope="session")
def random_embedding():
    """An N(0, 1) 1x256x64x64 float32 image embedding."""
    rng = np.random.default_rng(EMBEDDING_SEED)
    return rng.standard_normal(R.EMBED_SHAPE).astype(np.float32)


@pytest.fixture(scope="session")
def photo():
    """A real photo (HxWx3 uint8 RGB): the sample the package ships."""
    return R.load_image(PHOTO)


@pytest.fixture(scope="session")
def photo_embedding(ref_model, photo):
    """The reference's set_image on the photo: (embedding 1x256x64x64, original_size, input_size)."""
    return R.reference_embedding(ref_model, photo)
