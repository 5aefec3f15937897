"""Shared plumbing of the example scripts: setups, seeds, results as data, tables, plots.

Every example is a study written as data: a list of configurations run through
:func:`grok_interp.sweeps.sweep`, so rerunning an example skips the runs it already
finished and resumes interrupted ones.

Two setups (``--setup``):

* ``library``: the library's defaults as the study has always run them (float64
  cross-entropy, all TransformerLens biases, ``torch.randperm`` split with data seed 598,
  the study's own step cap).
* ``reference``: the settings of the reference script the paper's figure comes from
  (Qihuai27/Grokking-Insight): :data:`REFERENCE` for every transformer study, plus the
  study's own (data seed, fraction, layers, MED variant, ...; see each script).

Every configuration runs once per model seed (``--seeds``, default :data:`SEEDS`): the
reference code sets no torch seed, so each of its runs starts from a fresh init, and one
seed says nothing about the spread.

Results as data: after training, a study writes ``results/<study>/<setup>/sweep.csv``
(one row per run: configuration, events, ceilings and the study's own columns) and
``histories/<run>.csv`` (the columns its plots need, one row every
:data:`HISTORY_EVERY` steps plus the last; events are computed from the full history
before thinning), then builds its tables and plots from those files alone;
``--report-only`` does only that second part, without training.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETUPS = ("library", "reference")
# Model seeds of every configuration (both setups). The reference code sets none: a fresh
# init per run; three fixed seeds make that reproducible.
SEEDS = (0, 1, 2)
# Settings every reference transformer study shares: transformer/rec.py, str.py, base.py
# (attention and unembedding without biases, float32 cross-entropy, the training pairs
# of Python's random.seed(s); random.shuffle, s set per study) and its budget: the
# scripts' 30000 epochs (rec.py says 300, which cannot grok; str.py and base.py 30000),
# cut short only by two rules that cannot stop a run before a late jump of test
# accuracy: 2000 steps after test accuracy first reaches 0.99 (the jump has happened),
# or the plateau rule (grok_interp.training.PlateauClock) with patience 10000 steps -
# no new high of test accuracy (+0.01) for max(10000, clock) steps with training
# accuracy held. 10000 is 1.4x the longest memorisation-to-GO-Epoch gap measured at
# p = 97 (140 -> 7300, random split, seed 999). Every row evaluated (eval_sparse=1, not the
# library's adaptive evaluation): the reference code logs test accuracy every epoch, the
# plateau rule reads every row, and the runs these studies saved before adaptive
# evaluation existed are dense (their config.json has no eval_sparse, which means 1), so
# they resume and are skipped under the same configuration.
REFERENCE_BUDGET = dict(steps=30000, stop_after_grok=2000, stop_on_plateau=10000, eval_sparse=1)
REFERENCE_DATA = dict(shuffle="python", loss="ce_float32")
REFERENCE_TRANSFORMER = dict(attn_bias=False, unembed_bias=False)
REFERENCE = {**REFERENCE_DATA, **REFERENCE_TRANSFORMER, **REFERENCE_BUDGET}
# The reference MLP baseline (MLP/*.py): [E[a], E[b], E[=]] -> 512 -> 512 -> p, nn.Linear's init.
REFERENCE_MLP = dict(arch="mlp", mlp_input="operands_and_eq", init="linear_default")
# The MED variants the reference scripts compute (rec.py's scaled sum, str.py's sum,
# base.py's average): every reference study whose runs can coincide records all three,
# so a run two studies share has one training key and trains once (the run cache).
REFERENCE_RECORD = ["med_drop_last_avg", "med_drop_last_sum", "med_drop_last_scaled_sum"]
# The ways to make grokking happen sooner or without weight decay (issue: accelerators),
# as configuration fields: examples/accelerators.py trains each; square_strip.py
# --accelerator reruns its splits with one.
ACCELERATORS: dict[str, dict] = {
    "none": {},
    "grokfast_ema": {"grokfast": "ema"},  # alpha 0.98, lamb 2: the defaults, recorded in config.json
    "stablemax_perp_wd0": {"loss": "stablemax", "perpendicular_grad": True, "weight_decay": 0.0},
    "stablemax_perp_wd1": {"loss": "stablemax", "perpendicular_grad": True, "weight_decay": 1.0},
}
# Histories in results/: one row every this many steps (plus the last row).
HISTORY_EVERY = 100
# Per-run columns every seed summary aggregates: median, min and max over seeds.
SEED_METRICS = ("u_acc", "l_acc", "halfway_at", "onset_at")


def parser(description: str, default_out: str, setups: Sequence[str] = SETUPS,
           batching: bool = True) -> argparse.ArgumentParser:
    """Arguments every example takes: setup (of ``setups``, those the example has), seeds,
    scale, output directories, executor; ``--no-batch`` only where the study batches runs
    (``batching``: a study whose runs always train one by one does not offer it)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--setup", choices=setups, default="library",
                    help="library (the library's defaults, default) or reference (the reference code's settings)")
    ap.add_argument("--seeds", default=None,
                    help=f"comma-separated model seeds (default {','.join(map(str, SEEDS))}; quick: 0,1)")
    ap.add_argument("--report-only", action="store_true",
                    help="no training: rebuild the tables and plots from the results directory")
    ap.add_argument("--results", default=None,
                    help="results directory (default results/<study>/<setup> at paper scale, else OUT/results)")
    ap.add_argument("--quick", action="store_true", help="small scale (seconds; for smoke tests): --scale quick")
    ap.add_argument("--scale", default=None,
                    help="paper (default), reduced (smaller p or fewer steps, where the script has one) or quick")
    ap.add_argument("--out", default=None,
                    help=f"run directories (default {default_out}/<setup>, or {default_out}-quick/<setup>)")
    ap.add_argument("--workers", type=int, default=None, help="parallel runs (default: CPU cores)")
    ap.add_argument("--executor", default="local", help="local or ray")
    if batching:
        ap.add_argument("--no-batch", action="store_true",
                        help="train every run on its own (no grok_interp.many_runs batches of same-shaped runs)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--only", default=None, metavar="QUERY",
                    help="run (and export) only the configurations matching this expression over their keys: "
                    "key names, numbers, quoted strings, == != < <= > >= in, and/or/not and parentheses, "
                    "e.g. \"split == 'strip' and t >= 60\" (the results then hold only those runs)")
    ap.add_argument("--no-cache", action="store_true",
                    help="train every run, even one another study already trained with the same configuration "
                    "(default: copy it from the run cache, grok_interp.run_cache)")
    ap.add_argument("--plan", default=None, metavar="CSV",
                    help="train nothing: write the runs this command would train (group, run, run-cache key) "
                    "to CSV and exit (benchmarks/run_cache_overlap.py compares the studies' plans)")
    ap.set_defaults(default_out=default_out)
    return ap


