"""Run directories: save, load, corrupt files, bad `out`, and resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import grok_interp as g

from .helpers import SMALL_MODEL, all_tokens, small_run

pytestmark = pytest.mark.portable


def _same_weights(a, b):
    wa, wb = g.models.weights(a), g.models.weights(b)
    return set(wa) == set(wb) and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_out_directory_roundtrip(tmp_path):
    run = small_run(out=tmp_path / "r")
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.json", "data.safetensors", "model.safetensors", "history.csv", "status.json", "checkpoints"} <= names
    loaded = g.load_run(tmp_path / "r")
    assert _same_weights(run.model, loaded.model)
    assert run.history.equals(loaded.history)
    assert torch.equal(run.split.train_mask, loaded.split.train_mask)
    assert loaded.config.to_dict() == run.config.to_dict()
    assert loaded.checkpoint_steps == run.checkpoint_steps
    assert _same_weights(run.model_at(20), loaded.model_at(20))


def test_in_memory_run_saves_and_loads(tmp_path):
    run = small_run(op="a2_ab_b2", split="square", k=5)
    run.save(tmp_path / "saved")
    loaded = g.load_run(tmp_path / "saved")
    assert loaded.task.op_name == "a2_ab_b2" and loaded.split.kind == "square"
    assert torch.equal(loaded.split.forced_test, run.split.forced_test)
    toks = all_tokens(run.task)
    assert torch.equal(loaded.model(toks), run.model(toks))
    assert _same_weights(loaded.model_at(40), run.model_at(40))


def test_custom_operation_run_reloads_from_saved_labels(tmp_path):
    def cubic(a, b):
        return a * a * a + 2 * b

    run = small_run(op=cubic, out=tmp_path / "c", steps=20)
    loaded = g.load_run(tmp_path / "c")
    assert loaded.task.op_name == "custom:cubic"
    assert torch.equal(loaded.task.labels, run.task.labels)


def test_no_pickles_on_disk(tmp_path):
    small_run(out=tmp_path / "r", steps=20)
    for f in (tmp_path / "r").rglob("*"):
        assert f.suffix in {"", ".json", ".csv", ".safetensors", ".pt"}, f
    state = next((tmp_path / "r").glob("state-*"))
    torch.load(state / "optimizer.pt", weights_only=True)  # loads without unpickling objects


@pytest.mark.parametrize("victim", ["model.safetensors", "history.csv", "config.json", "data.safetensors"])
def test_truncated_file_is_named(tmp_path, victim):
    small_run(out=tmp_path / "r", steps=20)
    path = tmp_path / "r" / victim
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)] if victim != "history.csv" else b"")
    with pytest.raises(g.RunDirectoryError, match=victim):
        g.load_run(tmp_path / "r")


def test_missing_file_is_named(tmp_path):
    small_run(out=tmp_path / "r", steps=20)
    (tmp_path / "r" / "model.safetensors").unlink()
    with pytest.raises(g.RunDirectoryError, match="model.safetensors is missing"):
        g.load_run(tmp_path / "r")


def test_out_must_be_new_empty_or_a_run(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    with pytest.raises(ValueError, match="^out=.*not a run directory"):
        small_run(out=tmp_path / "notes")
    small_run(out=tmp_path / "r", steps=20)
    with pytest.raises(ValueError, match="^out=.*resume=True"):
        small_run(out=tmp_path / "r", steps=20)
    with pytest.raises(ValueError, match="^resume=.*another configuration"):
        small_run(out=tmp_path / "r", steps=20, lr=0.01, resume=True)


def test_resume_extends_a_finished_run_exactly(tmp_path):
    full = small_run(steps=60)
    small_run(out=tmp_path / "r", steps=40)
    resumed = small_run(out=tmp_path / "r", steps=60, resume=True)
    assert resumed.history.equals(full.history)
    assert _same_weights(resumed.model, full.model)


def _status(path):
    return json.loads((path / "status.json").read_text())


def test_train_s_counts_the_training_and_a_resume_adds_to_it(tmp_path):
    """``status.json`` says how long the run trained: within the call's own wall time,
    never decreasing over its resume states, and a resumed run goes on from the
    state's count (a slow first sitting stays counted after a fast second one)."""
    nap = 0.3
    calls = []

    def slow(step, model, ctx):  # a callback runs inside the loop: its time is training time
        calls.append(step)
        time.sleep(nap)

    t = time.perf_counter()
    # dense rows (eval_sparse=1) at 0, 10, 20, 30, 40: adaptive evaluation would drop a
    # held row whose test metrics did not move, and no callback runs for a dropped row
    small_run(out=tmp_path / "r", steps=40, callbacks=[slow], eval_sparse=1)
    first_wall = time.perf_counter() - t
    first = _status(tmp_path / "r")
    assert calls == [0, 10, 20, 30, 40]
    assert first["finished"] and len(calls) * nap <= first["train_s"] <= first_wall
    store = g.store.RunStore(tmp_path / "r")
    by_step = [json.loads((store.state_path(s) / "status.json").read_text())["train_s"] for s in store.state_steps()]
    assert by_step == sorted(by_step) and by_step[-1] <= first["train_s"]

    t = time.perf_counter()
    small_run(out=tmp_path / "r", steps=80, resume=True, eval_sparse=1)
    second_wall = time.perf_counter() - t
    second = _status(tmp_path / "r")
    assert second_wall < len(calls) * nap, "the check below needs a second sitting faster than the first"
    assert first["train_s"] < second["train_s"] <= first["train_s"] + second_wall


