"""Runs: ``train_hooked``, the :class:`GrokRun` it returns, and ``load_run``.

The run directory itself (file names, atomic writes, the writer's lock, validation and
resume states) is :mod:`grok_interp.store`; this module adds what is particular to a
transformer run: ``config.json`` holds a :class:`~grok_interp.config.RunConfig` with the
library and backend versions, and ``data.safetensors`` the labels (p, p), the train
mask and the forced-test mask.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
import torch
from torch import nn

from . import tl_backend, store
from ._validate import bad_value, check_int
from .config import SECTIONS, ModelConfig, RunConfig
from .errors import GrokInterpError, RunDirectoryError, TrainingDiverged
from .presets import preset_options
from .sizes import check_fits
from .store import CONFIG, DATA, MODEL, RunStore
from .training.forwards import select_forward
from .models import build_model, check_model_fits_task, load_weights, weights
from .threads import batch_parts as machine_parts, resolve_threads, using_threads
from .groups import build_task
from .tasks import Split, Task
from .trackers import trackers_for
from .training import lifecycle
from .training.lifecycle import CheckpointWriter
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

__all__ = ["GrokRun", "train_hooked", "load_run", "RunDirectoryError", "prepare_run", "PreparedRun", "build_run", "BuiltRun",
           "save_checkpoint", "read_config", "read_task_split", "CheckpointWriter"]

log = logging.getLogger(__name__)

_SECTIONS = SECTIONS


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
        checkpoints: Weights kept in memory, ``{step: canonical weights}`` (see
            :func:`grok_interp.models.weights`), for a run without a directory: what
            :meth:`weights_at`, :meth:`model_at` and :meth:`measure` read. A run on disk
            reads its checkpoints from ``path`` instead. Build a run from a model trained
            elsewhere with :func:`grok_interp.from_model`, which fills this.

    The model must fit the task (``d_vocab = p + offset + 1``, ``d_vocab_out = p``):
    a run of mismatched parts is refused when it is made.
    """

    model: nn.Module
    task: Task
    split: Split
    config: RunConfig
    history: pd.DataFrame
    path: Path | None = None
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_model_fits_task(self.model, self.task)
        if self.split.task.p != self.task.p or not torch.equal(self.split.task.labels, self.task.labels):
            raise bad_value("split", f"{self.split.kind} split of p={self.split.task.p}",
                            f"belongs to another task than the run's (p={self.task.p}, op={self.task.op_name!r})")
        if (self.config.data.p, self.config.data.offset) != (self.task.p, self.task.offset):
            raise bad_value("config", f"p={self.config.data.p}, offset={self.config.data.offset}",
                            f"describes another task than the run's (p={self.task.p}, offset={self.task.offset})")
        bad = [s for s in self.checkpoints if isinstance(s, bool) or not isinstance(s, int) or s < 0]
        if bad:
            raise bad_value("checkpoints", bad[:3], "keys must be steps (integers >= 0)")
        if self.config.model.arch != "mlp":  # a state dict of either backend reads as canonical weights
            m = self.config.model
            self.checkpoints = {s: tl_backend.canonical_state_dict(dict(w), m.n_heads, m.d_head) for s, w in self.checkpoints.items()}

    @property
    def checkpoint_steps(self) -> list[int]:
        """Steps with saved weights, ascending."""
        if self.path is not None:
            return RunStore(self.path).checkpoint_steps()
        return sorted(self.checkpoints)

    def weights_at(self, step: int) -> dict[str, torch.Tensor]:
        """Canonical weights saved at checkpoint ``step``."""
        if step not in self.checkpoint_steps:
            raise bad_value("step", step, f"has no checkpoint; saved steps: {self.checkpoint_steps}")
        if self.path is not None:
            return RunStore(self.path).read_checkpoint(step)
        return self.checkpoints[step]

    def model_at(self, step: int) -> nn.Module:
        """A fresh model holding the weights saved at checkpoint ``step``."""
        w = self.weights_at(step)
        model = build_model(self.config.model, self.task, device=_param_device(self.model))
        load_weights(model, w)
        return model

    def measure(self, measures: Any = ("default", "fourier"), *, progress: bool = True, **options: Any) -> pd.DataFrame:
        """Evaluate progress measures on every saved checkpoint; one row per step.

        ``key_freqs_from="final"`` (default) holds the final checkpoint's key frequencies
        fixed, as the literature does. A tqdm bar counts the checkpoints (``progress=False``:
        none). A run without checkpoints (e.g. :func:`grok_interp.from_model` given only a
        model) is measured at its one model, as one row at its last step. See
        :func:`grok_interp.measures.measure_checkpoints`.
        """
        from .measures import measure_checkpoints  # noqa: PLC0415 - keeps runs importable alone

        return measure_checkpoints(self.with_final_checkpoint(), measures, progress=progress, **options)

    @property
    def final_step(self) -> int:
        """The step of :attr:`model`: the history's last, else the last checkpoint's, else 0."""
        if len(self.history) and "step" in self.history:
            return int(self.history["step"].max())
        steps = self.checkpoint_steps
        return steps[-1] if steps else 0

    def with_final_checkpoint(self) -> "GrokRun":
        """This run if it has checkpoints; else the same run (sharing its model) whose one
        checkpoint is :attr:`model` at :attr:`final_step`: what checkpoint-reading tools
        measure for a model imported without its training."""
        if self.checkpoint_steps:
            return self
        return GrokRun(model=self.model, task=self.task, split=self.split, config=self.config, history=self.history,
                       checkpoints={self.final_step: weights(self.model)})

    def save(self, path: str | os.PathLike) -> Path:
        """Write this run to a run directory (a new or empty directory, or its own)."""
        path = Path(path)
        if self.path is not None and path.resolve() == self.path.resolve():
            return path
        out, _ = store.open_out(path, resume=False)
        try:
            write_static(out, self.config, self.task, self.split)
            for step in self.checkpoint_steps:
                out.write_checkpoint(step, self.weights_at(step))
            out.write_model(weights(self.model))
            out.write_history(self.history)
            out.write_status(int(self.history["step"].max()), finished=True)
        finally:
            out.close()
        return path

    def __repr__(self) -> str:
        last = self.history.iloc[-1] if len(self.history) else None
        tail = "" if last is None else f", step={int(last['step'])}, test_acc={last['test_acc']:.3f}"
        return f"GrokRun(p={self.task.p}, op={self.task.op_name!r}, split={self.split.kind!r}{tail}, path={self.path})"