def scale(args: argparse.Namespace, scales: dict[str, dict]) -> dict:
    """The settings of the setup and scale asked for (``--quick`` is ``--scale quick``).

    ``scales`` maps setup -> scale name -> settings."""
    name = args.scale or ("quick" if args.quick else "paper")
    if args.setup not in scales:
        raise SystemExit(f"error: --setup {args.setup} is not one this example has: {', '.join(scales)}")
    of_setup = scales[args.setup]
    if name not in of_setup:
        raise SystemExit(f"error: --scale={name!r} is invalid for --setup {args.setup}: "
                         f"this example has {', '.join(of_setup)}")
    args.scale = name
    return of_setup[name]


def setup(args: argparse.Namespace) -> Path:
    """Logging, the seeds, and the output directory (run directories) of this setup."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    name = args.scale or ("quick" if args.quick else "paper")
    if args.seeds is None:
        args.seeds = [0, 1] if name == "quick" else list(SEEDS)
    elif isinstance(args.seeds, str):
        args.seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    out = Path(args.out or (args.default_out + ("" if name == "paper" else f"-{name}"))) / setup_label(args)
    if not args.report_only:
        out.mkdir(parents=True, exist_ok=True)
    return out


def add_accelerator(ap: argparse.ArgumentParser) -> None:
    """``--accelerator``: rerun a study's configurations with one of :data:`ACCELERATORS`."""
    ap.add_argument("--accelerator", default="none", choices=list(ACCELERATORS),
                    help="train every run with this accelerator (default none); its run directories and "
                    "results go to <setup>-<accelerator>")


def accelerated(args: argparse.Namespace, base: dict) -> dict:
    """A study's base configuration with ``--accelerator``'s fields (the base itself for none)."""
    return {**base, **ACCELERATORS[getattr(args, "accelerator", "none")]}


