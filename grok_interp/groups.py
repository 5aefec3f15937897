"""Finite groups as tasks: multiplication tables, real irreducible representations,
and the task ``r(a, b) = a * b`` on the ``|G| x |G|`` grid of element pairs.

A :class:`Group` is its multiplication table ``table[g, h] = index of g h`` over elements
``0 .. n-1`` (element 0 need not be the identity). Built-ins (:func:`group`):

* ``C<n>``, the cyclic group Z_n: element ``i`` is the residue ``i``, ``table = (i + j) mod n``,
  so :func:`group_task` of ``C<p>`` has the labels of ``Task(p, "add")``;
* ``D<n>``, the dihedral group of order ``2n`` (symmetries of the regular n-gon): element
  ``i + n j`` is ``r^i s^j`` with ``s r s = r^-1``, so ``r^i s^j r^k s^l = r^(i + (-1)^j k) s^(j + l)``;
* ``S<n>``, the symmetric group: the permutations of ``0 .. n-1`` in lexicographic order
  (element 0 is the identity), ``(g h)(x) = g(h(x))`` (apply ``h`` first), as in Power
  et al.'s S5 task (openai/grok ``grok/data.py`` composes permutations the same way).

Irreducible representations (:meth:`Group.irreps`) are real orthogonal matrices
``rho(g)`` (``d x d``): irreducible over the reals. For ``C_n`` and ``D_n`` they are built
by formula (``C_n``: the trivial one, the sign ``(-1)^g`` when n is even, and the
rotations ``[[cos w g, -sin w g], [sin w g, cos w g]]``, ``w = 2 pi k / n``, named
``k<k>``; ``D_n``: the 1-D characters and ``rho_k(r^i s^j) = R(2 pi k i / n) diag(1, -1)^j``).
Any other group (``S_n``, a user's table) is decomposed numerically: ``H = sum_g P_g M P_g^T``
(``P_g`` the left-regular permutation matrices, ``M`` a seeded random symmetric matrix)
commutes with every ``P_g``, so each eigenspace of ``H`` is invariant; generically each is
one irreducible copy; ``rho(g) = V^T P_g V`` on an eigenspace ``V``, one copy per character
kept. The result is checked (homomorphism, orthogonality, ``sum_rho d^2 / e_rho = |G|``
with ``e_rho = <chi, chi>`` the Frobenius-Schur type: 1 real, 2 complex, 4 quaternionic)
before it is returned. A complex irreducible representation and its conjugate appear
as one real representation of twice the dimension (``e = 2``): the cyclic group's
``k<k>`` is ``e^{+i w g}`` and ``e^{-i w g}`` together, i.e. the Fourier frequency ``k``.

Example:
    >>> G = group("D5")
    >>> G.order, [r.dim for r in G.irreps()]
    (10, [1, 1, 2, 2])
    >>> task = group_task("C7")
    >>> bool((task.labels == Task(7, "add").labels).all())
    True
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ._validate import bad_value, check_int
from .tasks import Split, Task

__all__ = [
    "Group",
    "Irrep",
    "group",
    "cyclic",
    "dihedral",
    "symmetric",
    "GroupTask",
    "group_task",
    "build_task",
    "check_group_op",
    "is_group_op",
    "word_ball_mask",
    "subgroup_mask",
    "GROUP_NAMES",
]

GROUP_NAMES = ("C<n>", "D<n>", "S<n>")
"""Built-in group names: cyclic ``C<n>`` (n >= 2), dihedral ``D<n>`` (n >= 3, order 2n),
symmetric ``S<n>`` (2 <= n <= 6)."""

_MAX_ORDER = 1024  # associativity is checked in O(n^3)


@dataclass(frozen=True)
class Irrep:
    """A real irreducible representation: ``matrices[g]`` is the orthogonal ``rho(g)``.

    Attributes:
        name: ``trivial``, ``sign``, ``k<k>`` (cyclic), ``rho<k>`` (dihedral 2-D), or
            ``<d><letter>`` (numerical decomposition: dimension and a letter).
        matrices: ``(n, d, d)`` float64.
        kind: Frobenius-Schur type ``e = <chi, chi>``: 1 (real), 2 (complex), 4 (quaternionic).
    """

    name: str
    matrices: Float[Tensor, "n d d"] = field(repr=False)
    kind: int = 1

    @property
    def dim(self) -> int:
        return int(self.matrices.shape[1])

    @property
    def character(self) -> Float[Tensor, " n"]:
        """``chi(g) = tr rho(g)``."""
        return self.matrices.diagonal(dim1=1, dim2=2).sum(-1)


class Group:
    """A finite group given by its multiplication table.

    Args:
        table: ``(n, n)`` integers, ``table[g, h]`` the index of the product ``g h``.
            Checked: every row and column is a permutation (a Latin square), an identity
            exists, and the product is associative.
        name: A name (built-ins: ``C<n>``, ``D<n>``, ``S<n>``).
        generators: Element indices generating the group (for the word metric);
            default: a greedy generating set.
        elements: Optional labels of the elements (e.g. permutation tuples).
    """

    def __init__(self, table: Any, name: str = "table", generators: list[int] | None = None,
                 elements: list[Any] | None = None, _irreps: Any = None) -> None:
        t = torch.as_tensor(np.asarray(table))
        if t.ndim != 2 or t.shape[0] != t.shape[1] or t.dtype.is_floating_point or t.dtype == torch.bool:
            raise bad_value("table", f"{t.dtype} {tuple(t.shape)}", "must be a square (n, n) integer table")
        t = t.to(torch.int64)
        n = t.shape[0]
        if not 2 <= n <= _MAX_ORDER:
            raise bad_value("table", f"order {n}", f"the group's order must lie in [2, {_MAX_ORDER}]")
        if int(t.min()) < 0 or int(t.max()) >= n:
            raise bad_value("table", "entries", f"must be element indices in [0, {n - 1}]")
        ar = torch.arange(n)
        if not (torch.sort(t, 1).values == ar).all() or not (torch.sort(t, 0).values == ar[:, None]).all():
            raise bad_value("table", "rows/columns", "every row and column must be a permutation (a Latin square)")
        ids = [e for e in range(n) if bool((t[e] == ar).all()) and bool((t[:, e] == ar).all())]
        if not ids:
            raise bad_value("table", "identity", "has no identity element")
        if not _associative(t):
            raise bad_value("table", "product", "is not associative")
        self.table: Int[Tensor, "n n"] = t
        self.name = str(name)
        self.identity = ids[0]
        self.inverse: Int[Tensor, " n"] = (t == self.identity).to(torch.int64).argmax(1)
        self.elements = list(elements) if elements is not None else list(range(n))
        if generators is None:
            generators = _greedy_generators(t, self.identity)
        for g in generators:
            check_int("generators", int(g), low=0, high=n - 1)
        self.generators = [int(g) for g in generators]
        if len(_closure(t, self.generators, self.identity)) != n:
            raise bad_value("generators", self.generators, "do not generate the group")
        self._irreps = _irreps

    # --- basics --------------------------------------------------------------
    @property
    def order(self) -> int:
        return int(self.table.shape[0])

    def __repr__(self) -> str:
        return f"Group({self.name!r}, order={self.order})"

    @functools.cached_property
    def is_abelian(self) -> bool:
        return bool((self.table == self.table.T).all())

    @functools.cached_property
    def is_cyclic_standard(self) -> bool:
        """True when element ``i`` is the residue ``i`` of Z_n (``table = (i + j) mod n``):
        the grid is then exactly the addition task's, and Z_p tools apply unchanged."""
        n = self.order
        ar = torch.arange(n)
        return bool((self.table == (ar[:, None] + ar[None, :]) % n).all())

    def multiply(self, a: Tensor, b: Tensor) -> Tensor:
        """Indices of the products ``a b`` (elementwise on index tensors)."""
        return self.table[torch.as_tensor(a), torch.as_tensor(b)]

    @functools.cached_property
    def word_length(self) -> Int[Tensor, " n"]:
        """``|g|``: fewest generators or inverses whose product is ``g`` (Cayley graph BFS)."""
        n = self.order
        steps = sorted({*self.generators, *(int(self.inverse[g]) for g in self.generators)})
        dist = torch.full((n,), -1, dtype=torch.int64)
        dist[self.identity] = 0
        frontier = [self.identity]
        while frontier:
            nxt = []
            for g in frontier:
                for s in steps:
                    h = int(self.table[g, s])
                    if dist[h] < 0:
                        dist[h] = dist[g] + 1
                        nxt.append(h)
            frontier = nxt
        return dist

    @functools.cached_property
    def distance(self) -> Int[Tensor, "n n"]:
        """Left-invariant word metric ``d(g, h) = |g^-1 h|`` (for ``C_n`` with generator 1:
        ``min(|g - h|, n - |g - h|)``, the torus distance of :mod:`grok_interp.theory`)."""
        return self.word_length[self.table[self.inverse[:, None], torch.arange(self.order)[None, :]]]

    def regular(self) -> Float[Tensor, "n n n"]:
        """Left-regular permutation matrices ``P_g e_h = e_{g h}`` (float64)."""
        n = self.order
        P = torch.zeros(n, n, n, dtype=torch.float64)
        g = torch.arange(n)[:, None].expand(n, n)
        h = torch.arange(n)[None, :].expand(n, n)
        P[g, self.table, h] = 1.0
        return P

    # --- representations ------------------------------------------------------
    def irreps(self) -> list[Irrep]:
        """The real irreducible representations (trivial first; see the module docstring)."""
        if self._irreps is None:
            self._irreps = _numerical_irreps(self)
        reps = self._irreps() if callable(self._irreps) else self._irreps
        self._irreps = reps
        return reps

    def irrep(self, name: str | int) -> Irrep:
        """One irreducible representation by name or position in :meth:`irreps`."""
        reps = self.irreps()
        if isinstance(name, int) and not isinstance(name, bool):
            check_int("irrep", name, low=0, high=len(reps) - 1)
            return reps[name]
        for r in reps:
            if r.name == name:
                return r
        raise bad_value("irrep", name, "must be one of " + ", ".join(repr(r.name) for r in reps))

    def subgroup(self, generators: list[int]) -> list[int]:
        """Element indices of the subgroup generated by ``generators`` (sorted)."""
        return sorted(_closure(self.table, [int(g) for g in generators], self.identity))


