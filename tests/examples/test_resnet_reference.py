"""examples/resnet_reference.py: the campaign's per-run numbers on made-up histories, and
the study at --quick scale."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from . import example


@pytest.fixture(scope="module")
def rref():
    with example("resnet_reference") as module:
        yield module


def test_describe_a_made_up_grokking_history(rref):
    n = 40
    steps = np.arange(n) * 50
    train = np.r_[np.linspace(0.1, 1.0, 5), np.ones(n - 5)]  # memorised at 200
    test = np.r_[np.linspace(0.02, 0.3, 5), np.full(20, 0.3), np.full(n - 25, 0.97)]  # jump at 1250
    med = np.r_[np.full(10, 0.9), np.linspace(0.9, 0.2, 10), np.full(n - 20, 0.2)]  # half way (0.55) at 750
    epoch_acc = np.r_[np.linspace(0.2, 0.995, 4), np.ones(n - 4)]  # training mode fits first, at 150
    d = rref.describe(pd.DataFrame({"step": steps, "train_acc": train, "test_acc": test, "feature_med_ratio": med,
                                    "epoch_acc": epoch_acc}))
    assert d["phase"] == "grokked" and d["jump_at"] == 1250 and d["fit_at"] == 150
    assert d["u_acc"] == pytest.approx(0.97)
    assert d["med_half_way_at"] == 750 and d["test_acc_half_way_at"] == 1250 and d["med_moves_first"] is True
    flat = rref.med_lead(pd.DataFrame({"step": [0, 1], "feature_med_ratio": [1.0, 1.0], "test_acc": [0.0, 1.0]}),
                         None, jumped=True)
    assert flat["med_half_way_at"] is None and flat["med_moves_first"] is None  # the MED never moved


def test_med_lead_is_measured_from_memorisation_not_from_an_early_peak(rref):
    """A pretrained start generalises early, loses it while memorising and recovers late.
    Measured from epoch 0, test accuracy would be half way at its early peak (epoch 50)
    and the MED could never lead; from memorisation on, the MED (half way at 750) leads
    the late rise (half way at 1350)."""
    n = 42
    steps = np.arange(n) * 50
    train = np.r_[np.linspace(0.5, 1.0, 9), np.ones(n - 9)]  # memorised at 400
    test = np.r_[0.1, 0.85, np.linspace(0.8, 0.3, 7), np.full(12, 0.3), np.linspace(0.3, 0.7, 12), np.full(9, 0.7)]
    med = np.r_[np.full(9, 0.2), np.linspace(0.2, 0.4, 12), np.full(n - 21, 0.4)]
    h = pd.DataFrame({"step": steps, "train_acc": train, "test_acc": test, "feature_med_ratio": med,
                      "epoch_acc": train})
    d = rref.describe(h)
    assert d["phase"] == "grokked" and d["memorised_at"] == 400
    assert rref.med_lead(h, None, jumped=True)["test_acc_half_way_at"] == 50  # the early peak, from epoch 0
    assert d["test_acc_half_way_at"] == 1350 and d["med_half_way_at"] == 750 and d["med_moves_first"] is True


def test_a_spike_after_the_plateau_is_not_grokking(rref):
    """One high eval-mode reading that falls back (BatchNorm's swings) is not a jump, and
    without a jump the MED has nothing to move before."""
    n = 40
    steps = np.arange(n) * 50
    train = np.r_[np.linspace(0.1, 1.0, 5), np.ones(n - 5)]
    test = np.r_[np.linspace(0.02, 0.3, 5), np.full(n - 5, 0.3)]
    test[30] = 0.9  # a single reading at epoch 1500
    med = np.linspace(0.9, 0.2, n)
    h = pd.DataFrame({"step": steps, "train_acc": train, "test_acc": test, "feature_med_ratio": med,
                      "epoch_acc": train})
    assert rref.classify(h)["phase"] == "grokked"  # the map's rule alone takes the spike
    d = rref.describe(h)
    assert d["phase"] == "memorised, test spikes" and d["med_moves_first"] is None
    held = h.assign(test_acc=np.r_[test[:30], np.full(n - 30, 0.9)])
    assert rref.describe(held)["phase"] == "grokked"


@pytest.mark.parametrize("fmt,kept", [(5, False), (6, True)])
def test_batch_statistics_columns_kept_only_for_format_6_runs(tmp_path, rref, fmt, kept):
    """Format-5 campaign runs took batch statistics over unshuffled batches: dropped."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"kind": "resnet", "grok_interp": {"format": fmt}, "config": {}}))
    n = 12
    h = pd.DataFrame({"step": np.arange(n) * 50, "train_acc": np.linspace(0.1, 1, n), "test_acc": np.full(n, 0.3),
                      "feature_med_ratio": np.linspace(0.1, 0.3, n), "epoch_acc": np.linspace(0.1, 1, n),
                      "test_acc_batch": np.r_[np.zeros(n - 5), np.full(5, 0.5)], "train_acc_batch": np.ones(n),
                      "test_loss_batch": np.ones(n), "train_loss_batch": np.ones(n)})
    h.to_csv(run / "history.csv", index=False)
    table = pd.DataFrame([{"run": "r", "path": str(run), "status": "done", "pretrain_epochs": 0, "seed": 0}])
    out = rref.export(table, tmp_path / "res")
    written = pd.read_csv(tmp_path / "res" / "histories" / "r.csv")
    assert ("test_acc_batch" in written) == kept
    assert (out["late_test_acc_batch"].iloc[0] == 0.5) if kept else pd.isna(out["late_test_acc_batch"].iloc[0])
    assert rref.run_format(tmp_path) == 0  # no config.json


@pytest.mark.slow
def test_resnet_reference_quick(tmp_path, rref):
    assert rref.main(["--quick", "--out", str(tmp_path), "--quiet"]) == 0
    res = tmp_path / "library" / "results"
    t = pd.read_csv(res / "sweep.csv")
    assert len(t) == 6 and (t["status"] == "done").all()
    assert sorted(set(t["pretrain_epochs"])) == [0, 2] and sorted(set(t["seed"])) == [0, 1, 2]
    h = pd.read_csv(res / "histories" / f"{t['run'].iloc[0]}.csv")
    assert {"epoch_acc", "train_acc", "test_acc", "feature_med_ratio", "test_acc_batch"} <= set(h.columns)
    rc = pd.read_csv(res / "recalibrated" / f"{t['run'].iloc[0]}.csv")
    assert rc["step"].iloc[-1] == t["final_step"].iloc[0] and rc["test_acc_recal"].between(0, 1).all()
    assert t["test_acc_recal"].notna().all() and (t["best_test_acc_recal"] >= t["test_acc_recal"]).all()
    assert (t["best_recal_at"] <= t["recal_step"]).all()
    for _, r in t.iterrows():  # the training accuracy beside the best test accuracy is that checkpoint's
        rc = pd.read_csv(res / "recalibrated" / f"{r['run']}.csv").set_index("step")
        assert r["train_acc_at_best_recal"] == pytest.approx(rc.loc[r["best_recal_at"], "train_acc_recal"], abs=1e-6)
        assert rc.loc[r["best_recal_at"], "test_acc_recal"] == pytest.approx(rc["test_acc_recal"].max(), abs=1e-6)
    s = pd.read_csv(res / "summary.csv")
    assert s["runs"].tolist() == [3, 3]
    for name in ("curves.png", "late.png"):
        assert (res / name).stat().st_size > 5000


def test_only_and_plan_choose_the_runs(tmp_path, rref):
    """--only and --plan reach the ResNet studies as every study's parser says (they were
    once ignored there: a sweep meant for one run trained them all)."""
    plan = tmp_path / "plan.csv"
    with pytest.raises(SystemExit) as exit_:
        rref.main(["--quick", "--out", str(tmp_path), "--only", "pretrain_epochs == 2", "--plan", str(plan)])
    assert exit_.value.code == 0
    assert sorted(pd.read_csv(plan)["run"]) == [f"pretrain_epochs=2,seed={s}" for s in (0, 1, 2)]
    with pytest.raises(SystemExit, match="matches none"):
        rref.main(["--quick", "--out", str(tmp_path), "--only", "pretrain_epochs == 7", "--quiet"])
    assert rref.main(["--quick", "--out", str(tmp_path), "--only", "pretrain_epochs == 0 and seed == 1",
                      "--quiet"]) == 0
    t = pd.read_csv(tmp_path / "library" / "results" / "sweep.csv")
    assert t["run"].tolist() == ["pretrain_epochs=0,seed=1"]
    assert sorted(p.name for p in (tmp_path / "library").iterdir() if p.is_dir() and p.name != "results") == [
        "pretrain_epochs=0,seed=1"]


def test_image_size_is_an_option_and_a_run_keeps_its_own(tmp_path, rref):
    """--image-size reaches the runs; a run directory trained at one size refuses another,
    and the study says why instead of failing on an empty table."""
    only = ["--quick", "--out", str(tmp_path), "--only", "pretrain_epochs == 0 and seed == 0", "--quiet"]
    assert rref.main([*only, "--image-size", "20"]) == 0
    config = json.loads((tmp_path / "library" / "pretrain_epochs=0,seed=0" / "config.json").read_text())
    assert config["config"]["image_size"] == 20
    with pytest.raises(SystemExit, match="image_size: saved 20, given 16"):
        rref.main(only)  # the quick scale's 16 px into the same directory
