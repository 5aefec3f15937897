"""Where does the ResNet-18 grok on a CPU? A recipe map over weight decay x initial scale.

Issue 16: the ``cpu`` preset (32 px, width 16, Adam with coupled weight decay 1e-4)
memorises the shapes-sum images and never generalises. Omnigrok (Liu, Michaud and
Tegmark 2022) makes MNIST grok by starting from a large weight norm (every initial
weight multiplied by ``alpha``) and shrinking it with decoupled weight decay; the time
to grok scales like ``1 / (lr * weight_decay)``. This study sweeps the two knobs that
theory says matter most - AdamW's decoupled ``weight_decay`` and the initial scale
``init_scale`` - at a size where one epoch costs about half a CPU-second (16 px,
width 8, the paper's 25% split of all 14641 images, batch 200, lr 1e-3), through
:func:`grok_interp.sweeps.sweep` (``kind="resnet"``): rerunning skips finished runs,
resumes interrupted ones, and trains on when ``--epochs`` is raised.

Each run is put in one class (:func:`classify`):

* ``grokked``: training accuracy reaches 0.99 (``memorised_at``), test accuracy sits at
  a plateau, then rises by at least ``JUMP`` above the plateau at least ``DELAY``
  epochs after memorisation (``jump_at``);
* ``generalised, no plateau``: test accuracy rises by ``JUMP`` above its level at
  memorisation within ``DELAY`` epochs of it (it generalises while it fits);
* ``memorised``: training accuracy reaches 0.99, test accuracy never jumps;
* ``not fitted, no gap``: training accuracy stays below 0.99 for the whole budget and
  the late test accuracy is within ``GAP`` of the late training accuracy (it
  generalises as far as it fits: nothing memorised);
* ``not fitted``: training accuracy stays below 0.99, with a gap.

``plateau`` is the median test accuracy over the evaluations in the ``DELAY`` epochs
after memorisation. Per run the table also has the events of
:func:`grok_interp.measures.events`, the best test accuracy and the pooled-feature
uniformity (``feature_med_ratio``, :func:`grok_interp.vision.feature_uniformity`) at
memorisation and at the end, and where it and test accuracy had covered half their change
since memorisation (:func:`med_lead`; ``med_moves_first`` for a run that grokked).

    python examples/resnet_map.py                       # the map (about 80 CPU-minutes)
    python examples/resnet_map.py --report-only         # tables and figures from results/
    python examples/resnet_map.py --quick               # seconds: a smoke test
    python examples/resnet_map.py --epochs 1000         # train every run on to 1000 epochs
    python examples/resnet_map.py --snapshot            # results from the runs as they stand
    python examples/resnet_map.py --optimizer adam --image-size 32 --results results/resnet_map/library-adam-32px
                                                        # coupled weight decay, 32 px images

``--setup reference`` draws the reference code's images instead (``style="reference"``).
Outputs in ``results/resnet_map/<setup>`` (``--quick``: under ``--out``): ``sweep.csv``
(one row per run), ``histories/<run>.csv`` (every evaluation), ``summary.csv`` (the
class per cell of the map), ``phase.png`` (the map), ``curves.png`` (accuracy and
uniformity per run) and ``samples.png`` (the two drawing styles).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import _common as c  # noqa: E402
from grok_interp.measures import events  # noqa: E402
from grok_interp.sweeps import grid, sweep  # noqa: E402

STUDY = "resnet_map"
#: Test accuracy must rise this much above the plateau to count as a jump.
JUMP = 0.2
#: Epochs after memorisation that separate "while fitting" from "late".
DELAY = 50
#: Evaluations at the end whose median accuracies are reported (``late_*_acc``).
LATE = 5
#: A run that never fits has "no gap" when its late train and test accuracy differ by less.
GAP = 0.1
#: The phase map's weight-decay axis, per optimiser.
DECAY_AXIS = {"adamw": "AdamW weight decay (decoupled)", "adam": "Adam weight decay (L2 coupled into the gradient)"}
CLASSES = ("grokked", "generalised, no plateau", "memorised", "not fitted, no gap", "not fitted")
COLOURS = {"grokked": "tab:green", "generalised, no plateau": "tab:blue", "memorised": "tab:orange",
           "not fitted, no gap": "tab:purple", "not fitted": "tab:grey"}

_BASE = dict(image_size=16, width=8, frac=0.25, batch_size=200, lr=1e-3, optimizer="adamw", epochs=500,
             eval_every=10, checkpoint_every=100, device="cpu")
_QUICK = dict(image_size=16, width=4, subset=300, frac=0.25, batch_size=25, lr=1e-3, optimizer="adamw", epochs=6,
              eval_every=2, checkpoint_every=4, device="cpu")
SCALES = {
    setup: {
        "paper": dict(base={**_BASE, "style": style}, weight_decay=[0.1, 0.3, 1.0, 3.0], init_scale=[1.0, 3.0, 10.0]),
        "quick": dict(base={**_QUICK, "style": style}, weight_decay=[0.1, 1.0], init_scale=[1.0, 3.0]),
    }
    for setup, style in (("library", "library"), ("reference", "reference"))
}


def classify(history: pd.DataFrame, jump: float = JUMP, delay: int = DELAY) -> dict:
    """The class of one run and the numbers it rests on (see the module docstring).

    Args:
        history: One row per evaluation with ``step`` (epochs), ``train_acc``, ``test_acc``
            and ``feature_med_ratio``.
        jump: Rise of test accuracy above the plateau that counts as a jump.
        delay: Epochs after memorisation before a jump counts as late.

    Returns:
        ``phase``, ``memorised_at``, ``plateau``, ``jump_at``, ``best_test_acc`` and its
        epoch ``best_at``, ``final_train_acc``, ``late_train_acc`` and ``late_test_acc``
        (medians over the last :data:`LATE` evaluations), ``gap_closed_at`` (the first
        evaluation after the widest train-test gap, if at least ``JUMP``, where the gap is
        below :data:`GAP` and test accuracy has risen by ``JUMP``: a late catch-up of
        test accuracy whether or not the training set was memorised first),
        ``feature_med_ratio_at_mem`` and
        ``feature_med_ratio_final``.
    """
    h = history.sort_values("step").reset_index(drop=True)
    ev = events(h)
    out = {"phase": "not fitted", "memorised_at": ev.memorised_at, "plateau": math.nan, "jump_at": None,
           "gap_closed_at": None,
           "best_test_acc": float(h["test_acc"].max()), "best_at": int(h.loc[h["test_acc"].idxmax(), "step"]),
           "final_train_acc": float(h["train_acc"].iloc[-1]),
           # eval-mode accuracy swings between evaluations when weight decay is strong (BatchNorm's
           # running statistics lag the shrinking weights): the median of the last LATE rows is steadier
           "late_train_acc": float(h["train_acc"].iloc[-LATE:].median()),
           "late_test_acc": float(h["test_acc"].iloc[-LATE:].median()), "feature_med_ratio_at_mem": math.nan,
           "feature_med_ratio_final": float(h["feature_med_ratio"].iloc[-1])}
    gap = (h["train_acc"] - h["test_acc"]).to_numpy()
    widest = int(gap.argmax())
    if gap[widest] >= JUMP:  # a train-test gap that later closes with test accuracy up: a late catch-up
        closed = h[(h.index > widest) & (gap < GAP) & (h["test_acc"] >= h["test_acc"].iloc[widest] + JUMP)]
        if len(closed):
            out["gap_closed_at"] = int(closed["step"].iloc[0])
    if ev.memorised_at is None:
        if abs(out["late_train_acc"] - out["late_test_acc"]) < GAP:
            out["phase"] = "not fitted, no gap"
        return out
    mem = ev.memorised_at
    at_mem = h[h["step"] >= mem].iloc[0]
    out["feature_med_ratio_at_mem"] = float(at_mem["feature_med_ratio"])
    early = h[(h["step"] >= mem) & (h["step"] <= mem + delay)]
    out["plateau"] = plateau = float(early["test_acc"].median())
    fast = h[(h["step"] >= mem) & (h["step"] <= mem + delay) & (h["test_acc"] >= float(at_mem["test_acc"]) + jump)]
    late = h[(h["step"] > mem + delay) & (h["test_acc"] >= plateau + jump)]
    if len(fast):
        out["phase"], out["jump_at"] = "generalised, no plateau", int(fast["step"].iloc[0])
    elif len(late):
        out["phase"], out["jump_at"] = "grokked", int(late["step"].iloc[0])
    else:
        out["phase"] = "memorised"
    return out


def half_way(h: pd.DataFrame, col: str) -> int | None:
    """First epoch where ``col`` has covered half its change from start to end."""
    s = h[col].astype(float)
    if s.isna().all() or s.iloc[-1] == s.iloc[0]:
        return None
    target = (s.iloc[0] + s.iloc[-1]) / 2
    crossed = (s - target) * math.copysign(1, s.iloc[-1] - s.iloc[0]) >= 0
    return int(h.loc[crossed.idxmax(), "step"]) if crossed.any() else None


def med_lead(h: pd.DataFrame, memorised_at: int | None, jumped: bool) -> dict:
    """Does the feature MED ratio move before test accuracy? ``med_half_way_at`` and
    ``test_acc_half_way_at``: the first epochs where each has covered half its change from
    memorisation (epoch 0 in a run that did not memorise) to the last evaluation;
    ``med_moves_first``: whether the MED got there first, asked only of a run whose test
    accuracy jumped (``jumped``; None otherwise: without a jump there is nothing to lead).

    Measured from memorisation because that is where a late jump starts: from epoch 0,
    test accuracy's early peak (a pretrained start generalises before it memorises)
    would be half way before any jump began."""
    late = h if memorised_at is None else h[h["step"] >= memorised_at]
    med_at, acc_at = half_way(late, "feature_med_ratio"), half_way(late, "test_acc")
    return {"med_half_way_at": med_at, "test_acc_half_way_at": acc_at,
            "med_moves_first": None if med_at is None or acc_at is None or not jumped else med_at < acc_at}


def export(table: pd.DataFrame, results: Path) -> pd.DataFrame:
    """``sweep.csv`` with each run's class, and every evaluation of each run in
    ``histories/``; the table without run paths."""
    hist_dir = results / "histories"
    hist_dir.mkdir(parents=True, exist_ok=True)
    extra = []
    for _, row in table.iterrows():
        path = Path(row["path"]) / "history.csv"
        if row["status"] == "failed" or not path.exists():
            extra.append({})
            continue
        h = pd.read_csv(path)
        d = classify(h)
        d.update(med_lead(h, d["memorised_at"], jumped=d["phase"] == "grokked"))
        extra.append(d)
        cols = ["step", "train_acc", "test_acc", "train_loss", "test_loss", "epoch_loss", "feature_med",
                "feature_med_ratio", "feature_cv"]
        h[[k for k in cols if k in h]].to_csv(hist_dir / f"{row['run']}.csv", index=False, float_format="%.6g")
    extra = [{k: v for k, v in d.items() if k != "memorised_at"} for d in extra]
    table = c.add_columns(table, extra).drop(columns=["path"], errors="ignore")
    for col in ("memorised_at", "grokked_at", "halfway_at", "jump_at", "gap_closed_at", "best_at", "final_step",
                "med_half_way_at", "test_acc_half_way_at"):
        if col in table:
            table[col] = table[col].astype("Int64")
    table.to_csv(results / "sweep.csv", index=False, float_format="%.6g")
    print(f"results written to {results}")
    return table


def snapshot(configs: list[dict], out: Path) -> pd.DataFrame:
    """The sweep table of the run directories as they stand, without training: rows of
    finished runs have status ``done``, unfinished ones ``partial`` (their history so
    far), missing ones are left out."""
    from grok_interp import store
    from grok_interp.sweeps import run_name, summarise

    rows = []
    for config in configs:
        name = run_name(config)
        path = out / name
        if not (path.is_dir() and store.is_run_dir(path)):
            continue
        finished = bool(store.RunStore(path).read_status().get("finished")) if (path / store.STATUS).exists() else False
        rows.append({"run": name, **config, "status": "done" if finished else "partial", "error": "",
                     **summarise(path), "wall_s": float("nan"), "path": str(path)})
    return pd.DataFrame(rows)


def phase_figure(table: pd.DataFrame, path: Path, title: str, xlabel: str = DECAY_AXIS["adamw"]) -> Path:
    """The map: one square per (weight decay, initial scale), coloured by class, with the
    best test accuracy (and its epoch), the plateau, the memorisation / jump epochs and
    the late train / test accuracy (medians of the last evaluations) written in it. With
    several seeds each square is split into one strip per seed, left to right."""
    wds = sorted(table["weight_decay"].unique())
    scales = sorted(table["init_scale"].unique())
    seeds = sorted(table["seed"].unique()) if "seed" in table else [None]
    n = len(seeds)
    fig, ax = plt.subplots(figsize=(max(7.5, 2.2 * n * len(wds) + 3.2), 1.6 * len(scales) + 1.6))
    for _, r in table.iterrows():
        x, y = wds.index(r["weight_decay"]), scales.index(r["init_scale"])
        k = seeds.index(r.get("seed"))
        left, width = x - 0.45 + k * 0.9 / n, 0.9 / n
        phase = r.get("phase") if isinstance(r.get("phase"), str) else "not fitted"
        ax.add_patch(plt.Rectangle((left, y - 0.45), width - (0.02 if n > 1 else 0), 0.9, color=COLOURS[phase],
                                   alpha=0.75))
        mem = "-" if pd.isna(r.get("memorised_at")) else int(r["memorised_at"])
        jump = "" if pd.isna(r.get("jump_at")) else f"\njump {int(r['jump_at'])}"
        if not pd.isna(r.get("gap_closed_at")):
            jump += f"\ngap closed {int(r['gap_closed_at'])}"
        seed = f"seed {int(r['seed'])}\n" if n > 1 else ""
        ax.text(left + width / 2 if n > 1 else x, y,
                f"{seed}best {r['best_test_acc']:.2f} @{int(r['best_at'])}\nplateau {r['plateau']:.2f}\n"
                f"mem {mem}{jump}\nlate {r['late_train_acc']:.2f}/{r['late_test_acc']:.2f} @{int(r['final_step'])}",
                ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(wds)), [f"{w:g}" for w in wds])
    ax.set_yticks(range(len(scales)), [f"{s:g}" for s in scales])
    ax.set(xlim=(-0.5, len(wds) - 0.5), ylim=(-0.5, len(scales) - 0.5), xlabel=xlabel,
           ylabel="initial weight scale alpha")
    ax.set_title(title, fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[k], alpha=0.75) for k in CLASSES]
    ax.legend(handles, CLASSES, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return c.save(fig, path)


def curves_figure(table: pd.DataFrame, hist, path: Path, title: str) -> Path:
    """Train / test accuracy and, on an axis of its own below, the pooled-feature
    uniformity (MED ratio) of every run: one pair of panels per cell of the map (rows:
    initial scale, columns: weight decay, and seed when there are several)."""
    wds = sorted(table["weight_decay"].unique())
    scales = sorted(table["init_scale"].unique())
    seeds = sorted(table["seed"].unique()) if "seed" in table else [None]
    cols = [(wd, s) for wd in wds for s in seeds]
    fig, axes = plt.subplots(2 * len(scales), len(cols), figsize=(max(7.5, 3.4 * len(cols)), 3.4 * len(scales)),
                             sharex=True, squeeze=False, gridspec_kw={"height_ratios": [2, 1] * len(scales)})
    for _, r in table.iterrows():
        if r["status"] == "failed":
            continue
        row = 2 * (len(scales) - 1 - scales.index(r["init_scale"]))
        col = cols.index((r["weight_decay"], r.get("seed")))
        acc, med = axes[row, col], axes[row + 1, col]
        h = hist(r["run"])
        acc.plot(h["step"], h["train_acc"], label="train acc", color="tab:blue")
        acc.plot(h["step"], h["test_acc"], label="test acc", color="tab:red", ls="--")
        med.plot(h["step"], h["feature_med_ratio"], color="tab:green")
        seed = f", seed {int(r['seed'])}" if len(seeds) > 1 else ""
        acc.set_title(f"wd {r['weight_decay']:g}, alpha {r['init_scale']:g}{seed}: {r['phase']}", fontsize=8)
        acc.set_ylim(0, 1.02)
        acc.tick_params(labelsize=7)
        med.tick_params(labelsize=7)
    for j in range(len(cols)):
        for i in range(len(scales)):
            if j == 0:
                axes[2 * i, 0].set_ylabel("accuracy", fontsize=7)
                axes[2 * i + 1, 0].set_ylabel("feature\nMED ratio", fontsize=7)
        axes[-1, j].set_xlabel("epoch")
        c.few_ticks(axes[-1, j])
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return c.save(fig, path)


def samples_figure(path: Path, sizes=(224, 32, 16)) -> Path:
    """Three images in both drawing styles at several sizes, as the network sees them."""
    from grok_interp.vision import SHAPE_WEIGHTS, render_images

    combos = torch.tensor([[1, 2, 3, 4], [10, 9, 8, 0], [6, 6, 6, 6]])
    cols = [(style, size) for style in ("reference", "library") for size in sizes]
    fig, axes = plt.subplots(len(combos), len(cols), figsize=(1.9 * len(cols), 2.1 * len(combos)))
    for j, (style, size) in enumerate(cols):
        imgs = render_images(combos, size, style=style)
        for i in range(len(combos)):
            ax = axes[i, j]
            ax.imshow(imgs[i].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"{style}\n{size} px", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"label {sum(SHAPE_WEIGHTS[k] for k in combos[i].tolist())}", fontsize=9)
    fig.suptitle("shapes-sum images: reference style (JPEG, crop) and library style")
    return c.save(fig, path)


def cell_classes(phases: pd.Series) -> str:
    """The class of a cell of the map: the run's class for one seed; with several, each
    class with how many seeds are in it (``grokked (2 of 3 seeds); memorised (1 of 3
    seeds)``), so a cell never shows one seed's class for all."""
    if len(phases) == 1:
        return str(phases.iloc[0])
    counts = phases.value_counts().sort_index().sort_values(ascending=False, kind="stable")
    return "; ".join(f"{k} ({v} of {len(phases)} seeds)" for k, v in counts.items())


