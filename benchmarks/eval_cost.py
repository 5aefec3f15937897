"""The share of a run's time spent on history rows: dense rows against adaptive evaluation.

Part 1, measured: the README main job (``train_hooked(p=113)`` defaults into a run
directory, threads ``auto``) trained for ``--steps`` steps once per ``--sparse`` value
(``eval_sparse``; 1 = a test-set evaluation every ``eval_every`` steps), alternated
``--repeats`` times. The time inside the loop's row handling (training metrics, test
forwards, held weights, backfills, records) is summed and divided by the run's wall
time. The first few hundred steps are where a run moves most (memorisation), so
adaptive evaluation backfills most windows there: this part prices a test forward
and a step more than it shows the saving.

Part 2, replayed (``--replay HISTORY.csv``, a *dense* history of a whole run with its
``--replay-eval-every``): the real training loop is driven through that history by a
step function whose "model" is one number, the step, so held weights, backfills and
the decisions of ``grok_interp.training.loop.backfill_needed`` are exactly the ones a
run with those rows takes. It counts the test forwards of each ``eval_sparse`` and
projects the evaluation share with part 1's costs: forwards x ms per test forward
against steps x ms per step without rows.

    python benchmarks/eval_cost.py --steps 300
    python benchmarks/eval_cost.py --steps 300 --replay runs/p113/history.csv
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

import grok_interp as g
from grok_interp.config import TrainConfig
from grok_interp.training import loop

_T = {"rows": 0.0, "tests": 0.0, "forwards": 0, "depth": 0}


def _timed_rows(inner: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _T["depth"] += 1
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            _T["depth"] -= 1
            if _T["depth"] == 0:
                _T["rows"] += time.perf_counter() - t
    return wrapper


def _timed_tests(inner: Any) -> Any:
    def wrapper(self: Any, states: Any, due: list[int]) -> Any:
        t = time.perf_counter()
        try:
            return inner(self, states, due)
        finally:
            _T["tests"] += time.perf_counter() - t
            _T["forwards"] += len(due)
    return wrapper


def instrument() -> None:
    """Time the loop's row handling and the test forwards, through the public methods a
    row goes through: the step function's ``evaluate`` (dense rows), ``train_rows`` and
    ``test_rows`` (adaptive ones) and the run's ``hold``, ``resolve`` and ``record``. Only
    outermost calls count, so a nested one (``record`` inside ``resolve``) is not timed twice."""
    for cls, name in ((loop.FullBatchStep, "evaluate"), (loop.FullBatchStep, "train_rows"),
                      (loop.RunState, "hold"), (loop.RunState, "resolve"), (loop.RunState, "record")):
        setattr(cls, name, _timed_rows(getattr(cls, name)))
    loop.FullBatchStep.test_rows = _timed_rows(_timed_tests(loop.FullBatchStep.test_rows))


def measure(steps: int, sparse: int, p: int) -> dict[str, Any]:
    for k in ("rows", "tests", "forwards"):
        _T[k] = 0
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        run = g.train_hooked(p=p, steps=steps, eval_sparse=sparse, out=Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - t
    rows = len(run.history)
    return {"eval_sparse": sparse, "steps": steps, "wall_s": wall, "rows_s": _T["rows"], "tests_s": _T["tests"],
            "test_forwards": _T["forwards"], "rows": rows, "eval_share": _T["rows"] / wall,
            "ms_per_test_forward": _T["tests"] / max(_T["forwards"], 1) * 1e3,
            "ms_per_step_without_rows": (wall - _T["rows"]) / steps * 1e3}


class _Replay:
    """A step function serving the rows of a dense history; the model's one parameter
    is the step it stands at, so a backfill (weights swapped in) reads its own row."""

    adaptive = True  # it serves train_rows and test_rows, as FullBatchStep does

    def __init__(self, history: pd.DataFrame) -> None:
        self.rows = history.set_index("step")
        self.forwards = 0

    def forward(self, states: Any) -> None:
        return None

    def _row(self, step: int) -> Any:
        return self.rows.loc[step]

    def train_rows(self, states: Any, due: list[int], out: Any) -> list[dict[str, Any]]:
        return [{k: float(self._row(states[i].step)[k]) for k in ("train_loss", "train_acc")} for i in due]

    def test_rows(self, states: Any, due: list[int]) -> list[dict[str, Any]]:
        self.forwards += len(due)
        return [{k: float(self._row(int(states[i].model.w.item()))[k]) for k in ("test_loss", "test_acc")}
                for i in due]

    def evaluate(self, states: Any, due: list[int], out: Any) -> list[dict[str, Any]]:
        return [{**a, **b} for a, b in zip(self.train_rows(states, due, out), self.test_rows(states, due))]

    def update(self, states: Any, going: list[int], out: Any) -> None:
        with torch.no_grad():
            for i in going:
                states[i].model.w += 1


def replay(history: pd.DataFrame, eval_every: int, sparse: int, checkpoint_every: int = 100) -> dict[str, Any]:
    """Drive the training loop through ``history`` (dense rows every ``eval_every``)."""
    history = history[history["step"] % eval_every == 0].reset_index(drop=True)
    last = int(history["step"].iloc[-1])
    model = nn.Module()
    model.w = nn.Parameter(torch.zeros((), dtype=torch.float64))
    cfg = TrainConfig(steps=last, eval_every=eval_every, eval_sparse=sparse, checkpoint_every=checkpoint_every)
    state = loop.RunState(model=model, optimizer=torch.optim.SGD([model.w], lr=0.0), schedule=loop.Schedule.of(cfg))
    step_fn = _Replay(history)
    loop.train_loop([state], step_fn, progress=False)
    got = pd.DataFrame(state.history).set_index("step")
    dense = step_fn.rows.loc[got.index, got.columns]
    assert (got == dense).all().all(), "a replayed row differs from the history's"
    return {"eval_sparse": sparse, "steps": last, "dense_rows": len(history), "rows": len(got),
            "test_forwards": step_fn.forwards}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--p", type=int, default=113)
    ap.add_argument("--sparse", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--replay", default=None, help="a dense history.csv of a whole run")
    ap.add_argument("--replay-eval-every", type=int, default=10)
    args = ap.parse_args()
    instrument()
    measured: dict[int, list[dict[str, Any]]] = {k: [] for k in args.sparse}
    for _ in range(args.repeats):
        for k in args.sparse:
            r = measure(args.steps, k, args.p)
            measured[k].append(r)
            print(json.dumps({"benchmark": "eval_cost", "part": "measured", "p": args.p, **r}), flush=True)
    print(f"\nhistory rows' share of the run, p = {args.p}, {args.steps} steps (median of {args.repeats})")
    print(f"{'eval_sparse':>11} {'rows':>5} {'test fwd':>8} {'wall s':>7} {'rows s':>7} {'share':>6}"
          f" {'ms/test fwd':>11} {'ms/step':>8}")
    med = {k: {f: statistics.median(r[f] for r in rs) for f in rs[0]} for k, rs in measured.items()}
    for k, m in med.items():
        print(f"{k:>11} {m['rows']:>5.0f} {m['test_forwards']:>8.0f} {m['wall_s']:>7.1f} {m['rows_s']:>7.2f}"
              f" {m['eval_share']:>6.1%} {m['ms_per_test_forward']:>11.1f} {m['ms_per_step_without_rows']:>8.1f}")
    if args.replay:
        history = pd.read_csv(args.replay)
        dense = med[min(med)]
        t_fwd, t_step = dense["ms_per_test_forward"], dense["ms_per_step_without_rows"]
        print(f"\nreplayed: {args.replay}, projected with {t_fwd:.1f} ms per test forward, {t_step:.1f} ms per step")
        print(f"{'eval_sparse':>11} {'steps':>6} {'rows':>5} {'test fwd':>8} {'projected share':>15}")
        for k in args.sparse:
            r = replay(history, args.replay_eval_every, k)
            share = r["test_forwards"] * t_fwd / (r["steps"] * t_step + r["test_forwards"] * t_fwd)
            print(json.dumps({"benchmark": "eval_cost", "part": "replayed", "history": args.replay, **r,
                              "projected_eval_share": share}), flush=True)
            print(f"{k:>11} {r['steps']:>6} {r['rows']:>5} {r['test_forwards']:>8} {share:>15.1%}")


if __name__ == "__main__":
    main()
