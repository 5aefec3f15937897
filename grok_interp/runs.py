"""Runs: ``train_hooked``, the :class:`GrokRun` it returns, and the run directory.

A run directory holds plain, safe files only::

    config.json                 RunConfig + library/backend versions (all to rebuild)
    data.safetensors            labels (p, p), train mask, forced-test mask
    model.safetensors           latest weights (canonical HookedTransformer layout)
    history.csv                 one row per evaluation step
    status.json                 steps done, whether training finished
    checkpoints/step_0000100.safetensors   weights at each checkpoint step
    state-0000100/              resume state: model.safetensors, optimizer.pt,
                                history.csv, status.json

Every file is written to a temporary name and renamed into place, and a resume state
is a directory renamed into place once complete, so an interrupted run never leaves a
half-written file that loads. Nothing pickled is ever loaded: weights are safetensors
and the optimiser state is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import _tl
from ._validate import bad_value
from .config import ModelConfig, RunConfig
from .forward import select_forward
from .models import build_model, load_weights, weights
from .tasks import Split, Task
from .training import (
    Callback,
    FullBatchStep,
    GradientTransform,
    RunState,
    Schedule,
    TrainContext,
    gradient_transforms_for,
    make_optimizer,
    resolve_device,
    train_loop,
)

__all__ = ["GrokRun", "train_hooked", "load_run", "RunDirectoryError"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class RunDirectoryError(ValueError):
    """A run directory is missing, corrupt or truncated (the message names the file)."""


# --- atomic file helpers -------------------------------------------------------------
def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name created with the process umask (mkstemp would make it 0600).
    tmp = str(path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp")
    open(tmp, "xb").close()
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, lambda t: Path(t).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def _write_weights(path: Path, w: dict[str, torch.Tensor]) -> None:
    cpu = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in w.items()}
    _atomic_write(path, lambda t: save_file(cpu, t))


def _write_csv(path: Path, rows: list[dict[str, Any]] | pd.DataFrame) -> None:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    _atomic_write(path, lambda t: df.to_csv(t, index=False))


def _read(path: Path, reader: Callable[[Path], Any]) -> Any:
    """Read one run file, turning any failure into an error that names the file."""
    if not path.exists():
        raise RunDirectoryError(f"run directory {path.parent}: {path.name} is missing")
    try:
        return reader(path)
    except Exception as exc:  # noqa: BLE001 - report which file is broken, whatever broke
        raise RunDirectoryError(f"run file {path} is corrupt or truncated ({type(exc).__name__}: {exc})") from exc


def _read_json(path: Path) -> Any:
    return _read(path, lambda p: json.loads(p.read_text()))


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    return _read(path, lambda p: load_file(str(p)))


def _read_csv(path: Path) -> pd.DataFrame:
    def reader(p: Path) -> pd.DataFrame:
        df = pd.read_csv(p)
        if "step" not in df.columns:
            raise ValueError("no 'step' column")
        return df

    return _read(path, reader)


def write_resume_state(
    path: Path, step: int, w: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, history: list[dict]
) -> None:
    """Write ``path/state-<step>/`` (weights, optimiser, history, status) as one unit.

    The directory is filled under a temporary name and renamed into place, so a resume
    state is either complete or absent; older states are removed afterwards.
    """
    final = path / f"state-{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=".state-", dir=path))
    try:
        _write_weights(tmp / "model.safetensors", w)
        _atomic_write(tmp / "optimizer.pt", lambda t: torch.save(optimizer.state_dict(), t))
        _write_csv(tmp / "history.csv", history)
        _write_json(tmp / "status.json", {"step": step})
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in path.glob("state-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def _is_run_dir(path: Path) -> bool:
    cfg = path / "config.json"
    if not cfg.exists():
        return False
    try:
        return "grok_interp" in json.loads(cfg.read_text())
    except (OSError, ValueError):
        return True  # a broken run is still a run: loading it reports the broken file


# --- the run object --------------------------------------------------------------------
@dataclass
class GrokRun:
    """A trained model with its task, split, configuration and training history.

    Attributes:
        model: The hooked model after training (``run_with_cache`` works on it).
        task: The prime-field task.
        split: Its train/test split.
        config: The :class:`~grok_interp.config.RunConfig` that rebuilds it.
        history: One row per evaluation: step, train_loss, test_loss, train_acc,
            test_acc, and any recorded measures.
        path: The run directory, if the run lives on disk.
    """

    model: nn.Module
    task: Task
    split: Split
    config: RunConfig
    history: pd.DataFrame
    path: Path | None = None
    _memory_checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    @property
    def checkpoint_steps(self) -> list[int]:
        """Steps with saved weights, ascending."""
        if self.path is not None:
            return sorted(int(f.stem.split("_")[1]) for f in (self.path / "checkpoints").glob("step_*.safetensors"))
        return sorted(self._memory_checkpoints)

    def weights_at(self, step: int) -> dict[str, torch.Tensor]:
        """Canonical weights saved at checkpoint ``step``."""
        if step not in self.checkpoint_steps:
            raise bad_value("step", step, f"has no checkpoint; saved steps: {self.checkpoint_steps}")
        if self.path is not None:
            return _read_weights(self.path / "checkpoints" / f"step_{step:07d}.safetensors")
        return self._memory_checkpoints[step]

    def model_at(self, step: int) -> nn.Module:
        """A fresh model holding the weights saved at checkpoint ``step``."""
        w = self.weights_at(step)
        model = build_model(self.config.model, self.task, device=_param_device(self.model))
        load_weights(model, w)
        return model

    def measure(self, measures: Any = ("default", "fourier"), **options: Any) -> pd.DataFrame:
        """Evaluate progress measures on every saved checkpoint; one row per step.

        ``key_freqs_from="final"`` (default) holds the final checkpoint's key frequencies
        fixed, as the literature does. See :func:`grok_interp.measures.measure_checkpoints`.
        """
        from .measures import measure_checkpoints  # noqa: PLC0415 - keeps runs importable alone

        return measure_checkpoints(self, measures, **options)

    def save(self, path: str | os.PathLike) -> Path:
        """Write this run to a run directory (a new or empty directory, or its own)."""
        path = Path(path)
        if self.path is not None and path.resolve() == self.path.resolve():
            return path
        _prepare_out(path, resume=False)
        rd = _RunDir(path)
        rd.write_static(self.config, self.task, self.split)
        for step in self.checkpoint_steps:
            _write_weights(rd.checkpoint_path(step), self.weights_at(step))
        _write_weights(path / "model.safetensors", weights(self.model))
        _write_csv(path / "history.csv", self.history)
        _write_json(path / "status.json", {"step": int(self.history["step"].max()), "finished": True})
        return path

    def __repr__(self) -> str:
        last = self.history.iloc[-1] if len(self.history) else None
        tail = "" if last is None else f", step={int(last['step'])}, test_acc={last['test_acc']:.3f}"
        return f"GrokRun(p={self.task.p}, op={self.task.op_name!r}, split={self.split.kind!r}{tail}, path={self.path})"


def _param_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# --- the run directory ---------------------------------------------------------------
class _RunDir:
    """Reads and writes the files of one run directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def checkpoint_path(self, step: int) -> Path:
        return self.path / "checkpoints" / f"step_{step:07d}.safetensors"

    def write_static(self, config: RunConfig, task: Task, split: Split) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        data = {
            "labels": task.labels,
            "train_mask": split.train_mask.to(torch.uint8),
            "forced_test": split.forced_test.to(torch.uint8),
        }
        _atomic_write(self.path / "data.safetensors", lambda t: save_file({k: v.contiguous() for k, v in data.items()}, t))
        meta = {
            "grok_interp": {"format": FORMAT_VERSION, "transformer_lens": _tl.TL_VERSION},
            "backend": _resolved_backend(config.model),
            **config.to_dict(),
        }
        _write_json(self.path / "config.json", meta)

    def latest_state(self) -> Path | None:
        states = sorted(self.path.glob("state-*"))
        return states[-1] if states else None

    def read_config(self) -> RunConfig:
        raw = _read_json(self.path / "config.json")
        try:
            return RunConfig.from_dict({k: raw[k] for k in ("data", "model", "train")})
        except (KeyError, ValueError, TypeError) as exc:
            raise RunDirectoryError(f"run file {self.path / 'config.json'} is invalid: {exc}") from exc

    def read_task_split(self, config: RunConfig) -> tuple[Task, Split]:
        data = _read_weights(self.path / "data.safetensors")
        try:
            labels, train, forced = data["labels"], data["train_mask"].bool(), data["forced_test"].bool()
        except KeyError as exc:
            raise RunDirectoryError(f"run file {self.path / 'data.safetensors'} lacks {exc}") from exc
        d = config.data
        task = Task(p=d.p, op=d.op, offset=d.offset, labels_override=labels) if d.op.startswith("custom:") else Task(
            p=d.p, op=d.op, offset=d.offset
        )
        if not torch.equal(task.labels, labels):
            raise RunDirectoryError(f"run file {self.path / 'data.safetensors'}: labels disagree with op={d.op!r}")
        split = Split(task=task, kind=d.split, frac=d.frac, seed=d.data_seed, train_mask=train, forced_test=forced, k=d.k, t=d.t)
        return task, split


