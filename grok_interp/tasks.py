"""Prime-field tasks, their tokens, equivalence classes and train/test splits.

A :class:`Task` is an operation ``r(a, b) = f(a, b) mod p`` on the ``p x p`` grid of
operand pairs. Inputs are three tokens ``[a, b + offset, "="]``: with ``offset = 0`` both
operands share embeddings; with ``offset = d > 0`` the b-operands use tokens
``d .. d + p - 1``. The ``"="`` token is ``p + offset``, so ``d_vocab = p + offset + 1``.
Labels are the ``p`` residues.

A :class:`Split` assigns every valid pair to train or test. SQUARE and STRIP splits
force a region of the grid into the test set and then fill the training set with
``int(frac * p * p)`` pairs drawn (seeded) from the rest, as in Gu et al. (2025).

Example:
    >>> task = Task(p=5, op="add")
    >>> task.labels[2, 4].item()
    1
    >>> split = Split.square(task, k=1, frac=0.3, seed=0)
    >>> bool(split.forced_test[0, 1]), int(split.train_mask.sum())
    (True, 7)
"""

from __future__ import annotations

import inspect
import random as _random
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from ._validate import bad_value, check_choice, check_int, check_memory, check_open_unit, check_prime, check_seed

__all__ = ["OPERATIONS", "Task", "Split", "SPLIT_KINDS", "SHUFFLES"]


def _inverse_table(p: int) -> Tensor:
    """Multiplicative inverses mod p (entry 0 is 0 and unused)."""
    return torch.tensor([pow(b, p - 2, p) if b else 0 for b in range(p)], dtype=torch.int64)


# Each operation maps int64 tensors (a, b) and p to f(a, b) mod p, vectorised.
OPERATIONS: dict[str, Callable[[Tensor, Tensor, int], Tensor]] = {
    "add": lambda a, b, p: (a + b) % p,
    "subtract": lambda a, b, p: (a - b) % p,
    "multiply": lambda a, b, p: (a * b) % p,
    "divide": lambda a, b, p: (a * _inverse_table(p)[b]) % p,
    "square_sum": lambda a, b, p: ((a + b) ** 2) % p,
    "a2_ab_b2": lambda a, b, p: (a * a + a * b + b * b) % p,
    "a2_b2": lambda a, b, p: (a * a + b * b) % p,
    "a3_b3": lambda a, b, p: (a**3 + b**3) % p,
    "a3_ab_b3": lambda a, b, p: (a**3 + a * b + b**3) % p,
}
"""Named operations. ``divide`` is ``a * b^-1`` and excludes pairs with ``b = 0``."""


def _custom_labels(fn: Callable[..., Any], a: Tensor, b: Tensor, p: int) -> Tensor:
    """Evaluate a user callable, vectorised if it accepts tensors, else pair by pair.

    The values on the whole grid are checked once: they must be integers (a float is
    refused, never truncated) that fit int64; they are then taken mod ``p``.
    """
    name = "op"
    try:
        inspect.signature(fn).bind(0, 0)
    except TypeError:
        raise bad_value(name, getattr(fn, "__name__", fn), f"must take two arguments f(a, b); it takes "
                        f"{inspect.signature(fn)}") from None
    except ValueError:  # no signature to read (a builtin): calling it will tell
        pass
    try:
        out = torch.as_tensor(fn(a, b))
        vectorised = out.shape == a.shape
    except Exception:  # noqa: BLE001 - any failure means "not vectorised": fall back
        vectorised = False
    if vectorised:
        if out.dtype == torch.bool or out.dtype.is_floating_point or out.dtype.is_complex:
            raise bad_value(name, getattr(fn, "__name__", fn), f"must return integers; it returned {out.dtype} values")
        return out.to(torch.int64) % p
    values = []
    for x, y in zip(a.tolist(), b.tolist()):
        try:
            v = fn(x, y)
        except Exception as exc:  # noqa: BLE001 - the user's function failed: say where
            raise bad_value(name, getattr(fn, "__name__", fn),
                            f"f({x}, {y}) raised {type(exc).__name__}: {exc}") from None
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise bad_value(name, getattr(fn, "__name__", fn),
                            f"must return integers; f({x}, {y}) returned {v!r} ({type(v).__name__})")
        if not -(2**63) <= int(v) < 2**63:
            raise bad_value(name, getattr(fn, "__name__", fn), f"f({x}, {y}) = {v} does not fit a 64-bit integer")
        values.append(int(v))
    return torch.tensor(values, dtype=torch.int64) % p


