"""The run cache: a finished run is not trained again when another sweep asks for it.

Two studies often share a configuration (the same p = 97 baseline, the same seed):
trained twice, it gives the same history twice. :func:`grok_interp.sweeps.sweep`
therefore keeps an index of the finished runs it trained, keyed by everything that
decides what a run directory holds, and copies a finished run into place instead of
training it again (its row says ``cached`` and names the source in ``cached_from``).

The index is a directory of small JSON files, ``<key>.json``, each naming one finished
run directory (the runs stay where their sweep put them; the index holds no weights).
It lives in (first that applies) the ``cache=`` argument of ``sweep``, the environment
variable ``GROK_INTERP_RUN_CACHE`` (``off`` turns the cache off), or
``$XDG_CACHE_HOME/grok_interp/runs`` (``~/.cache/grok_interp/runs``). Deleting the
directory (or :func:`clear`) forgets every entry and touches no run.

An entry is never trusted blindly: before a copy, the source must still be a finished
run whose ``config.json`` holds exactly the configuration asked for (with the same
backend, TransformerLens version and format) and whose ``history.csv`` is the one
recorded (same SHA-256); the copy is checked the same way, and every file of it must
have the content recorded at insert (a SHA-256 of each file: a ``model.safetensors``
swapped for another step's weights, or truncated, is caught, not copied as
``cached``). An entry that fails (its run deleted, edited, extended or retrained; an
entry written before files were hashed) is removed and the run is trained.

What the key holds (:func:`key_payload`), and why:

* every field of ``data`` (``p``, ``op``, ``offset``, ``split``, ``frac``, ``data_seed``,
  ``k``, ``t``, ``shuffle``): they decide the task and the training pairs;
* every field of ``model`` (sizes, ``act_fn``, ``normalization``, ``pos_embed``,
  biases, ``init``, ``embed_init``, ``freeze_biases``, ``mlp_input``, ``seed``,
  ``backend``): they decide the initial weights and the forward; ``backend`` also as
  resolved (``auto`` is the hooked transformer under TransformerLens 3, the bridge under 4);
* every field of ``train``: the optimiser and every update (``lr``, ``weight_decay``,
  ``betas``, ``warmup_steps``, ``optimizer``, ``momentum``, ``loss``, ``grokfast*``,
  ``perpendicular_grad``), where the history ends (``steps``, ``stop_after_grok``,
  ``grok_threshold``, ``stop_on_plateau``, ``plateau_delta``), which rows and weights are
  saved (``eval_every``, ``eval_sparse``, ``checkpoint_every``), and how the floats are computed
  (``forward``: fast, hooked and compiled forwards round differently; ``device``,
  kept as given and also as resolved, since ``auto`` is CUDA on one machine and CPU on
  another);
* ``record``: the measures recorded as history columns, and what they are
  (:func:`measures_payload`): each recorded measure's name, columns and the SHA-256 of
  its own source (the function registered for it, and the functions and classes it
  reaches by name that the package digest leaves out: the closures and helpers in
  ``measures/record.py``, or a user's module), plus the source of the recording
  plumbing (:func:`grok_interp.measures.recorder` and what it calls in that file). So an
  edit of one measure changes the keys of the runs that record it only, and a measure a
  user registered is cached by its source (where :func:`inspect.getsource` reads it;
  else the run is not cached);
* the versions that trained it: ``grok_interp.__version__``, a SHA-256 of the package's
  source files that can change a run directory (:func:`source_digest`; the version
  string is not bumped for every change of the training code), the run-directory
  format, torch and TransformerLens, and on CUDA the CUDA version and the GPU's name.
  The files listed in :data:`HISTORY_NEUTRAL` (plots, the report, the command lines, the
  ResNet branch, the theory, measures computed after training, the measures' registry,
  this cache) are left out of that digest: none of them is imported by the code that trains a transformer run, so
  an edit there cannot change a history, and the runs of an earlier commit stay usable.

Not in the key, because it does not change what the run directory holds: the run's
directory (``out`` and the run name), whether an option came from ``base`` or from the
configuration, ``progress``, the executor, the number of workers and ``radii``. Nor is
how a run was scheduled: trained alone or in a batch (:mod:`grok_interp.many_runs`),
with how many threads, and in how many parts its batch was cut (``batch_parts``). Those
round floats differently (histories agree within float
rounding), and a sweep already picks them by the machine and ``max_workers``; a cached
run is one the sweep could have trained itself. Nor is the CPU model.

Only runs a sweep trained from scratch are recorded. A run it resumed or extended
(a raised ``steps``) is not: part of its history may come from another library version,
and an extended run keeps the rows and checkpoints of its old last step, which a run
trained to the new budget at once would not have. Runs with options outside the
configuration (a ``mask``, a callable ``op``, ``preset``, ``config=``) have no key and
are neither cached nor looked up.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import os
import types
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from . import store, tl_backend, version
from ._validate import bad_value
from .config import RunConfig
from .errors import RunDirectoryError
from .training import resolve_device

__all__ = ["ENV", "KEY_SCHEMA", "HISTORY_NEUTRAL", "is_history_neutral", "cache_dir", "key_payload", "run_key", "options_key", "library_versions", "source_digest",
           "code_digest", "measures_payload",
           "lookup", "record_run", "copy_cached", "clear"]

log = logging.getLogger(__name__)

#: Environment variable naming the cache directory (``off`` turns the cache off).
ENV = "GROK_INTERP_RUN_CACHE"
#: Version of the key's layout: bump it when :func:`key_payload` changes meaning
#: (2: the source digest leaves out :data:`HISTORY_NEUTRAL`; 3: ``measures/record.py``
#: is left out too, and a run that records measures carries their own sources,
#: :func:`measures_payload`).
KEY_SCHEMA = 3

#: Package files (paths relative to the package; a trailing ``/`` is a whole folder)
#: that cannot change what a transformer run's directory holds, so they are not part of
#: :func:`source_digest`. None of them is imported, at module level, by the modules that
#: train and save a run (``tests/test_run_cache.py`` checks this; ``sweeps`` imports this
#: cache only to look runs up): plots and the report
#: (``viz/``), the image branch (``vision/``, never cached), the command-line front ends
#: (their options become the configuration, which is in the key), the ceilings of
#: :mod:`grok_interp.theory` and the sweep's extra columns, the measures computed after
#: training from a finished run (``compare``, ``phases``), the import of other
#: codebases' checkpoints (``external``), the studies' selection language (``selection``),
#: this cache, and the measures' registry (``measures/record.py``: what of it can change a
#: history, a recorded measure and the recording plumbing, is in the key of a run that
#: records measures, :func:`measures_payload`; a run that records none does not use it).
#: Everything else, including any new file, is in the digest.
HISTORY_NEUTRAL = ("viz/", "vision/", "cli.py", "_sweep_cli.py", "measures/_cli.py", "measures/compare.py",
                   "measures/phases.py", "theory.py", "external.py", "run_cache.py", "selection.py",
                   "measures/record.py")
_OFF = ("off", "0", "false", "no", "none")


def cache_dir(cache: bool | str | os.PathLike | None = None) -> Path | None:
    """The index directory to use, or None when the cache is off.

    Args:
        cache: A directory; ``False`` (off); ``None`` or ``True``: ``$GROK_INTERP_RUN_CACHE``
            if set (``off``, ``0``, ``false``, ``no`` or ``none`` turn the cache off), else
            ``$XDG_CACHE_HOME/grok_interp/runs`` (``~/.cache/grok_interp/runs`` when
            ``XDG_CACHE_HOME`` is unset or not an absolute path; off without a home).

    Example:
        >>> cache_dir(False) is None
        True
        >>> cache_dir("/tmp/my-cache").as_posix()
        '/tmp/my-cache'
    """
    if cache is False:
        return None
    if cache is None or cache is True:
        env = os.environ.get(ENV, "").strip()
        if env:
            return None if env.lower() in _OFF else Path(env).expanduser()
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        if xdg and Path(xdg).is_absolute():
            return Path(xdg) / "grok_interp" / "runs"
        try:
            home = Path.home()
        except (RuntimeError, KeyError):  # no home directory (a bare container user): no cache
            log.info("run cache: no home directory and no %s; the cache is off", ENV)
            return None
        return home / ".cache" / "grok_interp" / "runs"
    if isinstance(cache, (str, os.PathLike)) and str(cache).strip():
        return Path(cache).expanduser()
    raise bad_value("cache", cache, "give a directory, True (the default cache) or False (no cache)")


def is_history_neutral(rel: str) -> bool:
    """Whether the package file ``rel`` (relative path, ``/``-separated) is in :data:`HISTORY_NEUTRAL`."""
    return any(rel.startswith(n) if n.endswith("/") else rel == n for n in HISTORY_NEUTRAL)


def source_digest(root: str | os.PathLike | None = None) -> str:
    """SHA-256 over the package's ``.py`` files that can change a run (relative path and
    bytes, sorted by path; the files of :data:`HISTORY_NEUTRAL` left out).

    Any change of the code that trains and saves a run gives another digest, so runs
    trained by an edited checkout never stand in for runs of another, though both say
    version 0.1.0; an edit of a plot or of the report does not.

    Args:
        root: The package directory (default: this installed package's; computed once).
    """
    if root is None:
        return _own_source_digest()
    root = Path(root)
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if is_history_neutral(rel):
            continue
        h.update(rel.encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _own_source_digest() -> str:
    return source_digest(Path(__file__).resolve().parent)


def library_versions(device: torch.device) -> dict[str, Any]:
    """The versions that decide a run's floats on ``device`` (part of every key)."""
    out: dict[str, Any] = {
        "grok_interp": version.VERSION,
        "source": source_digest(),
        "format": store.FORMAT_VERSION,
        "torch": torch.__version__,
        "transformer_lens": tl_backend.TL_VERSION,
    }
    if device.type == "cuda":
        out["cuda"] = torch.version.cuda
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def _record_list(record: Any) -> list[Any] | None:
    if record is None:
        return None
    return [record] if isinstance(record, str) else list(record)


#: The module whose code :func:`source_digest` leaves out and :func:`code_digest` walks.
_RECORD_MODULE = "grok_interp.measures.record"
_PLAIN = (str, int, float, bool, type(None))


def _plain(value: Any) -> bool:
    """A value whose ``repr`` is the same in every process (a literal)."""
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (tuple, list, frozenset)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    return False


def _code_names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _code_names(const)
    return names


def _references(obj: Any) -> list[Any]:
    """What the function or class ``obj`` names: globals its code reads, its closure's
    values, and a class's methods."""
    if inspect.isclass(obj):
        out = []
        for member in vars(obj).values():
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if isinstance(member, property):
                out += [f for f in (member.fget, member.fset) if f is not None]
            elif inspect.isfunction(member):
                out.append(member)
        # methods a decorator generated (a dataclass's __init__, __repr__) are not in the
        # class's file: the class's source (its fields) makes them
        try:
            file = inspect.getfile(obj)
        except TypeError:
            return []
        return [f for f in out if f.__code__.co_filename == file]
    if not inspect.isfunction(obj):
        return []
    out = [obj.__globals__[n] for n in _code_names(obj.__code__) if n in obj.__globals__]
    out += [cell.cell_contents for cell in obj.__closure__ or ()]
    return out


def code_digest(root: Callable[..., Any]) -> str:
    """SHA-256 of the source of ``root`` and of the functions and classes it reaches by
    name (globals its code reads, closure values, methods of the classes reached) that
    :func:`source_digest` does not cover: those of ``measures/record.py``, or of
    ``root``'s own module when that is not part of the package (a user's measure).
    Literal values it reaches (a closure's ``"paper"``) are in it by ``repr``; what
    other package modules and libraries define is covered by the package digest and
    the versions in the key.

    Raises:
        GrokInterpError: a source cannot be read (a function typed into a REPL): such a
            measure cannot be part of a key.
    """
    home = getattr(root, "__module__", None) or ""

    def walked(obj: Any) -> bool:
        module = getattr(obj, "__module__", None) or ""
        return module == _RECORD_MODULE or (module == home and not home.startswith("grok_interp"))

    parts: set[str] = set()
    seen: set[int] = set()
    stack: list[Any] = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            if _plain(obj):
                parts.add(f"value\0{obj!r}")
            continue
        if obj is not root and not walked(obj):
            continue
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError) as exc:
            raise bad_value("record", getattr(root, "__qualname__", repr(root)),
                            f"has no readable source ({exc}), so a run recording it cannot be part of a run-cache key") from None
        parts.add(f"{obj.__module__}.{obj.__qualname__}\0{source}")
        stack += _references(obj)
    h = hashlib.sha256()
    for part in sorted(parts):
        h.update(part.encode() + b"\0\0")
    return h.hexdigest()


