"""Plots of grokking runs (matplotlib, Agg): each function returns a ``Figure``.

Every plot draws the data it is given (a history DataFrame, a tensor of norms, a
cluster table, a split and a correctness grid); none trains or runs a model. For
convenience each also accepts a run (:class:`~grok_interp.Run`, or
:class:`~grok_interp.TaskRun` where the data needs the task): the run goes to the
function of :mod:`grok_interp.viz.data` that names the data, and the plot draws what
it returns. Figures are built with the object API on an Agg canvas (no pyplot, no open
figures left behind, whatever backend the session uses). They are
:class:`~grok_interp.viz.InlineFigure` objects: a notebook cell that ends in one
displays it (no ``%matplotlib`` magic), ``fig.show()`` works in a notebook or under a
GUI backend, and :func:`save_figure` writes PNG and SVG anywhere, headless included.

* :func:`plot_training`: train/test loss and accuracy over steps, log-x, optional
  smoothing as in the paper, events as vertical lines.
* :func:`plot_measures`: MED and any other measures over steps, each beside test loss.
* :func:`plot_embedding_fourier_norms`: embedding norm per Fourier frequency.
* :func:`plot_neuron_clusters`: MLP neurons grouped by their frequency.
* :func:`plot_split`: the (a, b) grid of train, test and forced-test pairs.
* :func:`plot_table`: any DataFrame (e.g. ``compare_measures``) as a figure.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from scipy.ndimage import gaussian_filter1d
from torch import Tensor

from .._validate import bad_value
from ..protocols import Run, TaskRun, is_run
from ..tasks import Split
from . import data as viz_data
from ._figure import new_figure, place_axes, set_title

__all__ = [
    "smooth",
    "plot_training",
    "plot_measures",
    "plot_embedding_fourier_norms",
    "plot_neuron_clusters",
    "plot_split",
    "plot_table",
    "save_figure",
    "BASE_COLUMNS",
]

#: History columns written by every run; other columns are recorded measures.
BASE_COLUMNS = viz_data.BASE_COLUMNS

_TRAIN_COLOR, _TEST_COLOR = "#1f77b4", "#d62728"
_EVENT_STYLE = {"memorised_at": ("memorised", "#555555", ":"), "grokked_at": ("grokked", "#2ca02c", "--")}


def _figure(width: float, height: float) -> Figure:
    return new_figure(width, height)


_history = viz_data.history


def _marks(events: bool | Mapping[str, int | None], hist: pd.DataFrame, source: Any = None) -> dict[str, int]:
    """Event steps to mark: computed from the history (True; grokked at ``source``'s own
    grok threshold when it is a run, else 0.99), none (False), or given."""
    if events is True:
        return viz_data.event_steps(hist, viz_data.grok_threshold_of(source))
    if events is False:
        return {}
    unknown = sorted(set(events) - set(_EVENT_STYLE))
    if unknown:
        raise bad_value("events", unknown, f"unknown events; known: {list(_EVENT_STYLE)}")
    return {k: int(v) for k, v in events.items() if v is not None}


def _mark_events(ax: Any, marks: dict[str, int], label: bool) -> None:
    for key, step in marks.items():
        name, color, style = _EVENT_STYLE[key]
        ax.axvline(step, color=color, linestyle=style, linewidth=1.2, label=f"{name} ({step})" if label else None)


def smooth(
    values: Sequence[float] | np.ndarray,
    steps: Sequence[float] | np.ndarray | None = None,
    *,
    window: float = 1001,
    sigma: float = 10,
    start: float = 1000,
) -> np.ndarray:
    """The paper's smoothing for plots: a centred window mean, then a Gaussian filter.

    ``out = gaussian_filter1d(window_mean(values), sigma)``, with ``window`` and
    ``sigma`` given in *steps* and converted to rows with the median step spacing (a
    history row every 10 steps turns ``window=1001`` into 101 rows). Rows before
    ``start`` keep their raw values, as in the reference code (the fast early
    transient is not blurred). The reference code updates its window mean in place,
    so its left half mixes already-smoothed values; this uses the plain centred mean.

    Args:
        values: The series.
        steps: The step of each value (default 0, 1, 2, ...).
        window: Window of the mean, in steps (>= 1).
        sigma: Standard deviation of the Gaussian, in steps (0: no Gaussian).
        start: Steps before this are left raw.

    Returns:
        The smoothed series, same length as ``values`` (NaNs are ignored by the mean).
    """
    y = np.asarray(values, dtype=float)
    x = np.arange(len(y), dtype=float) if steps is None else np.asarray(steps, dtype=float)
    if len(x) != len(y):
        raise bad_value("steps", len(x), f"must have one step per value ({len(y)})")
    if window < 1:
        raise bad_value("window", window, "must be >= 1 step")
    if sigma < 0:
        raise bad_value("sigma", sigma, "must be >= 0")
    if len(y) < 2:
        return y.copy()
    spacing = float(np.median(np.diff(x))) or 1.0
    rows = max(1, int(round(window / spacing)))
    out = pd.Series(y).rolling(rows, center=True, min_periods=1).mean().to_numpy()
    if sigma > 0:
        out = gaussian_filter1d(out, sigma / spacing, mode="nearest")
    return np.where(x < start, y, out)


def _positive_steps(df: pd.DataFrame, log_x: bool) -> pd.DataFrame:
    return df[df["step"] > 0] if log_x else df


def plot_training(
    data: Run | pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    smoothing: bool = False,
    window: float = 1001,
    sigma: float = 10,
    start: float = 1000,
    log_x: bool = True,
    events: bool | Mapping[str, int | None] = True,
    log_smooth: bool = True,
    title: str | None = None,
    ax: Any = None,
) -> Figure:
    """Train/test loss (log y) and accuracy over steps, on a log step axis.

    Args:
        data: A history DataFrame (or list of rows) with ``step``, ``train_loss``,
            ``test_loss``, ``train_acc``, ``test_acc``, or a :class:`~grok_interp.Run`
            (its history).
        smoothing: Draw :func:`smooth` curves over faint raw ones.
        window, sigma, start: Smoothing parameters, in steps (see :func:`smooth`).
        log_x: Log step axis (step 0 is left out: it has no place on a log axis).
        events: Mark memorisation and grokking: True computes them from the history
            (:func:`grok_interp.measures.phases`; grokked: test accuracy >= 0.99, or the
            run's own ``grok_threshold``), a mapping gives them
            (``{"memorised_at": 220, "grokked_at": None}``), False draws none.
        log_smooth: Smooth ``log(loss)`` (the quantity the log axis shows) rather than
            the loss. A window mean of a loss that falls by orders of magnitude is
            dominated by its largest values, which draws steps and bumps on a log
            axis; ``False`` smooths the raw values as the reference code does.
        title: Figure title.
        ax: Two matplotlib axes to draw into (loss, accuracy) instead of a new figure.

    Returns:
        A two-panel figure (loss, accuracy); with ``ax``, the figure holding them.
    """
    df = _history(data)
    missing = [c for c in BASE_COLUMNS if c not in df.columns]
    if missing:
        raise bad_value("data", f"columns {list(df.columns)}", f"needs columns {missing}")
    marks = _marks(events, df, data)
    df = _positive_steps(df, log_x)
    fig, (ax_loss, ax_acc) = place_axes(ax, 2, 11, 4)
    if _no_history(df, [ax_loss, ax_acc]):
        return fig
    for ax, kind, ylabel in ((ax_loss, "loss", "cross-entropy loss"), (ax_acc, "acc", "accuracy")):
        for split, color in (("train", _TRAIN_COLOR), ("test", _TEST_COLOR)):
            col = f"{split}_{kind}"
            if smoothing:
                ax.plot(df["step"], df[col], color=color, alpha=0.25, linewidth=1)
                in_log = log_smooth and kind == "loss" and bool((df[col] > 0).all())
                values = np.log(df[col]) if in_log else df[col]
                smoothed = smooth(values, df["step"], window=window, sigma=sigma, start=start)
                ax.plot(df["step"], np.exp(smoothed) if in_log else smoothed,
                        color=color, linewidth=1.8, label=f"{split} (smoothed)")
            else:
                ax.plot(df["step"], df[col], color=color, linewidth=1.5, label=split)
        _mark_events(ax, marks, label=True)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if log_x:
            ax.set_xscale("log")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    if (df[["train_loss", "test_loss"]] > 0).all().all():
        ax_loss.set_yscale("log")
    ax_acc.set_ylim(-0.02, 1.02)
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    if title:
        if ax is None:
            fig.suptitle(title)
        else:
            ax_loss.set_title(title)
    return fig


#: What a curve plot says, in one line, about a history of fewer than two steps.
NO_HISTORY = ("no training history to draw (fewer than two steps: a model imported without its training, "
              "from_model); its Fourier, neuron and attention plots work")


def _no_history(df: pd.DataFrame, axes: Sequence[Any]) -> bool:
    """For a history of fewer than two steps (a model imported without its training,
    :func:`grok_interp.from_model`), write :data:`NO_HISTORY` on the axes and return
    True: a curve over steps needs two. The figure still places (the report shows it)."""
    if df["step"].dropna().nunique() >= 2:
        return False
    for ax in axes:
        ax.set_axis_off()
    axes[0].text(0.0, 0.5, NO_HISTORY, transform=axes[0].transAxes, ha="left", va="center", fontsize=9, wrap=True)
    return True


def _numeric(df: pd.DataFrame, col: str) -> bool:
    return pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])


def plot_measures(
    data: Run | pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    loss: str | None = "test_loss",
    history: Run | pd.DataFrame | None = None,
    smoothing: bool = False,
    window: float = 1001,
    sigma: float = 10,
    start: float = 1000,
    log_x: bool = True,
    log_loss: bool = True,
    events: bool | Mapping[str, int | None] = True,
    log_y: bool | str = "auto",
    together: bool = False,
    title: str | None = None,
    ax: Any = None,
) -> Figure:
    """Progress measures over steps, one panel each, beside test loss on a twin axis.

    This is the paper's MED figure: MED falls with test loss once training accuracy
    reaches 1. Any column is drawn the same way (Gini, restricted loss, ...).

    ``together=True`` draws every measure and the loss on one axis instead: the
    TransformerLens demo's figure of train, test, restricted and excluded loss on one
    log axis with the phase lines (``plot_measures(df, ["restricted_loss",
    "excluded_loss"], loss=["train_loss", "test_loss"], together=True)``).

    Args:
        data: A DataFrame with ``step`` and the columns, or a
            :class:`~grok_interp.TaskRun` (then
            :func:`grok_interp.viz.data.measures_over_steps`: its recorded columns, and
            the others measured over its checkpoints).
        columns: Measures to draw (default: every non-base column of the data).
        loss: Column drawn on each panel's twin axis (None: none), or with
            ``together`` one or several loss columns drawn beside the measures. Read
            from ``history`` when given, else from ``data``.
        history: The training history for ``loss`` and the events when ``data``
            holds measures only.
        smoothing, window, sigma, start: As in :func:`plot_training`.
        log_x: Log step axis (step 0 left out).
        log_loss: Log scale for the loss axis.
        log_y: Log scale for a measure's axis: True, False, or ``"auto"`` (the
            default): where its values are all positive and span more than two decades
            (a restricted loss falling to 1e-7 would draw as a flat zero otherwise).
        together: All measures (and ``loss``) on one axis (log when ``log_y`` says so
            for all of them together).
        events: Mark memorisation and grokking (as in :func:`plot_training`).
        title: Figure title.
        ax: Axes to draw into instead of a new figure: one per measure, or one with
            ``together``.

    Returns:
        A figure with one row per measure (one panel with ``together``); with ``ax``,
        the figure holding them.
    """
    if not (isinstance(log_y, bool) or log_y == "auto"):
        raise bad_value("log_y", log_y, "must be True, False or 'auto'")
    if is_run(data):
        df = viz_data.measures_over_steps(data, columns)
        cols = df.attrs["columns"]
        history = data if history is None else history
    else:
        df = _history(data)
        cols = ([c for c in df.columns if c not in BASE_COLUMNS and _numeric(df, c)] if columns is None
                else list(columns))
        absent = [c for c in cols if c not in df.columns]
        if absent:
            raise bad_value("columns", absent, f"are not columns of the data ({list(df.columns)})")
    if not cols:
        raise bad_value("columns", cols, "no measures to plot: record some (train_hooked(record=...)) or name them")
    hist = _history(history) if history is not None else df
    marks = _marks(events, hist, history if history is not None else data)
    if together:
        return _measures_together(df, cols, hist, loss, marks, smoothing=smoothing, window=window, sigma=sigma,
                                  start=start, log_x=log_x, log_y=log_y, title=title, ax=ax)
    loss_df = _positive_steps(hist[["step", loss]].dropna(), log_x) if loss and loss in hist.columns else None
    fig, axes = place_axes(ax, len(cols), 9, 2.6 * len(cols) + 0.4, grid=(len(cols), 1), sharex=True)
    own = ax is None
    if _no_history(df, axes):
        return fig
    for i, (ax, col) in enumerate(zip(axes, cols)):
        sub = _positive_steps(df[["step", col]].dropna(), log_x)
        if smoothing:
            ax.plot(sub["step"], sub[col], color="#1f77b4", alpha=0.25, linewidth=1)
            ax.plot(sub["step"], smooth(sub[col], sub["step"], window=window, sigma=sigma, start=start),
                    color="#1f77b4", linewidth=1.8, label=col)
        else:
            ax.plot(sub["step"], sub[col], color="#1f77b4", linewidth=1.6, marker="." if len(sub) < 40 else None, label=col)
        ax.set_ylabel(col, color="#1f77b4")
        if _log_wanted(log_y, sub[col]):
            ax.set_yscale("log")
        _mark_events(ax, marks, label=i == 0)
        if loss_df is not None:
            twin = ax.twinx()
            twin.plot(loss_df["step"], loss_df[loss], color="#888888", linewidth=1.2, label=loss)
            twin.set_ylabel(loss, color="#666666")
            if log_loss and (loss_df[loss] > 0).all():
                twin.set_yscale("log")
        handles, labels = ax.get_legend_handles_labels()
        if loss_df is not None:
            h2, l2 = twin.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        ax.legend(handles, labels, loc="best", fontsize=8)
        ax.grid(True, alpha=0.3)
        if log_x:
            ax.set_xscale("log")
    axes[-1].set_xlabel("step")
    if title:
        set_title(fig, axes, title, title, own)
    return fig


def _log_wanted(log_y: bool | str, values: Any) -> bool:
    """Whether a measure's axis is logarithmic: as asked, or for ``"auto"`` where every
    value is positive and they span more than two decades."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v) or (v <= 0).any():
        return False
    return True if log_y is True else log_y == "auto" and float(v.max() / v.min()) > 100.0


