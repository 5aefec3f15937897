"""No public call changes global state: torch, numpy and ``random`` generators, torch's
default dtype and thread count are the same after the call as before it.

TransformerLens' ``HookedTransformerConfig(seed=s)`` seeds all three generators for the
session; a library that passes it a seed re-seeds the user's notebook at every model
build (``load_run``, ``model_at``, ``measure``...). Each case sets the generators to a
state no library would pick, runs the call, and compares the next draws with the draws
of an untouched copy of that state.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import grok_interp as g
from grok_interp import measures as M
from grok_interp import viz

from .helpers import BACKENDS, SMALL_MODEL, small_run

pytestmark = pytest.mark.portable


def _draws() -> tuple:
    return (random.random(), float(np.random.rand()), float(torch.rand(1)), torch.get_default_dtype(), torch.get_num_threads())


def assert_no_global_side_effects(call) -> object:
    """Run ``call()`` between seeded generators; fail if any draw, dtype or thread count changed."""
    random.seed(12345)
    np.random.seed(12345)
    torch.manual_seed(12345)
    expected = _draws()
    random.seed(12345)
    np.random.seed(12345)
    torch.manual_seed(12345)
    result = call()
    after = _draws()
    names = ("random", "numpy", "torch", "default dtype", "num threads")
    changed = [n for n, a, b in zip(names, after, expected) if a != b]
    assert not changed, f"the call changed global state: {changed}"
    return result


def test_the_checker_catches_each_kind_of_side_effect():
    """The checker itself fails on a reseed of each generator (else the tests below prove nothing)."""
    for reseed in (lambda: random.seed(0), lambda: np.random.seed(0), lambda: torch.manual_seed(0), lambda: torch.rand(3)):
        with pytest.raises(AssertionError, match="changed global state"):
            assert_no_global_side_effects(reseed)
    before = torch.get_num_threads()
    try:
        with pytest.raises(AssertionError, match="num threads"):
            assert_no_global_side_effects(lambda: torch.set_num_threads(before + 1))
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("init", ["tl", "nanda"])
def test_build_model_leaves_global_state_alone(backend, init):
    cfg = g.ModelConfig(backend=backend, init=init, seed=7, **SMALL_MODEL)
    model = assert_no_global_side_effects(lambda: g.models.build_model(cfg, g.Task(23)))
    # ... and its weights still depend on the seed only, not on the caller's RNG state.
    torch.manual_seed(1)
    again = g.models.build_model(cfg, g.Task(23))
    for name, w in g.models.weights(model).items():
        assert torch.equal(w, g.models.weights(again)[name]), name


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("state") / "run"
    small_run(steps=60, out=out)
    return out


def test_training_and_loading_leave_global_state_alone(run_dir, tmp_path):
    assert_no_global_side_effects(lambda: small_run(steps=20))
    assert_no_global_side_effects(lambda: small_run(steps=20, out=tmp_path / "r", record="default"))
    run = assert_no_global_side_effects(lambda: g.load_run(run_dir))
    assert_no_global_side_effects(lambda: run.model_at(20))
    assert_no_global_side_effects(lambda: run.weights_at(20))
    assert_no_global_side_effects(lambda: run.measure(["med", "restricted_loss"]))


def test_measures_plots_and_report_leave_global_state_alone(run_dir, tmp_path):
    run = g.load_run(run_dir)
    model, task = run.model, run.task
    for call in (
        lambda: M.key_frequencies(model, task),
        lambda: M.neuron_frequency_clusters(model, task),
        lambda: M.restricted_loss(model, run, [1, 2]),
        lambda: M.restricted_loss(model, run, [1, 2], variant="neuron_projection"),
        lambda: M.restricted_loss(model, run, [1, 2], variant="tl_demo"),
        lambda: M.stability(model, run),
        lambda: M.excluded_loss(model, run, [1, 2]),
        lambda: M.trig_loss(model, run, [1, 2]),
        lambda: M.med(model, task),
        lambda: g.compare_measures(run),
        lambda: viz.plot_training(run),
        lambda: viz.plot_embedding_fourier_norms(run),
        lambda: viz.plot_neuron_clusters(run),
        lambda: viz.plot_attention_grid(run),
        lambda: viz.plot_neuron_grid(run),
        lambda: viz.plot_fourier_2d(run),
        lambda: viz.plot_logit_map_fourier(run),
        lambda: viz.plot_trig_fit(run),
        lambda: viz.plot_embedding_clock(run, key_freqs=[1, 2]),
        lambda: viz.attention_heads(run),
        lambda: viz.write_report(run, tmp_path / "report.html", compare=False),
    ):
        assert_no_global_side_effects(call)
