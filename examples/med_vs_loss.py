"""MED against test loss for p = 47, 97, 211 (a + b, random split, frac 0.3).

MED (main embedding diff, :func:`grok_interp.measures.med`) is the mean distance
between the embeddings of consecutive residues. Gu et al. (2025) propose it as a cheap
progress measure that follows test loss after training accuracy reaches 1. Each run
records MED and the other cheap measures at every history row; this prints, per p,
:func:`grok_interp.measures.compare_measures` (correlation with test loss after
memorisation, lead/lag, when each measure moves) and draws MED beside test loss.

    python examples/med_vs_loss.py             # p = 47, 97, 211 (the paper's scale)
    python examples/med_vs_loss.py --quick     # p = 23, 29, seconds

Step caps (paper scale): 10000 steps, stopping 500 steps after test accuracy reaches 0.99.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402

import _common as c  # noqa: E402
from grok_interp.measures import compare_measures  # noqa: E402
from grok_interp.sweep import sweep  # noqa: E402

MEASURES = ["med", "med_sum", "weight_norm", "uniformity"]

SCALES = {
    "paper": dict(
        base=dict(op="add", split="random", frac=0.3, steps=10000, eval_every=20, checkpoint_every=500,
                  stop_after_grok=500, measures=MEASURES),
        ps=[47, 97, 211],
    ),
    "reduced": dict(  # p = 23, 31, 47, frac 0.5, lr 3e-3: what fitted this session's shared CPU
        base=dict(op="add", split="random", frac=0.5, lr=3e-3, steps=2000, eval_every=10, checkpoint_every=250,
                  stop_after_grok=500, measures=MEASURES),
        ps=[23, 31, 47],
    ),
    "quick": dict(
        base=dict(op="add", split="random", frac=0.6, steps=400, lr=1e-2, d_model=64, n_heads=4, d_mlp=128,
                  eval_every=10, checkpoint_every=200, stop_after_grok=100, measures=MEASURES),
        ps=[23, 29],
    ),
}


def main(argv: list[str] | None = None) -> int:
    args = c.parser(__doc__.splitlines()[0], "runs/examples/med_vs_loss").parse_args(argv)
    out = c.setup(args)
    timer = c.Timer()
    scale = c.scale(args, SCALES)
    table = sweep([{"p": p} for p in scale["ps"]], out, base=scale["base"], **c.sweep_kwargs(args))
    c.show(table, "runs", ["run", "memorised_at", "grokked_at", "u_acc", "final_test_acc", "final_step",
                           "status", "error"])
    rows = []
    for _, row in table.iterrows():
        if row["status"] == "failed":
            continue
        h = c.history(row["path"])
        try:
            cmp = compare_measures(h)
        except ValueError as exc:  # e.g. never memorised within the cap
            print(f"p={row['p']}: compare_measures: {exc}")
            continue
        c.show(cmp, f"p={row['p']}: which measure tracks test loss after memorisation "
                    f"(memorised_at={cmp.attrs.get('memorised_at')}, grokked_at={cmp.attrs.get('grokked_at')})")
        cmp.insert(0, "p", row["p"])
        rows.append(cmp)

        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(h["step"], h["test_loss"], color="C0", lw=1, label="test loss")
        ax.plot(h["step"], h["train_loss"], color="C0", lw=1, ls=":", label="train loss")
        ax.set(xlabel="step", ylabel="loss", yscale="log", title=f"p={row['p']}: MED vs test loss")
        ax2 = ax.twinx()
        ax2.plot(h["step"], h["med"], color="C3", lw=1.2, label="MED")
        ax2.set_ylabel("MED (mean consecutive embedding distance)", color="C3")
        ax3 = ax.twinx()
        ax3.plot(h["step"], h["test_acc"], color="C2", lw=0.8, alpha=0.6, label="test acc")
        ax3.set_ylim(0, 1.05)
        ax3.set_yticks([])
        for axis in (ax, ax2, ax3):
            ev = cmp.attrs
            for key, ls in (("memorised_at", "--"), ("grokked_at", "-.")):
                if ev.get(key) is not None and axis is ax:
                    axis.axvline(ev[key], color="grey", ls=ls, lw=0.8)
        handles = sum((a.get_legend_handles_labels()[0] for a in (ax, ax2, ax3)), [])
        ax.legend(handles, [hd.get_label() for hd in handles], fontsize=8, loc="center right")
        c.save(fig, out / f"med_vs_loss_p{row['p']}.png")
    if rows:
        import pandas as pd

        pd.concat(rows).to_csv(out / "compare_measures.csv", index=False)
    timer.done(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