def _param_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# --- the run directory ---------------------------------------------------------------
def write_static(out: RunStore, config: RunConfig, task: Task, split: Split, record: list[str] | None = None) -> None:
    """Write ``config.json`` and ``data.safetensors`` of a transformer run.

    config.json first: a writer killed in between leaves a directory that is a run
    (with nothing trained yet), which ``resume`` simply starts again. ``record`` (the
    names of the measures recorded while training) is kept in config.json, so a resume
    records them too.
    """
    out.write_config({
        "grok_interp": {"format": store.FORMAT_VERSION, "transformer_lens": tl_backend.TL_VERSION},
        "backend": _resolved_backend(config.model),
        **config.to_dict(),
        **({"record": list(record)} if record is not None else {}),
    })
    out.write_data({
        "labels": task.labels,
        "train_mask": split.train_mask.to(torch.uint8),
        "forced_test": split.forced_test.to(torch.uint8),
    })


def _record_names(record: Any) -> list[str] | None:
    """``record`` as config.json keeps it: measure names (None: none recorded, or
    callables, which no file can hold)."""
    if record is None:
        return None
    items = [record] if isinstance(record, str) else list(record)
    return items if all(isinstance(x, str) for x in items) else None


def saved_record(path: str | os.PathLike) -> list[str] | None:
    """The measure names the run in ``path`` records while training (None: none)."""
    return RunStore(path).reconciled_meta().get("record")


def read_config(path: str | os.PathLike) -> RunConfig:
    """The :class:`RunConfig` in ``path/config.json``, checked against its schema.

    Every section must hold exactly the config class's fields with values of the
    declared types (keys added in a later format are filled from the config classes'
    ``ADDED_KEYS``, :func:`grok_interp.store.check_fields`); then the config's own checks run. An
    extension that ``status.json`` records (a resume killed before it rewrote
    config.json, :meth:`grok_interp.store.RunStore.write_status`) is applied first.

    Raises:
        RunDirectoryError: naming config.json and the key at fault.
    """
    config, meta = lifecycle.read_saved_config(path, "transformer", _SECTIONS, RunConfig.from_dict,
                                               required=("backend",), optional=("record",), default_kind="transformer")
    rec = meta.get("record")
    if rec is not None and not (isinstance(rec, list) and all(isinstance(x, str) for x in rec)):
        raise RunDirectoryError(f"run file {RunStore(path).file(CONFIG)}: 'record' must be a list of measure names")
    return config


