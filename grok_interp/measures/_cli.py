"""The ``grok-interp measure RUN_DIR`` subcommand: measures over checkpoints + comparison."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .record import measure_names

__all__ = ["add_measure_parser", "cmd_measure"]


def add_measure_parser(sub: Any) -> None:
    p = sub.add_parser(
        "measure",
        help="evaluate progress measures on every checkpoint of a run and rank them against test loss",
        description="Evaluate progress measures on every saved checkpoint of a run directory (key "
        "frequencies of the final checkpoint held fixed by default), write them as CSV, and print "
        "compare_measures: how each measure tracks test loss after memorisation.",
    )
    p.add_argument("run_dir", help="a run directory written by grok-interp train")
    p.add_argument(
        "--measures", nargs="+", default=["default", "fourier"],
        help="measure names or aliases: default, fourier, representations, " + ", ".join(measure_names()),
    )
    p.add_argument(
        "--key-freqs-from", default="final",
        help="final, each, a checkpoint step, or comma-separated frequencies (e.g. 14,35,41)",
    )
    p.add_argument("--key-rule", default="neurons", help="neurons or embedding")
    p.add_argument("--out", default=None, help="CSV to write (default RUN_DIR/measures.csv)")


def _key_source(text: str) -> str | int | list[int]:
    if text in ("final", "each"):
        return text
    try:
        if "," in text:
            return [int(x) for x in text.split(",") if x.strip()]
        return int(text)
    except ValueError:
        from .._validate import bad_value

        raise bad_value("key_freqs_from", text, "must be final, each, a step, or comma-separated frequencies") from None


def cmd_measure(args: argparse.Namespace) -> int:
    import pandas as pd

    from .. import store
    from ..runs import load_run
    from .compare import compare_measures

    run = load_run(args.run_dir)
    df = run.measure(args.measures, key_freqs_from=_key_source(args.key_freqs_from), key_rule=args.key_rule, progress=True)
    out = Path(args.out) if args.out else Path(args.run_dir) / "measures.csv"
    store.write_csv(out, df)  # the run store writes every file of a run, atomically
    table = compare_measures(run, df)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(f"key frequencies ({args.key_rule} rule): {df.attrs.get('key_freqs')}")
        print(f"memorised_at {table.attrs['memorised_at']}, grokked_at {table.attrs['grokked_at']}, halfway_at {table.attrs['halfway_at']}, "
              f"test loss moved_at {table.attrs['target_moved_at']}")
        print(table.to_string(index=False))
    print(f"measures of {len(df)} checkpoints written to {out}")
    return 0
