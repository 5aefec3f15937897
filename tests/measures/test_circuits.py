"""Key frequencies, restricted/excluded loss and logit similarity on a hand-built model
whose logits are made of chosen frequencies.

The model (one layer, one head, no LayerNorm, operand offset p so a- and b-tokens
differ) is wired by hand:

* embeddings: a-token ``a`` -> unit vector ``A[a]``, b-token -> ``B[b]``, "=" -> 0;
* attention: zero queries/keys, so the last position averages the three positions;
  identity value/output: ``resid_mid = (A[a] + B[b]) / 3``;
* MLP: one *indicator* neuron per pair, ``relu(3 A[a0] + 3 B[b0] - 1)`` = 1 iff
  ``(a, b) = (a0, b0)``, writing the wanted logit vector ``T[a0, b0, :]`` into a logit
  slot; plus one *frequency* neuron per key frequency k,
  ``relu(cos(w_k a) + cos(w_k b) + 3)``, whose activation lies entirely in the
  ``{const, cos k}^2`` Fourier block and which writes nothing;
* unembedding reads the logit slot.

So the logits are exactly ``T``, and the neurons that have a frequency have exactly the
chosen key frequencies.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import grok_interp as g
from grok_interp.measures import (
    excluded_loss,
    key_frequencies,
    logit_cosine_similarity,
    neuron_frequency_clusters,
    restricted_loss,
    trig_loss,
    weight_norm,
)
from grok_interp.models import load_weights
from tests.helpers import BACKENDS

pytestmark = pytest.mark.portable

P = 11
KEYS = [2, 5]


def _logit_cube(p, amps, phases=None, noise_seed=0):
    """T[a, b, c] = sum_k amp_k cos(w_k (a + b - c) + phase_k) + m(a, b)."""
    a, b, c = torch.meshgrid(torch.arange(p), torch.arange(p), torch.arange(p), indexing="ij")
    T = torch.zeros(p, p, p, dtype=torch.float64)
    for k, amp in amps.items():
        ph = (phases or {}).get(k, 0.0)
        T += amp * torch.cos(2 * math.pi * k * (a + b - c) / p + ph)
    T += torch.randn(p, p, 1, generator=torch.Generator().manual_seed(noise_seed), dtype=torch.float64)
    return T


def _hand_built(T: torch.Tensor, keys, backend: str):
    p = T.shape[0]
    task = g.Task(p, offset=p)
    d_model, d_mlp = 3 * p, p * p + len(keys)
    cfg = g.ModelConfig(d_model=d_model, n_heads=1, d_head=d_model, d_mlp=d_mlp, backend=backend)
    model = g.models.build_model(cfg, task)
    w = {k: torch.zeros_like(v) for k, v in g.models.weights(model).items()}
    for i in range(p):
        w["embed.W_E"][i, i] = 1.0  # A[a]
        w["embed.W_E"][p + i, p + i] = 1.0  # B[b]
    w["blocks.0.attn.W_V"][0] = torch.eye(d_model)
    w["blocks.0.attn.W_O"][0] = torch.eye(d_model)
    x = torch.arange(p, dtype=torch.float32)
    for a0 in range(p):
        for b0 in range(p):
            j = a0 * p + b0
            w["blocks.0.mlp.W_in"][a0, j] = 3.0
            w["blocks.0.mlp.W_in"][p + b0, j] = 3.0
            w["blocks.0.mlp.b_in"][j] = -1.0
            w["blocks.0.mlp.W_out"][j, 2 * p :] = T[a0, b0].float()
    for n, k in enumerate(keys):
        j = p * p + n
        w["blocks.0.mlp.W_in"][:p, j] = 3.0 * torch.cos(2 * math.pi * k * x / p)
        w["blocks.0.mlp.W_in"][p : 2 * p, j] = 3.0 * torch.cos(2 * math.pi * k * x / p)
        w["blocks.0.mlp.b_in"][j] = 3.0
    w["unembed.W_U"][2 * p :] = torch.eye(p)
    load_weights(model, w)
    return model, task


@pytest.fixture(scope="module", params=BACKENDS)
def built(request):
    T = _logit_cube(P, {2: 4.0, 5: 2.5})
    model, task = _hand_built(T, KEYS, request.param)
    return T, model, task


def _ce(T: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    p = T.shape[0]
    labels = (torch.arange(p)[:, None] + torch.arange(p)[None, :]) % p
    L, y = T.reshape(-1, p), labels.reshape(-1)
    if mask is not None:
        L, y = L[mask.reshape(-1)], y[mask.reshape(-1)]
    return float(F.cross_entropy(L, y))


def test_hand_built_model_outputs_the_chosen_logits(built):
    T, model, task = built
    logits = model(task.tokens(task.all_pairs()))[:, -1]
    assert torch.allclose(logits.double(), T.reshape(-1, P), atol=1e-4)


def test_neuron_clusters_and_key_frequencies_are_the_chosen_ones(built):
    T, model, task = built
    table = neuron_frequency_clusters(model, task)
    assert list(table.columns[:3]) == ["neuron", "frequency", "fve"] and len(table) == P * P + len(KEYS)
    assert table["frequency"].iloc[-len(KEYS):].tolist() == KEYS
    assert table["fve"].iloc[-len(KEYS):].tolist() == pytest.approx([1.0] * len(KEYS), abs=1e-6)
    # an indicator neuron spreads its variance: 8 / (p^2 - 1) in any one block
    assert table["fve"].iloc[0] == pytest.approx(8 / (P * P - 1), rel=1e-4)
    assert (table["frequency"].iloc[: P * P] == 0).all()
    assert key_frequencies(model, task) == KEYS


def test_restricted_loss_equals_full_loss_with_the_key_frequencies(built):
    T, model, task = built
    full = _ce(T)
    assert restricted_loss(model, task, KEYS) == pytest.approx(full, rel=1e-5)
    assert restricted_loss(model, task) == pytest.approx(full, rel=1e-5)  # the model's own key freqs
    # keeping only frequency 2 equals the loss of the cube built from frequency 2 alone
    only2 = _logit_cube(P, {2: 4.0})
    assert restricted_loss(model, task, [2]) == pytest.approx(_ce(only2), rel=1e-5)


def test_excluded_loss_is_log_p_without_the_key_frequencies(built):
    T, model, task = built
    split = g.Split.random(task, frac=0.4, seed=1)
    assert excluded_loss(model, split, KEYS) == pytest.approx(math.log(P), rel=1e-6)
    per = excluded_loss(model, split, KEYS, per_frequency=True)
    assert set(per) == set(KEYS)
    only5 = _logit_cube(P, {5: 2.5})
    assert per[2] == pytest.approx(_ce(only5, split.train_mask), rel=1e-5)
    # removing a frequency the logits do not use changes nothing
    assert excluded_loss(model, split, [3]) == pytest.approx(_ce(T, split.train_mask), rel=1e-5)
    with pytest.raises(ValueError, match="Split"):
        excluded_loss(model, task, KEYS)  # the default train split needs a Split


def test_train_and_test_pairs_restricted_loss(built):
    T, model, task = built
    split = g.Split.random(task, frac=0.4, seed=2)
    assert restricted_loss(model, split, KEYS, pairs="test") == pytest.approx(_ce(T, split.test_mask), rel=1e-5)
    assert restricted_loss(model, split, KEYS, pairs="train") == pytest.approx(_ce(T, split.train_mask), rel=1e-5)


def test_logit_cosine_similarity_analytic(built):
    T, model, task = built
    assert logit_cosine_similarity(model, task, KEYS) == pytest.approx(1.0, abs=1e-6)
    # |amp| weighting: keeping one of two orthogonal waves explains amp_2 / sqrt(amp_2^2 + amp_5^2)
    assert logit_cosine_similarity(model, task, [2]) == pytest.approx(4.0 / math.hypot(4.0, 2.5), rel=1e-5)


def test_logit_cosine_counts_cosines_only():
    shifted = _logit_cube(P, {3: 2.0}, phases={3: math.pi / 2})  # a pure sine: no cosine part
    model, task = _hand_built(shifted, [3], BACKENDS[0])
    assert logit_cosine_similarity(model, task, [3]) == pytest.approx(0.0, abs=1e-5)
    assert restricted_loss(model, task, [3]) == pytest.approx(_ce(shifted), rel=1e-5)  # sin is kept there


def test_neuron_level_variants(built):
    T, model, task = built
    split = g.Split.random(task, frac=0.4, seed=1)
    # excluding nothing at neuron level rebuilds the model's own logits (skip path kept)
    assert excluded_loss(model, split, [], variant="neuron_projection") == pytest.approx(_ce(T, split.train_mask), rel=1e-5)
    # restricting neurons to all frequencies of a + b keeps what depends on a + b only:
    # the logits become T averaged over each anti-diagonal a + b = s
    s = (torch.arange(P)[:, None] + torch.arange(P)[None, :]) % P
    avg = torch.zeros_like(T)
    for v in range(P):
        avg[s == v] = T[s == v].mean(0)
    all_k = list(range(1, (P - 1) // 2 + 1))
    assert restricted_loss(model, task, all_k, variant="neuron_projection") == pytest.approx(_ce(avg), rel=1e-5)


def test_divide_difference_projection_with_all_frequencies_keeps_every_function_of_r_minus_c():
    p = 7
    task = g.Task(p, op="divide")
    model = g.models.build_model(g.ModelConfig(d_model=16, n_heads=2, d_mlp=32), task)
    pairs = task.all_pairs()  # b = 0 excluded
    with torch.no_grad():
        L = model(task.tokens(pairs))[:, -1].double()
    r = task.answers(pairs)
    # Independent: with every frequency kept, the restricted logits are each pair's mean
    # plus the average of the centred logits over all (pair, c) with the same r - c mod p.
    centred = L - L.mean(1, keepdim=True)
    s = (r[:, None] - torch.arange(p)[None, :]) % p
    f = torch.stack([centred[s == v].mean() for v in range(p)])
    expected = float(F.cross_entropy(f[s] + L.mean(1, keepdim=True), r))
    assert restricted_loss(model, task, [1, 2, 3], variant="difference_projection") == pytest.approx(expected, rel=1e-6)


def test_divide_paper_projection_is_each_class_least_squares_fit_on_the_valid_pairs():
    """b = 0 is skipped, so cos/sin(w_k r) over the valid pairs are not orthogonal: the
    restricted logits are still each class's least-squares fit on their span."""
    p = 7
    task = g.Task(p, op="divide")
    model = g.models.build_model(g.ModelConfig(d_model=16, n_heads=2, d_mlp=32), task)
    pairs = task.all_pairs()
    with torch.no_grad():
        L = model(task.tokens(pairs))[:, -1].double()
    r = task.answers(pairs).double()
    D = torch.cat([torch.cos(2 * math.pi * k * r / p)[:, None] for k in (1, 3)]
                  + [torch.sin(2 * math.pi * k * r / p)[:, None] for k in (1, 3)], 1)
    R = D @ torch.linalg.lstsq(D, L).solution
    expected = float(F.cross_entropy(R + (L - R).mean(0), task.answers(pairs)))
    assert restricted_loss(model, task, [1, 3]) == pytest.approx(expected, rel=1e-6)


