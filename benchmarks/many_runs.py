"""Throughput of K runs trained as one batch (train_many) vs one after another (train_hooked).

K = 8 runs at p = 97 (frac 0.3, Nanda config), different model seeds, data seeds and
weight decays (same shapes), ``--steps`` full-batch steps each with a history row (test
evaluation) every 10 steps, in memory. ``sequential`` trains them one after another
with ``train_hooked`` (fast forward); ``batched`` trains them together with
:func:`grok_interp.batched.train_many`. The two alternate ``--repeats`` times per
thread count; medians are reported as run-steps per second (wall and CPU time) and
their ratio. The final test losses of the two are compared as a check that both did
the same work.

    python benchmarks/many_runs.py --k 8 --steps 100 --threads 1 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import grok_interp as g
from grok_interp.batched import train_many


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=97)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    specs = [
        dict(p=args.p, frac=0.3, seed=i, data_seed=598 + i, weight_decay=(1.0, 0.5)[i % 2], steps=args.steps,
             eval_every=10, checkpoint_every=10**9)
        for i in range(args.k)
    ]

    def sequential():
        return [g.train_hooked(progress=False, **s) for s in specs]

    def batched():
        return train_many(specs, progress=False)

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        train_many([{**s, "steps": 3} for s in specs[:2]], progress=False)  # warm-up
        wall: dict[str, list[float]] = {"sequential": [], "batched": []}
        cpu: dict[str, list[float]] = {"sequential": [], "batched": []}
        finals = {}
        for _ in range(args.repeats):
            for name, fn in (("sequential", sequential), ("batched", batched)):
                t, c = time.perf_counter(), time.process_time()
                runs = fn()
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
                finals[name] = torch.tensor([r.history["test_loss"].iloc[-1] for r in runs])
        work = args.k * args.steps
        row = {"threads": threads}
        for name in wall:
            row[f"{name}_wall_s"] = statistics.median(wall[name])
            row[f"{name}_cpu_s"] = statistics.median(cpu[name])
            row[f"{name}_steps_per_s_wall"] = work / row[f"{name}_wall_s"]
            row[f"{name}_steps_per_s_cpu"] = work / row[f"{name}_cpu_s"]
        row["speedup_wall"] = row["sequential_wall_s"] / row["batched_wall_s"]
        row["speedup_cpu"] = row["sequential_cpu_s"] / row["batched_cpu_s"]
        row["max_rel_diff_final_test_loss"] = float(
            ((finals["batched"] - finals["sequential"]).abs() / finals["sequential"].abs()).max()
        )
        rows.append(row)

    print(json.dumps({"benchmark": "many_runs", "p": args.p, "k": args.k, "steps": args.steps,
                      "repeats": args.repeats, "torch": torch.__version__, "rows": rows}))
    print(f"\n{args.k} runs x {args.steps} steps at p={args.p} (frac 0.3), run-steps per second (median of {args.repeats})")
    print(f"{'threads':>7} | {'seq wall':>9} {'batch wall':>10} {'ratio':>6} | {'seq cpu':>8} {'batch cpu':>9} {'ratio':>6} | max rel diff")
    for r in rows:
        print(
            f"{r['threads']:>7} | {r['sequential_steps_per_s_wall']:>9.1f} {r['batched_steps_per_s_wall']:>10.1f}"
            f" {r['speedup_wall']:>5.2f}x | {r['sequential_steps_per_s_cpu']:>8.1f} {r['batched_steps_per_s_cpu']:>9.1f}"
            f" {r['speedup_cpu']:>5.2f}x | {r['max_rel_diff_final_test_loss']:.1e}"
        )


if __name__ == "__main__":
    main()
