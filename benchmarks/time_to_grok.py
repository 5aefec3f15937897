"""Wall and CPU time until test accuracy first reaches 0.99: the README main job, several seeds.

Cases (``--cases``):

* ``p113``: the README main job, ``grok-interp train --p 113 --out DIR`` with its
  defaults (frac 0.3, data seed 598, Nanda init, AdamW lr 1e-3, weight decay 1, a
  history row with a test evaluation every 10 steps, checkpoints every 100 steps into
  a run directory, threads ``auto``);
* ``p97``: p = 97, frac 0.3, otherwise the same.

Each run writes a temporary run directory and stops soon after the first history row
with test accuracy >= 0.99, at most ``--max-steps`` steps. By default it trains as the
main job does, with adaptive evaluation (``eval_sparse`` 5: the test set every 50 steps,
backfilled every 10 where the metrics moved), and stops ``eval_sparse * eval_every`` = 50
steps after the grok, so its rows stay sparse up to it; the wall time to grok is the
time at which the first row >= 0.99 was recorded (a ``clock`` column), i.e. when the
run *knew* it had grokked. ``--dense`` records every row (``eval_sparse=1``) and stops
at the grok row itself. Per run: the grok step, wall seconds to it, process CPU seconds
(children included), ms per step, the test forwards (rows recorded, against the dense
cadence's), the
threads it trained with; per case: the median over ``--seeds`` (model seeds; 999 is
the default one). ``--busy N`` starts N processes that spin on a core for the whole
measurement (the machine as a shared one is), ``--threads`` overrides ``auto``.

    python benchmarks/time_to_grok.py                       # p = 113, seeds 999 0 1
    python benchmarks/time_to_grok.py --busy 1 --seeds 999  # beside one busy process
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import grok_interp as g
from grok_interp.threads import resolve_threads

CASES = {
    "p113": dict(p=113),
    "p97": dict(p=97, frac=0.3),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["p113"], choices=list(CASES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[999, 0, 1])
    ap.add_argument("--threads", default="auto", help="auto (the default of train_hooked) or a number")
    ap.add_argument("--busy", type=int, default=0, help="spinning processes to start beside the runs")
    ap.add_argument("--max-steps", type=int, default=25_000)
    ap.add_argument("--forward", default="auto", help="auto (fast), hooked, fast or compile")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--dense", action="store_true", help="a test evaluation at every row (eval_sparse=1)")
    args = ap.parse_args()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    time.sleep(0.5 if spinners else 0)
    threads = args.threads if args.threads == "auto" else int(args.threads)
    rows = []
    try:
        for name in args.cases:
            for seed in args.seeds:
                rows.append(one(name, seed, threads, args))
                print(json.dumps({"benchmark": "time_to_grok", **rows[-1]}), flush=True)
    finally:
        for sp in spinners:
            sp.kill()
    print(f"\ntime to test accuracy >= 0.99, README main job defaults"
          f"{' with dense rows' if args.dense else ''}, forward={args.forward}"
          f"{f', beside {args.busy} busy process(es)' if args.busy else ''}")
    print(f"{'case':>6} {'seed':>5} {'threads':>7} {'grok step':>9} {'wall':>8} {'cpu':>8} {'ms/step':>8}"
          f" {'test forwards':>15}")
    for r in rows:
        step = "not yet" if r["grok_step"] is None else str(r["grok_step"])
        print(f"{r['case']:>6} {r['seed']:>5} {r['threads']:>7} {step:>9} {r['wall_s'] / 60:>6.2f} m"
              f" {r['cpu_s'] / 60:>6.2f} m {r['wall_ms_per_step']:>8.1f}"
              f" {r['test_forwards']:>6} of {r['dense_forwards']:<6}")
    for name in args.cases:
        mine = [r for r in rows if r["case"] == name]
        wall = statistics.median(r["wall_s"] for r in mine)
        cpu = statistics.median(r["cpu_s"] for r in mine)
        summary = {"benchmark": "time_to_grok_median", "case": name, "seeds": args.seeds, "busy": args.busy,
                   "median_wall_s": wall, "median_cpu_s": cpu,
                   "median_grok_step": statistics.median(r["grok_step"] or args.max_steps for r in mine)}
        print(json.dumps(summary))
        print(f"{name}: median over {len(mine)} seeds: {wall / 60:.2f} min wall, {cpu / 60:.2f} min CPU")


def clock(model, task) -> float:
    """A history column: when the row was recorded (s since the epoch)."""
    return time.time()


def one(name: str, seed: int, threads: int | str, args: argparse.Namespace) -> dict:
    defaults = g.TrainConfig()
    sparse = 1 if args.dense else defaults.eval_sparse
    opts = dict(CASES[name], seed=seed, steps=args.max_steps, eval_sparse=sparse,
                stop_after_grok=0 if args.dense else sparse * defaults.eval_every,
                forward=args.forward, progress=args.progress, threads=threads, record=[clock])
    n_threads = resolve_threads(threads) or torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        start, t, c = time.time(), time.perf_counter(), time.process_time()
        run = g.train_hooked(out=Path(tmp) / "run", **opts)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    hist = run.history
    hit = hist[hist["test_acc"] >= 0.99]
    steps = int(hist["step"].iloc[-1])
    grok_step = int(hit["step"].iloc[0]) if len(hit) else None
    # when the grok row was recorded (a backfilled row: at the full row after it)
    to_grok = float(hit["clock"].iloc[0]) - start if len(hit) else wall
    return {
        "case": name, **CASES[name], "seed": seed, "forward": args.forward, "threads": n_threads, "busy": args.busy,
        "eval_sparse": sparse, "grok_step": grok_step, "steps_run": steps, "wall_s": to_grok,
        "wall_s_run": wall, "cpu_s": cpu,
        "wall_ms_per_step": wall / max(steps, 1) * 1e3, "cpu_ms_per_step": cpu / max(steps, 1) * 1e3,
        "test_forwards": len(hist), "dense_forwards": steps // defaults.eval_every + 1,
        "final_test_acc": float(hist["test_acc"].iloc[-1]),
    }


if __name__ == "__main__":
    main()
