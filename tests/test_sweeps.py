"""Sweeps: one table from many runs, skipping finished runs, resuming, failures as rows."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pandas as pd
import pytest
import torch

import grok_interp as g
import grok_interp.sweeps as sweep_mod
from grok_interp.cli import main
from grok_interp.measures import events
from grok_interp.sweeps import grid, run_name, summarise, sweep
from grok_interp.theory import coverage_ceiling, predicted_ceiling, symmetry_ceiling

from .helpers import SMALL_MODEL

# lr 2e-2: memorises by step 50, so the events are not all empty.
BASE = dict(p=23, steps=60, eval_every=10, checkpoint_every=20, lr=2e-2, **SMALL_MODEL)


def test_doctests():
    assert doctest.testmod(sweep_mod, raise_on_error=True).failed == 0


def test_grid_and_names():
    configs = grid(split=["square", "strip"], k=[1, 2])
    assert configs == [
        {"split": "square", "k": 1}, {"split": "square", "k": 2},
        {"split": "strip", "k": 1}, {"split": "strip", "k": 2},
    ]
    assert run_name({"op": "a2_ab_b2", "frac": 0.5}) == "op=a2_ab_b2,frac=0.5"
    assert run_name({"op": "a/b"}) == "op=a_b"  # never a path separator
    assert run_name({}) == "base"


def test_bad_sweep_arguments(tmp_path):
    with pytest.raises(ValueError, match="executor="):
        sweep([{}], tmp_path, executor="slurm")
    with pytest.raises(ValueError, match="configs="):
        sweep([], tmp_path)
    with pytest.raises(ValueError, match="share a run directory"):
        sweep([{"k": 1}, {"k": 1}], tmp_path)


def _check_row_against_run(row: pd.Series, radii=()) -> None:
    """The row must equal an independent recomputation from the loaded run."""
    run = g.load_run(row["path"])
    ev = events(run.history)
    assert ev.memorised_at is not None and row["memorised_at"] == ev.memorised_at
    assert row["u_acc"] == pytest.approx(ev.u_acc, nan_ok=True)
    assert row["l_acc"] == pytest.approx(ev.l_acc, nan_ok=True)
    assert row["final_step"] == run.history["step"].iloc[-1]
    assert row["final_test_acc"] == pytest.approx(run.history["test_acc"].iloc[-1])
    assert row["n_train"] == run.split.n_train
    assert row["ceiling"] == pytest.approx(coverage_ceiling(run.split))
    assert row["ceiling_transpose"] == pytest.approx(symmetry_ceiling(run.split, ["transpose"]))
    for r in radii:
        assert row[f"ceiling_r{r}"] == pytest.approx(predicted_ceiling(run.split, r))


@pytest.mark.slow
def test_local_sweep_skips_resumes_and_reports_failures(tmp_path):
    configs = [
        {"split": "strip", "t": 5, "frac": 0.5},
        {"split": "random", "frac": 0.5},
        {"split": "square", "k": 99},  # invalid for p=23: must become a failed row
    ]
    table = sweep(configs, tmp_path, base=BASE, max_workers=2, radii=[2, 6], progress=False)
    assert list(table["run"]) == [run_name(c) for c in configs]
    assert list(table["status"]) == ["done", "done", "failed"]
    assert "k=99" in table.loc[2, "error"]
    for i in (0, 1):
        _check_row_against_run(table.loc[i], radii=[2, 6])
    assert (tmp_path / "sweep.csv").exists()
    assert pd.read_csv(tmp_path / "sweep.csv")["run"].tolist() == table["run"].tolist()
    # A STRIP leaves test pairs far from training pairs of their class: lower ceiling.
    assert table.loc[0, "ceiling_r2"] < table.loc[1, "ceiling_r2"]

    # Rerun: finished runs are skipped (their files untouched), the failure is retried.
    hist = tmp_path / run_name(configs[0]) / "history.csv"
    before = (hist.stat().st_mtime_ns, hist.read_bytes())
    again = sweep(configs, tmp_path, base=BASE, max_workers=1, progress=False)
    assert list(again["status"]) == ["skipped", "skipped", "failed"]
    assert (hist.stat().st_mtime_ns, hist.read_bytes()) == before
    assert again.loc[0, "memorised_at"] == table.loc[0, "memorised_at"] == 50
    assert again.loc[0, "u_acc"] == table.loc[0, "u_acc"]

    # A larger step budget resumes the same runs and extends their histories.
    h60 = pd.read_csv(hist)
    longer = sweep(configs[:1], tmp_path, base={**BASE, "steps": 80}, max_workers=1, progress=False)
    assert longer.loc[0, "status"] == "done" and longer.loc[0, "final_step"] == 80
    h80 = pd.read_csv(hist)
    pd.testing.assert_frame_equal(h80[h80["step"] <= 60].reset_index(drop=True), h60)
    _check_row_against_run(longer.loc[0])


@pytest.mark.slow
def test_interrupted_run_is_continued(tmp_path):
    # A run that stopped at step 40 of 60 (unfinished state) is resumed, not restarted:
    # its history up to 40 is kept and it ends at the same place as an uninterrupted run.
    # The batch whole everywhere: how a run's batch is cut (and so its last bits) follows
    # its threads, which for a one-worker sweep are the caller's torch threads (an earlier
    # "auto" run on a busy machine may have left them at 1): a sweep run given one thread
    # computes its batch whole, as a direct run with batch_parts=1 does.
    cfg = {"split": "random", "frac": 0.4}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g.train_hooked(out=tmp_path / "cut" / run_name(cfg), progress=False, threads=1, batch_parts=1,
                       **{**BASE, "steps": 40}, **cfg)
        status = tmp_path / "cut" / run_name(cfg) / "status.json"
        status.write_text('{"finished": false, "step": 40}\n')
        cut = sweep([cfg], tmp_path / "cut", base=BASE, max_workers=1, progress=False)
        full = sweep([cfg], tmp_path / "full", base=BASE, max_workers=1, progress=False)
    finally:
        torch.set_num_threads(before)
    assert cut.loc[0, "status"] == "done" and cut.loc[0, "final_step"] == 60
    a = g.load_run(cut.loc[0, "path"]).history
    b = g.load_run(full.loc[0, "path"]).history
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
def test_compatible_runs_train_as_one_batch(tmp_path):
    pytest.importorskip("grok_interp.many_runs")
    # Two seeds of one configuration share every shape: one batched computation. Each
    # still gets its own directory and row, equal to training it alone.
    configs = [{"seed": 1}, {"seed": 2}, {"seed": 3, "d_mlp": 32}]  # the third has other shapes
    batched = sweep(configs, tmp_path / "b", base=BASE, max_workers=1, progress=False)
    alone = sweep(configs, tmp_path / "a", base=BASE, max_workers=1, batched=False, progress=False)
    assert list(batched["batch_size"]) == [2, 2, 1]
    assert list(alone["batch_size"]) == [1, 1, 1]
    assert (batched["status"] == "done").all()
    for col in ("memorised_at", "final_step", "n_train"):
        assert list(batched[col]) == list(alone[col])
    for col in ("u_acc", "final_test_acc"):
        np.testing.assert_allclose(batched[col], alone[col], atol=0.02)
    for i in range(3):
        _check_row_against_run(batched.loc[i])


def test_summarise_reads_an_unfinished_run(tmp_path):
    run = g.train_hooked(out=tmp_path / "r", progress=False, **BASE)
    row = summarise(run.path, radii=[4])
    assert row["final_step"] == 60
    assert row["ceiling_r4"] == pytest.approx(predicted_ceiling(run.split, 4))
    assert math.isclose(row["final_test_acc"], run.history["test_acc"].iloc[-1])


@pytest.mark.slow
def test_ray_sweep_matches_local(tmp_path):
    pytest.importorskip("ray")
    configs = [{"split": "strip", "t": 4, "frac": 0.5}, {"split": "random", "frac": 0.5}]
    ray_table = sweep(configs, tmp_path / "ray", base=BASE, executor="ray", max_workers=2, progress=False)
    local = sweep(configs, tmp_path / "local", base=BASE, max_workers=1, progress=False)
    assert list(ray_table["status"]) == ["done", "done"]
    cols = ["run", "memorised_at", "grokked_at", "u_acc", "l_acc", "final_step", "final_test_acc", "ceiling"]
    pd.testing.assert_frame_equal(ray_table[cols], local[cols])
    for i in range(2):
        _check_row_against_run(ray_table.loc[i])


@pytest.mark.slow
def test_cli_sweep(tmp_path, capsys):
    rc = main([
        "sweep", "--out", str(tmp_path), "--workers", "1", "--radii", "2",
        "--set", "p=23", "--set", "steps=30", "--set", "d_model=32", "--set", "d_mlp=64",
        "--set", "frac=0.5", "--set", "split=strip", "--grid", "t=3,4", "--quiet",
    ])  # (t applies only to split=strip: a grid crossing it with split=random would fail its rows)
    assert rc == 0
    out = capsys.readouterr().out
    assert "t=3" in out and "t=4" in out and "ceiling_r2" in out
    table = pd.read_csv(tmp_path / "sweep.csv")
    assert list(table["status"]) == ["done", "done"]
    # A bad configuration is a failed row (exit status 1); bad syntax is exit status 2.
    assert main(["sweep", "--out", str(tmp_path / "bad"), "--set", "p=12", "--grid", "k=1", "--quiet"]) == 1
    assert "p=12 is invalid" in capsys.readouterr().out
    assert main(["sweep", "--out", str(tmp_path / "bad"), "--set", "p"]) == 2
    assert "--set" in capsys.readouterr().err
