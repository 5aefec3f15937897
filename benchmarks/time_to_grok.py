"""Wall time and steps until test accuracy first reaches 0.99, with ``train_hooked``.

Cases (``--cases``):

* ``p113``: the README main job, ``grok-interp train --p 113`` defaults (frac 0.3,
  data seed 598, model seed 999, Nanda init, AdamW lr 1e-3, weight decay 1);
* ``p97``: p = 97, frac 0.3, otherwise the same defaults (the paper's main prime).

Each trains in memory with ``stop_after_grok=0`` (it stops at the first history row,
every 10 steps, with test accuracy >= 0.99), at most ``--max-steps`` steps. Reported:
the grok step, wall seconds, process CPU seconds and ms per step. With one thread
(``--threads 1``, the default) CPU time is what the run costs on a free core, an
estimate of the uncontended wall time on a shared machine.

    nohup nice python benchmarks/time_to_grok.py --cases p113 p97 > ttg.log &
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import grok_interp as g

CASES = {
    "p113": dict(p=113),
    "p97": dict(p=97, frac=0.3),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=25_000)
    ap.add_argument("--forward", default="auto", help="auto (fast), hooked or fast")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.cases:
        opts = dict(CASES[name], steps=args.max_steps, stop_after_grok=0, eval_every=10,
                    checkpoint_every=10**9, forward=args.forward, progress=args.progress)
        t, c = time.perf_counter(), time.process_time()
        run = g.train_hooked(**opts)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        hist = run.history
        hit = hist[hist["test_acc"] >= 0.99]
        steps = int(hist["step"].iloc[-1])
        row = {
            "case": name, **CASES[name], "forward": args.forward, "threads": args.threads,
            "grok_step": int(hit["step"].iloc[0]) if len(hit) else None,
            "steps_run": steps, "wall_s": wall, "cpu_s": cpu,
            "wall_ms_per_step": wall / max(steps, 1) * 1e3, "cpu_ms_per_step": cpu / max(steps, 1) * 1e3,
            "final_test_acc": float(hist["test_acc"].iloc[-1]),
        }
        rows.append(row)
        print(json.dumps({"benchmark": "time_to_grok", **row}), flush=True)
    print(f"\ntime to test accuracy >= 0.99 ({args.threads} thread(s), forward={args.forward})")
    print(f"{'case':>6} {'grok step':>9} {'wall':>9} {'cpu':>9} {'ms/step wall':>12} {'ms/step cpu':>11}")
    for r in rows:
        step = "not yet" if r["grok_step"] is None else str(r["grok_step"])
        print(
            f"{r['case']:>6} {step:>9} {r['wall_s'] / 60:>7.1f} m {r['cpu_s'] / 60:>7.1f} m"
            f" {r['wall_ms_per_step']:>12.1f} {r['cpu_ms_per_step']:>11.1f}"
        )


if __name__ == "__main__":
    main()