def setup_label(args: argparse.Namespace) -> str:
    """The directory name of a setup: ``reference``, or ``reference-grokfast_ema`` with
    ``--accelerator grokfast_ema``."""
    acc = getattr(args, "accelerator", "none")
    return args.setup if acc == "none" else f"{args.setup}-{acc}"


def results_dir(args: argparse.Namespace, study: str, out: Path) -> Path:
    """Where a study's results live: ``results/<study>/<setup>`` at paper scale (committed
    with the repository), ``OUT/results`` otherwise, or ``--results``."""
    if args.results:
        return Path(args.results)
    if args.scale == "paper":
        return ROOT / "results" / study / setup_label(args)
    return out / "results"


def with_seeds(configs: Iterable[dict], seeds: Sequence[int]) -> list[dict]:
    """Every configuration once per model seed (``seed`` last, so run names end in it)."""
    return [{**c, "seed": int(s)} for c in configs for s in seeds]


def run_sweep(groups: Sequence[tuple[str, dict, list[dict]]], out: Path, args: argparse.Namespace,
              **kwargs: Any) -> pd.DataFrame:
    """Sweep each ``(name, base, configs)`` group (into ``out/name``, or ``out`` for the
    name ``""``) and return one table. Groups exist because a sweep has one ``base``:
    e.g. the reference transformer's bias-free options must not reach the MLP runs."""
    from grok_interp.sweeps import sweep

    if getattr(args, "plan", None):
        write_plan(groups, args)
        raise SystemExit(0)
    only = getattr(args, "only", None)
    chosen = [(name, base, select(configs, only)) for name, base, configs in groups]
    if not any(configs for _, _, configs in chosen):
        total = sum(len(configs) for _, _, configs in groups)
        raise SystemExit(f"error: --only {only!r} matches none of the study's {total} configurations")
    tables = []
    for name, base, configs in chosen:
        if configs:
            tables.append(sweep(configs, out / name if name else out, base=base, **sweep_kwargs(args), **kwargs))
    return pd.concat(tables, ignore_index=True)


