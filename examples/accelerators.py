"""Grokking on purpose: Grokfast-EMA, StableMax + perpendicular gradient, and the measures.

Four ways to train a + b mod p (random split, frac 0.3, the Nanda transformer, AdamW
lr 1e-3), several seeds each:

* ``none``: the baseline (weight decay 1);
* ``grokfast_ema``: the same plus the Grokfast-EMA gradient filter (alpha 0.98,
  lamb 2; Lee et al. 2024);
* ``stablemax_perp_wd0``: StableMax cross-entropy and the perpendicular gradient,
  no weight decay (Prieto et al. 2025: grokking without regularisation);
* ``stablemax_perp_wd1``: the same with weight decay 1.

For each run: steps and wall time until test accuracy first reaches 0.99, the events
(:func:`grok_interp.measures.phases`), and :func:`grok_interp.measures.compare_measures`
for MED, the weight norm and the excluded loss (does each still move before test
loss when grokking is accelerated?). MED and the weight norm are recorded at every
history row; the excluded loss is measured afterwards on the checkpoints, with the
final checkpoint's key frequencies held fixed (cached in ``out/measures/``). A
``clock`` column (``time.time()`` at each history row) gives the wall time to 0.99
(a pause between a stop and a resume is left out, see ``time_to``; with the library's
adaptive evaluation a backfilled row is stamped when it is computed, at the next full
row at most ``eval_sparse * eval_every`` = 50 steps later, so the wall time is the time
until the run *knew* it had reached 0.99); parallel
workers share the cores, so time a study with ``--workers 1``. Runs train one by one (no batching), so each
run's clock is its own.

    python examples/accelerators.py                   # p = 97, 113, seeds 0-2 (paper scale)
    python examples/accelerators.py --quick           # p = 23, seconds
    python examples/accelerators.py --ps 97 --seeds 0 --methods none,grokfast_ema --workers 1

Outputs in the results directory (``--results DIR``; default ``results/accelerators/<setup>``
at paper scale, ``OUT/results`` otherwise), and copies of the tables and plots in ``out``:
``sweep.csv`` and each run's ``histories/<run>.csv`` and ``measures/<run>.csv`` (its
excluded loss), then ``accelerators.csv`` (one row per run), ``accelerators_summary.csv``
(per p and method), ``compare_measures.csv`` and plots ``test_loss_vs_measures_p{p}.png``,
all computed from the former, so ``--report-only`` rebuilds them without training. A
sweep of part of the study (``--ps 113``, ``--methods none``) adds its runs to the
results; the tables cover every run there.
Step cap (paper scale): 15000 steps, stopping 500 steps after test accuracy 0.99.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import _common as c  # noqa: E402
import grok_interp as g  # noqa: E402
from grok_interp.measures import compare_measures, events  # noqa: E402
from grok_interp.sweeps import sweep  # noqa: E402


def clock(model, task) -> float:
    """A history column: the time (s since the epoch) at which the row was recorded."""
    return time.time()


METHODS: dict[str, dict] = c.ACCELERATORS
#: The excluded losses of a run's checkpoints: the paper's (``excluded_loss``), and the
#: difference projection grok_interp 0.1 measured under that name
#: (``excluded_loss_difference``), both measured so the two can be set side by side.
EXCLUDED = ("excluded_loss", "excluded_loss_difference")


def compared(ex: pd.DataFrame) -> list[str]:
    """The measures compared with test loss for a run whose excluded-loss table is ``ex``."""
    return ["med", "weight_norm", *[e for e in EXCLUDED if e in ex.columns], "train_loss"]
THRESHOLD = 0.99

_LIBRARY = {
    "paper": dict(
        base=dict(op="add", split="random", frac=0.3, steps=15000, eval_every=10, checkpoint_every=100,
                  stop_after_grok=500, record=["med", "weight_norm", clock]),
        ps=[97, 113],
    ),
    "quick": dict(
        base=dict(op="add", split="random", frac=0.6, steps=300, lr=1e-2, d_model=64, n_heads=4, d_mlp=128,
                  eval_every=10, checkpoint_every=100, stop_after_grok=50, record=["med", "weight_norm", clock]),
        ps=[23],
    ),
}
# The reference setup: the same study on the reference code's settings (bias-free
# attention and unembedding, float32 loss, its training pairs, its budget and stop rules).
SCALES = {
    "library": _LIBRARY,
    "reference": {name: {**sc, "base": {**sc["base"], **c.REFERENCE, **(
        {"steps": sc["base"]["steps"]} if name == "quick" else {})}} for name, sc in _LIBRARY.items()},
}


def configs(ps: list[int], seeds: list[int], methods: list[str]) -> list[dict]:
    return [{"p": p, "seed": s, **METHODS[m]} for p in ps for m in methods for s in seeds]


def method_of(row: pd.Series | dict) -> str:
    """The method name of a configuration (inverse of :data:`METHODS`)."""
    for name, opts in reversed(METHODS.items()):
        if opts and all(row.get(k) == v for k, v in opts.items()):
            return name
    return "none"


def time_to(h: pd.DataFrame, threshold: float = THRESHOLD, every: int = 50) -> tuple[int | None, float | None]:
    """First step with test accuracy >= threshold, and the wall time from step 0 until the
    run knew it (the ``clock`` of that row).

    The time is summed over the rows at multiples of ``every`` steps (the full rows of
    adaptive evaluation, ``eval_sparse * eval_every``: each stamped as it was computed;
    a backfilled row is stamped with the full row that backfilled it). A gap longer than
    20 times the median gap between them (a run stopped and resumed) counts as the
    median, so a pause between sessions is not training time.
    """
    hit = h[h["test_acc"] >= threshold]
    if not len(hit):
        return None, None
    row = hit.index[0]
    step = int(h.loc[row, "step"])
    if "clock" not in h:
        return step, None
    known = float(h.loc[row, "clock"])
    grid = h.loc[(h["step"] % every == 0) & (h["clock"] <= known), "clock"].astype(float).tolist()
    gaps = pd.Series(grid + [known]).diff().dropna()
    full = gaps.iloc[:-1] if len(gaps) > 1 else gaps  # the last gap may be a partial window
    med = float(full.median()) if len(full) else 0.0
    return step, float(gaps.where(gaps <= 20 * med, med).sum())


def excluded_loss_table(path: Path, cache: Path) -> pd.DataFrame:
    """Both excluded losses (:data:`EXCLUDED`) on every checkpoint (final key frequencies), cached."""
    run = g.load_run(path)
    last = run.checkpoint_steps[-1]
    if cache.exists():
        t = pd.read_csv(cache)
        if len(t) and int(t["step"].max()) == last and all(e in t for e in EXCLUDED):  # older tables: measured again
            return t
    t = run.measure(list(EXCLUDED), progress=False)[["step", *EXCLUDED]]
    cache.parent.mkdir(parents=True, exist_ok=True)
    t.to_csv(cache, index=False)
    return t


def plot(p: int, runs: list[tuple[str, int, pd.DataFrame, pd.DataFrame]], methods: list[str], out: Path) -> None:
    # one quantity per axis: a column each for test loss and the measures, a row per method,
    # seeds by colour and line style; a thin vertical line where each seed reaches the threshold
    excluded = next((e for e in EXCLUDED if any(e in r[3] for r in runs)), EXCLUDED[0])
    cols = ["test_loss", "med", "weight_norm", excluded]
    logs = {"test_loss", excluded}
    fig, axes = plt.subplots(len(methods), len(cols), figsize=(3.6 * len(cols), 2.5 * len(methods)),
                             squeeze=False, sharex="row")
    for i, method in enumerate(methods):
        for j, col in enumerate(cols):
            ax = axes[i][j]
            drawn = []
            for _method, seed, h, ex in sorted((r for r in runs if r[0] == method), key=lambda r: r[1]):
                src = ex if col == excluded else h
                style = dict(color=c.seed_color(seed), ls=c.seed_style(seed), lw=0.9)
                if col in src and len(src):
                    ax.plot(src["step"], src[col], label=f"seed {seed}", **style)
                    drawn.append(src[col].to_numpy(dtype=float))
                step, _ = time_to(h)
                if step is not None:
                    ax.axvline(step, color=c.seed_color(seed), ls=c.seed_style(seed), lw=0.5, alpha=0.6)
            values = np.concatenate(drawn) if drawn else np.array([])
            values = values[np.isfinite(values) & (values > 0)]
            # log only where the curves span two decades: in less, a log axis has one labelled tick or none
            if col in logs and len(values) and values.max() >= 100 * values.min():
                ax.set_yscale("log")
                ax.yaxis.set_minor_formatter(NullFormatter())  # 2x10^0, 3x10^0, ... would collide
            ax.set_title(f"{method}: {col}", fontsize=9)
            ax.tick_params(labelsize=7)
            c.few_ticks(ax, 4)
            if i == len(methods) - 1:
                ax.set_xlabel("step", fontsize=8)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(f"p={p}: test loss and each measure per method (thin vertical lines: test acc {THRESHOLD})",
                 fontsize=10)
    c.save(fig, out / f"test_loss_vs_measures_p{p}.png")


def main(argv: list[str] | None = None) -> int:
    ap = c.parser(__doc__.splitlines()[0], "runs/examples/accelerators", batching=False)
    ap.add_argument("--ps", default=None, help="comma-separated primes (default: the scale's)")
    ap.add_argument("--methods", default=None, help=f"comma-separated, of {', '.join(METHODS)} (default all)")
    args = ap.parse_args(argv)
    out = c.setup(args)
    timer = c.Timer()
    scale = c.scale(args, SCALES)
    ps = [int(x) for x in args.ps.split(",")] if args.ps else scale["ps"]
    methods = args.methods.split(",") if args.methods else list(METHODS)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"error: --methods {unknown} unknown; choose from {', '.join(METHODS)}")
    dest = c.results_dir(args, "accelerators", out)
    if args.report_only:
        if not (dest / "sweep.csv").exists():
            raise SystemExit(f"error: no results in {dest} (run the study without --report-only first)")
    else:
        kwargs = {**c.sweep_kwargs(args), "batched": False}  # each run's clock must be its own
        table = sweep(configs(ps, args.seeds, methods), out, base=scale["base"], **kwargs)
        keep_results(table, out, dest)
    written = report(dest)
    if not args.report_only and dest.resolve() != out.resolve():
        for f in written:  # the tables and plots also beside the run directories
            shutil.copy2(f, out / f.name)
    timer.done(out)
    return 0


def keep_results(table: pd.DataFrame, out: Path, dest: Path) -> None:
    """Copy each finished run's history and excluded-loss table to ``dest`` and add the
    sweep's rows to ``dest/sweep.csv`` (rows of earlier sweeps, other p or methods, stay)."""
    (dest / "histories").mkdir(parents=True, exist_ok=True)
    (dest / "measures").mkdir(exist_ok=True)
    for _, r in table.iterrows():
        if r["status"] == "failed" or not (Path(r["path"]) / "history.csv").exists():
            continue
        shutil.copy2(Path(r["path"]) / "history.csv", dest / "histories" / f"{r['run']}.csv")
        ex = excluded_loss_table(Path(r["path"]), out / "measures" / f"{r['run']}.csv")
        ex.to_csv(dest / "measures" / f"{r['run']}.csv", index=False)
    table = table.drop(columns=["path", "cached_from"], errors="ignore")
    c.merge_with_earlier(table, dest).to_csv(dest / "sweep.csv", index=False, float_format="%.6g")
    print(f"small outputs copied to {dest}")


