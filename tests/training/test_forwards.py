"""The fast training forward against the hooked model: logits, gradients, many runs at once."""

import pytest
import torch

import grok_interp as g
from grok_interp import tl_backend
from grok_interp.training.forwards import (
    FAST_WEIGHTS, fast_forward, fast_logits, fast_logits_one, fast_weight_names, fold_unembed, hooked_forward,
)
from grok_interp.training import loss_fn

from ..helpers import BACKENDS, all_tokens, assert_grads_close, random_bias_model

pytestmark = pytest.mark.portable

TASK = g.Task(p=13, op="add", offset=2)
SHAPE = dict(d_model=16, n_heads=4, d_mlp=24)


def _model(backend, seed=0, **options):
    return random_bias_model(backend, TASK, SHAPE, seed, **options)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_fast_forward_gradients_equal_hooked_gradients(backend, loss):
    model = _model(backend)
    toks, labels = all_tokens(TASK), TASK.answers(TASK.all_pairs())
    grads = {}
    for name, fwd in (("hooked", hooked_forward), ("fast", fast_forward)):
        model.zero_grad()
        loss_fn(fwd(model, toks), labels, loss).backward()
        grads[name] = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    assert_grads_close(grads["fast"], grads["hooked"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_models_at_once_equal_each_model_alone(backend):
    # Same shapes, different everything else; each run reads its own tokens.
    models = [
        _model(backend, seed=0),
        _model(backend, seed=1, init="tl"),
        _model(backend, seed=2, embed_init="circulant", pos_embed=False),
        _model(backend, seed=3, freeze_biases=True),
    ]
    pairs = TASK.all_pairs()
    gen = torch.Generator().manual_seed(0)
    toks = torch.stack([TASK.tokens(pairs[torch.randperm(len(pairs), generator=gen)[:50]]) for _ in models])
    w = {k: torch.stack([g.models.weights(m)[k] for m in models]) for k in FAST_WEIGHTS}
    out = fast_logits(w, toks)
    assert out.shape == (4, 50, 13)
    for k, m in enumerate(models):
        assert torch.allclose(out[k], hooked_forward(m, toks[k]), atol=1e-5), k
    # Gradients reach each model's own parameters, and only through its own logits.
    out[1].sum().backward()
    w_u = [tl_backend.canonical_parameters(m)["unembed.W_U"] for m in models]
    assert w_u[0].grad is None or torch.count_nonzero(w_u[0].grad) == 0
    assert torch.count_nonzero(w_u[1].grad) > 0


def test_fast_forward_on_large_logits():
    """Float rounding stays small at p=113 sizes with trained-like weight scales."""
    task = g.Task(p=113)
    model = g.models.build_model(g.ModelConfig(seed=3), task)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    toks = task.tokens(task.all_pairs()[::7])
    ref = hooked_forward(model, toks)
    assert ref.abs().max() > 10
    assert torch.allclose(fast_forward(model, toks), ref, atol=1e-5 * ref.abs().max().item())


def test_compile_failure_falls_back_to_the_eager_fast_forward(monkeypatch, caplog):
    import grok_interp.training.forwards as fw

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(fw, "_compiled", {"fn": broken})
    model = _model(BACKENDS[0])
    toks = all_tokens(TASK)
    with caplog.at_level("WARNING", logger="grok_interp.training.forwards"):
        out = fw.compiled_forward(model, toks)
    assert "no C++ compiler" in caplog.text
    assert torch.equal(out, fast_forward(model, toks))
    assert fw._compiled["fn"] is None  # given up for this process: no retry every step


@pytest.mark.slow
@pytest.mark.skipif(
    not tl_backend.HAS_HOOKED_TRANSFORMER, reason="compiles fast_logits, which does not depend on TransformerLens: once, under 3.x"
)
def test_compiled_forward_equals_fast_forward():
    import grok_interp.training.forwards as fw

    model = _model(BACKENDS[0], freeze_biases=True)
    toks, labels = all_tokens(TASK), TASK.answers(TASK.all_pairs())
    grads = []
    for fwd in (fw.compiled_forward, fast_forward):
        model.zero_grad()
        out = fwd(model, toks)
        loss_fn(out, labels).backward()
        grads.append((out.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}))
    (a, ga), (b, gb) = grads
    assert torch.allclose(a, b, atol=1e-5)
    assert ga.keys() == gb.keys()
    for k in ga:
        assert torch.allclose(ga[k], gb[k], atol=1e-6), k


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cross_entropy_gradient_has_no_subnormal_floats(dtype):
    """A fitted example's wrong classes get float64 probabilities ~e^-100: their gradient,
    cast back to float32, would be subnormal (slow CPU arithmetic); it must be 0 instead."""
    logits = torch.zeros(4, 13, dtype=dtype)
    logits[:, 0] = torch.tensor([100.0, 95.0, 20.0, 3.0], dtype=dtype)
    logits.requires_grad_(True)
    loss_fn(logits, torch.zeros(4, dtype=torch.long)).backward()
    grad, tiny = logits.grad, torch.finfo(dtype).tiny
    assert grad.dtype == dtype
    assert not ((grad != 0) & (grad.abs() < tiny)).any()
    # Everything representable is the exact float64 gradient, rounded: (softmax - onehot) / n.
    ref = (torch.softmax(logits.detach().double(), -1) - torch.nn.functional.one_hot(torch.zeros(4, dtype=torch.long), 13)) / 4
    normal = ref.abs() >= tiny
    assert torch.allclose(grad[normal].double(), ref[normal], rtol=1e-6, atol=0)
    assert torch.count_nonzero(grad[:2, 1:]) == (0 if dtype == torch.float32 else 24)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", [
    {}, {"act_fn": "gelu"}, {"attn_bias": False, "unembed_bias": False}, {"pos_embed": False},
    {"d_mlp": 1100},  # more than two MLP chunks
])
@pytest.mark.parametrize("fused", [True, False])
def test_the_one_model_path_equals_the_stacked_algebra(backend, options, fused):
    # fast_forward runs one-layer models through fast_logits_one (no run axis); it must
    # give the stacked fast_logits' values and gradients on a run axis of length one.
    model = _model(backend, **options)
    toks, labels = all_tokens(TASK), TASK.answers(TASK.all_pairs())
    params = [p for p in model.parameters() if p.requires_grad]
    w = g.models.weights(model)
    one = fast_logits_one(w, toks, model.cfg.act_fn, fused=fused)
    stacked = fast_logits({k: w[k][None] for k in FAST_WEIGHTS}, toks[None], model.cfg.act_fn, fused=fused)[0]
    assert one.shape == stacked.shape == (len(toks), TASK.d_vocab_out)
    assert torch.allclose(one, stacked, rtol=0, atol=1e-6 * stacked.abs().max().item())
    g_one = torch.autograd.grad(loss_fn(one, labels), params, allow_unused=True)
    g_stacked = torch.autograd.grad(loss_fn(stacked, labels), params, allow_unused=True)
    assert [a is None for a in g_one] == [b is None for b in g_stacked]
    assert_grads_close({i: a for i, a in enumerate(g_one) if a is not None},
                       {i: b for i, b in enumerate(g_stacked) if b is not None}, rel=1e-6)
    if model.cfg.n_layers == 1:
        assert torch.equal(fast_forward(model, toks), fast_logits_one(w, toks, model.cfg.act_fn))