def measures_payload(record: Any) -> dict[str, Any] | None:
    """What the measures ``record`` names are, for a run-cache key: each one's name,
    columns, whether plots show it and :func:`code_digest` of its function, in recording
    order (aliases expanded), and the digest of the recording plumbing
    (:func:`grok_interp.measures.recorder`). None when nothing is recorded.

    Raises:
        GrokInterpError: ``record`` names no registered measure, or one whose source
            cannot be read.
    """
    names = _record_list(record)
    if names is None or not all(isinstance(n, str) for n in names):
        return None  # callables: key_payload refuses them (no stable name)
    from .measures import record as measures_record  # noqa: PLC0415 - only a run that records measures needs it

    specs = measures_record.measure_specs(names)
    return {
        "recorder": code_digest(measures_record.recorder),
        "measures": [{"name": s.name, "columns": list(s.columns), "plot": s.plot, "source": code_digest(s.fn)}
                     for s in specs],
    }


def _backend(config: RunConfig) -> str:
    return "mlp" if config.model.arch == "mlp" else tl_backend.resolve_backend(config.model.backend)


def key_payload(config: RunConfig, record: Any = None) -> dict[str, Any]:
    """Everything the key of a run is made of (see the module docstring), as plain JSON.

    Raises:
        GrokInterpError: ``record`` holds something other than measure names (a callable
            has no stable name, so such a run cannot be cached).
    """
    device = resolve_device(config.train.device)
    payload = {
        "schema": KEY_SCHEMA,
        "kind": "transformer",
        "config": config.to_dict(),
        "backend": _backend(config),
        "device": device.type,
        "record": _record_list(record),
        "measures": measures_payload(record),
        "versions": library_versions(device),
    }
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise bad_value("record", record, f"must be measure names to be part of a run-cache key ({exc})") from None
    return payload


