"""examples/resnet_map.py: the run classes of the recipe map, on made-up histories, and
the study at --quick scale (results as data, the three figures)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from . import example


@pytest.fixture(scope="module")
def rmap():
    with example("resnet_map") as module:
        yield module


def _history(train, test, every=10):
    steps = np.arange(len(train)) * every
    ratio = np.linspace(0.9, 0.3, len(train))
    return pd.DataFrame({"step": steps, "train_acc": train, "test_acc": test, "feature_med_ratio": ratio})


def test_classes_of_made_up_histories(rmap):
    n = 40
    fit = np.r_[np.linspace(0.1, 1.0, 10), np.ones(n - 10)]  # train acc 1 from epoch 90 on
    plateau = np.r_[np.linspace(0.02, 0.3, 10), np.full(n - 10, 0.3)]
    late = plateau.copy()
    late[30:] = 0.95  # a jump at epoch 300, 210 epochs after memorisation
    c = rmap.classify(_history(fit, late))
    assert c["phase"] == "grokked" and c["memorised_at"] == 90 and c["jump_at"] == 300
    assert c["plateau"] == pytest.approx(0.3) and c["best_test_acc"] == pytest.approx(0.95)
    assert c["feature_med_ratio_at_mem"] == pytest.approx(_history(fit, late)["feature_med_ratio"][9])
    assert rmap.classify(_history(fit, plateau))["phase"] == "memorised"
    together = np.r_[np.linspace(0.02, 0.3, 10), np.full(n - 10, 0.9)]  # up right after memorisation
    c = rmap.classify(_history(fit, together))
    assert c["phase"] == "generalised, no plateau" and c["jump_at"] == 100
    assert rmap.classify(_history(np.full(n, 0.5), late))["phase"] == "not fitted"  # late test 0.95 > train
    assert rmap.classify(_history(np.full(n, 0.5), plateau))["phase"] == "not fitted"  # a gap of 0.2
    assert rmap.classify(_history(np.full(n, 0.5), np.full(n, 0.45)))["phase"] == "not fitted, no gap"
    # a train-test gap that closes late, without memorisation first (the wd 1 runs)
    train = np.r_[np.linspace(0.1, 0.7, 20), np.full(n - 20, 0.9)]
    test = np.r_[np.linspace(0.05, 0.25, 20), np.full(5, 0.3), np.full(n - 25, 0.88)]
    c = rmap.classify(_history(train, test))
    assert c["phase"] == "not fitted, no gap" and c["gap_closed_at"] == 250 and c["memorised_at"] is None
    assert rmap.classify(_history(fit, plateau))["gap_closed_at"] is None
    # the thresholds are parameters: a smaller rise than JUMP is no jump, a later one is
    small = plateau.copy()
    small[30:] = 0.3 + rmap.JUMP / 2
    assert rmap.classify(_history(fit, small))["phase"] == "memorised"
    assert rmap.classify(_history(fit, small), jump=rmap.JUMP / 4)["phase"] == "grokked"


@pytest.mark.slow
def test_resnet_map_quick(tmp_path, capsys, rmap):
    assert rmap.main(["--quick", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    res = tmp_path / "library" / "results"
    t = pd.read_csv(res / "sweep.csv")
    assert (t["status"] == "done").all() and len(t) == 4
    assert set(t["phase"]) <= set(rmap.CLASSES) and "path" not in t
    # the MED lead is asked only of runs that grokked
    assert t.loc[t["phase"] != "grokked", "med_moves_first"].isna().all()
    for run in t["run"]:
        h = pd.read_csv(res / "histories" / f"{run}.csv")
        assert h["step"].tolist() == [0, 1, 2, 4, 6]  # every evaluation: eval_every 2 plus checkpoints 1
    for name in ("phase.png", "curves.png", "samples.png"):
        assert (res / name).stat().st_size > 5000
    assert "class per cell" in out and "wall time" in out
    # a rerun skips every run and rebuilds the same table
    assert rmap.main(["--quick", "--out", str(tmp_path), "--quiet"]) == 0
    again = pd.read_csv(res / "sweep.csv")
    assert (again["status"] == "skipped").all()
    assert again["best_test_acc"].tolist() == t["best_test_acc"].tolist()
    # a snapshot (no training) of the same directories: the same numbers, status done
    assert rmap.main(["--quick", "--out", str(tmp_path), "--quiet", "--snapshot"]) == 0
    snap = pd.read_csv(res / "sweep.csv")
    assert (snap["status"] == "done").all() and snap["best_test_acc"].tolist() == t["best_test_acc"].tolist()
    assert snap["phase"].tolist() == t["phase"].tolist()


@pytest.mark.slow
def test_resnet_map_coupled_decay_and_image_size(tmp_path, rmap):
    import grok_interp as g

    args = ["--quick", "--out", str(tmp_path), "--quiet", "--optimizer", "adam", "--image-size", "20",
            "--weight-decays", "0.1", "--init-scales", "1"]
    assert rmap.main(args) == 0
    t = pd.read_csv(tmp_path / "library" / "results" / "sweep.csv")
    assert len(t) == 1 and (t["status"] == "done").all()
    cfg = g.load_run(tmp_path / "library" / t["run"].iloc[0]).config
    assert (cfg.optimizer, cfg.image_size, cfg.weight_decay) == ("adam", 20, 0.1)


def test_resnet_map_says_why_when_no_run_trains(tmp_path, rmap):
    with pytest.raises(SystemExit, match="image_size=12 is invalid"):
        rmap.main(["--quick", "--out", str(tmp_path), "--quiet", "--image-size", "12", "--weight-decays", "0.1",
                   "--init-scales", "1"])
