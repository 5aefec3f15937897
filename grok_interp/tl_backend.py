"""The one module that imports TransformerLens; every other module goes through it.

TransformerLens 3.x offers ``HookedTransformer`` (deprecated there) and 4.x removed it;
both offer ``TransformerBridge.boot_native`` for small from-scratch models, with the same
hook names and weight accessors but different parameter names and state-dict layouts.
This module hides that difference behind *canonical weights*: a dict in the
``HookedTransformer`` layout (``embed.W_E`` ``(d_vocab, d_model)``,
``blocks.0.attn.W_Q`` ``(n_heads, d_model, d_head)``, ``unembed.W_U``
``(d_model, d_vocab_out)``, ...), read from and written to either backend. Runs are
saved in that layout, so a run trained under one backend loads under the other.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
import warnings
from importlib.metadata import version
from typing import Callable

import torch
from torch import Tensor, nn

from transformer_lens.config import TransformerBridgeConfig
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint
from transformer_lens.model_bridge import TransformerBridge

try:  # removed in TransformerLens 4.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformer_lens import HookedTransformer, HookedTransformerConfig
except ImportError:  # pragma: no cover - depends on the installed TransformerLens
    HookedTransformer = None  # type: ignore[assignment,misc]
    HookedTransformerConfig = None  # type: ignore[assignment,misc]

from ._validate import bad_value
from .errors import GrokInterpError

#: Held while a model is built or moved: building swaps process-wide state out and back
#: (``sys.stdout``, which TransformerLens prints to; the warnings filters; torch's global
#: generator, seeded for the weights). Two threads doing that at once restore each
#: other's stand-ins: stdout stays swallowed for the rest of the process, and one model
#: draws its weights from the other's seed. With the lock, models built in threads equal
#: models built one after another (``tests/test_models.py``).
BUILD_LOCK = threading.RLock()

__all__ = [
    "BUILD_LOCK",
    "TL_VERSION",
    "HAS_HOOKED_TRANSFORMER",
    "HookedRootModule",
    "HookPoint",
    "resolve_backend",
    "backend_of",
    "build_transformer",
    "canonical_weights",
    "load_canonical",
    "canonical_parameters",
    "canonical_state_dict",
]

TL_VERSION: str = version("transformer-lens")
HAS_HOOKED_TRANSFORMER: bool = HookedTransformer is not None


def resolve_backend(backend: str) -> str:
    """Map ``auto`` to ``hooked`` (TransformerLens 3) or ``bridge`` (4); check the rest."""
    if backend == "auto":
        return "hooked" if HAS_HOOKED_TRANSFORMER else "bridge"
    if backend == "hooked" and not HAS_HOOKED_TRANSFORMER:
        raise bad_value(
            "backend", backend, f"HookedTransformer is not in TransformerLens {TL_VERSION}; use 'bridge' or 'auto'"
        )
    if backend not in ("hooked", "bridge"):
        raise bad_value("backend", backend, "must be one of 'auto', 'hooked', 'bridge'")
    return backend


def backend_of(model: nn.Module) -> str:
    """``hooked`` or ``bridge`` for a transformer built here (``other`` otherwise)."""
    if isinstance(model, TransformerBridge):
        return "bridge"
    if HookedTransformer is not None and isinstance(model, HookedTransformer):
        return "hooked"
    return "other"


def build_transformer(
    *,
    backend: str,
    n_layers: int,
    n_heads: int,
    d_model: int,
    d_head: int,
    d_mlp: int,
    d_vocab: int,
    d_vocab_out: int,
    n_ctx: int,
    act_fn: str,
    normalization: str | None,
    tl_init_seed: int | None,
) -> nn.Module:
    """Build a hooked transformer on the chosen backend.

    ``tl_init_seed`` set: TransformerLens' own initialisation with that seed. ``None``:
    the caller overwrites every weight (see :func:`load_canonical`). Either way the
    global random state (torch, numpy, ``random``) is left as it was.
    """
    backend = resolve_backend(backend)
    seed = tl_init_seed if tl_init_seed is not None else 0
    common = dict(
        n_layers=n_layers,
        n_heads=n_heads,
        d_model=d_model,
        d_head=d_head,
        d_mlp=d_mlp,
        d_vocab=d_vocab,
        d_vocab_out=d_vocab_out,
        n_ctx=n_ctx,
        act_fn=act_fn,
        normalization_type=normalization,
    )
    if backend == "hooked":
        # ``HookedTransformerConfig(seed=s)`` calls ``set_seed_everywhere(s)``: it seeds
        # torch, numpy and ``random`` for the whole session. Build without a seed instead,
        # inside a forked CPU generator seeded with ``s``: HookedTransformer initialises on
        # the CPU before any move to a device, and draws nothing before ``init_weights``
        # (which would itself re-seed with ``s``), so the weights are bit-identical to a
        # seeded build and the caller's generators are untouched.
        with BUILD_LOCK, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")
            torch.default_generator.manual_seed(seed)
            cfg = HookedTransformerConfig(init_weights=True, **common)
            model = HookedTransformer(cfg)
        model.cfg.seed = seed  # read like a seeded config; nothing re-reads it unless init_weights() is called
        return model
    # boot_native forks the RNG itself and initialises from a local torch.Generator
    # seeded with cfg.seed; the fork here also covers TransformerLens versions that do not.
    cfg = TransformerBridgeConfig(positional_embedding_type="standard", seed=seed, **common)
    with BUILD_LOCK, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")
        model = TransformerBridge.boot_native(cfg)
    # TransformerLens 4 builds the native head without a bias and stands a zero buffer
    # in for b_U; 3.9 trains it, as HookedTransformer does. Make it a parameter so the
    # same config trains the same model under every backend and version.
    head = model.unembed.original_component
    if isinstance(head, nn.Linear) and "bias" in head._buffers:
        head.bias = nn.Parameter(head._buffers.pop("bias").clone())
    return model


# --- canonical <-> bridge layout --------------------------------------------------
# Each rule: bridge state-dict key pattern, canonical name template, and the two maps.
_Rule = tuple[str, str, Callable[[Tensor, int, int], Tensor], Callable[[Tensor, int, int], Tensor]]


def _qkv_to(w: Tensor, h: int, dh: int) -> Tensor:  # (h*dh, d) -> (h, d, dh)
    return w.T.reshape(w.shape[1], h, dh).permute(1, 0, 2)


def _qkv_from(c: Tensor, h: int, dh: int) -> Tensor:  # (h, d, dh) -> (h*dh, d)
    return c.permute(1, 0, 2).reshape(c.shape[1], h * dh).T


_IDENT = (lambda w, h, dh: w, lambda c, h, dh: c)
_TRANSPOSE = (lambda w, h, dh: w.T, lambda c, h, dh: c.T)
_HEADS = (lambda b, h, dh: b.reshape(h, dh), lambda c, h, dh: c.reshape(h * dh))
_BRIDGE_RULES: list[_Rule] = [
    (r"embed\.weight", "embed.W_E", *_IDENT),
    (r"pos_embed\.weight", "pos_embed.W_pos", *_IDENT),
    (r"blocks\.(\d+)\.attn\.([qkv])\.weight", "blocks.{0}.attn.W_{1}", _qkv_to, _qkv_from),
    (r"blocks\.(\d+)\.attn\.([qkv])\.bias", "blocks.{0}.attn.b_{1}", *_HEADS),
    (
        r"blocks\.(\d+)\.attn\.o\.weight",
        "blocks.{0}.attn.W_O",
        lambda w, h, dh: w.T.reshape(h, dh, w.shape[0]),
        lambda c, h, dh: c.reshape(h * dh, c.shape[2]).T,
    ),
    (r"blocks\.(\d+)\.attn\.o\.bias", "blocks.{0}.attn.b_O", *_IDENT),
    (r"blocks\.(\d+)\.mlp\.in\.weight", "blocks.{0}.mlp.W_in", *_TRANSPOSE),
    (r"blocks\.(\d+)\.mlp\.in\.bias", "blocks.{0}.mlp.b_in", *_IDENT),
    (r"blocks\.(\d+)\.mlp\.out\.weight", "blocks.{0}.mlp.W_out", *_TRANSPOSE),
    (r"blocks\.(\d+)\.mlp\.out\.bias", "blocks.{0}.mlp.b_out", *_IDENT),
    (r"blocks\.(\d+)\.(ln[12])\.weight", "blocks.{0}.{1}.w", *_IDENT),
    (r"blocks\.(\d+)\.(ln[12])\.bias", "blocks.{0}.{1}.b", *_IDENT),
    (r"ln_final\.weight", "ln_final.w", *_IDENT),
    (r"ln_final\.bias", "ln_final.b", *_IDENT),
    (r"unembed\.weight", "unembed.W_U", *_TRANSPOSE),
    (r"unembed\.bias", "unembed.b_U", *_IDENT),
]


def _bridge_entries(model: nn.Module):
    """Yield ``(canonical name, parameter, to_canonical, from_canonical)`` for a bridge."""
    h, dh = model.cfg.n_heads, model.cfg.d_head
    for key, param in model.state_dict(keep_vars=True).items():
        if not isinstance(param, nn.Parameter):
            continue
        for pattern, template, to_c, from_c in _BRIDGE_RULES:
            m = re.fullmatch(pattern, key)
            if m:
                groups = [g.upper() if g in "qkv" else g for g in m.groups()]
                yield (
                    template.format(*groups),
                    param,
                    (lambda t, f=to_c: f(t, h, dh)),
                    (lambda t, f=from_c: f(t, h, dh)),
                )
                break
        else:  # pragma: no cover - a TransformerLens layout this module does not know
            raise RuntimeError(f"unknown TransformerBridge parameter {key!r} (TransformerLens {TL_VERSION})")


def canonical_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The backend's own ``nn.Parameter`` behind each canonical name (for freezing)."""
    if backend_of(model) == "bridge":
        return {name: param for name, param, _, _ in _bridge_entries(model)}
    return dict(model.named_parameters())