def write_plan(groups: Sequence[tuple[str, dict, list[dict]]], args: argparse.Namespace) -> pd.DataFrame:
    """``--plan``: one row per run the sweep would train (``group``, ``run``, the run's
    ``key`` in the run cache, empty when it cannot be cached), written to ``args.plan``."""
    from grok_interp.run_cache import options_key
    from grok_interp.sweeps import run_name

    rows = [{"group": name, "run": run_name(c), "key": options_key({**base, **c}) or ""}
            for name, base, configs in groups for c in select(configs, getattr(args, "only", None))]
    plan = pd.DataFrame(rows, columns=["group", "run", "key"])
    path = Path(args.plan)
    if path.is_dir():
        raise SystemExit(f"error: --plan {path} is a directory; give the CSV file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # a missing folder is made
        plan.to_csv(path, index=False)
    except OSError as exc:  # read-only, a file where a folder should be, no space: one line
        raise SystemExit(f"error: --plan {path}: {exc.strerror or exc}") from None
    print(f"plan of {len(plan)} runs written to {path}")
    return plan


def select(configs: Sequence[dict], query: str | None) -> list[dict]:
    """The configurations matching ``query`` (all when None), an expression of
    :mod:`grok_interp.selection` over their keys: key names, literals, comparisons,
    and/or/not and parentheses, parsed by that module and never run as Python. A key a
    configuration lacks is missing, which no comparison matches."""
    from grok_interp.errors import GrokInterpError
    from grok_interp.selection import select as select_configs

    try:
        return select_configs(configs, query, param="only")
    except GrokInterpError as exc:
        why = exc.allowed or str(exc)
        if "keys:" not in why:
            why += f" (keys: {', '.join(dict.fromkeys(k for c in configs for k in c))})"
        raise SystemExit(f"error: --only {query!r} is invalid: {why}") from None


def export(table: pd.DataFrame, results: Path, columns: Sequence[str],
           per_run: Callable[[pd.Series, pd.DataFrame], dict] | None = None) -> pd.DataFrame:
    """Write a sweep's results as data: ``sweep.csv`` and thinned histories.

    Adds ``onset_at`` (GO-Epoch by the onset rule) from each full history, and the
    columns ``per_run(row, full_history)`` returns (a study's own numbers that need the
    full history or the run directory). Histories keep ``columns`` (those present), one
    row every :data:`HISTORY_EVERY` steps plus the last. The ``path`` and ``cached_from``
    columns are dropped (run directories are not part of the results).

    A sweep of part of the study (``--only``, ``--seeds``) adds to the results instead of
    replacing them: rows of an earlier ``sweep.csv`` whose run is not in ``table`` (and
    whose history is still there) are kept, in their place; a run in both takes the new
    row."""
    from grok_interp.measures import events

    hist_dir = results / "histories"
    hist_dir.mkdir(parents=True, exist_ok=True)
    table = table.copy()
    extra: list[dict] = []
    for _, row in table.iterrows():
        cols: dict[str, Any] = {"onset_at": None}
        path = Path(row["path"]) / "history.csv"
        if row["status"] != "failed" and path.exists():
            h = pd.read_csv(path)
            cols["onset_at"] = events(h).onset_at
            if per_run is not None:
                cols.update(per_run(row, h))
            keep = (h["step"] % HISTORY_EVERY == 0) | (h.index == len(h) - 1)
            h.loc[keep, [c for c in ["step", *columns] if c in h.columns]].to_csv(
                hist_dir / f"{row['run']}.csv", index=False, float_format="%.6g")
        extra.append(cols)
    table = add_columns(table, extra)
    table["onset_at"] = table["onset_at"].astype("Int64")
    table = table.drop(columns=["path", "cached_from"], errors="ignore")
    table = merge_with_earlier(table, results)
    table.to_csv(results / "sweep.csv", index=False, float_format="%.6g")
    print(f"results written to {results}")
    return table


def add_columns(table: pd.DataFrame, rows: Sequence[dict]) -> pd.DataFrame:
    """``table`` with one more column per key of ``rows`` (one dict per table row, in order).

    A key the table already has replaces that column where it stands, so a name never
    appears twice in a CSV (``pd.concat(axis=1)`` would keep both, and a reader would see
    ``u_acc`` and ``u_acc.1``)."""
    if len(rows) != len(table):
        raise ValueError(f"{len(rows)} rows of columns for a table of {len(table)} rows")
    extra = pd.DataFrame(list(rows), index=range(len(table)))
    table = table.reset_index(drop=True).copy()
    for col in extra.columns:
        table[col] = extra[col]
    return table


def steps_to_99(row: pd.Series, history: pd.DataFrame) -> dict:
    """The first step of the full history with test accuracy >= 0.99 (NaN if none)."""
    hit = history.loc[history["test_acc"] >= 0.99, "step"]
    return {"steps_to_99": float(hit.iloc[0]) if len(hit) else np.nan}


def transpose_accuracy(row: pd.Series, history: pd.DataFrame) -> dict:
    """The final model's accuracy on the test pairs whose transpose (b, a) - same answer,
    f is symmetric - trained, and on all the others (needs the run directory)."""
    import torch

    import grok_interp as g
    from grok_interp.theory import symmetry_covered

    run = g.load_run(row["path"])
    covered = symmetry_covered(run.split, ["transpose"])
    pairs = run.split.test_pairs
    with torch.no_grad():
        correct = run.model(run.task.tokens(pairs))[:, -1].argmax(-1) == run.task.answers(pairs)
    nan = float("nan")
    return {"acc_transpose_trained": correct[covered].float().mean().item() if covered.any() else nan,
            "acc_other": correct[~covered].float().mean().item() if (~covered).any() else nan}


def read_sweep_csv(path: Path) -> pd.DataFrame:
    """A study's ``sweep.csv``. Files written before the package gave "grokked" one
    meaning (test accuracy >= 0.99) hold the half-way GO-Epoch as ``grokked_at``: it is
    read back as ``halfway_at``, the name it has now."""
    table = pd.read_csv(path)
    if "grokked_at" in table.columns and "halfway_at" not in table.columns:
        table = table.rename(columns={"grokked_at": "halfway_at"})
    return table


def merge_with_earlier(table: pd.DataFrame, results: Path) -> pd.DataFrame:
    """``table`` with the earlier ``sweep.csv``'s rows of the runs it does not have (see :func:`export`)."""
    path = results / "sweep.csv"
    if not path.exists():
        return table
    old = read_sweep_csv(path)
    if "run" not in old.columns:
        return table
    new = table.set_index("run", drop=False)
    kept = [r for r in old["run"] if r not in new.index and (results / "histories" / f"{r}.csv").exists()]
    if not kept:
        return table
    before = set(old["run"])
    order = [r for r in old["run"] if r in new.index or r in kept] + [r for r in table["run"] if r not in before]
    merged = pd.concat([new, old.set_index("run", drop=False).loc[kept]])  # columns: the union, new ones first
    print(f"kept {len(kept)} earlier result rows of runs outside this sweep (in {path})")
    return merged.loc[order].reset_index(drop=True)


def write_run_rows(rows: Sequence[pd.DataFrame], results: Path, name: str) -> pd.DataFrame | None:
    """Write a table of several rows per run (a ``run`` column, e.g. one row per measure)
    to ``results/name`` after :func:`export`, merged as ``sweep.csv`` is: a run in
    ``rows`` takes its new rows, and the earlier file's rows of runs still in
    ``sweep.csv`` stay, so a ``--only``/``--seeds`` sweep of part of a study adds to the
    table instead of replacing it. Rows follow ``sweep.csv``'s run order. Returns the
    table written (None, and nothing written, when there are no rows at all)."""
    path = results / name
    new_runs = {run for part in rows for run in part["run"]}
    parts = list(rows)
    if path.exists():
        earlier = pd.read_csv(path)
        if "run" in earlier.columns:
            parts.insert(0, earlier[~earlier["run"].isin(new_runs)])
    if not parts:
        return None
    fresh = pd.concat(parts, ignore_index=True)
    runs = list(pd.read_csv(results / "sweep.csv")["run"]) if (results / "sweep.csv").exists() else []
    order = {r: i for i, r in enumerate(runs)}
    fresh = fresh[fresh["run"].isin(order)]  # a run dropped from sweep.csv loses its rows here too
    fresh = fresh.sort_values("run", key=lambda runs: runs.map(order), kind="stable")
    fresh.to_csv(path, index=False, float_format="%.6g")
    return fresh.reset_index(drop=True)


def load(results: Path) -> tuple[pd.DataFrame, Callable[[str], pd.DataFrame]]:
    """A study's results: the table and a function ``run name -> thinned history``."""
    path = results / "sweep.csv"
    if not path.exists():
        raise SystemExit(f"error: no results in {results} (run the study without --report-only first)")
    table = read_sweep_csv(path)
    for col in ("memorised_at", "grokked_at", "halfway_at", "onset_at", "final_step", "n_train", "n_test"):
        if col in table:
            table[col] = table[col].astype("Int64")

    def hist(run: str) -> pd.DataFrame:
        return pd.read_csv(results / "histories" / f"{run}.csv")

    return table, hist


def seed_summary(table: pd.DataFrame, by: Sequence[str], metrics: Sequence[str] = SEED_METRICS) -> pd.DataFrame:
    """One row per configuration (``by``): seeds, how many grokked, and the median, min
    and max over seeds of each metric (GO-Epochs over the seeds that grokked)."""
    by = [b for b in by if b in table.columns]
    ok = table[table["status"] != "failed"].copy()
    for b in by:  # NaN keys (e.g. k of a STRIP run) must not drop rows; 30.0 reads 30
        ok[b] = [("-" if pd.isna(v) else int(v) if isinstance(v, (float, np.floating)) and float(v).is_integer()
                  else v) for v in ok[b]]
    rows = []
    for key, g in ok.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, key))
        row["seeds"] = len(g)
        row["grokked"] = int(g["halfway_at"].notna().sum()) if "halfway_at" in g else 0
        for m in metrics:
            v = pd.to_numeric(g[m], errors="coerce").dropna() if m in g else pd.Series(dtype=float)
            row[f"{m}_median"] = float(v.median()) if len(v) else np.nan
            row[f"{m}_min"] = float(v.min()) if len(v) else np.nan
            row[f"{m}_max"] = float(v.max()) if len(v) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def spread(summary: pd.DataFrame, metrics: Sequence[str] = SEED_METRICS) -> pd.DataFrame:
    """A seed summary for reading: ``median [min, max]`` per metric."""
    out = summary.drop(columns=[c for m in metrics for c in (f"{m}_median", f"{m}_min", f"{m}_max")
                                if c in summary.columns])
    for m in metrics:
        if f"{m}_median" not in summary:
            continue
        digits = 0 if m.endswith("_at") or m.startswith("steps") else 3
        out[m] = [
            "-" if np.isnan(md) else f"{md:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
            for md, lo, hi in zip(summary[f"{m}_median"], summary[f"{m}_min"], summary[f"{m}_max"])
        ]
    return out


