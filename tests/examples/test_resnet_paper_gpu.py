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


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One image cache for the module: drawing the 14641 images is most of each test (the
    tests draw the library's style, several times faster than the reference's JPEGs)."""
    return tmp_path_factory.mktemp("cache")


@pytest.mark.slow
def test_tiny_run_resumes_and_reports_its_speed(tmp_path, capsys, cache):
    script = _script()
    common = ["--out", str(tmp_path / "run"), "--tiny", "--eval-every", "1", "--device", "cpu", "--quiet",
              "--cache-dir", str(cache), "--style", "library"]
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


@pytest.mark.slow
def test_the_reference_preset_starts_from_a_local_weights_file(tmp_path, capsys, cache):
    """--pretrained: the backbone comes from the file (torchvision layout, a 1000-way fc
    that is not loaded); the run is the reference preset's (52 classes, its split), in the
    drawing --style asks for."""
    import torch
    from safetensors.torch import save_file

    from grok_interp.vision import resnet18_width

    donor = resnet18_width(4, num_classes=1000)
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(tmp_path / "w.safetensors"))
    args = ["--out", str(tmp_path / "run"), "--tiny", "--epochs", "0", "--device", "cpu", "--quiet",
            "--cache-dir", str(cache), "--style", "library", "--pretrained", str(tmp_path / "w.safetensors")]
    assert _script().main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["preset"] == "reference" and out["pretrained"] == str(tmp_path / "w.safetensors")
    run = g.load_run(tmp_path / "run")
    assert run.config.num_classes == 52 and run.config.style == "library" and run.config.frac == 0.25
    assert torch.equal(run.model_at(0).net.conv1.weight, donor.conv1.weight)
