"""The examples' shared plumbing (examples/_common.py) that needs no training."""

from __future__ import annotations

import os
import sys

import pytest

from . import EXAMPLES, example


@pytest.fixture()
def common():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import _common

        yield _common
    finally:
        sys.path.remove(str(EXAMPLES))


CONFIGS = [
    {"split": "square", "k": 30, "seed": 0},
    {"split": "square", "k": 60, "seed": 1},
    {"split": "strip", "t": 60, "offset": 0, "seed": 0},
    {"split": "strip", "t": 67, "offset": 60, "seed": 0},
    {"split": "random", "seed": 2},
]


def test_only_keeps_the_matching_configurations_in_order(common):
    got = common.select(CONFIGS, "split == 'random' or (split == 'strip' and t >= 60)")
    assert got == [CONFIGS[2], CONFIGS[3], CONFIGS[4]]
    # a key a configuration lacks matches no comparison (the random split has no k)
    assert common.select(CONFIGS, "k >= 30") == CONFIGS[:2]
    assert common.select(CONFIGS, "seed in [1, 2]") == [CONFIGS[1], CONFIGS[4]]


def test_no_query_keeps_everything(common):
    assert common.select(CONFIGS, None) == CONFIGS and common.select(CONFIGS, "") == CONFIGS
    assert common.select([], "k > 1") == []


def test_a_bad_query_names_the_keys(common):
    with pytest.raises(SystemExit, match="--only 'k >'.*keys: split, k, seed"):
        common.select(CONFIGS, "k >")
    with pytest.raises(SystemExit, match="nosuch"):
        common.select(CONFIGS, "nosuch == 1")


def test_only_is_a_command_line_option(common):
    args = common.parser("x", "runs/x").parse_args(["--only", "k == 30"])
    assert args.only == "k == 30"


def test_an_example_offers_only_the_setups_it_has(common, capsys):
    ap = common.parser("x", "runs/x", setups=["library"])
    with pytest.raises(SystemExit):
        ap.parse_args(["--setup", "reference"])
    assert "invalid choice: 'reference'" in capsys.readouterr().err
    assert ap.parse_args([]).setup == "library"
    # A setup the example's table lacks is refused by name, not with a KeyError.
    args = common.parser("x", "runs/x").parse_args(["--setup", "reference"])
    with pytest.raises(SystemExit, match="--setup reference is not one this example has: library"):
        common.scale(args, {"library": {"paper": {}}})


def test_wall_time_to_grok_from_an_adaptive_history_with_a_pause():
    import pandas as pd

    with example("accelerators") as acc:
        time_to = acc.time_to
    # 40 ms per step; full rows every 50 steps stamped when computed; the four rows
    # between each pair backfilled (stamped 1 ms apart right after the later full row);
    # a 600 s pause (stop and resume) after step 300; test accuracy reaches 0.99 at 430,
    # a backfilled row, known when the full row at 450 was computed.
    rows = []
    for full in range(0, 1001, 50):
        t = 0.04 * full + (600.0 if full > 300 else 0.0)
        rows.append((full, t))
        rows += [(full - 50 + 10 * i, t + 0.001 * i) for i in range(1, 5) if full > 0]
    h = pd.DataFrame(sorted(rows), columns=["step", "clock"])
    h["test_acc"] = (h["step"] >= 430).astype(float)
    step, wall = time_to(h)
    assert step == 430
    assert wall == pytest.approx(0.04 * 450 + 0.002, abs=0.01)  # 18 s of training, not the pause
    h["test_acc"] = 0.5
    assert time_to(h) == (None, None)


def test_rows_per_run_merge_with_the_earlier_table_in_sweep_order(common, tmp_path):
    import pandas as pd

    pd.DataFrame({"run": ["b", "a", "c"]}).to_csv(tmp_path / "sweep.csv", index=False)
    assert common.write_run_rows([], tmp_path, "cmp.csv") is None and not (tmp_path / "cmp.csv").exists()
    pd.DataFrame({"run": ["a", "a", "z", "c", "c"], "measure": ["x", "y", "x", "x", "y"],
                  "value": [1.5, 2.5, 3.5, 4.5, 5.5]}).to_csv(tmp_path / "cmp.csv", index=False)
    fresh = [pd.DataFrame({"run": ["a", "a"], "measure": ["x", "y"], "value": [10.5, 20.5]}),
             pd.DataFrame({"run": ["b"], "measure": ["x"], "value": [30.5]})]
    got = common.write_run_rows(fresh, tmp_path, "cmp.csv")
    want = pd.DataFrame({"run": ["b", "a", "a", "c", "c"], "measure": ["x", "x", "y", "x", "y"],
                         "value": [30.5, 10.5, 20.5, 4.5, 5.5]})
    # a's rows are replaced, c's kept, z (no longer in sweep.csv) dropped; in sweep.csv's order
    pd.testing.assert_frame_equal(got, want)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cmp.csv"), want)
    # No new rows: the earlier table stays as it was.
    pd.testing.assert_frame_equal(common.write_run_rows([], tmp_path, "cmp.csv"), want)


