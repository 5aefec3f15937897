"""Time of the full Fourier suite over 100 checkpoints of a p = 113 run.

Loads a run directory (default ``/work/notes/runs/p113``, the README main job), picks
``--checkpoints`` checkpoints spread evenly over the saved ones (first and last
included), and times ``run.measure("fourier")``: key frequencies of the final
checkpoint (neurons rule), then at every checkpoint restricted loss, excluded loss,
Gini of ``W_E`` and ``W_out W_U``, logit cosine similarity and the key-frequency
count; each checkpoint costs one ``run_with_cache`` over all p^2 pairs. Reports CPU
and wall seconds with the number of threads, and prints the first and last rows.

    python benchmarks/fourier_suite.py /work/notes/runs/p113 --checkpoints 100
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

import grok_interp as g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", default="/work/notes/runs/p113")
    ap.add_argument("--checkpoints", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = g.load_run(args.run)
    saved = run.checkpoint_steps
    idx = np.unique(np.linspace(0, len(saved) - 1, min(args.checkpoints, len(saved))).round().astype(int))
    steps = [saved[i] for i in idx]
    t, c = time.perf_counter(), time.process_time()
    df = run.measure("fourier", steps=steps)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    result = {
        "benchmark": "fourier_suite",
        "run": args.run,
        "p": run.task.p,
        "checkpoints": len(steps),
        "threads": args.threads,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "per_checkpoint_wall_s": round(wall / len(steps), 3),
        "key_freqs": df.attrs["key_freqs"],
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    cols = ["step", "restricted_loss", "excluded_loss", "gini_embed", "gini_logit", "logit_cosine", "test_loss"]
    print(f"Fourier suite over {len(steps)} checkpoints of {args.run} (p={run.task.p}), {args.threads} threads")
    print(f"key frequencies (final checkpoint, neurons rule): {df.attrs['key_freqs']}")
    print(df[cols].iloc[[0, len(df) // 2, -1]].to_string(index=False))
    print(f"wall {wall:.1f} s, CPU {cpu:.1f} s, {wall / len(steps) * 1e3:.0f} ms per checkpoint")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
