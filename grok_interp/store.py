"""The run directory: file names, atomic IO, the writer's lock, validation, resume states.

This module is the only code that touches a run directory's files; every trainer (the
hooked loop, batched training, the ResNet branch), sweeps and the dataset cache go
through it. A run directory holds plain, safe files only::

    config.json                 the configuration, the format version, library versions
    data.safetensors            the data that cannot be rebuilt from the config (labels, masks)
    model.safetensors           the latest weights
    history.csv                 one row per evaluation step (strictly increasing ``step``)
    status.json                 {"step": ..., "finished": ..., "train_s": ...}
    checkpoints/step_0000100.safetensors   weights at each checkpoint step
    state-0000100/              a resume state: model.safetensors, optimizer.pt,
                                history.csv, status.json
    .lock                       the writer's lock (holds the writer's pid)

Guarantees:

* **Atomic.** Every file is written to a temporary name in its directory (created with
  the process umask), flushed to disk and renamed into place; a resume state is a
  directory filled under a temporary name and renamed once complete. A killed writer
  leaves old files or new files, never half of one; its temporary files are removed
  by the next writer.
* **Locked.** A writer holds an exclusive OS lock (``flock``) on ``.lock`` for its
  life; a second writer gets one error naming the holder's pid. The OS drops the lock
  when the holder dies, however it dies.
* **Validated.** Reads name the file that fails. ``config.json`` is checked against
  the config dataclasses (types, required keys, no unknown keys); histories must have
  strictly increasing integer steps; a resume state must agree with itself (directory
  name, status, history, weights) and with ``checkpoints/``.
* **No pickles.** Tensors are safetensors; the optimiser state is read with
  ``torch.load(weights_only=True)``, and a file holding anything else is reported as
  hostile, never executed.

A run directory is copied as a unit (:func:`copy_run_dir`: complete or absent, the
source locked meanwhile); the sweeps' run cache copies finished runs this way.

A run directory's kind (``"kind"`` in ``config.json``; absent means ``transformer``)
selects its loader from a small registry (:func:`register_loader`, :func:`load`), so
the store needs no knowledge of the modules that define the runs.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import fcntl
import hashlib
import importlib
import io
import json
import logging
import os
import pickle
import re
import shutil
import types
import typing
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from ._validate import bad_value
from .errors import RunDirectoryError

__all__ = [
    "CONFIG", "DATA", "MODEL", "HISTORY", "STATUS", "CHECKPOINTS", "OPTIMIZER", "LOCK", "FORMAT_VERSION",
    "ADDED_KEYS", "Migrating", "added_keys", "register_config_section", "config_sections", "RENAMED_COLUMNS", "renamed_columns", "migrate_history", "RunStore", "ResumeState", "atomic_write", "write_json", "write_csv", "write_tensors",
    "read_json", "read_tensors", "tensor_shapes", "read_history", "read_torch", "is_run_dir", "open_out",
    "check_fields", "register_loader", "run_kind", "load", "copy_run_dir",
]

log = logging.getLogger(__name__)

# --- file names: defined here once ------------------------------------------------------
CONFIG = "config.json"
DATA = "data.safetensors"
MODEL = "model.safetensors"
HISTORY = "history.csv"
STATUS = "status.json"
CHECKPOINTS = "checkpoints"
OPTIMIZER = "optimizer.pt"
LOCK = ".lock"
_STATE = re.compile(r"state-(\d+)")
_CHECKPOINT = re.compile(r"step_(\d+)\.safetensors")

#: Version of the run-directory format this library writes (``config.json`` ->
#: ``grok_interp.format``): the one place the number is written. Bump it when a config
#: key is added, and record the key with its config class (its ``ADDED_KEYS``, below);
#: or when a history column's name changes meaning (:data:`RENAMED_COLUMNS`).
FORMAT_VERSION = 6


# --- config migrations: each config class carries its own ----------------------------
class Migrating(typing.Protocol):
    """A config dataclass that records its own migrations: ``ADDED_KEYS`` maps a format
    version to the fields added in it, with the value that files of older versions
    meant by leaving them out (``{version: {field: default}}``). A field missing from a
    file of its own version or later is an error, never silently today's default."""

    ADDED_KEYS: typing.ClassVar[Mapping[int, Mapping[str, Any]]]


#: Sections of ``config.json`` (``data``, ``model``, ``train``, a ResNet run's ``config``)
#: and the config class each holds, as the modules defining them registered them
#: (:func:`register_config_section`); the store imports none of them.
_CONFIG_SECTIONS: dict[str, type] = {}


def added_keys(cls: type) -> Mapping[int, Mapping[str, Any]]:
    """The migrations config class ``cls`` carries (``{}`` for a class that records none)."""
    return getattr(cls, "ADDED_KEYS", {})


