"""What a training set lets a model learn: equivalence-class coverage and ceilings.

Gu et al. (2025) argue that the training set's distribution over the *equivalence
classes* of a task (inputs with the same answer) caps the test accuracy grokking can
reach: a test input can only be answered if a training input of the same class lies
*nearby*. This module computes that cap before any training:

* :func:`class_coverage` - per class, how many training and test examples it has.
  Works on any labelled dataset (a :class:`~grok_interp.Split`, or ``labels`` with a
  ``train_mask``, e.g. the shapes dataset of the ResNet experiment).
* :func:`coverage_ceiling` - share of test examples whose class has at least one
  training example (the cap at infinite radius).
* :func:`nearest_train_distance` - for every test pair ``(a, b)`` of a prime-field
  task, the Manhattan distance on the torus ``Z_p x Z_p`` to the nearest training pair
  of the same class.
* :func:`ceiling_curve` / :func:`predicted_ceiling` - the predicted ceiling at radius
  ``r``: the share of test pairs with a same-class training pair within ``r``. Set the
  curve beside the measured U-Acc (:func:`grok_interp.measures.phases`).
* :func:`symmetry_ceiling` - share of test pairs that some symmetry of the grid (e.g.
  the transpose ``(a, b) -> (b, a)``) maps onto a training pair of the same class:
  the cap of a model that only answers a test pair through such an image.
* :func:`covered_per_point` and :func:`alpha_bound` - the random-split bound
  ``alpha >= 2 ln(p) / C``: if each training pair "covers" ``C`` grid points of its
  class, a random fraction ``alpha`` leaves a given pair uncovered with probability
  about ``(1 - alpha)^C ~ exp(-alpha C)``; all ``p^2`` pairs are covered (in
  expectation fewer than one is missed) once ``p^2 exp(-alpha C) < 1``, i.e.
  ``alpha > 2 ln(p) / C``.

Torus distance: ``d((a, b), (a', b')) = min(|a - a'|, p - |a - a'|) + min(|b - b'|, p - |b - b'|)``.

Group tasks (:mod:`grok_interp.groups`): class coverage and the coverage ceiling need
only the labels and hold as they are. The distance-based ceilings use the group's word
metric ``d(a, a') + d(b, b')`` with ``d(g, h) = |g^-1 h|`` (Cayley graph of the group's
generators), which is the torus distance on ``C_p``; whether "nearby in the Cayley graph"
is what lets a model copy an answer on a non-abelian group is Gu et al.'s argument
carried over, not tested. ``alpha_bound`` holds for any ``n x n`` grid (``p = |G|``). The
named symmetry maps ``negate*`` are maps of Z_p and are refused on other groups;
``transpose`` applies, but on a non-abelian group ``b a != a b`` for most pairs, so it
rarely counts.

Example:
    >>> from grok_interp import Task, Split
    >>> task = Task(p=5, op="add")
    >>> train = torch.zeros(5, 5, dtype=torch.bool); train[0, 0] = True
    >>> split = Split(task, "mask", 0.04, 0, train_mask=train, forced_test=~train)
    >>> nearest_train_distance(split)[1, 4].item(), nearest_train_distance(split)[2, 3].item()
    (2.0, 4.0)
    >>> round(coverage_ceiling(split), 4)   # 4 of the 24 test pairs share class 0
    0.1667
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ._validate import bad_value, check_int
from .groups import lacks_cyclic_order
from .tasks import Split, Task

__all__ = [
    "class_coverage",
    "coverage_ceiling",
    "torus_distance",
    "nearest_train_distance",
    "ceiling_curve",
    "predicted_ceiling",
    "covered_per_point",
    "symmetry_covered",
    "alpha_bound",
    "symmetry_ceiling",
    "SYMMETRIES",
]

# Pairwise distance blocks are computed in chunks of at most this many entries.
_CHUNK = 1 << 22


def _labels_masks(
    data: Split | Any, train_mask: Any = None, test_mask: Any = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalise (Split) or (labels, train_mask[, test_mask]) to flat int/bool tensors.

    Labels < 0 mark excluded examples (neither train nor test).
    """
    if isinstance(data, Split):
        if train_mask is not None or test_mask is not None:
            raise bad_value("train_mask", "given", "omit train_mask/test_mask when passing a Split")
        return data.task.labels.reshape(-1), data.train_mask.reshape(-1), data.test_mask.reshape(-1)
    labels = torch.as_tensor(np.asarray(data)).reshape(-1)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise bad_value("labels", str(labels.dtype), "must be integer class labels (or pass a Split)")
    labels = labels.to(torch.int64)
    if train_mask is None:
        raise bad_value("train_mask", None, "give a boolean train mask with the labels (or pass a Split)")
    train = torch.as_tensor(np.asarray(train_mask)).reshape(-1)
    if train.dtype != torch.bool or train.shape != labels.shape:
        raise bad_value(
            "train_mask", f"{train.dtype} {tuple(train.shape)}", f"must be bool with {labels.numel()} entries like labels"
        )
    valid = labels >= 0
    if test_mask is None:
        test = valid & ~train
    else:
        test = torch.as_tensor(np.asarray(test_mask)).reshape(-1)
        if test.dtype != torch.bool or test.shape != labels.shape:
            raise bad_value(
                "test_mask", f"{test.dtype} {tuple(test.shape)}", f"must be bool with {labels.numel()} entries like labels"
            )
        if (test & train).any():
            raise bad_value("test_mask", "overlapping", "train and test masks must not share an example")
    return labels, train & valid, test & valid


