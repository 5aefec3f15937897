"""The plateau-stop rule: it waits out a late jump that a naive patience rule cuts,
waits longer for runs that improved late, and the training loop stops where the rule,
replayed on the run's own history, says it should."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grok_interp.training import PlateauClock, plateau_stop_step

from ..helpers import small_run

pytestmark = pytest.mark.portable


def _late_jump(end: int = 30000) -> pd.DataFrame:
    """Memorised at 140; test accuracy wobbles +-0.004 around 0.02 (never a new high by
    0.01) until 7000, jumps to 1.0 by 7300, then stays: a grokking run with a 7000-step
    flat plateau, as at p = 97 (memorised 140, GO-Epoch 7300)."""
    steps = np.arange(0, end + 1, 20)
    train = np.where(steps >= 140, 1.0, steps / 140 * 0.9)
    wobble = 0.004 * np.sin(steps / 37.0)
    test = np.where(steps < 7000, 0.02 + wobble, np.minimum(0.02 + (steps - 7000) / 300 * 0.98, 1.0))
    return pd.DataFrame({"step": steps, "train_acc": train, "test_acc": test})


def test_a_naive_patience_rule_cuts_the_late_jump_and_ours_does_not():
    h = _late_jump()
    # Naive: stop after 1000 steps without a new high - cuts the run at 1140, long before
    # the jump (test accuracy still 0.02).
    naive = plateau_stop_step(h, patience=1000)
    assert naive == 1140 and h.set_index("step").loc[naive, "test_acc"] < 0.03
    # The rule with the reference setups' patience (10000) lets the jump happen, then
    # stops once test accuracy has made no new high for max(10000, clock) steps: the last
    # new high is the first row at 1.0 (7300), so the stop is at 7300 + 10000.
    ours = plateau_stop_step(h, patience=10000)
    assert ours == 17300
    assert h.set_index("step").loc[:ours, "test_acc"].max() == pytest.approx(1.0)


def test_a_run_still_improving_late_waits_as_long_as_it_has_trained():
    # memorised at 100; test accuracy climbs 0.02 every 400 steps until 12000, then flat
    steps = np.arange(0, 40001, 20)
    test = np.minimum(0.1 + (steps // 400) * 0.02, 0.1 + 30 * 0.02)
    h = pd.DataFrame({"step": steps, "train_acc": np.where(steps >= 100, 1.0, 0.5), "test_acc": test})
    # last new high at 12000: the wait is max(10000, 12000) = 12000 steps
    assert plateau_stop_step(h, patience=10000) == 24000


def test_training_accuracy_dropping_resets_the_clock_and_nothing_counts_before_memorisation():
    clock = PlateauClock(patience=100)
    assert not clock.update(0, 0.5, 0.1)  # not memorised: no clock
    assert not clock.update(500, 0.5, 0.1)
    assert not clock.update(600, 1.0, 0.1)  # memorised: clock 600, wait max(100, 600)
    assert not clock.update(1100, 1.0, 0.105)  # +0.005: not a new high
    assert not clock.update(1150, 0.9, 0.1)  # training accuracy lost: clock 1150
    assert not clock.update(2000, 1.0, 0.1)
    assert clock.update(2300, 1.0, 0.1)  # 2300 - 1150 >= 1150


def test_the_loop_stops_where_the_rule_says_and_resume_keeps_it(tmp_path):
    # a^2+ab+b^2 memorises within ~100 steps and its test accuracy then stays flat
    opts = dict(steps=1500, lr=1e-2, frac=0.5, op="a2_ab_b2", stop_on_plateau=100)
    run = small_run(**opts, out=tmp_path / "r")
    h = run.history
    stop = plateau_stop_step(h, patience=100)
    assert stop is not None and stop < 1500  # the test only means something if it stopped
    assert h["step"].iloc[-1] == stop
    assert run.config.train.stop_on_plateau == 100
    # a resumed finished run does not train on past its stop
    again = small_run(**opts, out=tmp_path / "r", resume=True)
    assert again.history["step"].iloc[-1] == stop


@pytest.mark.parametrize("bad", [dict(stop_on_plateau=0), dict(plateau_delta=0.0), dict(plateau_delta=True)])
def test_bad_plateau_options(bad):
    with pytest.raises(ValueError):
        small_run(**bad)
