"""Does a ResNet-18 grok on the shapes-sum images under the reference recipe, on a CPU?

The reference recipe (``preset="reference"``: the reference code's drawing, Adam with
L2 weight decay 1e-4 coupled into the gradient, lr 1e-3, batch 200, 3660 training
images, accuracy every 100 epochs) at a CPU size (32 px, width 16 by default; width 64
is torchvision's own ResNet-18 and costs about 8x more per epoch), from two starts:

* ``pretrain_epochs=0``: random initialisation;
* ``pretrain_epochs=50``: the stand-in for the reference's ImageNet weights, 50 epochs
  learning which shape sits in each cell of the training images before the sum task.

Three seeds each, one run per core (``--workers``), resumable: rerunning continues
every run, ``--epochs`` raised trains on. Each run's history has eval-mode accuracy,
batch-statistics accuracy (``*_batch``), the training-mode ``epoch_acc`` and the
pooled-feature MED. Per run the table gives the class of
:func:`resnet_map.classify` (memorised, then a late jump of test accuracy = grokked),
``memorised_at`` (eval-mode training accuracy >= 0.99), ``fit_at`` (training-mode
``epoch_acc`` >= 0.99, the reference's measure), the jump, U-Acc and L-Acc, and, for a
run that grokked, whether the feature MED ratio moved half way before test accuracy did.
A late jump counts only if it holds: eval-mode test accuracy swings from one evaluation
to the next, so a run whose last evaluations fall back below the plateau + 0.2 is
``memorised, test spikes``. ``summary.csv`` counts per start the runs that fitted, that
memorised and that grokked, with the range of epochs reached.

BatchNorm is read three ways: eval mode (``test_acc``, running statistics that trail the
weights), batch statistics (``test_acc_batch``, format-6 runs only, see
:data:`BATCH_COLUMNS`), and recalibrated (``test_acc_recal``: the running statistics
recomputed on the training images at each checkpoint,
:func:`grok_interp.vision.recalibrated_accuracy`, kept in ``recalibrated/<run>.csv``).

    python examples/resnet_reference.py --workers 2 --epochs 3000     # the campaign (hours per run)
    python examples/resnet_reference.py --snapshot                    # results from the runs as they stand
    python examples/resnet_reference.py --report-only                 # tables and plots from results/
    python examples/resnet_reference.py --quick                       # seconds: a smoke test
    python examples/resnet_reference.py --image-size 64 --out runs/ref64 --results results/resnet_reference/library-64px

Outputs in ``results/resnet_reference/<setup>`` (``--quick``: under ``--out``):
``sweep.csv``, ``histories/<run>.csv``, ``recalibrated/<run>.csv``, ``summary.csv`` (counts and medians over seeds per start),
``curves.png`` (every epoch, logarithmic) and ``late.png`` (the epochs after the fit, linear).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import _common as c  # noqa: E402
from grok_interp import load_run, store  # noqa: E402
from grok_interp.measures import events  # noqa: E402
from grok_interp.sweeps import grid  # noqa: E402
from grok_interp.vision import load_shapes, recalibrated_accuracy  # noqa: E402
from grok_interp.vision.train import PRESETS  # noqa: E402
from resnet_map import JUMP, LATE, classify, med_lead, require_histories, train_or_snapshot  # noqa: E402

STUDY = "resnet_reference"
_PAPER = {**PRESETS["reference"], "image_size": 32, "width": 16, "epochs": 3000, "eval_every": 50,
          "checkpoint_every": 250, "device": "cpu"}
_QUICK = {**_PAPER, "image_size": 16, "width": 4, "subset": 300, "batch_size": 25, "epochs": 6, "eval_every": 2,
          "checkpoint_every": 4}
SCALES = {"library": {"paper": dict(base=_PAPER, pretrain=[0, 50]), "quick": dict(base=_QUICK, pretrain=[0, 2])}}
#: The columns kept in ``results/``.
HISTORY_COLUMNS = ["step", "train_acc", "test_acc", "train_loss", "test_loss", "epoch_loss", "epoch_acc",
                   "feature_med_ratio"]
#: The batch-statistics columns (BatchNorm in training mode), kept only for runs whose
#: ``config.json`` is format 6 or later. The first campaign runs (format 5, started before
#: ``evaluate`` shuffled its batch-statistics batches) took them over batches in dataset
#: order, whose statistics are biased (neighbouring images share shapes); format 6 came
#: after that change, so a format-6 run has shuffled batches from its first row.
BATCH_COLUMNS = ["train_acc_batch", "test_acc_batch", "train_loss_batch", "test_loss_batch"]
BATCH_FORMAT = 6


def run_format(run_dir: Path) -> int:
    """The ``grok_interp.format`` of a run directory's ``config.json`` (0 if absent)."""
    try:
        return int(store.read_json(run_dir / "config.json")["grok_interp"]["format"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def describe(h: pd.DataFrame) -> dict:
    """One run's numbers: the map's class and events, the training-mode fit, and whether
    the feature MED ratio moved before test accuracy (:func:`resnet_map.med_lead`)."""
    out = classify(h)
    if out["phase"] == "grokked" and not out["late_test_acc"] >= out["plateau"] + JUMP:
        # eval-mode test accuracy swings between evaluations: one high reading after the
        # plateau is not a jump unless the last evaluations stay up
        out["phase"] = "memorised, test spikes"
    ev = events(h)
    out.update(u_acc=ev.u_acc, l_acc=ev.l_acc)
    # test accuracy with BatchNorm in training mode (batch statistics), where recorded
    out["late_test_acc_batch"] = float(h["test_acc_batch"].iloc[-LATE:].median()) if "test_acc_batch" in h else None
    fit = h[h.get("epoch_acc", pd.Series(dtype=float)) >= 0.99] if "epoch_acc" in h else h.iloc[:0]
    out["fit_at"] = int(fit["step"].iloc[0]) if len(fit) else None
    out.update(med_lead(h, out["memorised_at"], jumped=out["phase"] == "grokked"))
    return out


def recalibrated(run, dest: Path, dataset=None, last: int | None = None) -> pd.DataFrame:
    """Recalibrated-BatchNorm accuracy (:func:`grok_interp.vision.recalibrated_accuracy`)
    at every checkpoint of a loaded run up to epoch ``last``, kept in ``dest``: a later
    snapshot measures only the checkpoints added since."""
    done = pd.read_csv(dest) if dest.exists() else pd.DataFrame(columns=["step"])
    measured = set(done["step"].astype(int))
    todo = [s for s in run.checkpoint_steps if s not in measured and (last is None or s <= last)]
    if todo:
        new = recalibrated_accuracy(run, todo, dataset=dataset)
        done = pd.concat([done, new] if len(done) else [new]).sort_values("step").reset_index(drop=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        done.to_csv(dest, index=False, float_format="%.6g")
    return done


def export(table: pd.DataFrame, results: Path) -> pd.DataFrame:
    (results / "histories").mkdir(parents=True, exist_ok=True)
    rows = []
    datasets: dict = {}
    for _, row in table.iterrows():
        path = Path(row["path"]) / "history.csv"
        if row["status"] == "failed" or not path.exists():
            rows.append({})
            continue
        h = pd.read_csv(path)
        recal = pd.DataFrame()
        if (Path(row["path"]) / "checkpoints").is_dir():  # weights to recalibrate, up to the history's end
            run = load_run(row["path"], device="cpu")
            key = (run.config.image_size, run.config.style)
            if key not in datasets:  # the images, drawn or read once for every run that shares them
                datasets[key] = load_shapes(key[0], style=key[1])
            recal = recalibrated(run, results / "recalibrated" / f"{row['run']}.csv", datasets[key],
                                 last=int(h["step"].max()))
        if run_format(Path(row["path"])) < BATCH_FORMAT:
            h = h.drop(columns=BATCH_COLUMNS, errors="ignore")
        h[[k for k in HISTORY_COLUMNS + BATCH_COLUMNS if k in h]].to_csv(results / "histories" / f"{row['run']}.csv", index=False,
                                                         float_format="%.6g")
        d = describe(h)
        if len(recal):  # the last checkpoint's recalibrated accuracy, and the best one
            last, best = recal.iloc[-1], recal.loc[recal["test_acc_recal"].astype(float).idxmax()]
            d.update(recal_step=int(last["step"]), train_acc_recal=float(last["train_acc_recal"]),
                     test_acc_recal=float(last["test_acc_recal"]),
                     best_test_acc_recal=float(best["test_acc_recal"]), best_recal_at=int(best["step"]),
                     train_acc_at_best_recal=float(best["train_acc_recal"]))
        rows.append(d)
    rows = [{k: v for k, v in d.items() if k != "memorised_at"} for d in rows]
    table = c.add_columns(table, rows).drop(columns=["path"], errors="ignore")
    table.to_csv(results / "sweep.csv", index=False, float_format="%.6g")
    return table


def start_title(start: int) -> str:
    """A column's title: how its runs started."""
    return "random init" if start == 0 else f"{start} epochs of stand-in pretraining"


def curves(table: pd.DataFrame, hist, path: Path, title: str, results: Path) -> Path:
    """One column per start; rows: test accuracy, training accuracy (training-mode
    mini-batches, with the eval-mode reading faint), feature MED ratio; seeds by colour."""
    starts = sorted(table["pretrain_epochs"].unique())
    fig, axes = plt.subplots(3, len(starts), figsize=(6 * len(starts), 9.5), squeeze=False, sharex=True)
    for j, start in enumerate(starts):
        rows = table[table["pretrain_epochs"] == start].sort_values("seed")
        for _, r in rows.iterrows():
            h, seed = hist(r["run"]), int(r["seed"])
            style = dict(color=c.seed_color(seed), ls=c.seed_style(seed))
            axes[0][j].plot(h["step"], h["test_acc"], lw=1, label=f"seed {seed}", **style)
            if "test_acc_batch" in h:  # BatchNorm with batch statistics: steadier than eval mode
                axes[0][j].plot(h["step"], h["test_acc_batch"], lw=0.6, alpha=0.5, **style)
            if "epoch_acc" in h:  # training mode, the epoch's own mini-batches: the reference's accuracy
                axes[1][j].plot(h["step"], h["epoch_acc"], lw=1, label=f"seed {seed}", **style)
            axes[1][j].plot(h["step"], h["train_acc"], lw=0.6, alpha=0.35, **style)
            recal = results / "recalibrated" / f"{r['run']}.csv"
            if recal.exists():  # BatchNorm recalibrated on the training images, at checkpoints
                rc = pd.read_csv(recal)
                axes[0][j].plot(rc["step"], rc["test_acc_recal"], lw=0, marker="o", ms=3.5, color=style["color"])
            axes[2][j].plot(h["step"], h["feature_med_ratio"], lw=1, label=f"seed {seed}", **style)
        axes[0][j].set_title(start_title(start))
        axes[0][j].set_ylabel("test accuracy (eval mode; faint: batch\nstatistics; dots: recalibrated BatchNorm)")
        axes[1][j].set_ylabel("training accuracy\n(training mode; faint: eval mode)")
        axes[2][j].set_ylabel("feature MED ratio")
        axes[2][j].set_xlabel("epoch (linear to 50, then logarithmic)")
        axes[2][j].set_xscale("symlog", linthresh=50, linscale=0.5)  # the first 100 epochs and the long tail
        for ax in axes[:2, j]:
            ax.set_ylim(-0.02, 1.02)
        for ax in axes[:, j]:
            ax.legend(fontsize=7, ncol=2)
    fig.suptitle(textwrap.fill(title, 60 * len(starts)), fontsize=10)  # one column: two lines, not cut off
    return c.save(fig, path)


def late(table: pd.DataFrame, hist, path: Path, title: str, results: Path) -> Path:
    """The epochs after the training set is fitted, on a linear axis (``curves.png`` is
    logarithmic and squeezes them): one column per start; rows: test accuracy
    (recalibrated BatchNorm, the steadiest reading, with eval mode faint) and the feature
    MED ratio. For a run that grokked, dotted lines mark where each had covered half its
    change since memorisation (``med_half_way_at``, ``test_acc_half_way_at``): does the
    MED move first?"""
    starts = sorted(table["pretrain_epochs"].unique())
    fitted = table["fit_at"].dropna() if "fit_at" in table else pd.Series(dtype=float)
    start_at = float(fitted.min()) if len(fitted) else 0.0
    fig, axes = plt.subplots(2, len(starts), figsize=(6 * len(starts), 6.5), squeeze=False, sharex=True)
    for j, start in enumerate(starts):
        rows = table[table["pretrain_epochs"] == start].sort_values("seed")
        for _, r in rows.iterrows():
            h, seed = hist(r["run"]), int(r["seed"])
            h = h[h["step"] >= start_at]
            style = dict(color=c.seed_color(seed), ls=c.seed_style(seed))
            recal = results / "recalibrated" / f"{r['run']}.csv"
            axes[0][j].plot(h["step"], h["test_acc"], lw=0.6, alpha=0.35, color=style["color"])
            if recal.exists():
                rc = pd.read_csv(recal)
                rc = rc[rc["step"] >= start_at]
                axes[0][j].plot(rc["step"], rc["test_acc_recal"], lw=1.2, marker="o", ms=3, label=f"seed {seed}",
                                **style)
            axes[1][j].plot(h["step"], h["feature_med_ratio"], lw=1, label=f"seed {seed}", **style)
            if r.get("phase") == "grokked":
                for ax, key in ((axes[0][j], "test_acc_half_way_at"), (axes[1][j], "med_half_way_at")):
                    if pd.notna(r.get(key)):
                        ax.axvline(float(r[key]), color=style["color"], ls=":", lw=1)
        axes[0][j].set_title(start_title(start))
        axes[0][j].set_ylabel("test accuracy (recalibrated BatchNorm;\nfaint: eval mode)")
        axes[0][j].set_ylim(-0.02, 1.02)
        axes[1][j].set_ylabel("feature MED ratio")
        axes[1][j].set_xlabel("epoch (dotted: half way since memorisation, runs that grokked)")
        for ax in axes[:, j]:
            ax.legend(fontsize=7, ncol=3)
    fig.suptitle(textwrap.fill(f"{title}: after the fit (epoch {start_at:g} on)", 60 * len(starts)), fontsize=10)
    return c.save(fig, path)


def report(results: Path, title: str) -> pd.DataFrame:
    table, hist = c.load(results)
    require_histories(table, results)
    cols = ["pretrain_epochs", "seed", "status", "final_step", "phase", "fit_at", "jump_at", "u_acc", "l_acc",
            "best_test_acc", "late_train_acc", "late_test_acc", "late_test_acc_batch", "best_test_acc_recal",
            "best_recal_at", "recal_step", "test_acc_recal", "med_half_way_at", "test_acc_half_way_at",
            "med_moves_first"]
    c.show(table, title, [k for k in cols if k in table])
    summary = table.groupby("pretrain_epochs").agg(
        runs=("run", "size"), final_epoch_min=("final_step", "min"), final_epoch_max=("final_step", "max"),
        fitted=("fit_at", "count"), fit_at_median=("fit_at", "median"),
        memorised=("phase", lambda s: int(s.isin(["memorised", "memorised, test spikes", "grokked"]).sum())),
        grokked=("phase", lambda s: int((s == "grokked").sum())),
        u_acc_median=("u_acc", "median"), l_acc_median=("l_acc", "median"),
        best_test_acc_median=("best_test_acc", "median"), late_test_acc_median=("late_test_acc", "median"),
        test_acc_recal_median=("test_acc_recal", "median"),
        best_test_acc_recal_median=("best_test_acc_recal", "median"),
    ).reset_index()
    summary.to_csv(results / "summary.csv", index=False, float_format="%.6g")
    c.show(summary, "per start (medians over seeds)")
    curves(table, hist, results / "curves.png", title, results)
    late(table, hist, results / "late.png", title, results)
    return table


def main(argv: list[str] | None = None) -> int:
    ap = c.parser(__doc__.splitlines()[0], f"runs/examples/{STUDY}", setups=("library",), batching=False)
    ap.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the scale's)")
    ap.add_argument("--snapshot", action="store_true", help="no training: results from the run directories as they stand")
    ap.add_argument("--image-size", type=int, default=None,
                    help="image side in pixels (default: the scale's, 32 at paper scale); give another size its "
                         "own --out and --results (a run directory refuses a different size on resume)")
    ap.set_defaults(seeds="0,1,2", workers=1)
    args = ap.parse_args(argv)
    settings = c.scale(args, SCALES)
    out = c.setup(args)
    results = c.results_dir(args, STUDY, out)
    base = dict(settings["base"])
    for key in ("epochs", "image_size"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    title = (f"ResNet-18 width {base['width']}, {base['image_size']} px reference images, Adam + L2 "
             f"{base['weight_decay']:g}, batch {base['batch_size']}, up to {base['epochs']} epochs")
    configs = c.with_seeds(grid(pretrain_epochs=settings["pretrain"]), args.seeds)
    train_or_snapshot(args, configs, out, base, results, export)
    report(results, title)
    return 0


if __name__ == "__main__":
    main()
