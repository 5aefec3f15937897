"""The TransformerLens Grokking demo's and ARENA's pictures of the Fourier circuit.

Each function draws data it is given (tensors over the ``(a, b)`` grid, a weight
matrix, a cluster table); none trains or runs a model. Given a
:class:`~grok_interp.TaskRun` instead, it takes that data from the function of
:mod:`grok_interp.viz.data` that names it (one hooked forward over the grid, or the
weights) and draws the result. Grids put ``a`` down the rows and
``b`` along the columns, origin at the bottom left, as :func:`~grok_interp.viz.plot_split`.

* :func:`plot_attention_grid`: each head's attention from ``=`` to ``a`` over (a, b).
* :func:`plot_neuron_grid`: MLP neuron activations over (a, b).
* :func:`plot_fourier_2d`: neuron activations in the 2-D Fourier basis ``F X F^T``.
* :func:`plot_logit_map_fourier`: ``W_L = W_out W_U`` in the Fourier basis of the
  output, neurons grouped by frequency cluster.
* :func:`plot_trig_fit`: how well ``{1, cos w_k a, sin w_k a} x {1, cos w_k b,
  sin w_k b}`` fits each neuron of cluster ``k`` (linear and quadratic terms).
* :func:`plot_embedding_clock`: the operand embeddings on each key frequency's
  ``(cos, sin)`` plane: a circle, residue ``a`` at angle ``w_k a``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from matplotlib.colors import TwoSlopeNorm
from torch import Tensor

from .._validate import bad_value, check_choice
from ..measures import fourier_basis, fourier_basis_names, fourier_transform_1d, fourier_transform_2d
from ..protocols import TaskRun, is_run
from . import data as viz_data
from ._figure import InlineFigure, grid_shape, place_axes, set_title

__all__ = [
    "plot_attention_grid",
    "plot_neuron_grid",
    "plot_fourier_2d",
    "plot_logit_map_fourier",
    "plot_trig_fit",
    "plot_embedding_clock",
]

_POSITIONS = {"a": 0, "b": 1, "=": 2}


def _is_run(data: Any) -> bool:
    return is_run(data, task=True)


def _at(step: int | None) -> str:
    return f" at step {step}" if step is not None else ""


def _np(x: Any) -> np.ndarray:
    return np.asarray(torch.as_tensor(x).detach().double().cpu())


def _grid(ax: Any, n: int, panel_w: float, panel_h: float, pad_w: float, pad_h: float = 0.5) -> tuple[Any, list[Any]]:
    """The figure and ``n`` axes of a grid plot: a new figure of panels at most four
    wide, or the caller's ``ax`` (``n`` axes)."""
    rows, cols = grid_shape(n)
    return place_axes(ax, n, panel_w * cols + pad_w, panel_h * rows + pad_h, grid=(rows, cols))


def _imshow_grid(ax: Any, grid: np.ndarray, **kw: Any) -> Any:
    im = ax.imshow(grid, origin="lower", interpolation="nearest", **kw)
    ax.set_xlabel("b")
    ax.set_ylabel("a")
    return im


