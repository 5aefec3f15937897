"""Adaptive evaluation (``eval_sparse``): fewer test forwards, the same rows where it matters."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import grok_interp as g
from grok_interp import store
from grok_interp.sweeps import sweep
from grok_interp.training.loop import Schedule, backfill_needed

from ..helpers import SMALL_MODEL

pytestmark = pytest.mark.portable

# A p = 23 run that memorises by step ~60 and groks (test accuracy 0.99) near step 460.
GROKS = dict(p=23, frac=0.6, lr=3e-3, weight_decay=3.0, steps=600, eval_every=10, checkpoint_every=200,
             device="cpu", progress=False, **SMALL_MODEL)
TOL = 0.01


def _norm(step, model, ctx):
    return {"w_norm": float(sum(p.detach().double().pow(2).sum() for p in model.parameters()))}


@pytest.fixture(scope="module")
def pair():
    dense = g.train_hooked(eval_sparse=1, callbacks=[_norm], **GROKS)
    sparse = g.train_hooked(eval_sparse=5, callbacks=[_norm], **GROKS)
    return dense.history.set_index("step"), sparse.history.set_index("step"), dense, sparse


def _first(h, col, thr):
    hit = h.index[h[col] >= thr]
    return int(hit[0]) if len(hit) else None


def test_every_adaptive_row_is_the_dense_row(pair):
    dense, sparse, *_ = pair
    assert list(sparse.columns) == list(dense.columns)
    assert set(sparse.index) <= set(dense.index)
    pd.testing.assert_frame_equal(sparse, dense.loc[sparse.index], check_exact=True)
    assert len(sparse) < len(dense)  # still stretches were dropped: the test is not a dense run twice


def test_training_is_unchanged(pair):
    *_, d, s = pair
    for name, w in g.models.weights(d.model).items():
        assert torch.equal(w, g.models.weights(s.model)[name])


def test_coarse_rows_and_moving_windows_are_complete(pair):
    dense, sparse, *_ = pair
    last = int(dense.index[-1])
    checkpoints = set(g.training.checkpoint_schedule(600, 200))
    coarse = [s for s in dense.index if s % 50 == 0 or s == last]
    assert set(coarse) <= set(sparse.index)
    moving = 0
    for a, b in zip(coarse[:-1], coarse[1:]):
        if abs(dense.at[b, "test_acc"] - dense.at[a, "test_acc"]) >= TOL and not checkpoints & set(range(a + 1, b)):
            moving += 1
            assert set(range(a, b + 1, 10)) <= set(sparse.index), f"window {a}-{b} moved but lost rows"
    assert moving > 0
    # Every gap of the adaptive history (a checkpoint between rows can end a window
    # early) is a still stretch of the dense one.
    kept = list(sparse.index)
    gaps = [(a, b) for a, b in zip(kept[:-1], kept[1:]) if b - a > 10]
    assert gaps
    for a, b in gaps:
        span = dense.loc[a:b]
        assert abs(dense.at[b, "test_acc"] - dense.at[a, "test_acc"]) < TOL
        assert abs(np.log(dense.at[b, "test_loss"] / dense.at[a, "test_loss"])) < 0.1
        assert (span["train_acc"] >= 0.99).nunique() == 1


def test_events_are_the_dense_ones(pair):
    dense, sparse, *_ = pair
    assert _first(dense, "test_acc", 0.99) is not None  # the run groks
    assert _first(sparse, "test_acc", 0.99) == _first(dense, "test_acc", 0.99)
    assert _first(sparse, "train_acc", 0.99) == _first(dense, "train_acc", 0.99)


def test_backfilled_rows_callbacks_see_their_own_weights(pair):
    dense, sparse, *_ = pair
    backfilled = [s for s in sparse.index if s % 50]
    assert backfilled
    assert (sparse.loc[backfilled, "w_norm"] == dense.loc[backfilled, "w_norm"]).all()
    assert sparse["w_norm"].nunique() == len(sparse)  # every row its own weights, not the current ones


def test_grok_stop_is_exact_with_a_short_stop_after_grok():
    """stop_after_grok shorter than the sparse window: the run still stops exactly
    stop_after_grok steps after the first row reaching the threshold."""
    opts = {**GROKS, "stop_after_grok": 20}
    dense = g.train_hooked(eval_sparse=1, **opts)
    sparse = g.train_hooked(eval_sparse=5, **opts)
    d, s = dense.history.set_index("step"), sparse.history.set_index("step")
    assert s.index[-1] == d.index[-1] == _first(d, "test_acc", 0.99) + 20
    pd.testing.assert_frame_equal(s, d.loc[s.index], check_exact=True)
    for name, w in g.models.weights(dense.model).items():
        assert torch.equal(w, g.models.weights(sparse.model)[name])


def test_an_interrupted_adaptive_run_resumes_to_the_uninterrupted_one(tmp_path):
    # checkpoint_every 25: checkpoints between rows (25, 75, ...) and at powers of two
    # resolve the held rows, so each saved history is complete.
    opts = {**GROKS, "steps": 300, "checkpoint_every": 25}

    class Stop(Exception):
        pass

    def interrupt(step, model, ctx):
        if step >= 190:
            raise Stop

    with pytest.raises(Stop):
        g.train_hooked(out=tmp_path / "r", callbacks=[interrupt], **opts)
    rs = store.RunStore(tmp_path / "r")
    saved = max(rs.state_steps())
    assert saved == 175  # a checkpoint between rows: its held rows were resolved there
    assert store.read_history(rs.state_path(175) / store.HISTORY)["step"].iloc[-1] == 170
    resumed = g.train_hooked(out=tmp_path / "r", resume=True, **opts)
    straight = g.train_hooked(**opts)
    assert resumed.history.equals(straight.history)
    for name, w in g.models.weights(straight.model).items():
        assert torch.equal(w, g.models.weights(resumed.model)[name])
    assert g.load_run(tmp_path / "r").history.equals(straight.history)


def test_an_extended_run_keeps_its_old_last_row_and_is_otherwise_the_straight_one(tmp_path):
    """A finished run has a row at its last step; extended (a raised ``steps``), it keeps
    that row, which the straight run may have dropped as still, and nothing else differs."""
    opts = {**GROKS, "checkpoint_every": 20}
    straight = g.train_hooked(**{**opts, "steps": 100})
    g.train_hooked(out=tmp_path / "r", **{**opts, "steps": 30})
    extended = g.train_hooked(out=tmp_path / "r", resume=True, **{**opts, "steps": 100})
    s, e = straight.history.set_index("step"), extended.history.set_index("step")
    assert set(e.index) - set(s.index) <= {30}
    pd.testing.assert_frame_equal(e.loc[s.index], s, check_exact=True)
    for name, w in g.models.weights(straight.model).items():
        assert torch.equal(w, g.models.weights(extended.model)[name])


@pytest.mark.parametrize("parts", [1, 3])
def test_plain_and_split_steps_evaluate_adaptively(parts):
    """FullBatchStep's plain path (one part) and split path (parts > 1)."""
    opts = {**GROKS, "steps": 200, "batch_parts": parts}
    d = g.train_hooked(eval_sparse=1, **opts).history.set_index("step")
    s = g.train_hooked(eval_sparse=5, **opts).history.set_index("step")
    assert len(s) < len(d) and any(step % 50 for step in s.index)  # dropped and backfilled rows
    pd.testing.assert_frame_equal(s, d.loc[s.index], check_exact=True)


