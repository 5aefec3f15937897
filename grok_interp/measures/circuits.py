"""Circuit measures (Nanda et al. 2023): restricted and excluded loss, logit similarity,
weight norm.

All of them look at the last-position logits of the ``p x p`` grid of pairs as a cube
``L(a, b, c)`` and at the *key directions* of frequency ``k``,
``cos(w_k (r(a, b) - c))`` and ``sin(w_k (r(a, b) - c))`` with ``w_k = 2 pi k / p`` and
``r(a, b)`` the task's answer; for addition this is ``a + b - c``, the directions of
the Fourier multiplication algorithm. Only valid pairs enter (``divide`` skips
``b = 0``). For operations other than ``add`` the same definition is applied to the
answer ``r(a, b)``; it measures how much of the logits is a function of ``r - c`` at
the key frequencies, which is the algorithm's signature only for addition.

Pair sets: ``all`` (every valid pair), ``train`` or ``test`` (need a
:class:`~grok_interp.Split` or a run as ``data``).

Which pairs each variant looks at, and what memorisation does to it (the projection is
always fit on every valid pair; ``pairs`` only picks the pairs the loss averages over):

=========================  ===============================  ==============================
variant                    projection (fit on all pairs)    memorisation alone
=========================  ===============================  ==============================
``restricted_loss``        logit cube onto functions of     *lowers it*: the same for
(logits, default)          ``r - c`` at key frequencies     every pair, so ``pairs`` does
                                                            not change it
``restricted_loss``        neuron acts onto functions of    lowers it less: falls later,
(``level="neurons"``)      ``r(a, b)``, then W_out, W_U     with the Fourier circuit
``trig_loss`` (ARENA)      each class's logits onto         lowers it, like the logit
                           functions of ``r(a, b)``         level (differs by pair set)
``excluded_loss``          logit cube minus the key part    stays low (memorisation
                                                            does not use the key part)
=========================  ===============================  ==============================

Why memorisation lowers the logit-level restricted loss: the projection depends on the
logits only through ``G(s) = sum over pairs of L[pair, r - s]``. Once the training pairs
are memorised their correct logits (``s = 0``) are large, so ``G`` has a spike at
``s = 0``; a spike has a component at every frequency, so its key-frequency part still
peaks at ``s = 0`` and ranks the right answer first for *every* pair, test pairs
included (a pure lookup table shows it: ``tests/test_measures_circuits.py``). So much of
its fall during memorisation is memorisation, not a generalising circuit. Measured on
the default p = 97 run (memorised at step 130, grokked at 7710) at step 1000, when test
loss was 23.8: logit-level restricted loss 2.17, trig loss 3.40, neuron-level 5.48 (it
rises while the model memorises, to 6.49 at step 2200, then falls with test loss; it
moved half way 1810 steps before the accuracy jump, the logit level 6410; README). The
neuron-level variant keeps only the neuron activations that are functions of
``r(a, b)``; a lookup table's neurons mostly are not, so it falls later, with the
Fourier circuit.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from .._validate import bad_value, check_choice
from ..models import MLPBaseline
from ..protocols import TaskRun, as_task_split
from ..tasks import Split, Task
from ._probe import Probe, canonical, fits, neuron_hook, probe_of
from .fourier import basis64, key_frequencies

__all__ = [
    "key_projection",
    "restricted_loss",
    "excluded_loss",
    "trig_loss",
    "logit_cosine_similarity",
    "weight_norm",
]


def _pair_mask(task: Task, split: Split | None, pairs: str) -> Tensor:
    check_choice("pairs", pairs, ("all", "train", "test"))
    if pairs == "all":
        return task.valid.reshape(-1)
    if split is None:
        raise bad_value("pairs", pairs, "needs a Split (or a run) as data, not a bare Task; or use pairs='all'")
    return (split.train_mask if pairs == "train" else split.test_mask).reshape(-1)


def _freq_rows(p: int, freqs: Iterable[int], parts: str = "cos+sin") -> list[int]:
    K = (p - 1) // 2
    rows = []
    for k in freqs:
        k = int(k)
        if not 1 <= k <= K:
            raise bad_value("key_freqs", k, f"frequencies must lie in [1, {K}]")
        rows += [2 * k - 1] if parts == "cos" else [2 * k - 1, 2 * k]
    return rows


def key_projection(
    logits: Float[Tensor, "n p"],
    answers: Int[Tensor, " n"],
    key_freqs: Iterable[int],
    parts: str = "cos+sin",
    *,
    index: Int[Tensor, "n p"] | None = None,
) -> Float[Tensor, "n p"]:
    """Orthogonal projection of logits onto the key directions ``cos/sin(w_k (r - c))``.

    Every row is a pair with answer ``r``; column ``c`` is an output class. The directions,
    as functions of ``(pair, c)``, depend only on ``s = r - c mod p``, so the projection is
    computed from the sums ``G(s) = sum of L[pair, c] over r - c = s`` (``O(n p)``):
    ``proj[pair, c] = f((r - c) mod p)``, ``f = (1/n) sum_k <G, F_k> F_k`` with ``F_k`` the
    unit cos/sin rows of :func:`fourier_basis`. ``parts="cos"`` keeps cosines only.
    ``index`` may pass ``(r - c) mod p`` precomputed.
    """
    n, p = logits.shape
    rows = _freq_rows(p, key_freqs, parts)
    if not rows:
        return torch.zeros_like(logits)
    idx = _rc_index(answers.to(logits.device), p) if index is None else index
    G = torch.zeros(p, dtype=logits.dtype, device=logits.device).index_add_(0, idx.reshape(-1), logits.reshape(-1))
    Fk = basis64(p).to(logits.device, logits.dtype)[rows]
    f = (Fk @ G) @ Fk / n
    return f[idx]


def _rc_index(answers: Tensor, p: int) -> Tensor:
    return (answers[:, None] - torch.arange(p, device=answers.device)[None, :]) % p


class _Cube:
    """The float64 logits of the valid pairs, their answers and ``(r - c) mod p``, cached
    on the probe so several measures of one checkpoint share them."""

    def __init__(self, probe: Probe) -> None:
        valid = probe.valid
        self.L = probe.logits().double()[valid]
        self.r = probe.answers[valid].to(self.L.device)
        self.index = _rc_index(self.r, probe.task.p)
        self.mean = self.L.mean(1, keepdim=True)
        self.valid = valid

    @classmethod
    def of(cls, probe: Probe) -> "_Cube":
        cube = getattr(probe, "_cube", None)
        if cube is None or cube.source is not probe.logits():
            cube = cls(probe)
            cube.source = probe.logits()
            probe._cube = cube  # type: ignore[attr-defined]
        return cube

    def project(self, freqs: Iterable[int], parts: str = "cos+sin", centred: bool = False) -> Tensor:
        L = self.L - self.mean if centred else self.L
        return key_projection(L, self.r, freqs, parts, index=self.index)


def _ce(logits: Tensor, answers: Tensor) -> float:
    if len(answers) == 0:
        return math.nan
    return float(F.cross_entropy(logits.double(), answers))


# --- neuron-level variants (TransformerLens demo) ------------------------------------------
def _neuron_logits(probe: Probe, key_freqs: list[int], mode: str) -> Tensor:
    """Logits with the last MLP layer's neuron activations restricted to / stripped of the
    key directions ``cos/sin(w_k r(a, b))`` over pairs, the attention skip path kept."""
    model, task = probe.model, probe.task
    w = canonical(model)
    hook = neuron_hook(model)
    if isinstance(model, MLPBaseline):
        skip = None
        W_out, b_out = None, None
    else:
        cfg = model.cfg
        if cfg.n_layers != 1 or cfg.normalization_type is not None:
            raise bad_value("level", "neurons", "needs a one-layer transformer without LayerNorm")
        skip = probe.act("blocks.0.hook_resid_mid").double()
        W_out, b_out = w["blocks.0.mlp.W_out"].detach().double(), w["blocks.0.mlp.b_out"].detach().double()
    N = probe.act(hook).double()
    valid = probe.valid
    r = probe.answers[valid]
    p = task.p
    basis = basis64(p).to(N.device)
    rows = [0] + _freq_rows(p, key_freqs)
    D = basis[rows][:, r]  # (1 + 2K, n_valid): const + key directions over pairs
    Nv = N[valid]
    coef = torch.linalg.lstsq(D.T, Nv).solution  # least squares: exact projection
    mean_part = D[:1].T @ torch.linalg.lstsq(D[:1].T, Nv).solution
    key_part = D.T @ coef - mean_part
    Nv = mean_part + key_part if mode == "restricted" else Nv - key_part
    out = torch.full((N.shape[0], p), math.nan, dtype=torch.float64, device=N.device)
    W_U, b_U = w["unembed.W_U"].detach().double(), w["unembed.b_U"].detach().double()
    if skip is None:
        out[valid] = Nv @ W_U + b_U
    else:
        out[valid] = (skip[valid] + Nv @ W_out + b_out) @ W_U + b_U
    return out


def _resolve(model: Any, task: Task, key_freqs: Iterable[int] | None, hooks: Iterable[str] = ()) -> tuple[Probe, list[int]]:
    probe = probe_of(model, fits(model, task), hooks)
    if key_freqs is None:
        key_freqs = key_frequencies(probe, task)
    return probe, sorted(int(k) for k in key_freqs)


@torch.no_grad()
def restricted_loss(
    model: nn.Module | Probe,
    data: TaskRun | Split | Task | int,
    key_freqs: Iterable[int] | None = None,
    *,
    pairs: str = "all",
    level: str = "logits",
) -> float:
    """Loss of the model restricted to its key frequencies.

    Default (logit level, all pairs): ``L' = proj_key(L) + mean_c L``, the projection of
    the logit cube onto ``span{cos(w_k (r - c)), sin(w_k (r - c)) : k key}`` plus each
    pair's mean logit, and ``restricted_loss = CE(L', r)`` over every valid pair.

    Pairs: the projection is fit on every valid pair whatever ``pairs`` says; ``pairs``
    only picks the pairs the cross-entropy averages over. At logit level ``L'[pair, c]``
    minus its pair mean is a function ``f((r - c) mod p)`` shared by all pairs, so every
    pair has the same loss and ``pairs="train"``, ``"test"`` and ``"all"`` give the same
    value. At neuron level the restricted activations are functions of ``r(a, b)`` but
    the skip path is the pair's own, so the pair sets differ.

    Memorisation: the logit-level value falls *during memorisation*, before any
    generalising circuit exists (see the module docstring: memorised training logits
    alone make ``f`` peak at ``r - c = 0``); use it as a leading measure of grokking only
    after memorisation, or use ``level="neurons"``, which stays high while the model
    memorises and falls as the Fourier circuit forms. See also :func:`trig_loss`.

    Args:
        model: A hooked model (or a :class:`Probe` run on it).
        data: Task, Split or run (a Split is needed for ``pairs="train"/"test"``).
        key_freqs: Frequencies to keep; default the model's own
            ``key_frequencies(model, task)`` (hold the final checkpoint's fixed to follow
            the literature: :meth:`GrokRun.measure`).
        pairs: ``all`` (default), ``train`` or ``test``.
        level: ``logits`` (default) or ``neurons`` (the TransformerLens demo's variant:
            last-layer neuron activations ``N`` over the valid pairs, least-squares
            projected onto ``span{1, cos(w_k r(a, b)), sin(w_k r(a, b)) : k key}``, then
            ``L' = (resid_mid + N' W_out + b_out) W_U + b_U``, the attention skip path
            kept; one-layer models without LayerNorm and the MLP baseline).

    Returns:
        Cross-entropy (nats).
    """
    task, split = as_task_split(data, "data")
    check_choice("level", level, ("logits", "neurons"))
    mask = _pair_mask(task, split, pairs)
    probe, freqs = _resolve(model, task, key_freqs)
    ans = probe.answers
    if level == "neurons":
        return _ce(_neuron_logits(probe, freqs, "restricted")[mask], ans[mask])
    cube = _Cube.of(probe)
    sel = mask[cube.valid]
    return _ce((cube.project(freqs) + cube.mean)[sel], cube.r[sel])


@torch.no_grad()
def excluded_loss(
    model: nn.Module | Probe,
    data: TaskRun | Split | Task | int,
    key_freqs: Iterable[int] | None = None,
    *,
    pairs: str = "train",
    per_frequency: bool = False,
    level: str = "logits",
) -> float | dict[int, float]:
    """Loss of the model with its key frequencies removed.

    Default (all key frequencies at once, train split): ``L' = L - proj_key(L)`` and
    ``excluded_loss = CE(L', r)`` on the training pairs. The projection is fit on every
    valid pair (as in :func:`restricted_loss`); ``pairs`` picks the pairs averaged over.
    On the training pairs it asks how well the model fits its training set without the
    key directions. Memorisation does not need them, so it stays low while the model
    memorises and rises as the generalising circuit takes over the training loss. On
    test pairs (``pairs="test"``) it is high throughout: without the key part nothing
    predicts an unseen pair. At ``level="neurons"`` the key part is removed from the
    neuron activations (same projection as the neuron-level restricted loss).

    Args:
        model: A hooked model (or a :class:`Probe`).
        data: Split or run (default ``pairs="train"`` needs one), or a Task with
            ``pairs="all"``.
        key_freqs: As in :func:`restricted_loss`.
        pairs: ``train`` (default), ``test`` or ``all``.
        per_frequency: Remove one frequency at a time instead (returns a dict).
        level: ``logits`` (default) or ``neurons`` (see :func:`restricted_loss`).

    Returns:
        Cross-entropy (nats), or ``{k: loss with frequency k removed}``.
    """
    task, split = as_task_split(data, "data")
    check_choice("level", level, ("logits", "neurons"))
    mask = _pair_mask(task, split, pairs)
    probe, freqs = _resolve(model, task, key_freqs)
    groups = [[k] for k in freqs] if per_frequency else [freqs]
    ans = probe.answers
    out = []
    for g in groups:
        if level == "neurons":
            out.append(_ce(_neuron_logits(probe, g, "excluded")[mask], ans[mask]))
            continue
        cube = _Cube.of(probe)
        sel = mask[cube.valid]
        out.append(_ce((cube.L - cube.project(g))[sel], cube.r[sel]))
    return {k[0]: v for k, v in zip(groups, out)} if per_frequency else out[0]


@torch.no_grad()
def trig_loss(
    model: nn.Module | Probe,
    data: TaskRun | Split | Task | int,
    key_freqs: Iterable[int] | None = None,
    *,
    pairs: str = "all",
) -> float:
    """ARENA's trig loss: each output class's logits kept only in ``cos/sin(w_k r(a, b))``.

    ARENA (chapter 1.5.2, "Grokking and Modular Arithmetic") projects the logits over the
    ``(a, b)`` grid, one output class ``c`` at a time, onto the normalised directions
    ``cos(w_k (a + b))`` and ``sin(w_k (a + b))`` for each key frequency, sums the
    projections, applies a bias correction and takes cross-entropy::

        T[:, c] = sum_k sum_{u in {cos, sin}} <L[:, c], u_k> u_k     u_k(a, b) = u(w_k r(a, b)) / norm
        L'[:, c] = T[:, c] - mean_pairs T[:, c] + mean_pairs L[:, c]  (bias correction)
        trig_loss = CE(L', r) over ``pairs``

    ``r(a, b)`` is the task's answer (``a + b`` for addition, as in ARENA; other
    operations use their own answer). Here the projection is a least-squares fit on the
    span of all the directions over the valid pairs, which equals ARENA's sum of
    separate projections when the directions are orthogonal (every pair valid, distinct
    frequencies) and stays a projection when they are not (``divide`` drops ``b = 0``).

    Unlike :func:`restricted_loss` (logit level) the coefficients are free per class
    ``c``; it does not impose the ``r - c`` structure, and the bias correction keeps each
    class's mean logit (``b_U`` and friends) rather than each pair's. The restricted
    logits are a function of ``(r, c)`` only, so pairs with the same answer have the same
    loss, and the pair sets differ only through their mix of answers. Memorisation
    lowers it for the reason given in the module docstring (memorised training logits
    make column ``c`` large where ``r = c``).

    Args:
        model: A hooked model (or a :class:`Probe`).
        data: Task, Split or run (a Split is needed for ``pairs="train"/"test"``).
        key_freqs: Frequencies to keep; default ``key_frequencies(model, task)``.
        pairs: ``all`` (default, as ARENA's ``trig_loss``), ``train`` (ARENA's
            ``trig_loss_train``) or ``test``.

    Returns:
        Cross-entropy (nats).
    """
    task, split = as_task_split(data, "data")
    mask = _pair_mask(task, split, pairs)
    probe, freqs = _resolve(model, task, key_freqs)
    cube = _Cube.of(probe)
    p = task.p
    w = (2 * math.pi / p) * cube.r.double()  # w_1 r over the valid pairs
    k = torch.tensor(freqs, dtype=torch.float64, device=w.device)
    D = torch.cat([torch.cos(w[:, None] * k), torch.sin(w[:, None] * k)], 1)  # (n_valid, 2K)
    if D.shape[1] == 0:
        T = torch.zeros_like(cube.L)
    else:
        T = D @ torch.linalg.lstsq(D, cube.L).solution
    restricted = T - T.mean(0, keepdim=True) + cube.L.mean(0, keepdim=True)
    sel = mask[cube.valid]
    return _ce(restricted[sel], cube.r[sel])


@torch.no_grad()
def logit_cosine_similarity(
    model: nn.Module | Probe, data: TaskRun | Split | Task | int, key_freqs: Iterable[int] | None = None
) -> float:
    """How well ``sum_k <L, C_k> C_k`` approximates the logit cube (cosine similarity).

    ``L`` is the logit cube over valid pairs with each pair's mean removed,
    ``C_k = cos(w_k (r - c)) / ||cos(w_k (r - c))||`` for the key frequencies; since the
    ``C_k`` are orthonormal the cosine similarity of ``L`` with its approximation is
    ``||sum_k <L, C_k> C_k|| / ||L||``, the fraction of the cube's norm explained.

    Returns:
        A value in [0, 1].
    """
    task, _ = as_task_split(data, "data")
    probe, freqs = _resolve(model, task, key_freqs)
    cube = _Cube.of(probe)
    approx = cube.project(freqs, parts="cos", centred=True)
    denom = (cube.L - cube.mean).norm()
    return float(approx.norm() / denom) if denom > 0 else math.nan


@torch.no_grad()
def weight_norm(model: nn.Module | dict[str, Tensor]) -> dict[str, float]:
    """Sum of squared parameters, total and per component.

    ``weight_norm = sum over every canonical parameter of sum(theta^2)``; components are
    the parameter names without their last part (``embed``, ``pos_embed``,
    ``blocks.0.attn``, ``blocks.0.mlp``, ``unembed``, ``hidden1`` ...).

    Returns:
        ``{"weight_norm": total, "weight_norm.<component>": ...}``.
    """
    per: dict[str, float] = defaultdict(float)
    for name, t in canonical(model).items():
        per[name.rsplit(".", 1)[0]] += float(t.detach().double().pow(2).sum())
    out = {"weight_norm": sum(per.values())}
    out.update({f"weight_norm.{k}": v for k, v in sorted(per.items())})
    return out