def register_config_section(section: str, cls: type) -> None:
    """Register ``cls`` as the config class of ``config.json``'s section ``section``.

    Its migrations (``cls.ADDED_KEYS``) must name its own fields and versions up to
    :data:`FORMAT_VERSION` (a key added for a format not yet written is an error here,
    at import); :func:`check_fields` reads them whenever a file lacks a key. The
    registry is what :data:`ADDED_KEYS` and ``tests/test_config_formats.py`` see.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    for v, keys in added_keys(cls).items():
        if isinstance(v, bool) or not isinstance(v, int) or not 1 < v <= FORMAT_VERSION:
            raise bad_value(f"{cls.__name__}.ADDED_KEYS", v,
                            f"is not a format of 2..{FORMAT_VERSION} (bump store.FORMAT_VERSION first)")
        unknown = sorted(set(keys) - names)
        if unknown:
            raise bad_value(f"{cls.__name__}.ADDED_KEYS[{v}]", unknown, "are not its fields")
    _CONFIG_SECTIONS[section] = cls


def config_sections() -> dict[str, type]:
    """The registered sections of ``config.json`` and their config classes."""
    return dict(_CONFIG_SECTIONS)


class _AddedKeysView(Mapping[int, Mapping[str, Any]]):
    """Every registered config class's migrations as one read-only table,
    ``{version: {"section.key": default}}`` (the layout this module kept before the
    classes carried them)."""

    def _table(self) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for section, cls in _CONFIG_SECTIONS.items():
            for v, keys in added_keys(cls).items():
                out.setdefault(v, {}).update({f"{section}.{k}": d for k, d in keys.items()})
        return {v: out[v] for v in sorted(out)}

    def __getitem__(self, version: int) -> Mapping[str, Any]:
        return types.MappingProxyType(self._table()[version])

    def __iter__(self) -> typing.Iterator[int]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return f"ADDED_KEYS({self._table()!r})"


#: Read-only view of the keys added in each format version, ``{version: {"section.key":
#: default}}``, gathered from the registered config classes (kept for code written
#: against the table this module used to hold; the classes' ``ADDED_KEYS`` are the truth).
ADDED_KEYS: Mapping[int, Mapping[str, Any]] = _AddedKeysView()

#: History columns whose name took another meaning in a format version, with the name
#: their values carry now: ``{version: {old name: new name}}``. A history of an older
#: format is renamed on load (:func:`migrate_history`), never reinterpreted.
RENAMED_COLUMNS: dict[int, dict[str, str]] = {
    5: {  # restricted/excluded loss became Nanda et al.'s per-class projection (0.2)
        "restricted_loss": "restricted_loss_difference",
        "excluded_loss": "excluded_loss_difference",
        "restricted_loss_neurons": "restricted_loss_neuron_projection",
    },
}


def renamed_columns(version: int) -> dict[str, str]:
    """Every rename a history of format ``version`` needs, oldest first (chained)."""
    out: dict[str, str] = {}
    for v, renames in sorted(RENAMED_COLUMNS.items()):
        if v > version:
            for old, new in renames.items():
                out = {k: (new if n == old else n) for k, n in out.items()}
                out.setdefault(old, new)
    return out


def migrate_history(history: pd.DataFrame, version: int) -> pd.DataFrame:
    """``history`` of a run of format ``version`` with its columns under today's names."""
    renames = {k: v for k, v in renamed_columns(version).items() if k in history.columns}
    return history.rename(columns=renames) if renames else history


# --- atomic writes ---------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - a platform without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _tmp_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``path`` atomically.

    The temporary file is created in the same directory with the process umask (so the
    result gets the usual permissions), flushed with ``fsync`` and renamed onto
    ``path``; on any failure (a full disk included) it is removed and ``path`` is
    untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "xb") as fh:
            if isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                data(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]] | pd.DataFrame) -> None:
    """Write rows (or a DataFrame) as CSV without the index, atomically."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    atomic_write(path, df.to_csv(index=False).encode())


def write_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None) -> None:
    """Write tensors as safetensors, atomically (on CPU, contiguous; cast to ``dtype`` if given)."""
    cpu = {
        k: (v.detach().to("cpu") if dtype is None else v.detach().to("cpu", dtype)).contiguous()
        for k, v in tensors.items()
    }
    atomic_write(path, save_safetensors_bytes(cpu))


def _write_torch(path: Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


# --- reads that name the file ----------------------------------------------------------
def _read(path: Path, reader: Callable[[Path], Any]) -> Any:
    """Read one run file, turning any failure into an error that names the file."""
    path = Path(path)
    if not path.exists():
        raise RunDirectoryError(f"run directory {path.parent}: {path.name} is missing")
    try:
        return reader(path)
    except RunDirectoryError:
        raise
    except pickle.UnpicklingError as exc:
        raise RunDirectoryError(
            f"run file {path} holds pickled objects that a weights-only load refuses (a hostile or foreign file): {exc}"
        ) from exc
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR):
            raise RunDirectoryError(f"run file {path} cannot be read: {exc.strerror}") from exc
        raise
    except Exception as exc:  # noqa: BLE001 - report which file is broken, whatever broke
        raise RunDirectoryError(f"run file {path} is corrupt or truncated ({type(exc).__name__}: {exc})") from exc


def read_json(path: str | os.PathLike, expect: type = dict) -> Any:
    """Read a JSON file that must hold a value of type ``expect`` (an object by default)."""
    obj = _read(Path(path), lambda p: json.loads(p.read_text()))
    if not isinstance(obj, expect):
        raise RunDirectoryError(f"run file {path} must hold a JSON {expect.__name__}, found {type(obj).__name__}: {obj!r:.60}")
    return obj


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file (never a pickle) into CPU tensors."""
    return _read(Path(path), lambda p: load_safetensors_bytes(p.read_bytes()))


