"""Models imported without their training: measured at the one model, plotted and
reported; a model with a p + 1-th ("=") output logit accepted, the logit dropped."""

from __future__ import annotations

import logging

import pytest
import torch

import grok_interp as g
from grok_interp import tl_backend
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
    plot_training,
    plot_trig_fit,
)
from grok_interp.viz.plots import NO_HISTORY

from .test_external import _hooked, _tl_cfg

P = 11
needs_hooked = pytest.mark.skipif(not tl_backend.HAS_HOOKED_TRANSFORMER, reason="HookedTransformer is gone in TransformerLens 4")


@pytest.fixture(scope="module")
def bare():
    """A trained model imported with nothing else: no checkpoints, no history."""
    run = g.train_hooked(p=P, steps=150, d_model=32, n_heads=4, d_mlp=64, progress=False, frac=0.5)
    return g.from_model(run.model, P, split=run.split, step=150), run


def test_measure_without_checkpoints_measures_the_one_model(bare):
    imported, trained = bare
    assert imported.checkpoint_steps == [] and imported.history["step"].tolist() == [150]
    table = imported.measure(["med", "weight_norm"], progress=False)
    assert table["step"].tolist() == [150]
    want = trained.measure(["med", "weight_norm"], steps=[150], progress=False)
    assert table["med"].iloc[0] == pytest.approx(want["med"].iloc[0], rel=1e-6)
    assert table["weight_norm"].iloc[0] == pytest.approx(want["weight_norm"].iloc[0], rel=1e-6)
    assert imported.checkpoint_steps == []  # measuring did not change the run
    assert imported.measure(["restricted_loss"], progress=False)["restricted_loss"].notna().all()


def test_every_plot_and_the_report_work_without_checkpoints(bare, tmp_path):
    imported, _ = bare
    for plot in (plot_attention_grid, plot_neuron_grid, plot_fourier_2d, plot_logit_map_fourier, plot_trig_fit,
                 plot_embedding_clock, plot_embedding_fourier_norms, plot_neuron_clusters, plot_split):
        fig = plot(imported)
        assert fig.axes, plot.__name__
    for fig in (plot_training(imported), plot_measures(imported, ["med"])):
        assert [t.get_text() for ax in fig.axes for t in ax.texts] == [NO_HISTORY]
    from grok_interp.viz.report import write_report

    page = write_report(imported, tmp_path / "r.html", compare=False).read_text()
    for section in ("training", "fourier", "clusters", "split"):
        assert f'<section id="{section}">' in page
    measures = page[page.index('<section id="measures">'):]
    measures = measures[:measures.index("</section>")]
    assert "Measured at the one model there is (step 150)" in measures  # values, not a one-point curve
    for name in ("med", "restricted_loss", "excluded_loss"):
        assert f"<td>{name}</td>" in measures


@needs_hooked
def test_a_model_with_p_plus_1_output_logits_is_accepted_and_says_so_once(caplog):
    theirs = _hooked(P, d_vocab_out=P + 1)
    early = {k: v.clone() for k, v in theirs.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="grok_interp.external"):
        run = g.from_model(theirs, P, checkpoints={0: early, 10: theirs.state_dict()})
    said = [r.getMessage() for r in caplog.records if "logits" in r.getMessage()]
    assert len(said) == 1 and "'=' token's" in said[0] and "dropped" in said[0]
    assert run.model.cfg.d_vocab_out == P
    tokens = run.task.tokens(run.task.all_pairs())
    with torch.no_grad():
        want = theirs(tokens)[:, -1, :P]
        got = run.model(tokens)[:, -1]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert run.weights_at(0)["unembed.W_U"].shape[-1] == P
    assert run.measure(["med"], progress=False)["step"].tolist() == [0, 10]


@needs_hooked
def test_a_state_dict_with_p_plus_1_logits_and_a_wrong_vocabulary_still_errs():
    theirs = _hooked(P, d_vocab_out=P + 1)
    run = g.from_model(theirs.state_dict(), P, cfg=_tl_cfg(P, d_vocab_out=P + 1, seed=5))
    assert run.model.cfg.d_vocab_out == P
    with pytest.raises(g.GrokInterpError, match="d_vocab_out=13"):
        g.from_model(_hooked(P, d_vocab_out=P + 2), P)


def test_load_run_defaults_to_auto_and_blames_the_device_not_config_json(tmp_path, monkeypatch):
    import inspect

    assert inspect.signature(g.load_run).parameters["device"].default == "auto"
    out = tmp_path / "r"
    g.train_hooked(p=P, steps=10, d_model=16, n_heads=2, d_mlp=32, progress=False, out=out)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert next(g.load_run(out).model.parameters()).device.type == "cpu"
    with pytest.raises(g.GrokInterpError) as err:
        g.load_run(out, device="cuda")
    assert "no CUDA device" in str(err.value) and "config.json" not in str(err.value)
    assert not isinstance(err.value, g.RunDirectoryError)
