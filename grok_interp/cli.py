"""The ``grok-interp`` command line.

``grok-interp train`` exposes :func:`grok_interp.train_hooked`. Bad input (any
:class:`~grok_interp.errors.GrokInterpError`, a bad run directory included) and the
file system's refusals (no space, read-only, not a directory, permission denied, a
missing input file) print one line (``error: ...``) and exit with status 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import logging
import re
import shlex
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable, Sequence

from .config import DataConfig, ModelConfig, TrainConfig, add_config_arguments

from .errors import GrokInterpError
from .presets import PRESETS

__all__ = ["main", "build_parser"]

#: train's flags that are not config fields.
_TRAIN_CONTROL = ("command", "out", "resume", "quiet", "func", "preset", "log_every", "log_to")
# The file system said no: a full disk, a read-only mount, a path under a file, no
# permission, a missing input file. The user can act on each; none is a bug.
_EXPECTED_OS_ERRORS = {
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM,
    errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG, errno.EMFILE,
}


def _version() -> str:
    try:
        return version("grok-interp")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _unrecognized(parser: argparse.ArgumentParser, command: str | None, extra: list[str]) -> str:
    """argparse's "unrecognized arguments" message, with a "did you mean" per option
    that is close to one of the subcommand's own."""
    known = list(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            known += list(action.choices[command]._option_string_actions)
    hints = []
    for word in extra:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.6)
            if close:
                hints.append(f"{word}: did you mean {close[0]}?")
    return "unrecognized arguments: " + " ".join(extra) + (f" ({'; '.join(hints)})" if hints else "")


def _subcommand(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return None


def _flag_text(action: argparse.Action, value: Any) -> str:
    """``value`` as it is written on the command line for ``action``'s flag."""
    flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
    if action.nargs == 0:  # --resume, --quiet, --pos-embed/--no-pos-embed
        if value is False and isinstance(action, argparse.BooleanOptionalAction):
            return "--no-" + flag[2:]
        return flag
    if value is None:
        text = "none"
    elif isinstance(value, (tuple, list)):
        text = " ".join(str(v) for v in value)
    else:
        text = str(value)
    return f"{flag} {shlex.quote(text) if text else repr(text)}"


#: ``name=value`` where a message names a parameter (``pass resume=True``, ``set optimizer='sgd'``).
_MENTION = re.compile(r"(?<![\w.(\-])([a-z][a-z0-9_]*)=('[^']*'|\"[^\"]*\"|[^\s,;)]+)")


def _cli_words(text: str, flags: dict[str, argparse.Action]) -> str:
    """Rewrite the Python ``name=value`` mentions of this subcommand's options as flags."""

    def flag(m: re.Match[str]) -> str:
        action = flags.get(m.group(1))
        if action is None:
            return m.group(0)
        raw = m.group(2)
        value: Any = {"True": True, "False": False, "None": None}.get(raw, raw.strip("'\""))
        return _flag_text(action, value)

    return _MENTION.sub(flag, text)


def cli_message(exc: GrokInterpError, parser: argparse.ArgumentParser, command: str | None) -> str:
    """An error in the command line's words: a parameter that is a flag of ``command``
    reads ``--flag VALUE is invalid: ...``, and the options the message mentions are
    flags too; other messages are left as Python wrote them."""
    sub = _subcommand(parser, command)
    if sub is None:
        return str(exc)
    flags = {a.dest: a for a in sub._actions if a.option_strings and a.dest != "help"}
    if exc.param is not None and exc.param in flags and exc.allowed is not None:
        return f"{_flag_text(flags[exc.param], exc.value)} is invalid: {_cli_words(exc.allowed, flags)}"
    if exc.param is not None and exc.allowed is not None:
        return f"{exc.param}={exc.value!r} is invalid: {_cli_words(exc.allowed, flags)}"
    return str(exc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grok-interp",
        description="Train and analyse grokking runs on prime-field tasks (TransformerLens models).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train a hooked transformer on a prime-field task",
        description="Train a hooked model on r(a, b) = f(a, b) mod p and write a run directory "
        "(config.json, model.safetensors, history.csv, checkpoints/). Options left out keep "
        "their defaults; with --resume, the saved run's values.",
    )
    train.add_argument("--preset", default=None, metavar="{" + ",".join(PRESETS) + "}",
                       help="start from a named setup: tl_demo (the TransformerLens Grokking demo), nanda "
                       "(Nanda et al. 2023) or default; the options given change it (default: none)")
    for cls, title in ((DataConfig, "task and split"), (ModelConfig, "model"), (TrainConfig, "training")):
        add_config_arguments(train.add_argument_group(title), cls)
    run = train.add_argument_group("run directory")
    run.add_argument("--out", required=True, help="run directory (new, empty, or a run to --resume)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its latest state, with its saved configuration "
                     "changed only by the options given (e.g. --steps)")
    run.add_argument("--quiet", action="store_true", help="no progress bar (it is also off when stderr is not a terminal)")
    run.add_argument("--log-every", type=float, default=30.0, metavar="SECONDS",
                     help="when stderr is not a terminal (a log file, CI), log a line with the step, losses, "
                     "accuracies and ETA at most every SECONDS; 0: none (default: 30)")
    run.add_argument("--log-to", action="append", choices=("wandb", "tensorboard"), default=None,
                     help="also log every history row to Weights & Biases or TensorBoard (needs the extra "
                     "grok-interp[wandb] / [tensorboard]); may be given twice")
    run.add_argument("--threads", type=_threads_arg, default="auto",
                     help="torch threads: a number, or auto (one per core other processes leave free; "
                     "OMP_NUM_THREADS, when set, wins) (default: auto)")
    from ._sweep_cli import add_sweep_parser  # the `sweep` subcommand lives beside grok_interp.sweeps

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


def _threads_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of threads or 'auto'") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} threads: give at least 1")
    return n


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars unless --quiet, and only on a terminal (no \\r lines in logs)."""
    return not args.quiet and sys.stderr.isatty()


def _cmd_train(args: argparse.Namespace) -> int:
    from .runs import train_hooked

    opts = {k: (tuple(v) if isinstance(v, list) else v) for k, v in vars(args).items() if k not in _TRAIN_CONTROL}
    log_every = None if args.quiet or sys.stderr.isatty() or not args.log_every > 0 else args.log_every
    run = train_hooked(out=args.out, resume=args.resume, progress=_progress(args), preset=args.preset,
                       log_every=log_every, log_to=args.log_to, **opts)
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
    args, extra = parser.parse_known_args(argv)
    if extra:  # the subcommand's usage, not the top level's
        command = getattr(args, "command", None)
        (_subcommand(parser, command) or parser).error(_unrecognized(parser, command, extra))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _COMMANDS[args.command](args)
    except GrokInterpError as exc:  # bad input or a bad run directory: one line, status 2
        print(f"error: {cli_message(exc, parser, args.command)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in _EXPECTED_OS_ERRORS:
            raise  # not the user's disk or path: a bug, keep the traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