def test_batched_runs_evaluate_adaptively_too():
    """train_many's stacked step: the rows equal the dense batch's (a backfilled row's
    test forward is a batch of one, so within float rounding)."""
    from grok_interp.many_runs import train_many

    specs = [{**{k: v for k, v in GROKS.items() if k != "progress"}, "steps": 200, "seed": s} for s in (0, 1)]
    runs = {k: train_many([{**sp, "eval_sparse": k} for sp in specs], max_batch=2, progress=False) for k in (1, 5)}
    for dense, sparse in zip(runs[1], runs[5]):
        d, s = dense.history.set_index("step"), sparse.history.set_index("step")
        assert len(s) < len(d) and set(s.index) <= set(d.index)
        pd.testing.assert_frame_equal(s, d.loc[s.index], rtol=1e-5, atol=1e-7)


def test_backfill_rule():
    sch = Schedule(steps=100, lr=1e-3, eval_sparse=5, grok_threshold=0.99)
    row = dict(train_loss=0.1, test_loss=2.0, train_acc=1.0, test_acc=0.3)
    held = [dict(train_loss=0.1, train_acc=1.0)]
    assert backfill_needed(None, held, row, sch)  # nothing recorded yet
    assert not backfill_needed(row, held, {**row, "test_acc": 0.305, "test_loss": 2.1}, sch)
    assert backfill_needed(row, held, {**row, "test_acc": 0.31}, sch)  # accuracy moved a point
    assert backfill_needed(row, held, {**row, "test_acc": 0.29}, sch)  # either way
    assert backfill_needed(row, held, {**row, "test_loss": 2.0 * 1.11}, sch)  # log loss moved 0.1
    assert backfill_needed({**row, "test_acc": 0.985}, held, {**row, "test_acc": 0.99}, sch)  # crossed the threshold
    assert backfill_needed(row, [dict(train_loss=0.1, train_acc=0.98)], row, sch)  # training accuracy crossed 0.99
    assert backfill_needed(row, held, {**row, "test_loss": float("nan")}, sch)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "5"])