# --- attention and neurons over the (a, b) grid --------------------------------------
def plot_attention_grid(
    data: Float[Tensor, "head p p"] | np.ndarray | TaskRun,
    *,
    step: int | None = None,
    layer: int = 0,
    source: str = "a",
    title: str | None = None,
    ax: Any = None,
) -> InlineFigure:
    """Attention from the ``=`` position to one input position, over every (a, b), per head.

    The TransformerLens demo's first picture: ``pattern[(a, b), head, -1, 0]``, read
    from ``blocks.{layer}.attn.hook_pattern``. A grokked model's heads attend to ``a``
    with a weight that is itself periodic in ``a`` and ``b`` at the key frequencies.

    Args:
        data: Attention weights ``(n_heads, p, p)`` (``[h, a, b]``), or a TaskRun
            (then :func:`grok_interp.viz.data.attention_grid`).
        step: Checkpoint of the run (None: final model); in the title for weights.
        layer: Attention layer.
        source: The key position attended to: ``a`` (default), ``b`` or ``=``.
        title: Figure title.
        ax: Axes to draw into instead of a new figure, one per head.

    Returns:
        One panel per head, colour from 0 to 1.
    """
    check_choice("source", source, tuple(_POSITIONS))
    if _is_run(data):
        data = viz_data.attention_grid(data, step, layer=layer, source=_POSITIONS[source])
    grid = _np(data)
    if grid.ndim == 2:
        grid = grid[None]
    if grid.ndim != 3 or grid.shape[1] != grid.shape[2]:
        raise bad_value("data", tuple(grid.shape), "must be attention weights (n_heads, p, p) or a GrokRun")
    n = grid.shape[0]
    own = ax is None
    fig, axes = _grid(ax, n, 3.2, 3.1, 0.8)
    im = None
    for h, ax in enumerate(axes):
        im = _imshow_grid(ax, grid[h], cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"head {h}")
    fig.colorbar(im, ax=axes, label=f"attention = -> {source}", shrink=0.8)
    set_title(fig, axes, title, f"attention from '=' to '{source}' over (a, b), layer {layer}{_at(step)}", own)
    return fig


def plot_neuron_grid(
    data: Float[Tensor, "p p n"] | np.ndarray | TaskRun,
    neurons: Sequence[int] | None = None,
    *,
    step: int | None = None,
    n: int = 6,
    hook: str | None = None,
    clusters: pd.DataFrame | bool | None = None,
    title: str | None = None,
    ax: Any = None,
) -> InlineFigure:
    """MLP neuron activations at the ``=`` position over every (a, b).

    After grokking each neuron's activation is a periodic pattern of one key frequency
    (stripes along ``a + b`` plus checkerboards of ``a`` and ``b``), the demo's
    "neuron activations" picture.

    Args:
        data: Activations ``(p, p, n_neurons)``, or a TaskRun (then
            :func:`grok_interp.viz.data.activations` of the last MLP layer's
            ``hook_post``, or ``hook``).
        neurons: Which neurons to draw (indices into the last dim). Default: with
            clusters, :func:`grok_interp.viz.data.representative_neurons` (the most
            active neuron of each frequency cluster, then the most active others);
            without, the first; ``n`` in all.
        step: Checkpoint of the run (None: final model); in the title for activations.
        n: How many neurons by default.
        hook: Activation hook for a run.
        clusters: A cluster table (``neuron, frequency, variance``) that picks the
            default neurons and labels each panel with its frequency; True computes it
            from the activations (:func:`grok_interp.viz.data.activation_clusters`).
            Default: True for a run, none for activations.
        title: Figure title.
        ax: Axes to draw into instead of a new figure, one per neuron.

    Returns:
        One panel per neuron, titled with its index and frequency cluster.
    """
    if _is_run(data):
        data = viz_data.activations(data, step, hook)
        clusters = True if clusters is None else clusters
    acts = _np(data)
    if acts.ndim == 2:
        acts = acts[..., None]
    if acts.ndim != 3 or acts.shape[0] != acts.shape[1]:
        raise bad_value("data", tuple(acts.shape), "must be activations (p, p, n_neurons) or a GrokRun")
    if clusters is True:
        clusters = viz_data.activation_clusters(acts)
    if isinstance(clusters, pd.DataFrame):
        default = viz_data.representative_neurons(clusters, n)
        freq = dict(zip(clusters["neuron"].astype(int), clusters["frequency"].astype(int)))
    else:
        default, freq = list(range(min(n, acts.shape[2]))), {}
    chosen = list(default if neurons is None else neurons)
    if not chosen or any(not 0 <= int(i) < acts.shape[2] for i in chosen):
        raise bad_value("neurons", chosen, f"must be indices in [0, {acts.shape[2]})")
    own = ax is None
    fig, axes = _grid(ax, len(chosen), 3.1, 3.0, 0.6)
    for ax, i in zip(axes, chosen):
        im = _imshow_grid(ax, acts[:, :, int(i)], cmap="viridis")
        k = freq.get(int(i))
        ax.set_title(f"neuron {int(i)}" + (f" (k={k})" if k else " (no frequency)" if k == 0 else ""))
        fig.colorbar(im, ax=ax, shrink=0.75)
    set_title(fig, axes, title, f"neuron activations over (a, b){_at(step)}", own)
    return fig


