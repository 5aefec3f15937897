"""Embedding uniformity (the paper's side): MED, activation MED, uniformity statistics,
and RQI (Liu et al. 2022).

MED, the "main embedding diff", is the mean distance between the embeddings of
consecutive residues. It falls as the operand embeddings spread evenly over a smooth
low-dimensional curve (a circle, for addition), and it traces test loss.

Example:
    >>> import math, torch
    >>> p, r = 7, 2.0
    >>> theta = 2 * math.pi * torch.arange(p) / p
    >>> W_E = torch.zeros(p + 1, 4)                       # p operand tokens and "="
    >>> W_E[:p, 0], W_E[:p, 1] = r * torch.cos(theta), r * torch.sin(theta)
    >>> round(med(W_E, p), 6) == round(2 * r * math.sin(math.pi / p), 6)
    True
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from .._validate import bad_value, check_choice
from ..groups import check_cyclic_order, lacks_cyclic_order
from ..protocols import TaskRun, as_task_split
from ..tasks import Split, Task
from ._probe import last_position, as_task, embedding_matrix, fits, neuron_hook
from .representations import cayley_steps

__all__ = ["med", "MED_VARIANTS", "activation_med", "uniformity_stats", "rqi", "consecutive_distances"]


def _operands(task: Task) -> tuple[str, ...]:
    return ("a", "b") if task.offset else ("a",)


def consecutive_distances(x: Float[Tensor, "p d"], wrap: bool = True) -> Float[Tensor, " n"]:
    """``||x[i+1] - x[i]||_2`` for i = 0..p-1 with ``x[p] = x[0]`` (``wrap``), or i = 0..p-2."""
    nxt = torch.roll(x, -1, dims=0) if wrap else x[1:]
    return (nxt - x[: len(nxt)]).norm(dim=1)


def _reduce(d: Tensor, reduce: str) -> float:
    return float(d.mean() if reduce == "mean" else d.sum())


MED_VARIANTS: dict[str, str] = {
    "drop_last_avg": "mean of the p-2 steps between the tokens of residues 0..p-2, "
    "averaged over the a- and b-range (transformer/base.py:227-240)",
    "drop_last_sum": "mean of the p-2 steps between the tokens of residues 0..p-2, "
    "summed over the a- and b-range (transformer/str.py:220-235)",
    "drop_last_scaled_sum": "(p-1) x the mean of the p-2 steps between the tokens of residues 0..p-2, "
    "summed over the a- and b-range (transformer/rec.py:237-249)",
}
"""The MED variants the reference scripts compute (repository Qihuai27/Grokking-Insight).

