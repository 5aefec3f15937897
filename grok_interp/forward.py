"""Training forwards: functions ``(model, tokens) -> last-position logits``.

The training loop only ever calls a *forward* with this signature, so a faster
equivalent can replace the hooked model's own forward without touching the loop.

* :func:`hooked_forward` runs the model itself (every position, every hook point).
* :func:`fast_forward` computes the same last-position logits of a one-layer,
  LayerNorm-free transformer from the model's own (canonical) weights. Keys, values
  and value-output products at positions 0 and 1 depend on one token each, and the
  last position's query is the same for every input (``"="`` plus its position), so
  they are computed once per call as ``(d_vocab, ...)`` tables and gathered; only the
  MLP and the unembedding run per input. Gradients flow to the same parameters, so
  the model stays a plain hooked transformer for analysis.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from .config import ModelConfig
from .models import ACTIVATIONS, weights

__all__ = ["hooked_forward", "fast_forward", "fast_unsupported_reason", "select_forward", "Forward"]

log = logging.getLogger(__name__)

Forward = Callable[[nn.Module, Tensor], Tensor]


def hooked_forward(model: nn.Module, tokens: Int[Tensor, "batch 3"]) -> Float[Tensor, "batch d_vocab_out"]:
    """Last-position logits from the model's own forward."""
    return model(tokens)[:, -1]


def fast_unsupported_reason(cfg: ModelConfig) -> str | None:
    """Why :func:`fast_forward` cannot run this architecture (None when it can)."""
    if cfg.arch != "transformer":
        return f"arch={cfg.arch!r} (the fast forward is for transformers)"
    if cfg.n_layers != 1:
        return f"n_layers={cfg.n_layers} (the fast forward covers one layer)"
    if cfg.normalization is not None:
        return f"normalization={cfg.normalization!r} (the fast forward covers models without LayerNorm)"
    if cfg.act_fn not in ACTIVATIONS:
        return f"act_fn={cfg.act_fn!r}"
    return None


def fast_forward(model: nn.Module, tokens: Int[Tensor, "batch 3"]) -> Float[Tensor, "batch d_vocab_out"]:
    """Last-position logits of a one-layer, LayerNorm-free transformer, from tables.

    Equal to ``model(tokens)[:, -1]`` within float rounding (tested for every option
    the factory supports). Assumes every sequence ends in the same token (``"="``).
    """
    w = weights(model)
    W_E, W_pos = w["embed.W_E"], w["pos_embed.W_pos"]
    W_Q, W_K, W_V, W_O = (w[f"blocks.0.attn.W_{x}"] for x in "QKVO")
    b_Q, b_K, b_V, b_O = (w[f"blocks.0.attn.b_{x}"] for x in "QKVO")
    W_in, b_in, W_out, b_out = (w[f"blocks.0.mlp.{x}"] for x in ("W_in", "b_in", "W_out", "b_out"))
    W_U, b_U = w["unembed.W_U"], w["unembed.b_U"]
    act = ACTIVATIONS[model.cfg.act_fn]
    d_head = W_Q.shape[-1]

    x_eq = W_E[tokens[0, 2]] + W_pos[2]  # (d_model,) the last position's residual
    q = torch.einsum("d,hde->he", x_eq, W_Q) + b_Q  # (H, d_head)
    n_vocab, n_heads = W_E.shape[0], W_Q.shape[0]
    # Per-position tables over the vocabulary (score, value-output rows), gathered per
    # input with one-hot matmuls: dense GEMMs forward and backward, unlike index_put.
    scores, vo = [], []
    for pos in (0, 1):
        resid = W_E + W_pos[pos]  # (V, d_model)
        k = torch.einsum("vd,hde->vhe", resid, W_K) + b_K  # (V, H, d_head)
        v = torch.einsum("vd,hde->vhe", resid, W_V) + b_V
        table = torch.cat([(k * q).sum(-1), torch.einsum("vhe,hed->vhd", v, W_O).reshape(n_vocab, -1)], dim=1)
        rows = F.one_hot(tokens[:, pos], n_vocab).to(table.dtype) @ table  # (n, H + H*d_model)
        scores.append(rows[:, :n_heads])
        vo.append(rows[:, n_heads:].reshape(len(tokens), n_heads, -1))  # (n, H, d_model)
    k2 = torch.einsum("d,hde->he", x_eq, W_K) + b_K
    v2 = torch.einsum("d,hde->he", x_eq, W_V) + b_V
    scores.append((k2 * q).sum(-1).expand_as(scores[0]))
    pattern = torch.softmax(torch.stack(scores, dim=-1) / d_head**0.5, dim=-1)  # (n, H, 3)
    vo2 = torch.einsum("he,hed->hd", v2, W_O)  # (H, d_model)
    attn_out = (
        (pattern[..., 0, None] * vo[0]).sum(1)
        + (pattern[..., 1, None] * vo[1]).sum(1)
        + pattern[..., 2] @ vo2
        + b_O
    )
    resid_mid = x_eq + attn_out
    post = act(resid_mid @ W_in + b_in)
    return (resid_mid + post @ W_out + b_out) @ W_U + b_U


def select_forward(cfg: ModelConfig, choice: str = "auto") -> tuple[Forward, str]:
    """Pick the training forward: ``fast`` where supported (``auto``), else ``hooked``.

    Returns the function and its name. ``choice="fast"`` on an unsupported
    architecture raises ``ValueError`` saying why; ``auto`` falls back and logs why.
    """
    reason = fast_unsupported_reason(cfg)
    if choice == "hooked":
        return hooked_forward, "hooked"
    if reason is None:
        return fast_forward, "fast"
    if choice == "fast":
        raise ValueError(f"forward='fast' is invalid for this model: {reason}; use 'auto' or 'hooked'")
    log.info("training with the hooked forward: %s", reason)
    return hooked_forward, "hooked"
