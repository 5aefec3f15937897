"""The MLP baseline's training step: its own forward against the table form of its first layer.

``arch="mlp"`` runs (the MLP-vs-transformer and frozen one-hot studies) train
:class:`grok_interp.models.MLPBaseline`, ``[E[a], E[b](, E[=])] -> d_mlp -> d_mlp -> p``.
``train_hooked`` now trains it through
:func:`grok_interp.training.forwards.mlp_fast_forward`, which reads the first layer's
pre-activation from one ``(d_vocab, d_mlp)`` table per input instead of multiplying the
concatenated embeddings. For the studies' two MLPs at p = 97 (``library``: two inputs,
frac 0.5; ``reference``: ``MLP/base.py``'s three inputs and ``nn.Linear`` init, frac 0.3),
this times a full-batch step (forward, loss, backward, fused AdamW) at one torch thread
through each forward, alternating them ``--repeats`` times in blocks of ``--steps``
(median ms per step), counts each step's matrix-product FLOPs, and checks that the two
forwards' logits agree.

    python benchmarks/mlp_step.py
    python benchmarks/mlp_step.py --repeats 9 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import grok_interp as g
from grok_interp.config import RunConfig
from grok_interp.models import build_model
from grok_interp.training import make_optimizer
from grok_interp.training.forwards import hooked_forward, mlp_fast_forward

import half_step

SETUPS = {
    "library": dict(p=97, arch="mlp", split="random", frac=0.5),
    "reference": dict(p=97, arch="mlp", split="random", frac=0.3, mlp_input="operands_and_eq",
                      init="linear_default"),
}
FORWARDS = {"hooked (the model's own)": hooked_forward, "fast (first layer from tables)": mlp_fast_forward}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed block")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for setup in args.setups:
        cfg = RunConfig.from_kwargs(**SETUPS[setup])
        task = g.Task(p=cfg.data.p, op=cfg.data.op)
        split = g.Split.from_config(task, cfg.data)
        toks, labels = task.tokens(split.train_pairs), task.answers(split.train_pairs)
        model = build_model(cfg.model, task)
        opt = make_optimizer(model, cfg.train, fused=True)

        def step(fwd) -> None:
            half_step.train_step(model, opt, toks, labels, fwd)

        with torch.no_grad():
            diff = (hooked_forward(model, toks) - mlp_fast_forward(model, toks)).abs().max().item()
        flops, times = {}, {name: [] for name in FORWARDS}
        for name, fwd in FORWARDS.items():
            counter = FlopCounterMode(display=False)
            with counter:
                step(fwd)
            flops[name] = counter.get_total_flops() / 1e9
        for _ in range(args.repeats):
            for name, fwd in FORWARDS.items():
                step(fwd)
                t = time.perf_counter()
                for _ in range(args.steps):
                    step(fwd)
                times[name].append((time.perf_counter() - t) / args.steps * 1e3)
        base = statistics.median(times[next(iter(FORWARDS))])
        for name in FORWARDS:
            ms = statistics.median(times[name])
            row = dict(setup=setup, n_train=len(toks), forward=name, threads=args.threads, ms=round(ms, 2),
                       gflop=round(flops[name], 3), speedup=round(base / ms, 3), max_logit_diff=diff)
            rows.append(row)
            print(json.dumps(row))
    print(f"\nMLP baseline step at p = 97, {args.threads} thread(s), median of {args.repeats} x {args.steps} steps")
    print(f"{'setup':10} {'pairs':>6} {'forward':32} {'ms':>8} {'GFLOP':>7} {'speed-up':>9}")
    for r in rows:
        print(f"{r['setup']:10} {r['n_train']:>6} {r['forward']:32} {r['ms']:>8.2f} {r['gflop']:>7.3f} "
              f"{r['speedup']:>8.2f}x")


if __name__ == "__main__":
    main()