Each script calls ``calculate_embedding_diff(W, 0, p - 1, d, d + p - 1)``: the a-range
is the tokens of residues ``0..p-2`` and the b-range ``d..d+p-2`` (residue p-1's token
is left out, so there are ``p - 2`` steps and no wrap-around). Both ranges always
count, so with ``d = 0`` the same range counts twice (the sums double). The scripts
then differ in how they combine the two range means. None of these is the library's
``wrap=False`` variant (``p - 1`` steps, residue p-1 included). Pass a name as
``med(..., variant=...)``.
"""


def _med_drop_last(W: Tensor, task: Task, variant: str) -> float:
    p, starts = task.p, (0, task.offset)
    means = []
    for start in starts:
        X = W[start : start + p - 1].double()  # tokens of residues 0..p-2
        steps = (X[1:] - X[:-1]).norm(dim=1)  # p - 2 consecutive distances
        means.append(float(steps.mean()))
    if variant == "drop_last_avg":
        return sum(means) / 2
    if variant == "drop_last_sum":
        return sum(means)
    return (p - 1) * sum(means)


@torch.no_grad()
def med(
    model: nn.Module | dict[str, Tensor] | Tensor,
    task: Task | int,
    *,
    wrap: bool = True,
    reduce: str = "mean",
    variant: str | None = None,
) -> float:
    """MED: mean distance between embeddings of consecutive residues.

    ``MED = (1/p) sum_{i=0}^{p-1} ||E[tok(i+1 mod p)] - E[tok(i)]||_2``, with ``tok(i)`` the
    operand token of residue ``i``. With an operand offset ``d > 0`` the value is the
    average over the two operand ranges (a-tokens ``i``, b-tokens ``i + d``). Evenly
    spaced points on a circle of radius ``r`` give ``2 r sin(pi / p)``.

    Args:
        model: A model, canonical weights, or ``W_E`` itself ``(d_vocab, d_model)``.
        task: The task (or a prime p, offset 0).
        wrap: Include the pair ``(p-1, 0)`` (default). ``False``: ``i = 0..p-2``, a mean
            over ``p - 1`` distances (an open chain; not what any reference script does).
        reduce: ``mean`` (default) or ``sum`` (the scale of the paper's plots).
        variant: ``None`` (the formula above, with ``wrap`` and ``reduce``) or one of the
            reference scripts' variants, :data:`MED_VARIANTS`: ``drop_last_avg``
            (``base.py``), ``drop_last_sum`` (``str.py``), ``drop_last_scaled_sum``
            (``rec.py``); these take no ``wrap`` or ``reduce``.

    Returns:
        MED as a float.
    """
    task = as_task(task, model)
    check_cyclic_order(task, "MED steps from element i to i + 1", "cayley_med (MED along the group's generators)")
    check_choice("reduce", reduce, ("mean", "sum"))
    W = embedding_matrix(model).detach()
    if variant is not None:
        check_choice("variant", variant, tuple(MED_VARIANTS))
        if not wrap or reduce != "mean":
            raise bad_value("variant", variant, "fixes its own range and reduction; leave wrap and reduce at their defaults")
        return _med_drop_last(W, task, variant)
    vals = [_reduce(consecutive_distances(W[task.operand_tokens(o).to(W.device)].double(), wrap), reduce) for o in _operands(task)]
    return sum(vals) / len(vals)


@torch.no_grad()
def activation_med(
    model: nn.Module,
    task: Task | int,
    hook: str | None = None,
    *,
    pos: int = -1,
    wrap: bool = True,
    reduce: str = "mean",
) -> float:
    """MED on a hooked activation: for a frozen embedding, where embedding MED is constant.

    Run the inputs ``(i, i + d, "=")``, i = 0..p-1, through the model with
    ``run_with_cache`` (names filter ``hook``), take the activation at position ``pos``
    (the query position for attention patterns/scores; the MLP baseline's hidden layers
    have no position) flattened to a vector ``h_i``, and return
    ``(1/p) sum_i ||h_{i+1 mod p} - h_i||_2`` (options as in :func:`med`).

    Args:
        model: A hooked model.
        task: Its task.
        hook: Any hook name; default the first MLP layer's ``hook_post`` (``hidden1``
            for the MLP baseline, as in the paper).
        pos: Position to read (default the last).

    Returns:
        Activation MED as a float.
    """
    task = as_task(task, model)
    check_cyclic_order(task, "activation MED steps from element i to i + 1", "cayley_med on the embeddings")
    check_choice("reduce", reduce, ("mean", "sum"))
    if hook is None:
        hook = "hidden1.hook_post" if neuron_hook(model).startswith("hidden") else "blocks.0.mlp.hook_post"
    device = next(model.parameters()).device
    i = torch.arange(task.p)
    tokens = task.tokens(torch.stack([i, i], 1)).to(device)
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == hook)
    if hook not in cache:
        raise bad_value("hook", hook, "is not a hook point of this model")
    h = last_position(hook, cache[hook], pos).reshape(task.p, -1).double()
    return _reduce(consecutive_distances(h, wrap), reduce)


@torch.no_grad()
def uniformity_stats(model: nn.Module | dict[str, Tensor] | Tensor, task: Task | int) -> dict[str, float]:
    """How evenly the operand embeddings lie on a smooth low-dimensional curve.

    For the ``(p, d_model)`` operand embeddings ``X`` (averaged over both operand ranges
    when ``d > 0``):

    * ``med_cv``: coefficient of variation (std / mean) of the consecutive distances
      ``||X[i+1 mod p] - X[i]||`` (0 for equal steps);
    * ``nn_spread``: coefficient of variation of each embedding's nearest-neighbour
      distance (0 when every point is equally isolated);
    * ``norm_spread``: coefficient of variation of the norms of the centred rows
      ``X - mean(X)`` (0 on a centred circle or sphere);
    * ``top2_variance``: share of the centred variance in the top two principal
      components (1 for points on a plane, e.g. a circle).

    Standard deviations are population ones (``ddof = 0``). On a group task whose
    elements have no cyclic order (``D_n``, ``S_n``), ``med_cv`` is over the steps along
    the group's generators instead (:func:`~grok_interp.measures.representations.cayley_steps`,
    the same distances as the consecutive ones on ``C_p``); the other three do not read
    an order.

    Returns:
        ``{"med_cv", "nn_spread", "norm_spread", "top2_variance"}`` floats.
    """
    task = as_task(task, model)
    W = embedding_matrix(model).detach()
    cayley = lacks_cyclic_order(task)
    stats = []
    for o in _operands(task):
        X = W[task.operand_tokens(o).to(W.device)].double()
        steps = cayley_steps(X, task) if cayley else consecutive_distances(X)
        D = torch.cdist(X, X)
        D.fill_diagonal_(float("inf"))
        nn_d = D.min(1).values
        Xc = X - X.mean(0, keepdim=True)
        norms = Xc.norm(dim=1)
        s2 = torch.linalg.svdvals(Xc).pow(2)
        stats.append(
            {
                "med_cv": _cv(steps),
                "nn_spread": _cv(nn_d),
                "norm_spread": _cv(norms),
                "top2_variance": float(s2[:2].sum() / s2.sum()) if s2.sum() > 0 else float("nan"),
            }
        )
    return {k: sum(s[k] for s in stats) / len(stats) for k in stats[0]}


def _cv(x: Tensor) -> float:
    m = x.mean()
    return float(x.std(unbiased=False) / m) if m > 0 else float("nan")


@torch.no_grad()
def rqi(
    model: nn.Module | dict[str, Tensor] | Tensor, data: TaskRun | Split | Task | int, *, threshold: float = 0.01
) -> float:
    """Representation quality index (Liu et al. 2022), for addition.

    Among the training parallelograms, ordered pairs of distinct training pairs
    ``(a, b) != (c, d)`` with ``a + b = c + d (mod p)``, the fraction whose standardised
    embeddings satisfy ``mean((r_a + r_b - r_c - r_d)^2) < threshold``; ``r`` is the
    operand embeddings (a-range for a, c; b-range for b, d) centred by their mean and
    divided by their overall standard deviation, the mean taken over ``d_model``.

    Args:
        model: A model, canonical weights or ``W_E``.
        data: A Split or run (its training pairs), or a Task (all valid pairs).
        threshold: The tolerance (0.01).

    Returns:
        RQI in [0, 1] (NaN when there is no parallelogram).
    """
    task, split = as_task_split(data, "data")
    mask = task.valid if split is None else split.train_mask
    fits(model, task)
    if task.op_name != "add":
        raise bad_value("op", task.op_name, "RQI is defined for addition (a + b = c + d) only")
    W = embedding_matrix(model).detach().double()
    ra = W[task.operand_tokens("a").to(W.device)]
    rb = W[task.operand_tokens("b").to(W.device)]
    both = torch.cat([ra, rb]) if task.offset else ra
    mu, sd = both.mean(0, keepdim=True), both.std(unbiased=False)
    if sd == 0:
        return float("nan")
    ra, rb = (ra - mu) / sd, (rb - mu) / sd
    pairs = mask.nonzero().to(W.device)
    s = ra[pairs[:, 0]] + rb[pairs[:, 1]]  # (n, d_model)
    labels = task.labels[mask].to(W.device)
    good = total = 0
    for r in labels.unique():
        v = s[labels == r]
        n = len(v)
        if n < 2:
            continue
        err = torch.cdist(v, v).pow(2) / v.shape[1]  # mean over d_model of the squared gap
        ok = int((err < threshold).sum()) - n  # drop the diagonal (a pair with itself)
        good += ok
        total += n * (n - 1)
    return good / total if total else float("nan")
