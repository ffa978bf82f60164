# test_encoder_parity.py - the C TinyViT-5M image encoder against MobileSAM's own PyTorch code,
# stage by stage, with every parameter and buffer randomised so that no branch hides behind zeros.
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
mobile_sam = pytest.importorskip("mobile_sam")
msc = pytest.importorskip("mobile_sam_c")

from torch import nn  # noqa: E402

IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "images"
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


@torch.no_grad()
def randomize_(model, seed=0):
    """Give every parameter and buffer of model random values that keep activations O(1).

    Default init hides branches (the last BatchNorm of each MBConv starts at zero, LayerNorm
    biases and attention biases at zero), so all of them get non-trivial values here:
    conv/linear weights ~ N(0, 1/fan_in), biases and BatchNorm shifts/means ~ N(0, 0.1^2),
    norm scales and running variances ~ U(0.5, 1.5), attention biases ~ N(0, 0.5^2)."""
    g = torch.Generator().manual_seed(seed)

    def normal(t, std):
        t.copy_(torch.randn(t.shape, generator=g) * std)

    def uniform(t, lo, hi):
        t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=g))

    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            fan_in = mod.weight[0].numel() if not isinstance(mod, nn.ConvTranspose2d) else \
                mod.weight.shape[0] * mod.weight[0, 0].numel()
            normal(mod.weight, 1.0 / math.sqrt(fan_in))
            if mod.bias is not None:
                normal(mod.bias, 0.1)
        elif isinstance(mod, nn.BatchNorm2d):
            uniform(mod.weight, 0.5, 1.5)
            normal(mod.bias, 0.1)
            normal(mod.running_mean, 0.1)
            uniform(mod.running_var, 0.5, 1.5)
        elif hasattr(mod, "attention_biases"):
            normal(mod.attention_biases, 0.5)
        elif isinstance(getattr(mod, "weight", None), nn.Parameter) and mod.weight.ndim == 1:
            # LayerNorm, LayerNorm2d: a scale and a shift per channel
            uniform(mod.weight, 0.5, 1.5)
            if getattr(mod, "bias", None) is not None:
                normal(mod.bias, 0.2)
    for name, p in model.named_parameters():  # anything the cases above did not reach
        if p.ndim > 0 and torch.count_nonzero(p) == 0:
            normal(p, 0.1)
    # TinyViT's Attention caches its gathered biases (self.ab) when switched to eval mode:
    # switch again so the cache holds the randomised values.
    model.train()
    model.eval()
    return model


def build_random_reference(seed=0):
    sam = mobile_sam.sam_model_registry["vit_t"]()
    return randomize_(sam, seed)


def state_dict_numpy(sam):
    return {k: v.detach().cpu().numpy() for k, v in sam.state_dict().items()}


def photo_input(sam, name="dog.jpg"):
    """A real photo through the reference's own resize and preprocess: 1x3x1024x1024 float32."""
    from PIL import Image
    from mobile_sam.utils.transforms import ResizeLongestSide

    img = np.array(Image.open(IMAGES / name).convert("RGB"))
    resized = ResizeLongestSide(1024).apply_image(img)
    t = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None].float()
    with torch.no_grad():
        return sam.preprocess(t).numpy().astype(np.float32)


def random_input(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((1, 3, 1024, 1024), generator=g).numpy()


@torch.no_grad()
def reference_stages(sam, x):
    """The reference's stage outputs (forward hooks) and its full embedding."""
    enc = sam.image_encoder
    out = {}
    mods = [("patch_embed", enc.patch_embed)] + \
        [(f"layers.{i}", enc.layers[i]) for i in range(4)] + [("neck", enc.neck)]
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: out.__setitem__(n, o.numpy().copy()))
             for n, m in mods]
    try:
        emb = enc(torch.from_numpy(x)).numpy()
    finally:
        for h in hooks:
            h.remove()
    return out, emb


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    sam = build_random_reference(seed=0)
    model = msc.sam_model_registry["vit_t"](checkpoint=state_dict_numpy(sam))
    return sam, model


def _inputs(sam):
    return [("dog.jpg", photo_input(sam)), ("random", random_input())]


@pytest.mark.parametrize("which", [0, 1], ids=["photo", "random"])
def test_encoder_stages_match_reference(models, which):
    sam, model = models
    name, x = _inputs(sam)[which]
    ref, _ = reference_stages(sam, x)
    got = model.image_encoder_stages(x)
    diffs = {}
    for stage in STAGES:
        assert stage in got, f"missing stage {stage}"
        g = np.asarray(got[stage])
        assert g.shape == REF_SHAPES[stage], (stage, g.shape)
        assert ref[stage].shape == REF_SHAPES[stage]
        diffs[stage] = float(np.max(np.abs(g.astype(np.float64) - ref[stage])))
    print(f"\n{name}: max abs diff per stage: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    scale = {k: float(np.max(np.abs(ref[k]))) for k in STAGES}
    print(f"{name}: max abs reference value: " + ", ".join(f"{k} {v:.2f}" for k, v in scale.items()))
    bad = {k: v for k, v in diffs.items() if not v <= TOL}
    assert not bad, f"stages over {TOL}: {bad}"


@pytest.mark.parametrize("which", [0, 1], ids=["photo", "random"])
def test_encoder_embedding_matches_reference(models, which):
    sam, model = models
    name, x = _inputs(sam)[which]
    _, emb = reference_stages(sam, x)
    got = np.asarray(model.image_encoder(x))
    assert got.shape == (1, 256, 64, 64)
    diff = float(np.max(np.abs(got.astype(np.float64) - emb)))
    print(f"\n{name}: embedding max abs diff {diff:.2e}")
    assert diff <= TOL


def test_randomised_reference_has_no_zero_branches():
    """The builder itself: no all-zero tensor left, and the attention bias cache is fresh."""
    sam = build_random_reference(seed=3)
    for k, v in sam.state_dict().items():
        if v.dtype.is_floating_point and v.numel() > 1:
            assert torch.count_nonzero(v) > 0, k
    for mod in sam.image_encoder.modules():
        if hasattr(mod, "attention_biases"):
            assert torch.equal(mod.ab, mod.attention_biases[:, mod.attention_bias_idxs])