def _check_data(path: Path, config: RunConfig) -> None:
    """``data.safetensors``' shapes against the config, from its header (nothing allocated)."""
    file = path / DATA
    shapes = store.tensor_shapes(file)
    p = config.data.p
    for name in ("labels", "train_mask", "forced_test"):
        if name not in shapes:
            raise RunDirectoryError(f"run file {file} lacks {name!r}")
        if shapes[name] != (p, p):
            raise RunDirectoryError(f"run file {file}: {name} has shape {shapes[name]}, but config.json says p={p}")


def _check_weight_shapes(file: Path, config: RunConfig) -> None:
    """Every dimension in a weights file's header must be one of the config's sizes."""
    m, d = config.model, config.data
    sizes = {1, 3, d.p, d.p + d.offset + 1, m.d_model, 2 * m.d_model, 3 * m.d_model, m.d_mlp, m.n_heads, m.d_head}
    for name, shape in store.tensor_shapes(file).items():
        odd = [n for n in shape if n not in sizes]
        if odd:
            raise RunDirectoryError(
                f"run file {file}: {name} has shape {shape}, which does not fit config.json "
                f"(p={d.p}, d_model={m.d_model}, d_mlp={m.d_mlp}, n_heads={m.n_heads}, d_head={m.d_head})"
            )


def read_task_split(path: str | os.PathLike, config: RunConfig) -> tuple[Task, Split]:
    """The task and split of the run in ``path`` (``data.safetensors`` checked against ``config``)."""
    path = Path(path)
    _check_data(path, config)
    data = store.read_tensors(path / DATA)
    labels, train, forced = data["labels"], data["train_mask"].bool(), data["forced_test"].bool()
    d = config.data
    task = build_task(d.p, d.op, d.offset, labels=labels)
    if not torch.equal(task.labels, labels):
        raise RunDirectoryError(f"run file {path / DATA}: labels disagree with op={d.op!r}")
    # the split config.json describes, drawn again, must be the one data.safetensors holds
    rebuilt = Split.from_config(task, d, forced if d.split == "mask" else None)
    for name, saved, want in (("train_mask", train, rebuilt.train_mask), ("forced_test", forced, rebuilt.forced_test)):
        if not torch.equal(saved, want):
            raise RunDirectoryError(
                f"run files {path / CONFIG} and {path / DATA} disagree: the {d.split} split config.json describes "
                f"(frac={d.frac}, data_seed={d.data_seed}, shuffle={d.shuffle!r}, k={d.k}, t={d.t}) has "
                f"{int(want.sum())} pairs in {name}, data.safetensors {int(saved.sum())} "
                f"({int((saved != want).sum())} pairs differ)")
    split = Split(task=task, kind=d.split, frac=d.frac, seed=d.data_seed, train_mask=train, forced_test=forced, k=d.k, t=d.t,
                  shuffle=d.shuffle)
    return task, split


def _resolved_backend(cfg: ModelConfig) -> str:
    return "mlp" if cfg.arch == "mlp" else tl_backend.resolve_backend(cfg.backend)


