"""SQUARE and STRIP splits: the training distribution caps what grokking can reach.

Gu et al. (2025), p = 97, r(a, b) = a + b, frac 0.3, one layer. SQUARE(k) forces every
pair with a <= k and b <= k into the test set; STRIP(t) forces every pair with a <= t.
The training set is then filled from the rest. Per run this prints U-Acc (highest test
accuracy after memorisation), L-Acc (lowest test accuracy after U-Acc is approached),
GO-Epoch by the half-way rule (``halfway_at``) and by the onset rule (``onset_at``), and
the ceilings predicted from the split alone (:mod:`grok_interp.theory`: the share of
test pairs with a same-class training pair within torus-Manhattan radius r); per
configuration, the median and min-max over the model seeds. A random split of the same
size is the comparison.

    python examples/square_strip.py                      # library setup, paper scale
    python examples/square_strip.py --setup reference    # the reference code's runs
    python examples/square_strip.py --quick              # p = 23: seconds
    python examples/square_strip.py --setup reference --report-only   # tables and plots from results/

Setups:

* ``library``: data seed 598 (``torch.randperm``), float64 loss, all biases; cap 8000
  steps, stopping 1000 steps after test accuracy first reaches 0.99; the random split
  12000 (it first reaches 0.99 at step 8630 with seed 999).
* ``reference``: ``transformer/rec.py`` (SQUARE) and ``str.py`` (STRIP) - training pairs
  of ``random.seed(0)``, no attention/unembedding biases, float32 loss, and their MED
  (``med_drop_last_scaled_sum`` of rec.py, ``med_drop_last_sum`` of str.py, both
  recorded). STRIP runs at both operand offsets: d = 0 and str.py's d = 60 (the paper's
  STRIP numbers do not all fit one d). Budget: the scripts' 30000 epochs, cut by
  ``_common.REFERENCE_BUDGET``'s two rules that cannot stop a run before a late jump.

Seeds 0, 1, 2 per configuration in both setups (``--seeds``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import _common as c  # noqa: E402
from grok_interp import Task  # noqa: E402
from grok_interp.theory import alpha_bound, ceiling_curve, covered_per_point  # noqa: E402

STUDY = "square_strip"
KEYS = ["split", "k", "t", "offset"]  # a configuration, without its seed
ORDER = ["split", "offset", "k", "t"]  # the figures' order of configurations: by split, then size
REF_MEASURES = c.REFERENCE_RECORD
QUICK_MODEL = dict(d_model=64, n_heads=4, d_mlp=128, lr=1e-2, steps=400, eval_every=10, checkpoint_every=200)

SCALES = {
    "library": {
        "paper": dict(
            base=dict(p=97, op="add", frac=0.3, steps=8000, eval_every=20, checkpoint_every=200,
                      stop_after_grok=1000),
            squares=list(range(30, 61, 5)),
            strips=[40, 50, 60, 67],
            radii=[2, 8, 16, 32],
            # The random split of the same size first reaches 0.99 at step 8630
            # (benchmarks/time_to_grok.py), past the 8000 cap, so it trains longer.
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
            base=dict(p=23, op="add", frac=0.5, stop_after_grok=50, **QUICK_MODEL),
            squares=[8],
            strips=[16],  # leaves 6 rows = 138 pairs outside, fewer than int(0.5 * 529) = 264: all train
            radii=[2, 4, 8],
        ),
    },
    "reference": {
        "paper": dict(
            base=dict(p=97, op="add", frac=0.3, data_seed=0, **c.REFERENCE, eval_every=20, checkpoint_every=2000,
                      record=REF_MEASURES),
            squares=list(range(30, 61, 5)),
            strips=[40, 50, 60, 67],
            strip_offsets=[0, 60],
            radii=[2, 8, 16, 32],
        ),
        "quick": dict(
            base={**c.REFERENCE, **dict(p=23, op="add", frac=0.5, data_seed=0, record=REF_MEASURES,
                                        stop_after_grok=50, stop_on_plateau=100, **QUICK_MODEL)},
            squares=[8],
            strips=[16],
            strip_offsets=[0, 14],  # 14 = 60 * 23 / 97
            radii=[2, 4, 8],
        ),
    },
}


def configs(scale: dict) -> list[dict]:
    runs: list[dict] = [{"split": "square", "k": k} for k in scale["squares"]]
    for d in scale.get("strip_offsets", [None]):
        runs += [{"split": "strip", "t": t, **({} if d is None else {"offset": d})} for t in scale["strips"]]
    runs.append({"split": "random", **({"steps": scale["random_steps"]} if "random_steps" in scale else {})})
    return runs


def report(table, hist, scale: dict, results: Path) -> None:
    radii = scale["radii"]
    cols = ["run", "n_train", "memorised_at", "halfway_at", "onset_at", "u_acc", "l_acc", "final_test_acc",
            "final_step", "ceiling", "ceiling_transpose", *[f"ceiling_r{r}" for r in radii], "status", "error"]
    c.show(table, "SQUARE / STRIP per run: measured (U-Acc, L-Acc, GO-Epoch) and predicted ceilings", cols)
    summary = c.report_summary(table, KEYS, results, "SQUARE / STRIP per configuration")
    first = table.drop_duplicates([k for k in KEYS if k in table.columns])
    c.show(first, "predicted ceilings per configuration (the split does not depend on the model seed)",
           [k for k in KEYS if k in table.columns] + ["n_train", "ceiling_transpose", *[f"ceiling_r{r}" for r in radii]])
    task = Task(p=scale["base"]["p"], op=scale["base"]["op"])
    print(f"\nrandom-split bound alpha = 2 ln(p) / C at p={task.p} (C: same-class pairs within r of a pair):")
    for r in radii:
        C = covered_per_point(task, r)
        print(f"  r={r:3d}: C={C:6.2f}  alpha={alpha_bound(task.p, C):.3f}  (this study's frac: {scale['base']['frac']})")

    plot_test_accuracy(table, hist, results / "test_accuracy.png")
    plot_ceilings(summary, scale["base"], results / "ceiling_vs_uacc.png")

    if {"square", "random"} <= set(table["split"]):
        vs = square_vs_random(table)
        c.show(vs, "SQUARE against the random split of the same seed (GO-Epoch by both rules, U-Acc)",
               list(vs.columns))
        for rule in ("halfway_at", "onset_at"):
            e = vs[f"earlier_{rule}"].dropna()
            print(f"SQUARE earlier than the random split by {rule}: {int(e.sum())} of {len(e)} runs")
        lower = (vs["u_acc"] < vs["u_acc_random"]).sum()
        print(f"SQUARE ends below the random split (U-Acc): {lower} of {len(vs)} runs")
        vs.to_csv(results / "square_vs_random.csv", index=False, float_format="%.6g")


def _family(row: pd.Series) -> str:
    """The panel of ``plot_ceilings`` a configuration belongs to: its split, and a STRIP's offset."""
    offset = row.get("offset")
    if row["split"] == "strip" and offset is not None and not pd.isna(offset):
        return f"strip, offset={int(offset)}"
    return str(row["split"])


