"""Structured versus random embedding initialisation: steps to grok over several seeds.

Gu et al. (2025) initialise the embedding from one random vector (consecutive residues
start evenly spread) and report that it roughly halves the steps to grok. This trains
both inits with the same seeds and prints, per run, the step where test accuracy first
reaches 0.99 (``steps_to_99``) and GO-Epoch (half-way and onset rules), then per init
the median and min-max over seeds and the ratio of the medians.

    python examples/embed_init.py                      # library: random vs circulant
    python examples/embed_init.py --setup reference    # rec.py: random vs its Toeplitz init
    python examples/embed_init.py --quick              # p = 23, seconds

Setups:

* ``library``: p = 97, a + b, frac 0.3, data seed 598; ``circulant`` (rows are cyclic
  shifts of one zero-mean Gaussian vector); cap 15000, stopping 200 after 0.99.
* ``reference``: ``transformer/rec.py``'s commented-out init, ``embed_init="toeplitz"``
  (a U[0, 1) vector, symmetric Toeplitz, / sqrt(d_model): tokens start with mean cosine
  about 0.75), on a random split with rec.py's other settings: frac 0.3, ``random.seed(0)``
  pairs, no attention/unembedding biases, float32 loss, its MED
  (``med_drop_last_scaled_sum``) recorded. Budget: 30000 epochs cut by
  ``_common.REFERENCE_BUDGET``'s rules.

Seeds 0, 1, 2 per init in both setups (``--seeds``); both inits of a seed share the
rest of the initial weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402

import _common as c  # noqa: E402

STUDY = "embed_init"
QUICK = dict(p=23, op="add", split="random", frac=0.6, steps=400, lr=1e-2, d_model=64, n_heads=4, d_mlp=128,
             eval_every=10, checkpoint_every=200, stop_after_grok=20)

SCALES = {
    "library": {
        "paper": dict(
            base=dict(p=97, op="add", split="random", frac=0.3, steps=15000, eval_every=20, checkpoint_every=500,
                      stop_after_grok=200),
            inits=["random", "circulant"],
        ),
        "reduced": dict(  # p = 47, frac 0.5, lr 3e-3: what fitted this session's shared CPU
            base=dict(p=47, op="add", split="random", frac=0.5, lr=3e-3, steps=2000, eval_every=10,
                      checkpoint_every=500, stop_after_grok=20),
            inits=["random", "circulant"],
        ),
        "quick": dict(base=QUICK, inits=["random", "circulant"]),
    },
    "reference": {
        "paper": dict(
            base={**c.REFERENCE, **dict(p=97, op="add", split="random", frac=0.3, data_seed=0, eval_every=20,
                                        checkpoint_every=2000, record=c.REFERENCE_RECORD)},
            inits=["random", "toeplitz"],
        ),
        "quick": dict(base={**c.REFERENCE, **QUICK, "data_seed": 0, "stop_on_plateau": 150,
                            "record": c.REFERENCE_RECORD},
                      inits=["random", "toeplitz"]),
    },
}
METRICS = ("steps_to_99", "halfway_at", "onset_at", "u_acc", "l_acc")


def report(table, hist, scale: dict, results: Path) -> None:
    c.show(table, "embedding init per run", ["run", "embed_init", "seed", "memorised_at", "halfway_at", "onset_at",
                                             "steps_to_99", "u_acc", "l_acc", "final_step", "status", "error"])
    summary = c.report_summary(table, ["embed_init"], results, "per init (steps_to_99: runs that reached 0.99)",
                               METRICS)
    s = summary.set_index("embed_init")
    base_init, other = scale["inits"]
    if base_init in s.index and other in s.index:
        for m in ("steps_to_99", "halfway_at", "onset_at"):
            r = s.loc[other, f"{m}_median"] / s.loc[base_init, f"{m}_median"]
            print(f"{other} / {base_init}, median {m}: {r:.2f}")
        print("(the paper: about 0.5 for steps to grok)")
    fig, ax = plt.subplots(figsize=(7, 4))
    for _, row in table[table["status"] != "failed"].iterrows():
        h = hist(row["run"])
        ax.plot(h["step"], h["test_acc"], color="C0" if row["embed_init"] == base_init else "C3", lw=1,
                ls=c.seed_style(row["seed"]), label=f"{row['embed_init']} seed {row['seed']}")
    ax.set(xlabel="step", ylabel="test accuracy", ylim=(0, 1.02),
           title=f"embedding init: {base_init} (blue) vs {other} (red); line style: seed")
    c.few_ticks(ax)
    ax.legend(fontsize=7)
    c.save(fig, results / "embed_init.png")


def main(argv: list[str] | None = None) -> int:
    args, scale, out, results, timer = c.start(__doc__, STUDY, SCALES, argv)
    if not args.report_only:
        # Seed by seed, both inits each: a sweep stopped early still has matched pairs.
        configs = [{"seed": s, "embed_init": i} for s in args.seeds for i in scale["inits"]]
        table = c.run_sweep([("", scale["base"], configs)], out, args)
        c.export(table, results, ["train_acc", "test_acc", "train_loss", "test_loss", "med_drop_last_scaled_sum"],
                 per_run=c.steps_to_99)
    report(*c.load(results), scale, results)
    timer.done(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
