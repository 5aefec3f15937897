"""The demo's main figure, timed: the paper's restricted and excluded loss over every
checkpoint of a run.

Loads a run directory (default ``runs/p113``, the README main job: about 95
checkpoints) and times ``run.measure(["restricted_loss", "excluded_loss"])`` (key
frequencies of the final checkpoint, neurons rule, held fixed; then per checkpoint one
fast last-position forward over all p^2 pairs shared by both measures, and the per-class
projections as matrix products). For a ratio inside the same process it also times one
checkpoint's logits through the hooked model (``run_with_cache``-style forward over
every position) against the fast forward the probe uses, and checks they agree.

    python benchmarks/paper_losses.py runs/p113 --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

import grok_interp as g
from grok_interp.measures import Probe
from grok_interp.training.forwards import fast_forward


def _best(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", default="runs/p113")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = g.load_run(args.run)
    n = len(run.checkpoint_steps)
    print(f"run {args.run}: p={run.task.p}, {n} checkpoints, {args.threads} threads")

    t = time.perf_counter()
    df = run.measure(["restricted_loss", "excluded_loss"], progress=False)
    wall = time.perf_counter() - t
    print(f"restricted + excluded loss over {n} checkpoints: {wall:.2f} s ({1000 * wall / n:.0f} ms per checkpoint); "
          f"key frequencies {df.attrs['key_freqs']}")

    tokens = run.task.tokens(torch.stack(torch.meshgrid(torch.arange(run.task.p), torch.arange(run.task.p),
                                                        indexing="ij"), -1).reshape(-1, 2))
    model = run.model
    with torch.no_grad():
        hooked = _best(lambda: model(tokens)[:, -1])
        fast = _best(lambda: fast_forward(model, tokens))
        diff = float((model(tokens)[:, -1] - fast_forward(model, tokens)).abs().max())
        probe = _best(lambda: Probe(model, run.task).logits())
    print(f"logits of all {len(tokens)} pairs at one checkpoint: hooked forward {1000 * hooked:.1f} ms, "
          f"fast forward {1000 * fast:.1f} ms ({hooked / fast:.1f}x), probe {1000 * probe:.1f} ms; "
          f"max |difference| {diff:.2e}")
    first, last = df.iloc[0], df.iloc[-1]
    print(f"step {int(first.step)}: restricted {first.restricted_loss:.4g}, excluded {first.excluded_loss:.4g}; "
          f"step {int(last.step)}: restricted {last.restricted_loss:.4g}, excluded {last.excluded_loss:.4g}, "
          f"test loss {last.test_loss:.4g}")


if __name__ == "__main__":
    main()
