"""grok_interp.protocols: both run types satisfy the Run protocols, any class with the
members works with the measures and plots, and viz/measures convert in one place."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pytest
import torch

import grok_interp as g
from grok_interp import protocols, viz
from grok_interp.runs import GrokRun
from grok_interp.vision.resnet import build_resnet
from grok_interp.vision.train import ResNetConfig, ResNetRun

from .helpers import small_run

pytestmark = pytest.mark.portable

ROOT = Path(__file__).resolve().parent.parent / "grok_interp"


def _members(proto: type) -> set[str]:
    """A protocol's members: annotated attributes, properties and methods."""
    names: set[str] = set()
    for klass in proto.__mro__:
        if klass in (object, Protocol) or not getattr(klass, "_is_protocol", False):
            continue
        names |= set(getattr(klass, "__annotations__", {}))
        names |= {n for n, v in vars(klass).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))}
    return names


def _class_members(cls: type) -> set[str]:
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    return fields | {n for n in dir(cls) if not n.startswith("_")}


@pytest.mark.parametrize(
    "cls, protos",
    [(GrokRun, (g.Run, g.TaskRun)), (ResNetRun, (g.Run, g.DatasetRun))],
)
def test_both_run_classes_declare_every_member_of_their_protocols(cls, protos):
    """Static: the class (its dataclass fields, properties, methods) has each member,
    and ``weights_at`` / ``model_at`` take one ``step``."""
    for proto in protos:
        missing = _members(proto) - _class_members(cls)
        assert not missing, f"{cls.__name__} lacks {sorted(missing)} of {proto.__name__}"
    assert isinstance(inspect.getattr_static(cls, "checkpoint_steps"), property)
    for method in ("weights_at", "model_at"):
        assert list(inspect.signature(getattr(cls, method)).parameters) == ["self", "step"]


def test_a_grok_run_and_a_resnet_run_are_runs():
    run = small_run(steps=20)
    assert isinstance(run, g.Run) and isinstance(run, g.TaskRun) and not isinstance(run, g.DatasetRun)
    assert protocols.is_run(run) and protocols.is_run(run, task=True)
    resnet = ResNetRun(model=build_resnet(width=4, num_classes=49), config=ResNetConfig(),
                       history=pd.DataFrame({"step": [0]}), indices=torch.arange(4), split=None)
    assert isinstance(resnet, g.Run) and isinstance(resnet, g.DatasetRun)
    assert not isinstance(resnet, g.TaskRun) and not protocols.is_run(resnet, task=True)
    assert protocols.as_history(resnet) is resnet.history


def test_is_run_agrees_with_isinstance_and_reads_no_property():
    class Full:
        model = config = history = path = task = split = None

        @property
        def checkpoint_steps(self):
            raise AssertionError("is_run must not evaluate properties")

        def weights_at(self, step):
            return {}

        def model_at(self, step):
            return None

    assert protocols.is_run(Full()) and protocols.is_run(Full(), task=True)
    for member in sorted(_members(g.TaskRun)):
        lacking = type("Lacking", (), {n: getattr(Full, n) for n in _members(g.TaskRun) if n != member})
        assert not protocols.is_run(lacking(), task=True), member
        assert protocols.is_run(lacking()) == (member in {"task", "split"}), member
    with pytest.raises(ValueError, match=r"run=.*lacks \['model_at'\]"):
        protocols.as_task_run(type("NoModelAt", (), {n: getattr(Full, n) for n in _members(g.TaskRun) - {"model_at"}})())


def test_conversions_accept_a_run_or_plain_data():
    rows = [{"step": 0, "train_acc": 0.1, "test_acc": 0.0}, {"step": 10, "train_acc": 1.0, "test_acc": 0.0}]
    assert protocols.as_history(rows).equals(pd.DataFrame(rows))
    df = pd.DataFrame(rows)
    assert protocols.as_history(df) is df
    with pytest.raises(ValueError, match="data="):
        protocols.as_history("runs/p113")
    task = g.Task(23)
    split = g.Split.random(task, frac=0.3, seed=0)
    assert protocols.as_task_split(split) == (task, split)
    t, s = protocols.as_task_split(23)
    assert (t.p, t.op_name, s) == (23, "add", None)
    with pytest.raises(ValueError, match="task="):
        protocols.as_task_split("23")


class HandWrittenRun:
    """A minimal run from outside the package: only the protocol's members."""

    def __init__(self, model, task, split, config, history, checkpoints):
        self.model, self.task, self.split, self.config, self.history = model, task, split, config, history
        self.path = None
        self._checkpoints = checkpoints

    @property
    def checkpoint_steps(self):
        return sorted(self._checkpoints)

    def weights_at(self, step):
        return self._checkpoints[step]

    def model_at(self, step):
        model = g.models.build_model(self.config.model, self.task)
        g.models.load_weights(model, self.weights_at(step))
        return model


@pytest.fixture(scope="module")
def pair():
    """A GrokRun and a hand-written run holding the same model, history and checkpoints."""
    run = small_run(steps=60)
    ckpts = {s: run.weights_at(s) for s in run.checkpoint_steps}
    return run, HandWrittenRun(run.model, run.task, run.split, run.config, run.history, ckpts)


