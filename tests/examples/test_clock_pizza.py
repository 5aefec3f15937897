"""examples/clock_pizza.py at --quick scale: rows per measured step, a resumed study
trains nothing again, and --report-only rebuilds the summary from sweep.csv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from . import example


@pytest.fixture(scope="module")
def cp():
    with example("clock_pizza") as module:
        yield module


@pytest.mark.slow
def test_clock_pizza_quick_resumes_and_reports(tmp_path, cp, monkeypatch):
    res = tmp_path / "cp"
    args = ["--quick", "--seeds", "0", "--steps", "100", "--results", str(res), "--quiet"]
    assert cp.main(args) == 0
    t = pd.read_csv(res / "sweep.csv")
    assert sorted(set(t["attention_rate"])) == [0.0, 1.0] and list(t["step"].unique()) == [100]
    # constant attention: the logits are a function of E_a + E_b, so the gradients agree exactly
    assert np.allclose(t.loc[t["attention_rate"] == 0, "gradient_symmetricity"], 1.0)
    Q = np.loadtxt(res / "logits" / "rate=0,seed=0.csv", delimiter=",")
    assert Q.shape == (13, 13)
    summary = (res / "summary.csv").read_bytes()
    # a second call finds both runs complete and trains nothing
    monkeypatch.setattr(cp, "train_one", lambda *a, **k: pytest.fail("a complete run was trained again"))
    assert cp.main(args) == 0
    (res / "summary.csv").unlink()
    assert cp.main(["--report-only", "--results", str(res)]) == 0
    assert (res / "summary.csv").read_bytes() == summary