def test_weight_norm_total_and_components():
    model = g.models.build_model(g.ModelConfig(d_model=16, n_heads=2, d_mlp=32), g.Task(7))
    res = weight_norm(model)
    direct = sum(float((p.detach().double() ** 2).sum()) for p in model.parameters())
    assert res["weight_norm"] == pytest.approx(direct, rel=1e-6)
    assert res["weight_norm.embed"] == pytest.approx(float((model.W_E.detach().double() ** 2).sum()), rel=1e-6)
    parts = sum(v for k, v in res.items() if k != "weight_norm")
    assert parts == pytest.approx(res["weight_norm"], rel=1e-9)


# --- which pairs each variant is computed on; ARENA's trig loss ---------------------------
def _arena_trig_loss(L: torch.Tensor, p: int, keys, mask: torch.Tensor) -> float:
    """ARENA's trig_loss, written out independently: logits (p*p, p) over the full (x, y)
    grid, each class projected onto normalised cos/sin(w_k (x + y)) one direction at a
    time, bias-corrected by the per-class mean, cross-entropy on ``mask``."""
    import numpy as np

    L = L.double().numpy()
    x, y = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    trig = np.zeros_like(L)
    for k in keys:
        for wave in (np.cos, np.sin):
            d = wave(2 * np.pi * k * (x + y) / p).reshape(-1)
            d /= np.linalg.norm(d)
            trig += np.outer(d, d @ L)  # project_onto_direction, every class at once
    corrected = (L - trig).mean(0, keepdims=True) + trig
    labels = ((x + y) % p).reshape(-1)
    logp = corrected - np.log(np.exp(corrected).sum(1, keepdims=True))
    m = mask.reshape(-1).numpy()
    return float(-logp[np.arange(p * p), labels][m].mean())


