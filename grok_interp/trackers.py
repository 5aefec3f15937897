"""Log training to an experiment tracker: Weights & Biases or TensorBoard.

A tracker is a training callback that takes the history row (see
:class:`grok_interp.training.Callback`): at every history row it logs the row's numbers
(``train_loss``, ``test_loss``, ``train_acc``, ``test_acc`` and any ``record=``
measures) at the row's step, and adds no column. Nothing is recomputed.

Use one by name or as an object::

    run = g.train_hooked(p=113, log_to="wandb")                 # wandb.init(project="grok-interp")
    run = g.train_hooked(p=113, log_to="tensorboard")           # event files under runs/
    tb = g.trackers.TensorBoardLogger("runs/p113")
    run = g.train_hooked(p=113, log_to=tb)                      # you close it: tb.close()

Both are optional extras: ``pip install grok-interp[wandb]`` or ``[tensorboard]``;
each is imported only when a tracker is made. Offline W&B works as usual
(``WANDB_MODE=offline``, or ``WandbLogger(mode="offline")``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Mapping

from ._validate import bad_value
from .errors import GrokInterpError

__all__ = ["Tracker", "WandbLogger", "TensorBoardLogger", "trackers_for", "scalars_of"]

TRACKERS = ("wandb", "tensorboard")


def scalars_of(row: Mapping[str, Any]) -> dict[str, float]:
    """The finite real numbers of a history row, ``step`` left out (it is the x axis)."""
    out = {}
    for k, v in row.items():
        if k == "step" or isinstance(v, bool) or not isinstance(v, numbers.Real):
            continue
        v = float(v)
        if math.isfinite(v):
            out[k] = v
    return out


class Tracker:
    """A training callback ``(step, model, context, row)`` that logs the row's numbers.

    Subclasses implement :meth:`log` and :meth:`close`. A tracker made by
    :func:`trackers_for` (``log_to="wandb"``) is closed by the training call; one you
    pass yourself stays open until you close it (so several runs can share it).
    """

    def __call__(self, step: int, model: Any, context: Any, row: Mapping[str, Any]) -> None:
        values = scalars_of(row)
        if values:
            self.log(int(step), values)
        return None

    def log(self, step: int, values: dict[str, float]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _need(module: str, extra: str) -> Any:
    import importlib  # noqa: PLC0415

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise GrokInterpError(f"{module} is not installed: pip install 'grok-interp[{extra}]' ({exc})") from None


class WandbLogger(Tracker):
    """Log every history row to a Weights & Biases run.

    Args:
        run: An open ``wandb`` run to log to (None: start one with ``wandb.init``).
        project: The project of a new run.
        config: The run's configuration (``RunConfig.to_dict()``; ``log_to="wandb"``
            gives it).
        **init: Further ``wandb.init`` arguments (``name``, ``mode="offline"``,
            ``dir``, ...).
    """

    def __init__(self, run: Any = None, *, project: str = "grok-interp", config: Mapping[str, Any] | None = None,
                 **init: Any) -> None:
        self._owns = run is None
        if run is None:
            wandb = _need("wandb", "wandb")
            run = wandb.init(project=project, config=dict(config or {}), **init)
        self.run = run

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        """Finish the run (only one this logger started)."""
        if self._owns and self.run is not None:
            self.run.finish()
            self.run = None


class TensorBoardLogger(Tracker):
    """Write every history row as TensorBoard scalars (one tag per column).

    Args:
        log_dir: Where the event files go (None: TensorBoard's default ``runs/...``).
        writer: An open ``torch.utils.tensorboard.SummaryWriter`` to write to instead.
    """

    def __init__(self, log_dir: str | None = None, *, writer: Any = None) -> None:
        self._owns = writer is None
        if writer is None:
            _need("tensorboard", "tensorboard")
            from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - needs the extra

            writer = SummaryWriter(log_dir=None if log_dir is None else str(log_dir))
        self.writer = writer

    @property
    def log_dir(self) -> str:
        return self.writer.log_dir

    def log(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        """Flush the event files; close the writer this logger opened."""
        self.writer.flush()
        if self._owns:
            self.writer.close()


def trackers_for(log_to: Any, *, config: Mapping[str, Any] | None = None) -> tuple[list[Any], list[Tracker]]:
    """The callbacks ``log_to`` names, and those of them the caller must close.

    Args:
        log_to: None, ``"wandb"``, ``"tensorboard"``, a tracker (or any callback taking
            ``row``), a tracker class (made with no arguments), or a list of these.
        config: The run's configuration, for a W&B run started here.

    Returns:
        ``(callbacks, made)``: every tracker, and the ones made here (to close).
    """
    if log_to is None:
        return [], []
    items: Iterable[Any] = log_to if isinstance(log_to, (list, tuple)) else [log_to]
    callbacks: list[Any] = []
    made: list[Tracker] = []
    try:
        for item in items:
            if isinstance(item, str):
                if item not in TRACKERS:
                    raise bad_value("log_to", item, f"must be one of {list(TRACKERS)}, a tracker or a callback")
                t: Any = WandbLogger(config=config) if item == "wandb" else TensorBoardLogger()
                made.append(t)
            elif isinstance(item, type) and issubclass(item, Tracker):
                t = item(config=config) if item is WandbLogger else item()
                made.append(t)
            elif callable(item):
                t = item
            else:
                raise bad_value("log_to", item, f"must be one of {list(TRACKERS)}, a tracker or a callback")
            callbacks.append(t)
    except BaseException:
        for t in made:
            t.close()
        raise
    return callbacks, made
