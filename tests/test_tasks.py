"""Tasks, tokens, equivalence classes and splits, against direct computation."""

import random

import pytest
import torch

import grok_interp as g
from grok_interp import Split, Task
from grok_interp.tasks import OPERATIONS

FORMULAS = {
    "add": lambda a, b, p: (a + b) % p,
    "subtract": lambda a, b, p: (a - b) % p,
    "multiply": lambda a, b, p: (a * b) % p,
    "divide": lambda a, b, p: (a * pow(b, p - 2, p)) % p,
    "square_sum": lambda a, b, p: (a + b) ** 2 % p,
    "a2_ab_b2": lambda a, b, p: (a * a + a * b + b * b) % p,
    "a2_b2": lambda a, b, p: (a * a + b * b) % p,
    "a3_b3": lambda a, b, p: (a**3 + b**3) % p,
    "a3_ab_b3": lambda a, b, p: (a**3 + a * b + b**3) % p,
}


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_every_operation_matches_its_formula(op):
    p = 11
    task = Task(p=p, op=op)
    for a in range(p):
        for b in range(p):
            if op == "divide" and b == 0:
                assert task.labels[a, b] == -1 and not task.valid[a, b]
            else:
                assert task.labels[a, b] == FORMULAS[op](a, b, p), (a, b)


def test_divide_inverts_multiply():
    task = Task(p=13, op="divide")
    pairs = task.all_pairs()
    assert len(pairs) == 13 * 12
    assert torch.equal((task.answers(pairs) * pairs[:, 1]) % 13, pairs[:, 0])


def test_custom_callable_vectorised_and_pairwise_agree():
    vec = Task(p=7, op=lambda a, b: a * a - 3 * b)
    calls = []

    def scalar_only(a, b):
        calls.append(1)
        return int(a) * int(a) - 3 * int(b)  # int() on a 49-element tensor raises: falls back

    pairwise = Task(p=7, op=scalar_only)
    assert torch.equal(vec.labels, pairwise.labels)
    assert vec.labels[2, 5] == (4 - 15) % 7
    assert pairwise.op_name == "custom:scalar_only"


def test_tokens_and_vocabulary_with_offset():
    task = Task(p=5, op="add", offset=3)
    assert task.d_vocab == 9 and task.eq_token == 8 and task.d_vocab_out == 5
    toks = task.tokens(torch.tensor([[1, 4], [0, 0]]))
    assert toks.tolist() == [[1, 7, 8], [0, 3, 8]]
    assert task.operand_tokens("b").tolist() == [3, 4, 5, 6, 7]


def test_equivalence_classes_partition_the_grid():
    task = Task(p=7, op="a2_ab_b2")
    classes = task.equivalence_classes()
    assert sum(len(v) for v in classes.values()) == 49
    for r, pairs in classes.items():
        assert (task.answers(pairs) == r).all()


def test_random_split_size_seed_and_partition():
    task = Task(p=23)
    s1, s2, s3 = (Split.random(task, 0.3, seed) for seed in (1, 1, 2))
    assert s1.n_train == int(0.3 * 23 * 23)
    assert torch.equal(s1.train_mask, s2.train_mask)
    assert not torch.equal(s1.train_mask, s3.train_mask)
    assert not (s1.train_mask & s1.test_mask).any()
    assert ((s1.train_mask | s1.test_mask) == task.valid).all()
    assert not s1.forced_test.any()


def test_random_split_of_divide_uses_valid_pairs_only():
    task = Task(p=11, op="divide")
    split = Split.random(task, 0.5, 0)
    assert split.n_train == int(0.5 * 110)
    assert not split.train_mask[:, 0].any() and not split.test_mask[:, 0].any()


def test_square_split_forces_the_square_into_test():
    task = Task(p=23)
    split = Split.square(task, k=5, frac=0.3, seed=0)
    assert split.forced_test.sum() == 36
    assert not (split.train_mask & split.forced_test).any()
    assert split.test_mask[:6, :6].all()
    assert split.n_train == int(0.3 * 23 * 23)


def test_strip_split_trains_on_everything_left_when_too_little_remains():
    task = Task(p=11)
    split = Split.strip(task, t=8, frac=0.3, seed=0)  # 2 rows = 22 pairs left, int(0.3*121) = 36
    assert split.n_train == 22
    assert split.train_mask[9:].all() and not split.train_mask[:9].any()