def test_a_status_with_a_bad_train_s_is_refused(tmp_path):
    small_run(out=tmp_path / "r", steps=20)
    status = _status(tmp_path / "r")
    for bad in (-1.0, "3 s", True):
        (tmp_path / "r" / "status.json").write_text(json.dumps({**status, "train_s": bad}))
        with pytest.raises(g.RunDirectoryError, match="train_s"):
            g.store.RunStore(tmp_path / "r").read_status()


TRAIN_SCRIPT = textwrap.dedent(
    """
    import sys, grok_interp as g
    g.train_hooked(p=23, steps={steps}, eval_every=10, checkpoint_every=25, progress=False,
                   out=sys.argv[1], resume=True, **{model})
    """
)


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path):
    steps = 400
    script = TRAIN_SCRIPT.format(steps=steps, model=SMALL_MODEL)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # kill once a mid-run resume state exists
            states = sorted(out.glob("state-*"))
            if states and int(states[-1].name.split("-")[1]) >= 100:
                break
            time.sleep(0.05)
        else:
            pytest.fail("training subprocess never reached step 100")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    status = json.loads((out / "status.json").read_text())
    assert status["finished"] is False and status["step"] < steps
    # Killed mid-run, the directory still loads: the last checkpoint, never a half-written file.
    partial = g.load_run(out)
    latest_state = int(sorted(out.glob("state-*"))[-1].name.split("-")[1])
    assert partial.history["step"].max() == latest_state
    assert _same_weights(partial.model, partial.model_at(latest_state))
    resumed = g.train_hooked(p=23, steps=steps, eval_every=10, checkpoint_every=25, progress=False,
                             out=out, resume=True, **SMALL_MODEL)
    straight = g.train_hooked(p=23, steps=steps, eval_every=10, checkpoint_every=25, progress=False, **SMALL_MODEL)
    assert resumed.history.equals(straight.history)
    assert _same_weights(resumed.model, straight.model)
    assert json.loads((out / "status.json").read_text())["finished"] is True


@pytest.mark.slow
@pytest.mark.parametrize("when", ["extension_recorded", "mid_extension"])
def test_an_extension_killed_by_sigkill_reports_its_true_state(tmp_path, when):
    opts = dict(p=23, eval_every=10, checkpoint_every=25, progress=False, **SMALL_MODEL)
    out = tmp_path / "r"
    g.train_hooked(steps=50, out=out, **opts)
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT.format(steps=400, model=SMALL_MODEL), str(out)])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            status = json.loads((out / "status.json").read_text())
            if when == "extension_recorded" and not status["finished"]:
                break
            if when == "mid_extension" and status["step"] >= 100:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the extension never started")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    status = json.loads((out / "status.json").read_text())
    # never "finished at the old step" beside a config of the new steps (a sweep skipped such a run)
    assert status["finished"] is False and g.runs.read_config(out).train.steps == 400
    assert g.load_run(out).config.train.steps == 400
    resumed = g.train_hooked(out=out, resume=True, progress=False)  # the CLI's plain --resume
    straight = g.train_hooked(steps=400, **opts)
    assert resumed.history.equals(straight.history) and _same_weights(resumed.model, straight.model)
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 400
    status = json.loads((out / "status.json").read_text())
    assert status["finished"] is True and status["step"] == 400 and "extending" not in status


def _poison_after(n):
    """A gradient transform that turns every gradient to NaN from its ``n``-th call on."""
    calls = []

    def transform(params):
        calls.append(1)
        if len(calls) > n:
            for p in params:
                if p.grad is not None:
                    p.grad.fill_(float("nan"))
    return transform


