"""MED against test loss for p = 47, 97, 211 (a + b, random split).

MED (main embedding diff, :func:`grok_interp.measures.med`) is the mean distance
between the embeddings of consecutive residues. Gu et al. (2025) propose it as a cheap
progress measure that follows test loss after training accuracy reaches 1. Each run
records MED and the other cheap measures at every history row; this prints, per run,
:func:`grok_interp.measures.compare_measures` (correlation with test loss after
memorisation, lead/lag, when each measure moves), per p the median and min-max over
seeds of MED's Spearman correlation and best lag, and draws MED beside test loss.

    python examples/med_vs_loss.py                      # library setup, p = 47, 97, 211
    python examples/med_vs_loss.py --setup reference    # transformer/base.py's runs
    python examples/med_vs_loss.py --quick              # p = 23, 29, seconds

Setups:

* ``library``: frac 0.3, data seed 598, one layer, float64 loss, all biases; MED is
  ``med`` (all p residues, wrapping); cap 10000 steps, stopping 500 after 0.99.
* ``reference``: ``transformer/base.py``, the script with the MED plots for random
  splits: frac 0.5, ``random.seed(11)`` pairs, **two layers**, no attention/unembedding
  biases, float32 loss; its MED is ``med_drop_last_avg`` (recorded beside ``med``; the
  tables use it). Budget: 30000 epochs cut by ``_common.REFERENCE_BUDGET``'s rules.

Seeds 0, 1, 2 per p in both setups (``--seeds``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import _common as c  # noqa: E402
from grok_interp.measures import compare_measures  # noqa: E402

STUDY = "med_vs_loss"
MEASURES = ["med", "med_sum", "weight_norm", "uniformity"]
REF_MEASURES = [*MEASURES, "med_drop_last_avg"]
QUICK = dict(steps=400, lr=1e-2, d_model=64, n_heads=4, d_mlp=128, eval_every=10, checkpoint_every=200)

SCALES = {
    "library": {
        "paper": dict(
            base=dict(op="add", split="random", frac=0.3, steps=10000, eval_every=20, checkpoint_every=500,
                      stop_after_grok=500, record=MEASURES),
            ps=[47, 97, 211], med="med",
        ),
        "reduced": dict(  # p = 23, 31, 47, frac 0.5, lr 3e-3: what fitted this session's shared CPU
            base=dict(op="add", split="random", frac=0.5, lr=3e-3, steps=2000, eval_every=10, checkpoint_every=250,
                      stop_after_grok=500, record=MEASURES),
            ps=[23, 31, 47], med="med",
        ),
        "quick": dict(
            base=dict(op="add", split="random", frac=0.6, stop_after_grok=100, record=MEASURES, **QUICK),
            ps=[23, 29], med="med",
        ),
    },
    "reference": {
        "paper": dict(
            base={**c.REFERENCE, **dict(op="add", split="random", frac=0.5, data_seed=11, n_layers=2,
                                        eval_every=20, checkpoint_every=2000, record=REF_MEASURES)},
            ps=[47, 97, 211], med="med_drop_last_avg",
        ),
        "quick": dict(
            base={**c.REFERENCE, **dict(op="add", split="random", frac=0.6, data_seed=11, n_layers=2,
                                        record=REF_MEASURES, stop_after_grok=100, stop_on_plateau=150,
                                        **{**QUICK, "steps": 300, "eval_every": 20})},
            ps=[23, 29], med="med_drop_last_avg",
        ),
    },
}


def compare(row: pd.Series, h: pd.DataFrame) -> dict:
    """compare_measures on the full history, kept as rows of compare_measures.csv."""
    try:
        cmp = compare_measures(h)
    except ValueError as exc:  # e.g. never memorised within the cap
        print(f"{row['run']}: compare_measures: {exc}")
        return {}
    cmp.insert(0, "run", row["run"])
    cmp.insert(1, "p", row["p"])
    cmp.insert(2, "seed", row["seed"])
    _COMPARED.append(cmp)
    return {}


_COMPARED: list[pd.DataFrame] = []


def report(table, hist, scale: dict, results: Path) -> None:
    c.show(table, "runs", ["run", "memorised_at", "halfway_at", "onset_at", "u_acc", "final_test_acc", "final_step",
                           "status", "error"])
    c.report_summary(table, ["p"], results, "per p")
    med = scale["med"]
    path = results / "compare_measures.csv"
    if path.exists():
        cmp = pd.read_csv(path)
        c.show(cmp, "which measure tracks test loss after memorisation, per run (lag < 0: the measure follows)",
               ["run", "measure", "spearman", "best_lag", "pearson_at_lag", "moved_at", "lead_over_acc"])
        m = cmp[cmp["measure"] == med]
        agg = m.groupby("p").agg(seeds=("seed", "size"), spearman_median=("spearman", "median"),
                                 spearman_min=("spearman", "min"), spearman_max=("spearman", "max"),
                                 best_lag_median=("best_lag", "median"), best_lag_min=("best_lag", "min"),
                                 best_lag_max=("best_lag", "max")).reset_index()
        agg.to_csv(results / "med_summary.csv", index=False, float_format="%.6g")
        c.show(agg, f"{med} against test loss after memorisation, over seeds (best_lag < 0: MED follows)")
    for p in sorted(table["p"].unique()):
        # one quantity per axis: test loss above, MED below, on one step axis
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
        rows = table[(table["p"] == p) & (table["status"] != "failed")].sort_values("seed")
        for _, row in rows.iterrows():
            h = hist(row["run"])
            style = dict(color=c.seed_color(row["seed"]), ls=c.seed_style(row["seed"]), lw=1, label=f"seed {row['seed']}")
            ax.plot(h["step"], h["test_loss"], **style)
            if med in h:
                ax2.plot(h["step"], h[med], **style)
        ax.set(ylabel="test loss", yscale="log", title=f"p={p}: test loss and {med}")
        ax2.set(xlabel="step", ylabel=med)
        c.few_ticks(ax2)
        ax.legend(fontsize=8)
        c.save(fig, results / f"med_vs_loss_p{p}.png")


def main(argv: list[str] | None = None) -> int:
    args, scale, out, results, timer = c.start(__doc__, STUDY, SCALES, argv)
    if not args.report_only:
        table = c.run_sweep([("", scale["base"], c.with_seeds([{"p": p} for p in scale["ps"]], args.seeds))],
                            out, args)
        _COMPARED.clear()
        c.export(table, results, ["train_acc", "test_acc", "train_loss", "test_loss", *scale["base"]["record"]],
                 per_run=compare)
        c.write_run_rows(_COMPARED, results, "compare_measures.csv")
    report(*c.load(results), scale, results)
    timer.done(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
