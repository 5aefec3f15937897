"""The selection language of the studies' --only (grok_interp.selection): it picks the
right configurations, and nothing written in it reaches Python."""

from __future__ import annotations

import pytest

from grok_interp.errors import GrokInterpError
from grok_interp.selection import Selection, select

pytestmark = pytest.mark.portable

CONFIGS = [
    {"split": "square", "k": 30, "seed": 0},
    {"split": "square", "k": 60, "seed": 1},
    {"split": "strip", "t": 60, "offset": 0, "seed": 0},
    {"split": "strip", "t": 67, "offset": 60, "seed": 0, "frac": 0.5},
    {"split": "random", "seed": 2, "frac": 0.3, "grokfast": None, "perp": True},
]


@pytest.mark.parametrize("text, picked", [
    ("split == 'strip' and t >= 60", [2, 3]),
    ('split == "random" or k == 30', [0, 4]),
    ("not (split == 'square')", [2, 3, 4]),
    ("~(split == 'square') & seed == 0", [2, 3]),
    ("60 <= t < 67", [2]),
    ("seed in [1, 2]", [1, 4]),
    ("seed not in (0,)", [1, 4]),
    ("frac < 0.4", [4]),
    ("frac >= 5e-1", [3]),
    ("offset > -1", [2, 3]),
    ("grokfast == None", [4]),
    ("perp == True", [4]),
    ("k == 'x'", []),  # another type never equals
    ("t != 60", [3]),  # a missing key matches no comparison, != included
    ("True", [0, 1, 2, 3, 4]),
    ("(((seed == 0)))", [0, 2, 3]),
])
def test_selection_picks_the_matching_configurations(text, picked):
    assert select(CONFIGS, text) == [CONFIGS[i] for i in picked]


def test_no_expression_keeps_everything():
    assert select(CONFIGS, None) == CONFIGS and select(CONFIGS, "  ") == CONFIGS
    assert select([], "k > 1") == []


@pytest.mark.parametrize("text", [
    "@os.system('touch {marker}') == 0",
    "os.system('touch {marker}') == 0",
    "__import__('os').system('touch {marker}') == 0",
    "k.__class__.__init__.__globals__['os'].system('touch {marker}') == 0",
    "split == open('{marker}', 'w')",
    "seed == (lambda: open('{marker}', 'w'))()",
    "`k` == 1 or open('{marker}', 'w')",
    "k == 1; open('{marker}', 'w')",
    "seed in [open('{marker}', 'w')]",
    "[x for x in (open('{marker}', 'w'),)]",
])
def test_an_expression_cannot_run_code(text, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GrokInterpError, match="only="):
        select(CONFIGS, text.format(marker=marker))
    assert not marker.exists()


@pytest.mark.parametrize("text, why", [
    ("k >", "at the end"),
    ("k", "expected a comparison"),
    ("k - 1 > 0", "unexpected .-."),
    ("k-1 > 0", "no arithmetic"),
    ("t > 'a'", "cannot order"),
    ("(k == 1", "expected '\\)'"),
    ("seed in [k]", "a list holds only"),
    ("not " * 200 + "k == 1", "nested too deep"),
    ("k ** 2 == 4", "unexpected .\\*."),
    ("k == == 1", "expected a key name"),
])
def test_a_bad_expression_is_one_error_naming_the_parameter(text, why):
    with pytest.raises(GrokInterpError, match=why) as info:
        select(CONFIGS, text)
    assert info.value.param == "only" and "\n" not in str(info.value)


def test_an_unknown_key_is_refused_with_a_suggestion():
    with pytest.raises(GrokInterpError, match=r"'spilt' is not a key.*keys: split, k, seed.*did you mean 'split'"):
        select(CONFIGS, "spilt == 'strip'")


def test_a_selection_is_reusable_and_names_its_keys():
    sel = Selection("k >= 30 and seed == 1")
    assert sel.names == {"k", "seed"}
    assert [sel(c) for c in CONFIGS] == [False, True, False, False, False]
