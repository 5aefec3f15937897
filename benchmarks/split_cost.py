"""What the split step loses against two cores that share nothing.

``train_hooked`` on a 2-core machine runs :class:`grok_interp.training.loop.FullBatchStep`
with two parts: each half of the training set is computed by one torch thread in its own
Python thread, and the halves' gradients are summed. Ideally a step then costs one half
step on one core. This script times, in one process tree and alternating the cases
``--repeats`` times (median ms per step, p = ``--p``, the README main job's model):

* ``half alone``: one half step (fast forward, the default loss, backward, fused AdamW), one
  thread, nothing else running;
* ``half x2 processes``: the same in two processes at once (separate models): what the
  cores' shared cache, memory and clock cost when both work;
* ``half x2 threads``: the same in two Python threads of one process (separate models):
  adds the interpreter lock, which a step's ~1000 small operations take between kernels;
* ``split step``: ``FullBatchStep(parts=2, workers=2)`` forward and update, what a run does
  per step (same halves, shared weights, gradients summed in order), with the calling
  thread at one torch thread as ``train_hooked`` sets it;
* ``split, caller at 2 threads``: the same with the calling thread at two torch threads
  (its gradient sum and AdamW then run an OpenMP team beside the parts' threads): what
  ``train_hooked`` avoids;
* ``split, stacked forward``: the split step with the run-axis algebra
  (:func:`grok_interp.training.forwards.fast_logits` on a run axis of one) instead of
  the one-model forward :func:`~grok_interp.training.forwards.fast_logits_one` that a
  single model runs: what that forward's fewer operations save;
* ``one core, two parts`` and ``one core, whole batch``: ``FullBatchStep(parts=2,
  workers=1)`` against ``parts=1``, everything at one torch thread: what a sweep worker
  (one thread per run, one run per core) pays for cutting the batch as the machine's two
  cores would (the parts fix a run's bits by machine, not by load).

    python benchmarks/split_cost.py
    python benchmarks/split_cost.py --p 97 --repeats 5

Prints one JSON line per case and a table with each case's ratio to the first case timed
(``half alone`` by default; ``--cases`` picks and orders them).
"""

from __future__ import annotations

import argparse
import json
import sys
import multiprocessing as mp
import statistics
import threading
import time

import torch

import grok_interp as g
from grok_interp.training import forwards
from grok_interp.training import make_optimizer
from grok_interp.training.loop import FullBatchStep, RunState, Schedule, TrainContext, loss_fn

import half_step


def _half_stepper(p: int, which: int):
    """A function doing one half step of a fresh model (half ``which`` of the training set)."""
    _, _, model, opt, toks, labels = half_step.half(p, which)

    def step() -> None:
        loss = loss_fn(forwards.fast_forward(model, toks), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _time(step, steps: int, warm: int = 3) -> float:
    for _ in range(warm):
        step()
    ts = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def _proc(p: int, which: int, steps: int, barrier, out) -> None:
    torch.set_num_threads(1)
    step = _half_stepper(p, which)
    step()
    barrier.wait()
    out.put(_time(step, steps))


def half_alone(p: int, steps: int) -> float:
    torch.set_num_threads(1)
    return _time(_half_stepper(p, 0), steps)


def half_processes(p: int, steps: int) -> float:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_proc, args=(p, i, steps, barrier, out)) for i in range(2)]
    for pr in procs:
        pr.start()
    times = [out.get() for _ in procs]
    for pr in procs:
        pr.join()
    return max(times)


def half_threads(p: int, steps: int) -> float:
    barrier, times = threading.Barrier(2), [0.0, 0.0]

    def work(i: int) -> None:
        torch.set_num_threads(1)
        step = _half_stepper(p, i)
        step()
        barrier.wait()
        times[i] = _time(step, steps)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(times)


def stacked_forward(model, tokens):
    """The one-layer fast forward through the stacked (run-axis) algebra, one run."""
    w = g.models.weights(model)
    stacked = {k: w[k][None] for k in forwards.FAST_WEIGHTS}
    return forwards.fast_logits(stacked, tokens[None], model.cfg.act_fn)[0]


def split_step(p: int, steps: int, caller_threads: int = 1, forward=forwards.fast_forward, parts: int = 2,
               workers: int = 2) -> float:
    cfg, task, split = half_step.main_job(p)
    toks, labels = task.tokens(split.train_pairs), task.answers(split.train_pairs)
    model = g.models.build_model(cfg.model, task)
    opt = make_optimizer(model, cfg.train, fused=True)
    ctx = TrainContext(task, split, toks, labels, task.tokens(split.test_pairs), task.answers(split.test_pairs),
                       forward)
    state = RunState(model=model, optimizer=opt, schedule=Schedule(steps=10**9, lr=cfg.train.lr), context=ctx)
    stepper = FullBatchStep(parts=parts, workers=workers)
    torch.set_num_threads(caller_threads)

    def step() -> None:
        out = stepper.forward([state])
        opt.zero_grad(set_to_none=True)
        stepper.update([state], [0], out)

    try:
        return _time(step, steps)
    finally:
        torch.set_num_threads(1)


CASES = {"half alone": half_alone, "half x2 processes": half_processes, "half x2 threads": half_threads,
         "split step": split_step, "split, caller at 2 threads": lambda p, steps: split_step(p, steps, 2),
         "split, stacked forward": lambda p, steps: split_step(p, steps, forward=stacked_forward),
         "one core, two parts": lambda p, steps: split_step(p, steps, parts=2, workers=1),
         "one core, whole batch": lambda p, steps: split_step(p, steps, parts=1, workers=1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--p", type=int, default=113)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per case and repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES),
                    help="the cases to time (ratios are to the first one named)")
    args = ap.parse_args()
    res: dict[str, list[float]] = {k: [] for k in args.cases}
    for r in range(args.repeats):
        for name in args.cases:
            res[name].append(CASES[name](args.p, args.steps))
            print(f"repeat {r + 1}: {name} {res[name][-1]:.2f} ms", file=sys.stderr, flush=True)
    first = args.cases[0]
    base = statistics.median(res[first])
    print(f"\nms per step, p = {args.p}, median of {args.repeats} x {args.steps} steps (ratio to {first})")
    for name, v in res.items():
        m = statistics.median(v)
        print(json.dumps({"benchmark": "split_cost", "p": args.p, "case": name, "ms": m, "ratio": m / base,
                          "ratio_to": first}), flush=True)
        print(f"  {name:<27} {m:7.2f} ms  {m / base:5.2f}x")


if __name__ == "__main__":
    main()