def _resolved_backend(cfg: ModelConfig) -> str:
    return "mlp" if cfg.arch == "mlp" else _tl.resolve_backend(cfg.backend)


def _prepare_out(path: Path, resume: bool) -> bool:
    """Check ``out``; return True when it already holds a run to resume."""
    if path.exists() and not path.is_dir():
        raise bad_value("out", str(path), "is a file; give a new or empty directory, or a run directory")
    if path.is_dir() and any(path.iterdir()):
        if not _is_run_dir(path):
            raise bad_value("out", str(path), "exists and is not a run directory; give a new or empty directory")
        if not resume:
            raise bad_value("out", str(path), "already holds a run; pass resume=True (--resume) or a new directory")
        return True
    return False


# --- training entry point -----------------------------------------------------------------
def train_hooked(
    p: int = 113,
    op: str | Callable[..., Any] = "add",
    *,
    split: str = "random",
    mask: torch.Tensor | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    callbacks: Iterable[Callback] = (),
    measures: Iterable[Any] | None = None,
    progress: bool = True,
    config: RunConfig | None = None,
    gradient_transforms: Iterable[GradientTransform] = (),
    **options: Any,
) -> GrokRun:
    """Train a hooked model on a prime-field task and return the run.

    Args:
        p: Prime modulus.
        op: Operation name (see :data:`grok_interp.tasks.OPERATIONS`) or a callable
            ``f(a, b) -> int``.
        split: ``random``, ``square`` (give ``k``), ``strip`` (give ``t``) or ``mask``
            (give ``mask``, a bool ``(p, p)`` forced-test region).
        out: Run directory to write as training goes (None: keep everything in memory).
        resume: Continue the run in ``out`` from its latest saved state.
        callbacks: Functions ``(step, model, context) -> dict`` called at every history
            row; their values become history columns.
        measures: Progress measures to record at every history row (see
            :mod:`grok_interp.measures`); None records none.
        progress: Show a progress bar.
        config: A complete :class:`RunConfig` (then ``p``, ``op`` and options are ignored).
        gradient_transforms: Functions ``fn(params)`` that change the trainable
            parameters' ``.grad`` in place before every optimiser step (see
            :class:`grok_interp.training.RunState`).
        **options: Any field of :class:`DataConfig` (``frac``, ``offset``, ``k``, ``t``,
            ``data_seed``), :class:`ModelConfig` (``n_layers``, ``d_model``, ``init``,
            ``embed_init``, ``seed``, ``backend``, ...) or :class:`TrainConfig` (``steps``,
            ``lr``, ``weight_decay``, ``loss``, ``eval_every``, ``stop_after_grok``, ...).

    Returns:
        A :class:`GrokRun` with the trained model and its history.

    Example:
        >>> run = train_hooked(p=23, steps=200, progress=False)  # doctest: +SKIP
        >>> run.history.columns[:5].tolist()  # doctest: +SKIP
        ['step', 'train_loss', 'test_loss', 'train_acc', 'test_acc']
    """
    custom_op = callable(op)
    if config is None:
        config = RunConfig.from_kwargs(
            p=p, op=("custom:" + getattr(op, "__name__", "f")) if custom_op else op, split=split, **options
        )
    forward, forward_name = select_forward(config.model, config.train.forward)
    s = prepare_run(
        config, op=op if custom_op else None, mask=mask, out=out, resume=resume, callbacks=callbacks,
        measures=measures, forward=forward,
    )
    log.info("training p=%d op=%s with the %s forward on %s", s.task.p, s.task.op_name, forward_name, s.device)
    state = s.run_state(gradient_transforms)
    train_loop([state], FullBatchStep(), progress=progress)
    return s.result(state)