def _digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def run_key(config: RunConfig, record: Any = None) -> str:
    """The cache key of a run: SHA-256 of :func:`key_payload` as canonical JSON (64 hex digits).

    Example:
        >>> a = run_key(RunConfig.from_kwargs(p=23, steps=100, device="cpu"))
        >>> a == run_key(RunConfig.from_kwargs(p=23, steps=100, device="cpu"))
        True
        >>> a == run_key(RunConfig.from_kwargs(p=23, steps=100, device="cpu", seed=1))
        False
    """
    return _digest(key_payload(config, record))


def options_key(options: Mapping[str, Any]) -> str | None:
    """The cache key of a run given as :func:`grok_interp.train_hooked` options (a
    sweep's ``{**base, **config}``, ``record`` included), or None when such a run is
    never cached: invalid options, or options outside the configuration (``mask``, a
    callable ``op``, ``preset``, ``config=``).

    Example:
        >>> options_key(dict(p=23, steps=100, device="cpu")) == run_key(RunConfig.from_kwargs(p=23, steps=100, device="cpu"))
        True
        >>> options_key(dict(p=23, preset="no such preset")) is None
        True
    """
    opts = dict(options)
    record = opts.pop("record", None)
    try:
        return run_key(RunConfig.from_kwargs(**opts), record)
    except Exception:  # noqa: BLE001 - such a run is trained, never cached
        return None