def tensor_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The shapes recorded in a safetensors header, read without loading any tensor."""

    def reader(p: Path) -> dict[str, tuple[int, ...]]:
        with safe_open(str(p), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}

    return _read(Path(path), reader)


def read_history(path: str | os.PathLike) -> pd.DataFrame:
    """Read a history: at least one row, an integer ``step`` column strictly increasing."""

    def reader(p: Path) -> pd.DataFrame:
        text = p.read_text()
        if text and not text.endswith("\n"):
            raise RunDirectoryError(f"run file {p} ends in the middle of a row (truncated)")
        lines = list(csv.reader(io.StringIO(text)))
        short = next((i for i, row in enumerate(lines[1:], 2) if len(row) != len(lines[0])), None)
        if short is not None:
            raise RunDirectoryError(f"run file {p}: row {short} has {len(lines[short - 1])} fields, the header {len(lines[0])}")
        df = pd.read_csv(io.StringIO(text))
        if "step" not in df.columns:
            raise RunDirectoryError(f"run file {p} has no 'step' column")
        if not len(df):
            raise RunDirectoryError(f"run file {p} has no rows")
        if not pd.api.types.is_integer_dtype(df["step"]):
            raise RunDirectoryError(f"run file {p}: the 'step' column holds non-integers or blanks")
        _check_column_types(df, p)
        steps = df["step"].to_numpy()
        bad = np.nonzero(np.diff(steps) <= 0)[0]
        if len(bad):
            i = int(bad[0])
            kind = "duplicated" if steps[i + 1] == steps[i] else "out of order"
            raise RunDirectoryError(
                f"run file {p}: step {int(steps[i + 1])} (row {i + 2}) is {kind} after step {int(steps[i])}; "
                "history steps must increase strictly"
            )
        return df

    return _read(Path(path), reader)


#: History columns that are numbers in every history (blanks allowed: NaN).
NUMERIC_COLUMNS = ("train_loss", "test_loss", "train_acc", "test_acc")


def _check_column_types(df: pd.DataFrame, p: Path) -> None:
    """Numbers where a history has numbers: the loss and accuracy columns, and every
    column whose other values are numbers (text among them is an edited or corrupt file;
    measures would report on it or fail with a raw TypeError)."""
    for col in df.columns:
        if col == "step" or pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]):
            continue
        values = df[col]
        numbers = pd.to_numeric(values, errors="coerce")
        text = values.notna() & numbers.isna()
        if text.any() and (col in NUMERIC_COLUMNS or numbers.notna().any()):
            row = int(np.nonzero(text.to_numpy())[0][0])
            raise RunDirectoryError(f"run file {p}: column {col!r} holds text ({values.iloc[row]!r} at step "
                                    f"{int(df['step'].iloc[row])}) among numbers")


def read_torch(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only; a pickle
    of anything else raises :class:`RunDirectoryError` naming the file."""
    return _read(Path(path), lambda p: torch.load(io.BytesIO(p.read_bytes()), weights_only=True, map_location=map_location))


