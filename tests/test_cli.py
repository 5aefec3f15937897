"""The command line: help, one-line errors with status 2, and a real training run."""

import subprocess
import sys

import pytest

import grok_interp as g
from grok_interp.cli import main

pytestmark = pytest.mark.portable


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--p", "--op", "--split", "--frac", "--k", "--t", "--offset", "--steps", "--seed", "--out", "--resume"):
        assert flag in text


@pytest.mark.parametrize(
    "args, name",
    [
        (["--p", "12"], "p="),
        (["--p", "2"], "p="),
        (["--op", "pow"], "op="),
        (["--frac", "1.5"], "frac="),
        (["--split", "square", "--k", "40", "--p", "23"], "k="),
        (["--split", "strip", "--t", "-1"], "t="),
        (["--steps", "0"], "steps="),
        (["--d-model", "30"], "d_model="),
        (["--split", "strip", "--t", "22", "--p", "23"], "split="),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(tmp_path, capsys, args, name):
    code = main(["train", "--out", str(tmp_path / "r"), "--quiet", "--steps", "5", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"error: {name}") and "\n" not in err and "Traceback" not in err


def test_non_run_directory_is_refused(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("mine")
    assert main(["train", "--out", str(tmp_path), "--quiet"]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_console_script_trains_and_writes_a_run(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "grok_interp.cli", "train", "--p", "23", "--steps", "30", "--d-model", "32",
           "--d-mlp", "64", "--split", "strip", "--t", "3", "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "trained to step 30" in proc.stdout
    run = g.load_run(out)
    assert run.split.kind == "strip" and run.split.t == 3 and run.history["step"].max() == 30
    assert not run.split.train_mask[:4].any()
