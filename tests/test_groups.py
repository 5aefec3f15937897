"""Group tasks, their irreducible representations, the representation measures (equal
to the Fourier ones on the cyclic group) and the clock/pizza measures."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import grok_interp as g
from grok_interp import theory
from grok_interp.errors import GrokInterpError
from grok_interp.groups import (
    Group, GroupTask, build_task, cyclic, dihedral, group, group_split, group_task, subgroup_mask, symmetric,
    word_ball_mask,
)
from grok_interp import groups as groups_mod
from grok_interp.measures import representations as R
from grok_interp.measures import algorithms as A
from grok_interp import measures as M
from grok_interp.models import build_model

GROUPS = ["C2", "C7", "C8", "D3", "D5", "D6", "S3", "S4", "S5"]
SMALL = dict(d_model=32, d_mlp=64, n_heads=2)


def _tiny_model(task, seed=0):
    return build_model(g.ModelConfig(seed=seed, **SMALL), task)


# --- groups ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,order", [("C7", 7), ("D5", 10), ("D10", 20), ("S4", 24), ("S5", 120)])
def test_orders_and_group_axioms(name, order):
    G = group(name)
    assert G.order == order
    t = G.table
    e = G.identity
    assert (t[e] == torch.arange(order)).all() and (t[:, e] == torch.arange(order)).all()
    assert (t[torch.arange(order), G.inverse] == e).all()
    a, b, c = torch.randint(order, (3, 200), generator=torch.Generator().manual_seed(0))
    assert (t[t[a, b], c] == t[a, t[b, c]]).all()


def test_symmetric_composes_permutations_apply_right_first():
    G = symmetric(3)
    perms = G.elements
    for i, j in itertools.product(range(6), repeat=2):
        composed = tuple(perms[i][perms[j][x]] for x in range(3))
        assert perms[int(G.table[i, j])] == composed
    assert not G.is_abelian and symmetric(2).is_abelian


def test_dihedral_relations():
    n = 6
    G = dihedral(n)
    r, s = 1, n
    power = G.identity
    for _ in range(n):
        power = int(G.table[power, r])
    assert power == G.identity  # r^n = e
    assert int(G.table[s, s]) == G.identity
    assert int(G.table[G.table[s, r], s]) == int(G.inverse[r])  # s r s = r^-1


def test_cyclic_group_task_is_the_addition_task():
    task = group_task("C13")
    add = g.Task(13, "add")
    assert torch.equal(task.labels, add.labels) and task.d_vocab == add.d_vocab and task.op == "group:C13"
    assert torch.equal(g.Split.random(task, 0.3, 5).train_mask, g.Split.random(add, 0.3, 5).train_mask)


def test_lacks_cyclic_order_only_where_element_i_is_not_the_residue_i():
    """The one predicate every order-reading measure consults: true exactly for a group
    task whose table differs from addition mod n (checked here against that table)."""
    relabelled = torch.tensor([1, 0, 2, 3, 4])  # C5 with elements 0 and 1 swapped
    T = (torch.arange(5)[:, None] + torch.arange(5)[None, :]) % 5
    swapped = Group(relabelled[T[relabelled[:, None], relabelled[None, :]]], "C5swap")
    for task in (group_task("C7"), group_task("D4"), group_task("S3"), group_task(swapped),
                 g.Task(7, "add"), g.Task(7, "multiply"), None):
        expected = task is not None and isinstance(task, groups_mod.GroupTask) and not torch.equal(
            task.labels, (torch.arange(task.p)[:, None] + torch.arange(task.p)[None, :]) % task.p)
        assert groups_mod.lacks_cyclic_order(task) == expected, task
    with pytest.raises(GrokInterpError, match="no such order"):
        groups_mod.check_cyclic_order(group_task("D4"), "MED reads the order", "cayley_med")


@pytest.mark.parametrize("table,why", [
    ([[0, 1], [0, 1]], "Latin"),
    ([[0, 1, 2], [1, 2, 0], [2, 1, 0]], "Latin"),
    ([[1.0, 0.0], [0.0, 1.0]], "integer"),
])
def test_bad_tables_are_refused(table, why):
    with pytest.raises(GrokInterpError, match=why):
        Group(table)


def test_non_associative_latin_square_is_refused():
    # A Latin square with an identity that is not a group (the smallest loop, order 5).
    loop = [[0, 1, 2, 3, 4], [1, 0, 3, 4, 2], [2, 4, 0, 1, 3], [3, 2, 4, 0, 1], [4, 3, 1, 2, 0]]
    with pytest.raises(GrokInterpError, match="associative"):
        Group(loop)


def test_bad_names_and_sizes():
    for bad in ("X4", "S9", "D2", "C1", 4):
        with pytest.raises(GrokInterpError):
            group(bad)


def test_word_metric_on_cyclic_is_the_torus_distance():
    G = cyclic(11)
    x = torch.arange(11)
    torus = torch.minimum((x[:, None] - x[None, :]).abs(), 11 - (x[:, None] - x[None, :]).abs())
    assert torch.equal(G.distance, torus)
    S4 = symmetric(4)
    assert int(S4.word_length.max()) >= 3 and int(S4.word_length[S4.identity]) == 0


# --- irreducible representations ----------------------------------------------------------
@pytest.mark.parametrize("name", GROUPS)
def test_irreps_are_orthogonal_homomorphisms_with_orthogonal_characters(name):
    G = group(name)
    n = G.order
    reps = G.irreps()
    assert reps[0].name == "trivial"
    total = 0.0
    chars = []
    for rep in reps:
        m = rep.matrices
        eye = torch.eye(rep.dim, dtype=torch.float64)
        assert torch.allclose(m @ m.transpose(1, 2), eye.expand_as(m), atol=1e-9), rep.name  # orthogonal
        assert torch.allclose(m[G.table], m[:, None] @ m[None, :], atol=1e-9), rep.name  # rho(gh) = rho(g) rho(h)
        chi = rep.character
        assert math.isclose(float(chi @ chi) / n, rep.kind, abs_tol=1e-9)  # <chi, chi> = Frobenius-Schur type
        total += rep.dim**2 / rep.kind
        chars.append(chi)
    assert math.isclose(total, n, abs_tol=1e-9)  # sum d^2 / e = |G|
    C = torch.stack(chars)
    gram = C @ C.T / n
    assert torch.allclose(gram, torch.diag(torch.tensor([float(r.kind) for r in reps], dtype=torch.float64)), atol=1e-9)


@pytest.mark.parametrize("name", ["C7", "C8", "C9", "D5", "D6", "D8"])
def test_numerical_decomposition_finds_the_formula_irreps(name):
    G = group(name)
    formula = sorted(tuple(r.character.round(decimals=6).tolist()) for r in G.irreps())
    numeric = sorted(tuple(r.character.round(decimals=6).tolist()) for r in groups_mod._numerical_irreps(G))
    assert formula == numeric


def test_symmetric_group_characters_match_an_independent_count():
    # S4: dims 1,1,2,3,3; the standard representation's character is (fixed points - 1)
    # and the sign is the parity: both computed here from the permutations themselves.
    for n, dims in ((4, [1, 1, 2, 3, 3]), (5, [1, 1, 4, 4, 5, 5, 6])):
        G = symmetric(n)
        assert sorted(r.dim for r in G.irreps()) == dims
        fixed = torch.tensor([sum(p[i] == i for i in range(n)) for p in G.elements], dtype=torch.float64)
        parity = torch.tensor([(-1.0) ** sum(p[i] > p[j] for i in range(n) for j in range(i + 1, n)) for p in G.elements],
                              dtype=torch.float64)
        chars = [r.character for r in G.irreps()]
        assert any(torch.allclose(c, fixed - 1, atol=1e-9) for c in chars)
        assert torch.allclose(G.irrep("sign").character, parity, atol=1e-9)
        assert any(torch.allclose(c, parity * (fixed - 1), atol=1e-9) for c in chars)  # standard x sign


@pytest.mark.parametrize("name", ["C8", "D5", "S4"])
def test_irrep_bases_are_an_orthonormal_basis_and_plancherel_holds(name):
    G = group(name)
    B = torch.cat(list(R.irrep_basis(G).values()), 1)
    assert B.shape == (G.order, G.order)
    assert torch.allclose(B.T @ B, torch.eye(G.order, dtype=torch.float64), atol=1e-9)
    f = torch.randn(G.order, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    hat = R.group_fourier_transform(f, G)
    plancherel = sum(r.dim / r.kind * float(hat[r.name].pow(2).sum()) for r in G.irreps()) / G.order
    assert math.isclose(plancherel, float(f.pow(2).sum()), rel_tol=1e-9)
    norms = R.irrep_norms(f, G)
    for r in G.irreps():  # ||P_rho f|| = sqrt(d / (e |G|)) ||f^(rho)||_F
        assert math.isclose(norms[r.name], math.sqrt(r.dim / (r.kind * G.order)) * float(hat[r.name].norm()), rel_tol=1e-9)


# --- equality with the Fourier measures on the cyclic group ---------------------------------
@pytest.fixture(scope="module")
def cyclic_run():
    return g.train_hooked(p=13, steps=300, frac=0.6, lr=3e-3, eval_every=100, progress=False, threads=1, **SMALL)


@pytest.mark.parametrize("freqs", [[1], [2, 5], [1, 2, 3, 4, 5, 6], []])
def test_irrep_losses_equal_the_papers_restricted_and_excluded_loss_on_the_cyclic_group(cyclic_run, freqs):
    model, task, split = cyclic_run.model, cyclic_run.task, cyclic_run.split
    names = [f"k{k}" for k in freqs]
    assert math.isclose(R.irrep_restricted_loss(model, task, names), M.restricted_loss(model, task, freqs), rel_tol=1e-9)
    assert math.isclose(R.irrep_excluded_loss(model, split, names), M.excluded_loss(model, split, freqs), rel_tol=1e-9)
    # the same through the group task C_13 (a GroupTask whose grid is the addition task's)
    gsplit = g.Split.random(group_task("C13"), 0.6, cyclic_run.config.data.data_seed)
    assert math.isclose(R.irrep_excluded_loss(model, gsplit, names), M.excluded_loss(model, split, freqs), rel_tol=1e-9)
    if freqs:
        per_f = M.excluded_loss(model, split, freqs, per_frequency=True)
        per_r = R.irrep_excluded_loss(model, split, names, per_irrep=True)
        assert all(math.isclose(per_r[f"k{k}"], per_f[k], rel_tol=1e-9) for k in freqs)


def test_irrep_norms_and_clusters_equal_the_fourier_ones_on_the_cyclic_group(cyclic_run):
    model, task = cyclic_run.model, cyclic_run.task
    fourier = M.embedding_fourier_norms(model, task).double()
    irreps = R.embedding_irrep_norms(model, task)
    assert list(irreps.index) == ["trivial"] + [f"k{k}" for k in range(1, 7)]
    assert torch.allclose(torch.tensor(irreps.values[1:]), fourier, rtol=1e-5)
    for threshold in (0.3, 0.85):
        fc = M.neuron_frequency_clusters(model, task, threshold=threshold)
        ic = R.neuron_irrep_clusters(model, task, threshold=threshold)
        assert torch.allclose(torch.tensor(fc.fve.values), torch.tensor(ic.fve.values), atol=1e-5)
        assert (fc.frequency.map(lambda k: f"k{k}" if k else "") == ic.irrep).all()
    assert R.key_irreps(model, task) == [f"k{k}" for k in M.key_frequencies(model, task)]
    assert R.key_irreps(model, task, "embedding") == [f"k{k}" for k in M.key_frequencies(model, task, "embedding")]
    assert math.isclose(R.cayley_med(model, task), M.med(model, task), rel_tol=1e-9)


def test_irrep_directions_span_the_trig_directions_on_the_cyclic_group():
    task = g.Task(11)
    Q = R.irrep_directions(task, ["k3", "k4"])
    T = M.trig_directions(task, [3, 4]).double()
    assert torch.allclose(Q.T @ Q, torch.eye(4, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(Q @ (Q.T @ T), T, atol=1e-9)  # same span


def test_irrep_restricted_loss_with_every_irrep_keeps_every_function_of_the_answer():
    # All W_rho together span every function of r = a b: R[pair] is the mean of L over
    # the pairs with the same answer (its equivalence class), and mean(L - R) = 0.
    task = group_task("S3")
    model = _tiny_model(task)
    with torch.no_grad():
        L = model(task.tokens(task.all_pairs()))[:, -1].double()
    r = task.answers(task.all_pairs())
    class_mean = torch.stack([L[r == c].mean(0) for c in range(task.p)])[r]
    expected = torch.nn.functional.cross_entropy(class_mean, r).item()
    names = [x.name for x in task.group.irreps()]
    assert math.isclose(R.irrep_restricted_loss(model, task, names), expected, rel_tol=1e-6)  # float32 forwards


def test_fourier_measures_refuse_a_non_cyclic_group():
    task = group_task("D5")
    model = _tiny_model(task)
    for call in (lambda: M.key_frequencies(model, task), lambda: M.restricted_loss(model, task, [1]),
                 lambda: M.embedding_fourier_norms(model, task), lambda: M.fourier_gini(model, task)):
        with pytest.raises(GrokInterpError, match="representations"):
            call()


def test_order_reading_measures_refuse_a_non_cyclic_group_and_aliases_use_the_group_version():
    task = group_task("D5")
    model = _tiny_model(task)
    for call in (lambda: M.med(model, task), lambda: M.activation_med(model, task)):
        with pytest.raises(GrokInterpError, match="cayley_med"):
            call()
    with pytest.raises(GrokInterpError, match="cayley_med"):
        M.compute_measures(model, task, ["med"])  # asked for by name: refused
    row = M.compute_measures(model, task, "default")  # the alias: MED's group version
    assert "med" not in row and math.isclose(row["cayley_med"], R.cayley_med(model, task), rel_tol=1e-12)
    # on the cyclic group task the order exists and MED is MED
    c7 = group_task("C7")
    assert math.isclose(M.med(_tiny_model(c7), c7), R.cayley_med(_tiny_model(c7), c7), rel_tol=1e-9)
    assert "med" in M.compute_measures(_tiny_model(c7), c7, "default")


def test_cayley_steps_are_the_consecutive_distances_on_the_cyclic_group_and_a_loop_elsewhere():
    from grok_interp.measures.uniformity import consecutive_distances

    E = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(R.cayley_steps(E, group_task("C7")), consecutive_distances(E))
    task = group_task("S4")
    G = task.group
    E = torch.randn(G.order, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    loop = [float((E[G.multiply(torch.tensor(i), torch.tensor(s))] - E[i]).norm())
            for i in range(G.order) for s in G.generators]
    assert torch.allclose(R.cayley_steps(E, task), torch.tensor(loop, dtype=torch.float64))


def test_uniformity_stats_on_a_group_read_the_generator_steps():
    # C_p as a group task gives exactly the addition task's statistics ...
    c7, add7 = group_task("C7"), g.Task(7)
    model = _tiny_model(c7)
    assert M.uniformity_stats(model, c7) == pytest.approx(M.uniformity_stats(model, add7), rel=1e-12)
    # ... and on S4 med_cv is the coefficient of variation of the Cayley steps
    s4 = group_task("S4")
    model = _tiny_model(s4)
    W = g.models.weights(model)["embed.W_E"].detach().double()
    steps = R.cayley_steps(W[s4.operand_tokens("a")], s4)
    assert math.isclose(M.uniformity_stats(model, s4)["med_cv"], float(steps.std(unbiased=False) / steps.mean()),
                        rel_tol=1e-9)


# --- training, run directories and splits ---------------------------------------------------
def test_group_task_trains_saves_loads_and_resumes(tmp_path):
    task = group_task("D5")
    out = tmp_path / "run"
    run = g.train_hooked(task=task, steps=40, frac=0.5, eval_every=20, checkpoint_every=20, progress=False,
                         threads=1, out=out, record="representations", **SMALL)
    assert run.config.data.op == "group:D5" and run.config.data.p == 10
    assert {"cayley_med", "key_irreps", "irrep_restricted_loss", "irrep_excluded_loss"} <= set(run.history.columns)
    loaded = g.load_run(out)
    assert isinstance(loaded.task, GroupTask) and torch.equal(loaded.task.labels, task.labels)
    assert torch.equal(loaded.split.train_mask, run.split.train_mask)
    more = g.train_hooked(out=out, resume=True, steps=60, progress=False, threads=1)
    assert int(more.history.step.max()) == 60
    df = loaded.measure("representations")
    assert df.attrs["key_irreps"] is not None and "irrep_restricted_loss" in df


def test_user_table_group_round_trips(tmp_path):
    T = dihedral(4).table
    pi = torch.randperm(8, generator=torch.Generator().manual_seed(3))  # relabel D4's elements
    inv = torch.argsort(pi)
    G = Group(pi[T[inv[:, None], inv[None, :]]], "mine")
    assert not G.is_cyclic_standard and sorted(r.dim for r in G.irreps()) == [1, 1, 1, 1, 2]
    task = group_task(G)
    assert task.op == "group:table:mine"
    run = g.train_hooked(task=task, steps=10, frac=0.5, eval_every=10, progress=False, threads=1, out=tmp_path / "r", **SMALL)
    loaded = g.load_run(tmp_path / "r")
    assert torch.equal(loaded.task.labels, G.table) and loaded.task.group.name == "mine"
    assert run.config.data.op == "group:table:mine"
    with pytest.raises(GrokInterpError, match="task="):
        build_task(8, "group:table:mine", 0)


def test_config_checks_group_order():
    assert g.DataConfig(p=24, op="group:S4").p == 24
    with pytest.raises(GrokInterpError, match="order of S4"):
        g.DataConfig(p=23, op="group:S4")
    with pytest.raises(GrokInterpError, match="conflicts with task"):
        g.train_hooked(task=group_task("S3"), p=7, steps=1, progress=False)


def test_group_forced_test_regions():
    task = group_task("D6")
    ball = word_ball_mask(task, 1)
    G = task.group
    short = G.word_length <= 1
    assert torch.equal(ball, short[:, None] & short[None, :])
    rot = subgroup_mask(task, [1])  # the rotations <r>: a in <r> and b in <r>
    assert int(rot.sum()) == 36 and bool(rot[2, 3]) and not bool(rot[6, 0])
    split = group_split(task, "subgroup", 0.5, 0, generators=[1])
    assert not (split.train_mask & rot).any() and split.n_train == int(0.5 * 144)
    # on C_p the word ball is the square {-k..k}^2 around 0
    c = word_ball_mask(g.Task(11), 2)
    near = torch.tensor([min(i, 11 - i) <= 2 for i in range(11)])
    assert torch.equal(c, near[:, None] & near[None, :])


def test_theory_generalises_to_groups_and_says_where_not():
    s_add = g.Split.random(g.Task(13), 0.3, 1)
    s_grp = g.Split.random(group_task("C13"), 0.3, 1)
    d1, d2 = theory.nearest_train_distance(s_add), theory.nearest_train_distance(s_grp)
    assert torch.equal(d1.isnan(), d2.isnan()) and torch.equal(d1[~d1.isnan()], d2[~d2.isnan()])
    assert theory.covered_per_point(group_task("C13"), 3) == theory.covered_per_point(g.Task(13), 3)
    s4 = group_split(group_task("S4"), "random", 0.3, 0)
    curve = theory.ceiling_curve(s4)
    assert curve.ceiling.is_monotonic_increasing and math.isclose(curve.ceiling.iloc[-1], theory.coverage_ceiling(s4))
    with pytest.raises(GrokInterpError, match="Z_p map"):
        theory.symmetry_ceiling(s4, ("negate",))
    # the class of a b is {(a g, g^-1 b)}: n pairs per class, each class reached
    assert theory.class_coverage(s4)["n_train"].sum() == s4.n_train


# --- clock and pizza ------------------------------------------------------------------------
def test_constant_attention_makes_gradients_exactly_symmetric():
    # With attention rate 0 the last position reads V(E_a + pos_0) + V(E_b + pos_1) + ...:
    # the logit depends on E_a and E_b through the same linear map, so the gradients agree.
    task = g.Task(11)
    model = A.set_attention_rate(_tiny_model(task), 0.0)
    assert math.isclose(A.gradient_symmetricity(model, task, n_samples=30), 1.0, abs_tol=1e-6)
    normal = _tiny_model(task)
    assert A.gradient_symmetricity(normal, task, n_samples=30) < 0.999


def test_distance_irrelevance_on_logits_built_to_order():
    # Correct logits that depend on a - b only (pizza) or on neither a - b nor anything (clock).
    p = 7
    task = g.Task(p)

    a, b = task.all_pairs().T

    def logits(correct):
        out = torch.zeros(p * p, p)
        out[torch.arange(p * p), (a + b) % p] = correct
        return out

    pizza = logits(torch.cos(2 * math.pi * (a - b).float() / p).abs())
    clock = logits(torch.rand(p * p, generator=torch.Generator().manual_seed(0)))
    assert A.distance_irrelevance_of(pizza, p) < 1e-6
    assert 0.7 < A.distance_irrelevance_of(clock, p) < 1.1
    with pytest.raises(GrokInterpError, match="shape"):
        A.distance_irrelevance_of(pizza[:5], p)
    with pytest.raises(GrokInterpError, match="runner_up"):
        A.distance_irrelevance_of(pizza, p, logit="second")
    # runner_up (train-main.py's table) reads the largest wrong logit, not the correct one:
    # wrong logits that depend on a - b only, a correct logit that depends on a + b only
    dist = torch.cos(2 * math.pi * (a - b).float() / p).abs()
    both = torch.zeros(p * p, p) + dist[:, None]
    both[torch.arange(p * p), (a + b) % p] = 10.0 + ((a + b) % p).float()
    assert A.distance_irrelevance_of(both, p, logit="runner_up") < 1e-6
    assert A.distance_irrelevance_of(both, p, logit="correct") > 0.99  # constant along a - b
    # the grid itself, entry by entry, against a loop over the pairs
    Q, R = A.distance_logit_grid(both, p), A.distance_logit_grid(both, p, logit="runner_up")
    for x in range(p):
        for y in range(p):
            row = both[x * p + y]
            assert Q[(x + y) % p, (x - y) % p] == row[(x + y) % p]
            assert R[(x + y) % p, (x - y) % p] == max(float(v) for k, v in enumerate(row) if k != (x + y) % p)


@pytest.mark.slow
def test_clock_and_pizza_regimes_are_told_apart():
    """Attention rate 1 (model A) learns the clock, rate 0 (model B) the pizza (Zhong et al.)."""
    import torch.nn.functional as F

    p = 13
    task = g.Task(p)
    split = g.Split.random(task, 0.8, 0)
    X, Y = task.tokens(split.train_pairs), task.answers(split.train_pairs)
    Xt, Yt = task.tokens(split.test_pairs), task.answers(split.test_pairs)
    found = {}
    for rate in (0.0, 1.0):
        torch.manual_seed(0)
        model = A.set_attention_rate(build_model(g.ModelConfig(d_model=64, d_mlp=256, n_heads=4, seed=1), task), rate)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1.0, betas=(0.9, 0.98))
        for _ in range(600):
            loss = F.cross_entropy(model(X)[:, -1].double(), Y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            assert (model(Xt)[:, -1].argmax(-1) == Yt).float().mean() > 0.7  # mostly generalised
        found[rate] = A.classify_algorithm(model, task)
    # Constant attention makes the logits a function of E_a + E_b: gradients exactly
    # symmetric, so never the clock. (Its distance irrelevance stays high on runs this
    # short, so it is not labelled "pizza" either: see classify_algorithm.)
    assert found[0.0]["gradient_symmetricity"] > 0.99 > 0.7 > found[1.0]["gradient_symmetricity"], found
    assert found[1.0]["algorithm"] == "clock" and found[0.0]["algorithm"] != "clock", found


# --- the local learning coefficient -----------------------------------------------------------
def test_llc_settings_are_checked():
    from grok_interp.measures.llc import LLCSettings

    with pytest.raises(GrokInterpError, match="lr"):
        LLCSettings(lr=0)
    with pytest.raises(GrokInterpError, match="num_draws"):
        LLCSettings(num_draws=1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_llc_estimate_diagnostics_and_recording(cyclic_run, tmp_path):
    pytest.importorskip("devinterp")
    import json

    from grok_interp.measures.llc import LLCSettings, estimate_llc, llc_columns

    settings = LLCSettings(num_chains=2, num_draws=60, num_burnin=20, seed=3)
    before = {k: v.clone() for k, v in cyclic_run.model.state_dict().items()}
    r = estimate_llc(cyclic_run.model, cyclic_run, settings)
    assert all(torch.equal(before[k], v) for k, v in cyclic_run.model.state_dict().items())  # chains run on copies
    assert r.trace.shape == (2, 60) and len(r.per_chain) == 2
    # llc = nbeta * (mean draw loss - L(w*)), per chain, then averaged
    assert math.isclose(r.llc, settings.nbeta * (r.trace.mean() - r.init_loss), rel_tol=1e-9)
    assert math.isclose(r.llc, (r.first_half + r.second_half) / 2, rel_tol=1e-9)
    again = estimate_llc(cyclic_run.model, cyclic_run, settings)
    assert again.llc == r.llc  # seeded
    saved = json.loads(r.save(tmp_path / "llc.json").read_text())
    assert saved["settings"]["num_draws"] == 60 and len(saved["trace"]) == 2
    # a sampler that is far too hot is flagged unstable (the estimate keeps climbing)
    hot = estimate_llc(cyclic_run.model, cyclic_run, LLCSettings(lr=3e-2, nbeta=2.0, localization=0.0, num_chains=1,
                                                                 num_draws=60, num_burnin=0))
    assert not hot.stable
    small = LLCSettings(num_chains=1, num_draws=10, num_burnin=0)
    row = llc_columns(cyclic_run.model, cyclic_run.split, small)  # what the "llc" measure records
    assert {"llc", "llc_std", "llc_stable", "llc_chain_spread"} <= set(row)
    assert json.loads(row["llc_settings"]) == json.loads(json.dumps(small.__dict__))
    assert "llc" in M.measure_names()