_LINE_COLORS = {"train_loss": _TRAIN_COLOR, "test_loss": _TEST_COLOR}


def _measures_together(df: pd.DataFrame, cols: list[str], hist: pd.DataFrame, loss: Any, marks: dict[str, int], *,
                       smoothing: bool, window: float, sigma: float, start: float, log_x: bool, log_y: bool | str,
                       title: str | None, ax: Any) -> Figure:
    """``plot_measures(together=True)``: every column on one axis."""
    losses = [] if not loss else [loss] if isinstance(loss, str) else list(loss)
    series = [(c, hist) for c in losses if c in hist.columns and c not in cols] + [(c, df) for c in cols]
    fig, (axis,) = place_axes(ax, 1, 9, 4.2)
    if _no_history(df, [axis]):
        return fig
    values = []
    for i, (col, frame) in enumerate(series):
        sub = _positive_steps(frame[["step", col]].dropna(), log_x)
        color = _LINE_COLORS.get(col, f"C{(i + 2) % 10}")
        y = sub[col].to_numpy(dtype=float)
        if smoothing:
            axis.plot(sub["step"], y, color=color, alpha=0.25, linewidth=1)
            y = smooth(y, sub["step"], window=window, sigma=sigma, start=start)
        axis.plot(sub["step"], y, color=color, linewidth=1.6, label=col, marker="." if len(sub) < 40 else None)
        values.append(sub[col].to_numpy(dtype=float))
    if values and _log_wanted(log_y, np.concatenate(values)):
        axis.set_yscale("log")
    _mark_events(axis, marks, label=True)
    if log_x:
        axis.set_xscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel("loss" if all("loss" in c for c, _ in series) else "value")
    axis.grid(True, alpha=0.3)
    axis.legend(loc="best", fontsize=8)
    if title:
        axis.set_title(title)
    return fig


