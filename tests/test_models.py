"""The model factory on every available backend, the fast forward and the MLP baseline."""

import pytest
import torch

import grok_interp as g
from grok_interp import _tl
from grok_interp.forward import fast_forward, hooked_forward, select_forward
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
    {"act_fn": "gelu"},
    {"act_fn": "gelu_new"},
    {"act_fn": "silu"},
    {"n_heads": 2, "d_head": 5},
]


def _randomise_biases(model):
    """Biases start at zero; give them values so the test sees every term."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in _tl.canonical_parameters(model).items():
            if p.requires_grad and name.rsplit(".", 1)[-1].startswith("b"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", FAST_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_fast_forward_equals_hooked_forward(backend, options):
    cfg = g.ModelConfig(**{"backend": backend, "d_model": 16, "n_heads": 4, "d_mlp": 24, **options})
    model = g.build_model(cfg, TASK)
    _randomise_biases(model)
    toks = all_tokens(TASK)
    assert torch.allclose(fast_forward(model, toks), hooked_forward(model, toks), atol=1e-5)


@pytest.mark.parametrize("options", [{"n_layers": 2}, {"normalization": "LN"}, {"arch": "mlp"}])
def test_unsupported_architectures_fall_back_to_hooked_forward(options, caplog):
    cfg = g.ModelConfig(**options)
    fwd, name = select_forward(cfg, "auto")
    assert name == "hooked" and fwd is hooked_forward
    with pytest.raises(ValueError, match="forward='fast'"):
        select_forward(cfg, "fast")


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_roundtrip_through_canonical_layout(backend):
    cfg = g.ModelConfig(backend=backend, d_model=16, d_mlp=24, normalization="LN", n_layers=2)
    a, b = g.build_model(cfg, TASK), g.build_model(g.ModelConfig(**{**cfg.to_dict(), "seed": 5}), TASK)
    toks = all_tokens(TASK)
    assert not torch.allclose(a(toks), b(toks))
    load_weights(b, {k: v.detach() for k, v in g.weights(a).items()})
    assert torch.equal(a(toks), b(toks))


def test_bridge_canonical_weights_match_transformer_lens_get_params():
    model = g.build_model(g.ModelConfig(backend="bridge", d_model=16, d_mlp=24, normalization="LN"), TASK)
    ours, theirs = g.weights(model), model.get_params()
    for name, value in theirs.items():
        assert torch.equal(ours[name], value), name


@pytest.mark.skipif(len(BACKENDS) < 2, reason="HookedTransformer is not in this TransformerLens")
def test_both_backends_build_the_same_model_from_the_same_seed():
    toks = all_tokens(TASK)
    hooked, bridge = (g.build_model(g.ModelConfig(backend=b, d_model=16, d_mlp=24), TASK) for b in BACKENDS)
    assert backend_of(hooked) == "hooked" and backend_of(bridge) == "bridge"
    assert torch.allclose(hooked(toks), bridge(toks), atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hook_names_and_accessors_users_know(backend):
    model = g.build_model(g.ModelConfig(backend=backend, d_model=16, d_mlp=24), TASK)
    _, cache = model.run_with_cache(all_tokens(TASK))
    n = 13 * 13
    assert cache["blocks.0.attn.hook_pattern"].shape == (n, 4, 3, 3)
    assert cache["blocks.0.mlp.hook_post"].shape == (n, 3, 24)
    assert model.W_E.shape == (TASK.d_vocab, 16) and model.W_U.shape == (16, 13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_frozen_parameters_stay_put_and_are_not_optimised(backend):
    cfg = g.ModelConfig(backend=backend, d_model=16, d_mlp=24, embed_init="onehot", pos_embed=False, freeze_biases=True)
    model = g.build_model(cfg, TASK)
    params = _tl.canonical_parameters(model)
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
    model = g.build_model(g.ModelConfig(backend=BACKENDS[0], d_model=16, d_mlp=24, embed_init="circulant"), TASK)
    w = model.W_E.detach()
    for i in range(1, w.shape[0]):
        assert torch.equal(w[i], torch.roll(w[0], i))


def test_nanda_init_has_the_documented_scale():
    model = g.build_model(g.ModelConfig(backend=BACKENDS[0], d_model=128), g.Task(p=113))
    w_in = model.blocks[0].mlp.W_in.detach()
    assert abs(w_in.std().item() - 128**-0.5) < 0.01 * 128**-0.5 * 10
    assert torch.count_nonzero(model.blocks[0].mlp.b_in) == 0


def test_onehot_embedding_needs_room():
    with pytest.raises(ValueError, match="embed_init"):
        g.build_model(g.ModelConfig(embed_init="onehot", d_model=8, n_heads=2), TASK)


def test_mlp_baseline_is_hooked():
    model = g.build_model(g.ModelConfig(arch="mlp", d_model=8, d_mlp=16), TASK)
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