def report(dest: Path) -> list[Path]:
    """The tables and plots of every run in ``dest`` (its ``sweep.csv``, histories and
    excluded-loss tables), written there; returns the files written."""
    table = pd.read_csv(dest / "sweep.csv")
    table.insert(1, "method", [method_of(r) for _, r in table.iterrows()])
    rows, cmps, by_p = [], [], {}
    for _, r in table.iterrows():
        row = {"run": r["run"], "p": r["p"], "method": r["method"], "seed": r["seed"], "status": r["status"]}
        path = dest / "histories" / f"{r['run']}.csv"
        if r["status"] == "failed" or not path.exists():
            rows.append({**row, "error": r.get("error")})
            continue
        h = pd.read_csv(path)
        step, wall = time_to(h)
        ev = events(h)
        row.update(steps_to_099=step, wall_s_to_099=wall, memorised_at=ev.memorised_at, halfway_at=ev.halfway_at,
                   u_acc=ev.u_acc, l_acc=ev.l_acc, final_step=int(h["step"].iloc[-1]),
                   final_test_acc=float(h["test_acc"].iloc[-1]))
        ex_path = dest / "measures" / f"{r['run']}.csv"
        ex = pd.read_csv(ex_path) if ex_path.exists() else pd.DataFrame({"step": [], EXCLUDED[0]: []})
        by_p.setdefault(int(r["p"]), []).append((r["method"], int(r["seed"]), h, ex))
        try:
            cmp = compare_measures(h, ex, columns=compared(ex))
        except ValueError as exc:  # e.g. never memorised within the cap
            print(f"{r['run']}: compare_measures: {exc}")
        else:
            row["test_loss_moved_at"] = cmp.attrs.get("target_moved_at")
            for _, m in cmp.iterrows():
                row[f"{m['measure']}_moved_at"] = m["moved_at"]
                row[f"{m['measure']}_before_test_loss"] = m["before_test_loss"]
            cmps.append(cmp.assign(run=r["run"], p=r["p"], method=r["method"], seed=r["seed"]))
        rows.append(row)
    runs = pd.DataFrame(rows)
    measures = ["med", "weight_norm", *[e for e in EXCLUDED if f"{e}_moved_at" in runs], "train_loss"]
    for col in ("steps_to_099", "memorised_at", "halfway_at", "final_step", "test_loss_moved_at",
                *(f"{m}_moved_at" for m in measures)):
        if col in runs:
            runs[col] = runs[col].astype("Int64")
    c.show(runs, "runs: steps and wall time to test accuracy 0.99, events",
           ["run", "method", "steps_to_099", "wall_s_to_099", "memorised_at", "halfway_at", "u_acc",
            "final_test_acc", "final_step", "status"])
    c.show(runs, "does each measure move (half its change) before test loss?",
           ["run", "method", "test_loss_moved_at", *(f"{m}_{k}" for m in measures for k in ("moved_at",
                                                                                          "before_test_loss"))])
    written = [dest / "accelerators.csv"]
    ok = runs[runs["status"] != "failed"]
    if "steps_to_099" in ok:
        summary = ok.groupby(["p", "method"], sort=False).agg(
            runs=("run", "size"),
            reached_099=("steps_to_099", lambda s: int(s.notna().sum())),
            median_steps_to_099=("steps_to_099", lambda s: s.dropna().median() if s.notna().any() else None),
            median_wall_s_to_099=("wall_s_to_099", lambda s: s.dropna().median() if s.notna().any() else None),
        ).reset_index()
        c.show(summary, "per p and method (medians over the runs that reached 0.99)")
        summary.to_csv(dest / "accelerators_summary.csv", index=False)
        written.append(dest / "accelerators_summary.csv")
    runs.to_csv(dest / "accelerators.csv", index=False)
    if cmps:
        pd.concat(cmps).to_csv(dest / "compare_measures.csv", index=False)
        written.append(dest / "compare_measures.csv")
    for p, rs in by_p.items():
        plot(p, rs, [m for m in METHODS if any(x[0] == m for x in rs)], dest)
        written.append(dest / f"test_loss_vs_measures_p{p}.png")
    return written


if __name__ == "__main__":
    sys.exit(main())