def plot_embedding_fourier_norms(
    data: Float[Tensor, " k"] | np.ndarray | Sequence[float] | TaskRun,
    *,
    step: int | None = None,
    key_frequencies: Iterable[int] | None = None,
    title: str | None = None,
    ax: Any = None,
) -> Figure:
    """Norm of the operand embeddings in each Fourier frequency ``k = 1..(p-1)/2``.

    After grokking a few *key frequencies* stand out (Nanda et al.); before, the
    spectrum is flat. ``norms[k-1] = sqrt(||F_cos,k W_E||^2 + ||F_sin,k W_E||^2)``
    (see :func:`grok_interp.measures.embedding_fourier_norms`).

    Args:
        data: Norms indexed by frequency (entry 0 is ``k = 1``), or a
            :class:`~grok_interp.TaskRun` (then :func:`grok_interp.viz.data.fourier_norms`).
        step: Checkpoint of the run (None: final model); in the title for norms.
        key_frequencies: Frequencies to highlight.
        title: Axes title.
        ax: A matplotlib axes to draw into instead of a new figure.

    Returns:
        A bar chart (with ``ax``, the figure holding it).
    """
    if is_run(data):
        data = viz_data.fourier_norms(data, step)
    try:
        norms = np.asarray(torch.as_tensor(data, dtype=torch.float64))
    except (TypeError, RuntimeError) as exc:
        raise bad_value("data", type(data).__name__, "must be norms indexed by frequency or a grok_interp.TaskRun") from exc
    if norms.ndim != 1 or len(norms) == 0:
        raise bad_value("norms", tuple(norms.shape), "must be a non-empty vector indexed by frequency k = 1..(p-1)/2")
    ks = np.arange(1, len(norms) + 1)
    keys = set(int(k) for k in key_frequencies) if key_frequencies is not None else set()
    colors = ["#d62728" if k in keys else "#1f77b4" for k in ks]
    fig, (ax,) = place_axes(ax, 1, 9, 3.2)
    ax.bar(ks, norms, color=colors, width=0.8)
    for k in sorted(keys):
        if 1 <= k <= len(norms):
            ax.annotate(str(k), (k, norms[k - 1]), ha="center", va="bottom", fontsize=8, color="#d62728")
    ax.set_xlabel("frequency k")
    ax.set_ylabel("embedding norm")
    ax.set_xlim(0.3, len(norms) + 0.7)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title or ("embedding Fourier norms" + (f" at step {step}" if step is not None else "")))
    if keys:
        ax.legend(handles=[Patch(color="#d62728", label="key frequency")], fontsize=8)
    return fig


