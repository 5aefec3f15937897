"""The examples at --quick scale: they run, print their tables, write plots, and show
structural facts that must hold whatever the seed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import grok_interp as g
from grok_interp.run_cache import ENV

from . import example

pytestmark = pytest.mark.slow


def run_example(name: str, tmp_path: Path, capsys, *extra: str) -> str:
    with example(name) as module:
        assert module.main(["--quick", "--out", str(tmp_path), "--workers", "1", "--quiet", *extra]) == 0
    out = capsys.readouterr().out
    assert "wall time" in out
    return out


def results(tmp_path: Path, setup: str) -> Path:
    """Where a quick study writes its results as data: OUT/<setup>/results."""
    return tmp_path / setup / "results"


def study(name: str, tmp_path: Path, capsys, setup: str) -> tuple[str, pd.DataFrame, Path]:
    """Run a study at quick scale in one setup; check the results-as-data layout every
    study shares (sweep.csv, one thinned history per run, the seed summary)."""
    out = run_example(name, tmp_path, capsys, "--setup", setup)
    res = results(tmp_path, setup)
    t = pd.read_csv(res / "sweep.csv")
    assert (t["status"] == "done").all(), t[["run", "error"]]
    assert "path" not in t and "onset_at" in t
    assert sorted(set(t["seed"])) == [0, 1]  # quick: two seeds per configuration
    for run in t["run"]:
        h = pd.read_csv(res / "histories" / f"{run}.csv")
        assert {"step", "train_acc", "test_acc"} <= set(h.columns) and len(h) >= 2
    summary = pd.read_csv(res / "summary.csv")
    # The three columns, median [min, max] over seeds, in every study's summary.
    assert (summary["seeds"] == 2).all()
    assert {f"{m}_{s}" for m in ("u_acc", "l_acc", "halfway_at") for s in ("median", "min", "max")} <= set(
        summary.columns)
    assert ((summary["u_acc_min"] <= summary["u_acc_median"]) & (summary["u_acc_median"] <= summary["u_acc_max"])).all()
    # L-Acc is a minimum after U-Acc is approached: never above U-Acc, per run or in the medians.
    assert (t["l_acc"] <= t["u_acc"]).all() and (summary["l_acc_median"] <= summary["u_acc_median"]).all()
    assert "median [min, max] over seeds" in out
    return out, t, res


def config_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "config.json").read_text())


def pngs(path: Path) -> list[str]:
    files = sorted(p.name for p in path.glob("*.png"))
    for f in files:
        assert (path / f).stat().st_size > 5000, f  # a real figure, not an empty canvas
    return files


SETUPS = ["library", "reference"]


@pytest.mark.parametrize("setup", SETUPS)
def test_square_strip(tmp_path, capsys, setup):
    out, t, res = study("square_strip", tmp_path, capsys, setup)
    assert "U-Acc" in out
    t = t.set_index("run")
    strip, rand = t.loc["split=strip,t=16" + (",offset=0" if setup == "reference" else "") + ",seed=0"], t.loc[
        "split=random,seed=0"]
    # The strip leaves only rows a > 16 for training (all of them train, fewer than
    # int(frac p^2)); its test pairs are far from any training pair of their class.
    assert strip["n_train"] == 6 * 23 and strip["ceiling_r2"] < 0.5 * rand["ceiling_r2"]
    summary = pd.read_csv(res / "summary.csv")
    assert summary.loc[summary["split"] == "random", "u_acc_median"].iloc[0] > summary.loc[
        summary["split"] == "strip", "u_acc_median"].max()
    assert pngs(res) == ["ceiling_vs_uacc.png", "test_accuracy.png"]
    # each SQUARE run beside the random split of its own seed
    vs = pd.read_csv(res / "square_vs_random.csv")
    sq = t[t["split"] == "square"].sort_values("seed")
    assert vs["seed"].tolist() == sq["seed"].tolist() and np.allclose(vs["u_acc"], sq["u_acc"])
    assert "SQUARE earlier than the random split by halfway_at" in out
    if setup == "reference":
        # STRIP at both offsets; the reference options reached the run directories
        assert sorted(t.loc[t["split"] == "strip", "offset"].unique()) == [0, 14]
        cfg = config_of(tmp_path / "reference" / "split=strip,t=16,offset=14,seed=1")
        assert cfg["data"]["offset"] == 14 and cfg["data"]["shuffle"] == "python" and cfg["data"]["data_seed"] == 0
        assert not cfg["model"]["attn_bias"] and not cfg["model"]["unembed_bias"] and cfg["model"]["seed"] == 1
        assert cfg["train"]["loss"] == "ce_float32" and cfg["train"]["stop_on_plateau"] == 100
        h = pd.read_csv(res / "histories" / "split=square,k=8,seed=0.csv")
        assert h["med_drop_last_scaled_sum"].notna().all() and h["med_drop_last_sum"].notna().all()
        # --report-only rebuilds tables and plots from results/ alone: no run directory needed
        before = (res / "sweep.csv").read_bytes()
        shutil.rmtree(tmp_path / "reference" / "split=random,seed=0")
        (res / "test_accuracy.png").unlink()
        out = run_example("square_strip", tmp_path, capsys, "--setup", setup, "--report-only")
        assert "median [min, max] over seeds" in out and (res / "sweep.csv").read_bytes() == before
        assert pngs(res) == ["ceiling_vs_uacc.png", "test_accuracy.png"]


@pytest.mark.parametrize("setup", SETUPS)
def test_nonisomorphic(tmp_path, capsys, setup):
    out, t, res = study("nonisomorphic", tmp_path, capsys, setup)
    assert "acc * (1 - frac)" in out
    assert sorted(set(t["frac"])) == [0.5, 0.6, 0.7]
    # Random splits with one data seed are nested, so more data never lowers a ceiling.
    first = t.drop_duplicates("frac").sort_values("frac")
    for col in ("ceiling_r2", "ceiling_r4", "ceiling_r8", "ceiling_transpose"):
        assert first[col].is_monotonic_increasing
    # The accuracies on transpose-trained test pairs and on the rest recombine into the
    # final test accuracy of the history (recorded by the training loop's own forward).
    c = t["ceiling_transpose"]
    np.testing.assert_allclose(c * t["acc_transpose_trained"] + (1 - c) * t["acc_other"], t["final_test_acc"],
                               atol=2e-3)
    assert pngs(res) == ["nonisomorphic.png"]
    if setup == "reference":
        cfg = config_of(tmp_path / "reference" / "frac=0.5,seed=0")
        assert cfg["model"]["n_layers"] == 2 and cfg["data"]["data_seed"] == 11


def test_square_strip_with_an_accelerator_is_compared_with_the_plain_setup(tmp_path, capsys):
    run_example("square_strip", tmp_path, capsys, "--setup", "reference", "--seeds", "0", "--only", "split != 'strip'")
    out = run_example("square_strip", tmp_path, capsys, "--setup", "reference", "--seeds", "0",
                      "--only", "split != 'strip'", "--accelerator", "grokfast_ema")
    cfg = config_of(tmp_path / "reference-grokfast_ema" / "split=random,seed=0")
    assert cfg["train"]["grokfast"] == "ema" and cfg["train"]["loss"] == "ce_float32"  # the setup's fields stay
    assert config_of(tmp_path / "reference" / "split=random,seed=0")["train"]["grokfast"] is None
    both = pd.read_csv(results(tmp_path, "reference-grokfast_ema") / "vs_plain.csv")
    assert sorted(both["split"]) == ["random", "square"] and "with grokfast_ema vs without" in out
    plain = pd.read_csv(results(tmp_path, "reference") / "summary.csv").set_index("split")
    for _, row in both.iterrows():
        assert row["u_acc_median_none"] == pytest.approx(plain.loc[row["split"], "u_acc_median"])
        assert row["u_acc_change"] == pytest.approx(row["u_acc_median_grokfast_ema"] - row["u_acc_median_none"])


def test_only_trains_and_exports_the_selected_configurations(tmp_path, capsys):
    run_example("nonisomorphic", tmp_path, capsys, "--only", "frac == 0.6", "--seeds", "1")
    t = pd.read_csv(results(tmp_path, "library") / "sweep.csv")
    assert list(t["run"]) == ["frac=0.6,seed=1"] and (t["status"] == "done").all()
    assert sorted(p.name for p in (tmp_path / "library").iterdir() if p.is_dir() and p.name != "results") == ["frac=0.6,seed=1"]


def test_a_partial_sweep_adds_to_the_results(tmp_path, capsys):
    run_example("nonisomorphic", tmp_path, capsys, "--only", "frac == 0.6", "--seeds", "1")
    first = pd.read_csv(results(tmp_path, "library") / "sweep.csv")
    run_example("nonisomorphic", tmp_path, capsys, "--only", "frac == 0.5", "--seeds", "1")
    both = pd.read_csv(results(tmp_path, "library") / "sweep.csv")
    assert list(both["run"]) == ["frac=0.6,seed=1", "frac=0.5,seed=1"]
    pd.testing.assert_series_equal(both.iloc[0][first.columns], first.iloc[0], check_names=False)
    # Rerunning the first (skipped now) replaces its row in place and keeps the other.
    run_example("nonisomorphic", tmp_path, capsys, "--only", "frac == 0.6", "--seeds", "1")
    again = pd.read_csv(results(tmp_path, "library") / "sweep.csv")
    assert list(again["run"]) == ["frac=0.6,seed=1", "frac=0.5,seed=1"]
    assert list(again["status"]) == ["skipped", "done"]
    # A row whose history is gone is not kept.
    (results(tmp_path, "library") / "histories" / "frac=0.5,seed=1.csv").unlink()
    run_example("nonisomorphic", tmp_path, capsys, "--only", "frac == 0.6", "--seeds", "1")
    assert list(pd.read_csv(results(tmp_path, "library") / "sweep.csv")["run"]) == ["frac=0.6,seed=1"]


@pytest.mark.parametrize("setup", SETUPS)
def test_med_vs_loss(tmp_path, capsys, setup):
    out, t, res = study("med_vs_loss", tmp_path, capsys, setup)
    assert "which measure tracks test loss" in out
    cmp = pd.read_csv(res / "compare_measures.csv")
    assert set(cmp["p"]) == {23, 29}
    med = "med" if setup == "library" else "med_drop_last_avg"
    m = cmp[cmp["measure"] == med]
    assert len(m) == 4 and m["spearman"].notna().all()
    for run in t["run"]:
        h = pd.read_csv(res / "histories" / f"{run}.csv")
        assert (h[med] > 0).all()
    assert len(pd.read_csv(res / "med_summary.csv")) == 2
    assert pngs(res) == ["med_vs_loss_p23.png", "med_vs_loss_p29.png"]


@pytest.mark.parametrize("setup", SETUPS)
def test_embed_init(tmp_path, capsys, setup):
    out, t, res = study("embed_init", tmp_path, capsys, setup)
    other = "circulant" if setup == "library" else "toeplitz"
    assert f"{other} / random" in out
    assert sorted(t["embed_init"]) == sorted(["random", other] * 2)
    assert t["memorised_at"].notna().all() and "steps_to_99" in t
    # The structured run really started from its structured embedding.
    run = g.load_run(tmp_path / setup / f"seed=0,embed_init={other}")
    w = run.weights_at(0)["embed.W_E"][: run.task.p]
    if other == "circulant":  # every operand row a cyclic shift of the first
        assert torch.allclose(w[1], torch.roll(w[0], 1)) or torch.allclose(w[1], torch.roll(w[0], -1))
    else:  # Toeplitz: row i is v[|j - i|], all entries positive
        assert (w > 0).all() and torch.allclose(w[1, 1:], w[0, :-1]) and torch.allclose(w[1, 0], w[0, 1])
    assert pngs(res) == ["embed_init.png"]


def test_a_study_rerun_into_another_directory_trains_nothing(tmp_path, capsys, monkeypatch):
    """The run cache through a real study: embed_init --quick run into a second ``--out``
    copies every run the first trained (the examples' sweeps use the default cache, here
    pointed at a temporary directory), and its results are the first run's; ``--no-cache``
    trains again."""
    monkeypatch.setenv(ENV, str(tmp_path / "cache"))
    run_example("embed_init", tmp_path / "first", capsys)
    run_example("embed_init", tmp_path / "second", capsys)
    first = pd.read_csv(results(tmp_path / "first", "library") / "sweep.csv")
    second = pd.read_csv(results(tmp_path / "second", "library") / "sweep.csv")
    assert (first["status"] == "done").all() and (second["status"] == "cached").all()
    assert "cached_from" not in second  # results hold no local paths
    swept = pd.read_csv(tmp_path / "second" / "library" / "sweep.csv")  # the sweep's own table has them
    assert [Path(p) for p in swept["cached_from"]] == [(tmp_path / "first" / "library" / r).resolve() for r in first["run"]]
    same = [c for c in first.columns if c not in ("status", "wall_s", "batch_size")]
    pd.testing.assert_frame_equal(first[same], second[same])
    for run in first["run"]:
        assert (tmp_path / "first" / "library" / run / "history.csv").read_bytes() == \
            (tmp_path / "second" / "library" / run / "history.csv").read_bytes()
    run_example("embed_init", tmp_path / "third", capsys, "--no-cache")
    third = pd.read_csv(results(tmp_path / "third", "library") / "sweep.csv")
    assert (third["status"] == "done").all()


@pytest.mark.parametrize("setup", SETUPS)
def test_frozen_onehot(tmp_path, capsys, setup):
    out, t, res = study("frozen_onehot", tmp_path, capsys, setup)
    assert (t["med_range"] < 1e-9).all()  # the frozen embedding never moves
    assert (t["activation_med_range"] > 1e-3).all()  # the hidden layer does
    cmp = pd.read_csv(res / "compare_measures.csv")
    assert "activation_med" in set(cmp["measure"])
    if setup == "reference":
        assert sorted(set(t["arch"])) == ["mlp", "transformer"]
        mlp = g.load_run(tmp_path / "reference" / "mlp" / t.loc[t["arch"] == "mlp", "run"].iloc[0])
        assert isinstance(mlp.model, g.models.MLPBaseline) and mlp.config.model.mlp_input == "operands_and_eq"
    assert pngs(res) == ["frozen_onehot.png"]


def test_frozen_onehot_partial_sweeps_add_to_compare_measures(tmp_path, capsys):
    run_example("frozen_onehot", tmp_path, capsys, "--seeds", "0")
    run_example("frozen_onehot", tmp_path, capsys, "--seeds", "1")
    res = results(tmp_path, "library")
    runs = list(pd.read_csv(res / "sweep.csv")["run"])
    assert len(runs) == 2
    cmp = pd.read_csv(res / "compare_measures.csv")
    assert list(dict.fromkeys(cmp["run"])) == runs  # the second sweep kept the first's rows
    assert sorted(set(cmp["seed"])) == [0, 1]


@pytest.mark.parametrize("setup", SETUPS)
def test_mlp_vs_transformer(tmp_path, capsys, setup):
    out, t, res = study("mlp_vs_transformer", tmp_path, capsys, setup)
    assert sorted(set(zip(t["op"], t["arch"]))) == [
        ("a2_ab_b2", "mlp"), ("a2_ab_b2", "transformer"), ("add", "mlp"), ("add", "transformer")]
    assert t["memorised_at"].notna().all()
    # Both architectures' final accuracy on transpose-trained test pairs and on the rest
    # recombine into the final test accuracy the training loop recorded.
    c = t["ceiling_transpose"]
    np.testing.assert_allclose(c * t["acc_transpose_trained"] + (1 - c) * t["acc_other"], t["final_test_acc"],
                               atol=2e-3)
    sub = "" if setup == "library" else "mlp"
    mlp = g.load_run(tmp_path / setup / sub / t.loc[t["arch"] == "mlp", "run"].iloc[0])
    assert isinstance(mlp.model, g.models.MLPBaseline)
    if setup == "reference":
        assert mlp.config.model.init == "linear_default" and mlp.config.model.mlp_input == "operands_and_eq"
        assert mlp.config.model.attn_bias and mlp.config.data.shuffle == "python"
    assert pngs(res) == ["mlp_vs_transformer.png"]


def test_nanda_analysis(tmp_path, capsys):
    out = run_example("nanda_p113", tmp_path, capsys)
    assert "key frequencies" in out
    tmp_path = tmp_path / "library"  # the setup's directory
    m = pd.read_csv(tmp_path / "measures.csv")
    last = m.iloc[-1]
    # Once the run generalises, removing its key frequencies hurts the training loss.
    assert last["test_acc"] > 0.9
    assert last["excluded_loss"] > 10 * last["train_loss"]
    phases = pd.read_csv(tmp_path / "phases.csv")
    assert phases["step"].iloc[0] == pd.read_csv(tmp_path / "base" / "history.csv").query("train_acc >= 0.99")[
        "step"].iloc[0]
    assert pngs(tmp_path) == ["nanda_p113.png"]


def test_accelerators(tmp_path, capsys):
    out = run_example("accelerators", tmp_path, capsys, "--seeds", "0")
    tmp_path = tmp_path / "library"  # the setup's run directories
    assert "steps and wall time to test accuracy 0.99" in out
    t = pd.read_csv(tmp_path / "accelerators.csv")
    assert sorted(t["method"]) == sorted(["none", "grokfast_ema", "stablemax_perp_wd0", "stablemax_perp_wd1"])
    assert (t["status"] == "done").all() and t["memorised_at"].notna().any()
    # Each run's config.json records its method, and its history its clock.
    want = {"none": (None, "ce", False, 1.0), "grokfast_ema": ("ema", "ce", False, 1.0),
            "stablemax_perp_wd0": (None, "stablemax", True, 0.0), "stablemax_perp_wd1": (None, "stablemax", True, 1.0)}
    for _, r in t.iterrows():
        tc = g.load_run(tmp_path / r["run"]).config.train
        assert (tc.grokfast, tc.loss, tc.perpendicular_grad, tc.weight_decay) == want[r["method"]]
        h = pd.read_csv(tmp_path / r["run"] / "history.csv")
        assert h["clock"].is_monotonic_increasing and h["med"].notna().all()
    cmp = pd.read_csv(tmp_path / "compare_measures.csv")
    assert {"med", "weight_norm", "excluded_loss", "excluded_loss_difference"} <= set(cmp["measure"])
    assert pngs(tmp_path) == ["test_loss_vs_measures_p23.png"]


def test_accelerators_partial_sweeps_add_up_and_report_only_needs_no_runs(tmp_path, capsys):
    run_example("accelerators", tmp_path, capsys, "--seeds", "0", "--methods", "none")
    run_example("accelerators", tmp_path, capsys, "--seeds", "0", "--methods", "grokfast_ema")
    res = results(tmp_path, "library")
    both = pd.read_csv(res / "accelerators.csv")
    assert sorted(both["method"]) == ["grokfast_ema", "none"]  # the second sweep kept the first's run
    assert len(pd.read_csv(res / "sweep.csv")) == 2
    assert set(pd.read_csv(res / "compare_measures.csv")["method"]) == {"grokfast_ema", "none"}
    # The run directories are not needed to rebuild the tables and plots.
    for d in (tmp_path / "library").iterdir():
        if d.is_dir() and d.name != "results":
            shutil.rmtree(d)
    (res / "accelerators.csv").unlink()
    run_example("accelerators", tmp_path, capsys, "--report-only")
    again = pd.read_csv(res / "accelerators.csv")
    pd.testing.assert_frame_equal(again, both)
    assert pngs(res) == ["test_loss_vs_measures_p23.png"]
