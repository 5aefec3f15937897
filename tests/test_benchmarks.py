"""The benchmark scripts run end to end (tiny settings): a script that breaks would only
be found the day someone needs its figures, e.g. on a lent GPU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_gpu_script_smoke_runs_on_cpu():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--p", "23", "--steps", "2",
           "--repeats", "1", "--max-steps", "30", "--k", "2", "--many-steps", "20"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout
    parts = {r["part"]: r for r in _json_lines(out)}
    assert set(parts) == {"train_step", "time_to_grok", "many_runs"}
    assert parts["train_step"]["hooked_ms"] > 0 and parts["train_step"]["fast_ms"] > 0
    assert parts["time_to_grok"]["steps_run"] == 30
    assert parts["many_runs"]["k"] == 2 and parts["many_runs"]["batched_s"] > 0


def test_gpu_script_refuses_a_missing_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode != 0 and "no CUDA device" in res.stderr