def plot_ceilings(summary: pd.DataFrame, base: dict, path: Path) -> None:
    """Predicted ceiling(r) (lines) against the measured median U-Acc (dotted), one panel
    per family of splits (SQUARE; STRIP per offset), each configuration a shade of the
    family's colour (darker: larger square or wider strip), the random split in grey in
    every panel. Sixteen configurations on one axis could not be matched to their lines."""
    summary = summary.sort_values([k for k in ORDER if k in summary.columns])
    fams = summary.apply(_family, axis=1)
    panels = [f for f in dict.fromkeys(fams) if f != "random"] or ["random"]
    curves = {i: ceiling_curve(c.split_of(base, row, KEYS)) for i, row in summary.iterrows()}
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.5, 5 * len(panels)), 4.5), sharey=True, squeeze=False)
    for ax, fam, cmap in zip(axes[0], panels, itertools.cycle(["Blues", "Oranges", "Greens", "Purples", "Reds"])):
        members = summary[fams == fam]
        lines = [(i, row, plt.get_cmap(cmap)(0.4 + 0.55 * j / max(len(members) - 1, 1)) if fam != "random" else "k",
                  1.2, c.config_label(row, ["k", "t"]) or fam)
                 for j, (i, row) in enumerate(members.iterrows())]
        if fam != "random":
            lines += [(i, row, "0.6", 1, "random") for i, row in summary[fams == "random"].iterrows()]
        for i, row, color, lw, lab in lines:
            ax.plot(curves[i]["radius"], curves[i]["ceiling"], color=color, lw=lw, label=lab)
            if np.isfinite(row["u_acc_median"]):
                ax.axhline(row["u_acc_median"], color=color, ls=":", lw=lw)
        ax.set(xlabel="radius r (torus Manhattan distance)", title=fam, ylim=(0, 1.02))
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("share of test pairs")
    fig.suptitle("predicted ceiling(r) (lines) vs measured median U-Acc (dotted)")
    c.save(fig, path)


