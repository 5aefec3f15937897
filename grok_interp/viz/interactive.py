"""Interactive plotly views for notebooks: hover, zoom, and a slider over checkpoints.

An optional extra (``pip install 'grok-interp[interactive]'``); the static matplotlib
plots stay the default, and the HTML report stays offline and static. Each function
returns a ``plotly.graph_objects.Figure`` (a notebook cell that ends in one displays
it; ``fig.write_html(path)`` saves it). The data come from :mod:`grok_interp.viz.data`,
as for the static plots, so both draw the same numbers.

* :func:`training_figure`: loss (log) and accuracy over steps (log), with the
  memorised / grokked lines, and any measure columns on a third panel (log where they
  span decades).
* :func:`fourier_figure`: the embedding's Fourier norms per frequency, one frame per
  checkpoint, a slider to move through training (key frequencies in red).
* :func:`fourier_2d_figure`: the neurons' mean squared 2-D Fourier coefficients, one
  frame per checkpoint, with a slider.

Example:
    >>> import grok_interp as g
    >>> from grok_interp.viz import interactive
    >>> run = g.train_hooked(p=11, steps=40, d_model=16, d_mlp=32, checkpoint_every=20, progress=False)
    >>> fig = interactive.fourier_figure(run)              # doctest: +SKIP
    >>> len(fig.layout.sliders[0].steps) == len(run.checkpoint_steps)  # doctest: +SKIP
    True
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .._validate import bad_value
from ..errors import GrokInterpError
from ..measures import fourier_basis_names, fourier_transform_2d
from ..protocols import Run, TaskRun, is_run
from . import data as viz_data

__all__ = ["training_figure", "fourier_figure", "fourier_2d_figure"]

_TRAIN, _TEST = "#1f77b4", "#d62728"
_EVENTS = {"memorised_at": ("memorised", "#555555", "dot"), "grokked_at": ("grokked", "#2ca02c", "dash")}


def _plotly() -> tuple[Any, Any]:
    try:
        import plotly.graph_objects as go  # noqa: PLC0415 - the optional extra
        from plotly.subplots import make_subplots  # noqa: PLC0415
    except ImportError:
        raise GrokInterpError("interactive figures need plotly: pip install 'grok-interp[interactive]'") from None
    return go, make_subplots


def _log_span(values: Any) -> bool:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return bool(len(v)) and bool((v > 0).all()) and float(v.max() / v.min()) > 100.0


def training_figure(
    data: Run | pd.DataFrame,
    measures: Sequence[str] | pd.DataFrame | None = None,
    *,
    events: bool | Mapping[str, int | None] = True,
    title: str | None = None,
) -> Any:
    """Loss and accuracy over steps (and measures, if given), interactive.

    Args:
        data: A run (its history) or a history DataFrame.
        measures: Measure columns of the history to add on a third panel, or a measures
            DataFrame with ``step`` (e.g. ``run.measure(...)``): all its non-base columns.
        events: Mark memorisation and grokking (True: from the history, as
            :func:`grok_interp.measures.events` finds them; a mapping gives them).
        title: Figure title.

    Returns:
        A plotly figure: loss (log y), accuracy, and measures, over a log step axis.
    """
    go, make_subplots = _plotly()
    hist = viz_data.history(data)
    missing = [c for c in viz_data.BASE_COLUMNS if c not in hist.columns]
    if missing:
        raise bad_value("data", f"columns {list(hist.columns)}", f"needs columns {missing}")
    if isinstance(measures, pd.DataFrame):
        mdf = viz_data.history(measures)
        mcols = [c for c in mdf.columns if c not in viz_data.BASE_COLUMNS and pd.api.types.is_numeric_dtype(mdf[c])]
    elif measures is not None:
        mdf, mcols = hist, list(measures)
        absent = [c for c in mcols if c not in hist.columns]
        if absent:
            raise bad_value("measures", absent, f"are not columns of the history ({list(hist.columns)})")
    else:
        mdf, mcols = hist, []
    marks = viz_data.event_steps(hist, viz_data.grok_threshold_of(data)) if events is True else {} if events is False else {
        k: int(v) for k, v in events.items() if v is not None}
    unknown = sorted(set(marks) - set(_EVENTS))
    if unknown:
        raise bad_value("events", unknown, f"unknown events; known: {list(_EVENTS)}")
    rows = 3 if mcols else 2
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=["loss", "accuracy", "measures"][:rows])
    pos = hist[hist["step"] > 0]
    for split, color in (("train", _TRAIN), ("test", _TEST)):
        for row, kind in ((1, "loss"), (2, "acc")):
            col = f"{split}_{kind}"
            fig.add_trace(go.Scatter(x=pos["step"], y=pos[col], name=f"{split} {kind}", line={"color": color},
                                     legendgroup=split, hovertemplate=f"step %{{x}}<br>{col} %{{y:.4g}}<extra></extra>"),
                          row=row, col=1)
    for i, col in enumerate(mcols):
        sub = mdf[["step", col]].dropna()
        sub = sub[sub["step"] > 0]
        fig.add_trace(go.Scatter(x=sub["step"], y=sub[col], name=col, mode="lines+markers" if len(sub) < 60 else "lines",
                                 line={"color": f"hsl({(40 + 70 * i) % 360}, 60%, 45%)"},
                                 hovertemplate=f"step %{{x}}<br>{col} %{{y:.4g}}<extra></extra>"), row=3, col=1)
    for key, step in marks.items():
        name, color, dash = _EVENTS[key]
        for row in range(1, rows + 1):
            fig.add_vline(x=step, line={"color": color, "dash": dash, "width": 1.2}, row=row, col=1)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{name} ({step})",
                                 line={"color": color, "dash": dash}), row=1, col=1)
    fig.update_xaxes(type="log", title_text="step", row=rows, col=1)
    for row in range(1, rows):
        fig.update_xaxes(type="log", row=row, col=1)
    if (pos[["train_loss", "test_loss"]] > 0).all().all():
        fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[-0.02, 1.02], row=2, col=1)
    if mcols and _log_span(np.concatenate([mdf[c].dropna().to_numpy(dtype=float) for c in mcols])):
        fig.update_yaxes(type="log", row=3, col=1)
    fig.update_layout(height=300 * rows, title=title, hovermode="x unified", template="plotly_white")
    return fig


def _steps_of(run: TaskRun, steps: Iterable[int] | None) -> list[int]:
    available = run.checkpoint_steps
    if not available:
        raise bad_value("run", run, "has no checkpoints to slide over (a model imported alone); use the static plots")
    chosen = sorted(available if steps is None else {int(s) for s in steps})
    missing = [s for s in chosen if s not in available]
    if missing or not chosen:
        raise bad_value("steps", missing or chosen, f"must be saved checkpoints: {available[:5]} ... {available[-1]}")
    return chosen


def _slider(go: Any, fig: Any, steps: list[int], per_step: int, label: str) -> None:
    """One slider position per step: it shows that step's ``per_step`` traces."""
    n = len(steps)
    positions = []
    for i, s in enumerate(steps):
        visible = [False] * (n * per_step)
        visible[i * per_step:(i + 1) * per_step] = [True] * per_step
        positions.append({"method": "update", "label": str(s),
                          "args": [{"visible": visible}, {"title.text": f"{label} at step {s}"}]})
    fig.update_layout(sliders=[{"active": n - 1, "steps": positions, "currentvalue": {"prefix": "step "},
                                "pad": {"t": 40}}], title={"text": f"{label} at step {steps[-1]}"})


