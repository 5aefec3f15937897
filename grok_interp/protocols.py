"""What a run is to measures and plots, and the one place that turns inputs into data.

TransformerLens types "any model with ``run_with_cache``" as a ``Protocol``; this
module does the same for runs. :class:`Run` is what every trained run offers (the
transformer's :class:`~grok_interp.GrokRun` and the ResNet's
:class:`~grok_interp.vision.ResNetRun` alike): its history, its config, its
checkpoints and the model at any of them. :class:`TaskRun` adds the prime-field task
and split a transformer run is trained on; :class:`DatasetRun` adds the image split
and dataset of the ResNet branch. A run from anywhere else (a model imported from
another codebase, a test's hand-written class) works with every measure and plot as
soon as it has these members: nothing checks its type by name.

Measures and plots take a run or plain data (a history DataFrame, a Task, a Split);
the ``as_*`` functions below are where one becomes the other, so no measure or plot
probes its argument with ``hasattr``:

* :func:`is_run`: whether an argument is a run (``isinstance(x, Run)``, cheaply);
* :func:`as_history`: a run's history, a DataFrame, or a list of row dicts;
* :func:`as_task`: a Task or a prime ``p``;
* :func:`as_task_split`: ``(task, split or None)`` of a TaskRun, a Split or a Task;
* :func:`as_task_run`: a TaskRun, or a clear error saying what is missing.

Example:
    >>> import grok_interp as g
    >>> run = g.train_hooked(p=11, steps=10, d_model=16, d_mlp=32, progress=False)
    >>> isinstance(run, g.Run), isinstance(run, g.TaskRun)
    (True, True)
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, runtime_checkable

import pandas as pd
from torch import Tensor, nn

from ._validate import bad_value
from .tasks import Split, Task

__all__ = ["Run", "TaskRun", "DatasetRun", "is_run", "as_history", "as_task", "as_task_split", "as_task_run",
           "checkpointed"]


@runtime_checkable
class Run(Protocol):
    """A trained run as measures and plots see it.

    Attributes:
        model: The model after training (a ``HookedRootModule``: ``run_with_cache``
            works on it).
        config: The configuration that rebuilds the model (``config.model`` for a
            transformer run; :class:`~grok_interp.vision.ResNetConfig` for a ResNet).
        history: One row per evaluation: ``step``, ``train_loss``, ``test_loss``,
            ``train_acc``, ``test_acc`` and any recorded measure columns.
        path: The run directory, or None for a run held in memory.
        checkpoint_steps: Steps with saved weights, ascending.
    """

    model: nn.Module
    config: Any
    history: pd.DataFrame
    path: Path | None

    @property
    def checkpoint_steps(self) -> list[int]: ...

    def weights_at(self, step: int) -> Mapping[str, Tensor]:
        """The weights saved at checkpoint ``step``."""
        ...

    def model_at(self, step: int) -> nn.Module:
        """A fresh model holding the weights saved at checkpoint ``step``."""
        ...


@runtime_checkable
class TaskRun(Run, Protocol):
    """A run on a prime-field task: a :class:`Run` with its :class:`Task` and :class:`Split`.

    Every transformer measure and circuit plot takes one (or the plain data it reads).
    """

    task: Task
    split: Split


@runtime_checkable
class DatasetRun(Run, Protocol):
    """A run on an image dataset (the ResNet branch): a :class:`Run` with its split
    over the images and the images themselves."""

    split: Any

    def dataset(self, cache_dir: Any = None) -> Any:
        """The run's images."""
        ...


def as_history(data: Run | pd.DataFrame | Iterable[Mapping[str, Any]], name: str = "data") -> pd.DataFrame:
    """The history DataFrame of a run, a DataFrame itself, or a list of row dicts.

    Args:
        data: A :class:`Run`, a DataFrame or an iterable of row dicts.
        name: The argument's name, for the error message.

    Returns:
        The DataFrame (not copied, not sorted; callers check the columns they need).
    """
    if isinstance(data, pd.DataFrame):
        return data
    if is_run(data):
        return data.history
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise bad_value(name, type(data).__name__, "must be a run (grok_interp.Run), a history DataFrame or a list of rows")
    return pd.DataFrame(list(data))


def as_task(task: Task | int, name: str = "task") -> Task:
    """A :class:`Task`, or ``Task(p)`` when given a prime ``p``."""
    if isinstance(task, Task):
        return task
    if isinstance(task, int) and not isinstance(task, bool):
        return Task(p=task)
    raise bad_value(name, task, "must be a grok_interp.Task (or a prime p)")


def as_task_split(data: TaskRun | Split | Task | int, name: str = "task") -> tuple[Task, Split | None]:
    """``(task, split)`` of a :class:`TaskRun` or a :class:`Split`; ``(task, None)`` of a
    Task or a prime ``p`` (measures that need the training pairs then say so)."""
    if isinstance(data, Split):
        return data.task, data
    if is_run(data, task=True):
        return data.task, data.split
    return as_task(data, name), None


def as_task_run(data: Any, name: str = "run") -> TaskRun:
    """``data`` itself when it is a :class:`TaskRun`; otherwise an error naming what it lacks.

    Returns:
        The run, typed as a TaskRun.
    """
    if is_run(data, task=True):
        return data
    missing = [m for m in _TASK_RUN_MEMBERS if not _has(data, m)]
    raise bad_value(name, type(data).__name__,
                    f"must be a run on a task (grok_interp.TaskRun: GrokRun, load_run); it lacks {missing}")


def checkpointed(run: TaskRun) -> TaskRun:
    """``run``, or for a model imported without checkpoints the same run measured at its
    one model (:meth:`grok_interp.GrokRun.with_final_checkpoint`), for the tools that
    read checkpoints."""
    if not run.checkpoint_steps and _has(run, "with_final_checkpoint"):
        return run.with_final_checkpoint()  # type: ignore[attr-defined]
    return run


#: The members of :class:`Run` and :class:`TaskRun` (what ``isinstance`` checks).
_RUN_MEMBERS = ("model", "config", "history", "path", "checkpoint_steps", "weights_at", "model_at")
_TASK_RUN_MEMBERS = _RUN_MEMBERS + ("task", "split")


def is_run(data: Any, *, task: bool = False) -> bool:
    """``isinstance(data, Run)`` (``TaskRun`` with ``task=True``), decided without
    evaluating a property: on Python 3.11 ``isinstance`` against a protocol calls
    ``hasattr``, which would list a run directory's checkpoints (and let an ``OSError``
    escape) just to ask what the argument is."""
    return all(_has(data, m) for m in (_TASK_RUN_MEMBERS if task else _RUN_MEMBERS))


def _has(obj: Any, member: str) -> bool:
    try:
        inspect.getattr_static(obj, member)
    except AttributeError:
        return False
    return True
