"""Training forwards: functions ``(model, tokens) -> last-position logits``.

The training loop only ever calls a *forward* with this signature, so a faster
equivalent can replace the hooked model's own forward without touching the loop.

* :func:`hooked_forward` runs the model itself (every position, every hook point).
* :func:`fast_forward` computes the same last-position logits of a LayerNorm-free
  transformer (any number of layers) from the model's own (canonical) weights, through
  :func:`fast_logits`, which also runs ``K`` same-shaped models at once (used by
  :mod:`grok_interp.many_runs`); a single one-layer model takes the same algebra without
  the run axis (:func:`fast_logits_one`: fewer operations per step). Gradients flow to the
  same parameters, so the model stays a plain hooked transformer for analysis.

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

With ``L >= 2`` layers (:func:`_fast_logits_layers`) the query of ``"="`` is constant
only at layer 0, so the score tables above no longer apply; what stays is causality:

* position 0 attends to itself only, so its residual depends on token ``a`` alone at
  every layer: it is carried as a ``(d_vocab, d_model)`` table through all layers
  (attention ``v W_O + b_O``, then the MLP) and its keys and values are gathered per input;
* at layer 0, positions 1 and 2 are token tables and one constant row, so their queries,
  keys and values are tables too, and so is every attention score: over ``a`` (the
  ``"="`` query against position 0's key), over ``b`` (against position 1's key; position
  1's query against its own key) or over the pair (position 1's query against position
  0's key: one ``(d_vocab^2, n_heads)`` table from one batched product). Per input only
  ``n_heads`` scores per position and the values of ``a`` and ``b`` are gathered,
  instead of elementwise products and sums over ``(n, n_heads, d_head)`` arrays;
* from its attention on, each of positions 1 and 2 depends on the pair and is computed
  per input: at layers ``0 .. L-2`` (attention over positions ``0..1`` and ``0..2``,
  then the MLP of both positions as one ``(2n, d_model)`` batch), and only position 2 at
  the last layer;
* the last layer ends in :func:`~grok_interp.training.fused.mlp_logits`, now fed
  ``resid_mid`` itself (``(n, d_model)``; ``W_O`` is not folded, since ``resid_mid``
  also carries the per-input residual): ``logits = resid_mid W_U + (b_out W_U + b_U) +
  post (W_out W_U)``. The earlier layers' MLPs use it too, with the identity (no product)
  for the first map (``resid_post = resid_mid + b_out + post W_out``), so their
  activations are also processed in cache-sized chunks on CPU.

Folding ``W_out W_U`` pays while ``d_vocab_out`` is small against ``d_model``; at p =
211 (d_model 128, d_mlp 512) it costs more products than ``resid_post W_U`` after the
MLP, so both algebras take the cheaper order per shape (:func:`fold_unembed`).

At the two-layer reference setup (p = 97, 4704 pairs, no attention or unembedding
biases) a training step costs about a third of the hooked forward's
(``benchmarks/train_step.py --layers 2``); with one layer the code above runs unchanged.
The score tables and the unfolded unembedding are measured against an earlier revision
of this file by ``benchmarks/forward_ab.py``.
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
from ..models import ACTIVATIONS, MLPBaseline, weights
from .fused import PAD, mlp_logits, mlp_logits_one

__all__ = [
    "hooked_forward",
    "fast_forward",
    "mlp_fast_forward",
    "compiled_forward",
    "fast_logits",
    "fast_logits_one",
    "fast_unsupported_reason",
    "select_forward",
    "Forward",
    "FAST_WEIGHTS",
    "fast_weight_names",
    "fold_unembed",
]

log = logging.getLogger(__name__)

Forward = Callable[[nn.Module, Tensor], Tensor]

# The canonical weights :func:`fast_logits` reads for a one-layer model (more layers: fast_weight_names).
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


def fast_weight_names(n_layers: int = 1) -> tuple[str, ...]:
    """The canonical weights :func:`fast_logits` reads for an ``n_layers``-layer model.

    ``fast_weight_names(1) == FAST_WEIGHTS`` (same names, same order).
    """
    layers = tuple(
        name
        for l in range(n_layers)
        for name in (
            *(f"blocks.{l}.attn.{w}_{x}" for w in ("W", "b") for x in "QKVO"),
            f"blocks.{l}.mlp.W_in", f"blocks.{l}.mlp.b_in", f"blocks.{l}.mlp.W_out", f"blocks.{l}.mlp.b_out",
        )
    )
    return ("embed.W_E", "pos_embed.W_pos", *layers, "unembed.W_U", "unembed.b_U")


def _layers_in(w: dict[str, Tensor]) -> int:
    """How many layers' weights ``w`` holds."""
    n = 0
    while f"blocks.{n}.attn.W_Q" in w:
        n += 1
    return n


