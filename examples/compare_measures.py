"""Which progress measure tracks generalisation? MED next to the Fourier measures.

Evaluates the cheap uniformity measures (MED, uniformity statistics, weight norm) and
the Fourier/circuit suite of Nanda et al. (restricted and excluded loss with the final
checkpoint's key frequencies held fixed, Gini of W_E and W_out W_U, logit cosine
similarity) on every checkpoint of one run, prints the events and the
``compare_measures`` table, checks the expected directions, and writes a plot.

    # analyse an existing run directory (e.g. the README main job); the committed
    # results/compare_measures/p113/ came from this run
    python examples/compare_measures.py runs/p113 --out results/compare_measures/p113
    # or train one first (p = 97, frac 0.3, default cheap measures recorded every 10 steps)
    python examples/compare_measures.py runs/p97 --train --p 97 --steps 20000
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import grok_interp as g  # noqa: E402


def _vlines(ax, ev) -> None:
    for step, colour, label in ((ev.memorised_at, "grey", "memorised"), (ev.grokked_at, "k", "grokked")):
        if step is not None:
            ax.axvline(step, color=colour, ls="--", lw=0.8, label=label)


def plot(df: pd.DataFrame, hist: pd.DataFrame, ev, path: Path, title: str) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    ax = axes[0, 0]
    ax.plot(hist["step"], hist["train_loss"], label="train loss")
    ax.plot(hist["step"], hist["test_loss"], label="test loss")
    ax.set_yscale("log")
    ax.set_title("loss")
    panels = [
        (axes[0, 1], ["med"], "MED (mean consecutive embedding distance)"),
        (axes[0, 2], ["restricted_loss", "excluded_loss", "test_loss"], "restricted / excluded loss (log)"),
        (axes[1, 0], ["gini_embed", "gini_logit"], "Gini of Fourier norms"),
        (axes[1, 1], ["weight_norm"], "weight norm (sum of squares)"),
        (axes[1, 2], ["logit_cosine", "top2_variance", "med_cv"], "logit cosine, top-2 PC share, MED CV"),
    ]
    for ax, cols, name in panels:
        for c in cols:
            if c in df.columns:
                ax.plot(df["step"], df[c], label=c)
        ax.set_title(name)
    axes[0, 2].set_yscale("log")
    for ax in axes.flat:
        _vlines(ax, ev)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"plot written to {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="run directory (analysed; written first with --train)")
    ap.add_argument("--out", default=None, help="output directory (default RUN-measures)")
    ap.add_argument("--train", action="store_true", help="train the run first (resumes if present)")
    ap.add_argument("--p", type=int, default=97)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    run_dir = Path(args.run)
    out = Path(args.out or f"{run_dir}-measures")
    out.mkdir(parents=True, exist_ok=True)
    if args.train:
        g.train_hooked(
            p=args.p, frac=0.3, steps=args.steps, stop_after_grok=1000, out=run_dir,
            resume=run_dir.exists(), measures="default",
        )
    run = g.load_run(run_dir)
    df = run.measure(["default", "fourier", "med_sum", "restricted_loss_difference", "excluded_loss_difference"],
                     progress=True)
    df.to_csv(out / "measures.csv", index=False)
    ev = g.events(run.history)
    table = g.compare_measures(run, df)
    table.to_csv(out / "compare.csv", index=False)

    print(f"run {run_dir}: p={run.task.p}, {len(df)} checkpoints, key frequencies {df.attrs['key_freqs']}")
    print(f"events: memorised_at {ev.memorised_at}, grokked_at {ev.grokked_at}, U-Acc {ev.u_acc:.3f}, "
          f"L-Acc {ev.l_acc:.3f}; test loss half-way at step {table.attrs['target_moved_at']}")
    keep = [s for s in (0, ev.memorised_at, ev.grokked_at, int(df["step"].max())) if s is not None]
    near = sorted({int(df["step"].iloc[(df["step"] - s).abs().argmin()]) for s in keep})
    cols = ["step", "test_loss", "med", "restricted_loss", "excluded_loss", "gini_embed", "gini_logit",
            "logit_cosine", "weight_norm"]
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print("\nmeasures at events (start, memorised, grokked, last):")
        print(df.set_index("step").loc[near].reset_index()[cols].round(4).to_string(index=False))
        print("\ncompare_measures (after memorisation; lag > 0: the measure moves first):")
        print(table.round(3).to_string(index=False))

    t = table.set_index("measure")
    checks = {
        "MED falls as test loss falls (Spearman with test loss > 0, MED falls)":
            t.loc["med", "spearman"] > 0 and t.loc["med", "direction"] == "falls",
        "restricted loss falls before test loss":
            t.loc["restricted_loss", "direction"] == "falls" and bool(t.loc["restricted_loss", "before_test_loss"]),
        "excluded loss rises": t.loc["excluded_loss", "direction"] == "rises",
        "Gini (W_E) rises": t.loc["gini_embed", "direction"] == "rises",
        "Gini (W_out W_U) rises": t.loc["gini_logit", "direction"] == "rises",
    }
    print()
    for name, ok in checks.items():
        print(f"[{'yes' if ok else 'NO '}] {name}")
    plot(df, run.history, ev, out / "measures.png", f"{run_dir}: progress measures (key freqs {df.attrs['key_freqs']})")
    print(f"\nwall time {time.perf_counter() - t0:.1f} s; outputs in {out}")


if __name__ == "__main__":
    main()
