"""random_weights.py - deterministic RANDOM (not trained) MobileSAM weights for tests and benchmarks,
scaled from each tensor's name and shape so that a forward pass stays finite and well-conditioned."""
from __future__ import annotations

import zlib
from typing import Dict, Iterable, Sequence, Tuple

import numpy as np

__all__ = ["random_state_dict"]


def _module_name(name: str) -> str:
    """The owning module's own name: 'iou_token' for 'mask_decoder.iou_token.weight',
    'point_embeddings' for 'prompt_encoder.point_embeddings.0.weight'."""
    parts = name.split(".")[:-1]
    while parts and parts[-1].isdigit():
        parts.pop()
    return parts[-1] if parts else ""


def random_state_dict(spec: Iterable[Tuple[str, Sequence[int], str]], seed: int = 0) -> Dict[str, np.ndarray]:
    """Random weights for spec [(name, shape, dtype)]: RANDOM, NOT TRAINED - outputs are meaningless
    but exercise every code path with realistic magnitudes. Each tensor is drawn from
    numpy's Generator(PCG64([seed, crc32(name)])), so a value depends only on seed and name
    (not on the spec's order). Scales, chosen from names and shapes:
      * weights of >= 2 dims (Linear, Conv, ConvTranspose): N(0, 1/fan_in), fan_in = prod(shape[1:]);
      * embeddings (modules named *embed, *embeddings, *token, *tokens) and
        positional_encoding_gaussian_matrix: N(0, 1);
      * attention_biases: N(0, 0.5^2);
      * 1-D weights are norms (LayerNorm, LayerNorm2d such as neck.1, BatchNorm "bn"):
        1 + N(0, 0.1^2); their biases N(0, 0.1^2); other biases N(0, 0.02^2);
      * BatchNorm running_mean N(0, 0.1^2), running_var U(0.5, 1.5), integer tensors
        (num_batches_tracked) 0."""
    entries = [(str(n), tuple(int(s) for s in shape), np.dtype(str(dt).replace("torch.", "")))
               for n, shape, dt in spec]
    one_d_weights = {n[: -len("weight")] for n, shape, _ in entries
                     if n.endswith(".weight") and len(shape) == 1}
    out: Dict[str, np.ndarray] = {}
    for name, shape, dtype in entries:
        rng = np.random.Generator(np.random.PCG64([int(seed) & 0xFFFFFFFFFFFFFFFF,
                                                   zlib.crc32(name.encode("utf-8"))]))
        leaf = name.rsplit(".", 1)[-1]
        prefix = name[: -len(leaf)]
        if dtype.kind in "iub":
            a = np.zeros(shape, dtype=dtype)
        else:
            if leaf == "running_var":
                a = rng.uniform(0.5, 1.5, shape)
            elif leaf == "running_mean":
                a = rng.normal(0.0, 0.1, shape)
            elif leaf == "attention_biases":
                a = rng.normal(0.0, 0.5, shape)
            elif leaf == "positional_encoding_gaussian_matrix":
                a = rng.normal(0.0, 1.0, shape)
            elif leaf == "weight" and len(shape) == 1:
                a = 1.0 + rng.normal(0.0, 0.1, shape)
            elif leaf == "bias" and prefix in one_d_weights:
                a = rng.normal(0.0, 0.1, shape)
            elif leaf == "bias":
                a = rng.normal(0.0, 0.02, shape)
            elif _module_name(name).endswith(("embed", "embeddings", "token", "tokens")):
                a = rng.normal(0.0, 1.0, shape)
            elif len(shape) >= 2:
                fan_in = int(np.prod(shape[1:]))
                a = rng.normal(0.0, 1.0 / np.sqrt(max(fan_in, 1)), shape)
            else:
                a = rng.normal(0.0, 0.02, shape)
            a = np.asarray(a, dtype=dtype, order="C")
        out[name] = a
    return out