# --- training entry point -----------------------------------------------------------------
def train_hooked(
    p: int | None = None,
    op: str | Callable[..., Any] | None = None,
    *,
    split: str | None = None,
    mask: torch.Tensor | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    callbacks: Iterable[Callback] = (),
    record: Iterable[Any] | None = None,
    progress: bool = True,
    config: RunConfig | None = None,
    gradient_transforms: Iterable[GradientTransform] = (),
    preset: str | None = None,
    threads: int | str | None = "auto",
    batch_parts: int | None = None,
    task: Task | None = None,
    log_to: Any = None,
    log_every: float | None = None,
    **options: Any,
) -> GrokRun:
    """Train a hooked model on a prime-field task and return the run.

    Args:
        p: Prime modulus (default 113).
        op: Operation name (see :data:`grok_interp.tasks.OPERATIONS`; default ``add``)
            or a callable ``f(a, b) -> int``.
        split: ``random`` (default), ``square`` (give ``k``), ``strip`` (give ``t``) or
            ``mask`` (give ``mask``, a bool ``(p, p)`` forced-test region).
        out: Run directory to write as training goes (None: keep everything in memory).
        resume: Continue the run in ``out`` from its latest saved state. Its saved
            configuration is used, changed only by the options given (e.g. ``steps``);
            options that would change its history are refused.
        callbacks: Functions ``(step, model, context) -> dict`` called at every history
            row; their values become history columns. One with a fourth parameter
            ``row`` also gets the row so far (see :class:`grok_interp.training.Callback`).
        record: Names of progress measures (see :mod:`grok_interp.measures`, e.g.
            ``"default"`` or ``["med", "gini"]``) to record as history columns at every
            history row; None records none.
        progress: Show a progress bar.
        log_to: Log every history row to an experiment tracker: ``"wandb"``,
            ``"tensorboard"``, a tracker object or class, or a list
            (:mod:`grok_interp.trackers`; the extras ``grok-interp[wandb]`` /
            ``[tensorboard]``). Trackers run after ``record=``'s measures, so they log
            them too; ones made from a name or class are closed when training ends.
        log_every: Log one line (step, losses, accuracies, ETA) through the
            ``grok_interp.training.loop`` logger at most every this many seconds (None:
            none). The CLI turns this on when its output is not a terminal.
        config: A complete :class:`RunConfig`. Options given beside it must agree with
            it (a conflicting one is an error, never silently ignored).
        gradient_transforms: Functions ``fn(params)`` that change the trainable
            parameters' ``.grad`` in place before every optimiser step (see
            :class:`grok_interp.training.RunState`).
        preset: A named setup (:data:`grok_interp.presets.PRESETS`): ``tl_demo`` (the
            TransformerLens Grokking demo, bit-identical initial weights), ``nanda``
            (Nanda et al. 2023) or ``default``. Options given beside it win.
        threads: CPU threads while training: ``"auto"`` (one per core other processes
            leave free, :func:`grok_interp.threads.auto_threads`; torch's own count when
            ``OMP_NUM_THREADS`` is set), a number, or None (torch's setting). With the
            fast forward on CPU the batch is cut into one part per core of the machine
            (:func:`grok_interp.threads.batch_parts`), ``threads`` parts computed at a
            time, so the history's bits do not depend on the count; otherwise they are
            torch's threads inside each operation, whose count changes float rounding.
        batch_parts: The parts the fast CPU step cuts the batch into (None: one per
            core of the machine, as above). ``1`` computes the batch whole: the fastest
            choice for a run that gets one core of a busier machine for all its life (a
            sweep's worker): cutting it for cores the run does not use costs 12-16 % of
            a step (``benchmarks/split_cost.py``). The history's bits depend on it (like
            on the core count), so a run resumed with another value continues within
            float rounding of where it would have been, not bit for bit.
        task: A :class:`~grok_interp.tasks.Task` to train on instead of ``p`` and
            ``op``, e.g. a group task (:func:`grok_interp.groups.group_task`); its
            ``p``, ``op`` and ``offset`` go into the config (a user's group table into
            the run directory's labels).
        **options: Any field of :class:`DataConfig` (``frac``, ``offset``, ``k``, ``t``,
            ``data_seed``), :class:`ModelConfig` (``n_layers``, ``d_model``, ``init``,
            ``embed_init``, ``seed``, ``backend``, ...) or :class:`TrainConfig` (``steps``,
            ``lr``, ``weight_decay``, ``loss``, ``eval_every``, ``stop_after_grok``, ...).

    Returns:
        A :class:`GrokRun` with the trained model and its history.

    Example:
        >>> run = train_hooked(p=23, steps=200, progress=False)
        >>> run.history.columns[:5].tolist()
        ['step', 'train_loss', 'test_loss', 'train_acc', 'test_acc']
    """
    if batch_parts is not None:
        check_int("batch_parts", batch_parts, low=1)
    if task is not None:
        if not isinstance(task, Task):
            raise bad_value("task", type(task).__name__, "must be a grok_interp.Task (e.g. grok_interp.groups.group_task('S4'))")
        mine = {"p": task.p, "op": task.op if callable(task.op) else task.op_name, "offset": task.offset}
        for key, value in (("p", p), ("op", op), ("offset", options.get("offset"))):
            if value is not None and value != mine[key]:
                raise bad_value(key, value, f"conflicts with task= (which has {key}={mine[key]!r})")
        p, op = task.p, (task.op if callable(task.op) else task.op_name)
        options["offset"] = task.offset
    custom_op = callable(op)
    given = {k: v for k, v in (("p", p), ("op", op), ("split", split)) if v is not None}
    if custom_op:
        given["op"] = "custom:" + getattr(op, "__name__", "f")
    given.update(options)
    if preset is not None:
        given = preset_options(preset, **given)
    if config is not None:
        if given:
            config.check_agrees(given)  # options beside a complete config may only repeat it
    elif resume and out is not None and store.is_run_dir(out):
        config = read_config(out).updated(**given)  # the saved run, changed only as asked
    else:
        config = RunConfig.from_kwargs(**given)
    forward, forward_name = select_forward(config.model, config.train.forward)
    trackers, made = trackers_for(log_to, config=config.to_dict())
    try:
        s = prepare_run(
            config, op=op if custom_op else None, mask=mask, out=out, resume=resume, callbacks=callbacks,
            record=record, forward=forward, fused_optimizer=True, trackers=trackers, task=task,
        )
    except BaseException:
        _close_all(made)
        raise
    try:
        n_threads = resolve_threads(threads) if s.device.type == "cpu" else None
        if s.device.type == "cpu" and n_threads is None:
            n_threads = torch.get_num_threads()
        # On CPU the fast step splits the batch into one part per core of the machine,
        # computed n_threads at a time with one torch thread each (FullBatchStep(parts=)):
        # its bits then do not depend on how busy the machine is. Anything else uses
        # torch's own threads inside each operation.
        parts = 1
        if s.device.type == "cpu" and forward_name == "fast":
            parts = machine_parts() if batch_parts is None else batch_parts
        with using_threads(1 if parts > 1 else n_threads):
            log.info("training p=%d op=%s with the %s forward on %s (%s threads%s)", s.task.p, s.task.op_name,
                     forward_name, s.device, n_threads or "default", f", batch in {parts} parts" if parts > 1 else "")
            state = s.run_state(gradient_transforms)
            try:
                train_loop([state], FullBatchStep(parts=parts, workers=n_threads), progress=progress,
                           log_every=log_every)
            except TrainingDiverged as exc:
                s.close()  # the checkpoint in flight lands first
                raise _diverged_in(exc, s.store) from None
        return s.result(state)
    finally:
        try:
            s.close()
        finally:
            _close_all(made)