def is_run_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a run directory (a ``config.json``; a broken one counts)."""
    cfg = Path(path) / CONFIG
    if not cfg.exists():
        return False
    try:
        raw = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return True  # a broken run is still a run: loading it reports the broken file
    return not isinstance(raw, dict) or "grok_interp" in raw or "kind" in raw


# --- config.json against its dataclasses -------------------------------------------------
def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        return len(value) == len(args) and all(_type_ok(v, h) for v, h in zip(value, args))
    if origin in (list, dict):
        return isinstance(value, origin)
    return True  # a type this schema does not know: the dataclass's own checks decide


def _describe(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("NoneType", "None").replace("<class '", "").replace("'>", "")


def check_fields(cls: type, raw: Any, *, file: Path, section: str, version: int) -> dict[str, Any]:
    """Check one section of ``config.json`` against dataclass ``cls``; return its kwargs.

    The schema is derived from the dataclass (its ``init`` fields and their type hints),
    so fields added to a config class are checked without changes here. A key missing
    from a file is filled from the class's own migrations (``cls.ADDED_KEYS``, see
    :class:`Migrating`) only when it was added in a format version later than the
    file's; otherwise it is an error, like an unknown key or a value of the wrong type.
    """
    if not isinstance(raw, dict):
        raise RunDirectoryError(f"run file {file}: {section!r} must be a JSON object, found {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = {f.name for f in fields}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise RunDirectoryError(
            f"run file {file}: unknown keys {unknown} in {section!r} (written by a newer grok_interp, or edited)"
        )
    out = dict(raw)
    for f in fields:
        key = f"{section}.{f.name}"
        if f.name not in raw:
            added = [(v, keys[f.name]) for v, keys in sorted(added_keys(cls).items()) if v > version and f.name in keys]
            if not added:
                raise RunDirectoryError(f"run file {file}: key {key!r} is missing (format {version} requires it)")
            out[f.name] = added[0][1]
            continue
        if not _type_ok(raw[f.name], hints[f.name]):
            raise RunDirectoryError(
                f"run file {file}: {key}={raw[f.name]!r} has the wrong type (expected {_describe(hints[f.name])})"
            )
    return out


def check_format(meta: dict[str, Any], file: Path) -> int:
    """The format version recorded in ``config.json`` (an error if absent or newer than ours)."""
    info = meta.get("grok_interp")
    version = info.get("format") if isinstance(info, dict) else None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RunDirectoryError(f"run file {file}: 'grok_interp.format' is missing or not a positive integer")
    if version > FORMAT_VERSION:
        raise RunDirectoryError(
            f"run file {file} has format {version}; this grok_interp reads up to {FORMAT_VERSION}: upgrade grok_interp"
        )
    return version


# --- resume states ----------------------------------------------------------------------
@dataclass
class ResumeState:
    """One validated resume state: everything a loop needs to continue from ``step``."""

    step: int
    path: Path
    weights: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    history: pd.DataFrame
    status: dict[str, Any]

    @property
    def train_s(self) -> float:
        """Seconds the run had trained when this state was saved (0 for a state written
        before runs counted them): a resumed run goes on counting from here."""
        return float(self.status.get("train_s", 0.0))


def _train_s_entry(train_s: float | None) -> dict[str, float]:
    """The ``train_s`` entry of a status (ms resolution), or none when it is unknown."""
    return {} if train_s is None else {"train_s": round(float(train_s), 3)}


def _history_agrees(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """True when the shorter of two histories is a prefix of the other (same values)."""
    n = min(len(a), len(b))
    if list(a.columns) != list(b.columns):
        return False
    for col in a.columns:
        x, y = a[col].iloc[:n].to_numpy(), b[col].iloc[:n].to_numpy()
        try:
            if not np.array_equal(x.astype(float), y.astype(float), equal_nan=True):
                return False
        except (TypeError, ValueError):
            if not (x == y).all():
                return False
    return True


# --- the run directory ------------------------------------------------------------------
class RunStore:
    """One run directory: its file names, its lock, its writes and its validated reads.

    Reading needs no lock. Writing does: call :meth:`lock` (or use the store as a
    context manager) first; it also removes temporary files that a killed writer left.

    Example:
        >>> import tempfile, torch
        >>> weights = {"w": torch.zeros(2)}
        >>> with RunStore(tempfile.mkdtemp()).lock() as store:
        ...     store.write_checkpoint(100, weights)
        ...     store.checkpoint_steps()
        [100]
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self.created = False  # set by open_out when it made the directory

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r}, locked={self.locked})"

    # names ---------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        """``path / name`` (use the module's constants: ``store.file(CONFIG)``)."""
        return self.path / name

    def checkpoint_path(self, step: int) -> Path:
        return self.path / CHECKPOINTS / f"step_{step:07d}.safetensors"

    def state_path(self, step: int) -> Path:
        return self.path / f"state-{step:07d}"

    # the lock ------------------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    def lock(self) -> "RunStore":
        """Take the directory's writer lock (creating the directory) and clean up after
        killed writers. A second writer gets :class:`RunDirectoryError` naming the pid
        of the holder; the lock is released by :meth:`close` or by the holder's death."""
        if self._lock_fd is not None:
            return self
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise RunDirectoryError(
                    f"run directory {self.path} is being written by another process (pid {holder}); "
                    "wait for it to finish or choose another directory"
                ) from None
            # a full disk fails the pid's write: the lock must not outlive the error (it
            # did, and the same process then found its own pid "writing" the run)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd
        try:
            self.remove_stale()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Release the writer lock (the ``.lock`` file stays; the OS lock is what counts)."""
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def abandon(self) -> None:
        """Release the lock of a writer that failed before writing anything; a directory
        :func:`open_out` created for it goes again (it would hold only ``.lock``)."""
        empty = self.locked and self.is_empty()
        self.close()
        if self.created and empty:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "RunStore":
        return self.lock()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # a dropped writer releases its lock
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _need_lock(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError(f"{self!r}: take the writer lock (RunStore.lock()) before writing")

    def remove_stale(self) -> list[Path]:
        """Remove temporary files and state directories left by killed writers."""
        stale: list[Path] = []
        for folder in (self.path, self.path / CHECKPOINTS):
            if folder.is_dir():
                stale += [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
        stale += [p for p in self.path.glob(".state-*") if p.is_dir()]
        for p in stale:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        if stale:
            log.info("removed %d temporary files of an interrupted write in %s", len(stale), self.path)
        return stale

    def is_empty(self) -> bool:
        """True when the directory is absent or holds nothing but a lock or stale temporaries."""
        if not self.path.is_dir():
            return True
        return all(
            p.name == LOCK or (p.name.startswith(".") and p.name.endswith(".tmp")) or p.name.startswith(".state-")
            for p in self.path.iterdir()
        )

    # writes ---------------------------------------------------------------------------------
    def write_config(self, meta: dict[str, Any]) -> None:
        """Write ``config.json`` (``meta`` must carry ``grok_interp.format``)."""
        self._need_lock()
        write_json(self.file(CONFIG), meta)

    def write_data(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Write ``data.safetensors`` (dtypes kept)."""
        self._need_lock()
        write_tensors(self.file(DATA), tensors)

    def write_checkpoint(self, step: int, weights: Mapping[str, torch.Tensor]) -> None:
        """Write ``checkpoints/step_<step>.safetensors`` (float32)."""
        self._need_lock()
        write_tensors(self.checkpoint_path(step), weights, torch.float32)

    def write_model(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Write the latest weights, ``model.safetensors`` (float32)."""
        self._need_lock()
        write_tensors(self.file(MODEL), weights, torch.float32)

    def write_history(self, rows: list[dict[str, Any]] | pd.DataFrame) -> None:
        self._need_lock()
        write_csv(self.file(HISTORY), rows)

    def write_status(self, step: int, finished: bool, train_s: float | None = None,
                     extending: Mapping[str, Any] | None = None) -> None:
        """Write ``status.json``: the step reached, whether the run is finished, and (when
        known) ``train_s``, the seconds spent training it up to that step, summed over
        the sittings of a resumed run.

        ``extending`` (``{"train": {"steps": 200}, "record": [...]}``; a ResNet run's
        ``{"config": {"epochs": 40}}``) records a resume
        that changes the run's schedule or recorded measures, in the same atomic write
        that marks the run unfinished; ``config.json`` is rewritten after it. A reader
        applies it to ``config.json`` (:meth:`reconciled_meta`), so a writer killed
        between the two writes leaves a run whose intent and state agree; the next
        status written (a checkpoint) drops it, the config being up to date by then.
        """
        self._need_lock()
        write_json(self.file(STATUS), {"step": int(step), "finished": bool(finished), **_train_s_entry(train_s),
                                       **({"extending": dict(extending)} if extending else {})})

    def write_resume_state(
        self, step: int, weights: Mapping[str, torch.Tensor], optimizer_state: dict[str, Any],
        history: list[dict[str, Any]] | pd.DataFrame, status: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write ``state-<step>/`` (weights, optimiser state, history, status) as one unit.

        The directory is filled under a temporary name and renamed into place, so a
        resume state is complete or absent. Afterwards only this state and the newest
        older one are kept (the older one is the fallback should this one ever fail
        validation); states beyond ``step`` belong to an abandoned timeline and go.
        """
        self._need_lock()
        final = self.state_path(step)
        tmp = self.path / f".state-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            write_tensors(tmp / MODEL, weights, torch.float32)
            _write_torch(tmp / OPTIMIZER, optimizer_state)
            write_csv(tmp / HISTORY, history)
            write_json(tmp / STATUS, {**dict(status or {}), "step": int(step)})
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(self.path)
        older = [s for s, _ in self._states() if s < step]
        keep = {step, max(older)} if older else {step}
        for s, p in self._states():
            if s not in keep:
                shutil.rmtree(p, ignore_errors=True)
        return final

    def write_progress(self, step: int, weights: Mapping[str, torch.Tensor], optimizer_state: dict[str, Any],
                       history: list[dict[str, Any]] | pd.DataFrame, train_s: float | None = None) -> None:
        """Everything a loop saves at a checkpoint step, in a crash-safe order: the
        checkpoint, the resume state, then the run's history, latest weights and an
        unfinished status (``train_s``, when given, in both statuses: a resumed run
        goes on counting from the state's)."""
        self.write_checkpoint(step, weights)
        self.write_resume_state(step, weights, optimizer_state, history, status=_train_s_entry(train_s))
        self.write_history(history)
        self.write_model(weights)
        self.write_status(step, finished=False, train_s=train_s)

    # reads ---------------------------------------------------------------------------------
    def read_meta(self) -> dict[str, Any]:
        """``config.json`` as a dict (an error unless it holds a JSON object)."""
        return read_json(self.file(CONFIG))

    def read_status(self) -> dict[str, Any]:
        """``status.json`` (``{}`` when absent): ``step`` an int, ``finished`` a bool,
        ``train_s`` (absent in runs written before it existed) a number >= 0."""
        if not self.file(STATUS).exists():
            return {}
        status = read_json(self.file(STATUS))
        step, finished = status.get("step"), status.get("finished", False)
        if isinstance(step, bool) or not isinstance(step, int) or not isinstance(finished, bool):
            raise RunDirectoryError(f"run file {self.file(STATUS)}: 'step' must be an integer and 'finished' a boolean")
        train_s = status.get("train_s", 0.0)
        if isinstance(train_s, bool) or not isinstance(train_s, (int, float)) or not train_s >= 0:
            raise RunDirectoryError(f"run file {self.file(STATUS)}: 'train_s' must be a number of seconds >= 0")
        ext = status.get("extending", {})
        if not isinstance(ext, dict) or any(not isinstance(v, dict) for k, v in ext.items() if k != "record"):
            raise RunDirectoryError(f"run file {self.file(STATUS)}: 'extending' must map config.json's sections "
                                    "to their changed keys (and 'record' to measure names)")
        return status

    def reconciled_meta(self) -> dict[str, Any]:
        """``config.json`` with the extension an unfinished ``status.json`` records
        applied (see :meth:`write_status`): the run's intent as its last atomic write
        left it."""
        meta = self.read_meta()
        for section, changes in self.read_status().get("extending", {}).items():
            if section == "record":
                meta["record"] = changes
            elif isinstance(meta.get(section), dict):
                meta[section] = {**meta[section], **changes}
        return meta

    def checkpoint_steps(self) -> list[int]:
        """Steps with saved weights, ascending."""
        folder = self.path / CHECKPOINTS
        if not folder.is_dir():
            return []
        return sorted(int(m.group(1)) for f in folder.iterdir() if (m := _CHECKPOINT.fullmatch(f.name)))

    def read_checkpoint(self, step: int) -> dict[str, torch.Tensor]:
        return read_tensors(self.checkpoint_path(step))

    def _states(self) -> list[tuple[int, Path]]:
        """Resume-state directories, newest first."""
        if not self.path.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.path.iterdir() if (m := _STATE.fullmatch(p.name)) and p.is_dir()]
        return sorted(found, reverse=True)

    def state_steps(self) -> list[int]:
        return sorted(s for s, _ in self._states())

    def validate_state(self, path: str | os.PathLike, eval_every: int | None = None, eval_sparse: int = 1) -> ResumeState:
        """Read resume state ``path`` and check it against itself and the run.

        Checks: the step in the directory name equals the one in its ``status.json``;
        its history is valid (strictly increasing steps), ends at or before that step
        and, given ``eval_every``, has a row at every multiple of ``eval_sparse *
        eval_every`` up to the step (every multiple of ``eval_every`` for a dense run;
        an adaptive one, ``eval_sparse > 1``, keeps the rows between only where the
        test metrics moved);
        the run's own ``history.csv`` agrees with it where both have rows; its weights
        equal ``checkpoints/step_<step>.safetensors``; ``optimizer.pt`` holds only
        tensors and plain containers.

        Raises:
            RunDirectoryError: naming the file that disagrees.
        """
        path = Path(path)
        m = _STATE.fullmatch(path.name)
        if m is None:
            raise RunDirectoryError(f"{path} is not a resume state (expected state-<step>)")
        step = int(m.group(1))
        status = read_json(path / STATUS)
        if status.get("step") != step:
            raise RunDirectoryError(f"run file {path / STATUS}: step {status.get('step')!r} disagrees with {path.name}")
        history = read_history(path / HISTORY)
        steps = history["step"].tolist()
        if steps[-1] > step:
            raise RunDirectoryError(f"run file {path / HISTORY}: its last row is step {steps[-1]}, after {path.name}")
        if eval_every is not None:
            every = eval_every * eval_sparse
            missing = sorted(set(range(0, step + 1, every)) - set(steps))
            if missing:
                raise RunDirectoryError(
                    f"run file {path / HISTORY} is short: no rows for steps {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                    f"(one every {every} up to step {step})"
                )
        if self.file(HISTORY).exists():
            try:
                run_history = read_history(self.file(HISTORY))
            except RunDirectoryError:
                run_history = None  # the run's history is rewritten from a valid state
            if run_history is not None:
                upto = run_history[run_history["step"] <= step].reset_index(drop=True)
                if not _history_agrees(history, upto):
                    raise RunDirectoryError(
                        f"run file {path / HISTORY} disagrees with the run's {self.file(HISTORY)} up to step {step}"
                    )
        weights = read_tensors(path / MODEL)
        ckpt = self.checkpoint_path(step)
        if not ckpt.exists():
            raise RunDirectoryError(f"resume state {path} has no checkpoint {ckpt.relative_to(self.path)}")
        saved = read_tensors(ckpt)
        if set(saved) != set(weights) or not all(torch.equal(saved[k], weights[k]) for k in weights):
            raise RunDirectoryError(f"run file {path / MODEL} differs from {ckpt}")
        opt = read_torch(path / OPTIMIZER)
        if not isinstance(opt, dict):
            raise RunDirectoryError(f"run file {path / OPTIMIZER} does not hold an optimiser state dict")
        return ResumeState(step=step, path=path, weights=weights, optimizer_state=opt, history=history, status=status)

    def latest_valid_state(self, eval_every: int | None = None, eval_sparse: int = 1) -> ResumeState | None:
        """The newest resume state that passes :meth:`validate_state` (None: no state).

        An inconsistent state is skipped with a warning naming it; when states exist
        but none is consistent, the newest one's error is raised.
        """
        first_error: RunDirectoryError | None = None
        for _, path in self._states():
            try:
                return self.validate_state(path, eval_every, eval_sparse)
            except RunDirectoryError as exc:
                log.warning("skipping resume state %s: %s", path, exc)
                first_error = first_error or exc
        if first_error is not None:
            raise RunDirectoryError(f"no consistent resume state in {self.path}; newest: {first_error}") from first_error
        return None

    def read_latest(
        self, eval_every: int | None = None, eval_sparse: int = 1
    ) -> tuple[dict[str, torch.Tensor], pd.DataFrame, Path]:
        """The run's current weights and history, and the directory they came from.

        A finished run (or one without resume states) is read from its top-level files;
        an unfinished one (interrupted, or still training) from its newest consistent
        resume state, written as a whole, so weights and history always agree.
        """
        status = self.read_status()
        if not status.get("finished", False) and self._states():
            state = self.latest_valid_state(eval_every, eval_sparse)
            if state is not None:
                return state.weights, state.history, state.path
        return read_tensors(self.file(MODEL)), read_history(self.file(HISTORY)), self.path