def require_histories(table: pd.DataFrame, results: Path) -> None:
    """Exit with the runs' errors when no run of ``table`` has a history (every run
    failed, for instance a run directory refusing other settings), instead of failing
    later on a missing column. Shared by the ResNet studies' reports."""
    if "phase" not in table:
        errors = sorted(set(table["error"].dropna())) if "error" in table else []
        raise SystemExit(f"error: no run in {results} has a history; " + ("; ".join(errors) or "see the sweep's log"))


def report(results: Path, title: str, xlabel: str = DECAY_AXIS["adamw"]) -> pd.DataFrame:
    table, hist = c.load(results)
    for col in ("jump_at", "gap_closed_at", "best_at"):
        if col in table:
            table[col] = table[col].astype("Int64")
    cols = ["weight_decay", "init_scale", "seed", "status", "phase", "memorised_at", "plateau", "jump_at",
            "gap_closed_at",
            "best_test_acc", "best_at", "late_train_acc", "late_test_acc", "final_test_acc", "final_step", "feature_med_ratio_at_mem", "feature_med_ratio_final", "wall_s"]
    c.show(table, title, cols)
    require_histories(table, results)
    summary = table.pivot_table(index="init_scale", columns="weight_decay", values="phase", aggfunc=cell_classes)
    summary.to_csv(results / "summary.csv")
    c.show(summary.reset_index(), "class per cell (rows: init_scale, columns: weight_decay)")
    phase_figure(table, results / "phase.png", title, xlabel)
    curves_figure(table, hist, results / "curves.png", title)
    if not (results / "samples.png").exists():
        samples_figure(results / "samples.png")
    return table