def plot_neuron_clusters(
    data: pd.DataFrame | TaskRun,
    *,
    step: int | None = None,
    title: str | None = None,
    ax: Any = None,
) -> Figure:
    """MLP neurons clustered by frequency: a heatmap of frequency x neuron (FVE).

    Neurons are sorted by their frequency cluster (then by fraction of variance
    explained, FVE); each column is one neuron, coloured in its frequency's row by its
    FVE. Wide blocks are the key frequencies; the last row gathers neurons that fit no
    single frequency (``frequency == 0``), coloured by their best FVE.

    Args:
        data: A DataFrame with columns ``neuron``, ``frequency`` (0 = none) and
            ``fve`` (as :func:`grok_interp.measures.neuron_frequency_clusters`
            returns), or a :class:`~grok_interp.TaskRun` (then
            :func:`grok_interp.viz.data.neuron_clusters`).
        step: Checkpoint of the run (None: final model); in the title for a table.
        title: Axes title.
        ax: A matplotlib axes to draw into instead of a new figure.

    Returns:
        A heatmap with the neuron count per row on the right (with ``ax``, the figure
        holding it).
    """
    df = viz_data.neuron_clusters(data, step) if is_run(data) else data
    if not isinstance(df, pd.DataFrame):
        raise bad_value("data", type(df).__name__, "must be a cluster DataFrame or a grok_interp.TaskRun")
    missing = [c for c in ("neuron", "frequency", "fve") if c not in df.columns]
    if missing:
        raise bad_value("data", f"columns {list(df.columns)}", f"needs columns {missing}")
    df = df.assign(_none=df["frequency"] == 0).sort_values(["_none", "frequency", "fve"], ascending=[True, True, False])
    freqs = sorted(int(k) for k in df["frequency"].unique() if k != 0)
    rows = freqs + ([0] if (df["frequency"] == 0).any() else [])
    row_of = {k: i for i, k in enumerate(rows)}
    grid = np.full((len(rows), len(df)), np.nan)
    for col, (k, fve) in enumerate(zip(df["frequency"].astype(int), df["fve"].astype(float))):
        grid[row_of[k], col] = fve
    fig, (ax,) = place_axes(ax, 1, 10, max(2.2, 0.35 * len(rows) + 1.3))
    im = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(len(rows)), [f"k={k}" if k else "none" for k in rows])
    counts = df["frequency"].astype(int).value_counts()
    for i, k in enumerate(rows):
        ax.annotate(f"{counts.get(k, 0)}", (1.005, i), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    ax.set_xlabel(f"neuron (sorted by cluster; {len(df)} neurons)")
    fig.colorbar(im, ax=ax, label="FVE", pad=0.06)
    ax.set_title(title or ("neurons by frequency" + (f" at step {step}" if step is not None else "")))
    return fig


_SPLIT_COLORS = ["#ffffff", "#1f77b4", "#d9d9d9", "#ff7f0e"]  # invalid, train, test, forced test
_SPLIT_LABELS = ["invalid", "train", "test", "forced test"]


def _split_codes(split: Split) -> np.ndarray:
    """0 invalid, 1 train, 2 test, 3 forced test, on the (a, b) grid."""
    codes = np.zeros(tuple(split.train_mask.shape), dtype=int)
    codes[split.test_mask.numpy()] = 2
    codes[(split.forced_test & split.test_mask).numpy()] = 3
    codes[split.train_mask.numpy()] = 1
    return codes


def plot_split(
    data: Split | TaskRun,
    *,
    correct: bool | np.ndarray | Tensor | None = None,
    title: str | None = None,
    ax: Any = None,
) -> Figure:
    """The (a, b) grid: training pairs, test pairs and the forced-test region.

    SQUARE(k) forces ``a <= k, b <= k`` into the test set and STRIP(t) forces
    ``a <= t``; the paper's claim is that forced-test pairs far (Manhattan distance)
    from any training pair of their class cannot be learnt. A second panel shows which
    pairs a model answers correctly, so the ceiling is visible.

    Args:
        data: A :class:`~grok_interp.Split`, or a :class:`~grok_interp.TaskRun` (its
            split).
        correct: The correctness panel: a boolean ``(p, p)`` grid (``[a, b]``, as
            :func:`grok_interp.viz.data.correct_grid` returns); True for a run computes
            its final model's grid; False or None (the default for a Split) leaves it
            out. Default for a run: True.
        title: Figure title (default: the split's description).
        ax: Axes to draw into instead of a new figure: one, or two with ``correct``.

    Returns:
        One or two panels, ``a`` down the rows and ``b`` along the columns (with
        ``ax``, the figure holding them).
    """
    run = is_run(data, task=True)
    split = data.split if run else data
    if not isinstance(split, Split):
        raise bad_value("data", type(data).__name__, "must be a Split or a grok_interp.TaskRun")
    if correct is None:
        correct = run
    if isinstance(correct, bool):
        if correct and not run:
            raise bad_value("correct", True, "needs a run (a Split has no model); or pass the (p, p) grid")
        right = viz_data.correct_grid(data) if correct else None
    else:
        right = np.asarray(torch.as_tensor(correct), dtype=bool)
    codes = _split_codes(split)
    p = codes.shape[0]
    if right is not None and right.shape != codes.shape:
        raise bad_value("correct", tuple(right.shape), f"must be a ({p}, {p}) grid")
    correct = right is not None
    own = ax is None
    fig, axes = place_axes(ax, 2 if correct else 1, 11 if correct else 5.8, 5.8)
    axes[0].imshow(codes, cmap=ListedColormap(_SPLIT_COLORS), vmin=-0.5, vmax=3.5, interpolation="nearest", origin="lower")
    present = sorted(set(np.unique(codes).tolist()) - {0})
    n = {c: int((codes == c).sum()) for c in present}
    axes[0].legend(handles=[Patch(facecolor=_SPLIT_COLORS[c], edgecolor="#777", label=f"{_SPLIT_LABELS[c]} ({n[c]})")
                            for c in present], loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8, frameon=False)
    axes[0].set_title("split")
    if right is not None:
        shown = np.where(codes == 0, 0, np.where(right, 1, 2))
        if (codes == 3).any():
            shown = np.where((codes == 3) & right, 3, np.where((codes == 3) & ~right, 4, shown))
        cmap = ListedColormap(["#ffffff", "#2ca02c", "#d62728", "#98df8a", "#ff9896"])
        axes[1].imshow(shown, cmap=cmap, vmin=-0.5, vmax=4.5, interpolation="nearest", origin="lower")
        forced = codes == 3
        test = (codes == 2) | forced
        acc = lambda m: f"{right[m].mean():.3f}" if m.any() else "-"  # noqa: E731
        names = ["correct", "wrong", "forced test: correct", "forced test: wrong"]
        axes[1].legend(handles=[Patch(facecolor=c, edgecolor="#777", label=l) for c, l in zip(cmap.colors[1:], names)
                                if (l.startswith("forced") and forced.any()) or not l.startswith("forced")],
                       loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8, frameon=False)
        axes[1].set_title(f"final model: test acc {acc(test)}, forced-test acc {acc(forced)}")
    for ax in axes:
        ax.set_xlabel("b")
        ax.set_ylabel("a")
        ax.set_xlim(-0.5, p - 0.5)
        ax.set_ylim(-0.5, p - 0.5)
    desc = split.kind + (f"(k={split.k})" if split.k is not None else "") + (f"(t={split.t})" if split.t is not None else "")
    set_title(fig, axes, title, f"p={p}, {desc}, frac={split.frac}", own)
    return fig


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}"
    if v is None:
        return "-"
    return str(v)


