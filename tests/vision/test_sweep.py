"""grok_interp.sweeps with kind="resnet": ResNet runs through the sweep machinery."""

from __future__ import annotations

import pandas as pd
import pytest

from grok_interp.sweeps import sweep

from ..helpers import TINY_RESNET as TINY

pytestmark = pytest.mark.portable


def test_resnet_sweep_trains_skips_and_resumes(tmp_path, data16, monkeypatch):
    monkeypatch.setenv("GROK_INTERP_CACHE", str(data16.path.parent))
    base = dict(TINY, epochs=2, eval_every=1, checkpoint_every=1)
    configs = [{"init_scale": 1.0}, {"init_scale": 2.0, "optimizer": "adamw", "weight_decay": 0.1}]
    out = tmp_path / "sweep"
    table = sweep(configs, out, base=base, kind="resnet", max_workers=1, progress=False)
    assert table["status"].tolist() == ["done", "done"]
    assert table["final_step"].tolist() == [2, 2] and table["n_train"].tolist() == [30, 30]
    assert table["final_feature_med_ratio"].notna().all() and "ceiling" not in table
    for _, row in table.iterrows():  # each row's numbers are its own run's history
        h = pd.read_csv(out / row["run"] / "history.csv")
        assert row["final_test_acc"] == pytest.approx(h["test_acc"].iloc[-1])
    assert (out / "sweep.csv").exists()
    again = sweep(configs, out, base=base, kind="resnet", max_workers=1, progress=False)
    assert again["status"].tolist() == ["skipped", "skipped"]
    more = sweep(configs[:1], out, base={**base, "epochs": 3}, kind="resnet", max_workers=1, progress=False)
    assert more["status"].tolist() == ["done"] and more["final_step"].tolist() == [3]
    h = pd.read_csv(out / more["run"][0] / "history.csv")
    assert h["step"].tolist() == [0, 1, 2, 3]  # resumed, not restarted
    bad = sweep([{"style": "nope"}], out, base=base, kind="resnet", max_workers=1, progress=False)
    assert bad["status"].tolist() == ["failed"] and "style" in bad["error"][0]