def test_divergence_stops_training_and_the_run_resumes_from_its_last_finite_checkpoint(tmp_path):
    full = small_run(steps=60)
    with pytest.raises(g.TrainingDiverged, match=r"diverged at step 30: train_loss is nan.*last finite checkpoint, "
                       r"step 20") as info:
        small_run(out=tmp_path / "r", steps=60, gradient_transforms=[_poison_after(25)])
    assert isinstance(info.value, g.GrokInterpError) and info.value.step == 30
    status = _status(tmp_path / "r")
    assert status["finished"] is False and status["step"] == 20
    loaded = g.load_run(tmp_path / "r")
    assert loaded.history["step"].max() <= 20
    assert all(torch.isfinite(w).all() for w in loaded.model.parameters())
    resumed = small_run(out=tmp_path / "r", steps=60, resume=True)  # the cause removed, it goes on exactly
    assert resumed.history.equals(full.history) and _same_weights(resumed.model, full.model)


def test_divergence_in_memory_and_of_the_weights_alone_is_an_error():
    with pytest.raises(g.TrainingDiverged, match="diverged at step"):
        small_run(lr=1e308)
    # dense rows: the NaN row itself is refused, never recorded
    with pytest.raises(g.TrainingDiverged, match="diverged at step 3: train_loss is nan"):
        small_run(eval_every=1, eval_sparse=1, gradient_transforms=[_poison_after(2)])


# --- extending a run: config.json and status.json agree at every interruption ----------
def _config_steps(path):
    return g.runs.read_config(path).train.steps


def test_lowering_steps_below_a_trained_step_is_refused_and_changes_nothing(tmp_path):
    small_run(out=tmp_path / "r", steps=40)
    before = {f: (tmp_path / "r" / f).read_bytes() for f in ("config.json", "status.json")}
    with pytest.raises(g.GrokInterpError, match=r"^steps=20 is invalid: the run in .* has trained to step 40"):
        small_run(out=tmp_path / "r", steps=20, resume=True)
    assert {f: (tmp_path / "r" / f).read_bytes() for f in before} == before


def test_a_resume_keeps_the_recorded_measures_unless_told_otherwise(tmp_path):
    small_run(out=tmp_path / "r", steps=40, record=["weight_norm"])
    run = small_run(out=tmp_path / "r", steps=60, resume=True)  # record=None: the run's own
    assert run.history["weight_norm"].notna().all() and run.history["step"].max() == 60
    assert g.runs.saved_record(tmp_path / "r") == ["weight_norm"]
    run = small_run(out=tmp_path / "r", steps=80, resume=True, record=[])  # told otherwise
    assert run.history.loc[run.history["step"] > 60, "weight_norm"].isna().all()
    assert g.runs.saved_record(tmp_path / "r") == []


class _Killed(BaseException):
    """Stands for a kill -9 at one point of an extension: nothing after it runs."""


def _kill_at(monkeypatch, target, name, when=lambda *a, **k: True):
    real = getattr(target, name)

    def fake(*args, **kwargs):
        if when(*args, **kwargs):
            raise _Killed(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, fake)


@pytest.mark.parametrize("point", ["before_status", "after_status", "after_config", "before_finished"])
def test_an_extension_killed_anywhere_reports_its_true_state_and_resumes_exactly(tmp_path, monkeypatch, point):
    full = small_run(steps=60)
    path = tmp_path / "r"
    small_run(out=path, steps=40)
    store_cls = g.store.RunStore
    if point == "before_status":  # nothing of the extension written
        _kill_at(monkeypatch, store_cls, "write_status", lambda self, *a, **k: k.get("extending"))
    elif point == "after_status":  # status.json records the extension, config.json still old
        _kill_at(monkeypatch, g.runs, "write_static")
    elif point == "after_config":  # both written, nothing trained
        _kill_at(monkeypatch, store_cls, "write_progress")
    else:  # trained to 60, the final status not written
        _kill_at(monkeypatch, store_cls, "write_status", lambda self, step, finished, *a, **k: finished)
    with pytest.raises(_Killed):
        small_run(out=path, steps=60, resume=True)
    monkeypatch.undo()
    status = _status(path)
    if point == "before_status":
        assert status["finished"] is True and status["step"] == 40 and _config_steps(path) == 40
    else:  # the run says it is unfinished, extended to 60: a sweep of the 60-step config resumes it
        assert status["finished"] is False and _config_steps(path) == 60
        assert status["step"] == (60 if point == "before_finished" else 40)
        assert g.load_run(path).config.train.steps == 60
    # the CLI's plain resume (no --steps) goes on to the run's intent and ends where the uninterrupted run does
    if point == "before_status":
        resumed = small_run(out=path, resume=True, steps=60)
    else:
        resumed = g.train_hooked(out=path, resume=True, progress=False)
    assert resumed.history.equals(full.history) and _same_weights(resumed.model, full.model)
    assert _status(path)["finished"] is True and "extending" not in _status(path)
    assert json.loads((path / "config.json").read_text())["train"]["steps"] == 60
