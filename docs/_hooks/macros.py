"""mkdocs hook: fill ``{{ ... }}`` placeholders from the repository's data at build time.

A placeholder is one Python call of the functions in :data:`MACROS`, e.g.::

    {{ value("nonisomorphic/reference/summary.csv", "u_acc_median", frac=0.6) }}
    {{ spread("embed_init/library/summary.csv", "u_acc", embed_init="circulant") }}
    {{ table("embed_init/library/summary.csv", ["embed_init", "seeds", "u_acc"]) }}
    {{ cli_reference() }}

Paths are relative to ``results/``. Keyword filters select rows (``key=value``, numbers
compared as numbers); ``where="pandas query"`` selects with a query. A macro that finds
no file, no row, or (``value``) more than one row fails the build: a findings page
cannot quietly show a number its data no longer has. No network, no templating engine:
the placeholders are evaluated with only these functions in scope.

``results/**/*.png`` are added to the site, so a page links a study's plot as
``../results/<study>/<setup>/<plot>.png`` from ``docs/findings/``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
PLACEHOLDER = re.compile(r"\{\{(.+?)\}\}", re.S)
#: Configuration keys: printed as they are written (0.5, 97), not to three decimals.
KEYS = {"p", "frac", "k", "t", "offset", "seed", "seeds", "grokked", "weight_decay", "init_scale", "runs",
        "reached_099", "n_train", "n_test", "n", "final_step", "pretrain_epochs", "fitted", "memorised"}


# --- reading results -------------------------------------------------------------------

@lru_cache(maxsize=None)
def _csv(path: str) -> pd.DataFrame:
    file = RESULTS / path
    if not file.exists():
        raise PluginError(f"results file {file} does not exist")
    return pd.read_csv(file)


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, bool) or isinstance(a, bool):
        return str(a).lower() == str(b).lower()
    if isinstance(b, (int, float)):
        try:
            return not pd.isna(a) and math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    if b is None:
        return pd.isna(a) or a == "-"
    return str(a) == str(b)


def rows(path: str, where: str | None = None, **filters: Any) -> pd.DataFrame:
    """The rows of ``results/path`` that match every ``key=value`` filter and ``where``."""
    frame = _csv(path)
    if where:
        frame = frame.query(where)
    for key, want in filters.items():
        if key not in frame.columns:
            raise PluginError(f"{path}: no column {key!r} (columns: {', '.join(frame.columns)})")
        frame = frame[[_same(v, want) for v in frame[key]]]
    if frame.empty:
        raise PluginError(f"{path}: no row matches {filters or ''} {where or ''}")
    return frame


def fmt(v: Any, digits: int | None = None, na: str = "none") -> str:
    """A cell for reading: integers without a decimal point, floats to ``digits`` (3)."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return na
    if isinstance(v, (bool, np.bool_)):  # numpy's bool is no int subclass: once it read as 0.000
        return "yes" if v else "no"
    if isinstance(v, (int,)) or (isinstance(v, float) and v.is_integer() and digits is None and abs(v) >= 10):
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.{3 if digits is None else digits}f}"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return fmt(f, digits, na)


def _is_count(column: str) -> bool:
    return column in KEYS or column.endswith(("_at", "_lag", "lag_median", "lag_min", "lag_max", "steps_to_99",
                                               "steps_to_099", "_step"))


def fmt_col(v: Any, column: str, digits: int | None = None, na: str = "none") -> str:
    """``fmt``, with counts, steps and configuration keys as integers (``3``, not ``3.000``)
    or in their shortest form (``0.3``), also where ``digits`` sets a table's other columns."""
    if _is_count(column) and not (v is None or v is pd.NA or pd.isna(v)):
        try:
            f = float(v)
        except (TypeError, ValueError):
            return str(v)
        if f.is_integer():
            return str(int(f))
        if digits is None or column in KEYS:  # a configuration key reads as written (0.3)
            return f"{f:g}"
    return fmt(v, digits, na)


def value(path: str, column: str, digits: int | None = None, na: str = "none", where: str | None = None,
          **filters: Any) -> str:
    """The one cell of ``column`` in the one row the filters select."""
    frame = rows(path, where, **filters)
    if len(frame) != 1:
        raise PluginError(f"{path}: {len(frame)} rows match {filters} {where or ''}; value() needs one")
    if column not in frame.columns:
        raise PluginError(f"{path}: no column {column!r}")
    return fmt_col(frame[column].iloc[0], column, digits, na)