def class_coverage(data: Split | Any, train_mask: Any = None, test_mask: Any = None) -> pd.DataFrame:
    """Per equivalence class: how many training and test examples it has.

    Args:
        data: A :class:`~grok_interp.Split` (classes are the task's answers), or an
            array/tensor of integer class labels of any shape (negative = excluded).
        train_mask: With labels: boolean mask of training examples (same shape).
        test_mask: With labels: boolean mask of test examples (default: every
            non-excluded example that is not training).

    Returns:
        A DataFrame indexed by ``label`` (every label that occurs, ascending) with
        columns ``n_train``, ``n_test`` and ``covered`` (``n_train > 0``).

    Example:
        >>> class_coverage([0, 0, 1, 2], [True, False, False, True]).to_dict("list")
        {'n_train': [1, 0, 1], 'n_test': [1, 1, 0], 'covered': [True, False, True]}
    """
    labels, train, test = _labels_masks(data, train_mask, test_mask)
    valid = labels >= 0
    classes = torch.unique(labels[valid])
    n_train = torch.bincount(labels[train], minlength=int(classes.max()) + 1 if len(classes) else 0)
    n_test = torch.bincount(labels[test], minlength=len(n_train))
    n_train = torch.cat([n_train, n_train.new_zeros(max(0, len(n_test) - len(n_train)))])
    df = pd.DataFrame(
        {"n_train": n_train[classes].numpy(), "n_test": n_test[classes].numpy()},
        index=pd.Index(classes.numpy(), name="label"),
    )
    df["covered"] = df["n_train"] > 0
    return df


def coverage_ceiling(data: Split | Any, train_mask: Any = None, test_mask: Any = None) -> float:
    """Share of test examples whose class has at least one training example.

    The ceiling at infinite radius: a model that can only answer a test example
    through a training example of the same class can reach at most this accuracy.
    Arguments as in :func:`class_coverage`.
    """
    cov = class_coverage(data, train_mask, test_mask)
    n_test = int(cov["n_test"].sum())
    if n_test == 0:
        raise bad_value("test_mask", "empty", "there are no test examples")
    return float(cov.loc[cov["covered"], "n_test"].sum()) / n_test


def torus_distance(x: Int[Tensor, "n 2"], y: Int[Tensor, "m 2"], p: int) -> Int[Tensor, "n m"]:
    """Manhattan distances on the torus ``Z_p x Z_p`` between two sets of pairs.

    ``d = min(|a - a'|, p - |a - a'|) + min(|b - b'|, p - |b - b'|)``.
    """
    diff = (torch.as_tensor(x)[:, None, :] - torch.as_tensor(y)[None, :, :]).abs() % p
    return torch.minimum(diff, p - diff).sum(-1)


def _pair_distance(task: Task) -> Callable[[Tensor, Tensor], Tensor]:
    """The grid's metric: torus Manhattan on ``Z_p x Z_p``; on a group task the
    word metric ``d(a, a') + d(b, b')``, ``d(g, h) = |g^-1 h|`` in the group's generators
    (equal to the torus distance on ``C_p`` with generator 1)."""
    if lacks_cyclic_order(task):
        D = task.group.distance  # type: ignore[union-attr]
        return lambda x, y: D[x[:, None, 0], y[None, :, 0]] + D[x[:, None, 1], y[None, :, 1]]
    return lambda x, y: torus_distance(x, y, task.p)


