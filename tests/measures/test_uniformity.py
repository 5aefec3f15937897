"""MED, activation MED, uniformity statistics and RQI against analytic cases and
independent formulas."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import grok_interp as g
from grok_interp.measures import activation_med, med, rqi, uniformity_stats

pytestmark = pytest.mark.portable


def _circle(p: int, r: float, d_model: int = 6, phase: float = 0.3, dims=(0, 1)) -> torch.Tensor:
    theta = 2 * math.pi * torch.arange(p, dtype=torch.float64) / p + phase
    X = torch.zeros(p, d_model, dtype=torch.float64)
    X[:, dims[0]], X[:, dims[1]] = r * torch.cos(theta), r * torch.sin(theta)
    return X


@pytest.mark.parametrize("p,r", [(7, 1.0), (23, 2.5), (113, 0.4)])
def test_med_of_points_evenly_on_a_circle(p, r):
    W_E = torch.cat([_circle(p, r), torch.randn(1, 6, dtype=torch.float64)])  # operand tokens, then "="
    expected = 2 * r * math.sin(math.pi / p)
    assert med(W_E, g.Task(p)) == pytest.approx(expected, rel=1e-9)
    assert med(W_E, p, wrap=False) == pytest.approx(expected, rel=1e-9)  # all steps equal
    assert med(W_E, p, reduce="sum") == pytest.approx(p * expected, rel=1e-9)


def test_med_with_offset_averages_both_operand_ranges():
    p, d = 11, 11
    task = g.Task(p, offset=d)
    W_E = torch.cat([_circle(p, 1.0), _circle(p, 3.0, dims=(2, 3)), torch.zeros(1, 6, dtype=torch.float64)])
    assert W_E.shape[0] == task.d_vocab
    expected = (2 * 1.0 + 2 * 3.0) / 2 * math.sin(math.pi / p)
    assert med(W_E, task) == pytest.approx(expected, rel=1e-9)


def _open_chain_mean(W_cols: torch.Tensor, a: int, b: int, c: int, d: int) -> float:
    """Written out independently on embedding columns W_cols (d_model, d_vocab): the mean
    norm of consecutive column differences over [a, b) and over [c, d), averaged."""
    first = torch.linalg.vector_norm(W_cols[:, a + 1 : b] - W_cols[:, a : b - 1], dim=0).mean()
    second = torch.linalg.vector_norm(W_cols[:, c + 1 : d] - W_cols[:, c : d - 1], dim=0).mean()
    return float((first + second) / 2)


@pytest.mark.parametrize("offset", [0, 7, 13])
def test_no_wrap_med_is_the_open_chain_over_all_p_residues(offset):
    # wrap=False keeps residue p-1 (p-1 steps); no reference script computes this: they
    # drop residue p-1 (see the drop_last variants below).
    p = 13
    task = g.Task(p, offset=offset)
    gen = torch.Generator().manual_seed(offset)
    W_E = torch.randn(task.d_vocab, 16, generator=gen)
    ref = _open_chain_mean(W_E.T, 0, p, offset, offset + p)
    assert med(W_E, task, wrap=False) == pytest.approx(ref, rel=1e-6)
    assert med(W_E, task) != pytest.approx(ref, rel=1e-6)  # wrapping adds the (p-1, 0) step
    assert med(W_E, task, variant="drop_last_avg") != pytest.approx(ref, rel=1e-6)


def _line_embedding(positions_a, positions_b=None):
    """Tokens on the first axis at the given positions (a-range, then b-range), then "="."""
    rows = list(positions_a) + list(positions_b or []) + [123.0]
    W = torch.zeros(len(rows), 3, dtype=torch.float64)
    W[:, 0] = torch.tensor(rows, dtype=torch.float64)
    return W


def test_reference_med_variants_by_hand_offset_zero():
    # p = 5: residues 0..3 are used (residue 4 dropped): steps 1, 2, 3, mean 2. With d = 0
    # the reference counts the same range twice.
    W = _line_embedding([0.0, 1.0, 3.0, 6.0, 10.0])
    task = g.Task(5)
    assert med(W, task, variant="drop_last_avg") == pytest.approx(2.0)  # base.py: (2 + 2) / 2
    assert med(W, task, variant="drop_last_sum") == pytest.approx(4.0)  # str.py: 2 + 2
    assert med(W, task, variant="drop_last_scaled_sum") == pytest.approx(16.0)  # rec.py: 4 * 2 + 4 * 2
    # Residue p-1's token takes no part: moving it changes none of them.
    W2 = W.clone()
    W2[4, 1] = 50.0
    for v in ("drop_last_avg", "drop_last_sum", "drop_last_scaled_sum"):
        assert med(W2, task, variant=v) == med(W, task, variant=v)


def test_reference_med_variants_by_hand_with_offset():
    # p = 5, d = 5: a-steps 1, 2, 3 (mean 2); b-tokens 5..8 at 0, 4, 4, 10: steps 4, 0, 6 (mean 10/3).
    W = _line_embedding([0.0, 1.0, 3.0, 6.0, -7.0], [0.0, 4.0, 4.0, 10.0, 99.0])
    task = g.Task(5, offset=5)
    assert med(W, task, variant="drop_last_avg") == pytest.approx((2 + 10 / 3) / 2)
    assert med(W, task, variant="drop_last_sum") == pytest.approx(2 + 10 / 3)
    assert med(W, task, variant="drop_last_scaled_sum") == pytest.approx(4 * 2 + 4 * 10 / 3)


def test_reference_med_variants_match_the_scripts_call_on_a_random_matrix():
    # calculate_embedding_diff(W, 0, p - 1, d, d + p - 1) in the three scripts, transcribed.
    p, d = 11, 4
    task = g.Task(p, offset=d)
    W_E = torch.randn(task.d_vocab, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cols = W_E.T
    m1 = torch.linalg.vector_norm(cols[:, 1 : p - 1] - cols[:, 0 : p - 2], dim=0).mean().item()
    m2 = torch.linalg.vector_norm(cols[:, d + 1 : d + p - 1] - cols[:, d : d + p - 2], dim=0).mean().item()
    assert med(W_E, task, variant="drop_last_avg") == pytest.approx(0.5 * (m1 + m2))
    assert med(W_E, task, variant="drop_last_sum") == pytest.approx(m1 + m2)
    assert med(W_E, task, variant="drop_last_scaled_sum") == pytest.approx((p - 1) * m1 + (p - 1) * m2)


def test_med_variant_rejects_other_options():
    W = _line_embedding([0.0, 1.0, 3.0, 6.0, 10.0])
    with pytest.raises(ValueError, match="variant"):
        med(W, 5, variant="rec")
    with pytest.raises(ValueError, match="variant"):
        med(W, 5, variant="drop_last_sum", wrap=False)


def test_med_reads_a_models_embedding():
    run_model = g.models.build_model(g.ModelConfig(d_model=16, n_heads=2, d_mlp=32), g.Task(7))
    assert med(run_model, 7) == pytest.approx(med(run_model.W_E.detach(), 7), rel=1e-7)
    with pytest.raises(ValueError, match="reduce"):
        med(run_model, 7, reduce="max")


@pytest.mark.parametrize("offset", [0, 5])
def test_activation_med_on_hook_embed_equals_embedding_med(offset):
    task = g.Task(7, offset=offset)
    model = g.models.build_model(g.ModelConfig(d_model=16, n_heads=2, d_mlp=32), task)
    # position 0 holds a-token i, position 1 the b-token i + d: their embeddings
    med_a = med(model.W_E.detach()[:7], 7)
    assert activation_med(model, task, "hook_embed", pos=0) == pytest.approx(med_a, rel=1e-5)
    med_b = med(model.W_E.detach()[offset : offset + 7], 7)
    assert activation_med(model, task, "hook_embed", pos=1) == pytest.approx(med_b, rel=1e-5)


def test_activation_med_on_the_mlp_baseline_hidden_layer_with_frozen_onehot():
    task = g.Task(7)
    model = g.models.build_model(g.ModelConfig(arch="mlp", d_model=16, d_mlp=24, embed_init="onehot"), task)
    w = g.models.weights(model)
    i = torch.arange(7)
    x = torch.cat([w["embed.W_E"][i], w["embed.W_E"][i]], 1)
    h = torch.relu(x @ w["hidden1.W"] + w["hidden1.b"]).detach().double()
    expected = (torch.roll(h, -1, 0) - h).norm(dim=1).mean()
    assert activation_med(model, task) == pytest.approx(float(expected), rel=1e-5)  # default hook: hidden1
    with pytest.raises(ValueError, match="hook"):
        activation_med(model, task, "no.such.hook")


def test_uniformity_stats_circle_versus_random():
    p = 17
    W_E = torch.cat([_circle(p, 2.0, d_model=8), torch.zeros(1, 8, dtype=torch.float64)])
    s = uniformity_stats(W_E, p)
    assert s["med_cv"] == pytest.approx(0, abs=1e-9)
    assert s["nn_spread"] == pytest.approx(0, abs=1e-9)
    assert s["norm_spread"] == pytest.approx(0, abs=1e-9)
    assert s["top2_variance"] == pytest.approx(1.0, abs=1e-9)
    noisy = uniformity_stats(torch.randn(p + 1, 8, generator=torch.Generator().manual_seed(0)), p)
    assert noisy["med_cv"] > 0.1 and noisy["nn_spread"] > 0.1 and noisy["top2_variance"] < 0.8


def _brute_rqi_linear(p: int, train: torch.Tensor) -> float:
    """For E[a] = a * v, a parallelogram holds exactly when a + b == c + d as integers."""
    pairs = [tuple(x) for x in train.nonzero().tolist()]
    total = good = 0
    for (a, b), (c, d) in itertools.permutations(pairs, 2):
        if (a + b - c - d) % p == 0:
            total += 1
            good += a + b == c + d
    return good / total


def test_rqi_of_a_linear_embedding_counts_unwrapped_parallelograms():
    p = 7
    task = g.Task(p)
    split = g.Split.random(task, frac=0.6, seed=3)
    v = torch.randn(5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    W_E = torch.cat([torch.arange(p, dtype=torch.float64)[:, None] * v, torch.zeros(1, 5, dtype=torch.float64)])
    assert rqi(W_E, split) == pytest.approx(_brute_rqi_linear(p, split.train_mask))
    with pytest.raises(ValueError, match="addition"):
        rqi(W_E, g.Task(p, op="multiply"))