def _images(fig) -> list[np.ndarray]:
    return [np.ma.filled(np.asarray(im.get_array(), dtype=float), np.nan) for ax in fig.axes for im in ax.images]


def _drawn(fig) -> list[np.ndarray]:
    """Everything a figure shows as numbers: images, line data, bar heights."""
    out = _images(fig)
    for ax in fig.axes:
        out += [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]
        out.append(np.array([getattr(p, "get_height", lambda: np.nan)() for p in ax.patches], dtype=float))
    return out


def test_a_hand_written_run_works_with_the_plots_and_measures(pair):
    run, mine = pair
    assert isinstance(mine, g.TaskRun) and not isinstance(mine, GrokRun)
    assert repr(g.events(mine)) == repr(g.events(run))
    pd.testing.assert_frame_equal(g.compare_measures(mine), g.compare_measures(run))
    pd.testing.assert_frame_equal(g.measures.measure_checkpoints(mine, ["med"]),
                                  g.measures.measure_checkpoints(run, ["med"]))
    assert g.measures.rqi(run.model, mine) == g.measures.rqi(run.model, run.split)
    for plot, kw in [
        (viz.plot_training, {}),
        (viz.plot_measures, {"columns": ["med"]}),
        (viz.plot_embedding_fourier_norms, {"step": 20}),
        (viz.plot_neuron_clusters, {"step": 20}),
        (viz.plot_split, {}),
        (viz.plot_attention_grid, {}),
        (viz.plot_neuron_grid, {}),
        (viz.plot_fourier_2d, {"step": 20}),
        (viz.plot_logit_map_fourier, {}),
        (viz.plot_trig_fit, {}),
        (viz.plot_embedding_clock, {"key_freqs": [1, 2]}),
    ]:
        ours, theirs = _drawn(plot(mine, **kw)), _drawn(plot(run, **kw))
        assert len(ours) == len(theirs), plot.__name__
        # a 60-step run has no frequency cluster: the trig fit then draws a note only
        assert any(a.size for a in ours) or plot is viz.plot_trig_fit, plot.__name__
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, err_msg=plot.__name__)
    torch.testing.assert_close(viz.attention_patterns(mine, step=20), viz.attention_patterns(run, step=20))
    assert isinstance(viz.attention_heads(mine, step=[20, None]), viz.OfflineHTML)


def test_a_plot_given_a_run_draws_what_its_data_function_returns(pair):
    run, _ = pair
    table = viz.data.neuron_clusters(run, step=20)
    a = _images(viz.plot_neuron_clusters(run, step=20))[0]
    b = _images(viz.plot_neuron_clusters(table, step=20))[0]
    np.testing.assert_array_equal(a, b)
    grid = viz.data.correct_grid(run)
    np.testing.assert_array_equal(_images(viz.plot_split(run))[1], _images(viz.plot_split(run.split, correct=grid))[1])
    acts = viz.data.activations(run)
    np.testing.assert_array_equal(_images(viz.plot_neuron_grid(run))[0],
                                  _images(viz.plot_neuron_grid(acts, clusters=True))[0])
    with pytest.raises(ValueError, match="correct="):
        viz.plot_split(run.split, correct=np.ones((3, 3), dtype=bool))


# --- the rules, read from the sources -------------------------------------------------------
_MODEL_ACCESS = {"model", "model_at", "weights_at", "measure", "run_with_cache"}
#: What a drawing module may take from the measures: transforms of the data it is given.
_PURE = {"fourier_basis", "fourier_basis_names", "fourier_transform_1d", "fourier_transform_2d"}


@pytest.mark.parametrize("module", ["viz/plots.py", "viz/circuit.py", "viz/attention.py"])
def test_drawing_modules_never_touch_a_model(module):
    """Plots draw data: a run's model is read in grok_interp.viz.data, never here."""
    tree = ast.parse((ROOT / module).read_text())
    bad = [f"{module}:{n.lineno}: .{n.attr}" for n in ast.walk(tree)
           if isinstance(n, ast.Attribute) and n.attr in _MODEL_ACCESS]
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and "measures" in n.module:
            bad += [f"{module}:{n.lineno}: imports {a.name}" for a in n.names if a.name not in _PURE]
        if isinstance(n, ast.ImportFrom) and n.module in ("models", "runs", "training"):
            bad.append(f"{module}:{n.lineno}: imports {n.module}")
    assert not bad, "drawing code reaches for a model:\n" + "\n".join(bad)


def test_measures_and_viz_probe_no_argument_with_hasattr():
    """Arguments are typed by the Run protocols and converted in grok_interp.protocols."""
    bad = []
    for path in sorted((ROOT / "viz").glob("*.py")) + sorted((ROOT / "measures").glob("*.py")):
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "hasattr":
                bad.append(f"{path.relative_to(ROOT.parent)}:{n.lineno}")
    assert not bad, "hasattr probes:\n" + "\n".join(bad)
