"""The ``grok-interp resnet`` subcommand (kept beside the image branch it drives)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_resnet_parser", "cmd_resnet"]


def add_resnet_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "resnet",
        help="train a hooked ResNet-18 on the shapes-sum images (the paper's image experiment)",
        description="Train a hooked ResNet-18 on 2 x 2 grids of shapes whose label is the total number of "
        "polygon sides, and write a run directory that `grok_interp.load_run` reads. Options left out keep "
        "the preset's values.",
    )
    p.add_argument("--preset", default=None, choices=["paper", "cpu", "reference"],
                   help="paper (the default for a new run; with --resume, the saved run's values are kept): "
                   "224 px, torchvision resnet18; cpu: 32 px, width 16, eval every 10 epochs; "
                   "reference: the reference code's recipe (its images, 52-way head, accuracy every 100 epochs; "
                   "--image-size 32 or 64 on a CPU)")
    p.add_argument("--pretrained", default=None, metavar="PATH",
                   help="local torchvision ResNet-18 weights (e.g. ImageNet's); never downloaded")
    from ..config import add_config_arguments
    from .train import PRESETS, ResNetConfig

    add_config_arguments(p.add_argument_group("ResNetConfig (the paper preset's value shown)"), ResNetConfig,
                         defaults=PRESETS["paper"])
    p.add_argument("--cache-dir", default=None, help="dataset cache (default $GROK_INTERP_CACHE or ~/.cache/grok_interp)")
    p.add_argument("--out", required=True, help="run directory (new, empty, or a run to --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest state")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_resnet(args: argparse.Namespace) -> int:
    from .train import train_resnet

    skip = {"command", "out", "resume", "quiet", "func", "preset", "cache_dir", "pretrained"}
    opts = {k: v for k, v in vars(args).items() if k not in skip}
    from .. import store

    # resuming a run: its saved configuration, changed only by the options given (as `train --resume`)
    preset = args.preset or (None if args.resume and store.is_run_dir(args.out) else "paper")
    run = train_resnet(preset=preset, out=args.out, resume=args.resume, cache_dir=args.cache_dir,
                       progress=not args.quiet and sys.stderr.isatty(), pretrained=args.pretrained, **opts)
    last = run.history.iloc[-1]
    print(
        f"trained to epoch {int(last['step'])}: train_acc {last['train_acc']:.3f} test_acc {last['test_acc']:.3f} "
        f"test_loss {last['test_loss']:.4g}; run written to {run.path}"
    )
    return 0