def open_out(path: str | os.PathLike, resume: bool) -> tuple[RunStore, bool]:
    """Open ``path`` for a writer: check it, take its lock, say whether it holds a run.

    ``path`` must be absent, empty, or a run directory (then only with ``resume``).
    The check is repeated under the lock, so of two writers started together one
    writes and the other gets an error. Returns the locked store (the caller closes
    it) and whether a run is there to resume.
    """
    path = Path(path)
    rs = RunStore(path)
    if path.exists() and not path.is_dir():
        raise bad_value("out", str(path), "is a file; give a new or empty directory, or a run directory")
    if not rs.is_empty() and not is_run_dir(path):  # refuse before creating anything in it
        raise bad_value("out", str(path), "exists and is not a run directory; give a new or empty directory")
    rs.created = not path.exists()
    rs.lock()
    try:
        resuming = not rs.is_empty()  # again under the lock: another writer may have been first
        if resuming and not is_run_dir(path):
            raise bad_value("out", str(path), "exists and is not a run directory; give a new or empty directory")
        if resuming and not resume:
            raise bad_value("out", str(path), "already holds a run; pass resume=True to continue it, or give a new directory")
    except BaseException:
        rs.close()
        raise
    return rs, resuming


def _not_copied(folder: str, names: list[str]) -> set[str]:
    """What a copy of a run directory leaves out: the writer's lock and a killed writer's temporaries."""
    return {n for n in names if n == LOCK or (n.startswith(".") and n.endswith(".tmp")) or n.startswith(".state-")}


