"""grok_interp.viz.plots: each plot draws the data it is given (or a run's), on the axes it promises."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

import grok_interp as g
from grok_interp.measures import events
from grok_interp.viz import (
    plot_embedding_fourier_norms,
    plot_measures,
    plot_neuron_clusters,
    plot_split,
    plot_table,
    plot_training,
    save_figure,
    smooth,
)

from ..helpers import SMALL_MODEL, small_run


pytestmark = pytest.mark.portable


# --- smoothing ------------------------------------------------------------------------------
def test_smooth_identity_constant_and_linear():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    np.testing.assert_array_equal(smooth(y, window=1, sigma=0, start=0), y)
    np.testing.assert_allclose(smooth(np.full(50, 3.5), window=7, sigma=2, start=0), 3.5)
    # a symmetric kernel leaves a straight line unchanged away from the ends
    line = 2.0 * np.arange(300) + 1
    out = smooth(line, window=11, sigma=3, start=0)
    np.testing.assert_allclose(out[30:-30], line[30:-30], atol=1e-9)


def test_smooth_window_is_a_centred_mean_in_steps():
    rng = np.random.default_rng(1)
    y = rng.normal(size=100)
    steps = np.arange(100) * 10  # a history row every 10 steps
    out = smooth(y, steps, window=50, sigma=0, start=0)  # 5 rows
    want = np.convolve(y, np.ones(5) / 5, mode="same")
    np.testing.assert_allclose(out[2:-2], want[2:-2], atol=1e-12)
    # the same smoothing in rows when steps are 0, 1, 2, ...
    np.testing.assert_allclose(smooth(y, window=5, sigma=0, start=0), out, atol=1e-12)


def test_smooth_keeps_raw_values_before_start():
    y = np.r_[np.zeros(20), np.ones(20)]
    steps = np.arange(40) * 100
    out = smooth(y, steps, window=500, sigma=100, start=1000)
    np.testing.assert_array_equal(out[:10], y[:10])
    assert not np.array_equal(out[10:], y[10:])
    with pytest.raises(ValueError, match="window="):
        smooth(y, window=0)


# --- plots ------------------------------------------------------------------------------------
def _synthetic_history() -> pd.DataFrame:
    steps = np.arange(0, 2010, 10)
    train_acc = np.clip(steps / 200, 0, 1)
    test_acc = np.where(steps < 1200, 0.05, 1.0)
    return pd.DataFrame({
        "step": steps,
        "train_loss": np.exp(-steps / 300) + 1e-3,
        "test_loss": np.where(steps < 1200, 5.0, 0.01),
        "train_acc": train_acc,
        "test_acc": test_acc,
        "med": 2.0 - steps / 2000,
    })


def _vlines(ax) -> list[float]:
    return [line.get_xdata()[0] for line in ax.get_lines() if len(set(line.get_xdata())) == 1]


def test_plot_training_draws_the_history_on_log_axes_with_events():
    h = _synthetic_history()
    ev = events(h)
    assert ev.memorised_at == 200 and ev.grokked_at == 1200
    fig = plot_training(h)
    assert isinstance(fig, Figure)
    ax_loss, ax_acc = fig.axes
    assert ax_loss.get_xscale() == "log" and ax_acc.get_xscale() == "log" and ax_loss.get_yscale() == "log"
    test_line = next(line for line in ax_acc.get_lines() if line.get_label() == "test")
    np.testing.assert_array_equal(test_line.get_xdata(), h["step"][1:])  # step 0 has no place on a log axis
    np.testing.assert_array_equal(test_line.get_ydata(), h["test_acc"][1:])
    assert sorted(_vlines(ax_acc)) == [200, 1200]
    smoothed = plot_training(h, smoothing=True, window=101, sigma=20, start=0)
    line = next(x for x in smoothed.axes[0].get_lines() if x.get_label() == "test (smoothed)")
    sub = h[h["step"] > 0]
    want = np.exp(smooth(np.log(sub["test_loss"]), sub["step"], window=101, sigma=20, start=0))  # log space
    np.testing.assert_allclose(line.get_ydata(), want)
    acc = next(x for x in smoothed.axes[1].get_lines() if x.get_label() == "test (smoothed)")
    np.testing.assert_allclose(acc.get_ydata(), smooth(sub["test_acc"], sub["step"], window=101, sigma=20, start=0))
    raw = plot_training(h, smoothing=True, window=101, sigma=20, start=0, log_smooth=False)
    line = next(x for x in raw.axes[0].get_lines() if x.get_label() == "test (smoothed)")
    np.testing.assert_allclose(line.get_ydata(), smooth(sub["test_loss"], sub["step"], window=101, sigma=20, start=0))
    linear = plot_training(h, log_x=False, events=False)
    assert linear.axes[0].get_xscale() == "linear" and _vlines(linear.axes[1]) == []


def test_plot_training_needs_the_history_columns():
    with pytest.raises(ValueError, match="test_acc"):
        plot_training(pd.DataFrame({"step": [0, 1], "train_loss": [1, 2], "test_loss": [1, 2], "train_acc": [0, 1]}))


def test_plot_measures_puts_each_measure_beside_test_loss():
    h = _synthetic_history().assign(gini=lambda d: d["step"] / 4000)
    fig = plot_measures(h, ["med", "gini"])
    panels = [ax for ax in fig.axes if ax.get_ylabel() in ("med", "gini")]
    twins = [ax for ax in fig.axes if ax.get_ylabel() == "test_loss"]
    assert len(panels) == 2 and len(twins) == 2
    med = next(line for line in panels[0].get_lines() if line.get_label() == "med")
    np.testing.assert_array_equal(med.get_ydata(), h["med"][1:])
    np.testing.assert_array_equal(twins[0].get_lines()[0].get_ydata(), h["test_loss"][1:])
    assert sorted(_vlines(panels[1])) == [200, 1200]
    # default: every non-base numeric column
    assert len([ax for ax in plot_measures(h).axes if ax.get_ylabel() in ("med", "gini")]) == 2
    with pytest.raises(ValueError, match="columns="):
        plot_measures(h, ["nope"])


def test_plot_measures_computes_named_measures_over_a_runs_checkpoints(run):
    fig = plot_measures(run, ["med"])
    panel = next(ax for ax in fig.axes if ax.get_ylabel() == "med")
    line = next(x for x in panel.get_lines() if x.get_label() == "med")
    steps = [s for s in run.checkpoint_steps if s > 0]
    np.testing.assert_array_equal(line.get_xdata(), steps)
    want = [g.measures.med(run.weights_at(s), run.task) for s in steps]
    np.testing.assert_allclose(line.get_ydata(), want, rtol=1e-6)


def test_plot_embedding_fourier_norms_finds_a_planted_frequency(run):
    p, k = run.task.p, 3
    w = dict(run.weights_at(300))
    x = torch.arange(p, dtype=torch.float32)
    W_E = torch.zeros_like(w["embed.W_E"])
    W_E[:p, 0] = torch.cos(2 * torch.pi * k * x / p)
    W_E[:p, 1] = torch.sin(2 * torch.pi * k * x / p)
    w["embed.W_E"] = W_E

    # the plot draws the norms it is given (a run goes through grok_interp.viz.data.fourier_norms)
    fig = plot_embedding_fourier_norms(g.measures.embedding_fourier_norms(w, run.task), key_frequencies=[k])
    heights = np.array([b.get_height() for b in fig.axes[0].patches])
    assert len(heights) == (p - 1) // 2
    # cos and sin over p points each have norm sqrt(p/2): the whole norm sits at k
    np.testing.assert_allclose(heights[k - 1], np.sqrt(p), rtol=1e-5)
    np.testing.assert_allclose(np.delete(heights, k - 1), 0, atol=1e-4)
    colors = [b.get_facecolor() for b in fig.axes[0].patches]
    assert colors[k - 1] != colors[0]  # the key frequency is highlighted
    with pytest.raises(ValueError, match="norms="):
        plot_embedding_fourier_norms(torch.zeros(3, 3))


def test_plot_neuron_clusters_places_each_neuron_in_its_row():
    df = pd.DataFrame({"neuron": range(6), "frequency": [4, 0, 4, 9, 4, 0], "fve": [0.9, 0.3, 0.95, 0.88, 0.86, 0.1]})
    fig = plot_neuron_clusters(df)
    grid = np.ma.filled(fig.axes[0].images[0].get_array(), np.nan)
    assert grid.shape == (3, 6)  # rows k=4, k=9, none
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["k=4", "k=9", "none"]
    # neurons sorted by cluster, then FVE: 2, 0, 4 | 3 | 1, 5
    np.testing.assert_allclose(grid[0, :3], [0.95, 0.9, 0.86])
    np.testing.assert_allclose(grid[1, 3], 0.88)
    np.testing.assert_allclose(grid[2, 4:], [0.3, 0.1])
    assert np.isnan(grid).sum() == grid.size - 6  # one cell per neuron
    with pytest.raises(ValueError, match="fve"):
        plot_neuron_clusters(df.drop(columns="fve"))


def test_plot_split_draws_the_masks_and_what_the_model_gets_right(tmp_path):
    task = g.Task(23)
    split = g.Split.square(task, k=8, frac=0.3, seed=1)
    fig = plot_split(split)
    codes = fig.axes[0].images[0].get_array()
    assert np.array_equal(codes == 1, split.train_mask.numpy())
    assert np.array_equal(codes == 3, split.forced_test.numpy())
    assert np.array_equal(codes == 2, (split.test_mask & ~split.forced_test).numpy())
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"train ({split.n_train})" in labels and "forced test (81)" in labels
    strip = plot_split(g.Split.strip(task, t=5, frac=0.3, seed=0))
    assert (strip.axes[0].images[0].get_array()[:6] == 3).all()
    with pytest.raises(ValueError, match="correct=True"):
        plot_split(split, correct=True)


def test_plot_split_correctness_panel_agrees_with_the_history():
    r = small_run(split="strip", t=4, steps=60)
    fig = plot_split(r)
    shown = fig.axes[1].images[0].get_array()
    test = r.split.test_mask.numpy()
    right = np.isin(shown, [1, 3])  # correct, forced-test correct
    assert right[test].mean() == pytest.approx(r.history["test_acc"].iloc[-1], abs=1e-6)
    assert right[r.split.train_mask.numpy()].mean() == pytest.approx(r.history["train_acc"].iloc[-1], abs=1e-6)


def test_plot_table_shows_the_values():
    df = pd.DataFrame({"measure": ["med", "gini"], "spearman": [0.912345, float("nan")], "moved_at": [100, None]})
    fig = plot_table(df, title="t")
    cells = {(r, c): cell.get_text().get_text() for (r, c), cell in fig.axes[0].tables[0].get_celld().items()}
    assert [cells[(0, c)] for c in range(3)] == ["measure", "spearman", "moved_at"]
    assert [cells[(1, c)] for c in range(3)] == ["med", "0.9123", "100"]
    assert [cells[(2, c)] for c in range(3)] == ["gini", "-", "-"]


def test_save_figure_writes_png_and_svg(tmp_path):
    paths = save_figure(plot_training(_synthetic_history()), tmp_path / "training.png")
    assert [p.name for p in paths] == ["training.png", "training.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in paths[1].read_text()[:2000]


def test_plots_compute_their_data_from_a_run(run):
    table = g.measures.neuron_frequency_clusters(run.model_at(100), run.task)
    grid = np.ma.filled(plot_neuron_clusters(run, step=100).axes[0].images[0].get_array(), np.nan)
    assert grid.shape[1] == SMALL_MODEL["d_mlp"] and (~np.isnan(grid)).sum(axis=0).tolist() == [1] * SMALL_MODEL["d_mlp"]
    np.testing.assert_allclose(np.sort(grid[~np.isnan(grid)]), np.sort(table["fve"].to_numpy()), rtol=1e-6)
    cells = plot_table(run).axes[0].tables[0].get_celld()
    compared = g.measures.compare_measures(run)
    assert cells[(0, 0)].get_text().get_text() == "measure"
    assert [cells[(r + 1, 0)].get_text().get_text() for r in range(len(compared))] == compared["measure"].tolist()


def test_plots_display_in_a_notebook_without_magic_and_leak_no_pyplot_figures(run):
    """A cell's value is displayed through ``_repr_png_``; fig.show() warns headless,
    never raises; nothing is left open in pyplot."""
    import warnings

    import matplotlib.pyplot as plt

    from grok_interp.viz import InlineFigure

    before = plt.get_fignums()
    fig = plot_training(run)
    assert isinstance(fig, InlineFigure) and isinstance(fig, Figure)
    png = fig._repr_png_()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.show()  # Agg in tests: a warning, not matplotlib's AttributeError
    assert any("non-interactive" in str(w.message) for w in caught)
    assert plt.get_fignums() == before