@pytest.mark.parametrize("options", [
    dict(),                                                                # [E[a], E[b]], N(0, 1/d_model)
    dict(mlp_input="operands_and_eq", init="linear_default"),              # the reference MLP, with biases
    dict(mlp_input="operands_and_eq", init="linear_default", embed_init="onehot"),  # frozen one-hot
])
def test_the_mlp_fast_forward_equals_the_mlp_baseline(options):
    """The table form of the MLP baseline's first layer gives the model's own logits and
    gradients (the biases made random so that each one is exercised), and leaves a
    frozen embedding without a gradient."""
    from grok_interp.config import ModelConfig
    from grok_interp.models import build_model
    from grok_interp.training.forwards import mlp_fast_forward, select_forward

    cfg = ModelConfig(arch="mlp", d_model=16, d_mlp=24, seed=3, **options)
    model = build_model(cfg, TASK)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".b") or name.endswith("b_U"):
                p.normal_(0, 0.5)
    assert select_forward(cfg) == (mlp_fast_forward, "fast")
    toks, labels = all_tokens(TASK), TASK.answers(TASK.all_pairs())
    toks[:, 2] = torch.arange(len(toks)) % TASK.d_vocab  # "=" varied too: each input's table must be its own
    logits, grads = {}, {}
    for name, fwd in (("hooked", hooked_forward), ("fast", mlp_fast_forward)):
        model.zero_grad()
        logits[name] = fwd(model, toks)
        loss_fn(logits[name], labels).backward()
        grads[name] = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    scale = logits["hooked"].abs().max().item()
    assert (logits["fast"] - logits["hooked"]).abs().max().item() <= 1e-5 * scale
    assert ("embed.W_E" in grads["fast"]) == (options.get("embed_init") != "onehot")
    assert_grads_close(grads["fast"], grads["hooked"])


