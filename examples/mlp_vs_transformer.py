"""The MLP baseline against the one-layer transformer, on a + b and a^2 + ab + b^2.

Gu et al. (2025) argue that grokking is decided by embedding uniformity and the
training distribution, not by attention, so it also appears in a plain MLP on
concatenated embeddings (``arch="mlp"``: -> 512 -> 512 -> p). This trains both
architectures on both operations with the same split and prints their events and
ceilings side by side, per run and (median, min-max) over seeds.

    python examples/mlp_vs_transformer.py                      # library setup
    python examples/mlp_vs_transformer.py --setup reference    # MLP/base.py and its transformer
    python examples/mlp_vs_transformer.py --quick              # p = 23, seconds

Setups:

* ``library``: p = 97, data seed 598; a+b at frac 0.3 (cap 12000, stopping 500 after
  0.99), a^2+ab+b^2 at frac 0.5 (cap 8000, checkpoints every 200 steps, stopping 1000
  after 0.99: exactly ``nonisomorphic.py``'s library frac-0.5 runs, so a sweep that runs
  after that study copies its transformer runs from the run cache instead of training
  them again); the MLP on [E[a], E[b]], N(0, 1/d_model) init, zero biases.
* ``reference``: ``MLP/base.py`` (its fns_dict has 'add' and 'xy' = a^2+ab+b^2): frac 0.3
  for both operations, ``random.seed(0)`` pairs, the MLP on [E[a], E[b], E[=]] with
  ``nn.Linear``'s init and biases, float32 loss, MED ``med_drop_last_avg`` recorded;
  the transformer of ``transformer/rec.py`` (one layer, no attention/unembedding
  biases) on the same split. Budget: 30000 epochs cut by ``_common.REFERENCE_BUDGET``'s
  rules.

Seeds 0, 1, 2 per configuration (``--seeds``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402

import _common as c  # noqa: E402
from grok_interp.sweeps import grid  # noqa: E402

STUDY = "mlp_vs_transformer"
KEYS = ["op", "arch", "frac"]
QUICK = dict(p=23, split="random", steps=400, lr=1e-2, d_model=64, n_heads=4, d_mlp=128, eval_every=10,
             checkpoint_every=200, stop_after_grok=50)
REF_DATA = dict(split="random", frac=0.3, data_seed=0, record=c.REFERENCE_RECORD)
REF_PAPER = dict(p=97, eval_every=20, checkpoint_every=2000)

SCALES = {
    "library": {
        "paper": dict(groups=[("", dict(p=97, split="random", steps=12000, eval_every=20, checkpoint_every=500,
                                        stop_after_grok=500),
                               [*grid(op=["add"], frac=[0.3], arch=["transformer", "mlp"]),
                                *grid(op=["a2_ab_b2"], frac=[0.5], arch=["mlp", "transformer"], steps=[8000],
                                     checkpoint_every=[200], stop_after_grok=[1000])])]),
        "reduced": dict(groups=[("", dict(p=47, split="random", lr=3e-3, steps=2000, eval_every=10,
                                          checkpoint_every=500, stop_after_grok=500),
                                 grid(op=["add", "a2_ab_b2"], frac=[0.5], arch=["transformer", "mlp"]))]),
        "quick": dict(groups=[("", QUICK, grid(op=["add", "a2_ab_b2"], frac=[0.6], arch=["transformer", "mlp"]))]),
    },
    "reference": {
        "paper": dict(groups=[
            ("transformer", {**c.REFERENCE, **REF_DATA, **REF_PAPER}, grid(op=["add", "a2_ab_b2"], arch=["transformer"])),
            ("mlp", {**c.REFERENCE_DATA, **c.REFERENCE_BUDGET, **REF_DATA, **REF_PAPER, **c.REFERENCE_MLP},
             grid(op=["add", "a2_ab_b2"], arch=["mlp"])),
        ]),
        "quick": dict(groups=[
            ("transformer", {**c.REFERENCE, **REF_DATA, **QUICK, "frac": 0.6, "stop_on_plateau": 100},
             grid(op=["add", "a2_ab_b2"], arch=["transformer"])),
            ("mlp", {**c.REFERENCE_DATA, **c.REFERENCE_BUDGET, **REF_DATA, **QUICK, **c.REFERENCE_MLP, "frac": 0.6,
                     "stop_on_plateau": 100},
             grid(op=["add", "a2_ab_b2"], arch=["mlp"])),
        ]),
    },
}


def per_run(row, history) -> dict:
    """Steps to test accuracy 0.99, and the final model's accuracy on the test pairs whose
    transpose trained and on the others (a^2+ab+b^2 is symmetric: is a model past chance
    only on the transposes?)."""
    return {**c.steps_to_99(row, history), **c.transpose_accuracy(row, history)}


def report(table, hist, scale: dict, results: Path) -> None:
    c.show(table, "MLP baseline vs transformer per run", ["run", "memorised_at", "halfway_at", "onset_at",
                                                          "steps_to_99", "u_acc", "l_acc", "final_test_acc",
                                                          "ceiling", "ceiling_transpose", "acc_transpose_trained",
                                                          "acc_other", "final_step", "status", "error"])
    c.report_summary(table, KEYS, results, "per operation and architecture",
                     (*c.SEED_METRICS, "steps_to_99", "final_test_acc", "acc_transpose_trained", "acc_other"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, op in zip(axes, ["add", "a2_ab_b2"]):
        for _, row in table[(table["op"] == op) & (table["status"] != "failed")].iterrows():
            h = hist(row["run"])
            tf = row["arch"] == "transformer"
            ax.plot(h["step"], h["test_acc"], ls=c.seed_style(row["seed"]), color="C0" if tf else "C3", lw=1,
                    label=f"{row['arch']} seed {row['seed']}")
        ax.set(xlabel="step", title=f"{op}: test accuracy (blue: transformer, red: MLP)", ylim=(0, 1.02))
        c.few_ticks(ax)
        ax.legend(fontsize=6)
    axes[0].set_ylabel("test accuracy")
    c.save(fig, results / "mlp_vs_transformer.png")


def main(argv: list[str] | None = None) -> int:
    args, scale, out, results, timer = c.start(__doc__, STUDY, SCALES, argv)
    if not args.report_only:
        groups = [(name, base, c.with_seeds(cfgs, args.seeds)) for name, base, cfgs in scale["groups"]]
        table = c.run_sweep(groups, out, args, radii=[4, 8])
        for _name, base, _ in scale["groups"]:  # the reference groups take frac from their base
            if "frac" in base and "frac" in table:
                table["frac"] = table["frac"].fillna(base["frac"])
            elif "frac" in base:
                table["frac"] = base["frac"]
        c.export(table, results, ["train_acc", "test_acc", "train_loss", "test_loss", "med_drop_last_avg"],
                 per_run=per_run)
    report(*c.load(results), scale, results)
    timer.done(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
