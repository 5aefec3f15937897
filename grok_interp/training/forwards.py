"""Training forwards: functions ``(model, tokens) -> last-position logits``.

The training loop only ever calls a *forward* with this signature, so a faster
equivalent can replace the hooked model's own forward without touching the loop.

* :func:`hooked_forward` runs the model itself (every position, every hook point).
* :func:`fast_forward` computes the same last-position logits of a one-layer,
  LayerNorm-free transformer from the model's own (canonical) weights, through
  :func:`fast_logits`, which also runs ``K`` same-shaped models at once (used by
  :mod:`grok_interp.many_runs`). Gradients flow to the same parameters, so the model
  stays a plain hooked transformer for analysis.

Why it is fast. Only the answer position matters, and in a one-layer model:

* the last position's query ``q`` is the same for every input (``"="`` plus its
  position), so the attention score of a key is ``x @ (W_K q) + b_K . q``: a linear
  function of the key's residual ``x = W_E[t] + W_pos[pos]``. Scores and values of
  positions 0 and 1 depend on one token each, so they are computed once per call as
  ``(2 * d_vocab, n_heads + n_heads * d_head)`` tables and gathered per input;
* the attention output is mixed in ``d_head`` space (``z = sum_pos pattern * v``, one
  ``(n, n_heads * d_head)`` array), never as ``(n, n_heads, d_model)`` head outputs;
* linear maps are folded before they meet the batch: with ``x0 = x_eq + b_O``,
  ``resid_mid = x0 + z W_O`` and ``logits = (resid_mid + post W_out + b_out) W_U + b_U``,
  so ``pre = z (W_O W_in) + (x0 W_in + b_in)`` and
  ``logits = z (W_O W_U) + ((x0 + b_out) W_U + b_U) + post (W_out W_U)``
  (:mod:`grok_interp.training.fused` computes these three products).

Per input this leaves three matrix products, ``(n, H d_head) x (.., d_mlp)``,
``(.., d_vocab_out)`` and ``(n, d_mlp) x (d_mlp, d_vocab_out)``, instead of the
hooked model's three positions of attention, MLP and unembedding (and
``(n, d_mlp) x (d_mlp, d_model)`` then ``(n, d_model) x (d_model, d_vocab_out)``).
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from .._validate import bad_value
from ..config import ModelConfig
from ..models import ACTIVATIONS, weights
from .fused import mlp_logits

__all__ = [
    "hooked_forward",
    "fast_forward",
    "compiled_forward",
    "fast_logits",
    "fast_unsupported_reason",
    "select_forward",
    "Forward",
    "FAST_WEIGHTS",
]

log = logging.getLogger(__name__)

Forward = Callable[[nn.Module, Tensor], Tensor]

# The canonical weights :func:`fast_logits` reads (a one-layer, LayerNorm-free model).
FAST_WEIGHTS = (
    "embed.W_E",
    "pos_embed.W_pos",
    *(f"blocks.0.attn.{w}_{x}" for w in ("W", "b") for x in "QKVO"),
    "blocks.0.mlp.W_in",
    "blocks.0.mlp.b_in",
    "blocks.0.mlp.W_out",
    "blocks.0.mlp.b_out",
    "unembed.W_U",
    "unembed.b_U",
)


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


def fast_logits(
    w: dict[str, Float[Tensor, "run ..."]],
    tokens: Int[Tensor, "run batch 3"],
    act_fn: str = "relu",
    fused: bool = True,
) -> Float[Tensor, "run batch d_vocab_out"]:
    """Last-position logits of ``K`` one-layer, LayerNorm-free transformers at once.

    ``w`` maps each name of :data:`FAST_WEIGHTS` to that weight of every run stacked on
    a leading ``run`` axis (``embed.W_E`` is ``(K, d_vocab, d_model)``, ...). Run ``k``
    reads ``tokens[k]``; every sequence must end in the same ``"="`` token (the query
    is computed once per run from ``tokens[k, 0, 2]``). Equal to each model's own
    ``model(tokens[k])[:, -1]`` within float rounding; see the module docstring for the
    algebra.

    Args:
        w: Stacked canonical weights (differentiable: gradients reach them).
        tokens: ``[a, b + offset, "="]`` per input, per run.
        act_fn: MLP activation (a key of :data:`grok_interp.models.ACTIVATIONS`).
        fused: Run the MLP and unembedding through :mod:`grok_interp.training.fused`
            (chunked and padded; the default) rather than as whole-batch products.

    Returns:
        Logits at the last position, ``(K, batch, d_vocab_out)``.
    """
    W_E, W_pos = w["embed.W_E"], w["pos_embed.W_pos"]
    W_Q, W_K, W_V, W_O = (w[f"blocks.0.attn.W_{x}"] for x in "QKVO")
    b_Q, b_K, b_V, b_O = (w[f"blocks.0.attn.b_{x}"] for x in "QKVO")
    W_in, b_in = w["blocks.0.mlp.W_in"], w["blocks.0.mlp.b_in"]
    W_out, b_out = w["blocks.0.mlp.W_out"], w["blocks.0.mlp.b_out"]
    W_U, b_U = w["unembed.W_U"], w["unembed.b_U"]
    K, V, d = W_E.shape
    H, dh = W_Q.shape[1], W_Q.shape[3]
    n = tokens.shape[1]
    runs = torch.arange(K, device=tokens.device)

    # The last position: its residual, its query, and the score map it induces.
    x_eq = W_E[runs, tokens[:, 0, 2]] + W_pos[:, 2]  # (K, d)
    q = torch.einsum("kd,khde->khe", x_eq, W_Q) + b_Q  # (K, H, dh)
    scale = dh**-0.5
    qk = torch.einsum("khde,khe->kdh", W_K, q) * scale  # (K, d, H): score = x @ qk + sb
    sb = torch.einsum("khe,khe->kh", b_K, q) * scale
    # One map from a residual to [scores (H), values (H * dh)], shared by all positions.
    M = torch.cat([qk, W_V.permute(0, 2, 1, 3).reshape(K, d, H * dh)], dim=2)  # (K, d, C)
    bias = torch.cat([sb, b_V.reshape(K, H * dh)], dim=1)[:, None]  # (K, 1, C)
    resid = torch.cat([W_E + W_pos[:, 0, None], W_E + W_pos[:, 1, None], x_eq[:, None]], dim=1)
    tables = torch.baddbmm(bias, resid, M)  # (K, 2V + 1, C): rows of pos 0, pos 1, then "="
    # Gather each input's two rows: position p of run k reads row k*(2V+1) + p*V + token.
    rows_per_run = 2 * V + 1
    offsets = torch.arange(2, device=tokens.device) * V + (runs * rows_per_run)[:, None, None]
    rows = F.embedding(tokens[:, :, :2] + offsets, tables.reshape(K * rows_per_run, -1))  # (K, n, 2, C)
    score_ab, v_ab = rows.split([H, H * dh], dim=-1)
    score_eq, v_eq = tables[:, -1].split([H, H * dh], dim=-1)  # (K, H), (K, H*dh)
    pattern = torch.softmax(torch.cat([score_ab, score_eq[:, None, None].expand(K, n, 1, H)], dim=2), dim=2)
    # z: the pattern-weighted values, (K, n, H*dh).
    z = (pattern[:, :, :2, :, None] * v_ab.reshape(K, n, 2, H, dh)).sum(2)
    z = z + pattern[:, :, 2, :, None] * v_eq.reshape(K, 1, H, dh)
    z = z.reshape(K, n, H * dh)

    W_Oflat = W_O.reshape(K, H * dh, d)
    x0 = (x_eq + b_O)[:, None]  # (K, 1, d): resid_mid = x0 + z @ W_O
    a_in = torch.baddbmm(b_in[:, None], x0, W_in)[:, 0]  # (K, d_mlp): pre = z @ A_in + a_in
    a_U = torch.baddbmm(b_U[:, None], x0 + b_out[:, None], W_U)[:, 0]  # (K, d_vocab_out)
    return mlp_logits(z, W_Oflat @ W_in, a_in, W_Oflat @ W_U, a_U, W_out @ W_U, act_fn, fused=fused)


def fast_forward(model: nn.Module, tokens: Int[Tensor, "batch 3"]) -> Float[Tensor, "batch d_vocab_out"]:
    """Last-position logits of a one-layer, LayerNorm-free transformer (see :func:`fast_logits`).

    Equal to ``model(tokens)[:, -1]`` within float rounding (tested for every option
    the factory supports). Assumes every sequence ends in the same token (``"="``).
    """
    w = weights(model)
    return fast_logits({k: w[k][None] for k in FAST_WEIGHTS}, tokens[None], model.cfg.act_fn)[0]


_compiled: dict[str, Callable[..., Tensor] | None] = {}


def _compiled_fast_logits() -> Callable[..., Tensor] | None:
    """``torch.compile(fast_logits)``, or None once compiling has failed in this process."""
    if "fn" not in _compiled:
        _compiled["fn"] = torch.compile(fast_logits, dynamic=False)
    return _compiled["fn"]


def compiled_forward(model: nn.Module, tokens: Int[Tensor, "batch 3"]) -> Float[Tensor, "batch d_vocab_out"]:
    """:func:`fast_forward` compiled with ``torch.compile`` (TorchInductor) for training steps.

    Fuses the elementwise work around the matrix products: about 1.3x faster steps at
    p = 113 on CPU (``benchmarks/train_step.py``), after a one-off compilation (tens of
    seconds to minutes with a cold cache; seconds once TorchInductor's on-disk cache
    holds the graph). Gradient-free calls (the test evaluation) run the eager fast
    forward, so only one graph per training-set shape is compiled. If compilation
    fails (no C++ compiler, an unsupported platform), it logs a warning once and runs
    the eager fast forward from then on: results are the same within float rounding.
    """
    fn = _compiled_fast_logits() if torch.is_grad_enabled() else None
    if fn is None:
        return fast_forward(model, tokens)
    w = weights(model)
    stacked = {k: w[k][None] for k in FAST_WEIGHTS}
    key = ("warm", tuple(tokens.shape), str(tokens.device), model.cfg.act_fn, tuple(v.shape for v in stacked.values()))
    if key not in _compiled:
        # Compile forward *and* backward (built at the first backward) here, on copies,
        # so that a failing compiler shows up inside this try and not in loss.backward().
        try:
            probe = {k: v.detach().clone().requires_grad_(v.requires_grad) for k, v in stacked.items()}
            fn(probe, tokens[None], model.cfg.act_fn).sum().backward()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eagerly
            log.warning("torch.compile of the fast forward failed (%s: %s); using the eager fast forward",
                        type(exc).__name__, exc)
            _compiled["fn"] = None
            return fast_forward(model, tokens)
        _compiled[key] = None
    return fn(stacked, tokens[None], model.cfg.act_fn)[0]


def select_forward(cfg: ModelConfig, choice: str = "auto") -> tuple[Forward, str]:
    """Pick the training forward: ``fast`` where supported (``auto``), else ``hooked``.

    ``compile`` is the fast forward through ``torch.compile`` (:func:`compiled_forward`).
    Returns the function and its name. ``choice="fast"`` or ``"compile"`` on an
    unsupported architecture raises ``ValueError`` saying why; ``auto`` falls back and
    logs why.
    """
    reason = fast_unsupported_reason(cfg)
    if choice == "hooked":
        return hooked_forward, "hooked"
    if reason is None:
        return (compiled_forward, "compile") if choice == "compile" else (fast_forward, "fast")
    if choice in ("fast", "compile"):
        raise bad_value("forward", choice, f"this model has no such forward ({reason}); use 'auto' or 'hooked'")
    log.info("training with the hooked forward: %s", reason)
    return hooked_forward, "hooked"
