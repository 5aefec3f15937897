"""Non-isomorphic classes: r(a, b) = a^2 + ab + b^2 at training fractions 0.5, 0.6, 0.7.

Gu et al. (2025) report that for this operation the test accuracy stays below 1 even
with random splits, and that ``acc * (1 - frac)`` - the share of *all* pairs answered
correctly outside the training set - stays about constant across fractions: more data
does not let more test pairs be answered. This prints, per run and per fraction (median
and min-max over seeds), the measured U-Acc and final test accuracy, both products, and
the ceilings predicted from the split (:mod:`grok_interp.theory`), including
``ceiling_transpose``: the share of test pairs whose transpose ``(b, a)`` was trained
on, and the final model's accuracy on those pairs (``acc_transpose_trained``) and on
the rest (``acc_other``).

    python examples/nonisomorphic.py                      # library setup, p = 97
    python examples/nonisomorphic.py --setup reference    # transformer/base.py's runs
    python examples/nonisomorphic.py --quick              # p = 23, seconds

Setups:

* ``library``: one layer, data seed 598, float64 loss, all biases; cap 8000 steps,
  stopping 1000 after 0.99.
* ``reference``: ``transformer/base.py`` (its 'xy' = a^2+ab+b^2): ``random.seed(11)``
  pairs, **two layers**, no attention/unembedding biases, float32 loss, its MED
  (``med_drop_last_avg``) recorded; base.py has frac 0.5, the paper 0.5, 0.6, 0.7.
  Budget: 30000 epochs cut by ``_common.REFERENCE_BUDGET``'s rules.

Seeds 0, 1, 2 per fraction (``--seeds``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402

import _common as c  # noqa: E402

STUDY = "nonisomorphic"
QUICK = dict(p=23, op="a2_ab_b2", split="random", steps=300, lr=1e-2, d_model=64, n_heads=4, d_mlp=128,
             eval_every=10, checkpoint_every=100, stop_after_grok=100)
SCALES = {
    "library": {
        "paper": dict(
            base=dict(p=97, op="a2_ab_b2", split="random", steps=8000, eval_every=20, checkpoint_every=200,
                      stop_after_grok=1000),
            fracs=[0.5, 0.6, 0.7], radii=[4, 8, 16],
        ),
        "reduced": dict(  # p = 47, lr 3e-3: what fitted this session's shared CPU
            base=dict(p=47, op="a2_ab_b2", split="random", lr=3e-3, steps=2000, eval_every=10, checkpoint_every=250,
                      stop_after_grok=500),
            fracs=[0.5, 0.6, 0.7], radii=[4, 8, 16],
        ),
        "quick": dict(base=QUICK, fracs=[0.5, 0.6, 0.7], radii=[2, 4, 8]),
    },
    "reference": {
        "paper": dict(
            base={**c.REFERENCE, **dict(p=97, op="a2_ab_b2", split="random", data_seed=11, n_layers=2,
                                        eval_every=20, checkpoint_every=2000, record=["med_drop_last_avg"])},
            fracs=[0.5, 0.6, 0.7], radii=[4, 8, 16],
        ),
        "quick": dict(base={**c.REFERENCE, **QUICK, "data_seed": 11, "n_layers": 2, "stop_on_plateau": 100,
                            "steps": 200, "d_model": 32, "d_mlp": 64, "record": ["med_drop_last_avg"]},
                      fracs=[0.5, 0.6, 0.7], radii=[2, 4, 8]),
    },
}


def report(table, hist, scale: dict, results: Path) -> None:
    radii = scale["radii"]
    table["u_acc_x_1mfrac"] = table["u_acc"] * (1 - table["frac"])
    table["final_x_1mfrac"] = table["final_test_acc"] * (1 - table["frac"])
    cols = ["run", "n_train", "memorised_at", "halfway_at", "onset_at", "u_acc", "l_acc", "final_test_acc",
            "u_acc_x_1mfrac", "final_x_1mfrac", "ceiling_transpose", "acc_transpose_trained", "acc_other", "ceiling",
            *[f"ceiling_r{r}" for r in radii], "final_step", "status", "error"]
    c.show(table, "a^2 + ab + b^2 per run: accuracy and acc * (1 - frac)", cols)
    metrics = ("u_acc", "l_acc", "final_test_acc", "final_x_1mfrac", "acc_transpose_trained", "acc_other",
               "halfway_at", "onset_at")
    summary = c.report_summary(table, ["frac"], results, "per training fraction", metrics)
    prod = summary["final_x_1mfrac_median"].dropna()
    if len(prod) > 1:
        print(f"\nacc * (1 - frac) across fractions (medians): min {prod.min():.4f}, max {prod.max():.4f}, "
              f"max/min {prod.max() / max(prod.min(), 1e-12):.2f} (the paper: about constant)")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    # colour per fraction, line style per seed; the dotted line is the fraction's transpose ceiling
    colors = {f: f"C{i}" for i, f in enumerate(sorted(table["frac"].unique()))}
    styles = {s: ("-", "--", "-.")[i % 3] for i, s in enumerate(sorted(table["seed"].unique()))}
    for _, row in table[table["status"] != "failed"].iterrows():
        h = hist(row["run"])
        lab = f"frac {row['frac']} seed {row['seed']}"
        kw = dict(lw=1, color=colors[row["frac"]], ls=styles[row["seed"]], label=lab)
        axes[0].plot(h["step"], h["test_acc"], **kw)
        axes[1].plot(h["step"], h["test_acc"] * (1 - row["frac"]), **kw)
    for f, ceiling in table.groupby("frac")["ceiling_transpose"].first().items():
        axes[0].axhline(ceiling, color=colors[f], ls=":", lw=0.8)
        axes[1].axhline(ceiling * (1 - f), color=colors[f], ls=":", lw=0.8)
    axes[0].set(xlabel="step", ylabel="test accuracy", title="a^2+ab+b^2: test accuracy", ylim=(0, 1.02))
    axes[1].set(xlabel="step", ylabel="test acc * (1 - frac)", title="share of all pairs answered outside training")
    fig.text(0.5, 0.005, "dotted: the transpose ceiling of each fraction", ha="center", fontsize=7)
    for ax in axes:
        ax.legend(fontsize=6)
    c.save(fig, results / "nonisomorphic.png")


def main(argv: list[str] | None = None) -> int:
    args, scale, out, results, timer = c.start(__doc__, STUDY, SCALES, argv)
    if not args.report_only:
        configs = c.with_seeds([{"frac": f} for f in scale["fracs"]], args.seeds)
        table = c.run_sweep([("", scale["base"], configs)], out, args, radii=scale["radii"])
        c.export(table, results, ["train_acc", "test_acc", "train_loss", "test_loss", "med_drop_last_avg"],
                 per_run=c.transpose_accuracy)
    report(*c.load(results), scale, results)
    timer.done(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
