"""The training loop: determinism, schedule, losses, early stopping, callbacks."""

import pytest
import torch

import grok_interp as g
from grok_interp.training import checkpoint_schedule, cross_entropy, loss_fn

from ..helpers import SMALL_MODEL, small_run

pytestmark = pytest.mark.portable


def test_same_seed_same_history_bit_for_bit():
    a, b = small_run(), small_run()
    assert a.history.equals(b.history)
    for name, w in g.models.weights(a.model).items():
        assert torch.equal(w, g.models.weights(b.model)[name])
    c = small_run(seed=1)
    assert not a.history.equals(c.history)


def test_history_columns_and_cadence():
    run = small_run(steps=45, eval_sparse=1)  # dense rows (the adaptive ones: test_adaptive_eval.py)
    assert run.history.columns.tolist()[:5] == ["step", "train_loss", "test_loss", "train_acc", "test_acc"]
    assert run.history["step"].tolist() == [0, 10, 20, 30, 40, 45]
    assert run.checkpoint_steps == [0, 1, 2, 4, 8, 16, 20, 40, 45]


def test_history_step_zero_is_the_initial_model():
    run = small_run(steps=20)
    init = run.model_at(0)
    toks = run.task.tokens(run.split.test_pairs)
    expected = loss_fn(init(toks)[:, -1], run.task.answers(run.split.test_pairs)).item()
    assert run.history["test_loss"].iloc[0] == pytest.approx(expected, rel=1e-5)


def test_warmup_first_step_changes_nothing():
    """The learning-rate multiplier is min(step/10, 1): step 0 uses lr 0."""
    run = small_run(steps=2, checkpoint_every=1)
    w0, w1, w2 = (run.weights_at(s) for s in (0, 1, 2))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert any(not torch.equal(w1[k], w2[k]) for k in w0)


def test_training_reduces_loss_with_mse_too():
    run = small_run(loss="mse", steps=100)
    assert run.history["train_loss"].iloc[-1] < 0.5 * run.history["train_loss"].iloc[0]


def test_stop_after_grok():
    # A threshold any model passes at once: "grokking" at step 0, stop 25 steps later.
    run = small_run(steps=500, grok_threshold=1e-9, stop_after_grok=25)
    assert run.history["step"].iloc[-1] == 25


def test_callbacks_add_history_columns():
    seen = []

    def norm(step, model, ctx):
        seen.append(step)
        return {"w_e_norm": model.W_E.norm().item(), "n_train": len(ctx.train_labels)}

    run = small_run(steps=30, callbacks=[norm])
    assert seen == [0, 10, 20, 30]
    assert (run.history["n_train"] == run.split.n_train).all()
    assert run.history["w_e_norm"].is_monotonic_decreasing  # weight decay 1.0 shrinks W_E


def test_schedule_is_dense_early():
    assert checkpoint_schedule(1000, 100)[:8] == [0, 1, 2, 4, 8, 16, 32, 64]
    assert checkpoint_schedule(1000, 100)[-1] == 1000


def test_mlp_baseline_trains():
    run = small_run(arch="mlp", steps=200)
    assert run.history["train_acc"].iloc[-1] > 0.9


@pytest.mark.parametrize(
    "options, name",
    [
        ({"steps": 0}, "steps="),
        ({"lr": 0}, "lr="),
        ({"loss": "hinge"}, "loss="),
        ({"grok_threshold": 1.5}, "grok_threshold="),
        ({"betas": (0.9, 1.0)}, "betas="),
        ({"device": "tpu"}, "device="),
    ],
)
def test_bad_train_options(options, name):
    with pytest.raises(ValueError) as err:
        g.TrainConfig(**options)
    assert str(err.value).startswith(name)


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match="^colour="):
        g.train_hooked(p=23, steps=5, colour="red", progress=False)


