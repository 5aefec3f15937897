"""This checkout's fast forward against the fast forward of an earlier revision: ms per training step.

``grok_interp/training/forwards.py`` is read from ``--rev`` (``git show``) and loaded
beside the current one; the modules it imports (``fused``, ``models``, ...) are this
checkout's, so only that file's algebra differs between the two. Both train the same
model with the same optimiser, alternating in blocks of two steps, ``--repeats`` times;
medians are reported, with the largest difference between the two forwards' logits.
One thread. The setups of the paper's reference runs:

    python benchmarks/forward_ab.py --rev e084720 --p 211 --frac 0.5 --layers 2   # reference MED, p = 211
    python benchmarks/forward_ab.py --rev e084720 --p 97 --frac 0.7 --layers 2 --op a2_ab_b2  # non-isomorphic
    python benchmarks/forward_ab.py --rev e084720 --p 113 --frac 0.3 --layers 1   # the README main job's shape

(``--bias`` keeps the attention and unembedding biases, which the reference runs drop.)
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from grok_interp.training.forwards import fast_forward

import half_step

ROOT = Path(__file__).resolve().parent.parent
FILE = "grok_interp/training/forwards.py"


def load_forwards(rev: str):
    """``forwards.py`` as it was at ``rev``, as a module of the ``grok_interp.training`` package."""
    source = subprocess.run(["git", "show", f"{rev}:{FILE}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "forwards_at_rev.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("grok_interp.training._forwards_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", required=True, help="the git revision to compare against")
    ap.add_argument("--p", type=int, default=211)
    ap.add_argument("--op", default="add")
    ap.add_argument("--frac", type=float, default=0.5)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--bias", action="store_true", help="keep the attention and unembedding biases")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    old = load_forwards(args.rev)
    bias = {} if args.bias else dict(attn_bias=False, unembed_bias=False)
    model, opt, toks, labels = half_step.full_batch(
        *half_step.job(args.p, args.op, frac=args.frac, n_layers=args.layers, **bias))
    with torch.no_grad():
        diff = (fast_forward(model, toks) - old.fast_forward(model, toks)).abs().max().item()
    steps = {name: functools.partial(half_step.train_step, model, opt, toks, labels, fwd)
             for name, fwd in (("rev", old.fast_forward), ("now", fast_forward))}
    for step in steps.values():  # warm-up
        step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            t = time.perf_counter()
            step()
            step()
            times[name].append((time.perf_counter() - t) / 2 * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    row = {"benchmark": "forward_ab", "rev": args.rev, "p": args.p, "op": args.op, "frac": args.frac,
           "n_layers": args.layers, "bias": args.bias, "n_train": len(toks), "repeats": args.repeats,
           "rev_ms": med["rev"], "now_ms": med["now"], "speedup": med["rev"] / med["now"], "max_logit_diff": diff}
    print(json.dumps(row))
    print(f"\np = {args.p} {args.op}, frac {args.frac}, {args.layers} layer(s), {len(toks)} pairs, 1 thread: "
          f"median ms per step, {args.repeats} blocks of 2")
    print(f"  at {args.rev}: {med['rev']:.1f}   now: {med['now']:.1f}   speedup {med['rev'] / med['now']:.3f}x   "
          f"largest logit difference {diff:.2e}")


if __name__ == "__main__":
    main()
