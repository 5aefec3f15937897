"""The fast forward of two- and three-layer models against the hooked model: logits,
gradients, many runs at once, the split step and whole training runs."""

import pytest
import torch

import grok_interp as g
from grok_interp import threads, tl_backend
from grok_interp.many_runs import batch_groups, train_many
from grok_interp.training import loop, loss_fn
from grok_interp.training.forwards import (
    FAST_WEIGHTS, fast_forward, fast_logits, fast_weight_names, hooked_forward, select_forward,
)

from ..helpers import BACKENDS, SMALL_MODEL, all_tokens, assert_grads_close, random_bias_model

pytestmark = pytest.mark.portable

TASK = g.Task(p=13, op="add", offset=2)  # the STRIP offset: b's tokens sit above a's
SHAPE = dict(d_model=16, n_heads=4, d_mlp=24)
NO_BIASES = dict(attn_bias=False, unembed_bias=False)


def _model(backend=BACKENDS[0], seed=0, **options):
    return random_bias_model(backend, TASK, SHAPE, seed, **options)


def _grads(model, fwd, toks, labels, loss="ce"):
    model.zero_grad()
    out = fwd(model, toks)
    loss_fn(out, labels, loss).backward()
    # canonical names (blocks.0.attn.b_K, ...) under either TransformerLens backend
    params = tl_backend.canonical_parameters(model)
    assert len({id(p) for p in params.values()}) == len(list(model.parameters()))
    return out.detach(), {k: p.grad.clone() for k, p in params.items() if p.grad is not None}


def test_weight_names():
    assert fast_weight_names(1) == FAST_WEIGHTS
    names = fast_weight_names(3)
    assert "blocks.2.mlp.W_out" in names and names[:2] == FAST_WEIGHTS[:2] and names[-2:] == FAST_WEIGHTS[-2:]
    assert set(names) <= set(g.models.weights(_model(n_layers=3)))


@pytest.mark.parametrize("n_layers", [2, 3])
@pytest.mark.parametrize("biases", [{}, NO_BIASES], ids=["biases", "no_biases"])
@pytest.mark.parametrize("act_fn", ["relu", "gelu"])
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_logits_and_gradients_equal_hooked(n_layers, biases, act_fn, loss):
    model = _model(n_layers=n_layers, act_fn=act_fn, **biases)
    toks, labels = all_tokens(TASK), TASK.answers(TASK.all_pairs())
    ref_out, ref = _grads(model, hooked_forward, toks, labels, loss)
    out, got = _grads(model, fast_forward, toks, labels, loss)
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert_grads_close(got, ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend(backend):
    model = _model(backend, n_layers=2, freeze_biases=True)
    toks, labels = all_tokens(TASK), TASK.answers(TASK.all_pairs())
    ref_out, ref = _grads(model, hooked_forward, toks, labels)
    out, got = _grads(model, fast_forward, toks, labels)
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert_grads_close(got, ref)


def test_unfused_equals_fused():
    model = _model(n_layers=2)
    w = {k: v[None] for k, v in g.models.weights(model).items()}
    toks = all_tokens(TASK)[None]
    assert torch.allclose(fast_logits(w, toks, fused=True), fast_logits(w, toks, fused=False), atol=1e-5)


def test_many_models_at_once_equal_each_model_alone():
    models = [
        _model(seed=0, n_layers=2),
        _model(seed=1, n_layers=2, init="tl"),
        _model(seed=2, n_layers=2, embed_init="circulant", pos_embed=False),
    ]
    pairs = TASK.all_pairs()
    gen = torch.Generator().manual_seed(0)
    toks = torch.stack([TASK.tokens(pairs[torch.randperm(len(pairs), generator=gen)[:50]]) for _ in models])
    names = fast_weight_names(2)
    w = {k: torch.stack([g.models.weights(m)[k] for m in models]) for k in names}
    out = fast_logits(w, toks)
    assert out.shape == (3, 50, 13)
    sum(out[k].square().mean() for k in range(len(models))).backward()  # each run's gradient: its own term
    stacked = [{k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None} for m in models]
    for k, m in enumerate(models):
        assert torch.allclose(out[k], hooked_forward(m, toks[k]), atol=1e-5), k
        m.zero_grad()
        hooked_forward(m, toks[k]).square().mean().backward()
        assert_grads_close(stacked[k], {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})


def test_select_forward_picks_the_fast_forward():
    assert select_forward(g.ModelConfig(n_layers=2), "auto")[1] == "fast"
    assert select_forward(g.ModelConfig(n_layers=3), "compile")[1] == "compile"


def _assert_close_runs(a, b):
    assert a.history["step"].tolist() == b.history["step"].tolist()
    for col in ("train_loss", "test_loss", "train_acc", "test_acc"):
        torch.testing.assert_close(torch.tensor(a.history[col].to_numpy()), torch.tensor(b.history[col].to_numpy()),
                                   rtol=1e-5, atol=1e-5, msg=col)
    wa, wb = g.models.weights(a.model), g.models.weights(b.model)
    for k in wa:
        if not k.endswith("b_K"):  # its true gradient is 0: Adam turns rounding noise into full-size steps
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5, msg=k)


RUN = dict(p=23, steps=20, eval_every=5, checkpoint_every=10, n_layers=2, **SMALL_MODEL)


def test_train_hooked_fast_split_step_equals_hooked(monkeypatch, caplog):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)  # the fast forward's batch in two parts
    hooked = g.train_hooked(forward="hooked", progress=False, **RUN)
    with caplog.at_level("INFO", logger="grok_interp"):
        fast = g.train_hooked(forward="auto", progress=False, **RUN)
    assert "with the fast forward" in caplog.text and "batch in 2 parts" in caplog.text
    _assert_close_runs(fast, hooked)


def test_split_gradients_equal_one_backward():
    run = g.train_hooked(progress=False, **{**RUN, "steps": 1})
    prepared = g.runs.prepare_run(run.config, forward=fast_forward)
    state = prepared.run_state()
    params = [p for grp in state.optimizer.param_groups for p in grp["params"]]
    _, loss, grads = loop.FullBatchStep(parts=2, workers=1).forward([state])[0]
    state.optimizer.zero_grad(set_to_none=True)
    ctx = state.context
    whole = loop.loss_fn(hooked_forward(state.model, ctx.train_tokens), ctx.train_labels, ctx.loss)
    whole.backward()
    torch.testing.assert_close(loss, whole.detach(), rtol=1e-5, atol=1e-7)
    for p, gsplit in zip(params, grads):
        torch.testing.assert_close(gsplit, p.grad, rtol=1e-4, atol=1e-6)


def test_train_many_batches_two_layer_runs():
    specs = [{**RUN, "seed": 0}, {**RUN, "seed": 1, "weight_decay": 0.1}, {**RUN, "n_layers": 1}]
    assert batch_groups(specs, max_batch=8) == [[0, 1], [2]]  # the layer count is part of the batch key
    many = train_many(specs[:2], progress=False, max_batch=8)
    for spec, run in zip(specs, many):
        _assert_close_runs(run, g.train_hooked(progress=False, **{**spec, "forward": "hooked"}))


def test_compiled_forward_runs_the_eager_fast_forward(monkeypatch):
    """``forward="compile"`` compiles only the one-layer graph; more layers run eagerly."""
    import grok_interp.training.forwards as fw

    def never(*args, **kwargs):
        raise AssertionError("compiled")

    monkeypatch.setattr(fw, "_compiled", {"fn": never})
    model = _model(n_layers=2)
    toks = all_tokens(TASK)
    assert torch.equal(fw.compiled_forward(model, toks), fast_forward(model, toks))
