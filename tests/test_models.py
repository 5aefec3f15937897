"""The model factory on every available backend, the fast forward and the MLP baseline."""

import pytest
import torch

import grok_interp as g
from grok_interp import tl_backend
from grok_interp.training.forwards import fast_forward, hooked_forward, select_forward
from grok_interp.models import backend_of, load_weights

from .helpers import BACKENDS, all_tokens

pytestmark = pytest.mark.portable

TASK = g.Task(p=13, op="add", offset=2)

# Every architecture option the factory supports with the fast forward.
FAST_OPTIONS = [
    {},
    {"init": "tl"},
    {"pos_embed": False},
    {"freeze_biases": True},
    {"embed_init": "circulant"},
    {"embed_init": "onehot", "d_model": 16},
    {"embed_init": "toeplitz", "d_model": 16},
    {"attn_bias": False, "unembed_bias": False},
    {"attn_bias": False, "freeze_biases": True},
    {"act_fn": "gelu"},
    {"act_fn": "gelu_new"},
    {"act_fn": "silu"},
    {"n_heads": 2, "d_head": 5},
    {"n_layers": 2},
    {"n_layers": 3, "attn_bias": False, "unembed_bias": False, "act_fn": "gelu"},
]


def _randomise_biases(model):
    """Biases start at zero; give them values so the test sees every term."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in tl_backend.canonical_parameters(model).items():
            if p.requires_grad and name.rsplit(".", 1)[-1].startswith("b"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", FAST_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_fast_forward_equals_hooked_forward(backend, options):
    cfg = g.ModelConfig(**{"backend": backend, "d_model": 16, "n_heads": 4, "d_mlp": 24, **options})
    model = g.models.build_model(cfg, TASK)
    _randomise_biases(model)
    toks = all_tokens(TASK)
    assert torch.allclose(fast_forward(model, toks), hooked_forward(model, toks), atol=1e-5)


@pytest.mark.parametrize("options", [{"n_layers": 2, "normalization": "LN"}, {"normalization": "LN"}])
def test_unsupported_architectures_fall_back_to_hooked_forward(options, caplog):
    # (Any number of layers is supported: tests/training/test_forwards_layers.py.)
    cfg = g.ModelConfig(**options)
    fwd, name = select_forward(cfg, "auto")
    assert name == "hooked" and fwd is hooked_forward
    with pytest.raises(ValueError, match="forward='fast'"):
        select_forward(cfg, "fast")


def test_the_mlp_baseline_has_its_own_fast_forward_but_no_compiled_one():
    from grok_interp.training.forwards import mlp_fast_forward

    cfg = g.ModelConfig(arch="mlp")
    assert select_forward(cfg, "auto") == select_forward(cfg, "fast") == (mlp_fast_forward, "fast")
    assert select_forward(cfg, "hooked") == (hooked_forward, "hooked")
    with pytest.raises(ValueError, match="forward='compile'"):
        select_forward(cfg, "compile")


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_roundtrip_through_canonical_layout(backend):
    cfg = g.ModelConfig(backend=backend, d_model=16, d_mlp=24, normalization="LN", n_layers=2)
    a, b = g.models.build_model(cfg, TASK), g.models.build_model(g.ModelConfig(**{**cfg.to_dict(), "seed": 5}), TASK)
    toks = all_tokens(TASK)
    assert not torch.allclose(a(toks), b(toks))
    load_weights(b, {k: v.detach() for k, v in g.models.weights(a).items()})
    assert torch.equal(a(toks), b(toks))


def test_bridge_canonical_weights_match_transformer_lens_get_params():
    model = g.models.build_model(g.ModelConfig(backend="bridge", d_model=16, d_mlp=24, normalization="LN"), TASK)
    ours, theirs = g.models.weights(model), model.get_params()
    for name, value in theirs.items():
        assert torch.equal(ours[name], value), name


@pytest.mark.skipif(len(BACKENDS) < 2, reason="HookedTransformer is not in this TransformerLens")
def test_both_backends_build_the_same_model_from_the_same_seed():
    toks = all_tokens(TASK)
    hooked, bridge = (g.models.build_model(g.ModelConfig(backend=b, d_model=16, d_mlp=24), TASK) for b in BACKENDS)
    assert backend_of(hooked) == "hooked" and backend_of(bridge) == "bridge"
    assert torch.allclose(hooked(toks), bridge(toks), atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hook_names_and_accessors_users_know(backend):
    model = g.models.build_model(g.ModelConfig(backend=backend, d_model=16, d_mlp=24), TASK)
    _, cache = model.run_with_cache(all_tokens(TASK))
    n = 13 * 13
    assert cache["blocks.0.attn.hook_pattern"].shape == (n, 4, 3, 3)
    assert cache["blocks.0.mlp.hook_post"].shape == (n, 3, 24)
    assert model.W_E.shape == (TASK.d_vocab, 16) and model.W_U.shape == (16, 13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_frozen_parameters_stay_put_and_are_not_optimised(backend):
    cfg = g.ModelConfig(backend=backend, d_model=16, d_mlp=24, embed_init="onehot", pos_embed=False, freeze_biases=True)
    model = g.models.build_model(cfg, TASK)
    params = tl_backend.canonical_parameters(model)
    frozen = {k for k, p in params.items() if not p.requires_grad}
    assert "embed.W_E" in frozen and "pos_embed.W_pos" in frozen and "unembed.b_U" in frozen
    assert torch.equal(model.W_E.detach(), torch.eye(TASK.d_vocab, 16))
    before = {k: params[k].detach().clone() for k in frozen}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=1.0)
    model(all_tokens(TASK))[:, -1].sum().backward()
    opt.step()
    for k in frozen:
        assert torch.equal(params[k].detach(), before[k]), k


def test_circulant_embedding_rows_are_cyclic_shifts():
    model = g.models.build_model(g.ModelConfig(backend=BACKENDS[0], d_model=16, d_mlp=24, embed_init="circulant"), TASK)
    w = model.W_E.detach()
    for i in range(1, w.shape[0]):
        assert torch.equal(w[i], torch.roll(w[0], i))


def test_nanda_init_has_the_documented_scale():
    model = g.models.build_model(g.ModelConfig(backend=BACKENDS[0], d_model=128), g.Task(p=113))
    w_in = model.blocks[0].mlp.W_in.detach()
    assert abs(w_in.std().item() - 128**-0.5) < 0.01 * 128**-0.5 * 10
    assert torch.count_nonzero(model.blocks[0].mlp.b_in) == 0


def test_onehot_embedding_needs_room():
    with pytest.raises(ValueError, match="embed_init"):
        g.models.build_model(g.ModelConfig(embed_init="onehot", d_model=8, n_heads=2), TASK)


def test_mlp_baseline_is_hooked():
    model = g.models.build_model(g.ModelConfig(arch="mlp", d_model=8, d_mlp=16), TASK)
    toks = all_tokens(TASK)
    logits, cache = model.run_with_cache(toks)
    assert logits.shape == (169, 1, 13)
    assert cache["hook_embed"].shape == (169, 2, 8)
    assert cache["hidden1.hook_post"].shape == (169, 16) and cache["hidden2.hook_pre"].shape == (169, 16)
    # The embedding of operand b is read at token b + offset.
    assert torch.equal(cache["hook_embed"][:, 1], model.W_E[toks[:, 1]])


@pytest.mark.parametrize(
    "options, name",
    [({"d_model": 30, "n_heads": 4}, "d_model="), ({"init": "xavier"}, "init="), ({"backend": "jax"}, "backend=")],
)
def test_bad_model_options(options, name):
    with pytest.raises(ValueError) as err:
        g.ModelConfig(**options)
    assert str(err.value).startswith(name)


# --- the reference code's architecture options -------------------------------------

_ABSENT = {"blocks.0.attn.b_Q", "blocks.0.attn.b_K", "blocks.0.attn.b_V", "blocks.0.attn.b_O", "unembed.b_U"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_bias_free_attention_and_unembedding_have_no_bias_parameters(backend):
    cfg = g.ModelConfig(backend=backend, d_model=16, d_mlp=24, attn_bias=False, unembed_bias=False)
    model = g.models.build_model(cfg, TASK)
    canonical = set(tl_backend.canonical_parameters(model))
    assert not canonical & _ABSENT
    assert {"blocks.0.mlp.b_in", "blocks.0.mlp.b_out"} <= canonical  # MLP biases stay, as in the reference
    # No backend parameter is a bias other than the MLP's two; the optimiser sees only these.
    n_params = sum(p.numel() for p in model.parameters())
    full = g.models.build_model(g.ModelConfig(backend=backend, d_model=16, d_mlp=24), TASK)
    assert sum(p.numel() for p in full.parameters()) - n_params == 3 * 16 + 16 + TASK.p
    # weights() still reports them, as zeros; the model equals the full one with zero biases.
    w = g.models.weights(model)
    assert _ABSENT <= set(w) and all(torch.count_nonzero(w[k]) == 0 for k in _ABSENT)
    load_weights(full, {k: v.detach() for k, v in w.items()})
    toks = all_tokens(TASK)
    assert torch.allclose(model(toks), full(toks), atol=1e-6)
    assert torch.allclose(fast_forward(model, toks), hooked_forward(model, toks), atol=1e-5)
    # A training step leaves them at zero (there is nothing to update).
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=1.0)
    model(toks)[:, -1].logsumexp(-1).sum().backward()
    opt.step()
    assert all(torch.count_nonzero(g.models.weights(model)[k]) == 0 for k in _ABSENT)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bias_free_model_refuses_non_zero_biases(backend):
    model = g.models.build_model(g.ModelConfig(backend=backend, d_model=16, d_mlp=24, attn_bias=False), TASK)
    w = {k: v.detach().clone() for k, v in g.models.weights(model).items()}
    load_weights(model, w)  # zeros: fine
    w["blocks.0.attn.b_O"] += 1.0
    with pytest.raises(ValueError, match="b_O"):
        load_weights(model, w)


def test_unembed_bias_off_alone_keeps_attention_biases():
    model = g.models.build_model(g.ModelConfig(backend=BACKENDS[0], d_model=16, d_mlp=24, unembed_bias=False), TASK)
    names = set(tl_backend.canonical_parameters(model))
    assert "unembed.b_U" not in names and "blocks.0.attn.b_Q" in names


def test_toeplitz_embedding_is_the_reference_matrix():
    from scipy.linalg import toeplitz

    d_model = 32
    model = g.models.build_model(g.ModelConfig(backend=BACKENDS[0], d_model=d_model, d_mlp=24, embed_init="toeplitz"), TASK)
    w = model.W_E.detach().double()
    v = w[0] * d_model**0.5  # token 0's embedding is the generating vector
    assert ((v >= 0) & (v < 1)).all()  # U[0, 1)
    expected = toeplitz(v.numpy(), v.numpy())[:, : TASK.d_vocab].T / d_model**0.5  # rec.py:59-75, transposed
    assert torch.allclose(w, torch.from_numpy(expected))
    for i in range(w.shape[0]):  # symmetric Toeplitz, no wrap: entry depends on |i - j| only
        for j in range(w.shape[0]):
            assert w[i, j] == w[j, i] == w[0, abs(i - j)]


def test_toeplitz_embedding_starts_with_tokens_close_together():
    task = g.Task(97)
    model = g.models.build_model(g.ModelConfig(backend=BACKENDS[0], embed_init="toeplitz"), task)
    X = torch.nn.functional.normalize(model.W_E.detach()[:97].double(), dim=1)
    cos = X @ X.T
    mean_cos = (cos.sum() - 97) / (97 * 96)
    assert 0.65 < mean_cos < 0.85  # about 0.75; a Gaussian init gives about 0
    with pytest.raises(ValueError, match="embed_init"):
        g.models.build_model(g.ModelConfig(embed_init="toeplitz", d_model=8, n_heads=2), TASK)


def test_reference_mlp_baseline_reads_eq_and_uses_linear_default_init():
    cfg = g.ModelConfig(arch="mlp", d_model=16, d_mlp=32, mlp_input="operands_and_eq", init="linear_default")
    model = g.models.build_model(cfg, TASK)
    toks = all_tokens(TASK)
    logits, cache = model.run_with_cache(toks)
    assert cache["hook_embed"].shape == (169, 3, 16)
    assert model.hidden1.W.shape == (3 * 16, 32)
    # nn.Linear's default: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    for layer, fan_in in ((model.hidden1, 48), (model.hidden2, 32)):
        for t in (layer.W, layer.b):
            assert t.abs().max() <= fan_in**-0.5 and t.abs().max() > 0.8 * fan_in**-0.5
    assert model.unembed.b_U.abs().max() <= 32**-0.5 and torch.count_nonzero(model.unembed.b_U) > 0
    assert abs(model.hidden1.W.std().item() - 48**-0.5 / 3**0.5) < 0.1 * 48**-0.5
    assert abs(model.W_E.std().item() - 16**-0.5) < 0.2 * 16**-0.5  # the embedding stays N(0, 1/d_model)
    # The "=" embedding now matters; in the default baseline it does not.
    with torch.no_grad():
        model.W_E[TASK.eq_token] += 1.0
    assert not torch.allclose(model(toks), logits)
    default = g.models.build_model(g.ModelConfig(arch="mlp", d_model=16, d_mlp=32), TASK)
    before = default(toks)
    with torch.no_grad():
        default.W_E[TASK.eq_token] += 1.0
    assert torch.equal(default(toks), before)


@pytest.mark.parametrize(
    "options, name",
    [
        ({"init": "linear_default"}, "init="),
        ({"mlp_input": "operands_and_eq"}, "mlp_input="),
        ({"arch": "mlp", "attn_bias": False}, "attn_bias="),
        ({"attn_bias": "no"}, "attn_bias="),
        ({"arch": "mlp", "mlp_input": "all"}, "mlp_input="),
    ],
)
def test_reference_options_are_checked(options, name):
    with pytest.raises(ValueError) as err:
        g.ModelConfig(**options)
    assert str(err.value).startswith(name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_models_built_in_threads_equal_models_built_one_by_one(backend):
    # Building swaps sys.stdout and torch's global generator out and back; threads doing
    # it at once used to leave stdout swallowed and give one model the other's seed.
    import sys
    import threading

    task = g.Task(p=13)
    cfg = dict(backend=backend, d_model=16, n_heads=2, d_mlp=32)
    ref = {s: g.models.weights(g.models.build_model(g.ModelConfig(seed=s, **cfg), task)) for s in range(4)}
    stdout, rng = sys.stdout, torch.get_rng_state()
    built: dict[int, list] = {s: [] for s in range(4)}

    def work(s: int) -> None:
        for _ in range(3):
            built[s].append(g.models.build_model(g.ModelConfig(seed=s, **cfg), task))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sys.stdout is stdout
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's generator is untouched
    for s, models in built.items():
        for m in models:
            w = g.models.weights(m)
            assert all(torch.equal(w[k], ref[s][k]) for k in ref[s]), s
