"""Cost of recording the default cheap measures during p = 113 training.

Trains the default p = 113 model (Nanda config, fast forward) for ``--steps`` steps,
once plain and once with ``record="default"`` (MED, weight norm, uniformity
statistics) recorded at every history row (``eval_every=10``), alternating the two for
``--repeats`` pairs in one process with one thread. Reports the median CPU and wall
seconds of each and the overhead ``with / without - 1``; CPU time is what the work
costs on a free core, wall time also counts waiting on a shared machine. As a second,
noise-free estimate it times the recorder callback alone on the trained model
(median of 50 calls) and divides by the time of 10 training steps.

    python benchmarks/measures_overhead.py --steps 300 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

import grok_interp as g
from grok_interp.measures import recorder


def _timed(fn) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=113)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--eval-every", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    opts = dict(p=args.p, steps=args.steps, eval_every=args.eval_every, checkpoint_every=10**9, progress=False)

    walls: dict[str, list[float]] = {"plain": [], "measures": []}
    cpus: dict[str, list[float]] = {"plain": [], "measures": []}
    run = None
    g.train_hooked(**{**opts, "steps": 20})  # warm-up (imports, allocator)
    for _ in range(args.repeats):
        for kind in ("plain", "measures"):
            extra = {"record": "default"} if kind == "measures" else {}
            w, c, r = _timed(lambda: g.train_hooked(**opts, **extra))
            walls[kind].append(w)
            cpus[kind].append(c)
            if kind == "measures":
                run = r
    assert run is not None
    med = {k: statistics.median(v) for k, v in cpus.items()}
    medw = {k: statistics.median(v) for k, v in walls.items()}

    # callback alone vs 10 training steps, on the trained model
    cb = recorder("default")
    ctx_split = run.split

    class _Ctx:
        split = ctx_split

    cb_cpu = []
    for _ in range(50):
        _, c, _ = _timed(lambda: cb(0, run.model, _Ctx))
        cb_cpu.append(c)
    per_row = statistics.median(cb_cpu)
    step_cpu = med["plain"] / args.steps
    result = {
        "benchmark": "measures_overhead",
        "p": args.p,
        "steps": args.steps,
        "eval_every": args.eval_every,
        "repeats": args.repeats,
        "threads": 1,
        "plain_cpu_s": round(med["plain"], 3),
        "measures_cpu_s": round(med["measures"], 3),
        "overhead_cpu": round(med["measures"] / med["plain"] - 1, 4),
        "plain_wall_s": round(medw["plain"], 3),
        "measures_wall_s": round(medw["measures"], 3),
        "overhead_wall": round(medw["measures"] / medw["plain"] - 1, 4),
        "callback_cpu_ms": round(per_row * 1e3, 3),
        "train_step_cpu_ms": round(step_cpu * 1e3, 2),
        "overhead_callback_estimate": round(per_row / (args.eval_every * step_cpu), 4),
        "columns": [c for c in run.history.columns if c not in ("step", "train_loss", "test_loss", "train_acc", "test_acc")],
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    print(f"p={args.p}, {args.steps} steps, history row every {args.eval_every} steps, 1 thread, median of {args.repeats}")
    print(f"{'':24}{'CPU s':>10}{'wall s':>10}")
    print(f"{'plain':24}{result['plain_cpu_s']:>10.2f}{result['plain_wall_s']:>10.2f}")
    print(f"{'measures=default':24}{result['measures_cpu_s']:>10.2f}{result['measures_wall_s']:>10.2f}")
    print(f"{'overhead':24}{result['overhead_cpu']:>10.1%}{result['overhead_wall']:>10.1%}")
    print(
        f"recorder callback {result['callback_cpu_ms']:.2f} ms CPU per row vs {args.eval_every} steps x "
        f"{result['train_step_cpu_ms']:.1f} ms: {result['overhead_callback_estimate']:.2%}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