def test_custom_mask_split():
    task = Task(p=7)
    mask = torch.zeros(7, 7, dtype=torch.bool)
    mask[::2, ::2] = True
    split = Split.from_mask(task, mask, frac=0.4, seed=3)
    assert split.kind == "mask" and torch.equal(split.forced_test, mask)
    assert not (split.train_mask & mask).any()


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: Task(p=12), "p="),
        (lambda: Task(p=2), "p="),
        (lambda: Task(p=7, op="power"), "op="),
        (lambda: Split.random(Task(p=7), 0.0), "frac="),
        (lambda: Split.random(Task(p=7), 1.0), "frac="),
        (lambda: Split.square(Task(p=7), k=7), "k="),
        (lambda: Split.strip(Task(p=7), t=-1), "t="),
        (lambda: Split.strip(Task(p=7), t=6, frac=0.3), "split="),
        (lambda: Split.from_mask(Task(p=7), torch.zeros(3, 3, dtype=torch.bool)), "mask="),
    ],
)
def test_bad_input_names_the_parameter(make, name):
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value).startswith(name)


# --- the reference code's training pairs ------------------------------------------


def _reference_train_pairs(p: int, d: int, d_vocab: int, kind: str, size: int, frac: float, seed: int):
    """The training pairs of the reference scripts' ``gen_train_test``, written out
    independently (Qihuai27/Grokking-Insight: rec.py SQUARE, str.py STRIP, base.py random):
    tuples ``(a, b + d, "=")`` listed a-major, the forced region removed (order kept), the
    global ``random.seed(seed); random.shuffle``, then the first ``int(frac * p * p)``.
    Returns the ``(a, b)`` pairs."""
    pairs = [(i, j + d, d_vocab - 1) for i in range(p) for j in range(p)]
    if kind == "square":
        forced = {(i, j + d, d_vocab - 1) for i in range(size + 1) for j in range(size + 1)}
    elif kind == "strip":
        forced = {(i, j + d, d_vocab - 1) for i in range(size + 1) for j in range(p)}
    else:
        forced = set()
    remaining = [x for x in pairs if x not in forced]
    state = random.getstate()
    try:
        random.seed(seed)
        random.shuffle(remaining)
    finally:
        random.setstate(state)
    return {(a, b - d) for a, b, _ in remaining[: int(frac * len(pairs))]}


@pytest.mark.parametrize(
    "kind, size, frac, seed, offset, d_vocab",
    [
        ("square", 30, 0.3, 0, 0, 98),  # transformer/rec.py defaults
        ("square", 60, 0.3, 0, 0, 98),
        ("strip", 40, 0.3, 0, 60, 170),  # transformer/str.py: d = 60, "=" is token 169
        ("strip", 67, 0.3, 0, 60, 170),  # too few pairs left: all of them train
        ("random", None, 0.5, 11, 0, 98),  # transformer/base.py
        ("random", None, 0.3, 0, 0, 98),
    ],
)
def test_python_shuffle_replays_the_reference_training_pairs(kind, size, frac, seed, offset, d_vocab):
    p = 97
    task = g.Task(p, offset=offset)
    split = g.Split.build(task, kind, frac, seed, k=size if kind == "square" else None,
                          t=size if kind == "strip" else None, shuffle="python")
    ours = {tuple(x) for x in split.train_pairs.tolist()}
    assert ours == _reference_train_pairs(p, offset, d_vocab, kind, size, frac, seed)
    assert split.shuffle == "python" and split.to_dict()["shuffle"] == "python"
    # The torch shuffle (default) picks other pairs of the same count (the same ones only
    # when every pair outside the forced region trains, as at STRIP 67).
    default = g.Split.build(task, kind, frac, seed, k=split.k, t=split.t)
    assert default.n_train == split.n_train
    everything_left_trains = split.n_train == int((task.valid & ~split.forced_test).sum())
    assert torch.equal(default.train_mask, split.train_mask) == everything_left_trains


def test_python_shuffle_does_not_depend_on_the_offset():
    a = g.Split.strip(g.Task(23), t=5, frac=0.3, seed=0, shuffle="python")
    b = g.Split.strip(g.Task(23, offset=9), t=5, frac=0.3, seed=0, shuffle="python")
    assert torch.equal(a.train_mask, b.train_mask)


def test_split_from_config_honours_shuffle():
    d = g.DataConfig(p=23, split="square", k=4, frac=0.3, data_seed=0, shuffle="python")
    split = g.Split.from_config(g.Task(23), d)
    assert torch.equal(split.train_mask, g.Split.square(g.Task(23), 4, 0.3, 0, shuffle="python").train_mask)
    with pytest.raises(ValueError, match="shuffle"):
        g.DataConfig(shuffle="numpy")
    with pytest.raises(ValueError, match="shuffle"):
        g.Split.random(g.Task(7), shuffle="numpy")


@pytest.mark.parametrize("op, words", [
    (lambda a: a, r"must take two arguments f\(a, b\); it takes \(a\)"),
    (lambda a, b, c: a, r"must take two arguments"),
    (lambda a, b: a // (b - b), r"f\(0, 0\) raised ZeroDivisionError"),
])
def test_a_callable_that_cannot_make_the_table_is_one_error_naming_op(op, words):
    with pytest.raises(g.GrokInterpError, match=r"^op=.* is invalid: " + words):
        g.Task(5, op=op)
