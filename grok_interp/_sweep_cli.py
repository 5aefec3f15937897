"""The ``grok-interp sweep`` subcommand (argparse only here; the work is in :mod:`grok_interp.sweeps`)."""

from __future__ import annotations

import argparse
from typing import Any

from ._validate import bad_value

__all__ = ["add_sweep_parser", "cmd_sweep"]


def _option_value(text: str) -> Any:
    """A --set/--grid value: none, true/false, int, float, else the string."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def _key_values(items: list[str], flag: str, many: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise bad_value(flag, item, f"write {flag} KEY=VALUE" + (",VALUE..." if many else ""))
        key = key.strip().replace("-", "_")
        out[key] = [_option_value(v) for v in value.split(",")] if many else _option_value(value)
    return out


def add_sweep_parser(sub: Any) -> None:
    sw = sub.add_parser(
        "sweep",
        help="train a grid of configurations and print one results table",
        description="Train every combination of the --grid values (with the --set options shared), "
        "each into OUT/<key=value,...>, and print one table: events (memorised_at, grokked_at: test "
        "accuracy >= 0.99, halfway_at, u_acc, l_acc), final test accuracy and the predicted ceilings. Finished runs are skipped "
        "and interrupted ones resume, so rerunning continues a sweep; a run that another sweep already "
        "trained with the same configuration is copied from the run cache (status cached). "
        "Exit status 1 if a run failed.",
    )
    sw.add_argument("--out", required=True, help="directory for the run directories and sweep.csv")
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                    help="an axis of the grid (any train option, e.g. k=30,35,40); repeat for more axes")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="an option shared by every run (e.g. p=97); repeat for more")
    sw.add_argument("--configs", help="a JSON file with a list of option dicts (instead of, or besides, --grid)")
    sw.add_argument("--executor", default="local", help="local (process pool) or ray (default local)")
    sw.add_argument("--workers", type=int, default=None, help="parallel runs (default: CPU cores)")
    sw.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    sw.add_argument("--radii", default="", help="comma-separated radii for ceiling_r{r} columns, e.g. 4,8,16")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    cache = sw.add_mutually_exclusive_group()
    cache.add_argument("--cache", default=None, metavar="DIR",
                       help="run-cache index: a run another sweep already trained with the same configuration "
                       "is copied, not trained (default: $GROK_INTERP_RUN_CACHE, else ~/.cache/grok_interp/runs)")
    cache.add_argument("--no-cache", dest="cache", action="store_false", default=None,
                       help="train every run (no run cache)")


def cmd_sweep(args: argparse.Namespace) -> int:
    import json

    import pandas as pd

    from .sweeps import grid, sweep

    base = _key_values(args.set, "--set", many=False)
    configs = grid(**_key_values(args.grid, "--grid", many=True)) if args.grid else []
    if args.configs:
        with open(args.configs) as fh:  # a missing file: the CLI prints one line
            text = fh.read()
        try:
            listed = json.loads(text)
            configs = [dict(c) for c in listed] + configs
        except (ValueError, TypeError) as exc:
            raise bad_value("--configs", args.configs, f"must hold a JSON list of objects ({exc})") from None
    if not configs:
        configs = [{}]
    try:
        radii = [int(r) for r in args.radii.split(",") if r.strip()]
    except ValueError:
        raise bad_value("--radii", args.radii, "must be comma-separated integers") from None
    table = sweep(configs, args.out, base=base, executor=args.executor, max_workers=args.workers,
                  address=args.address, radii=radii, progress=not args.quiet, cache=args.cache)
    with pd.option_context("display.width", 250, "display.max_columns", 50, "display.max_colwidth", 80):
        print(table.drop(columns=["path"]).to_string(index=False))
    print(f"table written to {args.out}/sweep.csv")
    return 1 if (table["status"] == "failed").any() else 0
