"""Events of a training history: when a run memorised, when it grokked, how high it got.

These are the Table-1 columns of the paper (memorisation step, GO-Epoch, U-Acc, L-Acc),
read from any history with a step column and train/test accuracy columns: a
:class:`~grok_interp.GrokRun`'s ``history``, a vision run's per-epoch history (``step``
= epoch), or a list of row dicts.

**Grokked** has one meaning across the package: test accuracy has reached
:data:`GROKKED` (0.99; ``grok_threshold``). ``events`` (``grokked_at``, ``grokked``), the
grok-stop rule (``TrainConfig.stop_after_grok`` / ``grok_threshold``), the plots' phase
lines and the report all use it. A run whose test accuracy climbs from 0.05 to 0.56 has
*not* grokked. The relative GO-Epoch of the studies (half way from the accuracy at
memorisation to the run's own best) is a different quantity, kept as ``halfway_at``.

Definitions (every threshold is a parameter with this default):

* ``memorised_at``: first step with training accuracy ``>= train_threshold`` (0.99).
* ``grokked_at``: first step with test accuracy ``>= grok_threshold`` (0.99), the step
  ``stop_after_grok`` counts from; ``None`` when never reached. ``grokked`` is
  ``grokked_at is not None``.
* ``u_acc``: highest test accuracy at or after ``memorised_at``.
* ``l_acc``: lowest test accuracy from the first step (at or after memorisation) whose
  test accuracy is within ``approach`` (0.01, one point) of ``u_acc``, to the end.
* ``halfway_at`` (GO-Epoch, the *half-way rule* of the studies): first step at or after
  memorisation whose test accuracy has risen ``rise`` (0.5, half way) from its value at
  memorisation (``acc_at_memorised``) to ``u_acc``; ``None`` (no rise) when
  ``u_acc - acc_at_memorised < min_rise`` (0.05).
* ``onset_at`` (GO-Epoch, the *onset rule*: where the first sustained rise starts):
  ``None`` when ``halfway_at`` is. Otherwise let ``floor`` be the lowest test accuracy
  from ``memorised_at`` to ``halfway_at`` and ``line = floor + onset * (u_acc - floor)``
  (``onset`` 0.1: a tenth of the way up). ``onset_at`` is the first step at or after
  memorisation from which test accuracy stays ``>= line`` at *every* row up to
  ``halfway_at``. "Sustained" means exactly that: the rise never falls back below the
  line before it has gone half way. An earlier excursion above the line that falls back
  does not count, so ``onset_at`` is where the climb that reaches half way begins; it is
  always ``<= halfway_at``.

Accuracies are fractions in [0, 1] (a point = 0.01).

Example:
    >>> import pandas as pd
    >>> h = pd.DataFrame({"step": [0, 10, 20, 30, 40],
    ...                   "train_acc": [0.1, 1.0, 1.0, 1.0, 1.0],
    ...                   "test_acc": [0.0, 0.1, 0.2, 0.9, 1.0]})
    >>> ev = events(h)
    >>> ev.memorised_at, ev.halfway_at, ev.u_acc
    (10, 30, 1.0)
    >>> ev.grokked_at, ev.grokked  # test accuracy first >= 0.99 at step 40
    (40, True)
    >>> ev.onset_at  # the line is 0.1 + 0.1 * 0.9 = 0.19: first crossed (for good) at 20
    20
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .._validate import bad_value
from ..protocols import Run, as_history

__all__ = ["Events", "events", "GROKKED"]

#: Test accuracy that counts as grokked, everywhere in the package (``events``, the
#: grok-stop rule's default ``TrainConfig.grok_threshold``, plots and reports).
GROKKED = 0.99


@dataclass(frozen=True)
class Events:
    """Events of one history (``None`` / NaN where an event did not happen).

    Attributes:
        memorised_at: First step with train accuracy >= the threshold, or None.
        grokked_at: First step with test accuracy >= ``grok_threshold`` (0.99), or None.
        u_acc: Highest test accuracy at or after memorisation (NaN if never memorised).
        l_acc: Lowest test accuracy after ``u_acc`` is first approached (NaN if never
            memorised).
        acc_at_memorised: Test accuracy at ``memorised_at`` (NaN if never memorised).
        grokked: True when ``grokked_at`` is not None.
        halfway_at: GO-Epoch by the half-way rule: first step after memorisation with
            test accuracy half way from ``acc_at_memorised`` to ``u_acc``; None when not
            memorised or no rise.
        onset_at: GO-Epoch by the onset rule: where the sustained rise that reaches
            ``halfway_at`` starts (module docstring); None when ``halfway_at`` is.
    """

    memorised_at: int | None
    grokked_at: int | None
    u_acc: float
    l_acc: float
    acc_at_memorised: float
    grokked: bool
    halfway_at: int | None = None
    onset_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (one row of a sweep table)."""
        return asdict(self)


