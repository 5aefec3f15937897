"""The examples at --quick scale: they run, print their tables, write plots, and show
structural facts that must hold whatever the seed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import grok_interp as g

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.slow


def run_example(name: str, tmp_path: Path, capsys, *extra: str) -> str:
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.main(["--quick", "--out", str(tmp_path), "--workers", "1", "--quiet", *extra]) == 0
    finally:
        sys.path.remove(str(EXAMPLES))
    out = capsys.readouterr().out
    assert "wall time" in out
    return out


def pngs(tmp_path: Path) -> list[str]:
    files = sorted(p.name for p in tmp_path.glob("*.png"))
    for f in files:
        assert (tmp_path / f).stat().st_size > 5000, f  # a real figure, not an empty canvas
    return files


def test_square_strip(tmp_path, capsys):
    out = run_example("square_strip", tmp_path, capsys)
    assert "U-Acc" in out
    t = pd.read_csv(tmp_path / "square_strip.csv").set_index("run")
    assert (t["status"] == "done").all()
    strip, rand = t.loc["split=strip,t=16"], t.loc["split=random"]
    # The strip leaves only rows a > 16 for training (all of them train, fewer than
    # int(frac p^2)); its test pairs are far from any training pair of their class ...
    assert strip["n_train"] == 6 * 23 and strip["ceiling_r2"] < 0.5 * rand["ceiling_r2"]
    # ... and the run ends far below a random split of the same p.
    assert rand["final_test_acc"] > strip["final_test_acc"] + 0.3
    assert pngs(tmp_path) == ["ceiling_vs_uacc.png", "test_accuracy.png"]


def test_nonisomorphic(tmp_path, capsys):
    out = run_example("nonisomorphic", tmp_path, capsys)
    assert "acc * (1 - frac)" in out
    t = pd.read_csv(tmp_path / "nonisomorphic.csv")
    assert list(t["frac"]) == [0.5, 0.6, 0.7] and (t["status"] == "done").all()
    np.testing.assert_allclose(t["final_x_1mfrac"], t["final_test_acc"] * (1 - t["frac"]))
    # Random splits with one seed are nested, so more data never lowers a ceiling.
    for col in ("ceiling_r2", "ceiling_r4", "ceiling_r8", "ceiling_transpose"):
        assert t[col].is_monotonic_increasing
    # The accuracies on transpose-trained test pairs and on the rest recombine into the
    # final test accuracy of the history (recorded by the training loop's own forward).
    c = t["ceiling_transpose"]
    np.testing.assert_allclose(c * t["acc_transpose_trained"] + (1 - c) * t["acc_other"], t["final_test_acc"],
                               atol=2e-3)
    assert pngs(tmp_path) == ["nonisomorphic.png"]


def test_med_vs_loss(tmp_path, capsys):
    out = run_example("med_vs_loss", tmp_path, capsys)
    assert "which measure tracks test loss" in out
    cmp = pd.read_csv(tmp_path / "compare_measures.csv")
    assert set(cmp["p"]) == {23, 29}
    med = cmp[cmp["measure"] == "med"]
    assert len(med) == 2 and med["spearman"].notna().all()
    for p in (23, 29):
        h = pd.read_csv(tmp_path / f"p={p}" / "history.csv")
        assert h["med"].notna().all() and (h["med"] > 0).all()
    assert pngs(tmp_path) == ["med_vs_loss_p23.png", "med_vs_loss_p29.png"]


def test_embed_init(tmp_path, capsys):
    out = run_example("embed_init", tmp_path, capsys)
    assert "circulant / random" in out
    t = pd.read_csv(tmp_path / "embed_init.csv")
    assert sorted(t["embed_init"]) == ["circulant", "circulant", "random", "random"]
    assert t["memorised_at"].notna().all()
    # The circulant run really started from a circulant embedding: every operand row is
    # a cyclic shift of the first.
    run = g.load_run(t.loc[t["embed_init"] == "circulant", "path"].iloc[0])
    w = run.weights_at(0)["embed.W_E"][: run.task.p]
    assert torch.allclose(w[1], torch.roll(w[0], 1)) or torch.allclose(w[1], torch.roll(w[0], -1))
    assert pngs(tmp_path) == ["embed_init.png"]


def test_frozen_onehot(tmp_path, capsys):
    run_example("frozen_onehot", tmp_path, capsys)
    h = pd.read_csv(tmp_path / "embed_init=onehot" / "history.csv")
    assert h["med"].max() - h["med"].min() < 1e-9  # the frozen embedding never moves
    assert h["activation_med"].max() - h["activation_med"].min() > 1e-3  # the hidden layer does
    cmp = pd.read_csv(tmp_path / "compare_measures.csv")
    assert "activation_med" in set(cmp["measure"])
    assert pngs(tmp_path) == ["frozen_onehot.png"]


def test_mlp_vs_transformer(tmp_path, capsys):
    run_example("mlp_vs_transformer", tmp_path, capsys)
    t = pd.read_csv(tmp_path / "mlp_vs_transformer.csv")
    assert sorted(zip(t["op"], t["arch"])) == [
        ("a2_ab_b2", "mlp"), ("a2_ab_b2", "transformer"), ("add", "mlp"), ("add", "transformer")]
    assert (t["status"] == "done").all() and t["memorised_at"].notna().all()
    mlp = g.load_run(t.loc[t["arch"] == "mlp", "path"].iloc[0])
    assert isinstance(mlp.model, g.MLPBaseline)
    assert pngs(tmp_path) == ["mlp_vs_transformer.png"]


def test_nanda_analysis(tmp_path, capsys):
    out = run_example("nanda_p113", tmp_path, capsys)
    assert "key frequencies" in out
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
    out = run_example("accelerators", tmp_path, capsys)
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
    assert {"med", "weight_norm", "excluded_loss"} <= set(cmp["measure"])
    assert pngs(tmp_path) == ["test_loss_vs_measures_p23.png"]
