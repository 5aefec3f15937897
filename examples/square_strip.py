"""SQUARE and STRIP splits: the training distribution caps what grokking can reach.

Gu et al. (2025), p = 97, r(a, b) = a + b, frac 0.3, one layer. SQUARE(k) forces every
pair with a <= k and b <= k into the test set; STRIP(t) forces every pair with a <= t.
The training set is then filled from the rest. Per run this prints U-Acc (highest test
accuracy after memorisation), L-Acc (lowest test accuracy after U-Acc is approached),
GO-Epoch (``grokked_at``) and the ceilings predicted from the split alone
(:mod:`grok_interp.theory`: the share of test pairs with a same-class training pair
within torus-Manhattan radius r). A random split of the same size is the reference.

    python examples/square_strip.py            # the paper's scale (hours on a laptop CPU)
    python examples/square_strip.py --quick    # p = 23, frac 0.5, lr 3e-3: about a minute

Step cap (paper scale): 8000 steps, stopping 1000 steps after test accuracy first
reaches 0.99; runs whose ceiling is below 0.99 train the full 8000 steps. The random
reference groks later than the SQUARE runs (step 8630 here), so its cap is 12000.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import _common as c  # noqa: E402
from grok_interp import Split, Task  # noqa: E402
from grok_interp.sweep import sweep  # noqa: E402
from grok_interp.theory import alpha_bound, ceiling_curve, covered_per_point  # noqa: E402

SCALES = {
    "paper": dict(
        base=dict(p=97, op="add", frac=0.3, steps=8000, eval_every=20, checkpoint_every=200, stop_after_grok=1000),
        squares=list(range(30, 61, 5)),
        strips=[40, 50, 60, 67],
        radii=[2, 8, 16, 32],
        # The random split of the same size first reaches 0.99 at step 8630
        # (benchmarks/time_to_grok.py), past the 8000 cap, so the reference trains longer.
        random_steps=12000,
    ),
    # What fitted this session's shared 2-core CPU: p = 47 (k, t scaled by 47/97), frac 0.5,
    # lr 3e-3 (the paper: p = 97, frac 0.3, lr 1e-3). With frac 0.5 the strips t >= 23 leave
    # fewer pairs outside than int(frac p^2), so all of them train.
    "reduced": dict(
        base=dict(p=47, op="add", frac=0.5, lr=3e-3, steps=1500, eval_every=10, checkpoint_every=250,
                  stop_after_grok=500),
        squares=[15, 17, 19, 22, 24, 27, 29],
        strips=[19, 24, 29, 32],
        radii=[2, 4, 8, 16],
    ),
    "quick": dict(
        base=dict(p=23, op="add", frac=0.5, steps=1200, lr=3e-3, eval_every=10, checkpoint_every=200,
                  stop_after_grok=50),
        squares=[8],
        strips=[16],  # leaves 6 rows = 138 pairs outside, fewer than int(0.5 * 529) = 264: all train
        radii=[2, 4, 8],
    ),
}


def configs(scale: dict) -> list[dict]:
    runs = [{"split": "square", "k": k} for k in scale["squares"]]
    runs += [{"split": "strip", "t": t} for t in scale["strips"]]
    runs.append({"split": "random", **({"steps": scale["random_steps"]} if "random_steps" in scale else {})})
    return runs


def main(argv: list[str] | None = None) -> int:
    args = c.parser(__doc__.splitlines()[0], "runs/examples/square_strip").parse_args(argv)
    out = c.setup(args)
    timer = c.Timer()
    scale = c.scale(args, SCALES)
    radii = scale["radii"]
    table = sweep(configs(scale), out, base=scale["base"], radii=radii, **c.sweep_kwargs(args))
    table = table.rename(columns={"grokked_at": "go_epoch"})
    cols = ["run", "n_train", "memorised_at", "go_epoch", "u_acc", "l_acc", "final_test_acc", "final_step",
            "ceiling", "ceiling_transpose", *[f"ceiling_r{r}" for r in radii], "status", "error"]
    c.show(table, "SQUARE / STRIP: measured (U-Acc, L-Acc, GO-Epoch) and predicted ceilings", cols)
    table.to_csv(out / "square_strip.csv", index=False)
    task = Task(p=scale["base"]["p"], op=scale["base"]["op"])
    bound = [(r, covered_per_point(task, r)) for r in radii]
    print(f"\nrandom-split bound alpha = 2 ln(p) / C at p={task.p} (C: same-class pairs within r of a pair):")
    for r, C in bound:
        print(f"  r={r:3d}: C={C:6.2f}  alpha={alpha_bound(task.p, C):.3f}  (this study's frac: {scale['base']['frac']})")

    # Plot 1: test accuracy over training, one line per run.
    colors = [plt.get_cmap("tab20")(i % 20) for i in range(len(table))]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (_, row) in enumerate(table.iterrows()):
        if row["status"] == "failed":
            continue
        h = c.history(row["path"])
        ax.plot(h["step"], h["test_acc"], label=row["run"], lw=1, color=colors[i])
    ax.set(xlabel="step", ylabel="test accuracy", title="SQUARE / STRIP: test accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=7, ncol=2)
    c.save(fig, out / "test_accuracy.png")

    # Plot 2: predicted ceiling curves against the measured U-Acc of each run.
    base = scale["base"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (_, row) in enumerate(table.iterrows()):
        split = Split.build(task, row.get("split") or "random", base["frac"], 598,
                            k=None if np.isnan(row.get("k", np.nan)) else int(row["k"]),
                            t=None if np.isnan(row.get("t", np.nan)) else int(row["t"]))
        curve = ceiling_curve(split)
        color = colors[i]
        ax.plot(curve["radius"], curve["ceiling"], color=color, lw=1, label=row["run"])
        if row["status"] != "failed" and np.isfinite(row["u_acc"]):
            ax.axhline(row["u_acc"], color=color, ls=":", lw=1)
    ax.set(xlabel="radius r (torus Manhattan distance)", ylabel="share of test pairs",
           title="predicted ceiling(r) (lines) vs measured U-Acc (dotted)", ylim=(0, 1.02))
    ax.legend(fontsize=7, ncol=2)
    c.save(fig, out / "ceiling_vs_uacc.png")
    timer.done(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