def train_or_snapshot(args, configs: list[dict], out: Path, base: dict, results: Path, export_fn) -> None:
    """Train the configurations (one thread per run) or, with ``--snapshot``, read their
    run directories as they stand, and export the table to ``results`` with
    ``export_fn(table, results)``; nothing with ``--report-only``. ``--only`` picks the
    configurations, ``--plan`` writes them without training, ``--no-cache`` trains even
    cached ones, as in every study. Shared by the ResNet studies (this map and
    ``resnet_reference.py``)."""
    if args.report_only and not args.snapshot:
        return
    if getattr(args, "plan", None):  # --plan: the runs it would train, nothing trained
        c.write_plan([("", base, configs)], args)
        raise SystemExit(0)
    only = getattr(args, "only", None)
    chosen = c.select(configs, only)  # --only, as every study's parser offers it
    if not chosen:
        raise SystemExit(f"error: --only {only!r} matches none of the study's {len(configs)} configurations")
    if args.snapshot:
        table = snapshot(chosen, out)
    else:
        torch.set_num_threads(1)
        table = sweep(chosen, out, base=base, kind="resnet", max_workers=args.workers, executor=args.executor,
                      progress=not args.quiet, cache=False if getattr(args, "no_cache", False) else None)
    results.mkdir(parents=True, exist_ok=True)
    export_fn(table, results)


