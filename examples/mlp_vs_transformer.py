"""The MLP baseline against the one-layer transformer, on a + b and a^2 + ab + b^2.

Gu et al. (2025) argue that grokking is decided by embedding uniformity and the
training distribution, not by attention, so it also appears in a plain MLP on
concatenated embeddings (``arch="mlp"``: 128 + 128 -> 512 -> 512 -> p). This trains
both architectures on both operations with the same split and prints their events
and ceilings side by side.

    python examples/mlp_vs_transformer.py            # p = 97, frac 0.3 (a+b) / 0.5 (a^2+ab+b^2)
    python examples/mlp_vs_transformer.py --quick    # p = 23, seconds

Step cap (paper scale): 12000 steps for a+b, 8000 for a^2+ab+b^2 (a random split at p = 97, frac 0.3 first reaches 0.99
at step 8630 in benchmarks/time_to_grok.py), stopping 500 steps after test accuracy reaches 0.99.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402

import _common as c  # noqa: E402
from grok_interp.sweep import grid, sweep  # noqa: E402

SCALES = {
    "paper": dict(
        base=dict(p=97, split="random", steps=12000, eval_every=20, checkpoint_every=500, stop_after_grok=500),
        runs=[*grid(op=["add"], frac=[0.3], arch=["transformer", "mlp"]),
              *grid(op=["a2_ab_b2"], frac=[0.5], arch=["mlp", "transformer"], steps=[8000])],  # never reaches 0.99
    ),
    "reduced": dict(  # p = 47, frac 0.5 for both operations, lr 3e-3: what fitted this session's CPU
        base=dict(p=47, split="random", lr=3e-3, steps=2000, eval_every=10, checkpoint_every=500,
                  stop_after_grok=500),
        runs=[*grid(op=["add", "a2_ab_b2"], frac=[0.5], arch=["transformer", "mlp"])],
    ),
    "quick": dict(
        base=dict(p=23, split="random", steps=400, lr=1e-2, d_model=64, n_heads=4, d_mlp=128, eval_every=10,
                  checkpoint_every=200, stop_after_grok=50),
        runs=[*grid(op=["add", "a2_ab_b2"], frac=[0.6], arch=["transformer", "mlp"])],
    ),
}


def main(argv: list[str] | None = None) -> int:
    args = c.parser(__doc__.splitlines()[0], "runs/examples/mlp_vs_transformer").parse_args(argv)
    out = c.setup(args)
    timer = c.Timer()
    scale = c.scale(args, SCALES)
    table = sweep(scale["runs"], out, base=scale["base"], radii=[4, 8], **c.sweep_kwargs(args))
    c.show(table, "MLP baseline vs transformer", ["run", "op", "arch", "frac", "memorised_at", "grokked_at", "u_acc",
                                                  "l_acc", "final_test_acc", "ceiling", "ceiling_r4", "ceiling_r8",
                                                  "final_step", "status", "error"])
    table.to_csv(out / "mlp_vs_transformer.csv", index=False)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, op in zip(axes, ["add", "a2_ab_b2"]):
        for _, row in table[table["op"] == op].iterrows():
            if row["status"] == "failed":
                continue
            h = c.history(row["path"])
            ls = "-" if row["arch"] == "transformer" else "--"
            ax.plot(h["step"], h["test_acc"], ls=ls, lw=1, label=f"{row['arch']} test")
            ax.plot(h["step"], h["train_acc"], ls=ls, lw=0.6, alpha=0.5, label=f"{row['arch']} train")
        ax.set(xlabel="step", title=op, ylim=(0, 1.02))
        ax.legend(fontsize=7)
    axes[0].set_ylabel("accuracy")
    c.save(fig, out / "mlp_vs_transformer.png")
    timer.done(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