def test_fold_unembed_counts_the_products_per_input():
    # Nanda's shape (d_model 128, 4 x 32 heads, d_mlp 512). Folded: (C + d_mlp) * V_padded;
    # unfolded: C * d_model (none for the identity) + d_mlp * d_model + d_model * V_padded.
    assert fold_unembed(128, 128, 512, 113)          # 640 * 128 = 81920 <= 16384 + 65536 + 16384
    assert not fold_unembed(128, 128, 512, 211)      # 640 * 224 = 143360 > 16384 + 65536 + 28672
    assert fold_unembed(128, 128, 512, 97, identity=True)       # 640 * 112 = 71680 <= 65536 + 14336
    assert fold_unembed(128, 128, 512, 113, identity=True)      # 81920 == 65536 + 16384: a tie folds
    assert not fold_unembed(128, 128, 512, 211, identity=True)  # 143360 > 65536 + 28672


# d_model 8: V = 13 (16 padded) is large against d_model, so the unembedding is not folded;
# at the module's SHAPE (d_model 16) it is. Both must give the hooked logits and gradients.
@pytest.mark.parametrize("shape, folded", [(SHAPE, True), (dict(d_model=8, n_heads=2, d_mlp=24), False)])
@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("fused", [True, False])
def test_folded_and_unfolded_unembedding_equal_hooked(shape, folded, n_layers, fused):
    model = random_bias_model(BACKENDS[0], TASK, shape, 0, n_layers=n_layers)
    cfg = model.cfg
    C = cfg.n_heads * cfg.d_head if n_layers == 1 else cfg.d_model
    assert fold_unembed(C, cfg.d_model, cfg.d_mlp, TASK.d_vocab_out, identity=n_layers > 1) == folded
    toks, labels = all_tokens(TASK), TASK.answers(TASK.all_pairs())
    w = g.models.weights(model)
    named = {k: p for k, p in tl_backend.canonical_parameters(model).items() if p.requires_grad}
    names, params = list(named), list(named.values())
    out = fast_logits({k: w[k][None] for k in fast_weight_names(n_layers)}, toks[None], cfg.act_fn, fused=fused)[0]
    ref = hooked_forward(model, toks)
    assert torch.allclose(out, ref, atol=1e-5)
    got = torch.autograd.grad(loss_fn(out, labels), params, allow_unused=True)
    want = torch.autograd.grad(loss_fn(ref, labels), params, allow_unused=True)
    assert_grads_close({k: a for k, a in zip(names, got) if a is not None},
                       {k: b for k, b in zip(names, want) if b is not None})
    if n_layers == 1:
        one = fast_logits_one(w, toks, cfg.act_fn, fused=fused)
        assert torch.allclose(one, ref, atol=1e-5)