# --- the Fourier basis -------------------------------------------------------------------
def _basis_ticks(ax: Any, p: int, axis: str, max_labels: int = 24) -> None:
    """Readable ticks for the cos-first Fourier basis on a heatmap axis.

    Up to ``max_labels`` basis functions, every one is labelled (``const``, ``cos 1``,
    ``sin 1``, ...). Beyond, the labels would overlap: each frequency ``k`` is one tick
    at the middle of its (cos k, sin k) pair, labelled ``k``, only every few ``k``
    labelled so that at most ``max_labels`` show; faint lines separate the pairs, and a
    small tick marks each sin row, so cos (first of a pair) and sin (second) stay
    distinguishable. The axis label says so.
    """
    names = fourier_basis_names(p)
    set_ticks = ax.set_xticks if axis == "x" else ax.set_yticks
    line = ax.axvline if axis == "x" else ax.axhline
    if len(names) <= max_labels:
        set_ticks(range(p), names, fontsize=7, **({"rotation": 90} if axis == "x" else {}))
        return
    K = (p - 1) // 2
    every = max(1, math.ceil((K + 1) / max_labels))
    ks = [k for k in range(1, K + 1) if k % every == 0]
    set_ticks([0] + [2 * k - 0.5 for k in ks], ["const"] + [str(k) for k in ks], fontsize=7)
    set_ticks([2 * k for k in range(1, K + 1)], minor=True)  # a short tick on each sin row
    ax.tick_params(axis=axis, which="minor", length=2)
    for k in range(1, K + 1):
        line(2 * k - 1.5, color="#999999", linewidth=0.25, alpha=0.5)
    label = ax.set_xlabel if axis == "x" else ax.set_ylabel
    current = (ax.get_xlabel() if axis == "x" else ax.get_ylabel()) or "basis function"
    label(f"{current} (frequency k: cos k, then sin k)")


def plot_fourier_2d(
    data: Float[Tensor, "p p *n"] | np.ndarray | TaskRun,
    *,
    step: int | None = None,
    neuron: int | None = None,
    hook: str | None = None,
    title: str | None = None,
    ax: Any = None,
) -> InlineFigure:
    """Activations in the 2-D Fourier basis: ``|F X F^T|^2`` over (a, b), averaged over neurons.

    The demo's "norm of Fourier components of neuron activations": each neuron's
    activation grid ``X`` (mean removed) is transformed with the cos-first basis ``F``
    of :func:`grok_interp.measures.fourier_basis`; the mean of the squared coefficients
    over neurons is drawn. A grokked model lights up a few ``{const, cos k, sin k}``
    rows and columns and their crossings (the linear and quadratic terms of the key
    frequencies); a memorising model is spread over the whole square.

    Args:
        data: Activations ``(p, p)`` or ``(p, p, n)``, or a TaskRun (then
            :func:`grok_interp.viz.data.activations`: last MLP layer's ``hook_post``, or
            ``hook``).
        step: Checkpoint of the run (None: final model); in the title for activations.
        neuron: Draw this neuron alone (signed coefficients) instead of the mean square.
        hook: Activation hook for a run.
        title: Axes title.
        ax: A matplotlib axes to draw into instead of a new figure.

    Returns:
        A ``p x p`` heatmap, rows the ``a`` basis function, columns the ``b`` one.
    """
    acts = _np(viz_data.activations(data, step, hook) if _is_run(data) else data)
    if acts.ndim == 2:
        acts = acts[..., None]
    if acts.ndim != 3 or acts.shape[0] != acts.shape[1] or acts.shape[0] % 2 == 0:
        raise bad_value("data", tuple(acts.shape), "must be activations (p, p) or (p, p, n), p odd, or a GrokRun")
    p = acts.shape[0]
    centred = torch.as_tensor(acts - acts.mean(axis=(0, 1), keepdims=True))
    coef = _np(fourier_transform_2d(centred))
    fig, (ax,) = place_axes(ax, 1, 7.4, 6.4)
    if neuron is not None:
        if not 0 <= neuron < coef.shape[2]:
            raise bad_value("neuron", neuron, f"must lie in [0, {coef.shape[2]})")
        shown = coef[:, :, neuron]
        lim = float(np.abs(shown).max()) or 1.0
        im = ax.imshow(shown, cmap="RdBu_r", norm=TwoSlopeNorm(0, -lim, lim), interpolation="nearest")
        label, what = "coefficient", f"neuron {neuron}"
    else:
        shown = (coef**2).mean(axis=2)
        im = ax.imshow(shown, cmap="Blues", interpolation="nearest")
        label, what = "mean squared coefficient", f"mean over {coef.shape[2]} neurons"
    ax.set_xlabel("basis function of b")
    ax.set_ylabel("basis function of a")
    _basis_ticks(ax, p, "x")
    _basis_ticks(ax, p, "y")
    fig.colorbar(im, ax=ax, label=label, shrink=0.85)
    ax.set_title(title or f"activations in the 2-D Fourier basis ({what}){_at(step)}")
    return fig


