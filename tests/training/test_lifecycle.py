"""The run lifecycle (grok_interp.training.lifecycle): one implementation, every kind of run."""

from __future__ import annotations


import pytest
import torch

import grok_interp as g
from grok_interp import store
from grok_interp.training import lifecycle

from ..helpers import SMALL_MODEL


def test_every_kind_of_run_is_registered_with_what_differs():
    import grok_interp.vision  # noqa: F401 - registers the ResNet kind
    from grok_interp.training.loop import FullBatchStep
    from grok_interp.many_runs import StackedStep
    from grok_interp.vision import ResNetConfig, ResNetRun, train_resnet

    kinds = lifecycle.run_kinds()
    assert set(kinds) >= {"transformer", "many", "resnet"}
    t, m, r = kinds["transformer"], kinds["many"], kinds["resnet"]
    assert (t.config_class, t.result, t.step_function, t.train) == (g.RunConfig, g.GrokRun, FullBatchStep, g.train_hooked)
    assert (m.config_class, m.result, m.step_function, m.train) == (g.RunConfig, g.GrokRun, StackedStep, g.train_many)
    assert (r.config_class, r.result, r.train) == (ResNetConfig, ResNetRun, train_resnet)
    assert r.resume_changeable == {"epochs", "device", "eval_batch_size"}
    assert "train.steps" in t.resume_changeable and "train.lr" not in t.resume_changeable
    with pytest.raises(g.GrokInterpError, match="not a registered kind"):
        lifecycle.run_kind("no such kind")
    with pytest.raises(g.GrokInterpError, match="own name"):
        lifecycle.register_run_kind("other", t)


def test_config_diffs_name_what_a_resume_may_not_change():
    saved = {"data": {"p": 23}, "train": {"steps": 100, "lr": 1e-3}}
    given = {"data": {"p": 23}, "train": {"steps": 200, "lr": 2e-3}}
    assert lifecycle.config_diffs(saved, given, {"train.steps"}) == ["train.lr: saved 0.001, given 0.002"]
    assert lifecycle.config_diffs(saved, given, {"train.steps", "train.lr"}) == []
    assert lifecycle.config_diffs({"epochs": 2, "lr": 1}, {"epochs": 4, "lr": 2}, {"epochs"}) == ["lr: saved 1, given 2"]


def test_checkpoints_are_written_in_the_background_and_finish_after_the_last_write(tmp_path, write_threads):
    threads = write_threads
    run = g.train_hooked(p=23, steps=40, eval_every=10, checkpoint_every=20, progress=False, out=tmp_path / "r",
                         **SMALL_MODEL)
    assert threads and all(n.startswith("grok-interp-checkpoint") for n in threads), threads
    status = store.RunStore(tmp_path / "r").read_status()
    assert status["finished"] is True and status["step"] == 40
    assert run.checkpoint_steps[-1] == 40


def test_an_in_memory_run_keeps_its_checkpoints_in_memory():
    cp = lifecycle.Checkpoints(None)
    assert cp.writer is None
    model = torch.nn.Linear(2, 2)

    class State:
        step, history, train_s = 3, [{"step": 3}], 0.0

    State.model = model
    State.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cp = lifecycle.Checkpoints(None, weights_of=lambda m: m.state_dict())
    cp.save(State)
    assert set(cp.memory) == {3} and torch.equal(cp.memory[3]["weight"], model.weight)
    assert cp.memory[3]["weight"].data_ptr() != model.weight.data_ptr()  # a copy, not the live tensor
    cp.finish(3, 0.0)
    cp.close()


def test_each_kind_reads_only_its_own_run_directories():
    from pathlib import Path

    from grok_interp.runs import read_config
    from grok_interp.vision.train import _read_config as read_resnet_config

    fixtures = Path(__file__).parents[1] / "data" / "format5"
    assert read_config(fixtures / "transformer").data.p == 11
    assert read_resnet_config(fixtures / "resnet").width == 2
    with pytest.raises(g.RunDirectoryError, match="kind 'resnet' is not a transformer run"):
        read_config(fixtures / "resnet")
    with pytest.raises(g.RunDirectoryError, match="kind None is not a resnet run"):
        read_resnet_config(fixtures / "transformer")