@dataclass(frozen=True, eq=False)
class Task:
    """An operation on Z_p with its token layout.

    Args:
        p: A prime, at least 3.
        op: A name in :data:`OPERATIONS`, or a callable ``f(a, b) -> int`` (it may be
            called on int64 tensors of all pairs at once; otherwise pair by pair). The
            result is taken mod ``p``.
        offset: Operand offset ``d``: token of operand b is ``b + d``.
        labels_override: Only for restoring a saved run whose ``op`` was a callable:
            the ``(p, p)`` table of answers, -1 where a pair is excluded.
    """

    p: int
    op: str | Callable[..., Any] = "add"
    offset: int = 0
    labels_override: Tensor | None = field(default=None, repr=False)
    labels: Int[Tensor, "p p"] = field(init=False, repr=False)
    valid: Bool[Tensor, "p p"] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        p = check_prime("p", self.p)
        check_int("offset", self.offset, low=0)
        # the tables built here (the a and b grids, labels, validity) and the tokens a
        # run builds from them: about 56 bytes a pair, refused before any is allocated
        check_memory("p", p, 56 * p * p, f"a task of p * p = {p * p} pairs")
        if self.labels_override is not None:
            labels = torch.as_tensor(self.labels_override, dtype=torch.int64).clone()
            if labels.shape != (p, p):
                raise bad_value("labels_override", tuple(labels.shape), f"must have shape ({p}, {p})")
            valid = labels >= 0
        else:
            a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
            if callable(self.op):
                labels = _custom_labels(self.op, a.reshape(-1), b.reshape(-1), p).reshape(p, p)
                valid = torch.ones(p, p, dtype=torch.bool)
            else:
                check_choice("op", self.op, tuple(OPERATIONS) + ("<callable f(a, b)>",))
                valid = (b != 0) if self.op == "divide" else torch.ones(p, p, dtype=torch.bool)
                labels = OPERATIONS[self.op](a, b, p)
            labels = torch.where(valid, labels, torch.full_like(labels, -1))
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "valid", valid)

    # --- names and token layout -------------------------------------------------
    @property
    def op_name(self) -> str:
        """The operation's name (a callable's ``__name__``, prefixed ``custom:``)."""
        if callable(self.op):
            return "custom:" + getattr(self.op, "__name__", "f")
        return str(self.op)

    @property
    def is_custom(self) -> bool:
        """True when labels come from a user callable (or a saved table of one)."""
        return callable(self.op) or str(self.op).startswith("custom:")

    @property
    def eq_token(self) -> int:
        """Token id of ``"="``."""
        return self.p + self.offset

    @property
    def d_vocab(self) -> int:
        """Input vocabulary size: a-tokens, b-tokens (shifted by offset) and ``"="``."""
        return self.p + self.offset + 1

    @property
    def d_vocab_out(self) -> int:
        """Number of output classes: the p residues."""
        return self.p

    def operand_tokens(self, which: str = "a") -> Int[Tensor, " p"]:
        """Token ids of residues 0..p-1 as operand ``"a"`` or ``"b"``."""
        check_choice("which", which, ("a", "b"))
        return torch.arange(self.p) + (self.offset if which == "b" else 0)

    # --- pairs, tokens and classes ----------------------------------------------
    def all_pairs(self) -> Int[Tensor, "n 2"]:
        """Every valid ``(a, b)`` pair, in row-major grid order."""
        return self.valid.nonzero()

    def tokens(self, pairs: Int[Tensor, "n 2"]) -> Int[Tensor, "n 3"]:
        """Token sequences ``[a, b + offset, "="]`` for the given pairs."""
        pairs = torch.as_tensor(pairs, dtype=torch.int64)
        eq = torch.full((pairs.shape[0],), self.eq_token, dtype=torch.int64)
        return torch.stack([pairs[:, 0], pairs[:, 1] + self.offset, eq], dim=1)

    def answers(self, pairs: Int[Tensor, "n 2"]) -> Int[Tensor, " n"]:
        """Labels ``r(a, b)`` of the given pairs."""
        pairs = torch.as_tensor(pairs, dtype=torch.int64)
        return self.labels[pairs[:, 0], pairs[:, 1]]

    def equivalence_classes(self) -> dict[int, Int[Tensor, "m 2"]]:
        """Pairs grouped by answer: ``{r: pairs with r(a, b) = r}`` (every residue)."""
        return {r: (self.labels == r).nonzero() for r in range(self.p)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (a callable is stored by name; see ``labels_override``)."""
        return {"p": self.p, "op": self.op_name, "offset": self.offset}


SPLIT_KINDS = ("random", "square", "strip", "mask")

SHUFFLES = ("torch", "python")


def check_split_options(kind: str, p: int, *, k: int | None = None, t: int | None = None) -> None:
    """The split options' one check (configs and :meth:`Split.build` call it): a known
    kind; ``k`` exactly for ``square`` and ``t`` exactly for ``strip``, in ``[0, p-1]``."""
    check_choice("split", kind, SPLIT_KINDS)
    for name, value, owner in (("k", k, "square"), ("t", t, "strip")):
        if value is not None:
            check_int(name, value, low=0, high=p - 1)
            if kind != owner:
                raise bad_value(name, value, f"only applies to split={owner!r} (split is {kind!r})")
        elif kind == owner:
            raise bad_value(name, None, f"split={owner!r} needs {name} in [0, {p - 1}]")
"""How a split orders its candidate pairs before taking the training set.

* ``torch``: ``torch.randperm`` with a ``torch.Generator`` seeded by the split's seed
  (the library default).
* ``python``: Python's ``random.Random(seed).shuffle`` of the candidate pairs listed in
  row-major grid order, then the first ``int(frac * p * p)`` train. This is how the
  paper's reference scripts (repository Qihuai27/Grokking-Insight, ``gen_train_test``
  in ``transformer/rec.py``, ``str.py``, ``base.py`` and ``MLP/*.py``) choose their
  training pairs after ``random.seed(seed)``, so with their seed (0 in ``rec.py`` and
  ``str.py``, 11 in ``base.py``) the same pairs train. The choice does not depend on the
  operand offset: the scripts' pair tuples carry ``b + d`` but keep the grid order.
"""


@dataclass(frozen=True, eq=False)
class Split:
    """A train/test partition of a task's valid pairs.

    Build one with :meth:`random`, :meth:`square`, :meth:`strip` or :meth:`from_mask`.
    ``forced_test`` is the region forced into the test set (empty for random splits);
    ``train_mask | test_mask == task.valid`` and the two never overlap.
    """

    task: Task
    kind: str
    frac: float
    seed: int
    train_mask: Bool[Tensor, "p p"] = field(repr=False)
    forced_test: Bool[Tensor, "p p"] = field(repr=False)
    k: int | None = None
    t: int | None = None
    shuffle: str = "torch"

    @property
    def test_mask(self) -> Bool[Tensor, "p p"]:
        """Valid pairs not in the training set."""
        return self.task.valid & ~self.train_mask

    @property
    def train_pairs(self) -> Int[Tensor, "n_train 2"]:
        """Training pairs in row-major grid order."""
        return self.train_mask.nonzero()

    @property
    def test_pairs(self) -> Int[Tensor, "n_test 2"]:
        """Test pairs in row-major grid order."""
        return self.test_mask.nonzero()

    @property
    def n_train(self) -> int:
        return int(self.train_mask.sum())

    @property
    def n_test(self) -> int:
        return int(self.test_mask.sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (a custom mask itself is saved beside it by runs)."""
        return {"kind": self.kind, "frac": self.frac, "seed": self.seed, "k": self.k, "t": self.t,
                "shuffle": self.shuffle}

    # --- constructors ----------------------------------------------------------
    @classmethod
    def random(cls, task: Task, frac: float = 0.3, seed: int = 0, shuffle: str = "torch") -> "Split":
        """A fraction ``frac`` of all valid pairs, shuffled with ``seed``, trains.

        ``shuffle`` is one of :data:`SHUFFLES` (``python`` replays the reference code).
        """
        frac = check_open_unit("frac", frac)
        forced = torch.zeros(task.p, task.p, dtype=torch.bool)
        n_train = int(frac * int(task.valid.sum()))
        return cls._fill(task, "random", frac, seed, forced, n_train, shuffle=shuffle)

    @classmethod
    def square(cls, task: Task, k: int, frac: float = 0.3, seed: int = 0, shuffle: str = "torch") -> "Split":
        """SQUARE(k): pairs with ``a <= k`` and ``b <= k`` are forced into the test set."""
        frac = check_open_unit("frac", frac)
        check_int("k", k, low=0, high=task.p - 1)
        idx = torch.arange(task.p)
        forced = (idx[:, None] <= k) & (idx[None, :] <= k)
        return cls._fill(task, "square", frac, seed, forced, int(frac * task.p * task.p), k=k, shuffle=shuffle)

    @classmethod
    def strip(cls, task: Task, t: int, frac: float = 0.3, seed: int = 0, shuffle: str = "torch") -> "Split":
        """STRIP(t): pairs with ``a <= t`` (any b) are forced into the test set."""
        frac = check_open_unit("frac", frac)
        check_int("t", t, low=0, high=task.p - 1)
        forced = (torch.arange(task.p)[:, None] <= t).expand(task.p, task.p).clone()
        return cls._fill(task, "strip", frac, seed, forced, int(frac * task.p * task.p), t=t, shuffle=shuffle)

    @classmethod
    def from_mask(
        cls, task: Task, forced_test: Bool[Tensor, "p p"], frac: float = 0.3, seed: int = 0, shuffle: str = "torch"
    ) -> "Split":
        """A custom forced-test region (boolean ``(p, p)`` mask), filled like SQUARE."""
        frac = check_open_unit("frac", frac)
        forced = torch.as_tensor(forced_test)
        if forced.dtype != torch.bool or forced.shape != (task.p, task.p):
            raise bad_value(
                "mask", f"{forced.dtype} {tuple(forced.shape)}", f"must be a bool tensor of shape ({task.p}, {task.p})"
            )
        return cls._fill(task, "mask", frac, seed, forced.clone(), int(frac * task.p * task.p), shuffle=shuffle)

    @classmethod
    def _fill(
        cls,
        task: Task,
        kind: str,
        frac: float,
        seed: int,
        forced: Tensor,
        n_train: int,
        k: int | None = None,
        t: int | None = None,
        shuffle: str = "torch",
    ) -> "Split":
        """Draw ``n_train`` pairs (or all, if fewer) from valid pairs outside ``forced``.

        Candidates are listed in row-major grid order, then put in a seeded random order
        (``shuffle``, see :data:`SHUFFLES`); the first ``n_train`` train.
        """
        check_seed("seed", seed)
        check_choice("shuffle", shuffle, SHUFFLES)
        candidates = (task.valid & ~forced).reshape(-1).nonzero().squeeze(1)
        if shuffle == "python":
            order = list(range(len(candidates)))
            _random.Random(seed).shuffle(order)  # the same stream as random.seed(seed); random.shuffle
            perm = torch.tensor(order, dtype=torch.int64)
        else:
            perm = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))
        chosen = candidates[perm[: min(n_train, len(candidates))]]
        train = torch.zeros(task.p * task.p, dtype=torch.bool)
        train[chosen] = True
        train = train.reshape(task.p, task.p)
        desc = f"{kind} split (frac={frac}" + (f", k={k}" if k is not None else "") + (
            f", t={t}" if t is not None else ""
        ) + ")"
        if not train.any():
            raise bad_value("split", desc, "leaves no training pair; raise frac or shrink the forced region")
        if not (task.valid & ~train).any():
            raise bad_value("split", desc, "leaves no test pair; lower frac")
        return cls(
            task=task, kind=kind, frac=frac, seed=seed, train_mask=train, forced_test=forced, k=k, t=t, shuffle=shuffle
        )

    @classmethod
    def build(
        cls,
        task: Task,
        kind: str = "random",
        frac: float = 0.3,
        seed: int = 0,
        k: int | None = None,
        t: int | None = None,
        mask: Tensor | None = None,
        shuffle: str = "torch",
    ) -> "Split":
        """Build a split from its kind name (the form configs and the CLI use)."""
        check_split_options(kind, task.p, k=k, t=t)
        if kind == "random":
            return cls.random(task, frac, seed, shuffle=shuffle)
        if kind == "square":
            return cls.square(task, k, frac, seed, shuffle=shuffle)
        if kind == "strip":
            return cls.strip(task, t, frac, seed, shuffle=shuffle)
        if mask is None:
            raise bad_value("mask", mask, "a mask split needs a bool (p, p) forced-test mask")
        return cls.from_mask(task, mask, frac, seed, shuffle=shuffle)

    @classmethod
    def from_config(cls, task: Task, data: Any, mask: Tensor | None = None) -> "Split":
        """The split a :class:`~grok_interp.config.DataConfig` describes, every field honoured.

        Args:
            task: The config's task.
            data: A ``DataConfig`` (``split``, ``frac``, ``data_seed``, ``k``, ``t``,
                ``shuffle``).
            mask: The forced-test mask of a ``mask`` split.
        """
        return cls.build(
            task, data.split, data.frac, data.data_seed, k=data.k, t=data.t, mask=mask,
            shuffle=getattr(data, "shuffle", "torch"),
        )