def test_trig_loss_matches_an_independent_arena_computation():
    p = 11
    task = g.Task(p)
    split = g.Split.random(task, frac=0.4, seed=3)
    model = g.models.build_model(g.ModelConfig(d_model=16, n_heads=2, d_mlp=32, seed=4), task)
    with torch.no_grad():
        L = model(task.tokens(task.all_pairs()))[:, -1]
    for keys in ([1], [2, 5], [1, 2, 3, 4, 5]):
        for pairs, mask in (("all", torch.ones(p, p, dtype=torch.bool)), ("train", split.train_mask), ("test", split.test_mask)):
            expected = _arena_trig_loss(L, p, keys, mask)
            # rel 1e-7: the measure's logits come from the fast forward, L from the hooked one
            assert trig_loss(model, split, keys, pairs=pairs) == pytest.approx(expected, rel=1e-7), (keys, pairs)
            assert restricted_loss(model, split, keys, pairs=pairs) == trig_loss(model, split, keys, pairs=pairs)


def test_trig_loss_keeps_a_pure_fourier_circuit_and_each_pairs_mean(built):
    """T = sum_k amp_k cos(w_k (a + b - c)) + m(a, b): the per-class projection keeps the
    waves; what it makes of the per-pair noise m is the same for every class (no effect
    on the loss), so the trig loss is the model's own loss."""
    T, model, task = built
    assert trig_loss(model, task, KEYS) == pytest.approx(_ce(T), rel=1e-5)  # float32 model
    assert trig_loss(model, task, [2]) == pytest.approx(_ce(_logit_cube(P, {2: 4.0})), rel=1e-5)
    assert trig_loss(model, task, [3]) == pytest.approx(math.log(P), rel=1e-6)  # a frequency it does not use