def _close_all(trackers: Iterable[Any]) -> None:
    """Close every tracker, even when one of them fails (the first error is raised)."""
    error = None
    for t in trackers:
        try:
            t.close()
        except Exception as exc:  # noqa: BLE001 - the others are closed all the same
            error = error or exc
    if error is not None:
        raise error


def _diverged_in(exc: TrainingDiverged, rs: RunStore | None) -> TrainingDiverged:
    """``exc`` with where its run stands: the run directory's last finite checkpoint."""
    if rs is None:
        return exc
    last = max(rs.state_steps(), default=None)
    where = (f"the run in {rs.path} keeps its last finite checkpoint, step {last}, and resumes from there"
             if last is not None else f"nothing of the run in {rs.path} was saved")
    return TrainingDiverged(f"{exc}; {where} (the same settings diverge again: retrain with a lower lr)",
                            step=exc.step)


@dataclass(eq=False)
class PreparedRun:
    """Everything a training loop needs for one run, set up from its configuration.

    ``store`` is the run directory, locked for this run (None: in memory); the loop
    closes it when the run ends.
    """

    config: RunConfig
    task: Task
    split: Split
    model: nn.Module
    optimizer: torch.optim.Optimizer
    ctx: TrainContext
    callbacks: list[Callback]
    store: RunStore | None
    out_path: Path | None
    device: torch.device
    start: int
    history: list[dict[str, Any]]
    train_s: float = 0.0  # seconds trained before this sitting (a resumed run's state)
    #: Where the checkpoints go (memory, or the run directory through a background
    #: writer) and who finishes and closes the run: the shared lifecycle.
    checkpoints: lifecycle.Checkpoints = field(init=False)

    def __post_init__(self) -> None:
        self.checkpoints = lifecycle.Checkpoints(self.store, weights_of=weights)

    @property
    def memory(self) -> dict[int, dict[str, torch.Tensor]]:
        """The checkpoints of a run without a directory, ``{step: canonical weights}``."""
        return self.checkpoints.memory

    def run_state(self, gradient_transforms: Iterable[GradientTransform] = ()) -> RunState:
        """The run as the training loop drives it; checkpoints go to the run directory
        (or stay in memory without one). The configuration's own gradient transforms
        (Grokfast, perpendicular gradient: :func:`gradient_transforms_for`) apply
        first, then ``gradient_transforms``."""
        return RunState(
            model=self.model, optimizer=self.optimizer, schedule=Schedule.of(self.config.train),
            history=self.history, step=self.start, callbacks=self.callbacks, context=self.ctx,
            on_checkpoint=self.checkpoints.save, train_s=self.train_s,
            gradient_transforms=[*gradient_transforms_for(self.config.train, self.optimizer), *gradient_transforms],
        )

    def result(self, state: RunState) -> GrokRun:
        """The trained run; a run directory is marked finished (after every checkpoint
        write has landed)."""
        self.checkpoints.finish(state.history[-1]["step"], state.train_s)
        return GrokRun(
            model=self.model, task=self.task, split=self.split, config=self.config,
            history=pd.DataFrame(state.history), path=self.out_path, checkpoints=self.memory,
        )

    def close(self) -> None:
        """Finish the checkpoint write in flight, then release the run directory's lock
        (nothing to do for an in-memory run)."""
        self.checkpoints.close()