def file_digests(path: str | os.PathLike) -> dict[str, str]:
    """SHA-256 of every file of the run directory ``path`` that a copy holds (relative
    ``/``-separated path -> hex digest; the lock and temporaries left out)."""
    root = Path(path)
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(set(dirs) - _not_copied(folder, dirs))
        for name in sorted(set(files) - _not_copied(folder, files)):
            file = Path(folder) / name
            h = hashlib.sha256()
            with open(file, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[file.relative_to(root).as_posix()] = h.hexdigest()
    return out


def _copy_synced(src: str, dst: str) -> str:
    shutil.copy2(src, dst)
    with open(dst, "rb+") as fh:  # on disk before the directory is renamed into place
        os.fsync(fh.fileno())
    return dst


def copy_run_dir(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy the run directory ``src`` to ``dest`` as one unit: ``dest`` ends up complete or absent.

    ``src`` is locked for the copy (as a writer would lock it), so no writer changes it
    halfway; its ``.lock`` and a killed writer's temporaries are not copied. The files go
    to a temporary directory beside ``dest`` (``.<name>.<hex>.copy.tmp``), each flushed to
    disk, and the directory is renamed onto ``dest`` once complete: a copy interrupted at
    any point leaves no ``dest`` (at worst a hidden temporary directory, which the next
    copy to ``dest`` removes). Nothing inside a run directory names its own path, so the
    copy is a run like the original (:func:`load`, resume and sweeps treat it so).

    Args:
        src: A run directory.
        dest: Where the copy goes: absent, or an empty directory.

    Returns:
        ``dest``.

    Raises:
        RunDirectoryError: ``src`` is not a run directory, or a writer holds its lock.
        GrokInterpError: ``dest`` exists and is not an empty directory.
    """
    src, dest = Path(src), Path(dest)
    if not src.is_dir() or not is_run_dir(src):
        raise RunDirectoryError(f"{src} is not a run directory (no config.json written by grok_interp)")
    a, b = src.resolve(), dest.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise bad_value("dest", str(dest), f"lies inside {src} or holds it; a run is copied beside itself, not into it")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise bad_value("dest", str(dest), "exists and is not an empty directory; give a new or empty directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in _leftovers(dest):  # an interrupted copy to dest or removal of it
        shutil.rmtree(stale, ignore_errors=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.copy.tmp"
    with RunStore(src):
        try:
            shutil.copytree(src, tmp, ignore=_not_copied, copy_function=_copy_synced)
            for folder, _, _ in os.walk(tmp, topdown=False):
                _fsync_dir(Path(folder))
            os.rename(tmp, dest)  # onto an absent or empty directory; fails if dest was filled meanwhile
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _fsync_dir(dest.parent)
    return dest


def _leftovers(path: Path) -> list[Path]:
    """Hidden temporaries that an interrupted :func:`copy_run_dir` to ``path`` or
    :func:`remove_run_dir` of it left beside it."""
    return [*path.parent.glob(f".{path.name}.*.copy.tmp"), *path.parent.glob(f".{path.name}.*.rm.tmp")]


def remove_run_dir(path: str | os.PathLike) -> bool:
    """Remove the run directory ``path`` as a unit: it is gone or intact, never half there.

    The directory is locked (as a writer would lock it), renamed to a hidden temporary
    beside it (``.<name>.<hex>.rm.tmp``) and only then deleted: a removal interrupted at
    any point leaves either the whole run or no ``path`` (at worst the hidden temporary,
    which the next :func:`copy_run_dir` to ``path`` or removal of it deletes). A
    half-deleted run is never left where a loader, a resume or a sweep would read it.

    Args:
        path: A run directory, or a path that does not exist (then nothing happens).

    Returns:
        Whether a directory was removed.

    Raises:
        RunDirectoryError: ``path`` exists but is not a run directory, or a writer holds
            its lock.
    """
    path = Path(path)
    for stale in _leftovers(path):
        shutil.rmtree(stale, ignore_errors=True)
    if not path.exists():
        return False
    if not path.is_dir() or not is_run_dir(path):
        raise RunDirectoryError(f"{path} is not a run directory (no config.json written by grok_interp); "
                                "not removed")
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.rm.tmp"
    with RunStore(path):
        os.rename(path, tmp)
    _fsync_dir(path.parent)
    shutil.rmtree(tmp, ignore_errors=True)
    return True


# --- kind -> loader registry -------------------------------------------------------------
Loader = Callable[..., Any]
_LOADERS: dict[str, Loader | str] = {}


def register_loader(kind: str, loader: Loader | str) -> None:
    """Register the loader of run directories of ``kind`` (``"kind"`` in config.json).

    ``loader(path, device=...)`` returns the run; it may also be given as
    ``"package.module:function"``, imported on first use (so registering costs nothing).
    """
    _LOADERS[kind] = loader


def run_kind(path: str | os.PathLike) -> str:
    """The kind recorded in ``config.json`` (``transformer`` when absent)."""
    store = RunStore(path)
    if not store.path.is_dir():
        raise RunDirectoryError(f"run directory {store.path} does not exist")
    meta = store.read_meta()
    kind = meta.get("kind", "transformer")
    if not isinstance(kind, str):
        raise RunDirectoryError(f"run file {store.file(CONFIG)}: 'kind' must be a string, found {kind!r}")
    return kind


def load(path: str | os.PathLike, device: str = "cpu") -> Any:
    """Load the run in ``path`` with the loader registered for its kind."""
    kind = run_kind(path)
    loader = _LOADERS.get(kind)
    if loader is None:
        raise RunDirectoryError(
            f"run file {Path(path) / CONFIG}: unknown kind {kind!r}; known: {sorted(_LOADERS)}"
        )
    if isinstance(loader, str):
        module, _, attr = loader.partition(":")
        loader = getattr(importlib.import_module(module), attr)
        _LOADERS[kind] = loader
    return loader(path, device=device)