def _entry_file(cache: Path, key: str) -> Path:
    return cache / f"{key}.json"


def _history_sha(path: Path) -> str:
    return hashlib.sha256((path / store.HISTORY).read_bytes()).hexdigest()


def _why_unusable(path: Path, entry: dict[str, Any], payload: dict[str, Any]) -> str | None:
    """Why the run directory ``path`` cannot stand for ``payload``'s run (None: it can)."""
    if not path.is_dir() or not store.is_run_dir(path):
        return f"{path} is no longer a run directory"
    rs = store.RunStore(path)
    try:
        status = rs.read_status()
        meta = rs.read_meta()
        history_sha = _history_sha(path)
    except (RunDirectoryError, OSError) as exc:
        return f"{path} cannot be read ({exc})"
    if not status.get("finished") or status.get("step") != entry.get("step"):
        return f"{path} is not the finished run recorded (status {status})"
    if meta.get("kind", "transformer") != "transformer":
        return f"{path} is a {meta.get('kind')!r} run"
    info = meta.get("grok_interp") if isinstance(meta.get("grok_interp"), dict) else {}
    versions = payload["versions"]
    if info.get("format") != versions["format"] or info.get("transformer_lens") != versions["transformer_lens"]:
        return f"{path} was written by another format or TransformerLens ({info})"
    if meta.get("backend") != payload["backend"]:
        return f"{path} was trained with backend {meta.get('backend')!r}"
    changed = [s for s in ("data", "model", "train") if meta.get(s) != payload["config"][s]]
    if changed:
        return f"{path}/config.json differs in {changed}"
    if history_sha != entry.get("history_sha256"):
        return f"{path}/history.csv is not the history recorded"
    return None


