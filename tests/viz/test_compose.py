"""Plots compose: every plot draws into axes it is given (``ax=``) and returns the
figure holding them; measures spanning decades get a log axis; big Fourier heatmaps
keep their tick labels apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import grok_interp as g
from grok_interp.viz import (
    plot_attention_grid,
    plot_embedding_clock,
    plot_embedding_fourier_norms,
    plot_fourier_2d,
    plot_logit_map_fourier,
    plot_measures,
    plot_neuron_clusters,
    plot_neuron_grid,
    plot_split,
    plot_table,
    plot_training,
    plot_trig_fit,
)


def _history() -> pd.DataFrame:
    steps = np.arange(0, 2010, 10)
    return pd.DataFrame({
        "step": steps,
        "train_loss": np.exp(-steps / 300) + 1e-3,
        "test_loss": np.where(steps < 1200, 5.0, 0.01),
        "train_acc": np.clip(steps / 200, 0, 1),
        "test_acc": np.where(steps < 1200, 0.05, 1.0),
        "restricted_loss": np.exp(-steps / 100) + 1e-7,  # falls over 7 decades
        "med": 2.0 - steps / 2000,  # within one decade
    })


def _fig(n: int) -> tuple[Figure, list]:
    fig = Figure(figsize=(4 * n, 3))
    FigureCanvasAgg(fig)
    return fig, list(np.atleast_1d(fig.subplots(1, n)))


def _drawn(ax) -> bool:
    return bool(ax.get_lines() or ax.images or ax.patches or ax.collections or ax.tables)


p = 11


def _cases():
    gen = torch.Generator().manual_seed(0)
    acts = torch.randn(p, p, 5, generator=gen)
    task = g.Task(p=p)
    split = g.Split.random(task, frac=0.5, seed=0)
    clusters = pd.DataFrame({"neuron": range(5), "frequency": [1, 1, 2, 0, 2], "fve": [0.9, 0.8, 0.95, 0.3, 0.9]})
    return [
        ("training", lambda ax: plot_training(_history(), ax=ax), 2),
        ("measures", lambda ax: plot_measures(_history(), ["med", "restricted_loss"], ax=ax), 2),
        ("measures together", lambda ax: plot_measures(_history(), ["restricted_loss"], loss=["train_loss", "test_loss"],
                                                        together=True, ax=ax), 1),
        ("fourier norms", lambda ax: plot_embedding_fourier_norms(torch.rand(5), ax=ax), 1),
        ("clusters", lambda ax: plot_neuron_clusters(clusters, ax=ax), 1),
        ("split", lambda ax: plot_split(split, ax=ax), 1),
        ("table", lambda ax: plot_table(pd.DataFrame({"a": [1, 2]}), ax=ax), 1),
        ("attention", lambda ax: plot_attention_grid(torch.rand(2, p, p), ax=ax), 2),
        ("neuron grid", lambda ax: plot_neuron_grid(acts, [0, 1, 2], ax=ax), 3),
        ("fourier 2d", lambda ax: plot_fourier_2d(acts, ax=ax), 1),
        ("logit map", lambda ax: plot_logit_map_fourier(torch.randn(5, p), clusters=clusters, ax=ax), 1),
        ("trig fit", lambda ax: plot_trig_fit(acts, clusters, ax=ax), 2),
        ("clock", lambda ax: plot_embedding_clock(torch.randn(p, 8), [1, 2], ax=ax), 2),
    ]


@pytest.mark.parametrize(("name", "plot", "n"), _cases(), ids=[c[0] for c in _cases()])
def test_every_plot_draws_into_the_axes_it_is_given(name, plot, n):
    fig, axes = _fig(n + 1)  # one more: the plot must leave it alone
    fig.suptitle("mine")
    out = plot(axes[:n] if n > 1 else axes[0])
    assert out is fig
    assert all(_drawn(ax) for ax in axes[:n]), name
    assert not _drawn(axes[n])
    assert fig._suptitle.get_text() == "mine"  # the caller's figure keeps its title
    fig.savefig(__import__("io").BytesIO(), format="png")
    with pytest.raises(g.GrokInterpError, match="ax"):
        plot(axes[: n + 1])  # one axes too many


def test_plots_draw_into_a_subfigure():
    fig = Figure(figsize=(8, 3))
    FigureCanvasAgg(fig)
    left, right = fig.subfigures(1, 2)
    out = plot_embedding_fourier_norms(torch.rand(5), ax=left.subplots())
    assert out is fig


def test_plot_measures_uses_a_log_axis_where_values_span_decades():
    fig = plot_measures(_history(), ["med", "restricted_loss"])
    med, restricted = fig.axes[0], next(a for a in fig.axes if a.get_ylabel() == "restricted_loss")
    assert med.get_yscale() == "linear" and restricted.get_yscale() == "log"
    assert plot_measures(_history(), ["restricted_loss"], log_y=False).axes[0].get_yscale() == "linear"
    assert plot_measures(_history(), ["med"], log_y=True).axes[0].get_yscale() == "log"
    with pytest.raises(g.GrokInterpError, match="log_y"):
        plot_measures(_history(), ["med"], log_y="yes")


def test_plot_measures_together_is_the_demos_loss_figure():
    fig = plot_measures(_history(), ["restricted_loss"], loss=["train_loss", "test_loss"], together=True)
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines() if len(set(line.get_xdata())) > 1]
    assert labels == ["train_loss", "test_loss", "restricted_loss"]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
    vlines = sorted(line.get_xdata()[0] for line in ax.get_lines() if len(set(line.get_xdata())) == 1)
    assert vlines == [200, 1200]  # memorised, grokked


def test_history_plots_say_in_one_line_that_a_one_row_history_has_no_curves():
    from grok_interp.viz.plots import NO_HISTORY

    one = _history().iloc[:1]
    for fig in (plot_training(one), plot_measures(one, ["med"]), plot_measures(one, ["med"], together=True)):
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert texts == [NO_HISTORY] and "\n" not in NO_HISTORY
        assert not any(ax.get_lines() for ax in fig.axes)
        fig.savefig(__import__("io").BytesIO(), format="png")


def _overlaps(labels) -> int:
    boxes = [t.get_window_extent() for t in labels if t.get_text()]
    return sum(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


@pytest.mark.parametrize("big", [113, 59])
def test_fourier_heatmap_ticks_do_not_overlap_and_tell_cos_from_sin(big):
    acts = torch.randn(big, big, 3, generator=torch.Generator().manual_seed(0))
    fig = plot_fourier_2d(acts)
    ax = fig.axes[0]
    fig.canvas.draw()
    assert _overlaps(ax.get_xticklabels()) == 0 and _overlaps(ax.get_yticklabels()) == 0
    assert "cos k, then sin k" in ax.get_xlabel() and "cos k, then sin k" in ax.get_ylabel()
    assert len(ax.get_xticks(minor=True)) == (big - 1) // 2  # one mark per sin row
    fig = plot_logit_map_fourier(torch.randn(6, big))
    ax = fig.axes[0]
    fig.canvas.draw()
    assert _overlaps(ax.get_xticklabels()) == 0


def test_small_fourier_heatmaps_label_every_basis_function():
    fig = plot_fourier_2d(torch.randn(11, 11))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == g.measures.fourier_basis_names(11)


def test_the_grokked_line_is_drawn_at_the_runs_own_threshold(run):
    import dataclasses

    h = _history().assign(test_acc=np.clip((np.arange(201) - 100) / 80, 0.05, 1.0))  # 0.5 at step 1400
    vlines = lambda fig: sorted(line.get_xdata()[0] for line in fig.axes[1].get_lines()  # noqa: E731
                                if len(set(line.get_xdata())) == 1)
    assert vlines(plot_training(h)) == [200, int(h["step"][h["test_acc"] >= 0.99].iloc[0])]
    mine = dataclasses.replace(run, history=h, config=run.config.updated(grok_threshold=0.5))
    assert vlines(plot_training(mine)) == [200, 1400]