def _frame(history: Run | pd.DataFrame | Iterable[Mapping[str, Any]], step_col: str, train_col: str, test_col: str) -> pd.DataFrame:
    df = as_history(history, "history")
    missing = [c for c in (step_col, train_col, test_col) if c not in df.columns]
    if missing:
        raise bad_value("history", f"columns {list(df.columns)}", f"needs columns {missing}")
    df = df[[step_col, train_col, test_col]].dropna().sort_values(step_col, kind="stable")
    for col in (train_col, test_col):
        if len(df) and (df[col].max() > 1.0 + 1e-9 or df[col].min() < -1e-9):
            raise bad_value(col, f"range [{df[col].min()}, {df[col].max()}]", "accuracies must be fractions in [0, 1]")
    return df


def events(
    history: Run | pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    train_threshold: float = 0.99,
    approach: float = 0.01,
    rise: float = 0.5,
    min_rise: float = 0.05,
    onset: float = 0.1,
    grok_threshold: float = GROKKED,
    step_col: str = "step",
    train_col: str = "train_acc",
    test_col: str = "test_acc",
) -> Events:
    """Memorisation step, grokking step, GO-Epochs, U-Acc and L-Acc of a history.

    Args:
        history: A DataFrame, a list of row dicts, or a :class:`~grok_interp.Run` (its history).
        train_threshold: Training accuracy that counts as memorised.
        approach: ``l_acc`` is taken from the first step with test accuracy
            ``>= u_acc - approach`` onwards.
        rise: ``halfway_at`` is the first step with test accuracy
            ``>= acc_at_memorised + rise * (u_acc - acc_at_memorised)``.
        min_rise: No ``halfway_at`` when ``u_acc - acc_at_memorised < min_rise``.
        onset: ``onset_at`` is where test accuracy rises, for good, above ``floor +
            onset * (u_acc - floor)`` (``floor``: the lowest test accuracy between
            memorisation and ``halfway_at``).
        grok_threshold: Test accuracy that counts as grokked (``grokked_at``).
        step_col, train_col, test_col: Column names (``step`` may hold epochs).

    Returns:
        An :class:`Events`; its steps are ints or None.
    """
    if isinstance(grok_threshold, bool) or not isinstance(grok_threshold, (int, float)) or not 0 < grok_threshold <= 1:
        raise bad_value("grok_threshold", grok_threshold, "must be a test accuracy in (0, 1]")
    df = _frame(history, step_col, train_col, test_col)
    steps = df[step_col].to_numpy()
    train = df[train_col].to_numpy(dtype=float)
    test = df[test_col].to_numpy(dtype=float)
    hit = np.flatnonzero(test >= grok_threshold)
    grokked_at = int(steps[hit[0]]) if len(hit) else None
    mem = np.flatnonzero(train >= train_threshold)
    if len(mem) == 0:
        return Events(None, grokked_at, math.nan, math.nan, math.nan, grokked_at is not None)
    i0 = int(mem[0])
    after = test[i0:]
    u_acc = float(after.max())
    acc0 = float(test[i0])
    near = i0 + int(np.flatnonzero(after >= u_acc - approach)[0])
    l_acc = float(test[near:].min())
    halfway_at = onset_at = None
    if u_acc - acc0 >= min_rise:
        target = acc0 + rise * (u_acc - acc0)
        ig = i0 + int(np.flatnonzero(after >= target - 1e-12)[0])
        halfway_at = int(steps[ig])
        climb = test[i0 : ig + 1]
        floor = float(climb.min())
        below = np.flatnonzero(climb < floor + onset * (u_acc - floor) - 1e-12)
        onset_at = int(steps[i0 + (int(below[-1]) + 1 if len(below) else 0)])
    return Events(int(steps[i0]), grokked_at, u_acc, l_acc, acc0, grokked_at is not None, halfway_at, onset_at)