def test_gradient_transforms_run_before_every_optimizer_step():
    """The one seam for gradient filters: ``fn(params)`` sees every trainable
    parameter's gradient after the backward pass and before each optimiser step."""
    calls = []

    def count(params):
        calls.append(len(params))
        assert all(p.grad is not None for p in params if p.requires_grad)

    def zero(params):  # no gradient and no weight decay: Adam moves nothing
        for p in params:
            p.grad.zero_()

    run = small_run(steps=12, weight_decay=0.0, gradient_transforms=[count, zero])
    n_trainable = sum(1 for p in run.model.parameters() if p.requires_grad)
    assert calls == [n_trainable] * 12
    w0 = run.weights_at(0)
    assert all(torch.equal(w0[k], v) for k, v in g.models.weights(run.model).items())
    # Without the transform the same run moves.
    moved = small_run(steps=12, weight_decay=0.0)
    assert any(not torch.equal(w0[k], v) for k, v in g.models.weights(moved.model).items())


def test_gradient_transforms_in_a_batch_apply_to_each_run():
    from grok_interp.many_runs import batch_groups, train_many

    def zero(params):
        for p in params:
            p.grad.zero_()

    specs = [dict(p=23, steps=8, weight_decay=0.0, seed=s, **SMALL_MODEL) for s in (0, 1)]
    assert batch_groups(specs) == [[0, 1]]
    for run in train_many(specs, gradient_transforms=[zero], progress=False):
        w0 = run.weights_at(0)
        assert all(torch.equal(w0[k], v) for k, v in g.models.weights(run.model).items())


def test_float32_cross_entropy_option():
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(50, 7, generator=gen) * 5).requires_grad_(True)
    labels = torch.randint(0, 7, (50,), generator=gen)
    f32 = loss_fn(logits, labels, "ce_float32")
    assert f32.dtype == torch.float32
    assert torch.equal(f32, torch.nn.functional.cross_entropy(logits, labels))  # as the reference computes it
    ce = loss_fn(logits, labels, "ce")
    assert f32.item() == pytest.approx(ce.item(), rel=1e-5)
    with pytest.raises(ValueError, match="loss"):
        g.TrainConfig(loss="ce32")


def _float64_reference(logits, labels):
    x = logits.detach().double().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(x, labels)
    loss.backward()
    return loss.item(), x.grad


@pytest.mark.parametrize("margin", [0.0, 5.0, 30.0, 80.0])
def test_cross_entropy_matches_float64_where_float32_collapses(margin):
    # Rows whose correct class leads by `margin`: at 30 and 80 the correct class's
    # float32 probability is exactly 1, the plain float32 loss is 0 and its gradient
    # for that class vanishes; the float64 loss and gradient do not.
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 11, (64,), generator=gen)
    logits = torch.randn(64, 11, generator=gen) * 3
    logits[:48].scatter_(1, labels[:48, None], logits[:48].amax(1, keepdim=True) + margin)
    x = logits.clone().requires_grad_(True)
    loss = cross_entropy(x, labels)
    loss.backward()
    ref_loss, ref_grad = _float64_reference(logits, labels)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    # Each gradient entry to float32's relative precision (those below float32's
    # smallest normal number are flushed to zero). The correct class's entry is the
    # negated sum of the row's others (a softmax gradient's rows sum to zero): float64's
    # own p_c - 1 loses its digits too once p_c is within ~1e-12 of 1.
    tiny = torch.finfo(torch.float32).tiny
    wrong = ref_grad.scatter(1, labels[:, None], 0.0)
    exact = wrong.scatter(1, labels[:, None], -wrong.sum(1, keepdim=True))
    expected = exact.float().masked_fill(exact.abs() < tiny, 0.0)
    torch.testing.assert_close(x.grad, expected, rtol=1e-5, atol=0.0)
    if margin >= 30:
        plain = logits.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(plain[:48], labels[:48]).backward()
        assert torch.equal(plain.grad[:48].gather(1, labels[:48, None]), torch.zeros(48, 1))  # collapsed
        assert (x.grad[:48].gather(1, labels[:48, None]) < 0).all()  # not collapsed here