def values(path: str, column: str, sep: str = ", ", digits: int | None = None, na: str = "none",
           where: str | None = None, by: str | None = "seed", **filters: Any) -> str:
    """Every matching row's ``column``, ordered by ``by`` (the seed, when the file has
    one; else file order), joined by ``sep``."""
    frame = rows(path, where, **filters)
    if by and by in frame.columns:
        frame = frame.sort_values(by, kind="stable")
    return sep.join(fmt_col(v, column, digits, na) for v in frame[column])


def listed(path: str, keys: list[str], where: str | None = None, names: dict[str, str] | None = None,
           sep: str = "; ", none: str = "none", **filters: Any) -> str:
    """The matching rows named by their ``keys`` (``"pretraining epochs 0, seed 1"``), in
    file order, joined by ``sep``; ``none`` when no row matches. Prose that says which
    runs did something then follows the data instead of naming them by hand."""
    try:
        frame = rows(path, where, **filters)
    except PluginError as exc:
        if "no row matches" in str(exc):
            return none
        raise
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise PluginError(f"{path}: no column {missing[0]!r}")
    names = names or {}
    return sep.join(", ".join(f"{names.get(k, k)} {fmt_col(r[k], k)}" for k in keys) for _, r in frame.iterrows())


def number(path: str, column: str, where: str | None = None, **filters: Any) -> float:
    """The one cell as a float, for arithmetic inside a placeholder."""
    frame = rows(path, where, **filters)
    if len(frame) != 1:
        raise PluginError(f"{path}: {len(frame)} rows match {filters}; number() needs one")
    return float(frame[column].iloc[0])


def span(path: str, column: str, digits: int | None = None, sep: str = "-", where: str | None = None,
         **filters: Any) -> str:
    """``min-max`` of ``column`` over the matching rows (missing values left out)."""
    v = pd.to_numeric(rows(path, where, **filters)[column], errors="coerce").dropna()
    if v.empty:
        return "none"
    lo, hi = fmt_col(float(v.min()), column, digits), fmt_col(float(v.max()), column, digits)
    return lo if lo == hi else f"{lo}{sep}{hi}"


def count(path: str, where: str | None = None, **filters: Any) -> str:
    """How many rows match (0 allowed)."""
    try:
        return str(len(rows(path, where, **filters)))
    except PluginError as exc:
        if "no row matches" in str(exc):
            return "0"
        raise


def spread(path: str, metric: str, digits: int | None = None, where: str | None = None, **filters: Any) -> str:
    """``median [min, max]`` of a seed summary's ``metric`` (``summary.csv``)."""
    frame = rows(path, where, **filters)
    if len(frame) != 1:
        raise PluginError(f"{path}: {len(frame)} rows match {filters}; spread() needs one")
    return _spread_row(frame.iloc[0], metric, digits)


def _spread_row(r: pd.Series, metric: str, digits: int | None = None) -> str:
    md, lo, hi = (r[f"{metric}_{s}"] for s in ("median", "min", "max"))
    if pd.isna(md):
        return "none"
    d = 0 if digits is None and (metric.endswith("_at") or metric.startswith("steps")) else digits
    return f"{fmt(float(md), d)} [{fmt(float(lo), d)}, {fmt(float(hi), d)}]"


def seeds_above(path: str, column: str, higher: str, lower: str, of: bool = True) -> str:
    """In how many seeds the row selected by the query ``higher`` has a larger ``column``
    than the row of the same seed selected by ``lower`` (``"N of M"``, M the seeds both have)."""
    a = rows(path, higher).set_index("seed")[column]
    b = rows(path, lower).set_index("seed")[column]
    both = a.index.intersection(b.index)
    n = int((a[both].astype(float) > b[both].astype(float)).sum())
    return f"{n} of {len(both)}" if of else str(n)


def per_seed_ratios(path: str, column: str, num: str, den: str, digits: int = 2, sep: str = ", ") -> str:
    """``column`` of the rows ``num`` over the rows ``den`` of the same seed, in seed order."""
    a = rows(path, num).set_index("seed")[column].astype(float)
    b = rows(path, den).set_index("seed")[column].astype(float)
    return sep.join(f"{a[s] / b[s]:.{digits}f}" for s in sorted(a.index.intersection(b.index)))


def ratio(a: float, b: float, digits: int = 2) -> str:
    return f"{a / b:.{digits}f}"