def _diameter(task: Task) -> int:
    if lacks_cyclic_order(task):
        return 2 * int(task.group.word_length.max())  # type: ignore[union-attr]
    return 2 * (task.p // 2)


def nearest_train_distance(split: Split) -> Float[Tensor, "p p"]:
    """Torus-Manhattan distance from each test pair to its nearest same-class training pair.

    Args:
        split: A split of a prime-field task (the grid is ``Z_p x Z_p``).

    Returns:
        A ``(p, p)`` float tensor: at each test pair ``(a, b)``, the smallest
        :func:`torus_distance` to a training pair with the same answer, ``inf`` when
        its class has no training pair; ``nan`` at training pairs and excluded pairs.
    """
    if not isinstance(split, Split):
        raise bad_value("split", type(split).__name__, "must be a grok_interp.Split (the distance lives on Z_p x Z_p)")
    p = split.task.p
    labels = split.task.labels
    dist = _pair_distance(split.task)
    out = torch.full((p, p), float("nan"))
    test, train = split.test_mask, split.train_mask
    out[test] = float("inf")
    for c in torch.unique(labels[test]).tolist():
        tr = (train & (labels == c)).nonzero()
        if len(tr) == 0:
            continue
        te = (test & (labels == c)).nonzero()
        rows = max(1, _CHUNK // max(1, len(tr)))
        best = torch.cat([dist(te[i : i + rows], tr).min(1).values for i in range(0, len(te), rows)])
        out[te[:, 0], te[:, 1]] = best.to(out.dtype)
    return out


def ceiling_curve(split: Split, radii: Iterable[int] | None = None) -> pd.DataFrame:
    """Predicted test-accuracy ceiling as a function of the radius ``r``.

    ``ceiling(r)`` = share of test pairs with a same-class training pair within torus
    Manhattan distance ``r`` (:func:`nearest_train_distance`). It rises with ``r`` to
    :func:`coverage_ceiling` at ``r = 2 * (p // 2)`` (the torus diameter).

    Args:
        split: A split of a prime-field task.
        radii: Radii to report (default: every integer from 0 to the diameter).

    Returns:
        A DataFrame with columns ``radius``, ``n_within`` (test pairs within ``r``)
        and ``ceiling`` (``n_within / n_test``).
    """
    dist = nearest_train_distance(split)
    d = dist[split.test_mask]
    diameter = _diameter(split.task)
    radii = list(range(diameter + 1)) if radii is None else [check_int("radius", int(r), low=0) for r in radii]
    n_within = [int((d <= r).sum()) for r in radii]
    n_test = len(d)
    return pd.DataFrame({"radius": radii, "n_within": n_within, "ceiling": [n / n_test for n in n_within]})


def predicted_ceiling(split: Split, radius: int | None = None) -> float:
    """Share of test pairs with a same-class training pair within ``radius``.

    ``radius=None`` means any distance: the class-coverage ceiling.
    """
    if radius is None:
        return coverage_ceiling(split)
    return float(ceiling_curve(split, [radius])["ceiling"].iloc[0])


SYMMETRIES: dict[str, Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]]] = {
    "transpose": lambda a, b, p: (b, a),
    "negate": lambda a, b, p: ((-a) % p, (-b) % p),
    "negate_transpose": lambda a, b, p: ((-b) % p, (-a) % p),
}
"""Named maps of the grid ``(a, b) -> (a', b')`` for :func:`symmetry_ceiling`. Besides
these, ``"token_transpose"`` is the transpose of the *input tokens*: the pair whose
tokens are ``(b + d, a)``, i.e. ``(a', b') = (b + d, a - d)`` for the task's operand
offset ``d`` (no image when that leaves the grid). It equals ``"transpose"`` when
``d = 0``; with ``d > 0`` it is the route a model that sees the same two tokens in the
other order could copy from, which the plain transpose overstates."""


Maps = Iterable[str | Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]]]


