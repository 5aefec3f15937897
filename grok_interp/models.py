"""Hooked models for prime-field tasks: the transformer factory and the MLP baseline.

:func:`build_model` turns a :class:`~grok_interp.config.ModelConfig` into a hooked
model for a task. Transformers come from TransformerLens (``HookedTransformer`` under
3.x, the native ``TransformerBridge`` under 4.x; see :mod:`grok_interp._tl`), so hook
names (``blocks.0.attn.hook_pattern``, ``blocks.0.mlp.hook_post``) and weight
accessors (``W_E``, ``W_Q``, ...) are the ones users know. The paper's DNN baseline is
:class:`MLPBaseline`, itself a ``HookedRootModule`` so ``run_with_cache`` works on it.

Every model maps tokens ``(batch, 3)`` to logits ``(batch, pos, p)``; the answer is
read from the last position.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from . import _tl
from ._validate import bad_value
from .errors import GrokInterpError
from .config import ModelConfig
from .tasks import Task

__all__ = ["build_model", "MLPBaseline", "weights", "backend_of", "ACTIVATIONS"]

log = logging.getLogger(__name__)

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


class _Dense(nn.Module):
    """``post = act(x @ W + b)`` with ``hook_pre`` and ``hook_post``."""

    def __init__(self, d_in: int, d_out: int, act: str) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(d_in, d_out))
        self.b = nn.Parameter(torch.zeros(d_out))
        self.act = act
        self.hook_pre = _tl.HookPoint()
        self.hook_post = _tl.HookPoint()

    def forward(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_out"]:
        pre = self.hook_pre(x @ self.W + self.b)
        return self.hook_post(ACTIVATIONS[self.act](pre))


class _Embed(nn.Module):
    def __init__(self, d_vocab: int, d_model: int) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(d_vocab, d_model))


class _Unembed(nn.Module):
    def __init__(self, d_in: int, d_vocab_out: int) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(d_in, d_vocab_out))
        self.b_U = nn.Parameter(torch.zeros(d_vocab_out))


class MLPBaseline(_tl.HookedRootModule):
    """The paper's DNN baseline: ``[E[a], E[b]] -> d_mlp -> d_mlp -> p``.

    Hook points: ``hook_embed`` (batch, 2, d_model), ``hidden1.hook_pre``,
    ``hidden1.hook_post``, ``hidden2.hook_pre``, ``hidden2.hook_post`` (batch, d_mlp).
    The ``"="`` token is ignored; logits come back as ``(batch, 1, d_vocab_out)`` so that
    ``model(tokens)[:, -1]`` reads the answer as it does for transformers.
    """

    def __init__(self, d_vocab: int, d_vocab_out: int, d_model: int = 128, d_mlp: int = 512, act_fn: str = "relu"):
        super().__init__()
        self.embed = _Embed(d_vocab, d_model)
        self.hook_embed = _tl.HookPoint()
        self.hidden1 = _Dense(2 * d_model, d_mlp, act_fn)
        self.hidden2 = _Dense(d_mlp, d_mlp, act_fn)
        self.unembed = _Unembed(d_mlp, d_vocab_out)
        self.setup()

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.embed.W_E

    @property
    def W_U(self) -> Float[Tensor, "d_mlp d_vocab_out"]:
        return self.unembed.W_U

    def forward(self, tokens: Int[Tensor, "batch 3"]) -> Float[Tensor, "batch 1 d_vocab_out"]:
        emb = self.hook_embed(self.embed.W_E[tokens[:, :2]])
        h = self.hidden2(self.hidden1(emb.flatten(1)))
        return (h @ self.unembed.W_U + self.unembed.b_U)[:, None, :]


def backend_of(model: nn.Module) -> str:
    """``hooked``, ``bridge`` or ``mlp``: which implementation a model is."""
    if isinstance(model, MLPBaseline):
        return "mlp"
    return _tl.backend_of(model)


def weights(model: nn.Module) -> dict[str, Tensor]:
    """Canonical weights (``HookedTransformer`` names and layout), differentiable views."""
    if isinstance(model, MLPBaseline):
        return dict(model.named_parameters())
    return _tl.canonical_weights(model)


def _is_weight(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith("W")


def _init_nanda(shapes: dict[str, torch.Size], cfg: ModelConfig) -> dict[str, Tensor]:
    """Every weight ~ N(0, 1/d_model), biases 0, LayerNorm gains 1 (sorted-name order)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    out = {}
    for name in sorted(shapes):
        if _is_weight(name):
            out[name] = torch.randn(shapes[name], generator=gen) / cfg.d_model**0.5
        elif name.endswith(".w"):  # LayerNorm gain
            out[name] = torch.ones(shapes[name])
        else:
            out[name] = torch.zeros(shapes[name])
    return out