def test_square_against_the_random_split_of_its_own_seed():
    import numpy as np
    import pandas as pd

    nan = np.nan
    rows = [  # split, k, seed, halfway_at, onset_at, u_acc, status
        ("random", nan, 0, 400, 200, 1.0, "done"),
        ("random", nan, 1, 300, nan, 1.0, "done"),
        ("square", 30, 0, 300, 250, 0.9, "done"),   # earlier by the half-way rule, later onset
        ("square", 30, 1, nan, nan, 0.5, "done"),   # never fired: later; onset: neither fired
        ("square", 40, 0, nan, 100, 0.6, "done"),   # onset earlier, half-way never
        ("square", 40, 1, 200, 50, 1.0, "failed"),  # failed runs are left out
        ("square", 40, 2, 100, 50, 0.8, "done"),    # no random split of seed 2: left out
        ("strip", nan, 0, 10, 10, 0.2, "done"),     # not a SQUARE
    ]
    table = pd.DataFrame(rows, columns=["split", "k", "seed", "halfway_at", "onset_at", "u_acc", "status"])
    with example("square_strip") as module:
        vs = module.square_vs_random(table)
    assert list(zip(vs["k"], vs["seed"])) == [(30, 0), (30, 1), (40, 0)]
    assert vs["halfway_at_random"].tolist() == [400, 300, 400]
    assert vs["earlier_halfway_at"].tolist() == [True, False, False]
    assert vs["earlier_onset_at"].isna().tolist() == [False, True, False]
    assert vs["earlier_onset_at"].fillna(False).tolist() == [False, False, True]


def test_only_never_runs_python(common, tmp_path, monkeypatch):
    # pandas' query resolved @name from _common's globals: this ran `touch`
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="--only .* is invalid: unexpected '@'"):
        common.select(CONFIGS, "@os.system('touch ran') == 0")
    with pytest.raises(SystemExit, match="is invalid"):
        common.select(CONFIGS, "k.__class__ == 1 or open('ran', 'w')")
    assert not (tmp_path / "ran").exists()


def test_only_matching_nothing_is_one_line_not_a_concat_error(common, tmp_path):
    args = common.parser("x", "runs/x").parse_args(["--only", "k > 1000"])
    with pytest.raises(SystemExit, match="--only 'k > 1000' matches none of the study's 5 configurations"):
        common.run_sweep([("", {}, CONFIGS)], tmp_path, args)
    assert list(tmp_path.iterdir()) == []


def test_plan_output_problems_are_one_line(common, tmp_path, capsys):
    def plan(path):
        args = common.parser("x", "runs/x").parse_args(["--plan", str(path)])
        return common.write_plan([("", {}, CONFIGS)], args)

    assert len(plan(tmp_path / "new" / "deeper" / "plan.csv")) == 5  # a missing folder is made
    with pytest.raises(SystemExit, match=r"^error: --plan .* is a directory"):
        plan(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match=r"^error: --plan .*file/plan.csv: (Not a directory|File exists)$"):
        plan(tmp_path / "file" / "plan.csv")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(SystemExit, match=r"^error: --plan .*: Permission denied"):
                plan(ro / "plan.csv")
        finally:
            ro.chmod(0o700)


def test_added_columns_replace_same_names_instead_of_doubling_them(common, tmp_path):
    import pandas as pd

    table = pd.DataFrame({"run": ["a", "b", "c"], "u_acc": [0.1, 0.2, 0.3], "seed": [0, 1, 2]}, index=[5, 7, 9])
    out = common.add_columns(table, [{"u_acc": 0.5, "fit_at": 10}, {}, {"u_acc": 0.7}])
    assert list(out.columns) == ["run", "u_acc", "seed", "fit_at"]  # replaced where it stood, new ones after
    assert out["u_acc"].tolist()[0::2] == [0.5, 0.7] and pd.isna(out["u_acc"][1])  # a failed run's row is empty
    assert out["fit_at"].isna().tolist() == [False, True, True] and table["u_acc"].tolist() == [0.1, 0.2, 0.3]
    out.to_csv(tmp_path / "t.csv", index=False)
    assert list(pd.read_csv(tmp_path / "t.csv").columns) == list(out.columns)  # no "u_acc.1" on reading back
    with pytest.raises(ValueError, match="2 rows of columns for a table of 3"):
        common.add_columns(table, [{}, {}])


@pytest.mark.parametrize("study", ["resnet_reference", "resnet_map", "accelerators"])
def test_a_study_whose_runs_never_batch_refuses_no_batch(study, capsys):
    """``--no-batch`` would be accepted and ignored: the ResNet and timing studies train run by run."""
    with example(study) as mod, pytest.raises(SystemExit):
        mod.main(["--no-batch", "--plan", "unused.csv"])
    assert "unrecognized arguments: --no-batch" in capsys.readouterr().err


def test_a_batching_study_offers_no_batch(common):
    args = common.parser("x", "runs/x").parse_args(["--no-batch"])
    assert common.sweep_kwargs(args)["batched"] is False
    assert common.sweep_kwargs(common.parser("x", "runs/x").parse_args([]))["batched"] is True
