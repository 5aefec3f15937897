"""Circuit measures of Nanda et al. (2023): restricted and excluded loss, logit
similarity, weight norm; every variant named by what it computes.

The defaults are **the paper's**: what the progress-measures code computes
(repository mechanistic-interpretability-grokking/progress-measures-paper,
``transformers.py``: ``calculate_trig_loss``, ``calculate_excluded_loss``;
``helpers.py``: ``get_component_cos_xpy``, ``get_component_sin_xpy``, ``test_logits``).
``L`` is the ``(p^2, p)`` matrix of last-position logits over the grid of pairs
(a-major), in float64. For a key frequency ``k`` (``w_k = 2 pi k / p``) let ``u_k`` and
``v_k`` be the unit vectors over the pairs along ``cos(w_k (a + b))`` and
``sin(w_k (a + b))``. The paper keeps, *per output class* (each column of ``L``), only
those components::

    R = sum_k (u_k u_k^T L + v_k v_k^T L)            2 directions per frequency, p classes
    restricted_loss = CE(R + mean_pairs(L - R), r)   the "bias correction"; all pairs
    excluded_loss   = CE(L - R, r)                   no correction; training pairs

and the per-frequency excluded loss removes one frequency's ``u_k, v_k`` at a time.

Variants (``variant=``), each named for what it computes:

===========================  ==========================================================
``"paper"`` (default)        as above (progress-measures code)
``"difference_projection"``  projects the whole logit cube onto functions of
                             ``r - c``: ``cos/sin(w_k (r(a, b) - c))`` plus each pair's
                             mean (2 directions per frequency in all; grok_interp 0.1's
                             default, not the paper's)
``"tl_demo"``                the TransformerLens Grokking demo (``demos/Grokking_Demo``,
                             ``get_restricted_loss`` / ``get_excluded_loss``): neuron
                             activations projected onto ``cos/sin(w_k (a + b))``; the
                             restricted logits are ``N' W_out W_U`` (attention skip
                             path, ``b_out`` and ``b_U`` dropped) with each class's mean
                             logit re-added, on the test pairs; the excluded logits
                             ``(N_ex W_out + resid_mid) W_U`` on the training pairs
``"neuron_projection"``      neuron activations least-squares projected onto
                             ``{1, cos/sin(w_k r(a, b))}``, then the model's own
                             ``(resid_mid + N' W_out + b_out) W_U + b_U`` (grok_interp
                             0.1's ``level="neurons"``)
===========================  ==========================================================

For operations other than ``add`` the paper's directions are taken on the answer
``r(a, b)`` instead of ``a + b`` (for ``add`` the two are the same functions, since
``w_k`` is a multiple of ``2 pi / p``); they are the signature of the Fourier algorithm
only for addition. With invalid pairs (``divide``: ``b = 0``) the directions over the
valid pairs are no longer orthogonal and the projection is onto their span (QR), which
equals the paper's sum of rank-one projections whenever they are.

Memorisation and the projections: a memorised training set makes the correct logit of
every training pair large; a spike at ``r = c`` has a component at every frequency, so
*every* projection above ranks the right answer first for pairs it was never trained
on, and the restricted losses fall during memorisation as well as with the circuit (a
pure lookup table shows it: ``tests/measures/test_circuits.py``). The neuron-level
variants fall later, as the Fourier neurons form.

Pair sets (``pairs=``): ``all``, ``train`` or ``test`` (the last two need a
:class:`~grok_interp.Split` or a run); the default is each variant's source's own
(``None``). The projection is always fit on every valid pair; ``pairs`` picks the pairs
the cross-entropy averages over.
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
from ..groups import check_fourier_task
from ..models import MLPBaseline
from ..protocols import TaskRun, as_task_split
from ..tasks import Split, Task
from ._probe import Probe, canonical, fits, neuron_hook, pair_mask, probe_of
from .fourier import basis64, key_frequencies

__all__ = [
    "VARIANTS",
    "trig_directions",
    "key_projection",
    "restricted_loss",
    "excluded_loss",
    "trig_loss",
    "logit_cosine_similarity",
    "weight_norm",
]

#: The restricted/excluded loss variants (see the module docstring), default first.
VARIANTS = ("paper", "difference_projection", "tl_demo", "neuron_projection")
#: Each variant's pair set when ``pairs=None``: its source's own choice.
_DEFAULT_PAIRS = {
    "restricted": {"paper": "all", "difference_projection": "all", "tl_demo": "test", "neuron_projection": "all"},
    "excluded": dict.fromkeys(VARIANTS, "train"),
}


def _freq_rows(p: int, freqs: Iterable[int], parts: str = "cos+sin") -> list[int]:
    K = (p - 1) // 2
    rows = []
    for k in freqs:
        k = int(k)
        if not 1 <= k <= K:
            raise bad_value("key_freqs", k, f"frequencies must lie in [1, {K}]")
        rows += [2 * k - 1] if parts == "cos" else [2 * k - 1, 2 * k]
    return rows


def trig_directions(task: Task, key_freqs: Iterable[int], device: Any = None) -> Float[Tensor, "n_valid two_k"]:
    """The paper's directions over the valid pairs: orthonormal columns
    ``cos(w_k r), sin(w_k r)`` for each key frequency, in that order, ``r = r(a, b)`` the
    answer (``a + b`` for addition) and ``w_k = 2 pi k / p``.

    Each column is ``u(w_k r) / ||u(w_k r)||``, exactly the progress-measures code's
    ``get_component_cos_xpy`` / ``get_component_sin_xpy`` directions (which build them
    from the 2-D Fourier basis as ``(cos a cos b - sin a sin b) / sqrt 2`` and
    ``(sin a cos b + cos a sin b) / sqrt 2``). On the full grid they are orthogonal; where
    pairs are invalid (``divide``) they are orthonormalised (QR), so ``Q Q^T`` stays the
    projection onto their span.
    """
    p = task.p
    _freq_rows(p, key_freqs)  # range check
    r = task.labels.reshape(-1)[task.valid.reshape(-1)].to(device=device, dtype=torch.float64)
    k = torch.tensor([int(f) for f in key_freqs], dtype=torch.float64, device=device)
    w = (2 * math.pi / p) * r[:, None] * k[None, :]
    D = torch.stack([torch.cos(w), torch.sin(w)], dim=2).reshape(len(r), 2 * len(k))
    if not bool(task.valid.all()) and D.shape[1]:
        return torch.linalg.qr(D).Q
    return D / D.norm(dim=0, keepdim=True)


def key_projection(
    logits: Float[Tensor, "n p"],
    answers: Int[Tensor, " n"],
    key_freqs: Iterable[int],
    parts: str = "cos+sin",
    *,
    index: Int[Tensor, "n p"] | None = None,
) -> Float[Tensor, "n p"]:
    """``difference_projection``: orthogonal projection of the logit cube onto the
    directions ``cos/sin(w_k (r - c))`` (not the paper's construction).

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
        self.mean = self.L.mean(1, keepdim=True)
        self.valid = valid
        self.task = probe.task
        self._index: Tensor | None = None

    @property
    def index(self) -> Tensor:
        if self._index is None:
            self._index = _rc_index(self.r, self.task.p)
        return self._index

    @classmethod
    def of(cls, probe: Probe) -> "_Cube":
        cube = getattr(probe, "_cube", None)
        if cube is None or cube.source is not probe.logits():
            cube = cls(probe)
            cube.source = probe.logits()
            probe._cube = cube  # type: ignore[attr-defined]
        return cube

    def project(self, freqs: Iterable[int], parts: str = "cos+sin", centred: bool = False) -> Tensor:
        """The ``difference_projection`` of the (optionally pair-centred) logits."""
        L = self.L - self.mean if centred else self.L
        return key_projection(L, self.r, freqs, parts, index=self.index)

    def per_class(self, freqs: Iterable[int]) -> Tensor:
        """The paper's ``R``: each class's logits projected onto :func:`trig_directions`."""
        Q = trig_directions(self.task, freqs, self.L.device)
        return Q @ (Q.T @ self.L)


def _ce(logits: Tensor, answers: Tensor) -> float:
    if len(answers) == 0:
        return math.nan
    return float(F.cross_entropy(logits.double(), answers))


# --- neuron-level variants ----------------------------------------------------------------
def _one_layer(probe: Probe, variant: str) -> None:
    cfg = getattr(probe.model, "cfg", None)
    if cfg is None or cfg.n_layers != 1 or cfg.normalization_type is not None:
        raise bad_value("variant", variant, "needs a one-layer transformer without LayerNorm")


def _neuron_projection_logits(probe: Probe, key_freqs: list[int], mode: str) -> Tensor:
    """``neuron_projection``: the last MLP layer's neuron activations least-squares
    projected onto ``{1, cos/sin(w_k r(a, b))}`` (restricted) or stripped of the key
    part (excluded); the model's own skip path and biases kept."""
    model, task = probe.model, probe.task
    w = canonical(model)
    hook = neuron_hook(model)
    if isinstance(model, MLPBaseline):
        skip = None
        W_out, b_out = None, None
    else:
        _one_layer(probe, "neuron_projection")
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


def _tl_demo_logits(probe: Probe, key_freqs: list[int], mode: str) -> Tensor:
    """``tl_demo``: the TransformerLens Grokking demo's ``get_restricted_loss`` and
    ``get_excluded_loss``, term for term.

    ``N`` the neuron activations (``blocks.0.mlp.hook_post``, last position), ``P`` their
    projection onto the directions of :func:`trig_directions` (the demo's
    ``cos_apb_vec``, ``sin_apb_vec``). Restricted: ``N' = mean_pairs(N) + P``,
    ``L' = N' W_out W_U``, then ``L' += mean_pairs(L) - mean_pairs(L')``. Excluded:
    ``L' = ((N - P) W_out + resid_mid) W_U``. ``b_out`` and ``b_U`` appear in neither
    (the demo's model has them frozen at zero).
    """
    if isinstance(probe.model, MLPBaseline):
        raise bad_value("variant", "tl_demo", "is the demo's one-layer transformer computation; the MLP baseline has none")
    _one_layer(probe, "tl_demo")
    w = canonical(probe.model)
    valid = probe.valid
    N = probe.act(neuron_hook(probe.model)).double()[valid]
    Q = trig_directions(probe.task, key_freqs, N.device)
    P = Q @ (Q.T @ N)
    W_out, W_U = w["blocks.0.mlp.W_out"].detach().double(), w["unembed.W_U"].detach().double()
    out = torch.full((len(valid), W_U.shape[1]), math.nan, dtype=torch.float64, device=N.device)
    if mode == "restricted":
        Lr = (N.mean(0, keepdim=True) + P) @ W_out @ W_U
        out[valid] = Lr + (_Cube.of(probe).L.mean(0, keepdim=True) - Lr.mean(0, keepdim=True))
    else:
        resid_mid = probe.act("blocks.0.hook_resid_mid").double()[valid]
        out[valid] = ((N - P) @ W_out + resid_mid) @ W_U
    return out


def _resolve(model: Any, task: Task, key_freqs: Iterable[int] | None, hooks: Iterable[str] = ()) -> tuple[Probe, list[int]]:
    check_fourier_task(task, "the restricted/excluded loss over frequencies")
    probe = probe_of(model, fits(model, task), hooks)
    if key_freqs is None:
        key_freqs = key_frequencies(probe, task)
    return probe, sorted(int(k) for k in key_freqs)


def _check_variant(variant: str, level: str | None) -> None:
    if level is not None:
        raise bad_value(
            "level", level,
            "was replaced by variant= in grok_interp 0.2 (the default is now the paper's per-class "
            "projection): level='logits' is variant='difference_projection', level='neurons' is "
            "variant='neuron_projection'",
        )
    check_choice("variant", variant, VARIANTS)


def _restricted_logits(probe: Probe, freqs: list[int], variant: str) -> tuple[Tensor, Tensor]:
    """Restricted logits of the valid pairs and their answers."""
    cube = _Cube.of(probe)
    if variant == "paper":
        R = cube.per_class(freqs)
        return R + (cube.L - R).mean(0, keepdim=True), cube.r
    if variant == "difference_projection":
        return cube.project(freqs) + cube.mean, cube.r
    make = _tl_demo_logits if variant == "tl_demo" else _neuron_projection_logits
    return make(probe, freqs, "restricted")[cube.valid], cube.r


def _excluded_logits(probe: Probe, freqs: list[int], variant: str) -> tuple[Tensor, Tensor]:
    cube = _Cube.of(probe)
    if variant == "paper":
        return cube.L - cube.per_class(freqs), cube.r
    if variant == "difference_projection":
        return cube.L - cube.project(freqs), cube.r
    make = _tl_demo_logits if variant == "tl_demo" else _neuron_projection_logits
    return make(probe, freqs, "excluded")[cube.valid], cube.r


@torch.no_grad()
def restricted_loss(
    model: nn.Module | Probe,
    data: TaskRun | Split | Task | int,
    key_freqs: Iterable[int] | None = None,
    *,
    variant: str = "paper",
    pairs: str | None = None,
    level: str | None = None,
) -> float:
    """Loss of the model restricted to its key frequencies (Nanda et al. 2023).

    Default (``variant="paper"``, the progress-measures code's ``calculate_trig_loss``
    with ``helpers.test_logits(..., bias_correction=True, mode="all")``): with ``L`` the
    float64 logits ``(pairs, classes)`` and :func:`trig_directions` ``u_k, v_k``
    (``cos/sin(w_k (a + b))``, unit norm over the pairs)::

        R  = sum_k (u_k u_k^T L + v_k v_k^T L)      each class's column kept along u_k, v_k
        L' = R + mean_pairs(L - R)                  bias correction: each class's mean logit
        restricted_loss = CE(L', r) over all pairs

    The other variants (module docstring): ``difference_projection``
    (``L' = proj_{cos/sin(w_k (r - c))}(L) + mean_c L``), ``tl_demo`` (the
    TransformerLens demo's ``get_restricted_loss``, on the test pairs) and
    ``neuron_projection`` (neurons projected, the model's own skip path and biases).

    Args:
        model: A hooked model (or a :class:`Probe` run on it).
        data: Task, Split or run (a Split is needed for ``pairs="train"/"test"``).
        key_freqs: Frequencies to keep; default the model's own
            ``key_frequencies(model, task)`` (hold the final checkpoint's fixed to follow
            the literature: :meth:`GrokRun.measure`).
        variant: ``paper`` (default), ``difference_projection``, ``tl_demo`` or
            ``neuron_projection``.
        pairs: ``all``, ``train`` or ``test``; default the variant's source's (``test``
            for ``tl_demo``, else ``all``).
        level: Removed in 0.2 (an error says which ``variant`` replaces it).

    Returns:
        Cross-entropy (nats).

    Example:
        >>> import grok_interp as g
        >>> task = g.Task(7)
        >>> model = g.models.build_model(g.ModelConfig(d_model=16, n_heads=2, d_mlp=32), task)
        >>> with torch.no_grad():
        ...     L = model(task.tokens(task.all_pairs()))[:, -1].double()
        >>> nothing_kept = restricted_loss(model, task, [])   # R = 0: each class's mean logit, for every pair
        >>> abs(nothing_kept - float(F.cross_entropy(L.mean(0).expand_as(L), task.answers(task.all_pairs())))) < 1e-6
        True
    """
    _check_variant(variant, level)
    task, split = as_task_split(data, "data")
    mask = pair_mask(task, split, pairs or _DEFAULT_PAIRS["restricted"][variant])
    probe, freqs = _resolve(model, task, key_freqs)
    logits, r = _restricted_logits(probe, freqs, variant)
    sel = mask[probe.valid]
    return _ce(logits[sel], r[sel])


@torch.no_grad()
def excluded_loss(
    model: nn.Module | Probe,
    data: TaskRun | Split | Task | int,
    key_freqs: Iterable[int] | None = None,
    *,
    variant: str = "paper",
    pairs: str | None = None,
    per_frequency: bool = False,
    level: str | None = None,
) -> float | dict[int, float]:
    """Loss of the model with its key frequencies removed (Nanda et al. 2023).

    Default (``variant="paper"``): ``excluded_loss = CE(L - R, r)`` on the training pairs,
    ``R`` as in :func:`restricted_loss` (every class's components along
    ``cos/sin(w_k (a + b))`` of every key frequency), no bias correction
    (``helpers.test_logits(logits - cos - sin, bias_correction=False, mode="train")``).
    ``per_frequency=True`` removes one frequency's two directions at a time, as the
    progress-measures code's ``calculate_excluded_loss`` records it.

    It stays low while the model memorises (memorisation does not need the key
    directions) and rises as the generalising circuit takes over the training loss. The
    other variants: ``difference_projection`` (removes ``cos/sin(w_k (r - c))`` from the
    cube), ``tl_demo`` (the demo's ``get_excluded_loss``: neurons stripped of the key
    directions, ``((N - P) W_out + resid_mid) W_U``) and ``neuron_projection``.

    Args:
        model: A hooked model (or a :class:`Probe`).
        data: Split or run (the default ``pairs="train"`` needs one), or a Task with
            ``pairs="all"``.
        key_freqs: As in :func:`restricted_loss`.
        variant: As in :func:`restricted_loss`.
        pairs: ``train`` (default), ``test`` or ``all``.
        per_frequency: Remove one frequency at a time instead (returns a dict).
        level: Removed in 0.2 (an error says which ``variant`` replaces it).

    Returns:
        Cross-entropy (nats), or ``{k: loss with frequency k removed}``.
    """
    _check_variant(variant, level)
    task, split = as_task_split(data, "data")
    mask = pair_mask(task, split, pairs or _DEFAULT_PAIRS["excluded"][variant])
    probe, freqs = _resolve(model, task, key_freqs)
    sel = mask[probe.valid]
    groups = [[k] for k in freqs] if per_frequency else [freqs]
    out = []
    for group in groups:
        logits, r = _excluded_logits(probe, group, variant)
        out.append(_ce(logits[sel], r[sel]))
    return {k[0]: v for k, v in zip(groups, out)} if per_frequency else out[0]


@torch.no_grad()
def trig_loss(
    model: nn.Module | Probe,
    data: TaskRun | Split | Task | int,
    key_freqs: Iterable[int] | None = None,
    *,
    pairs: str = "all",
) -> float:
    """The progress-measures code's name for the paper's restricted loss (ARENA chapter
    1.5.2 calls it ``trig_loss`` too): ``restricted_loss(..., variant="paper")``.

    ``pairs="all"`` is ``calculate_trig_loss``'s default (``mode="all"``); ARENA's
    ``trig_loss_train`` is ``pairs="train"``.
    """
    return restricted_loss(model, data, key_freqs, variant="paper", pairs=pairs)  # type: ignore[return-value]


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
