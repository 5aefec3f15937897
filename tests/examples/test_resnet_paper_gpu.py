"""examples/resnet_paper_gpu.py on the CPU with --tiny: it trains, resumes, and reports
epochs per second from the clock column (no GPU needed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

import grok_interp as g

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "resnet_paper_gpu.py"


def _script():
    spec = importlib.util.spec_from_file_location("example_resnet_paper_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_run_resumes_and_reports_its_speed(tmp_path, capsys):
    script = _script()
    common = ["--out", str(tmp_path / "run"), "--tiny", "--eval-every", "1", "--device", "cpu", "--quiet",
              "--cache-dir", str(tmp_path / "cache")]
    assert script.main([*common, "--epochs", "2"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["resumed"] is False and first["epochs_done"] == 2 and first["autocast"] is False
    assert first["epochs_per_s"] > 0
    assert script.main([*common, "--epochs", "3"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["resumed"] is True and second["epochs_done"] == 3
    h = pd.read_csv(tmp_path / "run" / "history.csv")
    assert h["step"].tolist() == [0, 1, 2, 3] and h["clock"].is_monotonic_increasing
    run = g.load_run(tmp_path / "run")
    assert run.config.image_size == 16 and run.config.epochs == 3 and run.config.device == "cpu"