def canonical_weights(model: nn.Module) -> dict[str, Tensor]:
    """Weights in ``HookedTransformer`` layout, as differentiable views of the parameters."""
    if backend_of(model) == "bridge":
        return {name: to_c(param) for name, param, to_c, _ in _bridge_entries(model)}
    return dict(model.named_parameters())


#: Entries of a ``HookedTransformer`` state dict that are not weights: the causal mask
#: and the score that masks it. Every model builds its own, so loading skips them.
_HOOKED_BUFFERS = re.compile(r"blocks\.\d+\.attn\.(IGNORE|mask)")


def canonical_state_dict(state_dict: dict[str, Tensor], n_heads: int, d_head: int) -> dict[str, Tensor]:
    """Canonical weights from a state dict of either backend.

    A ``HookedTransformer`` state dict is canonical but for its attention buffers
    (``IGNORE``, ``mask``), which are dropped; a ``TransformerBridge`` state dict
    (``embed.weight``, ``blocks.0.attn.q.weight``, ...) is mapped to canonical names and
    layouts; canonical weights come back as they are. A key neither layout knows is
    kept, so the load that follows names it.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if _HOOKED_BUFFERS.fullmatch(key):
            continue
        for pattern, template, to_c, _ in _BRIDGE_RULES:
            m = re.fullmatch(pattern, key)
            if m:
                groups = [g.upper() if g in "qkv" else g for g in m.groups()]
                out[template.format(*groups)] = to_c(value, n_heads, d_head)
                break
        else:
            out[key] = value
    return out


@torch.no_grad()
def load_canonical(model: nn.Module, weights: dict[str, Tensor]) -> None:
    """Copy canonical weights into a model of either backend (names and shapes checked)."""
    if backend_of(model) == "bridge":
        entries = {name: (param, from_c) for name, param, _, from_c in _bridge_entries(model)}
    else:
        entries = {name: (param, lambda t: t) for name, param in model.named_parameters()}
    missing, unexpected = set(entries) - set(weights), set(weights) - set(entries)
    if missing or unexpected:
        raise GrokInterpError(
            f"weights do not fit this model: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        )
    for name, (param, from_c) in entries.items():
        value = from_c(weights[name].to(param.device, param.dtype))
        if value.shape != param.shape:
            raise GrokInterpError(f"weight {name!r} has shape {tuple(weights[name].shape)}, model expects another")
        param.copy_(value)