@dataclass(eq=False)
class BuiltRun:
    """A transformer run built from its configuration (task, split, model, optimiser),
    before any file is touched; :func:`grok_interp.training.lifecycle.start_run` then
    opens its run directory, restoring it (:meth:`restore`) or writing it anew
    (:meth:`write_static`), and :meth:`ready` makes it a :class:`PreparedRun`."""

    config: RunConfig
    task: Task
    split: Split
    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device

    def restore(self, rs: RunStore, record: Any) -> tuple[int, list[dict[str, Any]], float, Any]:
        """Resume the run in ``rs`` (see :func:`_restore`); ``record`` None keeps its measures."""
        return _restore(rs, self.config, self.task, self.split, self.model, self.optimizer, record)

    def write_static(self, rs: RunStore, record: Any) -> None:
        write_static(rs, self.config, self.task, self.split, _record_names(record))

    def ready(self, started: lifecycle.Started, *, forward: Callable[..., torch.Tensor],
              callbacks: Iterable[Callback] = (), trackers: Iterable[Callback] = ()) -> PreparedRun:
        """The run as the loop takes it, its directory ``started``: data on the device,
        the callbacks (``started.extra``'s measures recorded, then the trackers)."""
        task, split, device, record = self.task, self.split, self.device, started.extra
        ctx = TrainContext(
            task=task,
            split=split,
            train_tokens=task.tokens(split.train_pairs).to(device),
            train_labels=task.answers(split.train_pairs).to(device),
            test_tokens=task.tokens(split.test_pairs).to(device),
            test_labels=task.answers(split.test_pairs).to(device),
            forward=forward,
            loss=self.config.train.loss,
        )
        all_callbacks = list(callbacks)
        if record is not None:
            from .measures import recorder  # measures are optional; imported only when asked

            all_callbacks.append(recorder(record, task=task))
        all_callbacks.extend(trackers)  # last: a tracker logs every column of the row
        return PreparedRun(self.config, task, split, self.model, self.optimizer, ctx, all_callbacks, started.store,
                           started.out, device, started.start, started.history, train_s=started.train_s)


def build_run(
    config: RunConfig, *, op: Callable[[Any, Any], Any] | None = None, mask: Any = None, task: Task | None = None,
    fused_optimizer: bool = False,
) -> BuiltRun:
    """Build one run's task, split, model and optimiser (nothing on disk). The size of
    the run is checked before anything is allocated."""
    device = resolve_device(config.train.device)
    check_fits(config, device)
    d = config.data
    if task is None:
        task = Task(p=d.p, op=op, offset=d.offset) if op is not None else build_task(d.p, d.op, d.offset)
    split = Split.from_config(task, d, mask)
    model = build_model(config.model, task, device=device)
    optimizer = make_optimizer(model, config.train, fused=fused_optimizer)
    return BuiltRun(config, task, split, model, optimizer, device)