def symmetry_covered(split: Split, maps: Maps = ("transpose",)) -> Bool[Tensor, " n_test"]:
    """Per test pair (in the order of ``split.test_pairs``): does one of ``maps`` send it
    onto a training pair with the same answer?

    Set it beside a model's per-pair correctness to see whether the model answers
    exactly the pairs a symmetry lets it copy from training (``examples/nonisomorphic.py``).

    Args:
        split: A split of a prime-field task.
        maps: Names in :data:`SYMMETRIES` or callables ``(a, b, p) -> (a', b')`` on int64
            tensors. An image with another answer than the pair does not count.
    """
    if not isinstance(split, Split):
        raise bad_value("split", type(split).__name__, "must be a grok_interp.Split")
    p, labels = split.task.p, split.task.labels
    pairs = split.test_pairs
    a, b = pairs[:, 0], pairs[:, 1]
    hit = torch.zeros(len(pairs), dtype=torch.bool)
    for m in maps:
        if m == "token_transpose":
            d = split.task.offset
            a2, b2 = b + d, a - d
            inside = (a2 < p) & (b2 >= 0)
            a2, b2 = a2.clamp(max=p - 1), b2.clamp(min=0)
            hit |= inside & split.train_mask[a2, b2] & (labels[a2, b2] == labels[a, b])
            continue
        if isinstance(m, str) and m.startswith("negate") and lacks_cyclic_order(split.task):
            raise bad_value("maps", m, "negates residues mod p: a Z_p map, meaningless on a non-cyclic group's indices")
        if isinstance(m, str):
            if m not in SYMMETRIES:
                raise bad_value("maps", m, "must be a callable or one of " + ", ".join(map(repr, [*SYMMETRIES, "token_transpose"])))
            m = SYMMETRIES[m]
        a2, b2 = (torch.as_tensor(x, dtype=torch.int64) % p for x in m(a, b, p))
        hit |= split.train_mask[a2, b2] & (labels[a2, b2] == labels[a, b])
    return hit


def symmetry_ceiling(split: Split, maps: Maps = ("transpose",)) -> float:
    """Share of test pairs that one of ``maps`` sends onto a training pair of the same class.

    A model that answers a test pair only when its image under a symmetry of the task
    was trained on (e.g. ``(b, a)`` for a symmetric ``f``) can reach at most this test
    accuracy. For a random split and the transpose it is about ``frac`` (diagonal pairs
    are their own transpose and never count). The mean of :func:`symmetry_covered`.

    Args:
        split: A split of a prime-field task.
        maps: Names in :data:`SYMMETRIES` or callables ``(a, b, p) -> (a', b')`` on int64
            tensors. An image with another answer than the pair does not count.

    Returns:
        The share in [0, 1].
    """
    hit = symmetry_covered(split, maps)
    if len(hit) == 0:
        raise bad_value("split", "no test pairs", "needs at least one test pair")
    return float(hit.float().mean())


def covered_per_point(task: Task, radius: int) -> float:
    """C: mean number of same-class pairs (itself included) within ``radius`` of a pair.

    For ``a + b`` the class of ``(a, b)`` is the anti-diagonal ``(a + i, b - i)``, at
    distance ``2 |i|`` (torus), so ``C = 2 * floor(r / 2) + 1`` while ``r < p``.

    Args:
        task: A prime-field task.
        radius: Torus Manhattan radius ``r >= 0``.
    """
    check_int("radius", radius, low=0)
    labels = task.labels
    dist = _pair_distance(task)
    total = 0
    for c in torch.unique(labels[task.valid]).tolist():
        pairs = (labels == c).nonzero()
        rows = max(1, _CHUNK // len(pairs))
        for i in range(0, len(pairs), rows):
            total += int((dist(pairs[i : i + rows], pairs) <= radius).sum())
    return total / int(task.valid.sum())


def alpha_bound(p: int, C: float) -> float:
    """Random-split training fraction needed to cover every pair: ``2 ln(p) / C``.

    Args:
        p: The prime (the grid has ``p^2`` pairs).
        C: Grid points of its class covered by one training pair (see
            :func:`covered_per_point`).

    Returns:
        ``alpha = 2 ln(p) / C`` (may exceed 1: then no random split covers the grid).
    """
    check_int("p", p, low=2)
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not C > 0:
        raise bad_value("C", C, "must be a number > 0")
    return 2.0 * math.log(p) / float(C)
