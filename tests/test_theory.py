"""Theory tools: coverage, torus distances, ceilings and the alpha bound, on hand-counted cases."""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
import torch

import grok_interp.theory as theory
from grok_interp import Split, Task
from grok_interp.theory import (
    alpha_bound,
    ceiling_curve,
    class_coverage,
    coverage_ceiling,
    covered_per_point,
    nearest_train_distance,
    predicted_ceiling,
    symmetry_ceiling,
    torus_distance,
)

pytestmark = pytest.mark.portable


def mask_split(task: Task, train_pairs) -> Split:
    """A split whose training set is exactly ``train_pairs``."""
    train = torch.zeros(task.p, task.p, dtype=torch.bool)
    for a, b in train_pairs:
        train[a, b] = True
    return Split(task=task, kind="mask", frac=0.1, seed=0, train_mask=train, forced_test=~train)


def test_doctests():
    assert doctest.testmod(theory, raise_on_error=True).failed == 0


def test_single_training_pair_hand_counted():
    # p=5, a+b, only (0, 0) trains. Class 0's test pairs (1,4),(2,3),(3,2),(4,1) lie at
    # torus distances 1+1, 2+2, 2+2, 1+1; the other 4 classes have no training pair.
    split = mask_split(Task(p=5, op="add"), [(0, 0)])
    d = nearest_train_distance(split)
    assert d[1, 4] == 2 and d[4, 1] == 2 and d[2, 3] == 4 and d[3, 2] == 4
    assert torch.isnan(d[0, 0])
    assert torch.isinf(d[0, 1]) and torch.isinf(d[2, 2])
    cov = class_coverage(split)
    assert cov.loc[0, "n_train"] == 1 and cov.loc[0, "n_test"] == 4
    assert (cov.loc[1:, "n_train"] == 0).all() and (cov.loc[1:, "n_test"] == 5).all()
    assert coverage_ceiling(split) == pytest.approx(4 / 24)
    curve = ceiling_curve(split).set_index("radius")["ceiling"]
    assert list(curve.index) == [0, 1, 2, 3, 4]  # diameter 2 * (5 // 2) = 4
    assert curve[0] == 0 and curve[1] == 0
    assert curve[2] == pytest.approx(2 / 24) and curve[3] == pytest.approx(2 / 24)
    assert curve[4] == pytest.approx(4 / 24) == coverage_ceiling(split)
    assert predicted_ceiling(split, 2) == pytest.approx(2 / 24)
    assert predicted_ceiling(split) == pytest.approx(4 / 24)


def test_strip_distance_hand_counted():
    # p=7, a+b, every pair with a in {5, 6} trains (a STRIP with t=4 filled completely).
    # A test pair (a, b) reaches its class only along (a+i, b-i), at distance 2*|i| on
    # the torus: a=0 -> nearest a' is 6 (|i| = 1): 2; a=1 -> 2*2; a=2 -> 2*3 (a'=5 or 6
    # at torus offset 3); a=3 -> a'=5: 4; a=4 -> a'=5: 2.
    task = Task(p=7, op="add")
    split = mask_split(task, [(a, b) for a in (5, 6) for b in range(7)])
    d = nearest_train_distance(split)
    expected = {0: 2, 1: 4, 2: 6, 3: 4, 4: 2}
    for a, want in expected.items():
        assert torch.all(d[a] == want), (a, d[a])
    # Every class is covered, so the ceiling at infinite radius is 1 ...
    assert coverage_ceiling(split) == 1.0
    # ... while within r=2 only rows a=0 and a=4 (14 of 35 test pairs) are answerable.
    assert predicted_ceiling(split, 2) == pytest.approx(14 / 35)
    assert predicted_ceiling(split, 5) == pytest.approx(28 / 35)


def test_distance_matches_brute_force_on_random_split():
    task = Task(p=11, op="a2_ab_b2")
    split = Split.random(task, frac=0.2, seed=3)
    d = nearest_train_distance(split)
    labels = task.labels
    train = [(a, b) for a in range(11) for b in range(11) if split.train_mask[a, b]]

    def tdist(x, y):
        return sum(min(abs(u - v), 11 - abs(u - v)) for u, v in zip(x, y))

    for a, b in itertools.product(range(11), range(11)):
        if split.train_mask[a, b]:
            assert math.isnan(d[a, b])
            continue
        same = [tdist((a, b), t) for t in train if labels[t] == labels[a, b]]
        assert d[a, b] == (min(same) if same else math.inf)


def test_curve_is_monotone_and_ends_at_coverage():
    task = Task(p=13, op="a2_ab_b2")  # non-isomorphic classes: uneven class sizes
    split = Split.square(task, k=5, frac=0.3, seed=1)
    curve = ceiling_curve(split)
    assert np.all(np.diff(curve["ceiling"].to_numpy()) >= 0)
    assert curve["ceiling"].iloc[-1] == pytest.approx(coverage_ceiling(split))
    sub = ceiling_curve(split, radii=[3, 0])
    assert list(sub["radius"]) == [3, 0]
    assert sub["ceiling"].iloc[0] == pytest.approx(curve.set_index("radius").loc[3, "ceiling"])


def test_generic_labels_form_matches_split_form():
    task = Task(p=7, op="multiply")
    split = Split.strip(task, t=2, frac=0.3, seed=0)
    a = class_coverage(split)
    b = class_coverage(task.labels.numpy(), split.train_mask.numpy())
    assert a.equals(b)
    assert coverage_ceiling(task.labels, split.train_mask) == coverage_ceiling(split)


