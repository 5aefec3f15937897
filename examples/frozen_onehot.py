"""A frozen one-hot embedding: MED moves to a hidden layer (activation MED).

With ``embed_init="onehot"`` the embedding is the identity and never trains, so the
embedding MED is constant. Gu et al. (2025) then take the same consecutive-difference
measure on the first hidden layer; here :func:`grok_interp.measures.activation_med`
on ``blocks.0.mlp.hook_post`` at the last position. This prints the run's events and
:func:`grok_interp.measures.compare_measures` (is activation MED tracking test loss
after memorisation?) and plots both MEDs beside test loss.

    python examples/frozen_onehot.py            # p = 97, a + b, frac 0.3
    python examples/frozen_onehot.py --quick    # p = 23, seconds

Step cap (paper scale): 10000 steps, stopping 500 steps after test accuracy reaches 0.99.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402

import _common as c  # noqa: E402
from grok_interp.measures import compare_measures  # noqa: E402
from grok_interp.sweep import sweep  # noqa: E402

MEASURES = ["med", "activation_med"]

SCALES = {
    "paper": dict(
        base=dict(p=97, op="add", split="random", frac=0.3, steps=10000, eval_every=20, checkpoint_every=500,
                  stop_after_grok=500, measures=MEASURES),
    ),
    "reduced": dict(  # p = 47, frac 0.5, lr 3e-3: what fitted this session's shared CPU
        base=dict(p=47, op="add", split="random", frac=0.5, lr=3e-3, steps=2000, eval_every=10,
                  checkpoint_every=250, stop_after_grok=500, measures=MEASURES),
    ),
    "quick": dict(
        base=dict(p=23, op="add", split="random", frac=0.6, steps=400, lr=1e-2, d_model=32, n_heads=4, d_mlp=128,
                  eval_every=10, checkpoint_every=200, stop_after_grok=100, measures=MEASURES),
    ),
}


def main(argv: list[str] | None = None) -> int:
    args = c.parser(__doc__.splitlines()[0], "runs/examples/frozen_onehot").parse_args(argv)
    out = c.setup(args)
    timer = c.Timer()
    scale = c.scale(args, SCALES)
    table = sweep([{"embed_init": "onehot"}], out, base=scale["base"], **c.sweep_kwargs(args))
    c.show(table, "frozen one-hot embedding", ["run", "memorised_at", "grokked_at", "u_acc", "final_test_acc",
                                               "final_step", "status", "error"])
    row = table.iloc[0]
    if row["status"] == "failed":
        return 1
    h = c.history(row["path"])
    print(f"\nembedding MED over training: min {h['med'].min():.6g}, max {h['med'].max():.6g} (frozen: constant)")
    cmp = compare_measures(h)
    c.show(cmp, "which measure tracks test loss after memorisation")
    cmp.to_csv(out / "compare_measures.csv", index=False)
    table.to_csv(out / "frozen_onehot.csv", index=False)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(h["step"], h["test_loss"], color="C0", lw=1, label="test loss")
    ax.set(xlabel="step", ylabel="test loss", yscale="log", title="frozen one-hot embedding")
    ax2 = ax.twinx()
    ax2.plot(h["step"], h["activation_med"], color="C3", lw=1.2, label="activation MED (mlp hook_post)")
    ax2.plot(h["step"], h["med"] / h["med"].iloc[0] * h["activation_med"].iloc[0], color="grey", ls="--", lw=1,
             label="embedding MED (rescaled; constant)")
    ax2.set_ylabel("MED")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [hd.get_label() for hd in handles], fontsize=8)
    c.save(fig, out / "frozen_onehot.png")
    timer.done(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
