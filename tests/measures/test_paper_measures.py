"""The measures that carry a paper's name, each against a computation written a second
way from the paper's (or the demo's) definition, on a small trained model.

* restricted/excluded loss (``variant="paper"``, Nanda et al.'s progress-measures code):
  an explicit least-squares fit, one output class at a time, on the directions built
  from the 2-D Fourier basis as ``(cos a cos b - sin a sin b) / sqrt 2`` and
  ``(sin a cos b + cos a sin b) / sqrt 2``, in numpy;
* ``variant="tl_demo"`` (TransformerLens Grokking demo): the demo's loop over key
  frequencies, neuron by neuron, from ``run_with_cache``;
* the stability measures (Prieto et al.): from ``loss.backward()`` and the parameters'
  ``.grad``, and analytic collapsed cases.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import grok_interp as g
from grok_interp.errors import GrokInterpError
from grok_interp.measures import (
    excluded_loss,
    per_sample_loss,
    restricted_loss,
    stability,
)
from tests.helpers import small_run

pytestmark = pytest.mark.portable


@pytest.fixture(scope="module")
def trained():
    """p = 13, half the pairs trained for 400 steps: memorised, partly generalised."""
    run = small_run(p=13, frac=0.5, steps=400, checkpoint_every=400)
    with torch.no_grad():
        L = run.model(run.task.tokens(run.task.all_pairs()))[:, -1].double().numpy()
    return run, L


def _fourier_basis_1d(p: int) -> np.ndarray:
    x = np.arange(p)
    rows = [np.ones(p) / np.sqrt(p)]
    for k in range(1, p // 2 + 1):
        for wave in (np.cos, np.sin):
            v = wave(2 * np.pi * k * x / p)
            rows.append(v / np.linalg.norm(v))
    return np.stack(rows)


def _xpy_directions(p: int, freqs) -> np.ndarray:
    """cos/sin(w_k (a + b)) over the a-major grid, from products of 1-D basis vectors."""
    B = _fourier_basis_1d(p)
    cols = []
    for k in freqs:
        c, s = B[2 * k - 1], B[2 * k]
        cols.append((np.outer(c, c) - np.outer(s, s)).reshape(-1) / np.sqrt(2))
        cols.append((np.outer(s, c) + np.outer(c, s)).reshape(-1) / np.sqrt(2))
    return np.stack(cols, 1)


def _np_ce(L: np.ndarray, y: np.ndarray) -> float:
    m = L.max(1, keepdims=True)
    logp = L - m - np.log(np.exp(L - m).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def _paper_restricted(L: np.ndarray, p: int, freqs, mask: np.ndarray) -> np.ndarray:
    D = _xpy_directions(p, freqs)
    R = np.zeros_like(L)
    for c in range(p):  # one output class at a time: least squares on the class's column
        coef, *_ = np.linalg.lstsq(D, L[:, c], rcond=None)
        R[:, c] = D @ coef
    return R


def test_paper_restricted_and_excluded_loss_equal_a_per_class_least_squares_fit(trained):
    run, L = trained
    p = run.task.p
    y = run.task.answers(run.task.all_pairs()).numpy()
    train = run.split.train_mask.reshape(-1).numpy()
    test = run.split.test_mask.reshape(-1).numpy()
    for freqs in ([1], [2, 5], [1, 3, 4, 6]):
        R = _paper_restricted(L, p, freqs, train)
        corrected = R + (L - R).mean(0, keepdims=True)
        for pairs, m in (("all", np.ones_like(train)), ("train", train), ("test", test)):
            got = restricted_loss(run.model, run.split, freqs, pairs=pairs)
            assert got == pytest.approx(_np_ce(corrected[m], y[m]), rel=1e-6), (freqs, pairs)
        assert excluded_loss(run.model, run.split, freqs) == pytest.approx(_np_ce((L - R)[train], y[train]), rel=1e-6)
        per = excluded_loss(run.model, run.split, freqs, per_frequency=True)
        assert list(per) == freqs
        for k in freqs:
            Rk = _paper_restricted(L, p, [k], train)
            assert per[k] == pytest.approx(_np_ce((L - Rk)[train], y[train]), rel=1e-6)


def test_the_paper_and_the_difference_projection_are_different_measures(trained):
    """What 0.1 called restricted/excluded loss is not the paper's: on a trained model
    the two differ by far more than rounding (they keep 2p and 2 directions per
    frequency)."""
    run, _ = trained
    freqs = [1, 3, 4]
    paper = restricted_loss(run.model, run.split, freqs)
    diff = restricted_loss(run.model, run.split, freqs, variant="difference_projection")
    assert abs(paper - diff) > 0.01 * paper
    assert abs(excluded_loss(run.model, run.split, freqs)
               - excluded_loss(run.model, run.split, freqs, variant="difference_projection")) > 1e-3


def _demo_losses(model, task, split, freqs) -> tuple[float, float]:
    """The TransformerLens Grokking demo's get_restricted_loss / get_excluded_loss,
    written out as the demo loops: one frequency at a time, cos then sin."""
    p = task.p
    dataset = task.tokens(task.all_pairs())
    labels = task.answers(task.all_pairs())
    with torch.no_grad():
        logits, cache = model.run_with_cache(dataset)
    logits = logits[:, -1, :].double()
    neuron_acts = cache["blocks.0.mlp.hook_post"][:, -1, :].double()
    resid_mid = cache["blocks.0.hook_resid_mid"][:, -1, :].double()
    W_out, W_U = model.W_out[0].detach().double(), model.W_U.detach().double()
    a = torch.arange(p)[:, None]
    b = torch.arange(p)[None, :]
    approx = torch.zeros_like(neuron_acts)
    for freq in freqs:
        for wave in (torch.cos, torch.sin):
            vec = wave(freq * 2 * torch.pi / p * (a + b)).double()
            vec = (vec / vec.norm()).reshape(-1, 1)
            approx += (neuron_acts * vec).sum(dim=0) * vec
    restricted = (approx + neuron_acts.mean(dim=0)) @ W_out @ W_U
    restricted += logits.mean(dim=0, keepdim=True) - restricted.mean(dim=0, keepdim=True)
    excluded = ((neuron_acts - approx) @ W_out + resid_mid) @ W_U
    test, train = split.test_mask.reshape(-1), split.train_mask.reshape(-1)
    return (float(F.cross_entropy(restricted[test], labels[test])),
            float(F.cross_entropy(excluded[train], labels[train])))


def test_tl_demo_variant_is_the_demos_computation(trained):
    run, _ = trained
    for freqs in ([2], [1, 3, 4]):
        want_r, want_e = _demo_losses(run.model, run.task, run.split, freqs)
        assert restricted_loss(run.model, run.split, freqs, variant="tl_demo") == pytest.approx(want_r, rel=1e-6)
        assert excluded_loss(run.model, run.split, freqs, variant="tl_demo") == pytest.approx(want_e, rel=1e-6)
    # the demo drops b_out and b_U; this run trained them, so the variant differs from
    # the one that keeps the model's own skip path and biases
    keep = excluded_loss(run.model, run.split, [1, 3, 4], variant="neuron_projection")
    assert keep != pytest.approx(excluded_loss(run.model, run.split, [1, 3, 4], variant="tl_demo"), rel=1e-3)


def test_variant_errors_name_the_replacement(trained):
    run, _ = trained
    with pytest.raises(GrokInterpError, match="variant='neuron_projection'"):
        restricted_loss(run.model, run.split, [1], level="neurons")
    with pytest.raises(GrokInterpError, match="variant"):
        excluded_loss(run.model, run.split, [1], variant="logits")
    with pytest.raises(GrokInterpError, match="restricted_loss_neuron_projection"):
        run.measure(["restricted_loss_neurons"])
    with pytest.raises(GrokInterpError, match="needs a Split"):
        restricted_loss(run.model, run.task, [1], variant="tl_demo")  # the demo's default is the test pairs


def test_recorded_columns_are_the_named_variants(trained):
    run, _ = trained
    df = run.measure(["restricted_loss", "excluded_loss", "excluded_loss_per_freq", "restricted_loss_difference",
                      "restricted_loss_tl_demo", "excluded_loss_neuron_projection", "stability"],
                     key_freqs_from=[1, 3], steps=[run.checkpoint_steps[-1]])
    row = df.iloc[-1]
    m = run.model
    assert row["restricted_loss"] == pytest.approx(restricted_loss(m, run.split, [1, 3]), rel=1e-9)
    assert row["excluded_loss"] == pytest.approx(excluded_loss(m, run.split, [1, 3]), rel=1e-9)
    assert row["excluded_loss_k3"] == pytest.approx(excluded_loss(m, run.split, [3]), rel=1e-9)
    assert row["restricted_loss_difference"] == pytest.approx(
        restricted_loss(m, run.split, [1, 3], variant="difference_projection"), rel=1e-9)
    assert row["restricted_loss_tl_demo"] == pytest.approx(
        restricted_loss(m, run.split, [1, 3], variant="tl_demo"), rel=1e-9)
    assert row["excluded_loss_neuron_projection"] == pytest.approx(
        excluded_loss(m, run.split, [1, 3], variant="neuron_projection"), rel=1e-9)
    assert 0 <= row["zero_grad_fraction"] <= 1 and row["logit_scale"] > 0


# --- numerical stability (Prieto et al.) ------------------------------------------------------
def test_stability_matches_backward_and_leaves_grads_alone(trained):
    run, _ = trained
    model = run.model
    for p_ in model.parameters():
        p_.grad = None
    got = stability(model, run.split)
    assert all(p_.grad is None for p_ in model.parameters())  # the measure used autograd.grad
    pairs = run.split.train_pairs
    logits = model(run.task.tokens(pairs))[:, -1]
    loss = F.cross_entropy(logits, run.task.answers(pairs))
    loss.backward()
    params = [p_ for p_ in model.parameters() if p_.requires_grad]
    grad = torch.cat([p_.grad.reshape(-1) for p_ in params]).double()
    theta = torch.cat([p_.detach().reshape(-1) for p_ in params]).double()
    assert got["nlm_cosine"] == pytest.approx(float(F.cosine_similarity(-grad, theta, dim=0)), rel=1e-4)
    assert got["zero_grad_fraction"] == pytest.approx(float((grad == 0).double().mean()), abs=2e-3)
    assert got["logit_scale"] == pytest.approx(float(logits.detach().abs().max(1).values.mean()), rel=1e-5)
    for p_ in model.parameters():
        p_.grad = None


def test_softmax_collapse_is_exact_in_float32_and_absent_in_float64():
    logits = torch.tensor([[0.0, 20.0, 1.0], [0.0, 2.0, 1.0]])
    labels = torch.tensor([1, 1])
    f32, f64 = per_sample_loss(logits, labels, "float32"), per_sample_loss(logits, labels, "float64")
    assert f32[0] == 0 and f32[1] > 0  # the confident pair collapses in float32 only
    assert f64[0] > 0 and f64[0] == pytest.approx(math.log1p(math.exp(-20) + math.exp(-19)), rel=1e-6)
    assert per_sample_loss(logits, labels, "float16")[0] == 0


def _scaled(run, margin: float):
    """The run's model with its unembedding scaled until the smallest training margin
    (right logit minus the runner-up) is ``margin``."""
    model = copy.deepcopy(run.model)
    pairs = run.split.train_pairs
    with torch.no_grad():
        logits = model(run.task.tokens(pairs))[:, -1]
    assert bool((logits.argmax(1) == run.task.answers(pairs)).all())  # precondition: the run fits its training set
    top2 = logits.topk(2, dim=1).values
    scale = margin / float((top2[:, 0] - top2[:, 1]).min())
    w = {k: v.detach().clone() for k, v in g.models.weights(model).items()}
    w["unembed.W_U"] *= scale
    w["unembed.b_U"] *= scale
    g.models.load_weights(model, w)
    return model


def test_softmax_collapse_and_zero_gradients_of_a_scaled_fitted_model(trained):
    """At every training margin >= 25 the float32 loss rounds to exactly 0 (exp(-25) is
    below float32's resolution at 1) but the wrong classes' probabilities (1e-11) still
    send a gradient; in float64 that loss is not 0. At margins >= 120 those
    probabilities underflow too (exp(-120) < the smallest float32), so every gradient
    entry is exactly 0."""
    run, _ = trained
    before = stability(run.model, run.split)
    assert before["sc_fraction"] < 1
    m25 = _scaled(run, 25.0)
    s32, s64 = stability(m25, run.split), stability(m25, run.split, dtype="float64")
    assert s32["sc_fraction"] == 1.0 and s64["sc_fraction"] < 1
    assert s32["zero_grad_fraction"] < 1
    assert s32["logit_scale"] > before["logit_scale"]
    m120 = _scaled(run, 120.0)
    z32, z64 = stability(m120, run.split), stability(m120, run.split, dtype="float64")
    assert z32["sc_fraction"] == 1.0 and z32["zero_grad_fraction"] == 1.0
    # float64 losses do not bring the gradient back: it flows into the model's float32
    # logits, where 7.7e-53 flushes to zero as well
    assert z64["zero_grad_fraction"] == 1.0
    with pytest.raises(GrokInterpError, match="dtype"):
        stability(m120, run.split, dtype="bfloat8")


# --- run directories of 0.1 (format 4) that recorded the old columns ------------------------
def _as_format_4(run_dir) -> None:
    import json

    cfg = run_dir / "config.json"
    raw = json.loads(cfg.read_text())
    raw["grok_interp"]["format"] = 4
    cfg.write_text(json.dumps(raw))


def test_old_columns_are_renamed_on_load_and_a_resume_is_refused(tmp_path):
    run = small_run(out=tmp_path / "r", record=["restricted_loss_difference", "excluded_loss_difference"])
    for history in (tmp_path / "r").rglob("history.csv"):  # the run's and its resume states'
        text = history.read_text().replace("restricted_loss_difference", "restricted_loss").replace(
            "excluded_loss_difference", "excluded_loss")
        history.write_text(text)  # what 0.1 wrote: its difference projection under the paper's names
    assert "restricted_loss" in g.load_run(tmp_path / "r").history.columns  # format 5: the names mean the paper's
    _as_format_4(tmp_path / "r")
    old = g.load_run(tmp_path / "r").history
    assert {"restricted_loss_difference", "excluded_loss_difference"} <= set(old.columns)
    assert not {"restricted_loss", "excluded_loss"} & set(old.columns)
    assert old["restricted_loss_difference"].tolist() == run.history["restricted_loss_difference"].tolist()
    with pytest.raises(GrokInterpError, match="earlier grok_interp's definitions"):
        small_run(out=tmp_path / "r", steps=80, resume=True, record=["restricted_loss_difference"])


def test_renamed_columns_chain_across_versions(monkeypatch):
    from grok_interp import store

    monkeypatch.setattr(store, "RENAMED_COLUMNS", {5: {"a": "b"}, 6: {"b": "c"}, 7: {"x": "y"}})
    assert store.renamed_columns(4) == {"a": "c", "b": "c", "x": "y"}
    assert store.renamed_columns(5) == {"b": "c", "x": "y"}
    assert store.renamed_columns(7) == {}


def test_stability_is_recorded_through_training():
    run = small_run(steps=20, record=["stability"])
    h = run.history
    assert {"sc_fraction", "zero_grad_fraction", "nlm_cosine", "logit_scale"} <= set(h.columns)
    assert h["logit_scale"].notna().all() and h["nlm_cosine"].between(-1, 1).all()
    assert stability(run.model, run.split)["logit_scale"] == pytest.approx(h["logit_scale"].iloc[-1], rel=1e-5)