@dataclass(eq=False)
class PreparedRun:
    """Everything a training loop needs for one run, set up from its configuration."""

    config: RunConfig
    task: Task
    split: Split
    model: nn.Module
    optimizer: torch.optim.Optimizer
    ctx: TrainContext
    callbacks: list[Callback]
    rd: _RunDir | None
    out_path: Path | None
    device: torch.device
    start: int
    history: list[dict[str, Any]]
    memory: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)

    def run_state(self, gradient_transforms: Iterable[GradientTransform] = ()) -> RunState:
        """The run as the training loop drives it; checkpoints go to the run directory
        (or stay in memory without one). The configuration's own gradient transforms
        (Grokfast, perpendicular gradient: :func:`gradient_transforms_for`) apply
        first, then ``gradient_transforms``."""

        def on_checkpoint(state: RunState) -> None:
            save_checkpoint(self.rd, self.memory, state.step, state.model, state.optimizer, state.history)

        return RunState(
            model=self.model, optimizer=self.optimizer, schedule=Schedule.of(self.config.train),
            history=self.history, step=self.start, callbacks=self.callbacks, context=self.ctx,
            on_checkpoint=on_checkpoint,
            gradient_transforms=[*gradient_transforms_for(self.config.train, self.optimizer), *gradient_transforms],
        )

    def result(self, state: RunState) -> GrokRun:
        """The trained run; a run directory is marked finished."""
        if self.rd is not None:
            _write_json(self.rd.path / "status.json", {"step": state.history[-1]["step"], "finished": True})
        return GrokRun(
            model=self.model, task=self.task, split=self.split, config=self.config,
            history=pd.DataFrame(state.history), path=self.out_path, _memory_checkpoints=self.memory,
        )


