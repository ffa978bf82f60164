# test_encoder_parity.py - the C TinyViT-5M image encoder against MobileSAM's own PyTorch code,
# stage by stage, on the fully randomised reference (conftest.py) with a photo and a random input.
import numpy as np
import pytest
import torch

import reference as R

TOL = 1e-3
STAGES = ["patch_embed", "layers.0", "layers.1", "layers.2", "layers.3", "neck"]
REF_SHAPES = {
    "patch_embed": (1, 64, 256, 256),
    "layers.0": (1, 16384, 128),
    "layers.1": (1, 4096, 160),
    "layers.2": (1, 4096, 320),
    "layers.3": (1, 4096, 320),
    "neck": (1, 256, 64, 64),
}
INPUTS = ["dog.jpg", "random"]


def photo_input(ref, name):
    """A real photo through the reference's own resize and preprocess: 1x3x1024x1024 float32."""
    img = R.load_image(name)
    resized = R.RefResizeLongestSide(R.IMG_SIZE).apply_image(img)
    t = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None].float()
    with torch.no_grad():
        return ref.preprocess(t).numpy().astype(np.float32)


def random_input(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((1, 3, R.IMG_SIZE, R.IMG_SIZE), generator=g).numpy()


@torch.no_grad()
def reference_stages(ref, x):
    """The reference encoder's stage outputs (forward hooks) and its full embedding."""
    enc = ref.image_encoder
    out = {}
    mods = [("patch_embed", enc.patch_embed)] + \
        [(f"layers.{i}", enc.layers[i]) for i in range(4)] + [("neck", enc.neck)]
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: out.__setitem__(n, o.numpy().copy()))
             for n, m in mods]
    try:
        emb = enc(torch.from_numpy(x)).numpy().copy()
    finally:
        for h in hooks:
            h.remove()
    return out, emb


@pytest.fixture(scope="module")
def encoder_case(ref_model):
    """name -> (input, reference stages, reference embedding), each computed once."""
    cache = {}

    def get(name):
        if name not in cache:
            x = random_input() if name == "random" else photo_input(ref_model, name)
            cache[name] = (x,) + reference_stages(ref_model, x)
        return cache[name]

    return get


@pytest.mark.parametrize("name", INPUTS)
def test_encoder_stages_match_reference(model, encoder_case, name):
    x, ref, _ = encoder_case(name)
    got = model.image_encoder_stages(x)
    diffs = {}
    for stage in STAGES:
        assert stage in got, f"missing stage {stage}"
        assert ref[stage].shape == REF_SHAPES[stage]
        diffs[stage] = R.max_abs_diff(got[stage], ref[stage])
        R.record(f"encoder stage {stage}: max|diff|", diffs[stage], name)
    print(f"\n{name}: max abs diff per stage: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    bad = {k: v for k, v in diffs.items() if not v <= TOL}
    assert not bad, f"stages over {TOL}: {bad}"


@pytest.mark.parametrize("name", INPUTS)
def test_encoder_embedding_matches_reference(model, encoder_case, name):
    x, _, emb = encoder_case(name)
    got = np.asarray(model.image_encoder(x))
    assert got.shape == (1, 256, 64, 64)
    d = R.max_abs_diff(got, emb)
    R.record("encoder image_encoder(x): embedding max|diff|", d, name)
    assert d <= TOL, d


def test_encoder_is_deterministic(model):
    """Same input, same embedding, bit for bit (no state leaks between runs of the workspace)."""
    x = random_input(seed=5)
    a = np.asarray(model.image_encoder(x)).copy()
    b = np.asarray(model.image_encoder(x))
    assert np.array_equal(a, b)