def test_float32_loss_gradient_is_torchs_with_subnormals_flushed():
    """``ce_float32`` is ``F.cross_entropy`` on the float32 logits, value and gradient,
    except that gradient entries below float32's smallest normal number are 0 (they make
    CPU matrix products many times slower)."""
    logits = torch.zeros(4, 13)
    logits[:, 0] = torch.tensor([87.0, 86.0, 20.0, 3.0])  # e^-87 = 1.6e-38 / 4 rows: subnormal
    labels = torch.zeros(4, dtype=torch.long)
    plain = logits.clone().requires_grad_(True)
    ref_loss = torch.nn.functional.cross_entropy(plain, labels)
    ref_loss.backward()
    tiny = torch.finfo(torch.float32).tiny
    sub = (plain.grad != 0) & (plain.grad.abs() < tiny)
    assert sub.any()  # torch's own gradient has subnormals here, so the check below can fail
    ours = logits.clone().requires_grad_(True)
    loss = loss_fn(ours, labels, "ce_float32")
    loss.backward()
    assert loss.item() == ref_loss.item()
    assert torch.equal(ours.grad, plain.grad.masked_fill(sub, 0.0))
    # float64 logits: the float32 loss's gradient comes back in float64, flushed at float32's floor.
    wide = logits.double().requires_grad_(True)
    loss_fn(wide, labels, "ce_float32").backward()
    assert wide.grad.dtype == torch.float64
    assert torch.equal(wide.grad, plain.grad.masked_fill(sub, 0.0).double())


def test_cross_entropy_gradient_is_exact_in_float64_and_has_no_subnormals():
    gen = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 5, (3, 4), generator=gen)
    logits = (torch.randn(3, 4, 5, generator=gen, dtype=torch.float64) * 4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: cross_entropy(z, labels), (logits,))
    # Leading axes are rows, like flattening them.
    flat = torch.nn.functional.cross_entropy(logits.detach().reshape(12, 5), labels.reshape(12))
    assert cross_entropy(logits.detach(), labels).item() == pytest.approx(flat.item(), rel=1e-12)
    # Wrong classes 90 below the correct one: their float32 gradient would be subnormal.
    far = torch.full((2, 3), -90.0)
    far[:, 0] = 0.0
    z = far.requires_grad_(True)
    cross_entropy(z, torch.zeros(2, dtype=torch.long)).backward()
    nonzero = z.grad[z.grad != 0]
    assert (nonzero.abs() >= torch.finfo(torch.float32).tiny).all()
    assert torch.equal(z.grad, torch.zeros(2, 3))  # all flushed: their float64 values are ~1e-40


def test_flush_denormals_flushes_inside_and_restores_the_setting_found():
    from grok_interp.training import flush_denormals, flushing_denormals

    before = flushing_denormals()
    tiny = torch.tensor([1e-30])
    for outer in (False, True):
        torch.set_flush_denormal(outer)
        try:
            for inner in (True, False):
                with flush_denormals(inner):
                    assert flushing_denormals() == inner
                    assert ((tiny * 1e-10).item() == 0.0) == inner  # 1e-40 is subnormal in float32
                assert flushing_denormals() == outer
            with pytest.raises(RuntimeError), flush_denormals(True):  # restored on an error too
                raise RuntimeError
            assert flushing_denormals() == outer
        finally:
            torch.set_flush_denormal(before)


def test_the_transformer_keeps_ieee_subnormals_while_training():
    """Its runs are replayed bit for bit; only its loss gradient is flushed (loss_fn)."""
    from grok_interp.training import flushing_denormals

    seen = []
    small_run(steps=10, callbacks=[lambda step, model, ctx: seen.append(flushing_denormals())])
    assert seen and not any(seen)
