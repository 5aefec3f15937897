"""The ``grok-interp resnet`` subcommand (kept beside the image branch it drives)."""

from __future__ import annotations

import argparse
from typing import Any, Callable

__all__ = ["add_resnet_parser", "cmd_resnet"]

# (flag, type, help) for every ResNetConfig field; defaults stay with the preset/config.
_OPTIONS: list[tuple[str, Callable[[str], Any], str]] = [
    ("--image-size", int, "image side in pixels, even (paper: 224; cpu preset: 32)"),
    ("--width", int, "channels after the stem; 64 is torchvision's resnet18 (cpu preset: 16)"),
    ("--frac", float, "training fraction of the 14641 images (default 0.25)"),
    ("--data-seed", int, "seed of the split (default 0)"),
    ("--subset", int, "use only this many images (default: all)"),
    ("--seed", int, "seed of the initialisation and the per-epoch shuffles (default 0)"),
    ("--weights-path", str, "local weights file (torchvision layout); the fc layer stays new if it does not fit"),
    ("--epochs", int, "epochs to train (default 3000)"),
    ("--lr", float, "learning rate (default 1e-3)"),
    ("--weight-decay", float, "weight decay (default 1e-4)"),
    ("--optimizer", str, "adam (the paper: L2 added to the gradient) or adamw (default adam)"),
    ("--batch-size", int, "training mini-batch (default 200)"),
    ("--eval-every", int, "history row every N epochs (paper preset 1, cpu preset 10)"),
    ("--checkpoint-every", int, "weights and resume state every N epochs (paper 50, cpu 100)"),
    ("--eval-batch-size", int, "evaluation batch (default 500)"),
    ("--device", str, "cpu, cuda or auto (default auto)"),
]


def add_resnet_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "resnet",
        help="train a hooked ResNet-18 on the shapes-sum images (the paper's image experiment)",
        description="Train a hooked ResNet-18 on 2 x 2 grids of shapes whose label is the total number of "
        "polygon sides, and write a run directory that `grok_interp.load_run` reads. Options left out keep "
        "the preset's values.",
    )
    p.add_argument("--preset", default="paper", choices=["paper", "cpu"],
                   help="paper: 224 px, torchvision resnet18; cpu: 32 px, width 16, eval every 10 epochs")
    for flag, kind, help_text in _OPTIONS:
        p.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text)
    p.add_argument("--cache-dir", default=None, help="dataset cache (default $GROK_INTERP_CACHE or ~/.cache/grok_interp)")
    p.add_argument("--out", required=True, help="run directory (new, empty, or a run to --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest state")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_resnet(args: argparse.Namespace) -> int:
    from .train import train_resnet

    skip = {"command", "out", "resume", "quiet", "func", "preset", "cache_dir"}
    opts = {k: v for k, v in vars(args).items() if k not in skip}
    run = train_resnet(preset=args.preset, out=args.out, resume=args.resume, cache_dir=args.cache_dir,
                       progress=not args.quiet, **opts)
    last = run.history.iloc[-1]
    print(
        f"trained to epoch {int(last['step'])}: train_acc {last['train_acc']:.3f} test_acc {last['test_acc']:.3f} "
        f"test_loss {last['test_loss']:.4g}; run written to {run.path}"
    )
    return 0
