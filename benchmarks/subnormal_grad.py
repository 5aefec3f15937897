"""What subnormal floats in the float32 loss's gradient cost a training step on a CPU.

The reference setups train on ``loss="ce_float32"``: ``F.cross_entropy`` on the
float32 logits, as the reference code does. Once the training set is fit, wrong
classes get probabilities below float32's smallest normal number (1.2e-38), so a few
percent of the logits' gradient are subnormal floats, and every matrix product of the
backward that touches them takes a slow path on x86 CPUs. ``loss_fn`` flushes those
entries to zero (``grok_interp.training.loop.flushing_grad``), as it always did for the
float64 and collapse-free losses.

This script trains the reference one-layer transformer (p = ``--p``, a + b, no
attention or unembedding biases) on the reference STRIP split of width ``--t`` (60;
``random.seed(0)`` pairs), which memorises and never generalises far, for ``--train``
steps, then times its full training step (fast forward, loss, backward, fused AdamW;
one thread) on two copies of that model: with the plain ``F.cross_entropy``
and with ``loss_fn(..., "ce_float32")``, alternating ``--repeats`` times (median ms).
It prints the share of subnormal entries in the plain gradient, the two step times and
their ratio, and how far the two updates' parameters lie apart after the timed steps.

    python benchmarks/subnormal_grad.py
    python benchmarks/subnormal_grad.py --p 97 --train 4000 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F

import grok_interp as g
from grok_interp.training import forwards, loss_fn
from grok_interp.training import make_optimizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--p", type=int, default=97)
    ap.add_argument("--t", type=int, default=60, help="the STRIP's width")
    ap.add_argument("--train", type=int, default=2000, help="steps trained before timing")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="steps per timed block")
    args = ap.parse_args()
    torch.set_num_threads(1)

    run = g.train_hooked(p=args.p, op="add", split="strip", t=args.t, shuffle="python", loss="ce_float32",
                         attn_bias=False, unembed_bias=False, steps=args.train, eval_every=100, seed=0,
                         progress=False)
    last = run.history.iloc[-1]
    print(f"trained {args.train} steps: train loss {last['train_loss']:.3g}, train acc {last['train_acc']:.3f}, "
          f"test acc {last['test_acc']:.3f}")
    toks = run.task.tokens(run.split.train_pairs)
    labels = run.task.answers(run.split.train_pairs)

    x = forwards.fast_forward(run.model, toks).detach().requires_grad_(True)
    F.cross_entropy(x, labels).backward()
    tiny = torch.finfo(torch.float32).tiny
    share = ((x.grad != 0) & (x.grad.abs() < tiny)).float().mean().item()
    print(f"plain float32 gradient of the logits: {share:.2%} subnormal entries")

    losses = {"F.cross_entropy (plain)": F.cross_entropy,
              "loss_fn ce_float32 (flushed)": lambda z, y: loss_fn(z, y, "ce_float32")}
    models = {k: copy.deepcopy(run.model) for k in losses}
    opts = {k: make_optimizer(m, run.config.train, fused=True) for k, m in models.items()}

    def step(k: str) -> None:
        loss = losses[k](forwards.fast_forward(models[k], toks), labels)
        opts[k].zero_grad(set_to_none=True)
        loss.backward()
        opts[k].step()

    for k in losses:  # warm up
        step(k)
    times: dict[str, list[float]] = {k: [] for k in losses}
    for _ in range(args.repeats):
        for k in losses:
            t = time.perf_counter()
            for _ in range(args.steps):
                step(k)
            times[k].append((time.perf_counter() - t) / args.steps * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    (a, ta), (b, tb) = med.items()
    diff = max((pa - pb).abs().max().item() for pa, pb in zip(models[a].parameters(), models[b].parameters()))
    print(f"\np = {args.p}, {len(labels)} pairs, one thread: ms per step (median of {args.repeats} x {args.steps})")
    for k, m in med.items():
        print(f"  {k:<30} {m:8.2f} ms")
        print(json.dumps({"benchmark": "subnormal_grad", "p": args.p, "case": k, "ms": m,
                          "subnormal_share": share}))
    print(f"  plain / flushed: {ta / tb:.1f}x; largest parameter difference after "
          f"{1 + args.repeats * args.steps} steps each: {diff:.2e}")


if __name__ == "__main__":
    main()