def _associative(t: Tensor) -> bool:
    n = t.shape[0]
    for i in range(0, n, 64):  # (ab)c == a(bc), in chunks of a
        a = torch.arange(i, min(i + 64, n))
        left = t[t[a]]            # [a, b, c] = (a b) c
        right = t[a[:, None, None], t[None, :, :]]  # [a, b, c] = a (b c)
        if not bool((left == right).all()):
            return False
    return True


def _closure(t: Tensor, gens: list[int], identity: int) -> set[int]:
    seen = {identity}
    frontier = [identity]
    while frontier:
        nxt = []
        for g in frontier:
            for s in gens:
                h = int(t[g, s])
                if h not in seen:
                    seen.add(h)
                    nxt.append(h)
        frontier = nxt
    return seen


def _greedy_generators(t: Tensor, identity: int) -> list[int]:
    gens: list[int] = []
    have = {identity}
    for g in range(t.shape[0]):
        if g not in have:
            gens.append(g)
            have = _closure(t, gens, identity)
    return gens


# --- built-in groups ----------------------------------------------------------
def _rot(theta: Tensor) -> Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def cyclic(n: int) -> Group:
    """Z_n: element ``i`` is the residue ``i``; irreps by formula (``k<k>`` = frequency k)."""
    check_int("n", n, low=2, high=_MAX_ORDER)
    ar = torch.arange(n)

    def reps() -> list[Irrep]:
        g = ar.to(torch.float64)
        out = [Irrep("trivial", torch.ones(n, 1, 1, dtype=torch.float64))]
        out += [Irrep(f"k{k}", _rot(2 * math.pi * k * g / n), kind=2) for k in range(1, (n - 1) // 2 + 1)]
        if n % 2 == 0:
            out.append(Irrep(f"k{n // 2}", torch.cos(math.pi * g).round().reshape(n, 1, 1)))
        return out

    return Group((ar[:, None] + ar[None, :]) % n, f"C{n}", generators=[1], _irreps=reps)


def dihedral(n: int) -> Group:
    """D_n of order 2n: element ``i + n j`` is ``r^i s^j``; irreps by formula."""
    check_int("n", n, low=3, high=_MAX_ORDER // 2)
    i = torch.arange(2 * n) % n
    j = torch.arange(2 * n) // n
    sign = 1 - 2 * j  # (-1)^j
    table = ((i[:, None] + sign[:, None] * i[None, :]) % n) + n * ((j[:, None] + j[None, :]) % 2)

    def reps() -> list[Irrep]:
        N = 2 * n
        one = torch.ones(N, dtype=torch.float64)
        s = sign.to(torch.float64)
        alt = torch.cos(math.pi * i.to(torch.float64)).round()  # (-1)^i
        chars = [("trivial", one), ("sign", s)]
        if n % 2 == 0:
            chars += [("alt_r", alt), ("alt_rs", alt * s)]
        out = [Irrep(nm, c.reshape(N, 1, 1)) for nm, c in chars]
        flip = torch.diag_embed(torch.stack([one, s], -1))
        for k in range(1, (n - 1) // 2 + 1):
            out.append(Irrep(f"rho{k}", _rot(2 * math.pi * k * i.to(torch.float64) / n) @ flip))
        return out

    return Group(table, f"D{n}", generators=[1, n], elements=[(int(a), int(b)) for a, b in zip(i, j)], _irreps=reps)


def symmetric(n: int) -> Group:
    """S_n: permutations of ``0..n-1`` in lexicographic order, ``(g h)(x) = g(h(x))``;
    irreps by numerical decomposition of the regular representation."""
    check_int("n", n, low=2, high=6)
    perms = list(itertools.permutations(range(n)))
    index = {q: k for k, q in enumerate(perms)}
    table = [[index[tuple(g[h[x]] for x in range(n))] for h in perms] for g in perms]
    swap = index[tuple([1, 0] + list(range(2, n)))]
    cycle = index[tuple(list(range(1, n)) + [0])]
    return Group(table, f"S{n}", generators=sorted({swap, cycle}), elements=perms)


_NAME = re.compile(r"^([CDS])(\d+)$")


@functools.lru_cache(maxsize=32)
def _builtin(name: str) -> Group:
    m = _NAME.match(name)
    if not m:
        raise bad_value("group", name, "must be one of " + ", ".join(GROUP_NAMES) + " (e.g. 'S4', 'D10', 'C13') or a Group")
    kind, n = m.group(1), int(m.group(2))
    return {"C": cyclic, "D": dihedral, "S": symmetric}[kind](n)


def group(name: str | Group) -> Group:
    """A built-in group by name (``C<n>``, ``D<n>``, ``S<n>``), or a :class:`Group` itself."""
    if isinstance(name, Group):
        return name
    if not isinstance(name, str):
        raise bad_value("group", name, "must be a group name such as 'S4' or a grok_interp.groups.Group")
    return _builtin(name)


# --- numerical decomposition ----------------------------------------------------
def _numerical_irreps(G: Group, seed: int = 0, tries: int = 4) -> list[Irrep]:
    n = G.order
    # (P_g X P_g^T)[x, y] = X[g^-1 x, g^-1 y] and (P_g V)[x] = V[g^-1 x]: index, never multiply.
    L = G.table[G.inverse[:, None], torch.arange(n)[None, :]].numpy()  # L[g, x] = g^-1 x
    for attempt in range(tries):
        rng = np.random.default_rng(seed + attempt)
        M = rng.standard_normal((n, n))
        M = M + M.T
        H = M[L[:, :, None], L[:, None, :]].sum(0)  # sum_g P_g M P_g^T
        H = (H + H.T) / 2
        lam, vec = np.linalg.eigh(H)
        tol = 1e-7 * max(1.0, float(np.abs(lam).max()))
        blocks, start = [], 0
        for k in range(1, n + 1):
            if k == n or lam[k] - lam[k - 1] > tol:
                blocks.append(vec[:, start:k])
                start = k
        found: dict[tuple, np.ndarray] = {}
        ok = True
        for V in blocks:
            rho = np.einsum("ia,gib->gab", V, V[L])
            chi = np.trace(rho, axis1=1, axis2=2)
            e = float(chi @ chi) / n
            if abs(e - round(e)) > 1e-6 or round(e) not in (1, 2, 4):
                ok = False
                break
            key = tuple(np.round(chi, 6) + 0.0)
            found.setdefault(key, rho)
        if not ok:
            continue
        reps = [(rho, int(round(float(np.trace(rho, axis1=1, axis2=2) @ np.trace(rho, axis1=1, axis2=2)) / n)))
                for rho in found.values()]
        if abs(sum(r.shape[1] ** 2 / e for r, e in reps) - n) > 1e-6:
            continue
        return _name_irreps(G, reps)
    raise bad_value("group", G.name, "its representations could not be separated numerically")


def _name_irreps(G: Group, reps: list[tuple[np.ndarray, int]]) -> list[Irrep]:
    """Order: by dimension, then by character (descending, lexicographic); names
    ``trivial``, ``sign`` (a 1-D sign character for S_n), else ``<d><letter>``."""
    def chi(r: np.ndarray) -> np.ndarray:
        return np.trace(r, axis1=1, axis2=2)

    reps = sorted(reps, key=lambda re_: (re_[0].shape[1], tuple(-np.round(chi(re_[0]), 6))))
    out: list[Irrep] = []
    counts: dict[int, int] = {}
    for rho, e in reps:
        d = rho.shape[1]
        c = chi(rho)
        if d == 1 and np.allclose(c, 1):
            name = "trivial"
        elif d == 1 and G.name.startswith("S") and np.allclose(np.abs(c), 1) and not np.allclose(c, 1):
            name = "sign"
        else:
            counts[d] = counts.get(d, 0) + 1
            name = f"{d}{chr(ord('a') + counts[d] - 1)}" if counts[d] <= 26 else f"{d}_{counts[d]}"
        out.append(Irrep(name, torch.from_numpy(np.ascontiguousarray(rho)).to(torch.float64), kind=e))
    return out


# --- the group task --------------------------------------------------------------
GROUP_PREFIX = "group:"


def is_group_op(op: Any) -> bool:
    """True for an operation name that stands for a group task (``group:<name>``)."""
    return isinstance(op, str) and op.startswith(GROUP_PREFIX)


def check_group_op(op: str, p: Any) -> None:
    """Check a config's ``op="group:<name>"`` and its ``p`` (the group's order).

    ``group:table:<label>`` is a user's table (saved in the run directory's labels):
    only ``p >= 2`` is checked here.
    """
    name = op[len(GROUP_PREFIX):]
    check_int("p", p, low=2, high=_MAX_ORDER)
    if name.startswith("table:"):
        return
    G = group(name)
    if G.order != p:
        raise bad_value("p", p, f"must be the order of {name}, {G.order}")


@dataclass(frozen=True, eq=False)
class GroupTask(Task):
    """The multiplication task of a finite group: ``r(a, b) = a b`` on element indices.

    A :class:`~grok_interp.tasks.Task` with ``p = |G|`` (not prime in general) and
    ``op = "group:<name>"``: tokens, offset, splits, training and run directories work
    as for Z_p. Build one with :func:`group_task`. ``Split.square``/``Split.strip``
    cut by element *index*, which means something only for ``C_p`` (index = residue);
    on other groups use :func:`word_ball_mask` (the group's SQUARE) or
    :func:`subgroup_mask` (a subgroup's square, or with ``rows_only`` its STRIP).
    """

    group: Group | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.group, Group):
            raise bad_value("group", self.group, "a GroupTask needs a grok_interp.groups.Group")
        check_int("offset", self.offset, low=0)
        if self.p != self.group.order:
            raise bad_value("p", self.p, f"must be the group's order {self.group.order}")
        object.__setattr__(self, "labels", self.group.table.clone())
        object.__setattr__(self, "valid", torch.ones(self.p, self.p, dtype=torch.bool))

    @property
    def is_custom(self) -> bool:
        return False


def group_task(g: str | Group, offset: int = 0) -> GroupTask:
    """The task ``a * b`` of a group (a built-in name such as ``"S4"``, or a :class:`Group`).

    A user's :class:`Group` (``Group(table, name)``) is named ``group:table:<name>``; its
    table travels in the run directory's labels, so :func:`grok_interp.load_run` rebuilds it.
    """
    G = group(g)
    builtin = _NAME.match(G.name) is not None and G is _builtin(G.name)
    op = GROUP_PREFIX + (G.name if builtin else "table:" + G.name)
    return GroupTask(p=G.order, op=op, offset=offset, group=G)


def build_task(p: int, op: Any, offset: int = 0, labels: Tensor | None = None) -> Task:
    """The task a config names: a group task for ``op="group:..."`` (a ``group:table:``
    one from its saved ``labels``), else ``Task(p, op, offset)`` (a ``custom:`` op from
    its saved labels)."""
    if is_group_op(op):
        name = op[len(GROUP_PREFIX):]
        if name.startswith("table:"):
            if labels is None:
                raise bad_value("op", op, "a user's group table is rebuilt from a run directory's labels; pass task=")
            return group_task(Group(labels, name[len("table:"):]), offset)
        task = group_task(name, offset)
        if task.p != p:
            raise bad_value("p", p, f"must be the order of {name}, {task.p}")
        return task
    if isinstance(op, str) and op.startswith("custom:"):
        return Task(p=p, op=op, offset=offset, labels_override=labels)
    return Task(p=p, op=op, offset=offset)


def group_of(task: Task) -> Group:
    """The group of a task: a :class:`GroupTask`'s own; the cyclic group ``C_p`` of
    ``Task(p, "add")`` (the same grid)."""
    if isinstance(task, GroupTask):
        return task.group  # type: ignore[return-value]
    if task.op == "add":
        return cyclic(task.p)
    raise bad_value("task", f"op={task.op_name!r}", "is not a group multiplication (use a GroupTask, or op='add')")


def lacks_cyclic_order(task: Task | None) -> TypeGuard[GroupTask]:
    """Whether ``task`` is a group task whose element ``i`` is not the residue ``i``
    (``D_n``, ``S_n``, a non-standard ``C_n``): there, measures that read the cyclic order
    (MED, Z_p Fourier, torus distances) mean nothing and their group versions apply."""
    return isinstance(task, GroupTask) and not task.group.is_cyclic_standard  # type: ignore[union-attr]


def check_cyclic_order(task: Task, what: str, instead: str) -> None:
    """Refuse a group task whose element ``i`` is not the residue ``i`` (``D_n``, ``S_n``,
    ...) for a measure that reads that order (``what``), naming what to use ``instead``."""
    if lacks_cyclic_order(task):
        raise bad_value("task", task.op_name, f"{what}; the elements of a non-cyclic group have no such order: "
                        f"use {instead}")


def check_fourier_task(task: Task, what: str) -> None:
    """Z_p Fourier measures read element ``i`` as the residue ``i``: refuse a group task
    whose elements are not (``D_n``, ``S_n``, ...), naming the representation measure to use."""
    check_cyclic_order(task, f"{what} is a Z_p Fourier measure",
                       "grok_interp.measures.representations (irrep_norms, key_irreps, irrep_restricted_loss)")


# --- forced-test regions that make sense for a group ------------------------------
def word_ball_mask(task: GroupTask | Task, k: int) -> Bool[Tensor, "n n"]:
    """Pairs with ``|a| <= k`` and ``|b| <= k`` (word length in the group's generators):
    the group's SQUARE, a ball around ``(e, e)``. For ``C_p`` with generator 1 it is the
    square ``{-k..k}^2`` centred on 0. Use as ``Split.from_mask(task, mask)`` or
    ``train_hooked(task=task, split="mask", mask=mask)``."""
    G = group_of(task)
    check_int("k", k, low=0, high=int(G.word_length.max()))
    inside = G.word_length <= k
    return inside[:, None] & inside[None, :]


def subgroup_mask(task: GroupTask | Task, generators: list[int], *, rows_only: bool = False) -> Bool[Tensor, "n n"]:
    """Pairs with ``a`` and ``b`` in the subgroup ``H`` generated by ``generators``
    (``rows_only``: ``a`` in ``H``, any ``b``: the group's STRIP). Every product of such a
    pair lies in ``H``, so a model must learn ``H``'s multiplication from pairs outside it."""
    G = group_of(task)
    H = torch.zeros(G.order, dtype=torch.bool)
    H[G.subgroup(generators)] = True
    return H[:, None].expand(G.order, G.order).clone() if rows_only else H[:, None] & H[None, :]


def group_split(task: Task, kind: str = "random", frac: float = 0.3, seed: int = 0, **kw: Any) -> Split:
    """Shorthand: ``random``, ``word_ball`` (``k=``) or ``subgroup`` (``generators=``,
    ``rows_only=``) splits of a group task (the last two are ``mask`` splits)."""
    if kind == "random":
        return Split.random(task, frac, seed)
    if kind == "word_ball":
        return Split.from_mask(task, word_ball_mask(task, kw["k"]), frac, seed)
    if kind == "subgroup":
        return Split.from_mask(task, subgroup_mask(task, kw["generators"], rows_only=kw.get("rows_only", False)), frac, seed)
    raise bad_value("kind", kind, "must be 'random', 'word_ball' or 'subgroup'")