def _cluster_order(clusters: pd.DataFrame | None, n: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Neuron order (clusters by frequency, 'none' last) and (frequency, start, stop) runs."""
    if clusters is None:
        return np.arange(n), []
    freq = clusters.set_index("neuron")["frequency"].reindex(range(n)).fillna(0).astype(int).to_numpy()
    keys = sorted(set(freq[freq > 0].tolist())) + ([0] if (freq == 0).any() else [])
    order, runs, start = [], [], 0
    for k in keys:
        members = np.flatnonzero(freq == k).tolist()
        order += members
        runs.append((k, start, start + len(members)))
        start += len(members)
    return np.asarray(order), runs


def plot_logit_map_fourier(
    data: Float[Tensor, "d_mlp p"] | np.ndarray | TaskRun,
    *,
    step: int | None = None,
    clusters: pd.DataFrame | None = None,
    title: str | None = None,
    ax: Any = None,
) -> InlineFigure:
    """``W_L = W_out W_U`` in the Fourier basis of the output class, neurons by cluster.

    Row ``n`` is neuron ``n``'s direct effect on the logits, ``W_L[n] @ F^T``: after
    grokking a neuron of cluster ``k`` writes only ``cos k`` and ``sin k`` of the output
    (ARENA's "W_logit in the Fourier basis, rearranged by neuron cluster").

    Args:
        data: ``W_L`` ``(d_mlp, p)`` (see :func:`grok_interp.measures.neuron_logit_map`),
            or a TaskRun (then :func:`grok_interp.viz.data.logit_map`, and
            :func:`grok_interp.viz.data.neuron_clusters` unless ``clusters`` is given).
        step: Checkpoint of the run (None: final model); in the title for a matrix.
        clusters: A :func:`~grok_interp.measures.neuron_frequency_clusters` table to
            order the neurons by (default for a run: computed; for a matrix: none).
        title: Axes title.
        ax: A matplotlib axes to draw into instead of a new figure.

    Returns:
        A ``d_mlp x p`` heatmap, diverging around 0, cluster boundaries marked.
    """
    if _is_run(data):
        if clusters is None:
            clusters = viz_data.neuron_clusters(data, step)
        data = viz_data.logit_map(data, step)
    wl = _np(data)
    if wl.ndim != 2 or wl.shape[1] % 2 == 0:
        raise bad_value("data", tuple(wl.shape), "must be W_L (d_mlp, p), p odd, or a GrokRun")
    coef = _np(fourier_transform_1d(torch.as_tensor(wl), dim=1))
    order, runs = _cluster_order(clusters, wl.shape[0])
    shown = coef[order]
    fig, (ax,) = place_axes(ax, 1, 10, 6.2)
    lim = float(np.abs(shown).max()) or 1.0
    im = ax.imshow(shown, aspect="auto", cmap="RdBu_r", norm=TwoSlopeNorm(0, -lim, lim), interpolation="nearest")
    ax.set_xlabel("Fourier component of the output class")
    _basis_ticks(ax, wl.shape[1], "x", max_labels=40)
    for k, start, stop in runs:
        if start > 0:
            ax.axhline(start - 0.5, color="k", linewidth=0.6)
        ax.annotate(f"k={k}" if k else "none", (1.005, (start + stop - 1) / 2), xycoords=("axes fraction", "data"),
                    va="center", fontsize=8)
    ax.set_ylabel("neuron" + (" (grouped by frequency cluster)" if runs else ""))
    fig.colorbar(im, ax=ax, label="W_L coefficient", pad=0.07)
    ax.set_title(title or f"W_L = W_out W_U in the Fourier basis{_at(step)}")
    return fig


def trig_fit(acts: Float[Tensor, "p p n"] | np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Fit each neuron's activation grid by frequency ``k``'s nine terms.

    With ``F`` the cos-first basis and ``X`` a neuron's grid (mean removed), the
    coefficients of ``F X F^T`` in rows/columns ``{const, cos k, sin k}`` give the fit
    ``X_k = sum c_ij F_i(a) F_j(b)``: *linear* terms ``cos/sin(w_k a)``, ``cos/sin(w_k b)``
    and *quadratic* terms ``cos(w_k a) cos(w_k b)``, ... (those that make
    ``cos(w_k (a + b))``).

    Returns:
        ``fve`` (share of variance of the nine terms), ``linear``, ``quadratic`` (shares
        of each group), one entry per neuron; ``fit`` the fitted grids ``(p, p, n)``
        (mean added back).
    """
    x = torch.as_tensor(_np(acts))
    p = x.shape[0]
    mean = x.mean(dim=(0, 1), keepdim=True)
    coef = fourier_transform_2d(x - mean)
    total = coef.pow(2).sum(dim=(0, 1)).clamp_min(1e-300)
    idx = torch.tensor([0, 2 * k - 1, 2 * k])
    block = torch.zeros_like(coef)
    block[idx[:, None], idx[None, :]] = coef[idx[:, None], idx[None, :]]
    lin = sum(coef[i, j].pow(2) for i, j in ((0, 2 * k - 1), (0, 2 * k), (2 * k - 1, 0), (2 * k, 0)))
    quad = sum(coef[i, j].pow(2) for i in (2 * k - 1, 2 * k) for j in (2 * k - 1, 2 * k))
    F = fourier_basis(p, torch.float64)
    fit = torch.einsum("ia,ijn,jb->abn", F, block, F) + mean
    return {
        "fve": _np(block.pow(2).sum(dim=(0, 1)) / total),
        "linear": _np(lin / total),
        "quadratic": _np(quad / total),
        "fit": _np(fit),
    }


def plot_trig_fit(
    data: Float[Tensor, "p p n"] | np.ndarray | TaskRun,
    clusters: pd.DataFrame | None = None,
    *,
    step: int | None = None,
    hook: str | None = None,
    title: str | None = None,
    ax: Any = None,
) -> InlineFigure:
    """How well each frequency cluster's neurons are fitted by that frequency's trig terms.

    For every neuron of cluster ``k`` the nine terms ``{1, cos w_k a, sin w_k a} x
    {1, cos w_k b, sin w_k b}`` are fitted to its activation grid (:func:`trig_fit`).
    Left: the share of each neuron's variance they explain, split into linear
    (``cos/sin w_k a``, ``cos/sin w_k b``) and quadratic terms (products: what
    ``cos(w_k (a + b))`` is made of), as in ARENA's "fraction of variance explained by
    quadratic terms". Right: for the most active neuron of each cluster, its activation
    against the fit over every pair (on the diagonal when the fit is exact; ReLU's
    floor shows as a flat run at the bottom).

    Args:
        data: Activations ``(p, p, n)``, or a TaskRun (then
            :func:`grok_interp.viz.data.activations`, last MLP layer's ``hook_post``).
        clusters: A :func:`~grok_interp.measures.neuron_frequency_clusters` table
            (default: :func:`grok_interp.viz.data.activation_clusters` of the
            activations, threshold 0.85).
        step: Checkpoint of the run (None: final model); in the title for activations.
        hook: Activation hook for a run.
        title: Figure title.
        ax: Two axes to draw into (shares, fit) instead of a new figure.

    Returns:
        Two panels.
    """
    acts = _np(viz_data.activations(data, step, hook) if _is_run(data) else data)
    if acts.ndim != 3 or acts.shape[0] != acts.shape[1]:
        raise bad_value("data", tuple(acts.shape), "must be activations (p, p, n) or a GrokRun")
    p = acts.shape[0]
    if clusters is None:
        clusters = viz_data.activation_clusters(acts)
    freq = clusters.set_index("neuron")["frequency"].reindex(range(acts.shape[2])).fillna(0).astype(int).to_numpy()
    keys = sorted(set(freq[freq > 0].tolist()))
    own = ax is None
    fig, (left, right) = place_axes(ax, 2, 12, 4.6, width_ratios=[1.3, 1])
    default = f"trig fit per neuron cluster{_at(step)}"
    if not keys:
        for ax in (left, right):
            ax.text(0.5, 0.5, "no neuron has a frequency (nothing to fit)", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
        set_title(fig, [left, right], title, default, own)
        return fig
    colors = [f"C{i % 10}" for i in range(len(keys))]
    lo = 0.0
    rng = np.random.default_rng(0)  # a local generator: jitter without touching global state
    for i, (k, color) in enumerate(zip(keys, colors)):
        members = np.flatnonzero(freq == k)
        res = trig_fit(acts[:, :, members], k)
        lin, quad = res["linear"].mean(), res["quadratic"].mean()
        left.bar(i, lin, color=color, alpha=0.45, width=0.7)
        left.bar(i, quad, bottom=lin, color=color, width=0.7)
        jitter = rng.uniform(-0.25, 0.25, len(members))
        left.scatter(i + jitter, res["fve"], s=8, color="k", zorder=3)
        left.annotate(f"{len(members)}", (i, 1.02), ha="center", fontsize=8)
        top = members[np.argmax(acts[:, :, members].reshape(p * p, -1).var(axis=0))]
        one = trig_fit(acts[:, :, [top]], k)
        right.scatter(one["fit"][:, :, 0].reshape(-1), acts[:, :, top].reshape(-1), s=4, alpha=0.5, color=color,
                      label=f"k={k}: neuron {top} (FVE {one['fve'][0]:.2f})")
        lo = min(lo, float(one["fit"].min()))
    left.set_xticks(range(len(keys)), [f"k={k}" for k in keys])
    left.set_ylim(0, 1.08)
    left.set_ylabel("share of the neuron's variance")
    left.set_title("bars: mean linear (light) + quadratic (dark) share;\ndots: each neuron's total; numbers: neurons",
                   fontsize=9)
    hi = float(acts.max())
    right.plot([min(lo, 0), hi], [min(lo, 0), hi], color="#888", linewidth=1, linestyle="--")
    right.set_xlabel("trig fit (9 terms of its frequency)")
    right.set_ylabel("activation")
    right.legend(fontsize=7, loc="upper left", markerscale=3)
    right.set_title("most active neuron of each cluster, every (a, b)", fontsize=9)
    set_title(fig, [left, right], title, default, own)
    return fig


# --- the embedding clock -------------------------------------------------------------------
def plot_embedding_clock(
    data: Float[Tensor, "p d_model"] | np.ndarray | TaskRun,
    key_freqs: Iterable[int] | None = None,
    *,
    step: int | None = None,
    operand: str = "a",
    title: str | None = None,
    ax: Any = None,
) -> InlineFigure:
    """The operand embeddings on each key frequency's ``(cos, sin)`` plane: a clock.

    For frequency ``k`` the directions ``u_cos = F_cos,k W`` and ``u_sin = F_sin,k W``
    (``W``: the ``p`` operand rows of ``W_E``, ``F`` the Fourier basis) span a plane of
    the residual stream; each residue's embedding, mean removed, is projected on an
    orthonormal basis of that plane. When the model uses ``k``, the residues lie on a
    circle at angles ``w_k a`` (Nanda et al.): the line joins them in that angular order
    (``a = 0, k^-1, 2 k^-1, ... mod p``), a regular polygon for a perfect clock. The
    share of the embedding's variance in the plane is printed in each panel.

    Args:
        data: The operand rows ``(p, d_model)`` of ``W_E`` (residue order), or a TaskRun
            (then :func:`grok_interp.viz.data.embedding_rows`).
        key_freqs: Frequencies to draw. Default: for a run, its final model's
            (:func:`grok_interp.viz.data.final_key_frequencies`, at every ``step``, so
            checkpoints compare on the same planes); otherwise, or when no neuron has a
            frequency, those whose embedding norm exceeds a quarter of the largest.
        step: Checkpoint of the run (None: final model); in the title for rows.
        operand: ``a`` or ``b`` (they differ only when the task has an operand offset).
        title: Figure title.
        ax: Axes to draw into instead of a new figure, one per frequency.

    Returns:
        One square panel per frequency.
    """
    check_choice("operand", operand, ("a", "b"))
    if _is_run(data):
        if key_freqs is None:  # the final model's, held fixed over checkpoints as in the literature
            key_freqs = viz_data.final_key_frequencies(data) or None
        data = viz_data.embedding_rows(data, step, operand)
    W = _np(data)
    p = W.shape[0]
    if W.ndim != 2 or p % 2 == 0 or p < 3:
        raise bad_value("data", tuple(W.shape), "must be the p operand rows of W_E (p, d_model), p odd, or a GrokRun")
    F = _np(fourier_basis(p, torch.float64))
    coef = F @ W  # (p basis functions, d_model)
    if key_freqs is None:
        norms = np.sqrt((coef[1::2] ** 2).sum(1) + (coef[2::2] ** 2).sum(1))
        key_freqs = [int(i) + 1 for i in np.flatnonzero(norms > 0.25 * norms.max())]
    keys = [int(k) for k in key_freqs]
    K = (p - 1) // 2
    if not keys or any(not 1 <= k <= K for k in keys):
        raise bad_value("key_freqs", keys, f"must be a non-empty list of frequencies in [1, {K}]")
    centred = W - W.mean(0, keepdims=True)
    total = float((centred**2).sum()) or 1.0
    own = ax is None
    fig, axes = _grid(ax, len(keys), 3.4, 3.5, 0.6)
    residues = np.arange(p)
    for ax, k in zip(axes, keys):
        Q, _ = np.linalg.qr(np.stack([coef[2 * k - 1], coef[2 * k]], axis=1))  # (d_model, 2)
        xy = centred @ Q
        order = (np.arange(p) * pow(k, -1, p)) % p  # residues in angular order w_k a
        loop = np.append(order, order[0])
        ax.plot(xy[loop, 0], xy[loop, 1], color="#bbbbbb", linewidth=0.8, zorder=1)
        ax.scatter(xy[:, 0], xy[:, 1], c=residues, cmap="twilight", s=22, zorder=2, edgecolors="none")
        label_every = max(1, p // 24)
        for r in residues[::label_every]:
            ax.annotate(str(r), xy[r], fontsize=6, ha="center", va="bottom", xytext=(0, 2), textcoords="offset points")
        share = float((xy**2).sum()) / total
        ax.set_title(f"k={k}: {100 * share:.0f}% of W_E variance", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("cos direction")
        ax.set_ylabel("sin direction")
    set_title(fig, axes, title, f"embedding clock: operand {operand} on each (cos k, sin k) plane{_at(step)}", own)
    return fig