def plot_table(data: pd.DataFrame | Run, *, title: str | None = None, max_rows: int = 40, ax: Any = None) -> Figure:
    """A DataFrame drawn as a table figure (e.g. ``compare_measures(run)``).

    Args:
        data: A DataFrame, or a :class:`~grok_interp.Run` (then
            :func:`grok_interp.viz.data.compare_table`: ``compare_measures(run)``).
        title: Figure title.
        max_rows: Rows drawn (the rest are summarised in the title).
        ax: A matplotlib axes to draw into instead of a new figure.

    Returns:
        A figure holding the table; floats show 4 significant digits.
    """
    df = viz_data.compare_table(data) if is_run(data) else data
    if not isinstance(df, pd.DataFrame):
        raise bad_value("data", type(df).__name__, "must be a DataFrame or a grok_interp.Run")
    if len(df.columns) == 0:
        raise bad_value("data", "a table without columns", "needs at least one column")
    shown = df.head(max_rows)
    has_index = not isinstance(shown.index, pd.RangeIndex)
    cells = [[_fmt(v) for v in row] for row in shown.itertuples(index=False)]
    labels = [str(c) for c in shown.columns]
    if has_index:
        cells = [[str(i)] + r for i, r in zip(shown.index, cells)]
        labels = [str(shown.index.name or "")] + labels
    chars = sum(max([len(labels[j])] + [len(r[j]) for r in cells]) + 2 for j in range(len(labels)))
    width = min(16.0, max(4.0, 0.085 * chars))
    fig, (ax,) = place_axes(ax, 1, width, 0.2 * (len(shown) + 1) + (0.45 if title else 0.1))
    ax.axis("off")
    table = ax.table(cellText=cells or [["" for _ in labels]], colLabels=labels, loc="upper center", cellLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.auto_set_column_width(list(range(len(labels))))
    for (r, _), cell in table.get_celld().items():
        if r == 0:
            cell.set_facecolor("#e8e8e8")
            cell.set_text_props(weight="bold")
    more = f" (first {max_rows} of {len(df)} rows)" if len(df) > max_rows else ""
    if title or more:
        ax.set_title((title or "") + more)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, formats: Sequence[str] = ("png", "svg"), dpi: int = 120) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats`` (PNG and SVG by default).

    Returns:
        The paths written.
    """
    base = Path(path)
    base = base.with_suffix("") if base.suffix.lstrip(".") in formats else base
    base.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        target = base.with_name(base.name + "." + fmt)
        fig.savefig(target, format=fmt, dpi=dpi, bbox_inches="tight", pad_inches=0.1)
        out.append(target)
    return out
