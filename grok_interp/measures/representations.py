"""Representation-theory measures: the group generalisation of the Fourier measures.

For a finite group ``G`` (:mod:`grok_interp.groups`) with real irreducible
representations ``rho`` (dimension ``d_rho``, Frobenius-Schur type ``e_rho``), functions
on ``G`` split orthogonally into the spaces ``W_rho = span{g -> rho(g)_ij}`` (Peter-Weyl;
``dim W_rho = d_rho^2 / e_rho``, and the ``W_rho`` together span ``R^G``). On the cyclic
group ``Z_p`` the irrep ``k<k>`` is the rotation by ``w_k g``, ``w_k = 2 pi k / p``, and
``W_k = span{cos(w_k g), sin(w_k g)}``: Fourier frequency k. Every measure below
therefore equals its Fourier counterpart on ``Task(p, "add")`` (``tests/test_groups.py``
checks each one):

* :func:`group_fourier_transform` ``f^(rho) = sum_g f(g) rho(g)`` (a ``d x d`` matrix per
  irrep), with Plancherel ``||f||^2 = (1/|G|) sum_rho (d_rho / e_rho) ||f^(rho)||_F^2``;
* :func:`irrep_basis` (orthonormal basis of each ``W_rho``) and :func:`irrep_norms`
  ``n_rho = ||P_rho x||`` (``P_rho`` the orthogonal projection onto ``W_rho`` along one
  dimension), equal to ``(d_rho / (e_rho |G|))^(1/2) ||x^(rho)||_F``;
* :func:`embedding_irrep_norms` (``embedding_fourier_norms``), :func:`neuron_irrep_clusters`
  (``neuron_frequency_clusters``: a neuron's share of centred variance over the ``(a, b)``
  grid in the block ``(W_triv + W_rho) x (W_triv + W_rho)``), :func:`key_irreps`
  (``key_frequencies``: irreps with a neuron of share >= 0.85, or embedding norm above
  a quarter of the largest);
* :func:`irrep_restricted_loss` / :func:`irrep_excluded_loss`, the paper's restricted and
  excluded loss (Nanda et al. 2023, see :mod:`grok_interp.measures.circuits`) with the
  directions ``cos/sin(w_k (a + b))`` replaced by an orthonormal basis of the functions
  of the answer ``r = a b`` that lie in ``W_rho``: ``u(a, b) = B_rho[a b] / sqrt(|G|)``.
  For a group-multiplication circuit (Chughtai et al. 2023, "A toy model of
  universality") the logit of ``c`` is ``sum_rho chi_rho(a b c^-1)``, a function of ``a b``
  in ``W_rho`` for each class ``c``: the projection keeps exactly that;
* :func:`cayley_med`: MED along the Cayley graph, ``(1/(|G| |S|)) sum_g sum_s
  ||E[g s] - E[g]||`` over the generators ``s``; on ``C_p`` with generator 1 it is
  :func:`grok_interp.measures.med` (wrap, mean).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from .._validate import bad_value, check_choice
from ..groups import Group, group_of
from ..protocols import TaskRun, as_task_split
from ..tasks import Split, Task
from ._probe import Probe, as_task, embedding_matrix, fits, neuron_hook, pair_mask, probe_of

__all__ = [
    "cayley_steps",
    "irrep_basis",
    "group_fourier_transform",
    "irrep_norms",
    "embedding_irrep_norms",
    "neuron_irrep_clusters",
    "key_irreps",
    "irrep_directions",
    "irrep_restricted_loss",
    "irrep_excluded_loss",
    "cayley_med",
]


def irrep_basis(G: Group) -> dict[str, Float[Tensor, "n r"]]:
    """An orthonormal basis (columns) of each ``W_rho = span{rho(g)_ij}``, by irrep name.

    Computed from the matrix entries by SVD (rank ``d^2 / e``); the bases of all irreps
    together form an orthogonal ``|G| x |G|`` matrix.
    """
    cache = getattr(G, "_irrep_basis", None)
    if cache is None:
        cache = {}
        for rep in G.irreps():
            E = rep.matrices.reshape(G.order, -1)
            U, S, _ = torch.linalg.svd(E, full_matrices=False)
            rank = int((S > 1e-8 * S.max()).sum())
            cache[rep.name] = U[:, :rank].contiguous()
        G._irrep_basis = cache  # type: ignore[attr-defined]
    return cache


def _names(G: Group, irreps: Iterable[str | int] | None) -> list[str]:
    reps = G.irreps()
    if irreps is None:
        return [r.name for r in reps]
    return [G.irrep(r).name for r in irreps]


def group_fourier_transform(x: Tensor, G: Group, dim: int = 0) -> dict[str, Tensor]:
    """``x^(rho) = sum_g x[g] rho(g)`` along ``dim`` (size ``|G|``), for every irrep.

    Returns ``{name: tensor}`` with the other dimensions first and ``(d, d)`` last.
    """
    if x.shape[dim] != G.order:
        raise bad_value("x", tuple(x.shape), f"dimension {dim} must have the group's order {G.order}")
    xm = torch.movedim(x.double(), dim, -1)
    return {r.name: torch.einsum("...g,gij->...ij", xm, r.matrices.to(xm.device)) for r in G.irreps()}


def irrep_norms(x: Tensor, G: Group, dim: int = 0, irreps: Iterable[str | int] | None = None) -> pd.Series:
    """``n_rho = ||P_rho x||_F``: the norm of ``x``'s part in ``W_rho`` along ``dim``.

    Returns a Series indexed by irrep name (trivial first).
    """
    if x.shape[dim] != G.order:
        raise bad_value("x", tuple(x.shape), f"dimension {dim} must have the group's order {G.order}")
    xm = torch.movedim(x.double(), dim, 0).reshape(G.order, -1)
    basis = irrep_basis(G)
    names = _names(G, irreps)
    return pd.Series({n: float((basis[n].to(xm.device).T @ xm).norm()) for n in names}, name="norm")


def embedding_irrep_norms(model: nn.Module | dict[str, Tensor] | Tensor, task: Task, operand: str = "both") -> pd.Series:
    """:func:`irrep_norms` of the operand embeddings ``W_E[tok(g)]`` (rows: elements).

    ``operand="both"`` with an offset: root mean square over the a- and b-token rows,
    as :func:`grok_interp.measures.embedding_fourier_norms`.
    """
    task = as_task(task, model)
    check_choice("operand", operand, ("a", "b", "both"))
    G = group_of(task)
    W = embedding_matrix(model).detach().double()
    ops = ("a", "b") if (operand == "both" and task.offset) else (("a",) if operand == "both" else (operand,))
    sq = [irrep_norms(W[task.operand_tokens(o).to(W.device)], G) ** 2 for o in ops]
    return (sum(sq) / len(sq)) ** 0.5


def _full_basis(G: Group) -> tuple[Tensor, list[str], list[int]]:
    basis = irrep_basis(G)
    names = list(basis)
    B = torch.cat([basis[n] for n in names], 1)
    sizes = [basis[n].shape[1] for n in names]
    return B, names, sizes


def neuron_irrep_clusters(model: nn.Module | Probe, task: Task, *, threshold: float = 0.85,
                          hook: str | None = None) -> pd.DataFrame:
    """Each MLP neuron's irrep: the share of its centred activation variance over the
    ``(a, b)`` grid in ``(W_triv + W_rho) x (W_triv + W_rho)`` (2-D group transform
    ``C = B^T X B``, ``B`` the orthonormal :func:`irrep_basis` of all irreps).

    Returns:
        One row per neuron: ``neuron``, ``irrep`` (name, ``""`` if no share reaches
        ``threshold``), ``fve`` (the best share), ``variance``.
    """
    task = as_task(task, model)
    G = group_of(task)
    hook = hook or neuron_hook(model.model if isinstance(model, Probe) else model)
    acts = probe_of(model, fits(model, task), [hook]).act(hook).double()
    n = G.order
    X = acts.reshape(n, n, -1)
    X = X - X.mean(dim=(0, 1), keepdim=True)
    B, names, sizes = _full_basis(G)
    B = B.to(X.device)
    C = torch.einsum("ai,abn,bj->ijn", B, X, B).pow(2)
    total = C.sum(dim=(0, 1))
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    triv = list(range(starts[0], starts[0] + sizes[0]))
    fves = []
    for s, z in zip(starts[1:], sizes[1:]):
        idx = torch.tensor(triv + list(range(s, s + z)))
        fves.append(C[idx[:, None], idx[None, :]].sum(dim=(0, 1)))
    fve = torch.stack(fves) / total.clamp_min(1e-300)
    fve = torch.where(total > 0, fve, torch.zeros_like(fve))
    best_fve, best = fve.max(0)
    labels = [names[1 + int(b)] if float(f) >= threshold else "" for b, f in zip(best, best_fve)]
    return pd.DataFrame({"neuron": range(X.shape[-1]), "irrep": labels, "fve": best_fve.float().tolist(),
                         "variance": (total / (n * n)).float().tolist()})


def key_irreps(model: nn.Module | Probe, task: Task, rule: str = "neurons", *, threshold: float = 0.85,
               embed_ratio: float = 0.25, hook: str | None = None) -> list[str]:
    """The irreps a model uses (generalising :func:`grok_interp.measures.key_frequencies`).

    * ``neurons`` (default): irreps with a neuron in :func:`neuron_irrep_clusters`;
    * ``embedding``: non-trivial irreps whose :func:`embedding_irrep_norms` exceed
      ``embed_ratio`` times the largest non-trivial one.

    Returns names in :meth:`Group.irreps` order (for ``C_p``: ``k<k>`` for each key frequency k).
    """
    task = as_task(task, model)
    check_choice("rule", rule, ("neurons", "embedding"))
    G = group_of(task)
    order = [r.name for r in G.irreps()]
    if rule == "embedding":
        m = model.model if isinstance(model, Probe) else model
        norms = embedding_irrep_norms(m, task).iloc[1:]
        keep = set(norms.index[norms > embed_ratio * norms.max()])
    else:
        keep = set(neuron_irrep_clusters(model, task, threshold=threshold, hook=hook)["irrep"]) - {""}
    return [n for n in order if n in keep]


def irrep_directions(task: Task, irreps: Iterable[str | int], device: Any = None) -> Float[Tensor, "n_pairs r"]:
    """Orthonormal directions over the pairs: ``B_rho[r(a, b)] / sqrt(|G|)`` for each
    irrep (all of ``W_rho`` as functions of the answer). On ``C_p``, irrep ``k<k>`` spans
    the same plane as :func:`grok_interp.measures.trig_directions` ``[k]``."""
    G = group_of(task)
    basis = irrep_basis(G)
    names = _names(G, irreps)
    r = task.labels.reshape(-1)
    if not names:
        return torch.zeros(len(r), 0, dtype=torch.float64, device=device)
    B = torch.cat([basis[n] for n in names], 1).to(device)
    return B[r.to(B.device)] / math.sqrt(G.order)


def _setup(model: Any, data: Any, irreps: Iterable[str | int] | None) -> tuple[Task, Split | None, Tensor, Tensor, Tensor]:
    task, split = as_task_split(data, "data")
    probe = probe_of(model, fits(model, task))
    if irreps is None:
        irreps = key_irreps(model, task)
    L = probe.logits().double()
    Q = irrep_directions(task, irreps, L.device)
    R = Q @ (Q.T @ L)
    return task, split, L, R, task.labels.reshape(-1).to(L.device)


def _ce(logits: Tensor, answers: Tensor) -> float:
    return math.nan if len(answers) == 0 else float(F.cross_entropy(logits, answers))


@torch.no_grad()
def irrep_restricted_loss(model: nn.Module | Probe, data: TaskRun | Split | Task, irreps: Iterable[str | int] | None = None,
                          *, pairs: str = "all") -> float:
    """The paper's restricted loss over irreps: ``R = Q Q^T L`` (each class's logits over
    the pairs projected onto :func:`irrep_directions`), ``CE(R + mean_pairs(L - R), r)``.

    On ``Task(p, "add")`` (or ``group_task("C<p>")``) with ``irreps=["k<k>", ...]`` it equals
    ``restricted_loss(model, task, [k, ...])``. ``irreps=None``: :func:`key_irreps`.
    """
    task, split, L, R, r = _setup(model, data, irreps)
    sel = pair_mask(task, split, pairs)
    return _ce((R + (L - R).mean(0, keepdim=True))[sel], r[sel])


@torch.no_grad()
def irrep_excluded_loss(model: nn.Module | Probe, data: TaskRun | Split | Task, irreps: Iterable[str | int] | None = None,
                        *, pairs: str = "train", per_irrep: bool = False) -> float | dict[str, float]:
    """The paper's excluded loss over irreps: ``CE(L - R, r)`` on the training pairs
    (``R`` as in :func:`irrep_restricted_loss`); ``per_irrep`` removes one at a time."""
    task, split = as_task_split(data, "data")
    sel = pair_mask(task, split, pairs)
    if irreps is None:
        irreps = key_irreps(model, task)
    names = _names(group_of(task), irreps)
    groups = [[n] for n in names] if per_irrep else [names]
    out = {}
    for grp in groups:
        _, _, L, R, r = _setup(model, data, grp)
        out[" ".join(grp)] = _ce((L - R)[sel], r[sel])
    return out if per_irrep else next(iter(out.values()))


def cayley_steps(E: Float[Tensor, "n d"], task: Task) -> Float[Tensor, " m"]:
    """The distances ``||E[g s] - E[g]||`` for every element ``g`` and generator ``s`` of
    the task's group (rows of ``E`` indexed by element); on ``C_p`` with generator 1 they
    are the consecutive distances ``||E[i + 1 mod p] - E[i]||``, in that order."""
    G = group_of(task)
    nxt = G.table[:, torch.tensor(G.generators)].to(E.device)  # (n, |S|)
    return (E[nxt] - E[:, None, :]).norm(dim=-1).reshape(-1)


def cayley_med(model: nn.Module | dict[str, Tensor] | Tensor, task: Task) -> float:
    """MED along the Cayley graph: ``(1/(|G| |S|)) sum_g sum_{s in S} ||E[tok(g s)] - E[tok(g)]||``
    over the group's generators ``S`` (operand-a tokens; with an offset, the mean over
    both operand ranges). On ``C_p`` (generator 1) it is ``med(model, task)``."""
    task = as_task(task, model)
    W = embedding_matrix(model).detach().double()
    vals = [float(cayley_steps(W[task.operand_tokens(o).to(W.device)], task).mean())
            for o in (("a", "b") if task.offset else ("a",))]
    return sum(vals) / len(vals)
