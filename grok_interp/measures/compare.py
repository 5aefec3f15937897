"""Which progress measure tracks generalisation? One table per run.

For every measure column of a run's history (and, optionally, of a
:meth:`GrokRun.measure` table), after memorisation:

* ``spearman``, ``pearson``: correlation with test loss at the same steps;
* ``best_lag``, ``pearson_at_lag``: the shift (in steps) maximising ``|Pearson|``
  between ``measure(t)`` and ``test_loss(t + lag)`` (a cross-correlation; Spearman is
  blind to a shift between two monotone curves); a positive lag means the measure moves
  *before* test loss (test loss is interpolated between its recorded steps);
* ``direction``: ``falls``, ``rises`` or ``flat`` over the window (final level vs start);
* ``moved_at``: the first step at which the measure has covered ``move_frac`` (half) of
  its change from its value at memorisation to its final level (median of the last
  tenth of the window); ``before_test_loss`` / ``before_acc`` say whether that is
  earlier than test loss's own ``moved_at`` / the test-accuracy jump (``halfway_at``, the
  half-way GO-Epoch of :func:`~grok_interp.measures.phases`), and ``lead_over_acc =
  halfway_at - moved_at``.

This is how to check the paper's claim that MED traces test loss more closely than
earlier measures, next to the Fourier measures of Nanda et al., on the same run.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import stats

from .._validate import bad_value
from ..protocols import Run, as_history
from .phases import events

__all__ = ["compare_measures", "moved_at"]

_BOOKKEEPING = {"step", "test_loss", "train_acc", "test_acc"}


def moved_at(steps: np.ndarray, values: np.ndarray, frac: float = 0.5) -> int | None:
    """First step where ``values`` has covered ``frac`` of its change from ``values[0]``
    to its final level (median of the last tenth). None if it never changes."""
    if len(values) < 2:
        return None
    tail = max(1, len(values) // 10)
    start, end = values[0], float(np.median(values[-tail:]))
    delta = end - start
    if delta == 0 or not np.isfinite(delta):
        return None
    hit = np.flatnonzero((values - start) / delta >= frac)
    return int(steps[hit[0]]) if len(hit) else None


def _corr(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    return float(stats.spearmanr(x, y)[0]), float(stats.pearsonr(x, y)[0])


def compare_measures(
    run: Run | pd.DataFrame,
    measures: pd.DataFrame | None = None,
    *,
    columns: Iterable[str] | None = None,
    target: str = "test_loss",
    lags: Iterable[int] | None = None,
    move_frac: float = 0.5,
    start: int | None = None,
) -> pd.DataFrame:
    """Rank progress measures by how well they track test loss after memorisation.

    Args:
        run: A :class:`~grok_interp.Run` (its history) or a history DataFrame (``step``,
            ``train_acc``, ``test_acc``, the ``target`` column, measure columns).
        measures: An extra table with a ``step`` column, e.g. from
            :meth:`GrokRun.measure` (its columns are compared too).
        columns: Measure columns to compare (default: every numeric column except
            ``step``, the target and the accuracies; ``train_loss`` stays as a baseline).
        target: The column to track (``test_loss``).
        lags: Candidate lags in steps (default: multiples of the measure's step spacing
            up to a quarter of the window each way, thinned to at most about 40 a side).
        move_frac: Fraction of its change at which a measure has "moved".
        start: First step of the window (default: ``memorised_at``; step 0 if the run
            never memorised).

    Returns:
        DataFrame sorted by ``|spearman|`` (best first), one row per measure:
        ``measure, n, spearman, pearson, best_lag, pearson_at_lag, direction, moved_at,
        before_test_loss, before_acc, lead_over_acc``. ``attrs`` holds ``memorised_at``,
        ``grokked_at`` (test accuracy >= 0.99), ``halfway_at`` and the target's ``moved_at``.
    """
    hist = as_history(run, "run")
    if target not in hist.columns:
        raise bad_value("run", type(run).__name__, f"needs a history DataFrame with a {target!r} column")
    ev = events(hist)
    if start is None:
        start = ev.memorised_at if ev.memorised_at is not None else int(hist["step"].min())
    frame = hist
    if measures is not None:
        extra = measures.drop(columns=[c for c in measures.columns if c in hist.columns and c != "step"])
        frame = hist.merge(extra, on="step", how="outer")
    frame = frame.sort_values("step")
    tgt = hist[["step", target]].dropna().sort_values("step")
    tgt = tgt[tgt["step"] >= start]
    t_steps, t_vals = tgt["step"].to_numpy(float), tgt[target].to_numpy(float)
    if len(tgt) < 3:
        raise bad_value("run", f"{len(tgt)} rows after step {start}", "needs at least 3 target rows after memorisation")
    target_moved = moved_at(t_steps, t_vals, move_frac)
    if columns is None:
        columns = [
            c for c in frame.columns
            if c not in _BOOKKEEPING | {target} and pd.api.types.is_numeric_dtype(frame[c])
        ]
    rows = []
    for col in columns:
        if col not in frame.columns:
            raise bad_value("columns", col, "is not a column of the history or the measures table")
        d = frame[["step", col]].dropna()
        d = d[(d["step"] >= start) & (d["step"] <= t_steps[-1])]
        s, x = d["step"].to_numpy(float), d[col].to_numpy(float)
        row: dict[str, Any] = {"measure": col, "n": len(d)}
        rho, r = _corr(x, np.interp(s, t_steps, t_vals))
        row.update(spearman=rho, pearson=r)
        best_lag, best_r = 0, r
        if len(s) >= 3:
            spacing = float(np.median(np.diff(s)))
            if lags is not None:
                cand = list(lags)
            else:  # up to a quarter of the window each way, at most ~40 lags per side
                n_max = int(0.25 * (s[-1] - s[0]) // spacing) if spacing > 0 else 0
                stride = max(1, -(-n_max // 40))
                cand = [int(round(spacing * i)) for i in range(-(n_max // stride) * stride, n_max + 1, stride)]
            for lag in cand:
                keep = (s + lag >= t_steps[0]) & (s + lag <= t_steps[-1])
                if keep.sum() < max(3, len(s) // 2):
                    continue
                _, rl = _corr(x[keep], np.interp(s[keep] + lag, t_steps, t_vals))
                if np.isfinite(rl) and (not np.isfinite(best_r) or abs(rl) > abs(best_r) + 1e-12):
                    best_lag, best_r = lag, rl
        row.update(best_lag=best_lag, pearson_at_lag=best_r)
        m = moved_at(s, x, move_frac)
        tail = max(1, len(x) // 10)
        end = float(np.median(x[-tail:])) if len(x) else math.nan
        scale = float(np.max(np.abs(x))) if len(x) else 0.0
        row["direction"] = (
            "" if len(x) < 2 else "flat" if abs(end - x[0]) <= 1e-9 * max(scale, 1e-300) else "falls" if end < x[0] else "rises"
        )
        row["moved_at"] = m
        row["before_test_loss"] = None if m is None or target_moved is None else bool(m < target_moved)
        row["before_acc"] = None if m is None or ev.halfway_at is None else bool(m < ev.halfway_at)
        row["lead_over_acc"] = None if m is None or ev.halfway_at is None else ev.halfway_at - m
        rows.append(row)
    out = pd.DataFrame(rows)
    for col in ("moved_at", "lead_over_acc", "best_lag"):
        if col in out.columns:
            out[col] = out[col].astype("Int64")
    if len(out):
        out = out.sort_values("spearman", key=lambda v: -v.abs().fillna(-1), kind="stable").reset_index(drop=True)
    out.attrs.update(memorised_at=ev.memorised_at, grokked_at=ev.grokked_at, halfway_at=ev.halfway_at, target_moved_at=target_moved, start=start)
    return out