def prepare_run(
    config: RunConfig,
    *,
    op: Callable[[Any, Any], Any] | None = None,
    mask: Any = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    callbacks: Iterable[Callback] = (),
    measures: Iterable[Any] | None = None,
    forward: Callable[..., torch.Tensor],
    fused_optimizer: bool = False,
) -> PreparedRun:
    """Build one run's task, split, model, optimiser, data and run directory.

    Shared by :func:`train_hooked` and :func:`grok_interp.batched.train_many`, so a run
    is set up the same way whichever trains it. With ``resume`` and an existing run
    directory, the model and optimiser are loaded from its latest resume state.
    """
    d = config.data
    task = Task(p=d.p, op=op if op is not None else d.op, offset=d.offset)
    split = Split.build(task, d.split, d.frac, d.data_seed, k=d.k, t=d.t, mask=mask)
    device = resolve_device(config.train.device)
    out_path = Path(out) if out is not None else None
    resuming = _prepare_out(out_path, resume) if out_path is not None else False
    model = build_model(config.model, task, device=device)
    optimizer = make_optimizer(model, config.train, fused=fused_optimizer)
    history: list[dict[str, Any]] = []
    start = 0
    rd = _RunDir(out_path) if out_path is not None else None
    if resuming:
        assert rd is not None
        start, history = _restore(rd, config, task, split, model, optimizer)
    elif rd is not None:
        rd.write_static(config, task, split)
    ctx = TrainContext(
        task=task,
        split=split,
        train_tokens=task.tokens(split.train_pairs).to(device),
        train_labels=task.answers(split.train_pairs).to(device),
        test_tokens=task.tokens(split.test_pairs).to(device),
        test_labels=task.answers(split.test_pairs).to(device),
        forward=forward,
        loss=config.train.loss,
    )
    all_callbacks = list(callbacks)
    if measures is not None:
        from .measures import recorder  # measures are optional; imported only when asked

        all_callbacks.append(recorder(measures))
    return PreparedRun(config, task, split, model, optimizer, ctx, all_callbacks, rd, out_path, device, start, history)