def test_difference_projection_is_the_same_on_every_pair_set_the_others_are_not():
    """By construction (restricted logits are f(r - c) plus a per-pair constant), the
    difference projection does not depend on ``pairs``; the neuron-level variant and
    the paper's per-class projection do, on a model whose pairs differ."""
    p = 13
    task = g.Task(p)
    split = g.Split.random(task, frac=0.3, seed=0)
    model = g.models.build_model(g.ModelConfig(d_model=16, n_heads=2, d_mlp=32, seed=2), task)
    logit = [restricted_loss(model, split, [1, 4], pairs=s, variant="difference_projection") for s in ("train", "test", "all")]
    assert logit[0] == pytest.approx(logit[1], rel=1e-12) and logit[1] == pytest.approx(logit[2], rel=1e-12)
    neurons = [restricted_loss(model, split, [1, 4], pairs=s, variant="neuron_projection") for s in ("train", "test")]
    assert abs(neurons[0] - neurons[1]) > 1e-6
    trig = [trig_loss(model, split, [1, 4], pairs=s) for s in ("train", "test")]
    assert abs(trig[0] - trig[1]) > 1e-6


def test_a_memorising_lookup_table_lowers_every_logit_level_restricted_loss():
    """A model that only memorises (logits: a one-hot lookup on the training pairs, zero
    on test pairs) has *no* test skill, yet its logit-level restricted loss falls below
    log p on the test pairs: memorised logits alone peak f(r - c) at r - c = 0."""
    p = P
    task = g.Task(p, offset=p)
    split = g.Split.random(task, frac=0.5, seed=0)
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    T = 6.0 * F.one_hot((a + b) % p, p).double() * split.train_mask[..., None]
    model, _ = _hand_built(T, [], BACKENDS[0])
    assert _ce(T, split.test_mask) == pytest.approx(math.log(p), rel=1e-6)  # no test skill at all
    restricted_test = restricted_loss(model, split, [1, 2, 3], pairs="test", variant="difference_projection")
    assert restricted_test < 0.8 * math.log(p)
    assert trig_loss(model, split, [1, 2, 3], pairs="test") < 0.8 * math.log(p)
