"""Milliseconds per full-batch training step at p = 113: hooked, fast, fused, and the dense floor.

One model (Nanda config: 1 layer, 4 heads, d_model 128, d_mlp 512, no LayerNorm), the
3830 training pairs of the README main job (frac 0.3, data seed 598), AdamW (lr 1e-3,
weight decay 1). ``--layers N`` stacks N such layers, ``--no-bias`` drops the attention
and unembedding biases and ``--frac`` sets the training fraction (the paper's two-layer
reference setup: ``--layers 2 --no-bias --p 97 --frac 0.5``, 4704 pairs). A step is forward + float64 cross-entropy + backward + AdamW step.
The loops share the model and optimiser and alternate in blocks of ``--steps`` steps,
``--repeats`` times per thread count, so machine noise hits them alike; medians are
reported.

* ``naive``: the HookedTransformer's own forward, ``model(tokens)[:, -1]``, i.e. every
  position, every hook point (what a plain TransformerLens training loop does);
* ``fast``: the last-position forward with whole-batch products
  (``fast_logits(..., fused=False)``, what ``train_hooked`` used before the fused MLP);
* ``fused``: :func:`grok_interp.training.forwards.fast_forward`, the same algebra with
  the MLP and unembedding chunked and padded (:mod:`grok_interp.training.fused`), what
  ``train_hooked`` uses now;
* ``split``: the fused step as ``train_hooked`` runs it on CPU: the batch cut into one
  part per core (:func:`grok_interp.threads.batch_parts`), ``threads`` parts at a time
  with one torch thread each (:class:`grok_interp.training.FullBatchStep` ``parts``);
* ``compile`` (with ``--compile``): the fused forward through ``torch.compile``;
* ``floor``: the fused step's matrix-product FLOPs (counted by
  ``torch.utils.flop_counter``) divided by the FLOP/s of a ``--size``-cubed fp32 matmul
  timed in the same blocks: the time the step would take if every product ran at a
  large matmul's rate and nothing else cost anything.

``wall_ms`` is elapsed time; ``cpu_ms`` is process CPU time. ``--busy N`` starts N
processes that spin on a core while measuring (a shared machine). With ``--loop`` it
also times ``train_hooked`` itself (``forward="hooked"`` vs ``"auto"``, a history row
with a test evaluation every 10 steps) on one thread.

    python benchmarks/train_step.py --threads 1 2 --repeats 7
    python benchmarks/train_step.py --threads 1 2 --busy 1
    python benchmarks/train_step.py --layers 2 --no-bias --p 97 --frac 0.5 --threads 1
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import grok_interp as g
from grok_interp.models import weights
from grok_interp.threads import batch_parts
from grok_interp.training import FullBatchStep, RunState, Schedule, TrainContext
from grok_interp.training.forwards import compiled_forward, fast_forward, fast_logits, fast_weight_names, hooked_forward

import half_step


def _block(step, n: int) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    return (time.perf_counter() - t) / n * 1e3, (time.process_time() - c) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=113)
    ap.add_argument("--layers", type=int, default=1, help="transformer layers (n_layers)")
    ap.add_argument("--no-bias", action="store_true", help="no attention or unembedding biases")
    ap.add_argument("--frac", type=float, default=None, help="training fraction (default: the config's)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed block")
    ap.add_argument("--loop", action="store_true", help="also time train_hooked itself (1 thread)")
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile'd fast forward")
    ap.add_argument("--loop-steps", type=int, default=100)
    ap.add_argument("--size", type=int, default=2048, help="side of the matmul that sets the floor")
    ap.add_argument("--busy", type=int, default=0, help="spinning processes to start beside the measurement")
    args = ap.parse_args()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        run(args)
    finally:
        for sp in spinners:
            sp.kill()


def unfused_forward(model, tokens):
    w = weights(model)
    names = fast_weight_names(model.cfg.n_layers)
    return fast_logits({k: w[k][None] for k in names}, tokens[None], model.cfg.act_fn, fused=False)[0]


def _model_options(args: argparse.Namespace) -> dict:
    """The RunConfig options ``--layers``, ``--no-bias`` and ``--frac`` set (none by default)."""
    opts: dict = {"n_layers": args.layers} if args.layers != 1 else {}
    if args.no_bias:
        opts.update(attn_bias=False, unembed_bias=False)
    if args.frac is not None:
        opts["frac"] = args.frac
    return opts


def run(args: argparse.Namespace) -> None:

    cfg, task, split = half_step.job(args.p, **_model_options(args))
    model, opt, toks, labels = half_step.full_batch(cfg, task, split)
    backend = g.models.backend_of(model)

    def stepper(fwd):
        return functools.partial(half_step.train_step, model, opt, toks, labels, fwd)

    loops = {"naive": stepper(hooked_forward), "fast": stepper(unfused_forward), "fused": stepper(fast_forward),
             "split": None}
    test_toks, test_labels = task.tokens(split.test_pairs), task.answers(split.test_pairs)
    ctx = TrainContext(task, split, toks, labels, test_toks, test_labels, fast_forward)
    state = RunState(model=model, optimizer=opt, schedule=Schedule(steps=10**9, lr=cfg.train.lr), context=ctx)
    with FlopCounterMode(display=False) as counter:
        loops["fused"]()
    step_flops = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        loops["naive"]()
    hooked_flops = counter.get_total_flops()
    a, b = torch.randn(args.size, args.size), torch.randn(args.size, args.size)
    mm_flops = 2 * args.size**3
    compile_s = None
    if args.compile:
        loops["compile"] = stepper(compiled_forward)
        t = time.perf_counter()
        loops["compile"]()
        compile_s = time.perf_counter() - t
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        split_step = FullBatchStep(parts=batch_parts(), workers=threads)

        def split_once() -> None:
            torch.set_num_threads(1)
            out = split_step.forward([state])
            opt.zero_grad(set_to_none=True)
            split_step.update([state], [0], out)
            torch.set_num_threads(threads)

        loops["split"] = split_once
        jobs = {**loops, "matmul": lambda: a @ b}
        for step in jobs.values():  # warm-up
            _block(step, 2)
        wall: dict[str, list[float]] = {k: [] for k in jobs}
        cpu: dict[str, list[float]] = {k: [] for k in jobs}
        for _ in range(args.repeats):
            for name, step in jobs.items():
                w, c = _block(step, args.steps if name != "matmul" else 2)
                wall[name].append(w)
                cpu[name].append(c)
        med_w = {k: statistics.median(v) for k, v in wall.items()}
        med_c = {k: statistics.median(v) for k, v in cpu.items()}
        row = {"threads": threads, "busy": args.busy, "step_gflop": step_flops / 1e9,
               "hooked_step_gflop": hooked_flops / 1e9,
               "matmul_gflops": mm_flops / med_w["matmul"] / 1e6}
        for name in loops:
            row[f"{name}_wall_ms"], row[f"{name}_cpu_ms"] = med_w[name], med_c[name]
        row["floor_ms"] = step_flops / (mm_flops / med_w["matmul"])
        row["fused_over_floor"] = med_w["fused"] / row["floor_ms"]
        row["split_over_floor"] = med_w["split"] / row["floor_ms"]
        for name in ("fast", "fused", "split"):
            row[f"{name}_speedup_wall"] = med_w["naive"] / med_w[name]
            row[f"{name}_speedup_cpu"] = med_c["naive"] / med_c[name]
        if "compile" in loops:
            row["compile_speedup_wall"] = med_w["naive"] / med_w["compile"]
        rows.append(row)

    loop = None
    if args.loop:
        torch.set_num_threads(1)
        opts = dict(p=args.p, **_model_options(args), steps=args.loop_steps, eval_every=10, checkpoint_every=10**9, progress=False)
        g.train_hooked(**{**opts, "steps": 10})  # warm-up
        lw: dict[str, list[float]] = {"hooked": [], "auto": []}
        lc: dict[str, list[float]] = {"hooked": [], "auto": []}
        for _ in range(max(1, args.repeats // 2)):
            for fwd in ("hooked", "auto"):
                t, c = time.perf_counter(), time.process_time()
                g.train_hooked(forward=fwd, **opts)
                lw[fwd].append((time.perf_counter() - t) / args.loop_steps * 1e3)
                lc[fwd].append((time.process_time() - c) / args.loop_steps * 1e3)
        loop = {
            "threads": 1, "steps": args.loop_steps,
            **{f"{k}_wall_ms": statistics.median(v) for k, v in lw.items()},
            **{f"{k}_cpu_ms": statistics.median(v) for k, v in lc.items()},
        }
        loop["speedup_cpu"] = loop["hooked_cpu_ms"] / loop["auto_cpu_ms"]
        loop["speedup_wall"] = loop["hooked_wall_ms"] / loop["auto_wall_ms"]

    result = {
        "benchmark": "train_step", "p": args.p, **({"n_layers": args.layers} if args.layers != 1 else {}),
        **({"no_bias": True} if args.no_bias else {}), "n_train": len(toks), "backend": backend,
        "torch": torch.__version__, "repeats": args.repeats, "steps_per_block": args.steps,
        "compile_s": compile_s, "step": rows, "train_hooked_loop": loop,
    }
    print(json.dumps(result))
    layers = f"{args.layers} layers{', no bias' if args.no_bias else ''}, " if args.layers != 1 or args.no_bias else ""
    print(f"\ntrain step at p={args.p} ({layers}{len(toks)} pairs, full batch, AdamW), median wall ms/step"
          f"{f', beside {args.busy} busy process(es)' if args.busy else ''}")
    extra = " compile" if args.compile else ""
    print(f"{'threads':>7} | {'naive':>7} {'fast':>7} {'fused':>7} {'split':>7}{extra} | {'split/naive':>11} |"
          f" {'floor':>6} {'split/floor':>11} | matmul GFLOP/s")
    for r in rows:
        comp = f" {r['compile_wall_ms']:>7.1f}" if "compile_wall_ms" in r else ""
        print(
            f"{r['threads']:>7} | {r['naive_wall_ms']:>7.1f} {r['fast_wall_ms']:>7.1f} {r['fused_wall_ms']:>7.1f}"
            f" {r['split_wall_ms']:>7.1f}{comp} | {r['split_speedup_wall']:>10.2f}x | {r['floor_ms']:>6.1f}"
            f" {r['split_over_floor']:>10.2f}x |"
            f" {r['matmul_gflops']:.0f}"
        )
    print(f"step FLOPs (matrix products, forward + backward): {step_flops / 1e9:.2f} GFLOP fused,"
          f" {hooked_flops / 1e9:.2f} GFLOP hooked ({hooked_flops / step_flops:.1f}x)"
          + (f"; torch.compile took {compile_s:.1f} s" if compile_s is not None else ""))
    if loop:
        print(
            f"\ntrain_hooked, {loop['steps']} steps, eval every 10, 1 thread: forward=hooked {loop['hooked_cpu_ms']:.1f} "
            f"ms/step CPU ({loop['hooked_wall_ms']:.1f} wall), auto (fast) {loop['auto_cpu_ms']:.1f} CPU "
            f"({loop['auto_wall_ms']:.1f} wall): {loop['speedup_cpu']:.2f}x CPU, {loop['speedup_wall']:.2f}x wall"
        )


if __name__ == "__main__":
    main()