def build_model(cfg: ModelConfig, task: Task, device: str | torch.device = "cpu") -> nn.Module:
    """Build and initialise the hooked model that ``cfg`` describes for ``task``.

    Args:
        cfg: Architecture, initialisation and backend.
        task: Gives ``d_vocab`` (``p + offset + 1``) and ``d_vocab_out`` (``p``).
        device: Where the parameters live.

    Returns:
        A ``HookedTransformer``, a ``TransformerBridge`` or an :class:`MLPBaseline`,
        with frozen parameters (one-hot embedding, ``pos_embed=False``,
        ``freeze_biases``) marked ``requires_grad=False``.
    """
    if cfg.embed_init == "onehot" and cfg.d_model < task.d_vocab:
        raise bad_value(
            "embed_init", "onehot", f"needs d_model >= d_vocab={task.d_vocab}, got d_model={cfg.d_model}"
        )
    if cfg.arch == "mlp":
        model: nn.Module = MLPBaseline(task.d_vocab, task.d_vocab_out, cfg.d_model, cfg.d_mlp, cfg.act_fn)
    else:
        model = _tl.build_transformer(
            backend=cfg.backend,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            d_model=cfg.d_model,
            d_head=cfg.d_head,  # type: ignore[arg-type]
            d_mlp=cfg.d_mlp,
            d_vocab=task.d_vocab,
            d_vocab_out=task.d_vocab_out,
            n_ctx=3,
            act_fn=cfg.act_fn,
            normalization=cfg.normalization,
            tl_init_seed=cfg.seed if cfg.init == "tl" else None,
        )
    current = {k: v.detach().clone() for k, v in weights(model).items()}
    new = _init_nanda({k: v.shape for k, v in current.items()}, cfg) if (cfg.init == "nanda" or cfg.arch == "mlp") else current
    w_e = new["embed.W_E"]
    if cfg.embed_init == "circulant":
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        base = torch.randn(cfg.d_model, generator=gen) / cfg.d_model**0.5
        new["embed.W_E"] = torch.stack([torch.roll(base, i) for i in range(w_e.shape[0])])
    elif cfg.embed_init == "onehot":
        new["embed.W_E"] = torch.eye(w_e.shape[0], w_e.shape[1])
    frozen = set()
    if cfg.embed_init == "onehot":
        frozen.add("embed.W_E")
    if not cfg.pos_embed and "pos_embed.W_pos" in new:
        new["pos_embed.W_pos"] = torch.zeros_like(new["pos_embed.W_pos"])
        frozen.add("pos_embed.W_pos")
    if cfg.freeze_biases:  # every bias, LayerNorm's included: names ending in .b or .b_*
        for name in new:
            if re.fullmatch(r"b(_\w+)?", name.rsplit(".", 1)[-1]):
                new[name] = torch.zeros_like(new[name])
                frozen.add(name)
    load_weights(model, new)
    params = _params(model)
    for name in frozen:
        params[name].requires_grad_(False)
    with contextlib.redirect_stdout(io.StringIO()):  # TransformerLens prints on .to()
        return model.to(device)


def _params(model: nn.Module) -> dict[str, nn.Parameter]:
    if isinstance(model, MLPBaseline):
        return dict(model.named_parameters())
    return _tl.canonical_parameters(model)


def load_weights(model: nn.Module, w: dict[str, Tensor]) -> None:
    """Copy canonical weights into ``model`` (either backend, or the MLP baseline)."""
    if isinstance(model, MLPBaseline):
        own = dict(model.named_parameters())
        if set(own) != set(w):
            raise GrokInterpError(f"weights do not fit this model: expected {sorted(own)}, got {sorted(w)}")
        with torch.no_grad():
            for k, p in own.items():
                p.copy_(w[k].to(p.device, p.dtype))
    else:
        _tl.load_canonical(model, w)