def table(path: str, columns: list[str] | None = None, names: dict[str, str] | None = None,
          digits: int | None = None, where: str | None = None, spreads: list[str] | None = None,
          na: str = "none", **filters: Any) -> str:
    """A markdown table of the matching rows. ``spreads`` turns ``m_median/m_min/m_max``
    of a seed summary into one ``median [min, max]`` column ``m``."""
    frame = rows(path, where, **filters).copy()
    for m in spreads or []:
        frame[m] = [_spread_row(r, m, digits) for _, r in frame.iterrows()]
    columns = columns or list(frame.columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PluginError(f"{path}: no columns {missing}")
    names = names or {}
    head = "| " + " | ".join(names.get(c, c) for c in columns) + " |"
    rule = "|" + "---|" * len(columns)
    def cell(r: pd.Series, c: str) -> str:
        if c in (spreads or []):
            return str(r[c])
        return fmt_col(r[c], c, digits, na)

    body = ["| " + " | ".join(cell(r, c) for c in columns) + " |" for _, r in frame.iterrows()]
    return "\n".join([head, rule, *body])


# --- the command line, from the parser ---------------------------------------------------

def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines = ["| option | help | default |", "|---|---|---|"]
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        flags = ", ".join(f"`{s}`" for s in a.option_strings) or f"`{a.dest.upper()}`"
        if a.metavar and a.option_strings:
            flags += f" `{a.metavar}`"
        default = "" if a.default in (None, False, argparse.SUPPRESS) or not a.option_strings else f"`{a.default}`"
        text = (a.help or "").replace("|", "\\|").replace("%%", "%")
        if a.choices and not isinstance(a.choices, dict):
            text += " (" + ", ".join(map(str, a.choices)) + ")"
        lines.append(f"| {flags} | {text} | {default} |")
    return lines


def cli_reference() -> str:
    """Every ``grok-interp`` subcommand: usage and options, read from ``build_parser()``."""
    from grok_interp.cli import build_parser

    parser = build_parser()
    parser.prog = "grok-interp"
    out = ["```text", parser.format_usage().strip(), "```", "", parser.description or ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        p.prog = f"grok-interp {name}"
        out += ["", f"## `grok-interp {name}`", "", (p.description or "").strip(), "",
                "```text", p.format_usage().strip(), "```", "", *_options(p)]
    return "\n".join(out)


# --- the tour notebook, as markdown ------------------------------------------------------

def notebook(path: str) -> str:
    """``path`` (from the repository root): markdown cells as they are, code cells fenced."""
    nb = json.loads((ROOT / path).read_text())
    parts = []
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        parts.append(src if cell["cell_type"] == "markdown" else f"```python\n{src}\n```")
    return "\n\n".join(parts)


MACROS = dict(listed=listed, seeds_above=seeds_above, per_seed_ratios=per_seed_ratios, value=value, values=values, number=number, span=span, count=count, spread=spread,
              ratio=ratio, table=table, cli_reference=cli_reference, notebook=notebook, round=round,
              abs=abs, min=min, max=max, fmt=fmt)


#: A line that starts with a number and ". " or ") " is a Markdown ordered-list item.
_LIST_MARKER = re.compile(r"\d{1,9}[.)](\s|$)")


def expand(markdown: str, where: str = "") -> str:
    def one(m: re.Match[str]) -> str:
        try:
            text = str(eval(m.group(1).strip(), {"__builtins__": {}}, dict(MACROS)))  # noqa: S307
            line_start = markdown[:m.start()].rsplit("\n", 1)[-1].strip() == ""
            if line_start and _LIST_MARKER.match(text + markdown[m.end():m.end() + 2]):
                # the data's number would turn the line into a numbered list item
                raise PluginError(f"the value {text!r} starts a line before {markdown[m.end():m.end() + 2]!r}: "
                                  "Markdown reads it as a numbered list; move the placeholder off the line's start")
            return text
        except PluginError as exc:
            raise PluginError(f"{where}: {{{{{m.group(1).strip()}}}}}: {exc}") from None
        except Exception as exc:
            raise PluginError(f"{where}: {{{{{m.group(1).strip()}}}}}: {type(exc).__name__}: {exc}") from None

    return PLACEHOLDER.sub(one, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 - mkdocs hook signature
    return expand(markdown, page.file.src_uri)


def on_files(files, config):  # noqa: ANN001 - mkdocs hook signature
    for png in sorted(RESULTS.rglob("*.png")):
        rel = png.relative_to(ROOT).as_posix()
        files.append(File(rel, src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files
