"""The PyTorch reference (MobileSAM's own code, package ``mobile_sam``) set up for parity tests.

Nothing here knows about mobile_sam_c: it builds the reference model with every parameter and
buffer randomised (so no branch of the network is silently zero, as it is with the default init,
which zeroes the last BatchNorm of each MBConv), hands out its state dict as NumPy arrays for
our loader, and computes reference embeddings / predictions.

It also keeps a small table of the largest differences the tests observed, per stage, which
conftest.py prints at the end of the session (so they can be reported without ``-s``).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

with warnings.catch_warnings():
    # timm's deprecation warnings and the registry's "Overwriting tiny_vit_*" warnings.
    warnings.simplefilter("ignore")
    from mobile_sam import SamPredictor as RefSamPredictor
    from mobile_sam import sam_model_registry as ref_sam_model_registry
    from mobile_sam.modeling.common import LayerNorm2d as _DecoderLayerNorm2d
    from mobile_sam.modeling.prompt_encoder import PositionEmbeddingRandom
    from mobile_sam.modeling.tiny_vit_sam import Attention as _TinyViTAttention
    from mobile_sam.modeling.tiny_vit_sam import LayerNorm2d as _EncoderLayerNorm2d
    from mobile_sam.utils.transforms import ResizeLongestSide as RefResizeLongestSide

IMG_SIZE = 1024
EMBED_SHAPE = (1, 256, 64, 64)

# ---------------------------------------------------------------------------------------------
# Photos: a few small real photos kept in tests/data, plus the sample the package ships
# (mobile_sam_c/assets/dog.jpg), so a fresh clone needs nothing beside it.

REPO = Path(__file__).resolve().parents[1]
DATA_DIRS = (REPO / "tests" / "data", REPO / "mobile_sam_c" / "assets")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def image_path(name: str) -> Path:
    """The path of a test photo by file name (tests/data first, then the package's sample)."""
    for d in DATA_DIRS:
        if (d / name).is_file():
            return d / name
    raise FileNotFoundError(f"test photo {name!r} not found in {[str(d) for d in DATA_DIRS]}")


def photo_paths() -> List[Path]:
    """Every test photo, sorted by name."""
    found = {p.name: p for d in reversed(DATA_DIRS) if d.is_dir() for p in d.iterdir()
             if p.suffix.lower() in PHOTO_SUFFIXES}
    return [found[n] for n in sorted(found)]


def list_images() -> List[str]:
    return [p.name for p in photo_paths()]


def load_image(name: str) -> np.ndarray:
    """A test photo as HxWx3 uint8 RGB (what cv2 + cvtColor or PIL give users)."""
    from PIL import Image

    with Image.open(image_path(name)) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def random_image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth-ish random HxWx3 uint8 image (noise plus gradients, so resizing has work to do)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 127.5 + 60 * np.sin(xx / max(w, 1) * 7.0)[..., None] + 50 * np.cos(yy / max(h, 1) * 5.0)[..., None]
    img = base + rng.normal(0, 40, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# The randomised reference.


def _randn(g: torch.Generator, shape, std: float = 1.0, mean: float = 0.0) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32) * std + mean


def _uniform(g: torch.Generator, shape, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(tuple(shape), generator=g, dtype=torch.float32) * (hi - lo) + lo


@torch.no_grad()
def randomise_(model: nn.Module, seed: int) -> None:
    """Overwrite every parameter and float buffer of the reference with seeded random values.

    Scaled so activations stay O(1): weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2), norm
    weights near 1, BatchNorm statistics non-trivial (variance positive), TinyViT attention
    biases N(0, 0.5^2), embeddings and the Fourier matrix N(0, 1). Raises if any tensor of the
    state dict was left untouched (num_batches_tracked excepted: it plays no part in eval).
    """
    g = torch.Generator().manual_seed(int(seed))
    done = set()

    def put(mod_name: str, attr: str, value: torch.Tensor) -> None:
        t = getattr(modules[mod_name], attr)
        assert t.shape == value.shape, (mod_name, attr, t.shape, value.shape)
        t.copy_(value)
        done.add(f"{mod_name}.{attr}" if mod_name else attr)

    modules = dict(model.named_modules())
    # Deterministic order: named_modules() order is the definition order.
    for name, mod in modules.items():
        if isinstance(mod, nn.ConvTranspose2d):
            # weight (in, out/groups, kh, kw); with stride == kernel every output pixel sees one
            # tap per input channel, so the fan-in is in_channels.
            fan_in = mod.in_channels // mod.groups
            put(name, "weight", _randn(g, mod.weight.shape, 1.0 / math.sqrt(fan_in)))
            if mod.bias is not None:
                put(name, "bias", _randn(g, mod.bias.shape, 0.1))
        elif isinstance(mod, (nn.Conv2d, nn.Linear)):
            fan_in = mod.weight[0].numel()
            put(name, "weight", _randn(g, mod.weight.shape, 1.0 / math.sqrt(fan_in)))
            if mod.bias is not None:
                put(name, "bias", _randn(g, mod.bias.shape, 0.1))
        elif isinstance(mod, nn.BatchNorm2d):
            n = mod.num_features
            put(name, "weight", _uniform(g, (n,), 0.5, 1.5))
            put(name, "bias", _randn(g, (n,), 0.2))
            put(name, "running_mean", _randn(g, (n,), 0.2))
            put(name, "running_var", _uniform(g, (n,), 0.5, 2.0))
        elif isinstance(mod, (nn.LayerNorm, _DecoderLayerNorm2d, _EncoderLayerNorm2d)):
            put(name, "weight", _randn(g, mod.weight.shape, 0.1, 1.0))
            put(name, "bias", _randn(g, mod.bias.shape, 0.1))
        elif isinstance(mod, nn.Embedding):
            put(name, "weight", _randn(g, mod.weight.shape, 1.0))
        elif isinstance(mod, _TinyViTAttention):
            put(name, "attention_biases", _randn(g, mod.attention_biases.shape, 0.5))
        elif isinstance(mod, PositionEmbeddingRandom):
            m = mod.positional_encoding_gaussian_matrix
            put(name, "positional_encoding_gaussian_matrix", _randn(g, m.shape, 1.0))

    missing = [k for k in model.state_dict() if k not in done and not k.endswith("num_batches_tracked")]
    if missing:
        raise AssertionError(f"randomise_ left tensors untouched: {missing}")


def build_random_reference(seed: int = 0) -> Tuple[nn.Module, Dict[str, np.ndarray]]:
    """The reference ``sam_model_registry["vit_t"]()`` with all weights randomised (seeded).

    Returns (ref_sam, state_dict_numpy): the reference in eval mode and its state dict as
    NumPy arrays (float32, int64 for the BatchNorm counters) to load into mobile_sam_c.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ref_sam_model_registry["vit_t"]()
    randomise_(ref, seed)
    # TinyViT's Attention caches its bias table `ab` when eval() is called: refresh it now that
    # attention_biases changed, or the reference would still use the zero biases.
    ref.eval()
    for mod in ref.modules():
        if isinstance(mod, _TinyViTAttention):
            assert torch.equal(mod.ab, mod.attention_biases[:, mod.attention_bias_idxs])
    sd = {k: v.detach().cpu().numpy().copy() for k, v in ref.state_dict().items()}
    return ref, sd


def reference_predictor(ref: nn.Module) -> RefSamPredictor:
    return RefSamPredictor(ref)


def get_preprocess_shape(h: int, w: int) -> Tuple[int, int]:
    return RefResizeLongestSide.get_preprocess_shape(h, w, IMG_SIZE)


@torch.no_grad()
def reference_embedding(ref: nn.Module, image: np.ndarray, image_format: str = "RGB"):
    """The reference's set_image on an HxWx3 uint8 image.

    Returns (embedding 1x256x64x64 float32 ndarray, original_size, input_size)."""
    p = reference_predictor(ref)
    p.set_image(image, image_format=image_format)
    return p.features.detach().cpu().numpy().copy(), tuple(p.original_size), tuple(p.input_size)


def set_reference_embedding(ref_pred: RefSamPredictor, embedding: np.ndarray, original_size,
                            input_size: Optional[Tuple[int, int]] = None) -> None:
    """Put a stored embedding into the reference predictor, as its set_image would leave it."""
    h, w = int(original_size[0]), int(original_size[1])
    ref_pred.reset_image()
    ref_pred.features = torch.as_tensor(np.asarray(embedding, dtype=np.float32).reshape(EMBED_SHAPE)).clone()
    ref_pred.original_size = (h, w)
    ref_pred.input_size = tuple(input_size) if input_size is not None else get_preprocess_shape(h, w)
    ref_pred.is_image_set = True


@torch.no_grad()
def reference_prompt_encoder(ref: nn.Module, points=None, boxes=None, masks=None):
    """ref.prompt_encoder on NumPy inputs (1024 frame); returns (sparse, dense) as NumPy."""
    pts = None
    if points is not None:
        pts = (torch.as_tensor(np.asarray(points[0]), dtype=torch.float),
               torch.as_tensor(np.asarray(points[1]), dtype=torch.int))
    bx = None if boxes is None else torch.as_tensor(np.asarray(boxes), dtype=torch.float)
    mk = None if masks is None else torch.as_tensor(np.asarray(masks), dtype=torch.float)
    sparse, dense = ref.prompt_encoder(points=pts, boxes=bx, masks=mk)
    return sparse.numpy().copy(), dense.contiguous().numpy().copy()


# ---------------------------------------------------------------------------------------------
# Observed maxima, per stage (printed by conftest.py's terminal summary).

OBSERVED: Dict[str, Tuple[float, str]] = {}


def record(stage: str, value: float, where: str = "") -> None:
    value = float(value)
    if stage not in OBSERVED or value > OBSERVED[stage][0] or math.isnan(value):
        OBSERVED[stage] = (value, where)


def as_np(x):
    """Our outputs as NumPy (they are NumPy on the CPU, else anything speaking DLPack)."""
    if x is None or isinstance(x, np.ndarray):
        return x
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.from_dlpack(x)


def max_abs_diff(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != reference {b.shape}"
    if a.size == 0:
        return 0.0
    d = np.abs(a - b)
    if np.isnan(d).any():
        return float("nan")
    return float(d.max())


def mask_disagreement(ours_bool, ref_logits, threshold: float = 0.0):
    """(number of disagreeing pixels, largest |reference logit| at a disagreement)."""
    ours_bool = np.asarray(ours_bool)
    ref_logits = np.asarray(ref_logits)
    assert ours_bool.shape == ref_logits.shape, f"shape {ours_bool.shape} != reference {ref_logits.shape}"
    dis = ours_bool != (ref_logits > threshold)
    n = int(dis.sum())
    worst = float(np.abs(ref_logits[dis]).max()) if n else 0.0
    return n, worst


def summary_lines() -> Iterable[str]:
    for stage in sorted(OBSERVED):
        v, where = OBSERVED[stage]
        yield f"{stage:<40s} {v:.3e}   ({where})"
