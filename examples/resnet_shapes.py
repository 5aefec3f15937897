"""The paper's ResNet-18 experiment on the shapes-sum images, resumable, with a report.

Trains (or continues) a hooked ResNet-18 on the 2 x 2 shape grids whose label is the
total number of polygon sides, then prints the history at a few epochs, the grokking
events (memorisation epoch, grokking epoch, U-Acc, L-Acc) and writes a plot of the
accuracies, losses and the pooled-feature uniformity.

    # the CPU preset (32 px images, width 16), as long as you like; rerun to continue
    python examples/resnet_shapes.py --preset cpu --epochs 5000 --out runs/resnet-cpu
    # only report on an existing (possibly still running) run directory
    python examples/resnet_shapes.py --out runs/resnet-cpu --report-only
    # the paper's setting (224 px, torchvision's resnet18) on a GPU
    python examples/resnet_shapes.py --preset paper --epochs 2000 --out runs/resnet-paper --device auto
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import grok_interp as g  # noqa: E402
from grok_interp.measures import events  # noqa: E402
from grok_interp.vision import train_resnet  # noqa: E402


def report(run_dir: Path, plot: Path) -> None:
    run = g.load_run(run_dir)  # weights and history of the latest saved state
    h = run.history
    live = pd.read_csv(run_dir / "history.csv")  # a run still training has evaluated further
    if len(live) > len(h):
        h = live
    ev = events(h)
    print(f"run {run_dir}: {run.config}")
    print(f"epochs recorded: {int(h['step'].max())}; {len(h)} history rows")
    shown = sorted(set(h["step"]) & {0, 1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000, 1500, 2000, 3000, 4000, 5000}
                   | {int(h["step"].max())})
    cols = ["step", "train_acc", "test_acc", "train_loss", "test_loss", "feature_med", "feature_med_ratio", "feature_cv"]
    print(h[h["step"].isin(shown)][cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"best test accuracy {h['test_acc'].max():.4f} at epoch {int(h.loc[h['test_acc'].idxmax(), 'step'])}")
    print(f"events: {ev}")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    ax.plot(h["step"], h["train_acc"], label="train")
    ax.plot(h["step"], h["test_acc"], label="test")
    ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    if ev.memorised_at is not None:
        ax.axvline(ev.memorised_at, color="grey", ls=":", label="train acc >= 0.99")
    ax.legend()
    ax = axes[1]
    ax.semilogy(h["step"], h["train_loss"], label="train")
    ax.semilogy(h["step"], h["test_loss"], label="test")
    ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax.legend()
    ax = axes[2]
    ax.plot(h["step"], h["feature_med_ratio"], label="feature MED / mean pair distance")
    ax.plot(h["step"], h["feature_cv"], label="CV of consecutive distances")
    ax.set(xlabel="epoch", title="pooled-feature uniformity (lower = more uniform)")
    ax.legend()
    c = run.config
    fig.suptitle(f"ResNet-18 (width {c.width}) on shapes-sum, {c.image_size} px, train frac {c.frac}")
    fig.tight_layout()
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=110)
    plt.close(fig)
    print(f"plot written to {plot}")

    # a few training and test images with their labels, as the network sees them (grey)
    data = run.dataset()
    gen = torch.Generator().manual_seed(0)
    pick = lambda ix: ix[torch.randperm(len(ix), generator=gen)[:4]]  # noqa: E731
    idx = torch.cat([pick(run.split.train_indices), pick(run.split.test_indices)])
    pred = run.model(data.inputs(idx)).argmax(-1)
    fig, axes = plt.subplots(2, 4, figsize=(10, 5.4))
    for ax, i, yhat in zip(axes.flat, idx.tolist(), pred.tolist()):
        ax.imshow(data.images[i].numpy(), cmap="gray", interpolation="nearest")
        kind = "train" if run.split.train_mask[i] else "test"
        ax.set_title(f"{kind}: label {int(data.labels[i])}, model {yhat}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    samples = plot.with_name("samples.png")
    fig.savefig(samples, dpi=110)
    plt.close(fig)
    print(f"sample images written to {samples}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("runs/resnet-cpu"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--plot", type=Path, default=None, help="default: <out>/curves.png")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    if not args.report_only:
        resume = args.out.is_dir() and any(args.out.iterdir())
        train_resnet(preset=args.preset, epochs=args.epochs, out=args.out, resume=resume, device=args.device,
                     cache_dir=args.cache_dir, progress=not args.quiet)
    report(args.out, args.plot or args.out / "curves.png")


if __name__ == "__main__":
    main()
