"""Milliseconds per full-batch training step at p = 113: hooked forward vs the fast forward.

One model (Nanda config: 1 layer, 4 heads, d_model 128, d_mlp 512, no LayerNorm), the
3830 training pairs of the README main job (frac 0.3, data seed 598), AdamW (lr 1e-3,
weight decay 1). A step is forward + float64 cross-entropy + backward + AdamW step.
The two loops share the model and optimiser and alternate in blocks of ``--steps``
steps, ``--repeats`` times per thread count, so machine noise hits both alike;
medians are reported.

* ``naive``: the HookedTransformer's own forward, ``model(tokens)[:, -1]``, i.e. every
  position, every hook point (what a plain TransformerLens training loop does);
* ``fast``: :func:`grok_interp.training.forwards.fast_forward` (what ``train_hooked`` uses);
* ``compile`` (with ``--compile``): :func:`grok_interp.training.forwards.compiled_forward`, the
  fast forward through ``torch.compile``; its one-off compile time is reported (it
  depends on whether TorchInductor's on-disk cache already holds the graph).

``wall_ms`` is elapsed time; ``cpu_ms`` is process CPU time, what the step costs on a
free core when one thread is used (on a shared machine wall time also counts waiting;
with 2 threads CPU time also counts OpenMP spin-waiting). With ``--loop`` it also times
``train_hooked`` itself (``forward="hooked"`` vs ``"auto"``, a history row with a test
evaluation every 10 steps) on one thread.

    python benchmarks/train_step.py --threads 1 2 --repeats 7 --loop
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import grok_interp as g
from grok_interp.training.forwards import compiled_forward, fast_forward, hooked_forward
from grok_interp.training import loss_fn, make_optimizer


def _block(step, n: int) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    return (time.perf_counter() - t) / n * 1e3, (time.process_time() - c) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=113)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed block")
    ap.add_argument("--loop", action="store_true", help="also time train_hooked itself (1 thread)")
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile'd fast forward")
    ap.add_argument("--loop-steps", type=int, default=100)
    args = ap.parse_args()

    cfg = g.RunConfig.from_kwargs(p=args.p)
    task = g.Task(p=args.p)
    split = g.Split.build(task, "random", cfg.data.frac, cfg.data.data_seed)
    toks, labels = task.tokens(split.train_pairs), task.answers(split.train_pairs)
    model = g.models.build_model(cfg.model, task)
    opt = make_optimizer(model, cfg.train)
    backend = g.models.backend_of(model)

    def stepper(fwd):
        def step() -> None:
            loss = loss_fn(fwd(model, toks), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    loops = {"naive": stepper(hooked_forward), "fast": stepper(fast_forward)}
    compile_s = None
    if args.compile:
        loops["compile"] = stepper(compiled_forward)
        t = time.perf_counter()
        loops["compile"]()
        compile_s = time.perf_counter() - t
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for step in loops.values():  # warm-up
            _block(step, 2)
        wall: dict[str, list[float]] = {k: [] for k in loops}
        cpu: dict[str, list[float]] = {k: [] for k in loops}
        for _ in range(args.repeats):
            for name, step in loops.items():
                w, c = _block(step, args.steps)
                wall[name].append(w)
                cpu[name].append(c)
        med_w = {k: statistics.median(v) for k, v in wall.items()}
        med_c = {k: statistics.median(v) for k, v in cpu.items()}
        row = {"threads": threads}
        for name in loops:
            row[f"{name}_wall_ms"], row[f"{name}_cpu_ms"] = med_w[name], med_c[name]
        row["speedup_wall"], row["speedup_cpu"] = med_w["naive"] / med_w["fast"], med_c["naive"] / med_c["fast"]
        if "compile" in loops:
            row["compile_speedup_wall"] = med_w["naive"] / med_w["compile"]
            row["compile_speedup_cpu"] = med_c["naive"] / med_c["compile"]
        rows.append(row)

    loop = None
    if args.loop:
        torch.set_num_threads(1)
        opts = dict(p=args.p, steps=args.loop_steps, eval_every=10, checkpoint_every=10**9, progress=False)
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
        "benchmark": "train_step", "p": args.p, "n_train": len(toks), "backend": backend,
        "torch": torch.__version__, "repeats": args.repeats, "steps_per_block": args.steps,
        "compile_s": compile_s, "step": rows, "train_hooked_loop": loop,
    }
    print(json.dumps(result))
    print(f"\ntrain step at p={args.p} ({len(toks)} pairs, full batch, AdamW), median ms/step")
    print(f"{'threads':>7} | {'naive wall':>10} {'fast wall':>10} {'ratio':>6} | {'naive cpu':>10} {'fast cpu':>10} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['threads']:>7} | {r['naive_wall_ms']:>10.1f} {r['fast_wall_ms']:>10.1f} {r['speedup_wall']:>5.2f}x |"
            f" {r['naive_cpu_ms']:>10.1f} {r['fast_cpu_ms']:>10.1f} {r['speedup_cpu']:>5.2f}x"
        )
        if "compile_wall_ms" in r:
            print(
                f"{'compile':>7} | {'':>10} {r['compile_wall_ms']:>10.1f} {r['compile_speedup_wall']:>5.2f}x |"
                f" {'':>10} {r['compile_cpu_ms']:>10.1f} {r['compile_speedup_cpu']:>5.2f}x"
                f"   (first call, compiling: {compile_s:.1f} s)"
            )
    if loop:
        print(
            f"\ntrain_hooked, {loop['steps']} steps, eval every 10, 1 thread: forward=hooked {loop['hooked_cpu_ms']:.1f} "
            f"ms/step CPU ({loop['hooked_wall_ms']:.1f} wall), auto (fast) {loop['auto_cpu_ms']:.1f} CPU "
            f"({loop['auto_wall_ms']:.1f} wall): {loop['speedup_cpu']:.2f}x CPU, {loop['speedup_wall']:.2f}x wall"
        )


if __name__ == "__main__":
    main()
