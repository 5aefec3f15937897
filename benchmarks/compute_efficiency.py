"""Achieved FLOP/s of a training step against a large matmul's FLOP/s in the same run.

The step is the p = 113 README job's (3830 pairs, forward + float64 cross-entropy +
backward + AdamW). Its FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode`
(matrix products, forward and backward); its time is the median of ``--repeats``
blocks of ``--steps`` steps. The machine's practical limit is the FLOP/s of an fp32
``--size`` x ``--size`` matmul timed in the same process, threads and moment
(alternating with the steps). Reported for the fast forward and for the hooked model's
own forward, each as FLOP/s over its own counted FLOPs and as the fraction of the
matmul limit; ``useful`` divides the fast step's FLOPs (what the loss needs) by each
step's time. Both clocks are reported: ``wall`` (elapsed) and ``cpu`` (process CPU
time: with one thread, the cost on a free core, robust to waiting on a shared machine).

    python benchmarks/compute_efficiency.py --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from grok_interp.training.forwards import fast_forward, hooked_forward

import half_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=113)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--size", type=int, default=2048)
    args = ap.parse_args()

    model, opt, toks, labels = half_step.full_batch(*half_step.main_job(args.p))

    def step(fwd) -> None:
        half_step.train_step(model, opt, toks, labels, fwd)

    forwards = {"fast": fast_forward, "hooked": hooked_forward}
    flops = {}
    for name, fwd in forwards.items():
        with FlopCounterMode(display=False) as counter:
            step(fwd)
        flops[name] = counter.get_total_flops()

    a, b = torch.randn(args.size, args.size), torch.randn(args.size, args.size)
    mm_flops = 2 * args.size**3

    def matmul() -> None:
        a @ b

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        jobs = {"matmul": (matmul, 1), **{k: ((lambda f=f: step(f)), args.steps) for k, f in forwards.items()}}
        for fn, _ in jobs.values():
            fn()
        times: dict[str, list[float]] = {k: [] for k in jobs}
        cpu: dict[str, list[float]] = {k: [] for k in jobs}
        for _ in range(args.repeats):
            for name, (fn, n) in jobs.items():
                t, c = time.perf_counter(), time.process_time()
                for _ in range(n):
                    fn()
                times[name].append((time.perf_counter() - t) / n)
                cpu[name].append((time.process_time() - c) / n)
        for clock, samples in (("wall", times), ("cpu", cpu)):
            med = {k: statistics.median(v) for k, v in samples.items()}
            peak = mm_flops / med["matmul"]
            row = {"threads": threads, "clock": clock, "matmul_gflops": peak / 1e9}
            for name in forwards:
                achieved = flops[name] / med[name]
                row[f"{name}_ms"] = med[name] * 1e3
                row[f"{name}_gflops"] = achieved / 1e9
                row[f"{name}_fraction"] = achieved / peak
                row[f"{name}_useful_fraction"] = flops["fast"] / med[name] / peak
            rows.append(row)

    print(json.dumps({
        "benchmark": "compute_efficiency", "p": args.p, "n_train": len(toks), "torch": torch.__version__,
        "step_gflop": {k: v / 1e9 for k, v in flops.items()}, "matmul_size": args.size, "rows": rows,
    }))
    print(f"\nFLOPs per training step at p={args.p}: fast {flops['fast'] / 1e9:.2f} GFLOP, "
          f"hooked {flops['hooked'] / 1e9:.2f} GFLOP (matrix products, forward + backward)")
    print(f"{'threads':>7} {'clock':>5} | {'matmul':>8} | {'fast ms':>8} {'GFLOP/s':>8} {'of peak':>7} | "
          f"{'hooked ms':>9} {'GFLOP/s':>8} {'of peak':>7} {'useful':>7}")
    for r in rows:
        print(
            f"{r['threads']:>7} {r['clock']:>5} | {r['matmul_gflops']:>8.1f} | {r['fast_ms']:>8.1f} {r['fast_gflops']:>8.1f}"
            f" {r['fast_fraction']:>6.0%} | {r['hooked_ms']:>9.1f} {r['hooked_gflops']:>8.1f}"
            f" {r['hooked_fraction']:>6.0%} {r['hooked_useful_fraction']:>6.0%}"
        )


if __name__ == "__main__":
    main()
