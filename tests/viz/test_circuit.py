"""grok_interp.viz.circuit: the demo's and ARENA's circuit pictures draw what they are given.

Planted data with a known answer (a neuron that is exactly cos(w_k a) cos(w_k b), an
embedding that is exactly a circle) checks what each picture computes; a small run
checks that each also reads its data from a run.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from grok_interp.measures import fourier_basis_names
from grok_interp.viz import (
    InlineFigure,
    plot_attention_grid,
    plot_embedding_clock,
    plot_fourier_2d,
    plot_logit_map_fourier,
    plot_neuron_grid,
    plot_trig_fit,
    trig_fit,
)

from ..helpers import small_run

pytestmark = pytest.mark.portable

P = 13


def _waves(p: int = P):
    x = torch.arange(p, dtype=torch.float64)
    a, b = torch.meshgrid(x, x, indexing="ij")
    w = lambda k: 2 * math.pi * k / p  # noqa: E731
    return a, b, w


def _image(fig, i: int = 0) -> np.ndarray:
    return np.asarray(fig.axes[i].images[0].get_array())


def test_attention_grid_draws_each_head_as_given():
    att = torch.rand(3, P, P, generator=torch.Generator().manual_seed(0))
    fig = plot_attention_grid(att)
    assert isinstance(fig, InlineFigure)
    for h in range(3):
        assert np.allclose(_image(fig, h), att[h].numpy())
    with pytest.raises(ValueError, match="n_heads, p, p"):
        plot_attention_grid(torch.rand(3, P, P + 1))


def test_fourier_2d_puts_a_planted_product_in_its_one_cell():
    a, b, w = _waves()
    k = 4
    acts = torch.stack([torch.cos(w(k) * a) * torch.cos(w(k) * b), 2 * torch.sin(w(k) * a)], -1)  # (p, p, 2)
    shown = _image(plot_fourier_2d(acts))  # mean over the two neurons of squared coefficients
    names = fourier_basis_names(P)
    cc, s0 = names.index(f"cos {k}"), names.index(f"sin {k}")
    # ||cos(w a) cos(w b)||^2 = p^2/4 over the grid, all of it in cell (cos k, cos k)
    expected = np.zeros((P, P))
    expected[cc, cc] = (P * P / 4) / 2
    expected[s0, 0] = (4 * P * P / 2) / 2  # 2 sin(w a): (sin k, const)
    assert np.allclose(shown, expected, atol=1e-9)
    one = _image(plot_fourier_2d(acts, neuron=0))
    assert one[cc, cc] == pytest.approx(P / 2) and np.abs(one).sum() == pytest.approx(P / 2)


def test_trig_fit_splits_linear_and_quadratic_terms_exactly():
    a, b, w = _waves()
    k = 3
    X = 2 + torch.cos(w(k) * a) + 3 * torch.cos(w(k) * a) * torch.cos(w(k) * b)
    noise = torch.cos(w(5) * (a - b))  # another frequency: not in k's block
    res = trig_fit(torch.stack([X, X + noise], -1), k)
    # squared norms over the grid: cos(w a) -> p^2/2, 3 cos cos -> 9 p^2/4
    assert res["linear"][0] == pytest.approx(2 / 11) and res["quadratic"][0] == pytest.approx(9 / 11)
    assert res["fve"][0] == pytest.approx(1.0)
    assert np.allclose(res["fit"][:, :, 0], X.numpy()) and np.allclose(res["fit"][:, :, 1], X.numpy())
    # the other frequency's p^2/2 of variance is left out: share (p^2/2 + 9p^2/4) / (p^2 + 9p^2/4)
    assert res["fve"][1] == pytest.approx(5.5 / 6.5)
    clusters = pd.DataFrame({"neuron": [0, 1], "frequency": [k, 0], "fve": [1.0, 0.0]})
    fig = plot_trig_fit(torch.stack([X, X + noise], -1), clusters)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [f"k={k}"]


def test_logit_map_is_the_fourier_transform_of_w_l_grouped_by_cluster():
    x = torch.arange(P, dtype=torch.float64)
    wl = torch.stack([torch.cos(2 * math.pi * 2 * x / P), torch.sin(2 * math.pi * 5 * x / P), torch.cos(2 * math.pi * 2 * x / P)])
    clusters = pd.DataFrame({"neuron": [0, 1, 2], "frequency": [5, 2, 0], "fve": [1.0, 1.0, 0.0]})
    shown = _image(plot_logit_map_fourier(wl, clusters=clusters))
    names = fourier_basis_names(P)
    # rows ordered by cluster frequency: neuron 1 (k=2), neuron 0 (k=5), then neuron 2 (none)
    expected = np.zeros((3, P))
    expected[0, names.index("sin 5")] = math.sqrt(P / 2)
    expected[1, names.index("cos 2")] = math.sqrt(P / 2)
    expected[2, names.index("cos 2")] = math.sqrt(P / 2)
    assert np.allclose(shown, expected, atol=1e-9)


def test_embedding_clock_puts_a_circular_embedding_on_a_circle_in_order():
    k, d = 4, 8
    x = torch.arange(P, dtype=torch.float64)
    W = torch.zeros(P, d, dtype=torch.float64)
    W[:, 2] = 3 * torch.cos(2 * math.pi * k * x / P)
    W[:, 5] = 3 * torch.sin(2 * math.pi * k * x / P)
    W += 0.5  # a constant offset: removed with the mean
    fig = plot_embedding_clock(W)  # default frequencies: those with a large embedding norm -> [k]
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 1
    ax = fig.axes[0]
    xy = np.asarray(ax.collections[0].get_offsets())
    assert np.allclose(np.hypot(xy[:, 0], xy[:, 1]), 3.0)  # all on one circle of radius 3
    angle = np.unwrap(np.arctan2(xy[:, 1], xy[:, 0])[(np.arange(P) * pow(k, -1, P)) % P])
    assert np.allclose(np.abs(np.diff(angle)), 2 * math.pi / P)  # consecutive in w_k a
    assert "100% of W_E variance" in ax.get_title()
    with pytest.raises(ValueError, match="key_freqs"):
        plot_embedding_clock(W, [P])


def test_neuron_grid_draws_the_chosen_neurons():
    acts = torch.rand(P, P, 5, generator=torch.Generator().manual_seed(1))
    fig = plot_neuron_grid(acts, [3, 1])
    assert np.allclose(_image(fig, 0), acts[:, :, 3].numpy())
    assert fig.axes[0].get_title() == "neuron 3"
    with pytest.raises(ValueError, match="neurons"):
        plot_neuron_grid(acts, [7])


def test_circuit_plots_read_their_data_from_a_run():
    run = small_run(steps=40)
    p, heads = run.task.p, run.model.cfg.n_heads
    fig = plot_attention_grid(run)
    tokens = run.task.tokens(torch.tensor([[3, 5]]))
    _, cache = run.model.run_with_cache(tokens)
    assert _image(fig, 0)[3, 5] == pytest.approx(float(cache["blocks.0.attn.hook_pattern"][0, 0, -1, 0]), abs=1e-6)
    assert len([ax for ax in fig.axes if ax.images]) == heads
    fig = plot_neuron_grid(run, [2])
    assert _image(fig)[3, 5] == pytest.approx(float(cache["blocks.0.mlp.hook_post"][0, -1, 2]), abs=1e-5)
    for make in (plot_fourier_2d, plot_logit_map_fourier, plot_trig_fit):
        assert isinstance(make(run, step=20), InlineFigure)
    clock = plot_embedding_clock(run, [1, 2], step=20)
    assert [ax.get_title().split(":")[0] for ax in clock.axes if ax.get_visible()] == ["k=1", "k=2"]
    assert _image(plot_fourier_2d(run)).shape == (p, p)
