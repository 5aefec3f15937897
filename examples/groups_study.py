"""Beyond Z_p: do MED, the representation-restricted loss, the LLC and the weight norm
move before test loss on a non-abelian group (S4) as on Z_p (C_23)?

For each task and seed (3 seeds) the paper's MLP baseline (``arch="mlp"``: it groks both
tasks within minutes on one CPU core) trains with frac 0.8, AdamW (lr 1e-3, weight
decay 1), checkpoints every 250 steps, and stops 500 steps after test accuracy 0.99.
Over the checkpoints we measure ``cayley_med`` (MED along the group's generators; the
paper's MED on C_p), ``weight_norm``, the irrep restricted and excluded loss over the
final checkpoint's key irreps (held fixed) and the LLC (devinterp SGLD, 2 chains of 200
burn-in steps and 400 draws, eps 1e-4, nbeta 15, gamma 100); :func:`grok_interp.compare_measures` tells when each moved half way and whether
that was before test loss did.

Writes ``results/groups/``: ``summary.csv`` (one row per task, seed and measure),
``<task>_seed<k>_measures.csv`` and ``<task>_seed<k>.png`` (measures scaled to [0, 1]
against the step, test loss beside them).

Run: ``OMP_NUM_THREADS=1 python examples/groups_study.py [--out results/groups] [--seeds 0 1 2]``
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import grok_interp as g  # noqa: E402
from grok_interp.groups import group_task  # noqa: E402
from grok_interp.measures import compare_measures  # noqa: E402
from grok_interp.measures.llc import LLCSettings, llc_available, llc_columns  # noqa: E402

MEASURES = ["cayley_med", "weight_norm", "irrep_restricted_loss", "irrep_excluded_loss"]
COMPARED = MEASURES + ["llc"]


def study(name: str, seed: int, out: Path, llc_settings: LLCSettings) -> pd.DataFrame:
    t0 = time.time()
    task = group_task(name)
    run = g.train_hooked(task=task, arch="mlp", frac=0.8, steps=8000, lr=1e-3, weight_decay=1.0, seed=seed,
                         data_seed=seed, eval_every=50, checkpoint_every=250, stop_after_grok=500, progress=False,
                         threads=1)
    train_s = time.time() - t0
    df = run.measure(MEASURES)
    if llc_available():
        llc = [llc_columns(run.model_at(s), run, llc_settings) for s in df["step"]]
        df = df.assign(**{k: [r[k] for r in llc] for k in ("llc", "llc_std", "llc_stable")})
    df.to_csv(out / f"{name}_seed{seed}_measures.csv", index=False)
    cmp = compare_measures(run, df[["step", *[c for c in COMPARED if c in df]]], columns=[c for c in COMPARED if c in df])
    ev = g.measures.events(run.history)
    cmp.insert(0, "seed", seed)
    cmp.insert(0, "task", name)
    cmp["test_loss_moved_at"] = cmp.attrs["target_moved_at"]
    cmp["grokked_at"] = ev.grokked_at
    cmp["memorised_at"] = ev.memorised_at
    cmp["key_irreps"] = " ".join(df.attrs.get("key_irreps") or [])
    cmp["first_value"] = [float(df[m].iloc[0]) for m in cmp["measure"]]
    cmp["final_value"] = [float(df[m].iloc[-1]) for m in cmp["measure"]]
    cmp["train_s"] = round(train_s, 1)
    _plot(run, df, name, seed, out)
    print(f"{name} seed {seed}: grokked at {ev.grokked_at} in {train_s:.0f} s; key irreps {cmp['key_irreps'].iloc[0]!r}",
          flush=True)
    return cmp


def _plot(run, df: pd.DataFrame, name: str, seed: int, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for col in [c for c in COMPARED if c in df]:
        x = df[col].astype(float)
        ax.plot(df["step"], (x - x.min()) / ((x.max() - x.min()) or 1), label=col)
    h = run.history
    tl = h["test_loss"]
    ax.plot(h["step"], (tl - tl.min()) / ((tl.max() - tl.min()) or 1), "k--", label="test_loss")
    ax.plot(h["step"], h["test_acc"], "k:", label="test_acc")
    ax.set_xlabel("step")
    ax.set_ylabel("scaled to [0, 1]")
    ax.set_title(f"{name}, MLP baseline, seed {seed}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{name}_seed{seed}.png", dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/groups")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tasks", nargs="+", default=["S4", "C23"])
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # devinterp's SGLD alias
    settings = LLCSettings(num_chains=2)  # 200 burn-in steps, 400 draws per chain
    rows = [study(name, seed, out, settings) for name in args.tasks for seed in args.seeds]
    summary = pd.concat(rows, ignore_index=True)
    summary.to_csv(out / "summary.csv", index=False)
    print(summary[["task", "seed", "measure", "moved_at", "test_loss_moved_at", "before_test_loss", "grokked_at",
                   "first_value", "final_value"]].to_string())


if __name__ == "__main__":
    main()