def _read_entry(cache: Path, key: str) -> dict[str, Any] | None:
    file = _entry_file(cache, key)
    if not file.exists():
        return None
    try:
        entry = store.read_json(file)
    except (RunDirectoryError, OSError) as exc:
        log.info("run cache: ignoring unreadable entry %s (%s)", file, exc)
        return {}
    return entry


def _forget(cache: Path, key: str, why: str) -> None:
    log.info("run cache: dropping entry %s: %s", key[:12], why)
    try:
        _entry_file(cache, key).unlink()
    except FileNotFoundError:
        pass


def lookup(cache: str | os.PathLike, config: RunConfig, record: Any = None) -> Path | None:
    """The finished run directory recorded for this run, checked; None when there is none.

    A stale entry (its run gone, unfinished, edited or retrained) is removed.
    """
    found = _checked_entry(Path(cache), key_payload(config, record))
    return None if found is None else found[0]


def _checked_entry(cache: Path, payload: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """:func:`lookup` for a key payload: the run directory and its index entry."""
    key = _digest(payload)
    entry = _read_entry(cache, key)
    if entry is None:
        return None
    if entry.get("key") != key or entry.get("payload") != payload or not isinstance(entry.get("path"), str):
        _forget(cache, key, "the entry does not describe this run")
        return None
    if not isinstance(entry.get("files"), dict) or not entry["files"]:
        _forget(cache, key, "the entry records no file hashes (written by an older version)")
        return None
    path = Path(entry["path"])
    why = _why_unusable(path, entry, payload)
    if why is not None:
        _forget(cache, key, why)
        return None
    return path, entry


def record_run(cache: str | os.PathLike, config: RunConfig, path: str | os.PathLike, record: Any = None) -> str:
    """Enter the finished run in ``path`` (trained from scratch by this library) under its key.

    Written atomically (``store.write_json``); a later record of the same key replaces it.

    Returns:
        The key.

    Raises:
        GrokInterpError: the run in ``path`` is unfinished or holds another configuration.
    """
    cache, path = Path(cache), Path(path).resolve()
    payload = key_payload(config, record)
    key = _digest(payload)
    rs = store.RunStore(path)
    status = rs.read_status()
    entry = {"key": key, "path": str(path), "step": status.get("step"), "history_sha256": _history_sha(path),
             "files": store.file_digests(path), "payload": payload}
    why = _why_unusable(path, entry, payload)
    if why is not None:
        raise bad_value("path", str(path), f"cannot enter the run cache: {why}")
    store.write_json(_entry_file(cache, key), entry)
    log.info("run cache: recorded %s as %s", path, key[:12])
    return key


def copy_cached(cache: str | os.PathLike, config: RunConfig, dest: str | os.PathLike, record: Any = None) -> Path | None:
    """Copy the cached run of this configuration to ``dest``; return its source, or None
    (no entry, a stale one, or a source being written right now: then train it).

    The copy is a unit (:func:`grok_interp.store.copy_run_dir`) and is checked again once
    in place; a copy that does not match is removed.
    """
    payload = key_payload(config, record)
    found = _checked_entry(Path(cache), payload)
    if found is None:
        return None
    src, entry = found
    try:
        store.copy_run_dir(src, dest)
    except RunDirectoryError as exc:  # e.g. a writer holds the source: train instead
        log.info("run cache: cannot copy %s (%s); training instead", src, exc)
        return None
    why = _why_unusable(Path(dest), entry, payload) or _content_differs(Path(dest), entry["files"], src)
    if why is not None:  # the source changed since it was recorded, or between the check and the copy
        log.info("run cache: the copy in %s is unusable (%s); training instead", dest, why)
        store.remove_run_dir(dest)
        return None
    return src


def _content_differs(copy: Path, recorded: Mapping[str, str], src: Path) -> str | None:
    """Why the files of ``copy`` are not those recorded at insert (None: they are)."""
    got = store.file_digests(copy)
    if got == recorded:
        return None
    wrong = sorted(n for n in set(got) | set(recorded) if got.get(n) != recorded.get(n))
    log.warning("run cache: %s no longer holds the run recorded (%s differs from the file hashed at insert); "
                "training instead", src, wrong[0])
    return f"{wrong[0]} is not the file recorded ({len(wrong)} files differ)"


def clear(cache: bool | str | os.PathLike | None = None) -> int:
    """Remove every entry of the index (the runs themselves stay); return how many."""
    folder = cache_dir(cache)
    if folder is None or not folder.is_dir():
        return 0
    entries = [p for p in folder.iterdir() if p.suffix == ".json" and len(p.stem) == 64]
    for p in entries:
        p.unlink(missing_ok=True)
    return len(entries)
