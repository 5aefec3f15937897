"""Nanda et al.'s p = 113 analysis: key frequencies, restricted/excluded loss, Gini.

Nanda et al. (2023) split grokking of modular addition (p = 113, frac 0.3) into
memorisation, circuit formation and cleanup, using measures defined on the Fourier
basis. This script takes a trained run (``--run DIR``; otherwise it trains one, which
resumes if interrupted), finds the key frequencies on the final checkpoint, evaluates
restricted loss, excluded loss and the Gini coefficients over the saved checkpoints
(:meth:`grok_interp.GrokRun.measure`, key frequencies held fixed) and places the phase
boundaries found by :func:`grok_interp.measures.phases` and
:func:`grok_interp.measures.compare_measures` beside them.

    python examples/nanda_p113.py --run runs/p113   # analyse an existing run
    python examples/nanda_p113.py                   # train p = 113 (25000 steps max) first
    python examples/nanda_p113.py --quick           # p = 23, seconds

Training cap (when it trains): 25000 steps, stopping 1000 steps after test accuracy
reaches 0.99 (the README's main job).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import _common as c  # noqa: E402
import grok_interp as g  # noqa: E402
from grok_interp.measures import compare_measures, events  # noqa: E402
from grok_interp.sweeps import sweep  # noqa: E402

SCALES = {  # Nanda et al.'s analysis: the library setup only
    "library": {
        "paper": dict(base=dict(p=113, steps=25000, stop_after_grok=1000), n_checkpoints=40),
        "quick": dict(
            base=dict(p=23, frac=0.5, steps=1200, lr=3e-3, eval_every=10, checkpoint_every=50, stop_after_grok=50),
            n_checkpoints=12,
        ),
    },
}
MEASURES = ["key_freqs", "restricted_loss", "excluded_loss", "gini", "med"]


def pick_steps(available: list[int], n: int) -> list[int]:
    """About ``n`` checkpoint steps spread evenly over training (always the last)."""
    if len(available) <= n:
        return available
    idx = np.unique(np.linspace(0, len(available) - 1, n).round().astype(int))
    return [available[i] for i in idx]


def first_step(df: pd.DataFrame, col: str, cond) -> int | None:
    hit = df.loc[cond(df[col]), "step"]
    return int(hit.iloc[0]) if len(hit) else None


def main(argv: list[str] | None = None) -> int:
    ap = c.parser(__doc__.splitlines()[0], "runs/examples/nanda_p113", setups=list(SCALES))
    ap.add_argument("--run", default=None, help="an existing run directory to analyse (default: train one)")
    ap.add_argument("--checkpoints", type=int, default=None, help="how many checkpoints to measure")
    args = ap.parse_args(argv)
    out = c.setup(args)
    timer = c.Timer()
    scale = c.scale(args, SCALES)
    if args.run:
        run_dir = Path(args.run)
    else:
        table = sweep([{}], out, base=scale["base"], **c.sweep_kwargs(args))
        if table.loc[0, "status"] == "failed":
            print(f"training failed: {table.loc[0, 'error']}")
            return 1
        run_dir = Path(table.loc[0, "path"])
    run = g.load_run(run_dir)
    ev = events(run.history)
    steps = pick_steps(run.checkpoint_steps, args.checkpoints or scale["n_checkpoints"])
    m = run.measure(MEASURES, steps=steps, progress=not args.quiet)
    key_freqs = m.attrs.get("key_freqs")
    print(f"run {run_dir}: p={run.task.p}, {len(run.history)} history rows up to step {int(run.history['step'].iloc[-1])}")
    print(f"key frequencies (neuron rule, final checkpoint, held fixed): {key_freqs}")
    cols = ["step", "train_loss", "test_loss", "test_acc", "restricted_loss", "excluded_loss", "gini_embed",
            "gini_logit", "med"]
    c.show(m, "measures over checkpoints", cols)
    m.to_csv(out / "measures.csv", index=False)

    cmp = compare_measures(run, m[["step", "restricted_loss", "excluded_loss", "gini_embed", "gini_logit", "med"]])
    c.show(cmp, "compare_measures (after memorisation)")
    moved = dict(zip(cmp["measure"], cmp["moved_at"]))
    excl_peak = int(m.loc[m["excluded_loss"].idxmax(), "step"]) if m["excluded_loss"].notna().any() else None
    phases = pd.DataFrame([
        ("memorisation ends (train acc >= 0.99)", ev.memorised_at, "events.memorised_at"),
        ("restricted loss has moved half way", moved.get("restricted_loss"), "compare_measures.moved_at"),
        ("excluded loss peaks (circuit takes over the train loss)", excl_peak, "max of excluded_loss"),
        ("test accuracy half way to U-Acc (GO-Epoch)", ev.halfway_at, "events.halfway_at"),
        ("test accuracy >= 0.99 (cleanup done)", first_step(run.history, "test_acc", lambda s: s >= 0.99), "history"),
        ("Gini of W_L has moved half way", moved.get("gini_logit"), "compare_measures.moved_at"),
    ], columns=["phase boundary", "step", "found by"])
    c.show(phases, "phase boundaries (Nanda et al. at p=113: memorisation to ~1.4k, circuit formation to ~9.4k, "
                   "cleanup to ~14k)")
    phases.to_csv(out / "phases.csv", index=False)

    fig, axes = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    h = run.history
    axes[0].plot(h["step"], h["train_loss"], lw=1, label="train loss")
    axes[0].plot(h["step"], h["test_loss"], lw=1, label="test loss")
    axes[0].plot(m["step"], m["restricted_loss"], "o-", ms=3, lw=1, label="restricted loss (all pairs)")
    axes[0].plot(m["step"], m["excluded_loss"], "s-", ms=3, lw=1, label="excluded loss (train)")
    axes[0].set(yscale="log", ylabel="loss", title=f"p={run.task.p}: key frequencies {key_freqs}")
    axes[1].plot(m["step"], m["gini_embed"], "o-", ms=3, lw=1, label="Gini of W_E Fourier norms")
    axes[1].plot(m["step"], m["gini_logit"], "s-", ms=3, lw=1, label="Gini of W_L Fourier norms")
    axes[1].plot(h["step"], h["test_acc"], lw=1, color="grey", label="test accuracy")
    axes[1].set(xlabel="step", ylabel="Gini / accuracy", ylim=(0, 1.02))
    for ax in axes:
        for _, ph in phases.iterrows():
            if ph["step"] is not None and not pd.isna(ph["step"]):
                ax.axvline(ph["step"], color="k", lw=0.5, ls=":")
        ax.legend(fontsize=7)
    c.save(fig, out / "nanda_p113.png")
    timer.done(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
