"""Clock or pizza (Zhong et al. 2023): train one-layer transformers on addition mod p with
attention rate 1 (ordinary attention, the paper's model A) and 0 (constant attention,
model B), seeds 0-2, and follow gradient symmetricity, distance irrelevance and the
classification of :func:`grok_interp.measures.algorithms.classify_algorithm` through
training.

The paper's setup (fjzzq2002/pizza, ``code/train-main.py``): p = 59, d_model 128, 4
heads, d_mlp 512, ReLU, full batch, AdamW lr 1e-3, weight decay 2, betas (0.9, 0.98),
10 steps of linear warm-up, a random 80% training split, float64 cross-entropy. The
paper trains 20000 epochs; on one CPU core a step costs about 0.1-0.2 s here, so the
default is 2000 steps, with the measures taken every 250 (test accuracy is 1 from step
500 on). Two differences from the paper's model, both the library's: the input is
``a b =`` (the paper's appendix variant ``eqn_sign``; the main runs read ``a b``), and
the attention rate acts on the causal pattern (at ``=`` every position is visible,
exactly as the paper's unmasked pattern). With ``=`` and rate 0 the answer position
reads ``V(E_a + pos_0) + V(E_b + pos_1)``: gradient symmetricity is exactly 1.

The attention rate is a hook on the pattern (:func:`set_attention_rate`), which only the
hooked forward runs, so this script trains with its own full-batch loop rather than
``train_hooked``.

    OMP_NUM_THREADS=1 python examples/clock_pizza.py              # paper setup, ~1 h on one core
    python examples/clock_pizza.py --quick --results /tmp/cp     # p = 13, seconds
    python examples/clock_pizza.py --report-only                  # tables and plot from sweep.csv

Outputs in ``--results`` (default ``results/clock_pizza``): ``sweep.csv`` (a row per run
and measured step; a run already complete there is not trained again), the final
correct-logit grids ``logits/rate=R,seed=0.csv`` (``Q[a + b, a - b]``), and, built from
those by the report, ``summary.csv`` (each run's last row) and ``clock_pizza.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import _common as c  # noqa: E402
import grok_interp as g  # noqa: E402
from grok_interp.measures.algorithms import (  # noqa: E402
    classify_algorithm,
    distance_irrelevance,
    distance_logit_grid,
    set_attention_rate,
)
from grok_interp.models import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCALES = {
    "paper": dict(p=59, d_model=128, n_heads=4, d_mlp=512, lr=1e-3, weight_decay=2.0, frac=0.8, warmup=10,
                  steps=2000, every=250),
    "quick": dict(p=13, d_model=32, n_heads=2, d_mlp=128, lr=3e-3, weight_decay=1.0, frac=0.8, warmup=10,
                  steps=200, every=100),
}
KEY = ["attention_rate", "seed"]


def train_one(rate: float, seed: int, s: dict, progress: bool = True) -> tuple[list[dict], np.ndarray]:
    """Train one model; its measured rows and its final correct-logit grid ``Q[a + b, a - b]``."""
    task = g.Task(s["p"])
    split = g.Split.random(task, s["frac"], seed=seed)
    X, Y = task.tokens(split.train_pairs), task.answers(split.train_pairs)
    Xt, Yt = task.tokens(split.test_pairs), task.answers(split.test_pairs)
    torch.manual_seed(seed)
    cfg = g.ModelConfig(d_model=s["d_model"], n_heads=s["n_heads"], d_mlp=s["d_mlp"], seed=seed)
    model = set_attention_rate(build_model(cfg, task), rate)
    opt = torch.optim.AdamW(model.parameters(), lr=s["lr"], weight_decay=s["weight_decay"], betas=(0.9, 0.98))
    warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(step / s["warmup"], 1.0))
    rows, t0 = [], time.time()
    for step in range(1, s["steps"] + 1):
        loss = F.cross_entropy(model(X)[:, -1].double(), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        warm.step()
        if step % s["every"] == 0 or step == s["steps"]:
            with torch.no_grad():
                out = model(Xt)[:, -1].double()
                test_loss, test_acc = float(F.cross_entropy(out, Yt)), float((out.argmax(-1) == Yt).float().mean())
            found = classify_algorithm(model, task)
            rows.append({"attention_rate": rate, "seed": seed, "step": step, "train_loss": float(loss.detach()),
                         "test_loss": test_loss, "test_acc": test_acc,
                         "gradient_symmetricity": found["gradient_symmetricity"],
                         "distance_irrelevance": found["distance_irrelevance"],
                         "distance_irrelevance_runner_up": distance_irrelevance(model, task, logit="runner_up"),
                         "algorithm": found["algorithm"], "seconds": round(time.time() - t0, 1)})
            if progress:
                r = rows[-1]
                print(f"rate {rate:g} seed {seed} step {step}: test_acc {test_acc:.3f} symmetricity "
                      f"{r['gradient_symmetricity']:.3f} irrelevance {r['distance_irrelevance']:.3f} "
                      f"({r['distance_irrelevance_runner_up']:.3f} runner-up) -> {r['algorithm']}", flush=True)
    with torch.no_grad():
        logits = model(task.tokens(task.all_pairs()))[:, -1]
    return rows, distance_logit_grid(logits, task.p)


def report(dest: Path) -> list[Path]:
    """``summary.csv`` (each run's last row) and ``clock_pizza.png`` from ``sweep.csv`` and the logit grids."""
    table = pd.read_csv(dest / "sweep.csv")
    last = table.sort_values("step").groupby(KEY, as_index=False).tail(1).sort_values(KEY)
    summary = last[[*KEY, "step", "test_acc", "gradient_symmetricity", "distance_irrelevance",
                    "distance_irrelevance_runner_up", "algorithm"]].reset_index(drop=True)
    summary.to_csv(dest / "summary.csv", index=False, float_format="%.6g")
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.3f}"))

    import matplotlib.pyplot as plt

    grids = sorted(dest.glob("logits/*.csv"))
    fig, axes = plt.subplots(1, 2 + len(grids), figsize=(4.2 * (2 + len(grids)), 3.8), squeeze=False)
    colors = {0.0: "tab:orange", 1.0: "tab:blue"}
    for ax, col, name in ((axes[0][0], "distance_irrelevance", "correct logit (eval-main)"),
                          (axes[0][1], "distance_irrelevance_runner_up", "runner-up logit (train-main)")):
        for (rate, seed), run in table.groupby(KEY):
            color = colors.get(float(rate), "tab:gray")
            ax.plot(run["gradient_symmetricity"], run[col], color=color, lw=0.6, alpha=0.5)
            end = run.sort_values("step").iloc[-1]
            ax.scatter(end["gradient_symmetricity"], end[col], color=color, s=30, zorder=3,
                       label=f"rate {rate:g}" if seed == table["seed"].min() else None)
        ax.axhline(0.5, color="k", lw=0.5, ls=":")
        ax.axvline(0.9, color="k", lw=0.5, ls=":")
        ax.set_xlabel("gradient symmetricity")
        ax.set_ylabel("distance irrelevance")
        ax.set_title(f"distance irrelevance of the {name}", fontsize=9)
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=8, loc="lower left")
    for ax, path in zip(axes[0][2:], grids):
        Q = pd.read_csv(path, header=None).to_numpy()
        im = ax.imshow(Q, cmap="viridis", aspect="auto")
        ax.set_xlabel("(a - b) mod p")
        ax.set_ylabel("(a + b) mod p")
        ax.set_title(f"correct logit, {path.stem}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("Clock or pizza: dots are each run's last measurement, lines its path through training; "
                 "dotted: classify_algorithm's cut-offs", fontsize=9)
    c.save(fig, dest / "clock_pizza.png")
    return [dest / "summary.csv", dest / "clock_pizza.png"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="p = 13, seconds (for smoke tests)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rates", default="0,1", help="attention rates, comma-separated")
    ap.add_argument("--steps", type=int, default=None, help="training steps per model (default: the scale's)")
    ap.add_argument("--results", default=None, help="results directory (default results/clock_pizza)")
    ap.add_argument("--report-only", action="store_true", help="rebuild the tables and plot from sweep.csv")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    s = dict(SCALES["quick" if args.quick else "paper"])
    if args.steps is not None:
        s["steps"] = args.steps
    dest = Path(args.results) if args.results else ROOT / "results" / "clock_pizza"
    if args.report_only:
        if not (dest / "sweep.csv").exists():
            raise SystemExit(f"error: no results in {dest} (run the study without --report-only first)")
        report(dest)
        return 0
    torch.set_num_threads(1)
    dest.mkdir(parents=True, exist_ok=True)
    done = pd.read_csv(dest / "sweep.csv") if (dest / "sweep.csv").exists() else pd.DataFrame(columns=[*KEY, "step"])
    for rate in (float(x) for x in args.rates.split(",")):
        for seed in (int(x) for x in args.seeds.split(",")):
            have = done[(done["attention_rate"] == rate) & (done["seed"] == seed)]
            if len(have) and int(have["step"].max()) >= s["steps"]:
                continue
            rows, Q = train_one(rate, seed, s, progress=not args.quiet)
            done = pd.concat([done[~((done["attention_rate"] == rate) & (done["seed"] == seed))],
                              pd.DataFrame(rows)], ignore_index=True).sort_values([*KEY, "step"])
            if seed == 0:
                (dest / "logits").mkdir(exist_ok=True)
                np.savetxt(dest / "logits" / f"rate={rate:g},seed=0.csv", Q, delimiter=",", fmt="%.6g")
            g.store.write_csv(dest / "sweep.csv", done)  # after every run: an interruption loses one run at most
    report(dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
