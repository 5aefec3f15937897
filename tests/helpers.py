"""Shared test helpers: small tasks and runs that train in seconds."""

from __future__ import annotations

import json
import re

import torch

import grok_interp as g
from grok_interp import tl_backend

# Backends available in this TransformerLens: both under 3.x, only the bridge under 4.x.
BACKENDS = ["hooked", "bridge"] if tl_backend.HAS_HOOKED_TRANSFORMER else ["bridge"]

SMALL_MODEL = dict(d_model=32, n_heads=4, d_mlp=64)


def small_run(**overrides):
    """A p=23 run of a small transformer: about a second of training."""
    opts = dict(p=23, steps=60, eval_every=10, checkpoint_every=20, progress=False, **SMALL_MODEL)
    opts.update(overrides)
    return g.train_hooked(**opts)


def random_bias_model(backend: str, task: g.Task, shape: dict, seed: int = 0, **options) -> torch.nn.Module:
    """A model of ``shape`` (plus ``options``, which win) whose trainable biases are random
    (non-zero), so every term of a forward and its gradient is exercised."""
    model = g.models.build_model(g.ModelConfig(backend=backend, seed=seed, **{**shape, **options}), task)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, p in tl_backend.canonical_parameters(model).items():
            if p.requires_grad and name.rsplit(".", 1)[-1].startswith("b"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


def assert_grads_close(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], rel: float = 1e-5) -> None:
    """Each gradient of ``got`` equals ``ref``'s within ``rel`` of its own largest entry,
    or of 1 % of the largest gradient of all: the key bias's true gradient is 0 (it shifts
    all of a query's scores alike), so only rounding is left there, of terms as large as
    the other gradients (the hooked model names it b_K, the bridge k...bias)."""
    assert got.keys() == ref.keys()
    largest = max(r.abs().max().item() for r in ref.values())
    for k, r in ref.items():
        scale = max(r.abs().max().item(), 1e-2 * largest)
        assert (got[k] - r).abs().max().item() <= rel * scale, k


def all_tokens(task: g.Task) -> torch.Tensor:
    return task.tokens(task.all_pairs())


#: A ResNet run that trains in a second: 120 images of 16 px, width 4.
TINY_RESNET = dict(image_size=16, width=4, subset=120, batch_size=32, eval_batch_size=64, device="cpu")


# Anything a browser would fetch from the network: src/href attributes, CSS url(),
# ES module imports and dynamic imports of http(s) or protocol-relative URLs.
EXTERNAL_LOAD = re.compile(
    r"""(?:\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//)|(?:url\(\s*["']?\s*(?:https?:)?//)|"""
    r"""(?:\bimport\b[^;'"]*?["'](?:https?:)?//)|(?:\bimport\(\s*["'](?:https?:)?//)""",
    re.IGNORECASE,
)


def circuitsvis_props(local_src: str) -> dict:
    """The props circuitsvis passes to its React component, parsed from the page."""
    m = re.search(r"CircuitsVis\.render\(\s*\"[^\"]+\",\s*CircuitsVis\.AttentionHeads,\s*(\{.*\})\s*\)\s*</script>",
                  local_src, re.S)
    assert m, "no CircuitsVis.render(...) call in the widget source"
    return json.loads(m.group(1))