def fourier_figure(run: TaskRun, steps: Iterable[int] | None = None, *,
                   key_frequencies: Iterable[int] | None = None) -> Any:
    """The embedding's norm per Fourier frequency at every checkpoint, with a slider.

    Args:
        run: A :class:`~grok_interp.TaskRun` with checkpoints.
        steps: Checkpoints to show (default all).
        key_frequencies: Frequencies drawn in red (default: the final model's,
            :func:`grok_interp.viz.data.final_key_frequencies`).

    Returns:
        A plotly bar chart, one frame per checkpoint (the last shown first).
    """
    go, _ = _plotly()
    if not is_run(run, task=True):
        raise bad_value("run", type(run).__name__, "must be a grok_interp.TaskRun")
    chosen = _steps_of(run, steps)
    keys = set(viz_data.final_key_frequencies(run) if key_frequencies is None else (int(k) for k in key_frequencies))
    fig = go.Figure()
    top = 0.0
    for i, s in enumerate(chosen):
        norms = np.asarray(viz_data.fourier_norms(run, s), dtype=float)
        ks = np.arange(1, len(norms) + 1)
        top = max(top, float(norms.max()))
        fig.add_trace(go.Bar(x=ks, y=norms, visible=i == len(chosen) - 1, name=f"step {s}",
                             marker={"color": [_TEST if k in keys else _TRAIN for k in ks]},
                             hovertemplate="k=%{x}<br>norm %{y:.4g}<extra>step " + str(s) + "</extra>"))
    _slider(go, fig, chosen, 1, "embedding Fourier norms")
    fig.update_xaxes(title_text="frequency k (red: key frequencies)", dtick=1 if len(ks) <= 30 else 5)
    fig.update_yaxes(title_text="embedding norm", range=[0, 1.05 * top])
    fig.update_layout(template="plotly_white", showlegend=False, height=420)
    return fig


