"""Many runs at once: a list or grid of configurations, one table of results.

:func:`sweep` trains every configuration into its own run directory under ``out`` and
returns one :class:`pandas.DataFrame`, one row per configuration::

    import grok_interp as g
    from grok_interp.sweeps import grid, sweep

    table = sweep(grid(split=["square"], k=[30, 40, 50]), out="runs/square",
                  base=dict(p=97, frac=0.3, steps=8000, stop_after_grok=1000))

Columns: ``run`` (the directory name), the configuration keys, ``status``
(``done``; ``skipped`` - already finished in its directory before this call;
``cached`` - not trained: copied from a finished run of the same configuration that
another sweep trained, see below; or ``failed``), ``error``, the events of
:func:`grok_interp.measures.phases` (``memorised_at``, ``grokked_at``, ``halfway_at``,
``u_acc``, ``l_acc``), ``final_step``, ``final_test_acc``, the training-set size and the predicted
ceilings of :mod:`grok_interp.theory` (``ceiling``: class coverage;
``ceiling_transpose``: test pairs whose transposed input tokens train with the same
answer; ``ceiling_r{r}`` for each radius asked for), ``wall_s`` (this call's time for
the run: 0 for a skipped run), ``train_s`` (what training the run took, read from its
directory: summed over the sittings that trained it, kept by a skipped run and carried
by a cached copy, whose ``train_s`` is then the training the cache saved; runs trained
in a batch each count the batch's time), ``batch_size`` (runs
trained together with it; 0 when nothing was trained), ``cached_from`` (the run
directory a ``cached`` run was copied from; empty otherwise) and ``path``. The table is
also written to ``out/sweep.csv``.

Why it is safe to rerun: each run goes through ``train_hooked(out=dir, resume=True)``,
so a finished run whose configuration is unchanged is skipped, an interrupted one
continues from its last resume state, and one whose step budget was raised trains on.
A configuration that fails (bad value, crash) becomes a ``failed`` row with its error;
the rest of the sweep goes on.

The run cache (:mod:`grok_interp.run_cache`): a run that is not finished in its own
directory, and whose directory is absent or empty, is first looked up by its key -
everything that decides its history and weights, plus the library, torch and
TransformerLens versions. When a finished run of that key exists elsewhere (another
study's ``out``), it is copied into place (complete or not at all) instead of trained,
and its row says ``cached`` with ``cached_from``. Every run a sweep trains from scratch
is recorded for later sweeps. ``cache=`` picks the index directory (default:
``$GROK_INTERP_RUN_CACHE``, else ``~/.cache/grok_interp/runs``); ``cache=False`` (or
``GROK_INTERP_RUN_CACHE=off``) trains everything as before. Only :func:`sweep` uses the
cache; :func:`grok_interp.train_hooked` always trains.

ResNet runs (``kind="resnet"``): the configurations are :class:`grok_interp.vision.ResNetConfig`
fields, each run goes through :func:`grok_interp.vision.train_resnet` (``resume=True``
likewise: a finished run is skipped, an interrupted one continues, a raised ``epochs``
trains on), runs are never batched, and a row has the events, ``final_step``,
``final_test_acc``, ``n_train``/``n_test`` and the last row's pooled-feature
uniformity (``final_feature_med_ratio``, ``final_feature_cv``) instead of ceilings.

Executors:

* ``"local"`` (default): a :class:`concurrent.futures.ProcessPoolExecutor` sized to
  the cores other processes leave free (:func:`grok_interp.threads.auto_threads`; or
  ``max_workers``), each process with ``free cores // workers`` torch threads (at
  least one; at most ``OMP_NUM_THREADS`` where it is set), so workers times threads
  never exceeds the free cores. A run given one
  thread computes its batch whole (``train_hooked(batch_parts=1)``) instead of in one
  part per core of the machine: cut for cores it does not use, a one-layer model's
  one-core step costs 12-16 % more (``benchmarks/split_cost.py --cases "one core, whole batch" "one core,
  two parts"``). Its bits then differ (within float rounding) from the same run trained
  alone with more threads, as runs trained in a batch do (``grok_interp.run_cache``:
  the scheduling is not part of a run's key);
  ``max_workers=1`` trains one run after another in the calling process.
  Workers are *spawned* (fresh interpreters that import your script), so a script
  calling :func:`sweep` with more than one worker needs the usual
  ``if __name__ == "__main__":`` guard; without it every run comes back ``failed``
  with ``BrokenProcessPool``.
* ``"ray"`` (``pip install grok-interp[ray]``): each run is a Ray task on the cluster
  at ``address`` (default: a local Ray started for the sweep and shut down after).
  ``out`` must then be storage every node can reach.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import run_cache, store
from ._validate import bad_value, check_choice, check_int
from .config import RunConfig
from .threads import auto_threads, worker_threads

__all__ = ["grid", "run_name", "sweep", "summarise", "EXECUTORS", "KINDS"]

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
#: Run kinds a sweep trains: transformer runs (train_hooked) or ResNet runs (train_resnet).
KINDS = ("transformer", "resnet")
# ResNet options that may change on a finished run without making it another run.
_RESNET_FREE = ("device", "eval_batch_size")

_NAME_OK = re.compile(r"[^A-Za-z0-9._=+-]")


def grid(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Every combination of the given option values, in row-major order.

    Example:
        >>> grid(split=["square"], k=[30, 35])
        [{'split': 'square', 'k': 30}, {'split': 'square', 'k': 35}]
    """
    keys = list(axes)
    values = [list(v) if not isinstance(v, (str, bytes)) else [v] for v in axes.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def run_name(config: Mapping[str, Any]) -> str:
    """The directory name of a configuration: ``key=value`` pairs joined by commas.

    Example:
        >>> run_name({"split": "strip", "t": 40})
        'split=strip,t=40'
    """
    if not config:
        return "base"
    parts = [f"{k}={_NAME_OK.sub('_', str(v))}" for k, v in config.items()]
    return ",".join(parts)


# Options of train_hooked that are not part of the run's configuration.
_RUN_ONLY = ("record",)


def _run_config(options: Mapping[str, Any]) -> RunConfig:
    return RunConfig.from_kwargs(**{k: v for k, v in options.items() if k not in _RUN_ONLY})


def _cache_key_config(options: Mapping[str, Any]) -> RunConfig | None:
    """The configuration a run-cache key is made of, or None when the options cannot be
    keyed (an invalid configuration, or options outside it: mask, callable op, preset)."""
    try:
        config = _run_config(options)
        run_cache.key_payload(config, options.get("record"))
    except Exception:  # noqa: BLE001 - such a run is trained, never cached
        return None
    return config


def _from_cache(cache: Path, options: Mapping[str, Any], path: Path) -> str | None:
    """Copy a cached finished run of ``options`` to ``path``; its source, or None (train it)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        return None  # a run (or anything) already there is resumed or reported by training
    config = _cache_key_config(options)
    if config is None:
        return None
    try:
        src = run_cache.copy_cached(cache, config, path, options.get("record"))
    except Exception as exc:  # noqa: BLE001 - the cache is an optimisation: train instead
        log.warning("run cache: lookup for %s failed (%s: %s); training it", path, type(exc).__name__, exc)
        return None
    return None if src is None else str(src)


def _record_in_cache(cache: Path, options: Mapping[str, Any], path: Path) -> None:
    config = _cache_key_config(options)
    if config is None:
        return
    try:
        run_cache.record_run(cache, config, path, options.get("record"))
    except Exception as exc:  # noqa: BLE001 - a run that cannot be recorded is still a good run
        log.warning("run cache: could not record %s (%s: %s)", path, type(exc).__name__, exc)


def _is_finished(options: Mapping[str, Any], path: Path, kind: str = "transformer") -> bool:
    """True when ``path`` holds a finished run of exactly this configuration."""
    if not (path.is_dir() and store.is_run_dir(path) and (path / store.STATUS).exists()):
        return False
    try:
        rs = store.RunStore(path)
        status = rs.read_status()
        saved = rs.read_meta()
        if kind == "resnet":
            from .vision import ResNetConfig

            wanted = ResNetConfig(**options).to_dict()
            got = saved.get("config", {})
            return bool(status.get("finished")) and all(got.get(k) == v for k, v in wanted.items()
                                                        if k not in _RESNET_FREE)
        from .runs import read_config

        wanted = _run_config(options).to_dict()
        # read_config fills the keys a run saved in an older format left out with what
        # they meant then (TrainConfig.ADDED_KEYS: a format-3 run has eval_sparse 1, dense)
        got = read_config(path).to_dict()
    except Exception:  # noqa: BLE001 - unreadable or invalid: let training report it
        return False
    return bool(status.get("finished")) and all(got[s] == wanted[s] for s in ("data", "model", "train"))


def _cpu_options(threads: int) -> dict[str, Any]:
    """``train_hooked``'s CPU options for a run a worker gives ``threads`` threads: a run
    given one core computes its batch whole (see the module docstring)."""
    return {"threads": max(1, threads), "batch_parts": 1 if threads <= 1 else None}


def _train_one(options: dict[str, Any], run_dir: str, threads: int, kind: str = "transformer") -> dict[str, Any]:
    """Train (or resume, or skip) one run; return its status. Runs in a worker process."""
    if kind == "resnet":
        from .vision import train_resnet as train
    else:
        from .runs import train_hooked as train

    torch.set_num_threads(max(1, threads))
    path = Path(run_dir)
    start = time.perf_counter()
    try:
        if _is_finished(options, path, kind):
            return {"status": "skipped", "error": "", "wall_s": 0.0, "batch_size": 0}
        exists = path.is_dir() and store.is_run_dir(path)
        extra = _cpu_options(threads) if kind == "transformer" else {}
        train(out=path, resume=exists, progress=False, **extra, **options)
        return {"status": "done", "error": "", "wall_s": time.perf_counter() - start, "batch_size": 1}
    except Exception as exc:  # noqa: BLE001 - a failing config is a row, not the end of the sweep
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "wall_s": time.perf_counter() - start,
                "batch_size": 1}


def _train_unit(
    unit: list[tuple[str, dict[str, Any], str]], threads: int, kind: str = "transformer"
) -> dict[str, dict[str, Any]]:
    """Train one unit of work: a single run, or a batch of compatible runs trained as
    one computation by :func:`grok_interp.many_runs.train_many`. If the batch fails, its
    runs are trained one by one, so a bad configuration only fails its own row."""
    if len(unit) == 1:
        name, opts, run_dir = unit[0]
        return {name: _train_one(opts, run_dir, threads, kind)}
    from .many_runs import train_many

    torch.set_num_threads(max(1, threads))
    start = time.perf_counter()
    try:
        specs = [{k: v for k, v in opts.items() if k not in _RUN_ONLY} for _, opts, _ in unit]
        train_many(specs, outs=[d for _, _, d in unit], resume=True, record=unit[0][1].get("record"),
                   progress=False, **_cpu_options(threads))
    except Exception as exc:  # noqa: BLE001 - isolate the failing run(s)
        log.warning("a batch of %d runs failed (%s: %s); training them one by one", len(unit), type(exc).__name__, exc)
        return {name: _train_one(opts, run_dir, threads) for name, opts, run_dir in unit}
    wall = time.perf_counter() - start
    return {name: {"status": "done", "error": "", "wall_s": wall, "batch_size": len(unit)} for name, _, _ in unit}


def _units(
    jobs: list[tuple[str, dict[str, Any], str]], workers: int, batched: bool
) -> list[list[tuple[str, dict[str, Any], str]]]:
    """Group runs that can share one batched computation (same shapes, same recorded measures)
    into units, about ``len(group) / workers`` runs each so every worker gets work."""
    if not batched or len(jobs) < 2:
        return [[j] for j in jobs]
    try:
        from .many_runs import batch_key
    except ImportError:  # pragma: no cover - older installs without the batched trainer
        return [[j] for j in jobs]
    groups: dict[Any, list[tuple[str, dict[str, Any], str]]] = {}
    for i, job in enumerate(jobs):
        try:
            key = batch_key(_run_config(job[1]))
        except Exception:  # noqa: BLE001 - an invalid config trains alone and fails there
            key = None
        key = ("single", i) if key is None else (key, repr(job[1].get("record")))
        groups.setdefault(key, []).append(job)
    units: list[list[Any]] = []
    for members in groups.values():
        size = max(1, math.ceil(len(members) / workers))
        units.extend(members[j : j + size] for j in range(0, len(members), size))
    return units


def summarise(run_dir: str | os.PathLike, radii: Sequence[int] = ()) -> dict[str, Any]:
    """One table row for a run directory: events, final accuracy and predicted ceilings.

    Reads only ``config.json``, ``data.safetensors`` and the history (no model is built),
    so it is cheap to call on many runs, finished or not.

    Args:
        run_dir: A run directory written by :func:`grok_interp.train_hooked`.
        radii: Radii ``r`` for ``ceiling_r{r}`` columns (:func:`grok_interp.theory.predicted_ceiling`).

    Returns:
        A dict with ``memorised_at``, ``grokked_at``, ``halfway_at``, ``u_acc``, ``l_acc``,
        ``final_step``, ``final_test_acc``, ``n_train``, ``n_test``, ``ceiling`` and
        ``ceiling_r{r}`` (a ResNet run: no ceilings, and the final pooled-feature
        uniformity ``final_feature_med_ratio`` and ``final_feature_cv``), and
        ``train_s``: the seconds its training took, summed over the sittings of a
        resumed run, as its ``status.json`` records them (NaN for runs written before).
    """
    from .measures import events
    from .runs import read_config, read_task_split

    path = Path(run_dir)
    if store.run_kind(path) == "resnet":
        return {**_summarise_resnet(path), "train_s": _train_seconds(store.RunStore(path).read_status())}
    config = read_config(path)
    _, split = read_task_split(path, config)
    rs = store.RunStore(path)
    status = rs.read_status()
    if status.get("finished") or not rs.state_steps():
        history = store.read_history(rs.file(store.HISTORY))
    else:
        state = rs.latest_valid_state(eval_every=config.train.eval_every, eval_sparse=config.train.eval_sparse)
        history = state.history if state is not None else store.read_history(rs.file(store.HISTORY))
    row: dict[str, Any] = {
        k: v for k, v in events(history).to_dict().items() if k in ("memorised_at", "grokked_at", "halfway_at", "u_acc", "l_acc")
    }
    row["final_step"] = int(history["step"].iloc[-1])
    row["final_test_acc"] = float(history["test_acc"].iloc[-1])
    row.update(_ceilings(split, radii))
    row["train_s"] = _train_seconds(status)
    return row


def _train_seconds(status: dict[str, Any]) -> float:
    """Seconds a run has trained (summed over sittings, up to its last checkpoint or its
    end) from its ``status.json``; NaN for a run written before runs counted them."""
    return float(status.get("train_s", math.nan))


def _summarise_resnet(path: Path) -> dict[str, Any]:
    from .measures import events
    from .vision import load_resnet_run

    run = load_resnet_run(path)  # the history of the finished run or its newest resume state
    history = run.history
    live = store.read_history(store.RunStore(path).file(store.HISTORY))
    if len(live) > len(history):  # a run still training has evaluated further
        history = live
    row: dict[str, Any] = {
        k: v for k, v in events(history).to_dict().items() if k in ("memorised_at", "grokked_at", "halfway_at", "u_acc", "l_acc")
    }
    last = history.iloc[-1]
    row.update(final_step=int(last["step"]), final_test_acc=float(last["test_acc"]),
               n_train=run.split.n_train, n_test=run.split.n_test,
               final_feature_med_ratio=float(last["feature_med_ratio"]), final_feature_cv=float(last["feature_cv"]))
    return row


def _ceilings(split: Any, radii: Sequence[int]) -> dict[str, Any]:
    from .theory import coverage_ceiling, predicted_ceiling, symmetry_ceiling

    out: dict[str, Any] = {
        "n_train": split.n_train,
        "n_test": split.n_test,
        "ceiling": coverage_ceiling(split),
        "ceiling_transpose": symmetry_ceiling(split, ["token_transpose"]),  # = transpose when offset is 0
    }
    for r in radii:
        out[f"ceiling_r{r}"] = predicted_ceiling(split, r)
    return out


def _predicted_only(options: Mapping[str, Any], radii: Sequence[int]) -> dict[str, Any]:
    """Ceilings of a configuration that has no run directory (e.g. it failed early)."""
    from .groups import build_task
    from .tasks import Split

    try:
        d = _run_config(options).data
        task = build_task(d.p, d.op, d.offset)
        return _ceilings(Split.from_config(task, d), radii)
    except Exception:  # noqa: BLE001 - the config itself is bad: its error is already in the row
        return {}


def sweep(
    configs: Iterable[Mapping[str, Any]],
    out: str | os.PathLike,
    *,
    base: Mapping[str, Any] | None = None,
    executor: str = "local",
    max_workers: int | None = None,
    address: str | None = None,
    radii: Sequence[int] = (),
    batched: bool = True,
    progress: bool = True,
    cache: bool | str | os.PathLike | None = None,
    kind: str = "transformer",
) -> pd.DataFrame:
    """Train every configuration (skipping finished ones) and return one results table.

    Args:
        configs: Option dicts for :func:`grok_interp.train_hooked` (see :func:`grid`);
            each names its run directory ``out/<run_name(config)>``. ``record``
            (measure names to record while training) may be given too.
        out: Directory holding the run directories and ``sweep.csv``.
        base: Options shared by every configuration (a configuration's own value wins).
        executor: ``"local"`` (process pool) or ``"ray"`` (Ray tasks; needs the
            ``ray`` extra).
        max_workers: Parallel runs (local default: the number of CPU cores, at most
            the number of configurations; Ray default: what the cluster schedules).
        address: Ray cluster address (``"auto"``, ``"ray://host:10001"``, ...);
            ``None`` starts a local Ray for this sweep (``max_workers`` CPUs).
        radii: Radii for extra ``ceiling_r{r}`` columns.
        batched: Train runs with identical shapes (see
            :func:`grok_interp.many_runs.batch_key`) as one batched computation
            (:func:`grok_interp.many_runs.train_many`), split into about one batch per
            worker; each run still gets its own directory and row.
        progress: Show a progress bar over finished runs.
        cache: The run cache's index directory (see the module docstring and
            :mod:`grok_interp.run_cache`); ``None``/``True``: ``$GROK_INTERP_RUN_CACHE``,
            else ``~/.cache/grok_interp/runs``; ``False``: no cache (every run trains).
        kind: ``transformer`` (:func:`grok_interp.train_hooked`) or ``resnet``
            (:func:`grok_interp.vision.train_resnet`; never batched, no ceilings).

    Returns:
        The table described in the module docstring, in the order of ``configs``.
    """
    check_choice("executor", executor, EXECUTORS)
    check_choice("kind", kind, KINDS)
    batched = batched and kind == "transformer"
    if max_workers is not None:
        check_int("max_workers", max_workers, low=1)
    radii = [check_int("radius", int(r), low=0) for r in radii]
    cache_path = run_cache.cache_dir(cache) if kind == "transformer" else None  # ResNet runs: never cached
    base = dict(base or {})
    overrides = [dict(c) for c in configs]
    if not overrides:
        raise bad_value("configs", [], "give at least one configuration")
    names = [run_name(c) for c in overrides]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise bad_value("configs", dupes, "two configurations share a run directory name; make them differ")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(name, {**base, **c}, str(out.resolve() / name)) for name, c in zip(names, overrides)]

    # Finished runs are skipped, and cached ones copied, here, before any worker starts.
    results: dict[str, dict[str, Any]] = {}
    cached_from: dict[str, str] = {}
    fresh: set[str] = set()  # trained from scratch in this call: what the cache may record
    todo = []
    for name, options, run_dir in jobs:
        path = Path(run_dir)
        if _is_finished(options, path, kind):
            results[name] = {"status": "skipped", "error": "", "wall_s": 0.0, "batch_size": 0}
            continue
        start = time.perf_counter()
        src = _from_cache(cache_path, options, path) if cache_path is not None else None
        if src is not None:
            results[name] = {"status": "cached", "error": "", "wall_s": time.perf_counter() - start, "batch_size": 0}
            cached_from[name] = src
            log.info("sweep run %s: copied from the run cache (trained in %s)", name, src)
            continue
        if store.RunStore(path).is_empty():
            fresh.add(name)
        todo.append((name, options, run_dir))
    by_name = {name: (options, Path(run_dir)) for name, options, run_dir in jobs}

    def on_done(unit_results: dict[str, dict[str, Any]]) -> None:
        """Record runs in the cache as soon as they finish (an interrupted sweep keeps them)."""
        if cache_path is None:
            return
        for name, res in unit_results.items():
            if name in fresh and res["status"] == "done":
                _record_in_cache(cache_path, *by_name[name])

    note = f"{len(cached_from)} copied from the run cache" if cached_from else ""
    cores = auto_threads() if todo and executor == "local" else (os.cpu_count() or 1)  # the cores free now
    if todo and executor == "local":
        workers = min(max_workers or cores, len(todo))
        units = _units(todo, workers, batched)
        workers = min(workers, len(units))
        results.update(_run_local(units, workers, worker_threads(cores, workers), progress, note, on_done, kind))
    elif todo:
        units = _units(todo, max_workers or cores, batched)
        results.update(_run_ray(units, address, max_workers, progress, note, on_done, kind))

    rows = []
    keys = list(dict.fromkeys(k for c in overrides for k in c))
    for (name, options, _), c in zip(jobs, overrides):
        res = results[name]
        row: dict[str, Any] = {"run": name, **{k: c.get(k) for k in keys}, "status": res["status"], "error": res["error"]}
        run_dir = out / name
        try:
            row.update(summarise(run_dir, radii))
        except Exception as exc:  # noqa: BLE001 - a run without a readable directory
            if res["status"] != "failed":
                row["status"], row["error"] = "failed", f"{type(exc).__name__}: {exc}"
            if kind == "transformer":
                row.update(_predicted_only(options, radii))
        row["wall_s"] = res["wall_s"]
        row["batch_size"] = res["batch_size"]
        row["cached_from"] = cached_from.get(name, "")
        row["path"] = str(run_dir)
        rows.append(row)
    table = pd.DataFrame(rows)
    for col in ("memorised_at", "grokked_at", "halfway_at", "final_step", "n_train", "n_test"):
        if col in table:
            table[col] = table[col].astype("Int64")
    store.write_csv(out / "sweep.csv", table)
    failed = table[table["status"] == "failed"]
    for _, r in failed.iterrows():
        log.warning("sweep run %s failed: %s", r["run"], r["error"])
    return table


def _failed(exc: BaseException) -> dict[str, Any]:
    return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "wall_s": math.nan, "batch_size": 1}


def _run_local(
    units: list[list[tuple[str, dict[str, Any], str]]], workers: int, threads: int, progress: bool, note: str = "",
    on_done: Callable[[dict[str, dict[str, Any]]], None] = lambda results: None, kind: str = "transformer",
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=sum(len(u) for u in units), disable=not progress, desc="sweep", unit="run", postfix=note or None)
    if workers == 1:  # one unit at a time, in this process (no start-up cost, easy to debug)
        before = torch.get_num_threads()
        try:
            for unit in units:
                done_unit = _train_unit(unit, before, kind)
                results.update(done_unit)
                on_done(done_unit)
                bar.update(len(unit))
        finally:
            torch.set_num_threads(before)
            bar.close()
        return results
    # spawn: a fresh interpreter per worker (forking a process that already runs torch
    # threads can deadlock).
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_train_unit, unit, threads, kind): unit for unit in units}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                unit = futures[fut]
                try:
                    done_unit = fut.result()
                except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OS
                    done_unit = {name: _failed(exc) for name, _, _ in unit}
                results.update(done_unit)
                on_done(done_unit)
                bar.update(len(unit))
    bar.close()
    return results


def _run_ray(
    units: list[list[tuple[str, dict[str, Any], str]]], address: str | None, max_workers: int | None, progress: bool,
    note: str = "", on_done: Callable[[dict[str, dict[str, Any]]], None] = lambda results: None,
    kind: str = "transformer",
) -> dict[str, dict[str, Any]]:
    try:
        import ray
    except ImportError as exc:
        raise bad_value("executor", "ray", "needs Ray: pip install 'grok-interp[ray]'") from exc
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None:
            kwargs["num_cpus"] = max_workers or os.cpu_count() or 1
        ray.init(address=address, **kwargs)
        started = True
    results: dict[str, dict[str, Any]] = {}
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_train_unit)
        refs = {task.remote(unit, 1, kind): unit for unit in units}
        bar = tqdm(total=sum(len(u) for u in units), disable=not progress, desc="sweep (ray)", unit="run",
                   postfix=note or None)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                unit = refs[ref]
                try:
                    done_unit = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a lost worker or node
                    done_unit = {name: _failed(exc) for name, _, _ in unit}
                results.update(done_unit)
                on_done(done_unit)
                bar.update(len(unit))
        bar.close()
    finally:
        if started:
            ray.shutdown()
    return results
