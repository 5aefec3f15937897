"""The plotly views (the ``interactive`` extra): what they draw, and the slider over
checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import grok_interp as g
from grok_interp.viz import data as viz_data

pytest.importorskip("plotly")
from grok_interp.viz import interactive  # noqa: E402


def _history() -> pd.DataFrame:
    steps = np.arange(0, 2010, 10)
    return pd.DataFrame({
        "step": steps,
        "train_loss": np.exp(-steps / 300) + 1e-3,
        "test_loss": np.where(steps < 1200, 5.0, 0.01),
        "train_acc": np.clip(steps / 200, 0, 1),
        "test_acc": np.where(steps < 1200, 0.05, 1.0),
        "restricted_loss": np.exp(-steps / 100) + 1e-7,
    })


def test_training_figure_has_log_axes_phase_lines_and_measures():
    fig = interactive.training_figure(_history(), ["restricted_loss"])
    names = [t.name for t in fig.data]
    assert {"train loss", "test loss", "train acc", "test acc", "restricted_loss"} <= set(names)
    assert "memorised (200)" in names and "grokked (1200)" in names
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"  # loss panel
    assert fig.layout.yaxis3.type == "log"  # the measure spans 7 decades
    assert sorted({s.x0 for s in fig.layout.shapes}) == [200, 1200]
    test = next(t for t in fig.data if t.name == "test acc")
    assert list(test.x) == list(range(10, 2010, 10))  # step 0 has no place on a log axis
    with pytest.raises(g.GrokInterpError, match="measures"):
        interactive.training_figure(_history(), ["nope"])


def test_fourier_figure_slides_over_every_checkpoint(run):
    fig = interactive.fourier_figure(run)
    steps = run.checkpoint_steps
    slider = fig.layout.sliders[0]
    assert [s.label for s in slider.steps] == [str(s) for s in steps] and slider.active == len(steps) - 1
    assert len(fig.data) == len(steps) and [t.visible for t in fig.data].count(True) == 1
    k = len(steps) // 2
    assert slider.steps[k].args[0]["visible"] == [i == k for i in range(len(steps))]
    np.testing.assert_allclose(fig.data[k].y, np.asarray(viz_data.fourier_norms(run, steps[k])), rtol=1e-6)
    two = interactive.fourier_figure(run, steps=steps[:2])
    assert len(two.data) == 2
    with pytest.raises(g.GrokInterpError, match="steps"):
        interactive.fourier_figure(run, steps=[7])


def test_fourier_2d_figure_names_cos_and_sin_on_hover(run):
    fig = interactive.fourier_2d_figure(run, steps=run.checkpoint_steps[-2:])
    heat = fig.data[-1]
    assert list(heat.x) == g.measures.fourier_basis_names(run.task.p) and "%{x}" in heat.hovertemplate
    assert len(fig.layout.sliders[0].steps) == 2


def test_a_run_without_checkpoints_says_so_in_one_line(run):
    bare = g.from_model(run.model, run.task.p, split=run.split)
    with pytest.raises(g.GrokInterpError, match="no checkpoints to slide over"):
        interactive.fourier_figure(bare)