def fourier_2d_figure(run: TaskRun, steps: Iterable[int] | None = None, *, hook: str | None = None) -> Any:
    """The neurons' activations in the 2-D Fourier basis (mean squared coefficient over
    neurons, as :func:`grok_interp.viz.plot_fourier_2d`) at every checkpoint, with a slider.

    Hovering a cell names its two basis functions (``cos 5``, ``sin 5``, ...), so cos
    and sin of one frequency are told apart however big p is.

    Args:
        run: A :class:`~grok_interp.TaskRun` with checkpoints.
        steps: Checkpoints to show (default all; each costs one forward over the grid).
        hook: Activation hook (default: the last MLP layer's ``hook_post``).

    Returns:
        A plotly heatmap, one frame per checkpoint.
    """
    go, _ = _plotly()
    if not is_run(run, task=True):
        raise bad_value("run", type(run).__name__, "must be a grok_interp.TaskRun")
    chosen = _steps_of(run, steps)
    import torch  # noqa: PLC0415

    names = None
    fig = go.Figure()
    for i, s in enumerate(chosen):
        acts = torch.as_tensor(np.asarray(viz_data.activations(run, s, hook), dtype=float))
        if acts.ndim == 2:
            acts = acts[..., None]
        p = acts.shape[0]
        names = names or fourier_basis_names(p)
        coef = fourier_transform_2d(acts - acts.mean(dim=(0, 1), keepdim=True)).pow(2).mean(dim=2).numpy()
        fig.add_trace(go.Heatmap(z=coef, x=names, y=names, colorscale="Blues", visible=i == len(chosen) - 1,
                                 hovertemplate="a: %{y}<br>b: %{x}<br>%{z:.4g}<extra>step " + str(s) + "</extra>",
                                 colorbar={"title": {"text": "mean sq. coef."}}))
    _slider(go, fig, chosen, 1, "activations in the 2-D Fourier basis")
    fig.update_xaxes(title_text="basis function of b", nticks=24)
    fig.update_yaxes(title_text="basis function of a", nticks=24, autorange="reversed")
    fig.update_layout(template="plotly_white", height=640, width=700)
    return fig
