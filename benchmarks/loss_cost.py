"""What the training loss costs: float64 cross-entropy against the collapse-free float32 one.

The default loss (``loss="ce"``) must not collapse once the training set is fit (the
correct class's float32 probability rounding to 1). It used to cast the logits to
float64; it now computes in float32 and never forms ``1 - p_c``
(:func:`grok_interp.training.cross_entropy`). On one half of the README main job's
training set (p = ``--p``, what each core computes in the split step), one torch thread,
this script times, alternating the cases ``--repeats`` times (median ms):

1. the loss alone, forward and backward on logits of the half step's shape:
   ``float64 cast`` (``F.cross_entropy`` on the logits cast to float64, the gradient
   flushed of float32 subnormals, as ``ce`` was), ``collapse-free float32`` (``ce``
   now) and ``plain float32`` (``F.cross_entropy``, ``loss="ce_float32"``: collapses);
2. the whole half step (fast forward, loss, backward, fused AdamW) with the float64
   cast and with the collapse-free loss, on two copies of one model;

and prints how far the two losses' values and gradients lie apart on a trained-looking
batch (correct class leading by 20-40).

    python benchmarks/loss_cost.py
    python benchmarks/loss_cost.py --p 97 --repeats 9
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F

from grok_interp.training import cross_entropy, forwards
from grok_interp.training import make_optimizer
from grok_interp.training.loop import to_float64

import half_step


def float64_cast(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The former ``ce``: float64 cross-entropy, gradient cast back and flushed."""
    return F.cross_entropy(to_float64(logits), labels)


LOSSES = {"float64 cast": float64_cast, "collapse-free float32": cross_entropy, "plain float32": F.cross_entropy}


def _timed(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--p", type=int, default=113)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10, help="calls per timed block")
    args = ap.parse_args()
    torch.set_num_threads(1)

    cfg, task, model, _, toks, labels = half_step.half(args.p)
    n, v = len(labels), task.d_vocab_out

    gen = torch.Generator().manual_seed(0)
    z = torch.randn(n, v, generator=gen) * 3

    def loss_only(fn):
        def run() -> None:
            x = z.clone().requires_grad_(True)
            fn(x, labels).backward()
        return run

    models = {"float64 cast": model, "collapse-free float32": copy.deepcopy(model)}
    opts = {k: make_optimizer(m, cfg.train, fused=True) for k, m in models.items()}

    def step_with(k):
        def run() -> None:
            loss = LOSSES[k](forwards.fast_forward(models[k], toks), labels)
            opts[k].zero_grad(set_to_none=True)
            loss.backward()
            opts[k].step()
        return run

    cases = {f"loss: {k}": loss_only(fn) for k, fn in LOSSES.items()}
    cases.update({f"half step: {k}": step_with(k) for k in models})
    for fn in cases.values():  # warm up
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for k, fn in cases.items():
            times[k].append(_timed(fn, args.steps))

    print(f"\np = {args.p}, one thread, {n} pairs x {v} classes: ms (median of {args.repeats} x {args.steps})")
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, m in med.items():
        print(json.dumps({"benchmark": "loss_cost", "p": args.p, "case": k, "ms": m}))
    for k, m in med.items():
        print(f"  {k:<34} {m:7.3f} ms")
    a, b = med["half step: float64 cast"], med["half step: collapse-free float32"]
    print(f"  half step saved: {a - b:.3f} ms ({(a - b) / a:.1%})")

    # Agreement on a fitted batch, where float32 softmax collapses.
    fit = torch.randn(n, v, generator=gen) * 3
    margin = 20 + 20 * torch.rand(n, 1, generator=gen)
    fit.scatter_(1, labels[:, None], fit.amax(1, keepdim=True) + margin)
    out = {}
    for k in ("float64 cast", "collapse-free float32", "plain float32"):
        x = fit.clone().requires_grad_(True)
        loss = LOSSES[k](x, labels)
        loss.backward()
        out[k] = (loss.item(), x.grad)
    (l64, g64), (l32, g32), (lp, gp) = out["float64 cast"], out["collapse-free float32"], out["plain float32"]
    wrong = torch.ones_like(g64, dtype=torch.bool).scatter_(1, labels[:, None], False)
    nz = wrong & (g64 != 0)
    rel = ((g32 - g64).abs()[nz] / g64.abs()[nz]).max().item()
    correct = labels[:, None]
    collapsed = {k: int((gr.gather(1, correct) == 0).sum()) for k, gr in (("plain", gp), ("collapse_free", g32))}
    row = {"benchmark": "loss_cost", "case": "fitted batch", "loss_float64": l64, "loss_collapse_free": l32,
           "loss_plain_float32": lp, "max_rel_grad_diff_wrong_classes": rel,
           "rows_with_zero_correct_class_gradient": collapsed}
    print(json.dumps(row))
    print(f"  fitted batch (correct class leads by 20-40): loss float64 {l64:.4e}, collapse-free {l32:.4e}, "
          f"plain float32 {lp:.4e}; wrong-class gradients agree to {rel:.1e} (relative); rows whose correct "
          f"class gets no gradient: plain float32 {collapsed['plain']}, collapse-free {collapsed['collapse_free']} "
          f"of {n}")


if __name__ == "__main__":
    main()