def test_bad_eval_sparse_is_named(value):
    with pytest.raises(g.GrokInterpError, match="eval_sparse"):
        g.RunConfig.from_kwargs(eval_sparse=value)


def _downgrade_to_format_3(run_dir):
    """Rewrite config.json as a run saved before eval_sparse existed."""
    path = run_dir / "config.json"
    raw = json.loads(path.read_text())
    raw["grok_interp"]["format"] = 3
    del raw["train"]["eval_sparse"]
    path.write_text(json.dumps(raw))


def test_a_format_3_run_loads_dense_resumes_and_is_skipped_by_a_sweep(tmp_path):
    opts = {**GROKS, "steps": 120, "checkpoint_every": 50}
    old = tmp_path / "seed=999"  # the directory a sweep names the configuration {"seed": 999}, the default
    g.train_hooked(out=old, eval_sparse=1, **{**opts, "steps": 80})
    _downgrade_to_format_3(old)
    assert g.load_run(old).config.train.eval_sparse == 1
    resumed = g.train_hooked(out=old, resume=True, eval_sparse=1, **opts)  # a raised budget trains on
    straight = g.train_hooked(eval_sparse=1, **opts)
    assert resumed.history.equals(straight.history)
    with pytest.raises(g.GrokInterpError, match="eval_sparse"):
        g.train_hooked(out=old, resume=True, eval_sparse=5, **opts)  # another cadence: refused, not mixed
    _downgrade_to_format_3(old)  # as a sweep started before this change left it, finished
    wanted = {k: v for k, v in opts.items() if k != "progress"}
    skipped = sweep([{"seed": 999}], tmp_path, base={**wanted, "eval_sparse": 1}, progress=False)
    assert list(skipped["status"]) == ["skipped"]
    other = sweep([{"seed": 999}], tmp_path, base={**wanted, "eval_sparse": 5}, progress=False)
    assert list(other["status"]) == ["failed"] and "eval_sparse" in other["error"].iloc[0]


def test_a_resume_state_needs_every_coarse_row(tmp_path):
    opts = {**GROKS, "steps": 200, "checkpoint_every": 100}
    g.train_hooked(out=tmp_path / "r", eval_sparse=5, **opts)
    rs = store.RunStore(tmp_path / "r")
    state = rs.state_path(200)
    assert rs.validate_state(state, eval_every=10, eval_sparse=5).step == 200
    history = store.read_history(state / store.HISTORY)
    assert len(history) < 21
    with pytest.raises(g.RunDirectoryError, match="is short"):
        rs.validate_state(state, eval_every=10)  # dense rows demanded: this history is sparse
    store.write_csv(state / store.HISTORY, history[history["step"] != 150])
    with pytest.raises(g.RunDirectoryError, match=r"no rows for steps \[150\]"):
        rs.validate_state(state, eval_every=10, eval_sparse=5)
