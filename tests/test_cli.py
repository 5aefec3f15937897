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
        (["--p", "12"], "--p "),
        (["--p", "2"], "--p "),
        (["--op", "pow"], "--op "),
        (["--frac", "1.5"], "--frac "),
        (["--split", "square", "--k", "40", "--p", "23"], "--k "),
        (["--split", "strip", "--t", "-1"], "--t "),
        (["--steps", "0"], "--steps "),
        (["--d-model", "30"], "--d-model "),
        (["--split", "strip", "--t", "22", "--p", "23"], "--split "),
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


def test_every_config_field_has_a_flag_with_the_dataclass_default(capsys):
    import dataclasses

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for cls in (g.DataConfig, g.ModelConfig, g.TrainConfig):
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            assert flag in text, flag
    assert "(default: 0.001)" in text and "(default: 598)" in text and "(default: none)" in text
    assert "--no-pos-embed" in text and "--no-attn-bias" in text


def test_flags_reach_the_config(tmp_path):
    from grok_interp.cli import build_parser

    args = build_parser().parse_args([
        "train", "--out", "x", "--p", "23", "--no-pos-embed", "--betas", "0.8", "0.9", "--stop-after-grok", "none",
        "--normalization", "LN", "--embed-init", "circulant",
    ])
    opts = {k: v for k, v in vars(args).items() if k not in ("command", "out", "resume", "quiet", "preset", "threads", "log_every", "log_to")}
    assert args.threads == "auto"
    assert build_parser().parse_args(["train", "--out", "x", "--threads", "3"]).threads == 3
    for bad in ("0", "two"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", "--out", "x", "--threads", bad])
    assert opts == {"p": 23, "pos_embed": False, "betas": [0.8, 0.9], "stop_after_grok": None,
                    "normalization": "LN", "embed_init": "circulant"}


def test_resume_takes_the_saved_configuration(tmp_path, capsys):
    out = str(tmp_path / "r")
    base = ["train", "--out", out, "--quiet", "--p", "23", "--d-model", "32", "--d-mlp", "64", "--lr", "3e-3",
            "--split", "strip", "--t", "3", "--eval-every", "5"]
    assert main([*base, "--steps", "10"]) == 0
    assert main(["train", "--out", out, "--quiet", "--resume", "--steps", "20"]) == 0
    run = g.load_run(out)
    assert run.history["step"].max() == 20 and run.config.train.lr == 3e-3 and run.split.t == 3
    # An option that would change the history is refused, with one line.
    assert main(["train", "--out", out, "--quiet", "--resume", "--steps", "30", "--lr", "1e-3"]) == 2
    assert "lr" in capsys.readouterr().err


def test_misspelled_options_and_choices_get_a_suggestion(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--out", str(tmp_path / "r"), "--stepz", "5"])
    assert exit_.value.code == 2
    assert "did you mean --steps?" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--quiet", "--embed-init", "circulat"]) == 2
    assert "did you mean 'circulant'?" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("grok-interp ")


def test_errors_speak_the_interface_language(tmp_path, capsys):
    """One mistake, two wordings: Python's names from Python, flags from the CLI."""
    with pytest.raises(g.GrokInterpError, match=r"^p=12 is invalid: must be a prime") as info:
        g.train_hooked(p=12, progress=False)
    assert (info.value.param, info.value.value) == ("p", 12)
    assert main(["train", "--out", str(tmp_path / "r"), "--quiet", "--p", "12"]) == 2
    assert capsys.readouterr().err.strip() == "error: --p 12 is invalid: must be a prime number >= 3"
    # An option named inside the message follows the interface too.
    with pytest.raises(g.GrokInterpError, match="set optimizer='sgd'"):
        g.TrainConfig(momentum=0.5)
    assert main(["train", "--out", str(tmp_path / "r"), "--quiet", "--momentum", "0.5"]) == 2
    assert "error: --momentum 0.5 is invalid: is SGD's; set --optimizer sgd" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--quiet", "--arch", "mlp", "--no-attn-bias"]) == 2
    assert capsys.readouterr().err.startswith("error: --no-attn-bias is invalid:")


def test_resume_hint_names_the_interface(tmp_path, capsys):
    out = tmp_path / "r"
    opts = dict(p=5, steps=2, d_model=8, n_heads=2, d_mlp=8, eval_every=1, progress=False)
    g.train_hooked(out=out, **opts)
    with pytest.raises(g.GrokInterpError) as info:
        g.train_hooked(out=out, **opts)
    assert "pass resume=True" in str(info.value) and "--resume" not in str(info.value)
    assert main(["train", "--out", str(out), "--quiet", "--p", "5", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert f"error: --out {out} is invalid: already holds a run; pass --resume" in err and "resume=True" not in err
