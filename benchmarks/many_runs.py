"""Throughput of K runs trained as one batch (train_many) vs one after another (train_hooked).

K = 8 runs at p = 97 (frac 0.3, Nanda config), different model seeds, data seeds and
weight decays (same shapes), ``--steps`` full-batch steps each with a history row (test
evaluation) every 10 steps, in memory. Modes, alternating ``--repeats`` times per
thread count:

* ``sequential``: one after another with ``train_hooked`` (fast forward);
* ``batched``: all K as one batch, ``train_many(max_batch=K)``;
* ``auto``: ``train_many`` with its default batch sizing (cache-sized on CPU).

Reported: median run-steps per second (wall and CPU time) and the ratios to
sequential. The final test losses of batched and sequential are compared as a check
that both did the same work (they drift apart slowly: AdamW amplifies rounding).

    python benchmarks/many_runs.py --k 8 --steps 100 --threads 1 2 --repeats 3
    python benchmarks/many_runs.py --p 31     # a small task, where CPU batching pays
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import grok_interp as g
from grok_interp.many_runs import train_many


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
        return train_many(specs, progress=False, max_batch=args.k)

    def auto():
        return train_many(specs, progress=False)

    modes = {"sequential": sequential, "batched": batched, "auto": auto}

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        train_many([{**s, "steps": 3} for s in specs[:2]], progress=False)  # warm-up
        wall: dict[str, list[float]] = {k: [] for k in modes}
        cpu: dict[str, list[float]] = {k: [] for k in modes}
        finals = {}
        for _ in range(args.repeats):
            for name, fn in modes.items():
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
        for name in ("batched", "auto"):
            row[f"{name}_speedup_wall"] = row["sequential_wall_s"] / row[f"{name}_wall_s"]
            row[f"{name}_speedup_cpu"] = row["sequential_cpu_s"] / row[f"{name}_cpu_s"]
        row["max_rel_diff_final_test_loss"] = float(
            ((finals["batched"] - finals["sequential"]).abs() / finals["sequential"].abs()).max()
        )
        rows.append(row)

    print(json.dumps({"benchmark": "many_runs", "p": args.p, "k": args.k, "steps": args.steps,
                      "repeats": args.repeats, "torch": torch.__version__, "rows": rows}))
    print(f"\n{args.k} runs x {args.steps} steps at p={args.p} (frac 0.3), run-steps per second (median of {args.repeats})")
    print(f"{'threads':>7} {'time':>4} | {'sequential':>10} | {'batched':>8} {'ratio':>6} | {'auto':>8} {'ratio':>6}")
    for r in rows:
        for t in ("wall", "cpu"):
            print(
                f"{r['threads']:>7} {t:>4} | {r[f'sequential_steps_per_s_{t}']:>10.1f} |"
                f" {r[f'batched_steps_per_s_{t}']:>8.1f} {r[f'batched_speedup_{t}']:>5.2f}x |"
                f" {r[f'auto_steps_per_s_{t}']:>8.1f} {r[f'auto_speedup_{t}']:>5.2f}x"
            )
        print(f"{'':>7} max relative difference of final test losses, batched vs sequential: "
              f"{r['max_rel_diff_final_test_loss']:.1e}")


if __name__ == "__main__":
    main()
