"""Events of synthetic histories are found at the steps they were built to occur."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from grok_interp.measures import events

pytestmark = pytest.mark.portable


def _history(steps, train, test):
    return pd.DataFrame({"step": steps, "train_acc": train, "test_acc": test, "train_loss": 0.0})


def test_grokking_history_events_at_built_steps():
    steps = np.arange(0, 5000, 10)
    train = np.where(steps >= 1200, 1.0, steps / 1200 * 0.9)  # memorised at 1200
    # test: 0.05 until 3000, linear rise to 1.0 at 4000 (half way, 0.525, at 3500), dip to 0.97 at 4500
    test = np.where(steps < 3000, 0.05, np.minimum(0.05 + (steps - 3000) / 1000 * 0.95, 1.0))
    test[steps == 4500] = 0.97
    ev = events(_history(steps, train, test))
    assert ev.memorised_at == 1200
    assert ev.acc_at_memorised == pytest.approx(0.05)
    assert ev.u_acc == pytest.approx(1.0)
    assert ev.halfway_at == 3500
    assert ev.grokked and ev.grokked_at == 3990  # 0.05 + 990/1000 * 0.95 = 0.9905 >= 0.99
    # U-Acc first approached (>= 0.99) at 3990; the lowest afterwards is the dip
    assert ev.l_acc == pytest.approx(0.97)


def test_no_memorisation_and_no_grokking():
    steps = np.arange(0, 100, 10)
    never = events(_history(steps, np.full(10, 0.5), np.full(10, 0.3)))
    assert never.memorised_at is None and never.grokked_at is None and math.isnan(never.u_acc)
    # memorised at 20, test accuracy only rises 0.04 (< 5 points): no grokking
    train = np.where(steps >= 20, 1.0, 0.2)
    test = np.where(steps >= 60, 0.34, 0.30)
    ev = events(_history(steps, train, test))
    assert ev.memorised_at == 20
    assert ev.halfway_at is None and ev.grokked_at is None and not ev.grokked
    assert ev.u_acc == pytest.approx(0.34)


def test_thresholds_are_parameters_and_rows_may_be_unsorted_dicts():
    rows = [
        {"step": 30, "train_acc": 1.0, "test_acc": 0.6},
        {"step": 0, "train_acc": 0.0, "test_acc": 0.0},
        {"step": 10, "train_acc": 0.95, "test_acc": 0.0},
        {"step": 20, "train_acc": 1.0, "test_acc": 0.2},
        {"step": 40, "train_acc": 1.0, "test_acc": 1.0},
    ]
    assert events(rows).memorised_at == 20
    assert events(rows, train_threshold=0.9).memorised_at == 10
    assert events(rows).halfway_at == 30  # half way from 0.2 to 1.0 is 0.6
    assert events(rows, rise=0.9).halfway_at == 40
    assert events(rows).grokked_at == 40 and events(rows, grok_threshold=0.6).grokked_at == 30


def test_epoch_history_with_custom_columns_and_bad_inputs():
    h = pd.DataFrame({"epoch": [1, 2, 3], "tr": [1.0, 1.0, 1.0], "te": [0.3, 0.3, 0.9]})
    ev = events(h, step_col="epoch", train_col="tr", test_col="te")
    assert (ev.memorised_at, ev.halfway_at, ev.grokked_at) == (1, 3, None)  # 0.9 is not grokked
    assert set(ev.to_dict()) >= {"memorised_at", "grokked_at", "halfway_at", "u_acc", "l_acc"}
    with pytest.raises(ValueError, match="needs columns"):
        events(h)
    with pytest.raises(ValueError, match="fractions"):
        events(pd.DataFrame({"step": [0], "train_acc": [99.0], "test_acc": [10.0]}))


def test_onset_rule_is_the_start_of_the_sustained_climb():
    steps = np.arange(0, 6000, 10)
    train = np.where(steps >= 500, 1.0, 0.5)  # memorised at 500
    # test: 0.30 at memorisation, dips to 0.02 by 1000, flat; a blip to 0.40 at 1500-1520
    # that falls back; the climb that groks starts at 3000 (0.02 -> 1.0 by 4000).
    test = np.where(steps < 1000, 0.30 - (steps - 500).clip(0) / 500 * 0.28, 0.02)
    test[(steps >= 1500) & (steps <= 1520)] = 0.40
    rise = (steps >= 3000) & (steps < 4000)
    test[rise] = 0.02 + (steps[rise] - 3000) / 1000 * 0.98
    test[steps >= 4000] = 1.0
    ev = events(_history(steps, train, test))
    assert ev.memorised_at == 500 and ev.acc_at_memorised == pytest.approx(0.30)
    # half-way rule: 0.30 + 0.5 * 0.70 = 0.65, reached at 3000 + 0.63/0.98 * 1000 -> 3650
    assert ev.halfway_at == 3650
    # onset rule: floor 0.02, line 0.02 + 0.1 * 0.98 = 0.118; the blip at 1500 crosses it
    # but falls back, so the sustained rise starts at the first row of the climb above
    # the line: 3000 + 0.098 / 0.98 * 1000 = 3100
    assert ev.onset_at == 3100
    assert ev.onset_at <= ev.halfway_at
    assert events(_history(steps, train, test), onset=0.5).onset_at == 3500


def test_onset_rule_none_without_grokking_and_the_first_row_above_the_floor_for_an_immediate_rise():
    steps = np.arange(0, 100, 10)
    train = np.where(steps >= 20, 1.0, 0.2)
    flat = events(_history(steps, train, np.where(steps >= 60, 0.34, 0.30)))
    assert flat.halfway_at is None and flat.onset_at is None
    # test accuracy 0.4 at memorisation (the floor), rising 0.2 a row: the line is 0.46,
    # first passed at the next row
    rising = events(_history(steps, train, np.clip(steps / 50, 0, 1)))
    assert rising.memorised_at == 20 and rising.onset_at == 30 and rising.halfway_at == 40


def test_grokked_is_one_threshold_of_test_accuracy_not_a_relative_rise():
    """The tour notebook's old p = 23 run: test accuracy 0.05 -> 0.56 is half way to its
    own best, but not grokked (0.99)."""
    steps = np.arange(0, 500, 10)
    train = np.where(steps >= 50, 1.0, 0.3)
    test = np.clip(0.05 + (steps - 100) / 800, 0.05, 0.56)
    ev = events(_history(steps, train, test))
    assert ev.halfway_at is not None and ev.grokked_at is None and not ev.grokked
    ev = events(_history(steps, train, test), grok_threshold=0.5)
    assert ev.grokked and ev.grokked_at == int(steps[np.flatnonzero(test >= 0.5)[0]])
    with pytest.raises(Exception, match="grok_threshold"):
        events(_history(steps, train, test), grok_threshold=1.5)


def test_grokked_at_is_the_step_the_stop_rule_counts_from():
    import grok_interp as g
    from grok_interp.measures.phases import GROKKED
    from grok_interp.training import Schedule

    assert GROKKED == g.TrainConfig().grok_threshold == Schedule(steps=1, lr=1.0).grok_threshold
    from tests.helpers import small_run

    run = small_run(p=23, steps=400, eval_every=10, lr=1e-2, weight_decay=1.0, frac=0.6, stop_after_grok=30,
                    eval_sparse=1)
    ev = events(run.history)
    if ev.grokked:  # the stop rule fired exactly stop_after_grok steps after events' grokked_at
        assert int(run.history["step"].max()) == ev.grokked_at + 30
    else:
        assert int(run.history["step"].max()) == 400