def prepare_run(
    config: RunConfig,
    *,
    op: Callable[[Any, Any], Any] | None = None,
    mask: Any = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    callbacks: Iterable[Callback] = (),
    record: Iterable[Any] | None = None,
    forward: Callable[..., torch.Tensor],
    fused_optimizer: bool = False,
    trackers: Iterable[Callback] = (),
    task: Task | None = None,
) -> PreparedRun:
    """Build one run's task, split, model, optimiser, data and run directory.

    :func:`build_run`, then the shared lifecycle
    (:func:`grok_interp.training.lifecycle.start_run`), then :meth:`BuiltRun.ready`: the
    steps :func:`grok_interp.many_runs.train_many` takes too, so a run is set up the same
    way whichever trains it. The size of the run is checked before anything is
    allocated. With ``resume`` and an existing run directory, the model and optimiser
    are loaded from its newest consistent resume state; no file of the run is written
    before that state has been validated.
    """
    if record is not None and not isinstance(record, str):
        record = list(record)
    built = build_run(config, op=op, mask=mask, task=task, fused_optimizer=fused_optimizer)
    started = lifecycle.start_run(built, out, resume, extra=record)
    return built.ready(started, forward=forward, callbacks=callbacks, trackers=trackers)


def save_checkpoint(
    out: RunStore | None, memory: dict[int, dict[str, torch.Tensor]], step: int, model: nn.Module,
    optimizer: torch.optim.Optimizer, history: list[dict[str, Any]], train_s: float | None = None,
) -> None:
    """Keep the weights of ``step``: in ``memory`` without a run directory, else on disk
    (:meth:`grok_interp.store.RunStore.write_progress`: checkpoint, resume state,
    history, latest weights, unfinished status; each atomic)."""
    w = _weights_copy(model)
    if out is None:
        memory[step] = w
        return
    out.write_progress(step, w, optimizer.state_dict(), history, train_s=train_s)


def _weights_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """A checkpoint's weights: the canonical weights, copied to the CPU."""
    return {k: v.detach().to("cpu").clone() for k, v in weights(model).items()}


#: The fields of ``train`` that a resume may change (the rest must equal the saved run's).
_RESUMABLE_CHANGES = {"steps", "stop_after_grok", "stop_on_plateau", "plateau_delta", "device"}
_RESUME_CHANGEABLE = frozenset(f"train.{k}" for k in _RESUMABLE_CHANGES)


def _restore(
    rs: RunStore, config: RunConfig, task: Task, split: Split, model: nn.Module, optimizer: torch.optim.Optimizer,
    record: Any = None,
) -> tuple[int, list[dict[str, Any]], float, Any]:
    """Validate the run in ``rs`` against ``config`` and load its newest consistent
    resume state into ``model`` and ``optimizer``; only then record a changed schedule
    (or ``record``: None keeps the run's own).
    Returns the state's step, history, seconds trained (0 for a state without them)
    and the measures to record."""
    saved = read_config(rs.path)
    kept = saved_record(rs.path)
    if record is None:
        record = kept
    diffs = lifecycle.config_diffs(saved.to_dict(), config.to_dict(), _RESUME_CHANGEABLE)
    if diffs:
        raise bad_value("resume", True, f"the run in {rs.path} has another configuration: " + "; ".join(diffs))
    if lifecycle.nothing_trained(rs):
        log.info("nothing trained in %s yet: starting from step 0", rs.path)  # killed before its first checkpoint
        write_static(rs, config, task, split, _record_names(record))
        return 0, [], 0.0, record
    _, saved_split = read_task_split(rs.path, saved)
    if not torch.equal(saved_split.train_mask, split.train_mask):
        raise RunDirectoryError(f"run file {rs.file(DATA)}: train mask differs from the rebuilt split")
    raw = rs.read_meta()
    if raw.get("backend") != _resolved_backend(config.model):
        raise bad_value(
            "backend", _resolved_backend(config.model),
            f"the run in {rs.path} was trained with backend {raw.get('backend')!r}; its optimiser state only resumes there",
        )
    renamed_columns = store.renamed_columns(store.check_format(raw, rs.file(CONFIG)))

    def load(state: store.ResumeState) -> None:
        renamed = sorted(set(renamed_columns) & set(state.history.columns))
        if renamed:
            raise bad_value(
                "resume", True,
                f"the run in {rs.path} recorded {renamed} under an earlier grok_interp's definitions; resuming would "
                "mix two definitions in one column: load it with load_run (the columns are renamed there) or train anew",
            )
        try:
            load_weights(model, state.weights)
            optimizer.load_state_dict(state.optimizer_state)
        except (GrokInterpError, ValueError, KeyError, RuntimeError) as exc:
            raise RunDirectoryError(f"resume state {state.path} does not fit the configured model: {exc}") from exc

    state = lifecycle.restore_newest(rs, load, eval_every=config.train.eval_every, eval_sparse=config.train.eval_sparse)
    if state is None:
        log.info("no resume state in %s yet: starting from step 0", rs.path)
        write_static(rs, config, task, split, _record_names(record))
        return 0, [], 0.0, record
    lifecycle.check_not_behind("steps", config.train.steps, state, rs.path)
    changes = {k: getattr(config.train, k) for k in sorted(_RESUMABLE_CHANGES - {"device"})
               if getattr(config.train, k) != getattr(saved.train, k)}
    names = _record_names(record)
    if changes or names != kept or "extending" in rs.read_status():  # (the last: an extension killed before
        # config.json was rewritten; a reader applies it, and config.json is now brought up to date)
        # The state is valid: record the extension. status.json first, in one atomic
        # write that marks the run unfinished and says what changes (read_config applies
        # it), then config.json: a kill between the two leaves a run whose config and
        # status agree (status finished at the old step with config.json at the new
        # steps made a sweep skip the run as done).
        ext = {**({"train": changes} if changes else {}), **({"record": names} if names != kept else {})}
        lifecycle.record_extension(rs, state, ext, lambda: write_static(rs, config, task, split, names))
    log.info("resuming %s from step %d", rs.path, state.step)
    return state.step, state.history.to_dict("records"), state.train_s, record