def _gather(table: Tensor, index: Tensor) -> Tensor:
    """``table[k, index[k, ...]]`` for a ``(K, V, C)`` table and ``(K, ...)`` indices: ``(K, ..., C)``."""
    K, V, C = table.shape
    offsets = (torch.arange(K, device=index.device) * V).reshape(K, *[1] * (index.dim() - 1))
    return F.embedding(index + offsets, table.reshape(K * V, C))


def fold_unembed(C: int, d_model: int, d_mlp: int, d_vocab_out: int, identity: bool = False) -> bool:
    """Whether the last MLP's output map is folded into the unembedding.

    The last layer ends in ``logits = x W_U + post W_out W_U`` with ``x = z A`` (``A`` a
    ``(C, d_model)`` map: ``W_O`` in the one-layer algebra, where ``z`` is the heads'
    mixed values; the identity in the deeper one, where ``z`` is ``resid_mid``). Folded,
    each input costs the products ``z (A W_U)`` and ``post (W_out W_U)``: ``(C + d_mlp)
    V`` multiply-adds, ``V`` the output width padded as :mod:`~grok_interp.training.fused`
    pads it. Unfolded, ``resid_post = z A + post W_out`` then ``resid_post W_U``: ``C
    d_model`` (nothing for the identity) ``+ d_mlp d_model + d_model V``. Folding wins
    while ``V`` is small against ``d_model`` (p = 113 at d_model 128); at p = 211 the
    unfolded products are about a quarter fewer. Both give the same logits within float
    rounding.
    """
    V = -(-d_vocab_out // PAD) * PAD
    folded = (C + d_mlp) * V
    unfolded = (0 if identity else C * d_model) + d_mlp * d_model + d_model * V
    return folded <= unfolded


def _fast_logits_layers(
    w: dict[str, Tensor], tokens: Tensor, act_fn: str, fused: bool, n_layers: int
) -> Tensor:
    """:func:`fast_logits` for ``n_layers >= 2`` (see the module docstring)."""
    W_E, W_pos = w["embed.W_E"], w["pos_embed.W_pos"]
    K, V, d = W_E.shape
    H, dh = w["blocks.0.attn.W_Q"].shape[1], w["blocks.0.attn.W_Q"].shape[3]
    HD = H * dh
    n = tokens.shape[1]
    runs = torch.arange(K, device=tokens.device)
    act = ACTIVATIONS[act_fn]
    scale = dh**-0.5
    a, b = tokens[:, :, 0], tokens[:, :, 1]

    def proj(x: Tensor, W: Tensor, bias: Tensor) -> Tensor:
        """``x @ W + bias`` per head: ``(K, rows, d)``, ``W (K, H, d, e)`` -> ``(K, rows, H, e)``."""
        e = W.shape[3]
        out = torch.baddbmm(bias.reshape(K, 1, H * e), x, W.permute(0, 2, 1, 3).reshape(K, d, H * e))
        return out.reshape(K, x.shape[1], H, e)

    def score(q: Tensor, k: Tensor) -> Tensor:
        return (q * k).sum(-1) * scale  # (K, rows, H)

    def mix(scores: list[Tensor], values: list[Tensor]) -> Tensor:
        """Softmax over the positions' scores, then the weighted values: ``(K, n, H * dh)``."""
        pattern = torch.softmax(torch.stack(torch.broadcast_tensors(*scores), dim=-1), dim=-1)  # (K, n, H, P)
        z = pattern[..., 0, None] * values[0]
        for i in range(1, len(values)):
            z = z + pattern[..., i, None] * values[i]
        return z.reshape(K, -1, HD)

    def mlp(l: int, x: Tensor) -> Tensor:
        pre = torch.baddbmm(w[f"blocks.{l}.mlp.b_in"][:, None], x, w[f"blocks.{l}.mlp.W_in"])
        return torch.baddbmm(w[f"blocks.{l}.mlp.b_out"][:, None], act(pre), w[f"blocks.{l}.mlp.W_out"])

    # Residual streams entering layer 0: position 0 and 1 as tables over the vocabulary
    # (one token each), position 2 ("=") one row per run.
    x0 = W_E + W_pos[:, 0, None]  # (K, V, d): position 0, by token a, at every layer
    x1 = W_E + W_pos[:, 1, None]  # (K, V, d) at layer 0, then (K, n, d) per input
    x2 = (W_E[runs, tokens[:, 0, 2]] + W_pos[:, 2])[:, None]  # (K, 1, d) at layer 0, then (K, n, d)
    for l in range(n_layers):
        W_Q, W_K, W_V = (w[f"blocks.{l}.attn.W_{x}"] for x in "QKV")
        b_Q, b_K, b_V = (w[f"blocks.{l}.attn.b_{x}"] for x in "QKV")
        W_O, b_O = w[f"blocks.{l}.attn.W_O"].reshape(K, HD, d), w[f"blocks.{l}.attn.b_O"]
        last = l == n_layers - 1
        # Queries, keys and values in one product per position: per head [W_Q | W_K | W_V]
        # (keys and values alone: its last 2 d_head columns).
        qkv_W, qkv_b = torch.cat([W_Q, W_K, W_V], dim=3), torch.cat([b_Q, b_K, b_V], dim=2)
        kv_W, kv_b = qkv_W[..., dh:], qkv_b[..., dh:]
        kv0 = proj(x0, kv_W, kv_b)  # (K, V, H, 2dh)
        q2, k2, v2 = proj(x2, qkv_W, qkv_b).split(dh, dim=-1)
        if l == 0:
            # Every query, key and value is a table over one token (or the one "=" row),
            # so every score is a table too: over a, over b, or over the pair (b, a) for
            # position 1's query against position 0's key (V^2 rows, computed in
            # a batched product, where per input it would be elementwise products and
            # sums over (n, H, d_head) arrays). Per input only the scores (H numbers per
            # position) and the values a and b select are gathered.
            k0, v0 = kv0.split(dh, dim=-1)  # (K, V, H, dh) by a
            q1, k1, v1 = proj(x1, qkv_W, qkv_b).split(dh, dim=-1)  # by b
            s10 = torch.einsum("kbhe,kahe->kbah", q1, k0).reshape(K, V * V, H) * scale
            tables = torch.cat([score(q2, k0), score(q2, k1), score(q1, k1), s10], dim=1)  # (K, 3V + V^2, H)
            s20, s21, s11, s10 = _gather(tables, torch.stack([a, V + b, 2 * V + b, 3 * V + b * V + a], dim=2)).unbind(2)
            v0, v1 = _gather(torch.cat([v0, v1], dim=1).reshape(K, 2 * V, HD),
                             torch.stack([a, V + b], dim=2)).reshape(K, n, 2, H, dh).unbind(2)
            z2 = mix([s20, s21, score(q2, k2)], [v0, v1, v2])
            z1 = mix([s10, s11], [v0, v1])
            x1 = _gather(x1, b)
        else:
            # Position 0 (a table): keys and values gathered per input; positions 1 and
            # 2 per input (the last layer needs no query at position 1).
            k0, v0 = _gather(kv0.reshape(K, V, 2 * HD), a).reshape(K, n, H, 2 * dh).split(dh, dim=-1)
            if last:
                k1, v1 = proj(x1, kv_W, kv_b).split(dh, dim=-1)
            else:
                q1, k1, v1 = proj(x1, qkv_W, qkv_b).split(dh, dim=-1)
                z1 = mix([score(q1, k0), score(q1, k1)], [v0, v1])
            z2 = mix([score(q2, k0), score(q2, k1), score(q2, k2)], [v0, v1, v2])
        mid2 = torch.baddbmm(x2 + b_O[:, None], z2, W_O)  # (K, n, d)
        W_in, b_in = w[f"blocks.{l}.mlp.W_in"], w[f"blocks.{l}.mlp.b_in"]
        W_out, b_out = w[f"blocks.{l}.mlp.W_out"], w[f"blocks.{l}.mlp.b_out"]
        if last:
            W_U, b_U = w["unembed.W_U"], w["unembed.b_U"]
            if fold_unembed(d, d, W_in.shape[2], W_U.shape[2], identity=True):
                a_U = torch.baddbmm(b_U[:, None], b_out[:, None], W_U)[:, 0]  # (K, d_vocab_out)
                return mlp_logits(mid2, W_in, b_in, W_U, a_U, W_out @ W_U, act_fn, fused=fused)
            post2 = mlp_logits(mid2, W_in, b_in, None, b_out, W_out, act_fn, fused=fused)  # resid_post
            return torch.baddbmm(b_U[:, None], post2, W_U)
        mid1 = torch.baddbmm(x1 + b_O[:, None], z1, W_O)
        mid12 = torch.cat([mid1, mid2], dim=1)  # (K, 2n, d): one MLP product for both positions
        # resid_post = mid + b_out + act(mid @ W_in + b_in) @ W_out: the fused MLP's form
        # with the identity (None) for its first map.
        post12 = mlp_logits(mid12, W_in, b_in, None, b_out, W_out, act_fn, fused=fused)
        x1, x2 = post12[:, :n], post12[:, n:]
        # Position 0 attends only to itself.
        mid0 = torch.baddbmm(x0 + b_O[:, None], kv0[..., dh:].reshape(K, V, HD), W_O)
        x0 = mid0 + mlp(l, mid0)
    raise AssertionError("unreachable")


def hooked_forward(model: nn.Module, tokens: Int[Tensor, "batch 3"]) -> Float[Tensor, "batch d_vocab_out"]:
    """Last-position logits from the model's own forward."""
    return model(tokens)[:, -1]


def fast_unsupported_reason(cfg: ModelConfig) -> str | None:
    """Why :func:`fast_forward` cannot run this architecture (None when it can)."""
    if cfg.arch != "transformer":
        return f"arch={cfg.arch!r} (the fast forward is for transformers)"
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
    """Last-position logits of ``K`` same-shaped LayerNorm-free transformers at once.

    ``w`` maps each name of :func:`fast_weight_names` (``n_layers``; :data:`FAST_WEIGHTS`
    for one layer) to that weight of every run stacked on a leading ``run`` axis
    (``embed.W_E`` is ``(K, d_vocab, d_model)``, ...); the number of layers is read from
    the names present (one layer: the original one-layer algebra; more: per-input
    positions 1 and 2 through the earlier layers, see the module docstring). Run ``k``
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
    n_layers = _layers_in(w)
    if n_layers != 1:
        return _fast_logits_layers(w, tokens, act_fn, fused, n_layers)
    W_E, W_pos, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, W_in, b_in, W_out, b_out, W_U, b_U = (
        w[k] for k in FAST_WEIGHTS)
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
    if fold_unembed(H * dh, d, W_in.shape[2], W_U.shape[2]):
        a_U = torch.baddbmm(b_U[:, None], x0 + b_out[:, None], W_U)[:, 0]  # (K, d_vocab_out)
        return mlp_logits(z, W_Oflat @ W_in, a_in, W_Oflat @ W_U, a_U, W_out @ W_U, act_fn, fused=fused)
    resid = mlp_logits(z, W_Oflat @ W_in, a_in, W_Oflat, (x0 + b_out[:, None])[:, 0], W_out, act_fn, fused=fused)
    return torch.baddbmm(b_U[:, None], resid, W_U)


def fast_logits_one(w: dict[str, Tensor], tokens: Tensor, act_fn: str = "relu", fused: bool = True) -> Tensor:
    """:func:`fast_logits`'s one-layer algebra for a single model: unstacked weights,
    ``tokens (n, 3)``, logits ``(n, d_vocab_out)``.

    The same products as the stacked version, written with plain matrix products: a
    training step's forward and backward then dispatch about a fifth fewer operations
    (no run axis to add to sixteen weights and take off again, no ``einsum``
    reshapes), which is about 3 % of a one-thread p = 113 step. Equal to
    ``fast_logits`` on a run axis of length one within float rounding
    (``tests/training/test_forwards.py``).
    """
    W_E, W_pos, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, W_in, b_in, W_out, b_out, W_U, b_U = (
        w[k] for k in FAST_WEIGHTS)
    V, d = W_E.shape
    H, dh = W_Q.shape[0], W_Q.shape[2]
    n = tokens.shape[0]
    scale = dh**-0.5
    x_eq = W_E[tokens[0, 2]] + W_pos[2]  # (d,): the last position's residual
    q = torch.matmul(x_eq, W_Q) + b_Q  # (H, dh)
    qk = torch.matmul(W_K, q[:, :, None]).squeeze(-1).T * scale  # (d, H): score = x @ qk + sb
    sb = (b_K * q).sum(-1) * scale  # (H,)
    M = torch.cat([qk, W_V.transpose(0, 1).reshape(d, H * dh)], dim=1)  # (d, C)
    bias = torch.cat([sb, b_V.reshape(H * dh)])
    resid = torch.cat([W_E + W_pos[0], W_E + W_pos[1], x_eq[None]], dim=0)
    tables = torch.addmm(bias, resid, M)  # (2V + 1, C): rows of pos 0, pos 1, then "="
    offsets = torch.tensor([0, V], device=tokens.device)
    rows = F.embedding(tokens[:, :2] + offsets, tables)  # (n, 2, C)
    score_ab, v_ab = rows.split([H, H * dh], dim=-1)
    score_eq, v_eq = tables[-1].split([H, H * dh])
    pattern = torch.softmax(torch.cat([score_ab, score_eq.expand(n, 1, H)], dim=1), dim=1)  # (n, 3, H)
    z = (pattern[:, :2, :, None] * v_ab.reshape(n, 2, H, dh)).sum(1)
    z = (z + pattern[:, 2, :, None] * v_eq.reshape(H, dh)).reshape(n, H * dh)
    W_Oflat = W_O.reshape(H * dh, d)
    x0 = x_eq + b_O  # resid_mid = x0 + z @ W_O
    a_in = torch.addmv(b_in, W_in.T, x0)  # pre = z @ A_in + a_in
    if fold_unembed(H * dh, d, W_in.shape[1], W_U.shape[1]):
        a_U = torch.addmv(b_U, W_U.T, x0 + b_out)
        return mlp_logits_one(z, W_Oflat @ W_in, a_in, W_Oflat @ W_U, a_U, W_out @ W_U, act_fn, fused=fused)
    resid = mlp_logits_one(z, W_Oflat @ W_in, a_in, W_Oflat, x0 + b_out, W_out, act_fn, fused=fused)
    return torch.addmm(b_U, resid, W_U)


def fast_forward(model: nn.Module, tokens: Int[Tensor, "batch 3"]) -> Float[Tensor, "batch d_vocab_out"]:
    """Last-position logits of a LayerNorm-free transformer, any number of layers (see :func:`fast_logits`).

    Equal to ``model(tokens)[:, -1]`` within float rounding (tested for every option
    the factory supports, and 2 and 3 layers). Assumes every sequence ends in the same
    token (``"="``). One-layer models run :func:`fast_logits_one` (the same algebra
    without the run axis).
    """
    w = weights(model)
    if model.cfg.n_layers == 1:
        return fast_logits_one(w, tokens, model.cfg.act_fn)
    return fast_logits({k: w[k][None] for k in fast_weight_names(model.cfg.n_layers)}, tokens[None], model.cfg.act_fn)[0]


def mlp_fast_forward(model: MLPBaseline, tokens: Int[Tensor, "batch 3"]) -> Float[Tensor, "batch d_vocab_out"]:
    """Logits of the MLP baseline (:class:`grok_interp.models.MLPBaseline`) with its first
    layer read from per-token tables.

    The first layer's input is the concatenation ``[E[a], E[b]]`` (or ``[E[a], E[b],
    E[=]]``), so its pre-activation is ``sum_i E[t_i] W1_i + b1`` with ``W1_i`` the rows of
    ``W1`` that input ``i`` meets: one ``(d_vocab, d_mlp)`` table ``E W1_i`` per input,
    gathered per pair. That replaces the ``(n, n_inputs d_model) x (.., d_mlp)`` product
    and its two backward products (a third of the step's FLOPs at d_model 128, d_mlp
    512) by gathers and a scatter-add, and the tables cost ``d_vocab`` rows instead of
    ``n``. The rest is the model's own algebra with fused biases. Equal to
    ``model(tokens)[:, -1]`` within float rounding (``tests/training/test_forwards.py``);
    gradients reach the same parameters (none reaches a frozen embedding).
    """
    E, W1 = model.embed.W_E, model.hidden1.W
    d = E.shape[1]
    act = ACTIVATIONS[model.hidden1.act]
    pre = model.hidden1.b
    for i in range(model.n_inputs):
        pre = pre + F.embedding(tokens[:, i], E @ W1[i * d:(i + 1) * d])
    hidden = act(torch.addmm(model.hidden2.b, act(pre), model.hidden2.W))
    return torch.addmm(model.unembed.b_U, hidden, model.unembed.W_U)


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
    Only one-layer models are compiled; deeper ones run the eager fast forward.
    """
    fn = _compiled_fast_logits() if torch.is_grad_enabled() and model.cfg.n_layers == 1 else None
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
    """Pick the training forward: ``fast`` where supported (``auto``; for the MLP baseline
    :func:`mlp_fast_forward`), else ``hooked``.

    ``compile`` is the fast forward through ``torch.compile`` (:func:`compiled_forward`).
    Returns the function and its name. ``choice="fast"`` or ``"compile"`` on an
    unsupported architecture raises ``ValueError`` saying why; ``auto`` falls back and
    logs why.
    """
    reason = fast_unsupported_reason(cfg)
    if choice == "hooked":
        return hooked_forward, "hooked"
    if cfg.arch == "mlp" and choice in ("auto", "fast"):
        return mlp_fast_forward, "fast"
    if reason is None:
        return (compiled_forward, "compile") if choice == "compile" else (fast_forward, "fast")
    if choice in ("fast", "compile"):
        raise bad_value("forward", choice, f"this model has no such forward ({reason}); use 'auto' or 'hooked'")
    log.info("training with the hooked forward: %s", reason)
    return hooked_forward, "hooked"