def save_checkpoint(
    rd: _RunDir | None, memory: dict[int, dict[str, torch.Tensor]], step: int, model: nn.Module,
    optimizer: torch.optim.Optimizer, history: list[dict[str, Any]],
) -> None:
    """Keep the weights of ``step``: in ``memory`` without a run directory, else on disk.

    On disk: the checkpoint, a resume state, the history so far, the latest weights and
    an unfinished status, each written atomically.
    """
    w = {k: v.detach().to("cpu").clone() for k, v in weights(model).items()}
    if rd is None:
        memory[step] = w
        return
    _write_weights(rd.checkpoint_path(step), w)
    write_resume_state(rd.path, step, w, optimizer, history)
    _write_csv(rd.path / "history.csv", history)
    _write_weights(rd.path / "model.safetensors", w)
    _write_json(rd.path / "status.json", {"step": step, "finished": False})


_RESUMABLE_CHANGES = {"steps", "stop_after_grok", "device"}


def _restore(
    rd: _RunDir, config: RunConfig, task: Task, split: Split, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, list[dict[str, Any]]]:
    """Load the latest resume state of ``rd`` into ``model`` and ``optimizer``."""
    saved = rd.read_config()
    a, b = saved.to_dict(), config.to_dict()
    diffs = [
        f"{sec}.{k}: saved {a[sec][k]!r}, given {b[sec][k]!r}"
        for sec in ("data", "model", "train")
        for k in a[sec]
        if a[sec][k] != b[sec][k] and not (sec == "train" and k in _RESUMABLE_CHANGES)
    ]
    if diffs:
        raise bad_value("resume", True, f"the run in {rd.path} has another configuration: " + "; ".join(diffs))
    _, saved_split = rd.read_task_split(saved)
    if not torch.equal(saved_split.train_mask, split.train_mask):
        raise RunDirectoryError(f"run file {rd.path / 'data.safetensors'}: train mask differs from the rebuilt split")
    raw = _read_json(rd.path / "config.json")
    if raw.get("backend") != _resolved_backend(config.model):
        raise bad_value(
            "backend", _resolved_backend(config.model),
            f"the run in {rd.path} was trained with backend {raw.get('backend')!r}; its optimiser state only resumes there",
        )
    if config.train.steps != saved.train.steps or config.train.stop_after_grok != saved.train.stop_after_grok:
        rd.write_static(config, task, split)  # record the extended schedule
    state = rd.latest_state()
    if state is None:
        log.info("no resume state in %s yet: starting from step 0", rd.path)
        rd.write_static(config, task, split)
        return 0, []
    load_weights(model, _read_weights(state / "model.safetensors"))
    opt_state = _read(state / "optimizer.pt", lambda p: torch.load(p, weights_only=True, map_location="cpu"))
    optimizer.load_state_dict(opt_state)
    status = _read_json(state / "status.json")
    hist = _read_csv(state / "history.csv")
    log.info("resuming %s from step %d", rd.path, status["step"])
    return int(status["step"]), hist.to_dict("records")


def load_run(path: str | os.PathLike, device: str = "cpu") -> GrokRun:
    """Load a run directory written by :func:`train_hooked` or :meth:`GrokRun.save`.

    A ResNet run (``"kind": "resnet"`` in config.json) loads as a
    :class:`grok_interp.vision.ResNetRun`.

    Raises:
        RunDirectoryError: (a ``ValueError``) naming the missing, corrupt or truncated file.
    """
    path = Path(path)
    if not path.is_dir():
        raise RunDirectoryError(f"run directory {path} does not exist")
    if (path / "config.json").exists() and _read_json(path / "config.json").get("kind") == "resnet":
        from .vision.train import load_resnet_run  # the image branch; imported only for its runs

        return load_resnet_run(path, device=device)  # type: ignore[return-value]
    rd = _RunDir(path)
    config = rd.read_config()
    task, split = rd.read_task_split(config)
    model = build_model(config.model, task, device=resolve_device(device))
    # An unfinished run (interrupted, or still training) is read from its latest resume
    # state: one directory written as a whole, so weights and history always agree.
    source = path
    status = _read_json(path / "status.json") if (path / "status.json").exists() else {}
    state = rd.latest_state()
    if state is not None and not status.get("finished", False):
        source = state
    w = _read_weights(source / "model.safetensors")
    try:
        load_weights(model, w)
    except ValueError as exc:
        raise RunDirectoryError(f"run file {source / 'model.safetensors'} does not fit the config: {exc}") from exc
    history = _read_csv(source / "history.csv")
    return GrokRun(model=model, task=task, split=split, config=config, history=history, path=path)
