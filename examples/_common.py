"""Shared plumbing of the example scripts: arguments, tables, plots.

Every example is a study written as data: a list of configurations run through
:func:`grok_interp.sweep.sweep`, so rerunning an example skips the runs it already
finished and resumes interrupted ones.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def parser(description: str, default_out: str) -> argparse.ArgumentParser:
    """Arguments every example takes: scale, output directory and executor."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="small scale (seconds; for smoke tests): --scale quick")
    ap.add_argument("--scale", default=None,
                    help="paper (default), reduced (smaller p or fewer steps, where the script has one) or quick")
    ap.add_argument("--out", default=None, help=f"output directory (default {default_out}, or {default_out}-quick)")
    ap.add_argument("--workers", type=int, default=None, help="parallel runs (default: CPU cores)")
    ap.add_argument("--executor", default="local", help="local or ray")
    ap.add_argument("--no-batch", action="store_true",
                    help="train every run on its own (no grok_interp.batched batches of same-shaped runs)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.set_defaults(default_out=default_out)
    return ap


def scale(args: argparse.Namespace, scales: dict[str, dict]) -> dict:
    """The settings of the scale asked for (``--quick`` is ``--scale quick``)."""
    name = args.scale or ("quick" if args.quick else "paper")
    if name not in scales:
        raise SystemExit(f"error: --scale={name!r} is invalid: this example has {', '.join(scales)}")
    args.scale = name
    return scales[name]


def setup(args: argparse.Namespace) -> Path:
    """Logging, and the output directory."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    name = args.scale or ("quick" if args.quick else "paper")
    out = Path(args.out or (args.default_out + ("" if name == "paper" else f"-{name}")))
    out.mkdir(parents=True, exist_ok=True)
    return out


def show(table: pd.DataFrame, title: str, columns: list[str] | None = None) -> None:
    """Print a table (rounded, all columns) under a title."""
    cols = [c for c in (columns or list(table.columns)) if c in table.columns]
    with pd.option_context("display.width", 250, "display.max_columns", 60, "display.max_colwidth", 60):
        print(f"\n== {title} ==")
        print(table[cols].round(4).to_string(index=False))


def history(path: str | os.PathLike) -> pd.DataFrame:
    """A run directory's history table (cheap: no model is built)."""
    return pd.read_csv(Path(path) / "history.csv")


def save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot written to {path}")
    return path


class Timer:
    """Wall time of the whole example, printed at the end."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def done(self, out: Path) -> float:
        wall = time.perf_counter() - self.start
        print(f"\nwall time {wall:.1f} s; outputs in {out}")
        return wall


def sweep_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"max_workers": args.workers, "executor": args.executor, "progress": not args.quiet,
            "batched": not args.no_batch}