def report_summary(table: pd.DataFrame, by: Sequence[str], results: Path, title: str,
                   metrics: Sequence[str] = SEED_METRICS) -> pd.DataFrame:
    """Print and write (``summary.csv``) the seed summary of a table."""
    summary = seed_summary(table, by, metrics)
    summary.to_csv(results / "summary.csv", index=False, float_format="%.6g")
    show(spread(summary, metrics), f"{title}: median [min, max] over seeds")
    return summary


def config_label(row: pd.Series, keys: Sequence[str]) -> str:
    """``k=v,...`` of a row's configuration keys (no seed): a legend label."""
    parts = []
    for k in keys:
        v = row.get(k)
        if v is None or v is pd.NA or v == "-" or (isinstance(v, float) and np.isnan(v)):
            continue
        parts.append(f"{k}={int(v) if isinstance(v, float) and v.is_integer() else v}")
    return ",".join(parts)


def show(table: pd.DataFrame, title: str, columns: list[str] | None = None) -> None:
    """Print a table (rounded, all columns) under a title."""
    cols = [c for c in (columns or list(table.columns)) if c in table.columns]
    with pd.option_context("display.width", 250, "display.max_columns", 60, "display.max_colwidth", 60):
        print(f"\n== {title} ==")
        print(table[cols].round(4).to_string(index=False))


