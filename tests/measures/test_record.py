"""Recording measures during training, measuring checkpoints, and compare_measures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import grok_interp as g
from grok_interp.measures import compare_measures, med, recorder, restricted_loss, uniformity_stats, weight_norm
from tests.helpers import small_run

pytestmark = pytest.mark.portable


@pytest.fixture(scope="module")
def run():
    return small_run(steps=80, record="default")


def test_recorded_columns_equal_the_measures_of_the_checkpoint_at_that_step(run):
    h = run.history.set_index("step")
    for col in ("med", "weight_norm", "weight_norm.embed", "med_cv", "nn_spread", "norm_spread", "top2_variance"):
        assert col in h.columns and h[col].notna().all()
    for step in (0, 20, 40, 80):
        m = run.model_at(step)
        assert h.loc[step, "med"] == pytest.approx(med(m, run.task), rel=1e-6)
        assert h.loc[step, "weight_norm"] == pytest.approx(weight_norm(m)["weight_norm"], rel=1e-6)
        assert h.loc[step, "top2_variance"] == pytest.approx(uniformity_stats(m, run.task)["top2_variance"], rel=1e-6)
    assert h["weight_norm"].nunique() > 1  # it was measured on the changing model


def test_recorder_every_and_callables_and_bad_names():
    def n_params(model, task):
        return sum(p.numel() for p in model.parameters())

    r = small_run(steps=40, record=recorder(["med", n_params], every=20).measures)
    assert r.history["n_params"].notna().all()
    cb = recorder("med", every=20)
    r2 = small_run(steps=40, callbacks=[cb], eval_sparse=1)  # dense rows: 10 and 30 exist
    rec = r2.history.set_index("step")["med"]
    assert rec.loc[[0, 20, 40]].notna().all() and rec.loc[[10, 30]].isna().all()
    with pytest.raises(ValueError, match="measure='nope' is invalid"):
        recorder(["med", "nope"])


def test_measure_checkpoints_holds_the_final_key_frequencies_fixed(run):
    df = run.measure(["med", "restricted_loss", "key_freqs"], key_freqs_from=[1, 4])
    assert df["step"].tolist() == run.checkpoint_steps
    assert (df["key_freqs"] == "1 4").all()
    step = 40
    row = df.set_index("step").loc[step]
    assert row["restricted_loss"] == pytest.approx(restricted_loss(run.model_at(step), run.task, [1, 4]), rel=1e-6)
    assert row["test_loss"] == pytest.approx(run.history.set_index("step").loc[step, "test_loss"])
    final = run.measure(["key_freqs"], key_freqs_from="final", steps=[0, 80])
    own_final = g.measures.key_frequencies(run.model_at(80), run.task)
    assert final.attrs["key_freqs"] == own_final
    each = run.measure(["key_freqs"], key_freqs_from="each", steps=[0])
    assert each["key_freqs"].iloc[0] == " ".join(map(str, g.measures.key_frequencies(run.model_at(0), run.task)))
    with pytest.raises(ValueError, match="checkpoint"):
        run.measure(["med"], steps=[3])


def _synthetic_history():
    steps = np.arange(0, 6000, 20)
    test_loss = 4.0 / (1 + np.exp((steps - 4000) / 150)) + 0.01
    leading = 4.0 / (1 + np.exp((steps - 3400) / 150))  # the same curve 600 steps earlier
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "step": steps,
            "train_loss": 0.01,
            "train_acc": np.where(steps >= 1000, 1.0, 0.5),
            "test_loss": test_loss,
            "test_acc": 1.0 / (1 + np.exp(-(steps - 4000) / 150)),
            "leading": leading,
            "rising": -leading,
            "noise": rng.normal(size=len(steps)),
        }
    )


def test_compare_measures_finds_lag_direction_and_lead():
    out = compare_measures(_synthetic_history()).set_index("measure")
    assert out.attrs["memorised_at"] == 1000 and out.attrs["halfway_at"] == 4000
    assert out.attrs["grokked_at"] == 4700  # test accuracy first >= 0.99 (4000 + 150 ln 99 = 4689.3) at a row
    assert out.loc["leading", "best_lag"] == 600
    assert out.loc["leading", "pearson_at_lag"] == pytest.approx(1.0, abs=1e-6)
    assert out.loc["rising", "pearson_at_lag"] == pytest.approx(-1.0, abs=1e-6)
    assert out.loc["leading", "direction"] == "falls" and out.loc["rising", "direction"] == "rises"
    assert out.loc["leading", "moved_at"] == 3400 and out.loc["leading", "lead_over_acc"] == 600
    assert out.loc["leading", "before_acc"] and out.loc["leading", "before_test_loss"]
    assert abs(out.loc["noise", "spearman"]) < 0.2
    assert math.isnan(out.loc["train_loss", "spearman"])  # constant: no correlation
    assert out.loc["train_loss", "direction"] == "flat" and pd.isna(out.loc["train_loss", "moved_at"])
    assert out.index[0] in ("leading", "rising")


def test_compare_measures_merges_a_measures_table():
    h = _synthetic_history()
    extra = h[["step", "leading"]].iloc[::5].rename(columns={"leading": "sparse"})
    extra["test_loss"] = 123.0  # history columns of the extra table are ignored
    out = compare_measures(h.drop(columns=["leading", "rising", "noise"]), extra).set_index("measure")
    assert out.loc["sparse", "best_lag"] == 600
    assert out.loc["sparse", "n"] == len(extra[extra["step"] >= 1000])


def test_cli_measure_writes_csv_and_prints_the_comparison(tmp_path, capsys):
    from grok_interp import cli

    small_run(steps=60, out=tmp_path / "run")
    assert cli.main(["measure", str(tmp_path / "run"), "--measures", "med", "restricted_loss", "--key-freqs-from", "1,3"]) == 0
    out = capsys.readouterr().out
    assert "key frequencies (neurons rule): [1, 3]" in out and "spearman" in out
    df = pd.read_csv(tmp_path / "run" / "measures.csv")
    assert {"step", "med", "restricted_loss", "test_loss"} <= set(df.columns)
    assert cli.main(["measure", str(tmp_path / "run"), "--key-freqs-from", "soon"]) == 2
    assert "--key-freqs-from soon is invalid" in capsys.readouterr().err


# --- the public extension point: a new measure is one function and one registration -------
def test_a_registered_measure_reaches_recording_checkpoints_report_and_cli(tmp_path, monkeypatch, capsys):
    from grok_interp.cli import build_parser
    from grok_interp.measures import record as rec
    from grok_interp.measures import register_measure
    from grok_interp.viz import write_report

    monkeypatch.setattr(rec, "_REGISTRY", dict(rec._REGISTRY))  # leave the real registry as it was

    def mean_logit(ctx):  # one forward shared with the built-ins of the same evaluation
        return float(ctx.probe.logits().double().mean())

    register_measure("mean_logit", mean_logit)
    run = small_run(out=tmp_path / "r", record=["med", "mean_logit"])
    step = run.checkpoint_steps[-1]
    with torch.no_grad():
        want = float(run.model_at(step)(run.task.tokens(run.task.all_pairs())).double()[:, -1].mean())
    assert run.history["mean_logit"].iloc[-1] == pytest.approx(want, rel=1e-5)
    table = run.measure(["mean_logit"])
    assert table.loc[table.step == step, "mean_logit"].item() == pytest.approx(want, rel=1e-5)
    assert "mean_logit" in g.measures.plot_columns()
    help_text = build_parser()._subparsers._group_actions[0].choices["measure"].format_help()
    assert "mean_logit" in help_text.replace("\n", " ").replace("  ", " ")
    page = write_report(run).read_text()
    assert "mean_logit" in page
    with pytest.raises(g.GrokInterpError, match="is taken"):
        register_measure("mean_logit", mean_logit)
    with pytest.raises(g.GrokInterpError, match="is taken"):
        register_measure("default", mean_logit)
    with pytest.raises(g.GrokInterpError, match="letters, digits"):
        register_measure("mean logit", mean_logit)


def test_unregister_keeps_the_built_ins(monkeypatch):
    from grok_interp.measures import record as rec

    monkeypatch.setattr(rec, "_REGISTRY", dict(rec._REGISTRY))
    g.measures.register_measure("tmp_measure", lambda ctx: 1.0, plot=False)
    assert "tmp_measure" in g.measures.measure_names() and "tmp_measure" not in g.measures.plot_columns()
    g.measures.unregister_measure("tmp_measure")
    assert "tmp_measure" not in g.measures.measure_names()
    with pytest.raises(g.GrokInterpError, match="built-in"):
        g.measures.unregister_measure("med")