def load_grok_run(path: str | os.PathLike, device: str = "auto") -> GrokRun:
    """Load a transformer run directory (the ``transformer`` loader of the store's registry).

    The directory is checked before any model is allocated: ``config.json`` against its
    schema, ``data.safetensors`` and the weight shapes against the config, the size
    against the machine's memory. ``device`` as in training: ``auto`` (CUDA when
    present), ``cpu`` or ``cuda``.
    """
    resolve_device(device)  # a device this machine lacks is the caller's error, not config.json's
    path = Path(path)
    rs = RunStore(path)
    if not path.is_dir():
        raise RunDirectoryError(f"run directory {path} does not exist")
    config = read_config(path)
    _check_data(path, config)
    status = rs.read_status()
    latest = max(rs.state_steps(), default=None)
    source = rs.state_path(latest) if latest is not None and not status.get("finished", False) else path
    if (source / MODEL).exists():
        _check_weight_shapes(source / MODEL, config)
    try:
        check_fits(config, resolve_device(device), training=False)
    except RunDirectoryError:
        raise
    except GrokInterpError as exc:  # the run was trained, so it is config.json that is wrong
        raise RunDirectoryError(f"run file {rs.file(CONFIG)}: {exc}") from exc
    task, split = read_task_split(path, config)
    w, history, source = rs.read_latest(eval_every=config.train.eval_every, eval_sparse=config.train.eval_sparse)
    history = store.migrate_history(history, store.check_format(rs.read_meta(), rs.file(CONFIG)))
    model = build_model(config.model, task, device=resolve_device(device))
    try:
        load_weights(model, w)
    except ValueError as exc:
        raise RunDirectoryError(f"run file {source / MODEL} does not fit the config: {exc}") from exc
    return GrokRun(model=model, task=task, split=split, config=config, history=history, path=path)


store.register_loader("transformer", load_grok_run)
lifecycle.register_run_kind("transformer", lifecycle.RunKind(
    name="transformer", config_class=RunConfig, resume_changeable=_RESUME_CHANGEABLE, build_model=build_model,
    build_optimizer=make_optimizer, step_function=FullBatchStep, write_static=write_static, weights_of=weights,
    result=GrokRun, train=train_hooked,
))


def load_run(path: str | os.PathLike, device: str = "auto") -> Any:
    """Load a run directory written by :func:`train_hooked`, :meth:`GrokRun.save` or
    another trainer: the loader is chosen by the ``kind`` in its config.json (a ResNet
    run, ``"kind": "resnet"``, loads as a :class:`grok_interp.vision.ResNetRun`).

    Raises:
        RunDirectoryError: (a ``ValueError``) naming the missing, corrupt, inconsistent
            or hostile file.
        GrokInterpError: ``device="cuda"`` on a machine without a GPU.

    ``device`` defaults to ``auto``, as training does: CUDA when present, else CPU.
    """
    return store.load(path, device=device)
