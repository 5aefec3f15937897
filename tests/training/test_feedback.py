"""Feedback while training and measuring: callbacks that get the history row, the
periodic log lines for logs, the measure progress bar, and the W&B / TensorBoard
trackers (offline)."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys

import pytest

import grok_interp as g
from grok_interp.training import loop
from tests.helpers import small_run


def test_a_callback_with_a_row_parameter_gets_the_row_it_follows():
    seen = []

    def cb(step, model, context, row):
        seen.append((step, row))
        return {"loss_x2": 2 * row["train_loss"]}

    def old(step, model, context):  # the three-argument form still works
        return {"old": step}

    run = small_run(steps=30, callbacks=[old, cb], eval_sparse=1)
    h = run.history
    assert [s for s, _ in seen] == h["step"].tolist()
    for (step, row), (_, hrow) in zip(seen, h.iterrows()):
        assert row["step"] == step
        assert row["train_loss"] == hrow["train_loss"] and row["test_acc"] == hrow["test_acc"]
        assert row["old"] == step  # columns of the callbacks before it are there
    assert (h["loss_x2"] == 2 * h["train_loss"]).all()


@pytest.mark.parametrize(("cb", "how"), [
    (lambda step, model, context: None, None),
    (lambda step, model, context, row: None, "keyword"),
    (lambda s, m, c, r: None, "positional"),
    (lambda step, model, context, *, row: None, "keyword"),
    (lambda step, model, context, row=None: None, "keyword"),
    (lambda step, model, context, extra=1: None, None),  # an optional 4th parameter is not the row
    (print, None),
])
def test_wants_row_reads_the_signature(cb, how):
    assert loop.wants_row(cb) == how


def test_periodic_log_lines_say_step_losses_accuracy_and_eta(caplog):
    with caplog.at_level(logging.INFO, logger="grok_interp.training.loop"):
        small_run(steps=40, log_every=1e-9)
    lines = [r.getMessage() for r in caplog.records if r.name == "grok_interp.training.loop"]
    assert len(lines) >= 40  # one per step at this period, and one at the end
    assert "step 40/40" in lines[-1] and "(100%)" in lines[-1] and "ETA 0s" in lines[-1]
    mid = next(line for line in lines if "step 20/40" in line)
    for word in ("train_loss", "test_loss", "train_acc", "test_acc", "elapsed", "ETA"):
        assert word in mid


def test_no_log_lines_by_default_and_log_every_is_checked(caplog):
    with caplog.at_level(logging.INFO, logger="grok_interp.training.loop"):
        small_run(steps=20)
    assert not [r for r in caplog.records if "ETA" in r.getMessage()]
    with pytest.raises(g.GrokInterpError, match="log_every"):
        small_run(steps=20, log_every=0)


def test_progress_log_line_for_several_runs_and_durations():
    assert loop._duration(5) == "5s" and loop._duration(125) == "2m05s" and loop._duration(7300) == "2h01m"
    assert loop._duration(math.nan) == "?"


def test_cli_logs_lines_when_stderr_is_not_a_terminal(tmp_path):
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "grok_interp.cli", "train", "--p", "23", "--steps", "30", "--eval-every", "10",
           "--d-model", "32", "--n-heads", "4", "--d-mlp", "64", "--out", str(out), "--log-every", "0.000001"]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "ETA" in ln]
    assert len(lines) >= 10 and "step 30/30" in lines[-1]
    assert "\r" not in res.stderr  # no progress bar in a log


def test_cli_misspelled_train_option_prints_trains_usage(capsys):
    from grok_interp.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--out", "x", "--stpes", "10"])
    err = capsys.readouterr().err
    assert "usage: grok-interp train" in err and "did you mean --steps" in err


def test_measure_shows_a_progress_bar_unless_told_not_to(capsys):
    run = small_run(steps=40)
    run.measure(["weight_norm"])
    err = capsys.readouterr().err
    assert "measures" in err and f"{len(run.checkpoint_steps)}/{len(run.checkpoint_steps)}" in err
    run.measure(["weight_norm"], progress=False)
    assert "measures" not in capsys.readouterr().err


def test_tensorboard_event_files_are_written_and_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = g.trackers.TensorBoardLogger(str(tmp_path / "tb"))
    run = small_run(steps=30, log_to=tb, record=["weight_norm"], eval_sparse=1)
    tb.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train_loss", "test_loss", "train_acc", "test_acc", "weight_norm"} <= set(tags)
    events = acc.Scalars("test_loss")
    assert [e.step for e in events] == run.history["step"].tolist()
    assert [e.value for e in events] == pytest.approx(run.history["test_loss"].tolist(), rel=1e-6)


def test_log_to_tensorboard_by_name_closes_its_writer(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.chdir(tmp_path)
    small_run(steps=20, log_to="tensorboard")
    files = list((tmp_path / "runs").rglob("events.out.tfevents.*"))
    assert len(files) == 1 and files[0].stat().st_size > 0


def test_wandb_offline_logs_every_row(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    logged = []
    logger = g.trackers.WandbLogger(project="grok-interp-test", config={"p": 23}, dir=str(tmp_path), mode="offline")
    real = logger.run.log
    logger.run.log = lambda values, step=None: (logged.append((step, dict(values))), real(values, step=step))
    run = small_run(steps=30, log_to=[logger], eval_sparse=1)
    run_dir = logger.run.dir
    logger.close()
    assert [s for s, _ in logged] == run.history["step"].tolist()
    assert logged[-1][1]["test_acc"] == run.history["test_acc"].iloc[-1]
    # the offline run's files are on disk, with the summary of the last row
    files = list((tmp_path / "wandb").rglob("*.wandb"))
    assert files and files[0].stat().st_size > 0
    assert str(tmp_path) in run_dir
    assert wandb.run is None  # finished


def test_log_to_rejects_unknown_names():
    with pytest.raises(g.GrokInterpError, match="log_to"):
        small_run(steps=10, log_to="mlflow")


def test_log_to_wandb_by_name_starts_an_offline_run_with_the_config_and_finishes_it(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    started = []
    real_init = wandb.init

    def init(**kwargs):
        started.append(kwargs)
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", init)
    run = small_run(steps=20, log_to="wandb", eval_sparse=1)
    assert len(started) == 1 and started[0]["project"] == "grok-interp"
    assert started[0]["config"]["data"]["p"] == 23 == run.task.p
    assert wandb.run is None  # finished when training ended


def test_train_many_logs_lines_for_a_batch(caplog):
    from tests.helpers import SMALL_MODEL

    configs = [dict(p=23, steps=30, eval_every=10, seed=s, **SMALL_MODEL) for s in (0, 1)]
    with caplog.at_level(logging.INFO, logger="grok_interp.training.loop"):
        g.train_many(configs, progress=False, log_every=1e-9)
    lines = [r.getMessage() for r in caplog.records if "ETA" in r.getMessage()]
    assert lines and "of 2 runs going" in lines[0] and "60/60 steps" in lines[-1]