def history(path: str | os.PathLike) -> pd.DataFrame:
    """A run directory's history table (cheap: no model is built)."""
    return pd.read_csv(Path(path) / "history.csv")


#: Line styles of model seeds 0, 1, 2, ...: every study plot draws seed s with
#: ``ls=seed_style(s)`` (and colour ``seed_color(s)`` where colour does not already mean
#: something else), so seeds stay apart in print and for colour-blind readers.
SEED_STYLES = ("-", "--", ":", "-.")


def seed_style(seed: Any) -> str:
    return SEED_STYLES[int(seed) % len(SEED_STYLES)]


def seed_color(seed: Any) -> str:
    return f"C{int(seed) % 10}"


def few_ticks(ax: Any, n: int = 5) -> None:
    """At most ``n`` x ticks, so step labels (10000, 12500, ...) never run into each other."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(n))


def save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot written to {path}")
    return path


def start(doc: str, study: str, scales: dict, argv: list[str] | None = None,
          extra: Callable[[argparse.ArgumentParser], Any] | None = None,
          ) -> tuple[argparse.Namespace, dict, Path, Path, "Timer"]:
    """A study's first lines: parse the common arguments (and the study's own, which
    ``extra(parser)`` adds), pick the setup's scale, make the output directory, find the
    results directory, start the clock."""
    ap = parser(doc.splitlines()[0], f"runs/examples/{study}")
    if extra is not None:
        extra(ap)
    args = ap.parse_args(argv)
    settings = scale(args, scales)
    out = setup(args)
    return args, settings, out, results_dir(args, study, out), Timer()


class Timer:
    """Wall time of the whole example, printed at the end."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def done(self, out: Path) -> float:
        wall = time.perf_counter() - self.start
        print(f"\nwall time {wall:.1f} s; outputs in {out}")
        return wall


def sweep_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"max_workers": args.workers, "executor": args.executor, "progress": not args.quiet,
            "batched": not getattr(args, "no_batch", True), "cache": False if args.no_cache else None}


def split_of(base: dict, row: pd.Series, keys: Sequence[str]) -> Any:
    """The split of a results row (its configuration ``keys`` over ``base``), rebuilt
    from the configuration alone: no run directory needed."""
    from grok_interp import Split, Task
    from grok_interp.config import RunConfig

    opts = {k: v for k, v in base.items() if k != "record"}
    for k in keys:
        v = row.get(k)
        if v is None or v is pd.NA or v == "-" or (isinstance(v, float) and np.isnan(v)):
            continue
        opts[k] = int(v) if isinstance(v, (float, np.floating)) and float(v).is_integer() else v
    data = RunConfig.from_kwargs(**opts).data
    return Split.from_config(Task(p=data.p, op=data.op, offset=data.offset), data)
