"""The ``grok-interp`` command line.

``grok-interp train`` exposes :func:`grok_interp.train_hooked`. Bad input prints one
line (``error: ...``) and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Callable, Sequence

__all__ = ["main", "build_parser"]


def _none_or(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda s: None if s.lower() in ("none", "null", "") else kind(s)


# (flag, type, help) for every option routed to train_hooked; defaults stay with the
# config dataclasses, so only options given on the command line are passed on.
_TRAIN_OPTIONS: list[tuple[str, Callable[[str], Any], str]] = [
    ("--p", int, "prime modulus (default 113)"),
    ("--op", str, "operation: add, subtract, multiply, divide, square_sum, a2_ab_b2, a2_b2, a3_b3, a3_ab_b3 (default add)"),
    ("--offset", int, "operand offset d: operand b uses token b + d (default 0)"),
    ("--split", str, "random, square (needs --k) or strip (needs --t) (default random)"),
    ("--frac", float, "training fraction in (0, 1) (default 0.3)"),
    ("--k", int, "SQUARE size: pairs with a <= k and b <= k are forced into the test set"),
    ("--t", int, "STRIP width: pairs with a <= t are forced into the test set"),
    ("--data-seed", int, "seed of the split (default 598)"),
    ("--seed", int, "seed of the weight initialisation (default 999)"),
    ("--arch", str, "transformer or mlp (the paper's DNN baseline) (default transformer)"),
    ("--n-layers", int, "transformer layers (default 1)"),
    ("--n-heads", int, "attention heads (default 4)"),
    ("--d-model", int, "residual width (default 128)"),
    ("--d-head", int, "head width (default d_model / n_heads)"),
    ("--d-mlp", int, "MLP width (default 512)"),
    ("--act-fn", str, "MLP activation: relu, gelu, gelu_new, silu (default relu)"),
    ("--normalization", _none_or(str), "none or LN (default none)"),
    ("--init", str, "nanda (N(0, 1/d_model)) or tl (TransformerLens default) (default nanda)"),
    ("--embed-init", str, "random, circulant or onehot (frozen) (default random)"),
    ("--backend", str, "auto, hooked (TransformerLens 3) or bridge (default auto)"),
    ("--steps", int, "optimiser steps (default 20000)"),
    ("--lr", float, "AdamW learning rate (default 1e-3)"),
    ("--weight-decay", float, "AdamW weight decay (default 1.0)"),
    ("--warmup-steps", int, "linear warm-up steps (default 10)"),
    ("--loss", str, "ce (float64 cross-entropy), stablemax (float64 StableMax cross-entropy) or mse (default ce)"),
    ("--eval-every", int, "history row every N steps (default 10)"),
    ("--checkpoint-every", int, "save weights every N steps, plus denser early (default 100)"),
    ("--stop-after-grok", _none_or(int), "stop N steps after test accuracy reaches --grok-threshold"),
    ("--grok-threshold", float, "test accuracy that counts as grokked (default 0.99)"),
    ("--forward", str, "auto, fast, compile (fast via torch.compile) or hooked training forward (default auto)"),
    ("--device", str, "cpu, cuda or auto (default cpu)"),
    ("--grokfast", _none_or(str), "Grokfast gradient filter: none, ema or ma (default none)"),
    ("--grokfast-alpha", float, "Grokfast-EMA momentum in [0, 1) (default 0.98)"),
    ("--grokfast-window", int, "Grokfast-MA window in steps (default 100)"),
    ("--grokfast-lamb", _none_or(float), "Grokfast amplification (default 2 for ema, 5 for ma)"),
    ("--optimizer", str, "adamw or sgd (default adamw)"),
    ("--momentum", float, "SGD momentum in [0, 1) (default 0)"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grok-interp",
        description="Train and analyse grokking runs on prime-field tasks (TransformerLens models).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train a hooked transformer on a prime-field task",
        description="Train a hooked model on r(a, b) = f(a, b) mod p and write a run directory "
        "(config.json, model.safetensors, history.csv, checkpoints/). Options left out keep "
        "their defaults.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for flag, kind, help_text in _TRAIN_OPTIONS:
        train.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text)
    train.add_argument("--no-pos-embed", dest="pos_embed", action="store_false", default=argparse.SUPPRESS,
                       help="turn the learned positional embedding off (zero, frozen)")
    train.add_argument("--freeze-biases", action="store_true", default=argparse.SUPPRESS,
                       help="keep every bias at zero, out of the optimiser")
    train.add_argument("--perpendicular-grad", action="store_true", default=argparse.SUPPRESS,
                       help="project each gradient off its weights, at the same norm (the perpendicular gradient)")
    train.add_argument("--out", required=True, help="run directory (new, empty, or a run to --resume)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its latest state")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    from ._sweep_cli import add_sweep_parser  # the `sweep` subcommand lives beside grok_interp.sweep

    add_sweep_parser(sub)
    report = sub.add_parser(
        "report",
        help="write a run's self-contained HTML report (plots, attention, events, config)",
        description="Write one self-contained HTML page for a run directory: plots embedded, the circuitsvis "
        "attention widget inlined, no external URLs. Opens nothing.",
    )
    report.add_argument("run_dir", help="a run directory written by grok-interp train")
    report.add_argument("--out", default=None, help="output file (default RUN_DIR/report.html)")
    report.add_argument("--step", type=int, default=None, help="checkpoint for spectrum, clusters and attention (default: final)")
    report.add_argument("--smooth", action="store_true", help="smooth the curves as in the paper")
    report.add_argument("--no-compare", dest="compare", action="store_false", help="leave out the compare_measures table")
    from .vision._cli import add_resnet_parser  # the image branch's `resnet` subcommand

    add_resnet_parser(sub)
    from .measures._cli import add_measure_parser  # `measure`: progress measures over checkpoints

    add_measure_parser(sub)
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from .runs import train_hooked

    opts = {k: v for k, v in vars(args).items() if k not in ("command", "out", "resume", "quiet", "func")}
    run = train_hooked(out=args.out, resume=args.resume, progress=not args.quiet, **opts)
    last = run.history.iloc[-1]
    print(
        f"trained to step {int(last['step'])}: train_acc {last['train_acc']:.3f} test_acc {last['test_acc']:.3f} "
        f"test_loss {last['test_loss']:.4g}; run written to {run.path}"
    )
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ._sweep_cli import cmd_sweep

    return cmd_sweep(args)


def _cmd_report(args: argparse.Namespace) -> int:
    from .viz.report import write_report

    path = write_report(args.run_dir, args.out, step=args.step, smoothing=args.smooth, compare=args.compare)
    print(f"report written to {path}")
    return 0


def _cmd_resnet(args: argparse.Namespace) -> int:
    from .vision._cli import cmd_resnet

    return cmd_resnet(args)


def _cmd_measure(args: argparse.Namespace) -> int:
    from .measures._cli import cmd_measure

    return cmd_measure(args)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"train": _cmd_train, "sweep": _cmd_sweep, "report": _cmd_report, "resnet": _cmd_resnet, "measure": _cmd_measure}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _COMMANDS[args.command](args)
    except ValueError as exc:  # bad input: one line, status 2, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