def test_generic_labels_hand_counted_with_test_mask_and_exclusions():
    labels = np.array([0, 0, 1, 1, 2, -1])
    train = np.array([True, False, False, False, True, False])
    test = np.array([False, True, True, False, False, True])  # label -1 is excluded anyway
    cov = class_coverage(labels, train, test)
    assert cov.to_dict("index") == {
        0: {"n_train": 1, "n_test": 1, "covered": True},
        1: {"n_train": 0, "n_test": 1, "covered": False},
        2: {"n_train": 1, "n_test": 0, "covered": True},
    }
    assert coverage_ceiling(labels, train, test) == 0.5


@pytest.mark.parametrize(
    "args, match",
    [
        (([0, 1], None), "train_mask"),
        (([0, 1], [True]), "train_mask"),
        (([0.5, 1.0], [True, False]), "labels"),
        (([0, 1], [True, False], [True, False]), "test_mask"),
    ],
)
def test_bad_generic_input(args, match):
    with pytest.raises(ValueError, match=match):
        class_coverage(*args)


def test_torus_distance_wraps():
    d = torus_distance(torch.tensor([[0, 0]]), torch.tensor([[6, 6], [3, 4], [0, 0]]), 7)
    assert d.tolist() == [[2, 3 + 3, 0]]


@pytest.mark.parametrize("r, expected", [(0, 1), (1, 1), (2, 3), (3, 3), (4, 5), (10, 11)])
def test_covered_per_point_for_addition(r, expected):
    # a+b: same-class neighbours (a+i, b-i) sit at torus distance 2|i|.
    assert covered_per_point(Task(p=13, op="add"), r) == expected


def test_covered_per_point_counts_whole_class_at_the_diameter():
    task = Task(p=7, op="a2_ab_b2")
    sizes = torch.bincount(task.labels.reshape(-1), minlength=7).double()
    # At the diameter every pair reaches its whole class: C = mean class size seen by a pair.
    assert covered_per_point(task, 6) == pytest.approx(float((sizes**2).sum() / 49))


def test_alpha_bound():
    assert alpha_bound(97, 30) == pytest.approx(2 * math.log(97) / 30)
    assert alpha_bound(113, 2 * math.log(113)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="C="):
        alpha_bound(97, 0)


def test_nearest_distance_needs_a_split():
    with pytest.raises(ValueError, match="split"):
        nearest_train_distance(torch.zeros(5, 5))


def test_symmetry_ceiling_hand_counted():
    # p=5, a+b, training pairs (0, 1), (2, 3), (4, 4). Test pairs whose transpose trains:
    # (1, 0) and (3, 2) -> 2 of 22. (4, 4) is its own transpose and trains itself.
    split = mask_split(Task(p=5, op="add"), [(0, 1), (2, 3), (4, 4)])
    assert symmetry_ceiling(split) == pytest.approx(2 / 22)
    covered = theory.symmetry_covered(split)
    assert sorted(map(tuple, split.test_pairs[covered].tolist())) == [(1, 0), (3, 2)]
    # Negation sends a+b to -(a+b): the same class only when a+b = 0. Of the training
    # pairs only (2, 3) has a+b = 0, so only the test pair (3, 2) = -(2, 3) counts.
    assert symmetry_ceiling(split, ["negate"]) == pytest.approx(1 / 22)
    # A brute-force count with several maps on a^2+b^2 (negating one operand keeps the class).
    task = Task(p=7, op="a2_b2")
    split = Split.random(task, frac=0.3, seed=2)
    tr, lab = split.train_mask, task.labels
    maps = ["transpose", "negate", lambda a, b, p: (a, (-b) % p)]
    want = [
        any(tr[x, y] and lab[x, y] == lab[a, b] for x, y in ((b, a), ((-a) % 7, (-b) % 7), (a, (-b) % 7)))
        for a, b in split.test_pairs.tolist()
    ]
    assert symmetry_ceiling(split, maps) == pytest.approx(sum(want) / len(want))
    assert theory.symmetry_covered(split, maps).tolist() == want
    with pytest.raises(ValueError, match="maps="):
        symmetry_ceiling(split, ["rotate"])


def test_token_transpose_follows_the_operand_offset():
    # p=5, a+b. With offset 0 the token transpose is the transpose.
    plain = mask_split(Task(p=5, op="add"), [(0, 1), (2, 3), (4, 4)])
    assert theory.symmetry_covered(plain, ["token_transpose"]).tolist() == theory.symmetry_covered(plain).tolist()
    # With offset d = 2 the pair (a, b) is tokens (a, b + 2); the pair with the same
    # tokens swapped is (b + 2, a - 2), inside the grid only for b <= 2 and a >= 2.
    # Training pairs (3, 0) [tokens 3, 2] and (4, 2) [tokens 4, 4]: the test pair (2, 1)
    # [tokens 2, 3] is (3, 0) swapped, with the same answer 3 = 3; (4, 2) is its own image.
    # The plain transpose would instead count (0, 3) and (2, 4).
    task = Task(p=5, op="add", offset=2)
    split = mask_split(task, [(3, 0), (4, 2)])
    covered = theory.symmetry_covered(split, ["token_transpose"])
    assert sorted(map(tuple, split.test_pairs[covered].tolist())) == [(2, 1)]
    assert sorted(map(tuple, split.test_pairs[theory.symmetry_covered(split)].tolist())) == [(0, 3), (2, 4)]
    # Brute force at p = 11, d = 3, random split: same tokens, other order, same answer.
    task = Task(p=11, op="add", offset=3)
    split = Split.random(task, frac=0.4, seed=1)
    tr, lab, d = split.train_mask, task.labels, 3
    want = [0 <= b + d < 11 and 0 <= a - d < 11 and bool(tr[b + d, a - d]) and lab[b + d, a - d] == lab[a, b]
            for a, b in split.test_pairs.tolist()]
    assert theory.symmetry_covered(split, ["token_transpose"]).tolist() == want
