"""Fourier basis, transforms, embedding norms and Gini against analytic cases."""

from __future__ import annotations

import math

import pytest
import torch

import grok_interp as g
from grok_interp.measures import (
    embedding_fourier_norms,
    fourier_basis,
    fourier_basis_names,
    fourier_gini,
    fourier_transform_1d,
    fourier_transform_2d,
    gini,
    key_frequencies,
)

pytestmark = pytest.mark.portable


@pytest.mark.parametrize("p", [3, 7, 23, 113])
def test_fourier_basis_is_orthonormal_and_cos_first(p):
    F = fourier_basis(p, dtype=torch.float64)
    assert torch.allclose(F @ F.T, torch.eye(p, dtype=torch.float64), atol=1e-12)
    x = torch.arange(p, dtype=torch.float64)
    assert torch.allclose(F[0], torch.full((p,), 1 / math.sqrt(p), dtype=torch.float64))
    k = (p - 1) // 2
    assert torch.allclose(F[2 * k - 1], torch.cos(2 * math.pi * k * x / p) * math.sqrt(2 / p), atol=1e-12)
    assert torch.allclose(F[2 * k], torch.sin(2 * math.pi * k * x / p) * math.sqrt(2 / p), atol=1e-12)
    names = fourier_basis_names(p)
    assert names[0] == "const" and names[2 * k - 1] == f"cos {k}" and names[2 * k] == f"sin {k}" and len(names) == p


def test_fourier_basis_rejects_even_p():
    with pytest.raises(ValueError, match="odd"):
        fourier_basis(10)


def test_1d_transform_of_a_pure_wave_has_one_coefficient():
    p, k = 13, 4
    x = torch.arange(p, dtype=torch.float64)
    t = 3.0 * torch.sin(2 * math.pi * k * x / p)
    c = fourier_transform_1d(t)
    expected = torch.zeros(p, dtype=torch.float64)
    expected[2 * k] = 3.0 * math.sqrt(p / 2)
    assert torch.allclose(c, expected, atol=1e-10)
    # along another dim, batched
    both = torch.stack([t, t * 2], dim=1)  # (p, 2)
    assert torch.allclose(fourier_transform_1d(both, dim=0)[:, 1], 2 * expected, atol=1e-10)


def test_2d_transform_of_a_product_wave():
    p, k, j = 11, 2, 5
    x = torch.arange(p, dtype=torch.float64)
    X = torch.cos(2 * math.pi * k * x / p)[:, None] * torch.sin(2 * math.pi * j * x / p)[None, :]
    C = fourier_transform_2d(X)
    expected = torch.zeros(p, p, dtype=torch.float64)
    expected[2 * k - 1, 2 * j] = p / 2
    assert torch.allclose(C, expected, atol=1e-10)
    # extra trailing dims are carried along
    assert torch.allclose(fourier_transform_2d(torch.stack([X, -X], -1))[..., 1], -expected, atol=1e-10)


def test_embedding_fourier_norms_of_an_embedding_built_from_two_frequencies():
    p = 17
    x = torch.arange(p, dtype=torch.float64)
    W = torch.zeros(p + 1, 4, dtype=torch.float64)
    W[:p, 0] = 2 * torch.cos(2 * math.pi * 3 * x / p)
    W[:p, 1] = 2 * torch.sin(2 * math.pi * 3 * x / p)
    W[:p, 2] = 0.5 * torch.cos(2 * math.pi * 7 * x / p + 1.0)
    n = embedding_fourier_norms(W, p)
    assert n.shape == ((p - 1) // 2,)
    expected = torch.zeros(8)
    expected[2] = math.sqrt(2 * (2 * math.sqrt(p / 2)) ** 2)  # frequency 3 at index 2
    expected[6] = 0.5 * math.sqrt(p / 2)
    assert torch.allclose(n, expected, atol=1e-5)
    model_like = {"embed.W_E": W}
    assert key_frequencies_embedding(model_like, p) == [3]  # 0.5 sqrt(p/2) < max / 4


def key_frequencies_embedding(w, p):
    model = g.models.build_model(g.ModelConfig(d_model=4, n_heads=1, d_mlp=8), g.Task(p))
    full = g.models.weights(model)
    full = {k: v.detach().clone() for k, v in full.items()}
    full["embed.W_E"] = w["embed.W_E"].float()
    from grok_interp.models import load_weights

    load_weights(model, full)
    return key_frequencies(model, p, rule="embedding")


def test_gini_analytic_values_and_the_pairwise_difference_formula():
    for n in (2, 5, 56):
        one_hot = torch.zeros(n)
        one_hot[n // 2] = 3.0
        assert gini(one_hot) == pytest.approx(1 - 1 / n)
        assert gini(torch.full((n,), 0.7)) == pytest.approx(0.0, abs=1e-12)
    x = torch.rand(40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean_abs_diff = (x[:, None] - x[None, :]).abs().sum() / (2 * len(x) ** 2 * x.mean())
    assert gini(x) == pytest.approx(float(mean_abs_diff), rel=1e-10)
    assert gini([0.0, 0.0]) == 0.0


def test_fourier_gini_is_high_for_a_one_frequency_embedding():
    p = 13
    task = g.Task(p)
    model = g.models.build_model(g.ModelConfig(d_model=8, n_heads=1, d_mlp=16), task)
    w = {k: v.detach().clone() for k, v in g.models.weights(model).items()}
    x = torch.arange(p, dtype=torch.float32)
    w["embed.W_E"][:p] = 0
    w["embed.W_E"][:p, 0] = torch.cos(2 * math.pi * 5 * x / p)
    res = fourier_gini(w, task)
    assert res["gini_embed"] == pytest.approx(1 - 1 / 6, abs=1e-5)  # one of (p-1)/2 frequency norms
    assert 0 <= res["gini_logit"] < 1
    # the per-component norm set: one of p norms (const, cos k, sin k) is non-zero, cos 5
    comp = fourier_gini(w, task, norms="component")
    assert comp["gini_embed_component"] == pytest.approx(1 - 1 / 13, abs=1e-5)
    assert 0 <= comp["gini_logit_component"] < 1 and comp["gini_logit_component"] != res["gini_logit"]
    with pytest.raises(ValueError, match="norms"):
        fourier_gini(w, task, norms="both")
