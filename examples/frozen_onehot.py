"""A frozen one-hot embedding: MED moves to a hidden layer (activation MED).

With ``embed_init="onehot"`` the embedding is the identity and never trains, so the
embedding MED is constant. Gu et al. (2025) then take the same consecutive-difference
measure on the first hidden layer, on the inputs ``(i, i + d, "=")``:
:func:`grok_interp.measures.activation_med`, on ``blocks.0.mlp.hook_post`` (last
position) for the transformer and ``hidden1.hook_post`` for the MLP baseline. This
prints each run's events and :func:`grok_interp.measures.compare_measures` (does
activation MED track test loss after memorisation?), per architecture the median and
min-max over seeds, and plots both MEDs beside test loss.

    python examples/frozen_onehot.py                      # library: the transformer
    python examples/frozen_onehot.py --setup reference    # the reference README's one-hot MLP (+ transformer)
    python examples/frozen_onehot.py --quick              # p = 23, seconds

Setups:

* ``library``: the transformer, p = 97, a + b, frac 0.3, data seed 598; cap 10000,
  stopping 500 after 0.99.
* ``reference``: the reference README's recipe (a one-hot ``register_buffer`` embedding,
  MED on the first hidden layer) is written for the MLP baseline (``model.hidden1``), so
  the MLP of ``MLP/base.py`` (inputs [E[a], E[b], E[=]], ``nn.Linear`` init, frac 0.3,
  ``random.seed(0)`` pairs, float32 loss); beside it the reference transformer on the
  same split (no attention/unembedding biases). Budget: 30000 epochs cut by
  ``_common.REFERENCE_BUDGET``'s rules. The reference averages the consecutive
  differences over i = 0..p-2 (no wrap); ``activation_med`` wraps (p terms instead of
  p - 2: a small difference, not an option).

Seeds 0, 1, 2 per architecture (``--seeds``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import _common as c  # noqa: E402
from grok_interp.measures import compare_measures  # noqa: E402

STUDY = "frozen_onehot"
MEASURES = ["med", "activation_med"]
QUICK = dict(p=23, op="add", split="random", frac=0.6, steps=400, lr=1e-2, d_model=32, n_heads=4, d_mlp=128,
             eval_every=10, checkpoint_every=200, stop_after_grok=100, record=MEASURES)
REF = {**c.REFERENCE_DATA, **c.REFERENCE_BUDGET}

SCALES = {
    "library": {
        "paper": dict(groups=[("", dict(p=97, op="add", split="random", frac=0.3, steps=10000, eval_every=20,
                                        checkpoint_every=500, stop_after_grok=500, record=MEASURES),
                               [{"embed_init": "onehot"}])]),
        "reduced": dict(groups=[("", dict(p=47, op="add", split="random", frac=0.5, lr=3e-3, steps=2000,
                                          eval_every=10, checkpoint_every=250, stop_after_grok=500,
                                          record=MEASURES), [{"embed_init": "onehot"}])]),
        "quick": dict(groups=[("", QUICK, [{"embed_init": "onehot"}])]),
    },
    "reference": {
        "paper": dict(groups=[
            ("mlp", {**REF, **dict(p=97, op="add", split="random", frac=0.3, data_seed=0, eval_every=20,
                                   checkpoint_every=2000, record=MEASURES)},
             [{"arch": "mlp", "embed_init": "onehot", "mlp_input": "operands_and_eq", "init": "linear_default"}]),
            ("transformer", {**c.REFERENCE, **dict(p=97, op="add", split="random", frac=0.3, data_seed=0,
                                                   eval_every=20, checkpoint_every=2000, record=MEASURES)},
             [{"arch": "transformer", "embed_init": "onehot"}]),
        ]),
        "quick": dict(groups=[
            ("mlp", {**REF, **QUICK, "data_seed": 0, "stop_on_plateau": 150, "d_model": 32},
             [{"arch": "mlp", "embed_init": "onehot", "mlp_input": "operands_and_eq", "init": "linear_default"}]),
            ("transformer", {**c.REFERENCE, **QUICK, "data_seed": 0, "stop_on_plateau": 150},
             [{"arch": "transformer", "embed_init": "onehot"}]),
        ]),
    },
}

_COMPARED: list[pd.DataFrame] = []


def compare(row: pd.Series, h: pd.DataFrame) -> dict:
    try:
        cmp = compare_measures(h)
    except ValueError as exc:
        print(f"{row['run']}: compare_measures: {exc}")
        return {}
    cmp.insert(0, "run", row["run"])
    cmp.insert(1, "arch", row.get("arch", "transformer"))
    cmp.insert(2, "seed", row["seed"])
    _COMPARED.append(cmp)
    return {"med_range": float(h["med"].max() - h["med"].min()),
            "activation_med_range": float(h["activation_med"].max() - h["activation_med"].min())}


def report(table, hist, scale: dict, results: Path) -> None:
    if "arch" not in table:
        table["arch"] = "transformer"
    c.show(table, "frozen one-hot embedding per run", ["run", "memorised_at", "halfway_at", "onset_at", "u_acc",
                                                       "final_test_acc", "final_step", "med_range",
                                                       "activation_med_range", "status", "error"])
    c.report_summary(table, ["arch"], results, "per architecture")
    path = results / "compare_measures.csv"
    if path.exists():
        cmp = pd.read_csv(path)
        act = cmp[cmp["measure"] == "activation_med"]
        c.show(act, "activation MED against test loss after memorisation, per run (best_lag < 0: it follows)",
               ["run", "spearman", "best_lag", "pearson_at_lag", "moved_at", "lead_over_acc"])
    # one quantity per axis: test loss above, activation MED below, one column per architecture
    n = table["arch"].nunique()
    fig, axes = plt.subplots(2, n, figsize=(6.5 * n, 6), squeeze=False, sharex="col")
    for j, (arch, rows) in enumerate(table[table["status"] != "failed"].groupby("arch")):
        top, bottom = axes[0][j], axes[1][j]
        for _, row in rows.sort_values("seed").iterrows():
            h = hist(row["run"])
            style = dict(color=c.seed_color(row["seed"]), ls=c.seed_style(row["seed"]), lw=1, label=f"seed {row['seed']}")
            top.plot(h["step"], h["test_loss"], **style)
            bottom.plot(h["step"], h["activation_med"], **style)
        top.set(ylabel="test loss", yscale="log", title=f"frozen one-hot embedding: {arch}")
        bottom.set(xlabel="step", ylabel="activation MED (first hidden layer)")
        c.few_ticks(bottom)
        top.legend(fontsize=8)
    c.save(fig, results / "frozen_onehot.png")


def main(argv: list[str] | None = None) -> int:
    args, scale, out, results, timer = c.start(__doc__, STUDY, SCALES, argv)
    if not args.report_only:
        groups = [(name, base, c.with_seeds(cfgs, args.seeds)) for name, base, cfgs in scale["groups"]]
        table = c.run_sweep(groups, out, args)
        _COMPARED.clear()
        c.export(table, results, ["train_acc", "test_acc", "train_loss", "test_loss", *MEASURES], per_run=compare)
        c.write_run_rows(_COMPARED, results, "compare_measures.csv")
    report(*c.load(results), scale, results)
    timer.done(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
