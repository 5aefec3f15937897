"""The speed figures on a GPU, in one short call: train step, time to grok, K runs batched.

Prepared for a lent GPU machine (the project never depends on one): everything stays
on the device and the training step has no host round trip (the loop reads values back
only at history rows). Three measurements, each printed as a JSON line, then a table:

1. ``train_step``: ms per full-batch p = 113 step (3830 pairs), the hooked model's own
   forward against the fast forward (on a GPU the fast forward runs its products
   whole-batch, see :mod:`grok_interp.training.fused`), timed with CUDA
   synchronisation around blocks of steps;
2. ``time_to_grok``: the README main job (``train_hooked(p=113)`` defaults, a run
   directory, ``device="cuda"``) until test accuracy first reaches 0.99;
3. ``many_runs``: ``--k`` runs of p = 113 with different seeds through
   :func:`grok_interp.train_many` (one batched computation) against one run alone, in
   run-steps per second, for ``--many-steps`` steps.

    python benchmarks/gpu.py                 # on the GPU machine, about 3-5 minutes
    python benchmarks/gpu.py --device cpu --p 23 --steps 5 --many-steps 20 --k 2   # a smoke run

Budget: at 20-40 ms of GPU per 1000 steps of one run, (2) takes well under a minute;
``--skip`` leaves parts out when time is short.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import grok_interp as g
from grok_interp.training import loss_fn, make_optimizer
from grok_interp.training.forwards import fast_forward, hooked_forward

PARTS = ("train_step", "time_to_grok", "many_runs")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(args: argparse.Namespace, device: torch.device) -> dict:
    cfg = g.RunConfig.from_kwargs(p=args.p, device=device.type)
    task = g.Task(p=args.p)
    split = g.Split.build(task, "random", cfg.data.frac, cfg.data.data_seed)
    toks = task.tokens(split.train_pairs).to(device)
    labels = task.answers(split.train_pairs).to(device)
    model = g.models.build_model(cfg.model, task).to(device)
    opt = make_optimizer(model, cfg.train, fused=device.type == "cuda")

    def block(fwd, n: int) -> float:
        sync(device)
        t = time.perf_counter()
        for _ in range(n):
            loss = loss_fn(fwd(model, toks), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        return (time.perf_counter() - t) / n * 1e3

    forwards = {"hooked": hooked_forward, "fast": fast_forward}
    for fwd in forwards.values():
        block(fwd, 3)  # warm-up (kernels, allocator)
    ms = {k: statistics.median(block(f, args.steps) for _ in range(args.repeats)) for k, f in forwards.items()}
    return {"part": "train_step", "p": args.p, "n_train": len(toks), **{f"{k}_ms": v for k, v in ms.items()},
            "speedup": ms["hooked"] / ms["fast"]}


def time_to_grok(args: argparse.Namespace, device: torch.device) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        sync(device)
        t = time.perf_counter()
        run = g.train_hooked(p=args.p, device=device.type, stop_after_grok=0, steps=args.max_steps,
                             out=Path(tmp) / "run", progress=False)
        sync(device)
        wall = time.perf_counter() - t
    hist = run.history
    hit = hist[hist["test_acc"] >= 0.99]
    steps = int(hist["step"].iloc[-1])
    return {"part": "time_to_grok", "p": args.p, "grok_step": int(hit["step"].iloc[0]) if len(hit) else None,
            "steps_run": steps, "wall_s": wall, "ms_per_step": wall / max(steps, 1) * 1e3}


def many_runs(args: argparse.Namespace, device: torch.device) -> dict:
    base = dict(p=args.p, device=device.type, steps=args.many_steps, eval_every=100, checkpoint_every=10**9)
    specs = [dict(base, seed=s) for s in range(args.k)]
    sync(device)
    t = time.perf_counter()
    g.train_hooked(**specs[0], progress=False)
    sync(device)
    one = time.perf_counter() - t
    t = time.perf_counter()
    g.train_many(specs, progress=False)
    sync(device)
    batched = time.perf_counter() - t
    rate_one, rate_many = args.many_steps / one, args.k * args.many_steps / batched
    return {"part": "many_runs", "p": args.p, "k": args.k, "steps": args.many_steps, "one_run_s": one,
            "batched_s": batched, "run_steps_per_s_one": rate_one, "run_steps_per_s_batched": rate_many,
            "speedup": rate_many / rate_one}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (the point of this script) or cpu (a smoke run)")
    ap.add_argument("--p", type=int, default=113)
    ap.add_argument("--steps", type=int, default=50, help="steps per timed block of train_step")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-steps", type=int, default=25_000)
    ap.add_argument("--k", type=int, default=16, help="runs batched in many_runs")
    ap.add_argument("--many-steps", type=int, default=1000)
    ap.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: this script measures a GPU (use --device cpu for a smoke run)")
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    results = []
    for part, fn in (("train_step", train_step), ("time_to_grok", time_to_grok), ("many_runs", many_runs)):
        if part in args.skip:
            continue
        res = {"benchmark": "gpu", "device": name, "torch": torch.__version__, **fn(args, device)}
        results.append(res)
        print(json.dumps(res), flush=True)
    print(f"\n{name}, p = {args.p}")
    for r in results:
        if r["part"] == "train_step":
            print(f"train step: hooked {r['hooked_ms']:.2f} ms, fast {r['fast_ms']:.2f} ms ({r['speedup']:.1f}x)")
        elif r["part"] == "time_to_grok":
            print(f"time to 0.99: step {r['grok_step']}, {r['wall_s']:.1f} s ({r['ms_per_step']:.2f} ms/step)")
        else:
            print(f"{r['k']} runs batched: {r['run_steps_per_s_batched']:.0f} run-steps/s against "
                  f"{r['run_steps_per_s_one']:.0f} for one run ({r['speedup']:.1f}x)")


if __name__ == "__main__":
    main()