def main(argv: list[str] | None = None) -> int:
    ap = c.parser(__doc__.splitlines()[0], f"runs/examples/{STUDY}", batching=False)
    ap.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the scale's)")
    ap.add_argument("--weight-decays", type=float, nargs="+", default=None)
    ap.add_argument("--init-scales", type=float, nargs="+", default=None)
    ap.add_argument("--optimizer", choices=["adamw", "adam"], default=None,
                    help="adamw: decoupled weight decay (the map's default); adam: L2 coupled into the "
                         "gradient, as the reference code")
    ap.add_argument("--image-size", type=int, default=None, help="image side in pixels (default: the scale's)")
    ap.add_argument("--snapshot", action="store_true",
                    help="no training: results from the run directories as they stand (a sweep still running, "
                         "or stopped: unfinished runs get status 'partial')")
    ap.set_defaults(seeds="0", workers=1)  # one seed and one worker: the budget is one niced CPU process
    args = ap.parse_args(argv)
    settings = c.scale(args, SCALES)
    out = c.setup(args)
    results = c.results_dir(args, STUDY, out)
    timer = c.Timer()
    base = dict(settings["base"])
    for key in ("epochs", "optimizer", "image_size"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    b = base
    decay = {"adamw": "AdamW", "adam": "Adam + coupled L2"}[b["optimizer"]]
    title = (f"ResNet-18 width {b['width']}, {b['image_size']} px {b['style']} images, frac {b['frac']}, "
             f"{decay} lr {b['lr']:g}, {b['epochs']} epochs")
    configs = c.with_seeds(grid(weight_decay=args.weight_decays or settings["weight_decay"],
                                init_scale=args.init_scales or settings["init_scale"]), args.seeds)
    train_or_snapshot(args, configs, out, base, results, export)
    report(results, title, DECAY_AXIS[b["optimizer"]])
    timer.done(results)
    return 0


if __name__ == "__main__":
    main()