def plot_test_accuracy(table: pd.DataFrame, hist, path: Path) -> None:
    """One panel per configuration (the random split, SQUAREs by k, STRIPs by offset and
    t) with every seed's test accuracy, the random split's runs in grey behind each for
    comparison, and the median U-Acc dotted."""
    done = table[table["status"] != "failed"].copy()
    done["label"] = [c.config_label(row, KEYS) for _, row in done.iterrows()]
    labels = done.sort_values([k for k in ORDER if k in done.columns]).drop_duplicates("label")["label"].tolist()
    curves = {run: hist(run) for run in done["run"]}  # each history read once, the random split's drawn in every panel
    rand = done.loc[done["split"] == "random", "run"]
    ncols = min(4, len(labels))
    nrows = -(-len(labels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), sharex=True, sharey=True,
                             squeeze=False)
    for ax, lab in zip(axes.flat, labels):
        runs = done[done["label"] == lab].sort_values("seed")
        if lab != "split=random":
            for run in rand:
                ax.plot(curves[run]["step"], curves[run]["test_acc"], lw=0.6, color="0.75")
        for _, row in runs.iterrows():
            h = curves[row["run"]]
            ax.plot(h["step"], h["test_acc"], lw=0.8, color=c.seed_color(row["seed"]), ls=c.seed_style(row["seed"]),
                    label=f"seed {row['seed']}")
        if len(runs):
            ax.axhline(runs["u_acc"].median(), color="k", ls=(0, (1, 4)), lw=0.8)  # loosely dotted: not a seed
        ax.set_title(lab, fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
        c.few_ticks(ax, 4)
        ax.legend(fontsize=6, loc="lower right")
    for ax in axes.flat[len(labels):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("step", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy", fontsize=8)
    fig.suptitle("SQUARE / STRIP: test accuracy per configuration (grey: the random split; dotted: median U-Acc)",
                 fontsize=9)
    c.save(fig, path)


def square_vs_random(table: pd.DataFrame) -> pd.DataFrame:
    """Each SQUARE run beside the random split of the same model seed: does it reach its
    half-way point (``halfway_at``) or its onset (``onset_at``) earlier, and where does it
    end (U-Acc)? A rule that never fired counts as later than any step; ``earlier_*`` is
    NA when neither run fired. Runs without a random split of their seed are left out."""
    done = table[table["status"] != "failed"]
    cols = ["seed", "halfway_at", "onset_at", "u_acc"]
    rand = done.loc[done["split"] == "random", cols]
    both = done.loc[done["split"] == "square", ["k", *cols]].merge(rand, on="seed", suffixes=("", "_random"))
    for rule in ("halfway_at", "onset_at"):
        # as float: a nullable integer column (Int64, missing where a rule never fired) cannot hold inf
        mine = both[rule].astype("float64").fillna(np.inf)
        theirs = both[f"{rule}_random"].astype("float64").fillna(np.inf)
        both[f"earlier_{rule}"] = (mine < theirs).astype("boolean").mask(np.isinf(mine) & np.isinf(theirs))
    both["k"] = both["k"].astype(int)
    return both.sort_values(["k", "seed"]).reset_index(drop=True)


def compare_with_plain(summary: pd.DataFrame, plain: Path, accelerator: str) -> pd.DataFrame | None:
    """Each configuration's seed medians with the accelerator beside those without it
    (``plain/summary.csv``, the same setup's results): does the split still cap U-Acc at
    the same level, only sooner?"""
    if not (plain / "summary.csv").exists():
        print(f"\n(no results without the accelerator in {plain}: run the study without --accelerator to compare)")
        return None
    keys = [k for k in KEYS if k in summary.columns]
    cols = ["u_acc_median", "l_acc_median", "halfway_at_median", "onset_at_median"]
    both = summary[keys + cols].merge(pd.read_csv(plain / "summary.csv")[keys + cols], on=keys, how="inner",
                                      suffixes=(f"_{accelerator}", "_none"))
    both["u_acc_change"] = both[f"u_acc_median_{accelerator}"] - both["u_acc_median_none"]
    c.show(both, f"with {accelerator} vs without (seed medians; U-Acc change = with - without)")
    return both


def main(argv: list[str] | None = None) -> int:
    args, scale, out, results, timer = c.start(__doc__, STUDY, SCALES, argv, extra=c.add_accelerator)
    base = c.accelerated(args, scale["base"])
    if not args.report_only:
        table = c.run_sweep([("", base, c.with_seeds(configs(scale), args.seeds))], out, args,
                            radii=scale["radii"])
        c.export(table, results, ["train_acc", "test_acc", "train_loss", "test_loss", *REF_MEASURES])
    report(*c.load(results), scale, results)
    if args.accelerator != "none":
        plain_args = argparse.Namespace(**{**vars(args), "accelerator": "none", "results": None})
        plain = c.results_dir(plain_args, STUDY, out.parent / args.setup) if not args.results else results.parent / args.setup
        both = compare_with_plain(pd.read_csv(results / "summary.csv"), plain, args.accelerator)
        if both is not None:
            both.to_csv(results / "vs_plain.csv", index=False, float_format="%.6g")
    timer.done(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
