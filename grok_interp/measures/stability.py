"""Numerical-stability measures of Prieto et al. (2025), "Grokking at the edge of
numerical stability".

Past memorisation, cross-entropy keeps pushing the training logits apart. In float32
the softmax of a confident enough pair rounds to exactly one-hot (*softmax collapse*):
its loss is exactly zero and it sends no gradient; the gradient that is left aligns
with *naive loss minimisation* (NLM), the direction that only scales the logits. These
measures follow that, on the training pairs, and can be recorded through training like
any other (``train_hooked(..., record=["stability"])``)::

    sc_fraction         share of training pairs whose loss, computed in ``dtype``, is exactly 0
    zero_grad_fraction  share of the gradient's entries (all trainable parameters) exactly 0
    nlm_cosine          cos(-grad, theta): for a positively homogeneous network (no biases,
                        ReLU, no LayerNorm) theta is the direction that scales the logits,
                        so 1 means the gradient only scales them (``scope="unembed"``: the
                        unembedding alone, the direction that scales the logits exactly)
    logit_scale         mean over training pairs of the largest absolute logit

The loss is the mean cross-entropy of the model's float32 logits cast to ``dtype``
(``float16``, ``float32`` or ``float64``); :func:`per_sample_loss` gives each pair's.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from .._validate import bad_value, check_choice
from ..protocols import TaskRun, as_task_split
from ..tasks import Split, Task
from ._probe import fits

__all__ = ["DTYPES", "per_sample_loss", "stability"]

#: The precisions a loss can be computed in.
DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}


def per_sample_loss(
    logits: Float[Tensor, "n classes"], labels: Int[Tensor, " n"], dtype: str = "float32"
) -> Float[Tensor, " n"]:
    """Each pair's cross-entropy ``-log_softmax(logits)[label]``, computed in ``dtype``.

    Example:
        >>> per_sample_loss(torch.tensor([[0.0, 20.0]]), torch.tensor([1]), "float32").item() == 0  # collapsed
        True
        >>> per_sample_loss(torch.tensor([[0.0, 20.0]]), torch.tensor([1]), "float64").item() > 0
        True
    """
    check_choice("dtype", dtype, tuple(DTYPES))
    logp = torch.log_softmax(logits.to(DTYPES[dtype]), dim=-1)
    return -logp.gather(-1, labels[:, None].to(logits.device)).squeeze(-1)


def stability(
    model: nn.Module,
    data: TaskRun | Split | Task | int,
    *,
    dtype: str = "float32",
    scope: str = "all",
) -> dict[str, float]:
    """Softmax collapse, zero gradients, NLM alignment and logit scale on the training pairs.

    Args:
        model: A hooked model (its parameters' ``.grad`` are left untouched).
        data: A Split or run (its training pairs); a bare Task uses every valid pair.
        dtype: Precision of the loss: ``float32`` (the training default where collapse
            happens), ``float16`` or ``float64``.
        scope: ``all`` (NLM direction = every trainable parameter) or ``unembed``
            (``W_U``, ``b_U``: the direction that scales the logits exactly).

    Returns:
        ``{"sc_fraction", "zero_grad_fraction", "nlm_cosine", "logit_scale"}``.
    """
    check_choice("dtype", dtype, tuple(DTYPES))
    check_choice("scope", scope, ("all", "unembed"))
    task, split = as_task_split(data, "data")
    fits(model, task)
    pairs = split.train_pairs if split is not None else task.all_pairs()
    if len(pairs) == 0:
        raise bad_value("data", "split", "has no training pairs")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise bad_value("model", type(model).__name__, "has no trainable parameters")
    device = named[0][1].device
    tokens, labels = task.tokens(pairs).to(device), task.answers(pairs).to(device)
    with torch.enable_grad():
        logits = model(tokens)[:, -1]
        losses = per_sample_loss(logits, labels, dtype)
        grads = torch.autograd.grad(losses.mean(), [p for _, p in named], allow_unused=True)
    zero = total = 0
    dot = g_sq = d_sq = 0.0
    for (name, p), g in zip(named, grads):
        g = torch.zeros_like(p) if g is None else g
        zero += int((g == 0).sum())
        total += g.numel()
        in_scope = scope == "all" or "unembed" in name
        g64 = g.detach().double()
        g_sq += float(g64.pow(2).sum())
        if in_scope:
            d = p.detach().double()
            dot += float((-g64 * d).sum())
            d_sq += float(d.pow(2).sum())
    denom = math.sqrt(g_sq * d_sq)
    return {
        "sc_fraction": float((losses.detach() == 0).double().mean()),
        "zero_grad_fraction": zero / total,
        "nlm_cosine": dot / denom if denom > 0 else math.nan,
        "logit_scale": float(logits.detach().abs().amax(-1).double().mean()),
    }
