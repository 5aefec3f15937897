"""The Fourier side (Nanda et al. 2023): basis, transforms, key frequencies, sparsity.

The Fourier basis over ``Z_p`` (p odd) is the ``p x p`` orthonormal matrix ``F`` whose
row 0 is the constant ``1/sqrt(p)`` and whose rows ``2k-1, 2k`` are
``cos(2 pi k x / p)`` and ``sin(2 pi k x / p)``, each normalised to unit length, for
frequencies ``k = 1 .. (p-1)/2`` ("cos first"). A 1-D transform of a function ``t`` on
``Z_p`` is ``F t``; a 2-D transform of ``X`` over ``(a, b)`` is ``F X F^T``.

Frequency-indexed results (:func:`embedding_fourier_norms`, the Gini inputs) are
tensors of length ``(p-1)//2`` whose entry ``i`` is frequency ``k = i + 1``.

Example:
    >>> F = fourier_basis(5)
    >>> torch.allclose(F @ F.T, torch.eye(5), atol=1e-6)
    True
    >>> fourier_basis_names(5)
    ['const', 'cos 1', 'sin 1', 'cos 2', 'sin 2']
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor, nn

from .._validate import bad_value, check_choice
from ..groups import check_fourier_task
from ..tasks import Task
from ._probe import Probe, as_task, canonical, embedding_matrix, neuron_hook, probe_of

__all__ = [
    "fourier_basis",
    "fourier_basis_names",
    "fourier_transform_1d",
    "fourier_transform_2d",
    "embedding_fourier_norms",
    "neuron_frequency_clusters",
    "frequency_clusters_of",
    "key_frequencies",
    "gini",
    "fourier_gini",
    "neuron_logit_map",
]


def fourier_basis(p: int, dtype: torch.dtype = torch.float32) -> Float[Tensor, "p p"]:
    """The orthonormal, cos-first Fourier basis of ``Z_p`` (rows are basis functions).

    ``F[0] = 1/sqrt(p)``, ``F[2k-1, x] = cos(2 pi k x/p) * sqrt(2/p)``,
    ``F[2k, x] = sin(2 pi k x/p) * sqrt(2/p)``, ``k = 1..(p-1)/2``; ``F F^T = I``.

    Args:
        p: An odd modulus (the task's prime).
        dtype: Floating dtype of the result (computed in float64).

    Returns:
        ``(p, p)`` tensor; row names in :func:`fourier_basis_names`.
    """
    return basis64(p).to(dtype=dtype, copy=True)


@functools.lru_cache(maxsize=16)
def basis64(p: int) -> Tensor:
    """The float64 basis, built once per p and shared (callers never modify it; see :func:`fourier_basis` for a copy)."""
    if isinstance(p, bool) or not isinstance(p, int) or p < 3 or p % 2 == 0:
        raise bad_value("p", p, "must be an odd integer >= 3")
    x = torch.arange(p, dtype=torch.float64)
    k = torch.arange(1, (p - 1) // 2 + 1, dtype=torch.float64)[:, None]
    waves = torch.stack([torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)], 1).reshape(-1, p)
    F = torch.cat([torch.full((1, p), 1.0 / math.sqrt(p), dtype=torch.float64), waves * math.sqrt(2.0 / p)])
    return F / F.norm(dim=1, keepdim=True)


def fourier_basis_names(p: int) -> list[str]:
    """Row names of :func:`fourier_basis`: ``const``, ``cos 1``, ``sin 1``, ..."""
    return ["const"] + [f"{t} {k}" for k in range(1, (p - 1) // 2 + 1) for t in ("cos", "sin")]


def fourier_transform_1d(x: Float[Tensor, "*batch p"], dim: int = -1) -> Float[Tensor, "*batch p"]:
    """Fourier coefficients of ``x`` along ``dim`` (size p): ``x @ F^T`` along that dim.

    Entry ``j`` of the result along ``dim`` is the coefficient of basis row ``j``
    (``const``, ``cos 1``, ``sin 1``, ...). Orthonormal, so norms are preserved.
    """
    p = x.shape[dim]
    F = basis64(p).to(x.device, x.dtype if x.is_floating_point() else torch.float32)
    return torch.movedim(torch.movedim(x, dim, -1) @ F.T, -1, dim)


def fourier_transform_2d(x: Float[Tensor, "p p *rest"]) -> Float[Tensor, "p p *rest"]:
    """2-D Fourier coefficients over the first two dims (a, b): ``F X F^T``.

    Entry ``[i, j, ...]`` is the coefficient of ``F[i](a) * F[j](b)``.
    """
    if x.ndim < 2 or x.shape[0] != x.shape[1]:
        raise bad_value("x", tuple(x.shape), "must be (p, p, ...)")
    p, rest = x.shape[0], x.shape[2:]
    F = basis64(p).to(x.device, x.dtype)
    y = (F @ x.reshape(p, -1)).reshape(p, p, -1)  # over a
    y = (F @ y.transpose(0, 1).reshape(p, -1)).reshape(p, p, -1).transpose(0, 1)  # over b
    return y.reshape(p, p, *rest)


def _freq_norms(coeffs: Float[Tensor, "p ..."]) -> Float[Tensor, " k"]:
    """Per-frequency norms ``sqrt(||c_cos k||^2 + ||c_sin k||^2)`` of coefficients on dim 0."""
    sq = coeffs.pow(2).reshape(coeffs.shape[0], -1).sum(1)
    return (sq[1::2] + sq[2::2]).sqrt()


def embedding_fourier_norms(
    model: nn.Module | dict[str, Tensor] | Tensor, task: Task | int, operand: str = "both"
) -> Float[Tensor, " k"]:
    """Norm of the operand embeddings in each Fourier frequency.

    ``n_k = sqrt(||F_cos,k W||^2 + ||F_sin,k W||^2)`` with ``W`` the ``(p, d_model)``
    rows of ``W_E`` for residues 0..p-1 of the chosen operand (Frobenius norms).

    Args:
        model: A model, canonical weights, or ``W_E`` itself ``(d_vocab, d_model)``.
        task: The task (gives p and the operand offset).
        operand: ``a``, ``b`` or ``both`` (root mean square of the two; equal to ``a``
            when offset = 0).

    Returns:
        ``((p-1)//2,)`` tensor; entry ``i`` is frequency ``k = i + 1``.
    """
    task = as_task(task, model)
    check_fourier_task(task, "embedding_fourier_norms")
    check_choice("operand", operand, ("a", "b", "both"))
    W = embedding_matrix(model).detach().double()
    ops = ("a", "b") if (operand == "both" and task.offset) else (("a",) if operand == "both" else (operand,))
    sq = [_freq_norms(fourier_transform_1d(W[task.operand_tokens(o).to(W.device)], dim=0)).pow(2) for o in ops]
    return torch.stack(sq).mean(0).sqrt().float()


def gini(x: Float[Tensor, " n"] | Any) -> float:
    """Gini coefficient (Hurley and Rickard 2009) of a non-negative vector: sparsity.

    Sort ``c`` ascending (``c_(1) <= ... <= c_(N)``) and take
    ``G = 1 - 2 * sum_i (c_(i) / ||c||_1) * (N - i + 1/2) / N``.
    ``G = 0`` for a flat vector and ``1 - 1/N`` for a one-hot vector.

    Args:
        x: Non-negative values (tensor, array or list); absolute values are taken.

    Returns:
        G in [0, 1 - 1/N]; 0 for an all-zero vector.
    """
    c = torch.as_tensor(x, dtype=torch.float64).reshape(-1).abs()
    n = c.numel()
    if n == 0:
        raise bad_value("x", [], "must have at least one entry")
    total = c.sum()
    if total == 0:
        return 0.0
    c, _ = torch.sort(c)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(1 - 2 * ((c / total) * (n - i + 0.5) / n).sum())


def neuron_logit_map(model: nn.Module | dict[str, Tensor]) -> Float[Tensor, "d_mlp d_vocab_out"]:
    """``W_L = W_out W_U``: each last-layer neuron's direct effect on the logits.

    For the MLP baseline the second hidden layer feeds the unembedding: ``W_L = W_U``.
    """
    w = canonical(model)
    if "hidden2.W" in w:
        return w["unembed.W_U"]
    layers = sorted({int(k.split(".")[1]) for k in w if k.startswith("blocks.") and ".mlp.W_out" in k})
    if not layers:
        raise bad_value("model", "weights", "have no MLP (blocks.*.mlp.W_out)")
    return w[f"blocks.{layers[-1]}.mlp.W_out"] @ w["unembed.W_U"]


@torch.no_grad()
def fourier_gini(model: nn.Module | dict[str, Tensor], task: Task | int, *, norms: str = "frequency") -> dict[str, float]:
    """Gini sparsity of the Fourier norms of ``W_E`` and of ``W_L = W_out W_U``.

    Two norm sets, by name (they differ by up to a quarter on a trained model):

    * ``norms="frequency"`` (default): one norm per frequency ``k = 1..(p-1)/2``,
      ``n_k = sqrt(||F_cos,k X||^2 + ||F_sin,k X||^2)`` (constant excluded): the
      per-frequency norms of :func:`embedding_fourier_norms` for ``W_E`` (operand
      tokens), and of ``W_L``'s Fourier transform over the output classes. Columns
      ``gini_embed``, ``gini_logit``.
    * ``norms="component"``: one norm per row of the Fourier basis (``const``,
      ``cos k``, ``sin k``: ``p`` values), ``||F_j X||``; cos and sin of one frequency
      count separately and the constant is included. Columns ``gini_embed_component``,
      ``gini_logit_component``.

    The Gini coefficient is :func:`gini` (Hurley and Rickard). Both rise as the model
    concentrates on a few key frequencies. Nanda et al. (2023, appendix) report the
    Gini of "the norms of the Fourier components" of ``W_E`` and ``W_L``; their public
    ``transformers.py`` records no Gini, so neither set can be checked against their
    code: pick one by name and say which.

    Returns:
        ``{"gini_embed": ..., "gini_logit": ...}`` (``norms="frequency"``) or
        ``{"gini_embed_component": ..., "gini_logit_component": ...}``.
    """
    check_choice("norms", norms, ("frequency", "component"))
    task = as_task(task, model)
    check_fourier_task(task, "fourier_gini")
    w = canonical(model)
    wl = fourier_transform_1d(neuron_logit_map(w).detach().double(), dim=1).T  # (p, d_mlp): rows = basis
    if norms == "frequency":
        return {"gini_embed": gini(embedding_fourier_norms(w, task)), "gini_logit": gini(_freq_norms(wl))}
    W = embedding_matrix(w).detach().double()
    ops = ("a", "b") if task.offset else ("a",)
    embed_sq = [fourier_transform_1d(W[task.operand_tokens(o).to(W.device)], dim=0).pow(2).sum(1) for o in ops]
    embed = torch.stack(embed_sq).mean(0).sqrt()
    return {"gini_embed_component": gini(embed), "gini_logit_component": gini(wl.norm(dim=1))}


def frequency_clusters_of(acts: Float[Tensor, "p_sq d_mlp"], p: int, threshold: float) -> pd.DataFrame:
    """Cluster MLP neurons by their dominant 2-D frequency from activations over the
    ``(a, b)`` grid (``p * p`` rows, one column per neuron); the table of
    :func:`neuron_frequency_clusters` (which computes the activations from a model)."""
    grid = acts.double().reshape(p, p, -1)
    grid = grid - grid.mean(dim=(0, 1), keepdim=True)
    coef = fourier_transform_2d(grid).pow(2)  # (p, p, d_mlp)
    total = coef.sum(dim=(0, 1))
    K = (p - 1) // 2
    # block k: rows/cols {0, 2k-1, 2k}. Sum of the 3x3 block for every k at once:
    idx = torch.stack([torch.zeros(K, dtype=torch.long), 2 * torch.arange(1, K + 1) - 1, 2 * torch.arange(1, K + 1)], 1)
    block = coef[idx[:, :, None], idx[:, None, :]].sum(dim=(1, 2))  # (K, d_mlp)
    fve = torch.where(total > 0, block / total.clamp_min(1e-300), torch.zeros_like(block))
    best_fve, best = fve.max(0)
    freq = torch.where(best_fve >= threshold, best + 1, torch.zeros_like(best))
    return pd.DataFrame(
        {"neuron": range(acts.shape[1]), "frequency": freq.tolist(), "fve": best_fve.float().tolist(),
         "variance": (total / (p * p)).float().tolist()}
    )


def neuron_frequency_clusters(
    model: nn.Module | Probe, task: Task | int, *, threshold: float = 0.85, hook: str | None = None
) -> pd.DataFrame:
    """Assign each MLP neuron to the Fourier frequency that explains its activations.

    Take the neuron's activation at the last position over all ``(a, b)`` in the
    ``p x p`` grid (``run_with_cache`` on ``hook``), remove its mean, and 2-D Fourier
    transform it. The share of its variance in the 3x3 block ``{const, cos k, sin k}^2``
    is ``fve_k``; the neuron belongs to ``argmax_k fve_k`` if that share is at least
    ``threshold``, else to no frequency.

    Args:
        model: A hooked model (or a :class:`Probe` already run on it).
        task: Its task.
        threshold: Minimum fraction of variance explained (0.85, Nanda et al.).
        hook: Activation hook; default the last MLP layer's ``hook_post``.

    Returns:
        DataFrame, one row per neuron: ``neuron`` (index), ``frequency`` (1..(p-1)/2,
        0 = none), ``fve`` (the best frequency's fraction of variance explained) and
        ``variance`` (the neuron's activation variance over the grid).
    """
    task = as_task(task, model)
    check_fourier_task(task, "neuron_frequency_clusters")
    hook = hook or neuron_hook(model.model if isinstance(model, Probe) else model)
    acts = probe_of(model, task, [hook]).act(hook)
    return frequency_clusters_of(acts, task.p, threshold)


def key_frequencies(
    model: nn.Module | Probe,
    task: Task | int,
    rule: str = "neurons",
    *,
    threshold: float = 0.85,
    embed_ratio: float = 0.25,
    hook: str | None = None,
) -> list[int]:
    """The frequencies a model uses, by one of two published rules.

    * ``neurons`` (default): frequencies with at least one neuron in
      :func:`neuron_frequency_clusters` (block share ``>= threshold``).
    * ``embedding``: frequencies whose :func:`embedding_fourier_norms` exceed
      ``embed_ratio`` times the largest.

    Take them on one reference checkpoint (the final one, as in the literature) and hold
    them fixed across checkpoints: see :meth:`GrokRun.measure`.

    Against the published codes: the ``neurons`` rule with threshold 0.85 is the rule
    of Nanda et al.'s paper and the TransformerLens Grokking demo (a neuron belongs to
    the frequency whose ``{const, cos k, sin k}^2`` block explains at least 0.85 of its
    centred variance), and gives the same frequencies on our runs. Two other codes
    differ from it: the analysis notebook of the progress-measures repository uses a
    hand-written list for its main run (``key_freqs = [14, 35, 41, 42, 52]``), and
    ``transformers.py``'s ``calculate_key_freqs`` gives *every* neuron its best
    frequency, with no threshold, over ``range(1, p // 2)``, a loop that stops one
    short and so can never return ``(p - 1) / 2``. Both are left out on purpose: the
    first is not a rule, the second counts noise neurons and misses the top frequency.

    Returns:
        Sorted list of frequencies ``k`` in ``1..(p-1)/2``.
    """
    task = as_task(task, model)
    check_fourier_task(task, "key_frequencies")
    check_choice("rule", rule, ("neurons", "embedding"))
    if rule == "embedding":
        m = model.model if isinstance(model, Probe) else model
        norms = embedding_fourier_norms(m, task)
        return [int(i) + 1 for i in torch.nonzero(norms > embed_ratio * norms.max()).reshape(-1)]
    table = neuron_frequency_clusters(model, task, threshold=threshold, hook=hook)
    return sorted(int(k) for k in set(table["frequency"]) if k > 0)

