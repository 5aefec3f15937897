"""The life of a run directory, written once for every kind of run.

Every trainer (the hooked transformer of :func:`grok_interp.train_hooked`, the stacked
runs of :func:`grok_interp.train_many`, the ResNet of :func:`grok_interp.vision.train_resnet`)
goes through the same steps around :func:`grok_interp.training.train_loop`:

1. **open and lock** the run directory (:func:`open_run`, :func:`opened`: new, empty,
   or a run to resume, never someone else's files; :func:`start_run` opens it for a
   built run and restores it or writes it anew);
2. on resume, **read** the saved configuration (:func:`read_saved_config`) and
   **compare** the given one with it (:func:`config_diffs`: only the fields the kind
   lists as changeable may differ),
   **restore** the newest consistent resume state (:func:`restore_newest`), refuse a
   schedule shorter than what was trained (:func:`check_not_behind`) and **record an
   extension** (:func:`record_extension`: ``status.json`` first, then ``config.json``);
3. **checkpoint** while training (:class:`Checkpoints`: in memory without a
   directory, else written by a :class:`CheckpointWriter` in a background thread);
4. **mark finished** (:meth:`Checkpoints.finish`) and **close** (:meth:`Checkpoints.close`:
   the write in flight lands, then the lock goes).

What differs between kinds (their config class, how a model, an optimiser, a step
function and the static data are built, which fields a resume may change, what the
result is) is a :class:`RunKind`, registered by name (:func:`register_run_kind`,
:func:`run_kinds`); the kinds this library defines are registered by the modules that
define them (``transformer`` and ``many`` by :mod:`grok_interp.runs` and
:mod:`grok_interp.many_runs`, ``resnet`` by :mod:`grok_interp.vision.train`).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, Protocol, TypeVar

import torch
from torch import nn

from .. import store
from .._validate import bad_value
from ..errors import GrokInterpError, RunDirectoryError
from ..store import ResumeState, RunStore

__all__ = [
    "RunKind", "register_run_kind", "run_kinds", "run_kind", "open_run", "opened", "Restorable", "Started", "start_run", "read_saved_config", "config_diffs", "nothing_trained",
    "restore_newest", "check_not_behind", "record_extension", "CheckpointWriter", "Checkpoints", "copy_tensors",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
WeightsOf = Callable[[nn.Module], Mapping[str, torch.Tensor]]


# --- the kinds of run ----------------------------------------------------------------------
@dataclass(frozen=True)
class RunKind:
    """What one kind of run brings to the shared lifecycle.

    Attributes:
        name: The kind's name (``"kind"`` in a run directory's ``config.json``, where the
            kind writes directories of its own).
        config_class: Its configuration class (its sections are registered with the
            store, :func:`grok_interp.store.register_config_section`).
        resume_changeable: The configuration fields a resume may change
            (``section.field`` for a sectioned config, else ``field``); any other
            difference from the saved run is refused (:func:`config_diffs`).
        build_model: ``build_model(config, ...) -> nn.Module``.
        build_optimizer: ``build_optimizer(model, config) -> torch.optim.Optimizer``.
        step_function: The class (or factory) of its step for
            :func:`grok_interp.training.train_loop` (``forward``, ``evaluate``,
            ``update``, ``adaptive``).
        write_static: ``write_static(store, config, ...)``: ``config.json`` and the data
            the config cannot rebuild.
        weights_of: The weights a checkpoint holds, from the model.
        result: The run object it returns (its class).
        train: The user-facing function that trains it.
    """

    name: str
    config_class: type
    resume_changeable: frozenset[str]
    build_model: Callable[..., nn.Module]
    build_optimizer: Callable[..., torch.optim.Optimizer]
    step_function: Callable[..., Any]
    write_static: Callable[..., None]
    weights_of: WeightsOf
    result: type
    train: Callable[..., Any]


_KINDS: dict[str, RunKind] = {}


def register_run_kind(name: str, kind: RunKind) -> None:
    """Register ``kind`` under ``name`` (replacing one of the same name)."""
    if not isinstance(name, str) or not name:
        raise bad_value("name", name, "must be a non-empty string")
    if kind.name != name:
        raise bad_value("name", name, f"differs from the kind's own name {kind.name!r}")
    _KINDS[name] = kind


def run_kinds() -> dict[str, RunKind]:
    """Every registered kind of run, by name."""
    return dict(_KINDS)


def run_kind(name: str) -> RunKind:
    """The registered kind ``name``."""
    if name not in _KINDS:
        raise bad_value("kind", name, f"is not a registered kind of run; known: {sorted(_KINDS)}")
    return _KINDS[name]


# --- open, compare, restore ------------------------------------------------------------------
def open_run(out: str | os.PathLike | None, resume: bool) -> tuple[RunStore | None, bool]:
    """Open the run directory ``out`` for writing (None: an in-memory run): checked,
    locked, and whether it holds a run to resume (:func:`grok_interp.store.open_out`)."""
    if out is None:
        return None, False
    return store.open_out(Path(out), resume)


@contextmanager
def opened(out: str | os.PathLike | None, resume: bool) -> Iterator[tuple[RunStore | None, bool]]:
    """:func:`open_run` for the setting-up of a run: an error inside the block gives the
    directory up (:meth:`~grok_interp.store.RunStore.abandon`: the lock goes, and a
    directory made for this run and still empty goes too); on success the caller owns
    the locked store (a :class:`Checkpoints` closes it)."""
    rs, resuming = open_run(out, resume)
    try:
        yield rs, resuming
    except BaseException:
        if rs is not None:
            rs.abandon()
        raise


class Restorable(Protocol):
    """A run built from its configuration, ready to meet its run directory: it resumes
    from one (``restore(store, extra) -> (step, history, seconds trained, extra)``) or
    writes a new one's ``config.json`` and static data (``write_static(store, extra)``).
    ``extra`` is what a kind carries through (the transformer: the measures to record,
    which a resume may take from the saved run)."""

    def restore(self, rs: RunStore, extra: Any) -> tuple[int, list[dict[str, Any]], float, Any]: ...

    def write_static(self, rs: RunStore, extra: Any) -> None: ...


@dataclass
class Started:
    """Where a run starts: its locked run directory (None: in memory), the step, history
    and seconds trained it resumes from (0, none, 0 for a new run), and the kind's
    ``extra``."""

    store: RunStore | None
    out: Path | None
    start: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_s: float = 0.0
    extra: Any = None


def start_run(run: Restorable, out: str | os.PathLike | None, resume: bool, extra: Any = None) -> Started:
    """Open ``out`` for ``run`` (:func:`opened`) and restore the run there or write a new
    one; on an error the directory is given up (a directory made for it goes)."""
    path = Path(out) if out is not None else None
    with opened(path, resume) as (rs, resuming):
        if resuming:
            assert rs is not None
            start, history, train_s, extra = run.restore(rs, extra)
            return Started(rs, path, start, history, train_s, extra)
        if rs is not None:
            run.write_static(rs, extra)
    return Started(rs, path, extra=extra)


def read_saved_config(
    path: str | os.PathLike, kind: str, sections: Mapping[str, type], build: Callable[[dict[str, dict[str, Any]]], T],
    *, required: Collection[str] = (), optional: Collection[str] = (), default_kind: str | None = None,
) -> tuple[T, dict[str, Any]]:
    """The configuration a run directory of ``kind`` holds, checked, and its ``config.json``.

    ``config.json`` is read with the extension an unfinished ``status.json`` records
    applied (:meth:`~grok_interp.store.RunStore.reconciled_meta`); it must be of ``kind``
    (``default_kind`` when it names none), of a format this library reads, hold each of
    ``sections`` and ``required`` and nothing but them, ``optional``, ``kind`` and
    ``grok_interp``. Each section is checked against its config class
    (:func:`grok_interp.store.check_fields`: types, no unknown key, keys of later
    formats filled from the class's ``ADDED_KEYS``), then ``build({section: kwargs})``
    makes the config (whose own checks run).

    Raises:
        RunDirectoryError: naming config.json and the key at fault.
    """
    rs = RunStore(path)
    file = rs.file(store.CONFIG)
    meta = rs.reconciled_meta()
    found = meta.get("kind", default_kind)
    if found != kind:
        raise RunDirectoryError(f"run file {file}: kind {found!r} is not a {kind} run")
    version = store.check_format(meta, file)
    unknown = sorted(set(meta) - {"grok_interp", "kind", *sections, *required, *optional})
    if unknown:
        raise RunDirectoryError(f"run file {file}: unknown keys {unknown}")
    missing = sorted({*sections, *required} - set(meta))
    if missing:
        raise RunDirectoryError(f"run file {file}: keys {missing} are missing")
    fields = {s: store.check_fields(cls, meta[s], file=file, section=s, version=version) for s, cls in sections.items()}
    try:
        return build(fields), meta
    except (GrokInterpError, TypeError) as exc:
        raise RunDirectoryError(f"run file {file} is invalid: {exc}") from exc


def config_diffs(saved: Mapping[str, Any], given: Mapping[str, Any], changeable: Collection[str],
                 prefix: str = "") -> list[str]:
    """The differences between a saved configuration and the given one that a resume
    may not make, as ``"key: saved X, given Y"`` (``section.key`` inside sections).

    Both are ``to_dict()`` forms; a key whose values are both dicts is compared inside
    (a transformer's ``data``/``model``/``train``). ``changeable`` lists the keys that
    may differ, with their section (``train.steps``) or without (``epochs``)."""
    out: list[str] = []
    for k in saved:
        a, b = saved[k], given.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diffs(a, b, changeable, prefix=f"{prefix}{k}.")
        elif a != b and f"{prefix}{k}" not in changeable:
            out.append(f"{prefix}{k}: saved {a!r}, given {b!r}")
    return out


def nothing_trained(rs: RunStore) -> bool:
    """True for a run directory whose writer was killed before its first checkpoint
    (no resume state, no status): a resume starts it again from step 0."""
    return not rs.state_steps() and not rs.file(store.STATUS).exists()


def restore_newest(rs: RunStore, load: Callable[[ResumeState], None], eval_every: int | None = None,
                   eval_sparse: int = 1) -> ResumeState | None:
    """The newest consistent resume state of ``rs`` (None: none yet), given to ``load``
    (which puts its weights and optimiser state into the run's model and optimiser)."""
    state = rs.latest_valid_state(eval_every=eval_every, eval_sparse=eval_sparse)
    if state is not None:
        load(state)
    return state


def check_not_behind(name: str, given: int, state: ResumeState, path: Path, unit: str = "step") -> None:
    """Refuse a schedule (``steps``, ``epochs``) that ends before the state resumed."""
    if given < state.step:
        raise bad_value(name, given, f"the run in {path} has trained to {unit} {state.step} "
                        f"already: give {name} >= {state.step}, or train a new run")


def record_extension(rs: RunStore, state: ResumeState | None, extending: Mapping[str, Any],
                     rewrite_config: Callable[[], None]) -> None:
    """Record a resume that changes the run's schedule (or recorded measures).

    ``status.json`` first, in one atomic write that marks the run unfinished and says
    what changes (readers apply it, :meth:`grok_interp.store.RunStore.reconciled_meta`),
    then ``config.json`` (``rewrite_config``): a writer killed between the two leaves a
    run whose config and status agree. A state-less run has no status to write."""
    if state is not None:
        rs.write_status(state.step, finished=False, train_s=state.train_s, extending=extending)
    rewrite_config()


# --- checkpoints ----------------------------------------------------------------------------
def copy_tensors(obj: Any) -> Any:
    """``obj`` with every tensor cloned (an optimiser state dict keeps the live ones)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: copy_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(copy_tensors(v) for v in obj)
    return obj


def _cpu_copy(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in weights.items()}


class CheckpointWriter:
    """Writes a run's checkpoints in a background thread, one at a time, in order.

    A checkpoint's files (weights, resume state, history, status: about ten atomic
    writes, each flushed with ``fsync``) are I/O the training thread need not wait for:
    the loop hands over copies of the tensors and history and goes on training while
    they are written. Crash safety is unchanged: each write is still atomic and a resume
    state complete or absent; an interruption loses at most the checkpoint in flight,
    and resuming takes the newest consistent state. A write's error is raised in the
    training thread at the next write or at the end. Other writes of the run's files
    while it trains (a history row) go through :meth:`submit`, so they land in order.
    """

    def __init__(self, store: RunStore, weights_of: WeightsOf | None = None) -> None:
        self.store = store
        self.weights_of = weights_of if weights_of is not None else _canonical_weights
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="grok-interp-checkpoint")
        self._pending: Future | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the writer's thread after the write in flight (whose
        error surfaces here). ``args`` must not change afterwards: hand over copies."""
        self.wait()
        self._pending = self._pool.submit(fn, *args)

    def save(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
             history: list[dict[str, Any]], train_s: float | None = None) -> None:
        """Copy what the checkpoint of ``step`` holds, then write it in the background."""
        self.wait()  # one write at a time: in order, and its error surfaces here
        w = _cpu_copy(self.weights_of(model))
        opt_state = copy_tensors(optimizer.state_dict())
        rows = [dict(r) for r in history]
        self.submit(self.store.write_progress, step, w, opt_state, rows, train_s)

    def wait(self) -> None:
        """Block until the write in flight has landed (re-raising its error)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def _canonical_weights(model: nn.Module) -> Mapping[str, torch.Tensor]:
    from ..models import weights  # noqa: PLC0415 - the transformer's layout, the default

    return weights(model)


@dataclass(eq=False)
class Checkpoints:
    """Where a run's checkpoints go: ``memory`` (``{step: weights}``) for a run without a
    directory, else ``store`` through a background :class:`CheckpointWriter` (made by
    construction: every kind of run gets it). The lock of ``store`` is the run's; it
    is released by :meth:`close`."""

    store: RunStore | None
    weights_of: WeightsOf = field(default_factory=lambda: _canonical_weights)
    memory: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    writer: CheckpointWriter | None = None

    def __post_init__(self) -> None:
        if self.store is not None and self.writer is None:
            self.writer = CheckpointWriter(self.store, self.weights_of)

    def save(self, state: Any) -> None:
        """The loop's ``on_checkpoint``: keep the weights of ``state.step`` (a
        :class:`~grok_interp.training.RunState`)."""
        if self.writer is None:
            self.memory[state.step] = _cpu_copy(self.weights_of(state.model))
        else:
            self.writer.save(state.step, state.model, state.optimizer, state.history, train_s=state.train_s)

    def write_history(self, history: list[dict[str, Any]]) -> None:
        """Write ``history.csv`` now (after the checkpoint in flight; nothing in memory)."""
        if self.writer is not None:
            self.writer.submit(self.writer.store.write_history, [dict(r) for r in history])

    def finish(self, step: int, train_s: float | None, history: list[dict[str, Any]] | None = None) -> None:
        """Mark the run finished at ``step`` once every write has landed (``history``
        given: written first)."""
        if self.writer is None or self.store is None:
            return
        self.writer.wait()
        if history is not None:
            self.store.write_history(history)
        self.store.write_status(step, finished=True, train_s=train_s)

    def close(self) -> None:
        """Let the write in flight land, then release the run directory's lock."""
        try:
            if self.writer is not None:
                self.writer.close()
        finally:
            if self.store is not None:
                self.store.close()
