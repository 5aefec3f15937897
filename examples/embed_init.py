"""Circulant versus random embedding initialisation: steps to grok over several seeds.

Gu et al. (2025) initialise the embedding as a circulant matrix (every row a cyclic
shift of one random vector: consecutive residues start evenly spread) and report that
it roughly halves the steps to grok. This trains both inits with the same seeds and
prints, per run, the step where test accuracy first reaches 0.99 (``steps_to_99``) and
GO-Epoch (``grokked_at``), then the mean per init and the ratio.

    python examples/embed_init.py             # p = 97, a + b, frac 0.3, seeds 1..3
    python examples/embed_init.py --quick     # p = 23, seconds

Step cap (paper scale): 15000 steps (a random split at p = 97, frac 0.3 first reaches 0.99
at step 8630 in benchmarks/time_to_grok.py), stopping 200 steps after test accuracy reaches 0.99.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import _common as c  # noqa: E402
from grok_interp.sweep import grid, sweep  # noqa: E402

SCALES = {
    "paper": dict(
        base=dict(p=97, op="add", split="random", frac=0.3, steps=15000, eval_every=20, checkpoint_every=500,
                  stop_after_grok=200),
        seeds=[1, 2, 3],
    ),
    "reduced": dict(  # p = 47, frac 0.5, lr 3e-3: what fitted this session's shared CPU
        base=dict(p=47, op="add", split="random", frac=0.5, lr=3e-3, steps=2000, eval_every=10,
                  checkpoint_every=500, stop_after_grok=20),
        seeds=[1, 2, 3],
    ),
    "quick": dict(
        base=dict(p=23, op="add", split="random", frac=0.6, steps=400, lr=1e-2, d_model=64, n_heads=4, d_mlp=128,
                  eval_every=10, checkpoint_every=200, stop_after_grok=20),
        seeds=[1, 2],
    ),
}


def steps_to(history, threshold: float = 0.99) -> float:
    hit = history.loc[history["test_acc"] >= threshold, "step"]
    return float(hit.iloc[0]) if len(hit) else np.nan


def main(argv: list[str] | None = None) -> int:
    args = c.parser(__doc__.splitlines()[0], "runs/examples/embed_init").parse_args(argv)
    out = c.setup(args)
    timer = c.Timer()
    scale = c.scale(args, SCALES)
    # Seed by seed, both inits each: a sweep stopped early still has matched pairs.
    configs = grid(seed=scale["seeds"], embed_init=["random", "circulant"])
    table = sweep(configs, out, base=scale["base"], **c.sweep_kwargs(args))
    table["steps_to_99"] = [
        steps_to(c.history(p)) if s != "failed" else np.nan for p, s in zip(table["path"], table["status"])
    ]
    c.show(table, "circulant vs random embedding init", ["run", "embed_init", "seed", "memorised_at", "grokked_at",
                                                         "steps_to_99", "u_acc", "final_step", "status", "error"])
    summary = table.groupby("embed_init")[["grokked_at", "steps_to_99"]].agg(
        lambda s: s.astype(float).mean()).reindex(["random", "circulant"])
    summary["n_reached_99"] = table.groupby("embed_init")["steps_to_99"].apply(lambda s: int(s.notna().sum()))
    c.show(summary.reset_index(), "mean per init (runs that never reached 0.99 are left out of steps_to_99)")
    r = summary.loc["circulant", "steps_to_99"] / summary.loc["random", "steps_to_99"]
    print(f"\ncirculant / random steps to 0.99 test accuracy: {r:.2f} (the paper: about 0.5)")
    table.to_csv(out / "embed_init.csv", index=False)

    fig, ax = plt.subplots(figsize=(7, 4))
    for _, row in table.iterrows():
        if row["status"] == "failed":
            continue
        h = c.history(row["path"])
        ax.plot(h["step"], h["test_acc"], color="C0" if row["embed_init"] == "random" else "C3", lw=1,
                label=f"{row['embed_init']} seed {row['seed']}")
    ax.set(xlabel="step", ylabel="test accuracy", title="embedding init: random (blue) vs circulant (red)")
    ax.legend(fontsize=7)
    c.save(fig, out / "embed_init.png")
    timer.done(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
