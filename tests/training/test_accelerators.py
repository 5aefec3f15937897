"""Grokfast filters, StableMax and the perpendicular gradient: hand computations on tiny
tensors, then runs that use them (recorded in the config, resumed exactly, batched)."""

import io
import math

import pytest
import torch

import grok_interp as g
from grok_interp.training.accelerators import (
    GrokfastEMA,
    GrokfastMA,
    PerpendicularGradient,
    log_stablemax,
    stablemax,
    stablemax_cross_entropy,
)
from grok_interp.training import loss_fn

from ..helpers import SMALL_MODEL, small_run

pytestmark = pytest.mark.portable


def _steps(transform, grads):
    """Feed the gradients ``grads`` (one tensor per step) to ``transform`` on one
    parameter; return the filtered gradient of each step."""
    w = torch.nn.Parameter(torch.zeros_like(grads[0]))
    out = []
    for grad in grads:
        w.grad = grad.clone()
        transform([w])
        out.append(w.grad.clone())
    return out


GRADS = [torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.0]), torch.tensor([5.0, 4.0])]


def test_grokfast_ema_three_steps_by_hand():
    # alpha 0.5, lamb 2: h1 = g1; h2 = (h1 + g2) / 2; h3 = (h2 + g3) / 2; out = g + 2 h.
    h1 = torch.tensor([1.0, -2.0])
    h2 = torch.tensor([2.0, -1.0])
    h3 = torch.tensor([3.5, 1.5])
    want = [GRADS[0] + 2 * h1, GRADS[1] + 2 * h2, GRADS[2] + 2 * h3]
    got = _steps(GrokfastEMA(alpha=0.5, lamb=2.0), GRADS)
    for a, b in zip(got, want):
        assert torch.allclose(a, b)
    assert [x.tolist() for x in got] == [[3.0, -6.0], [7.0, -2.0], [12.0, 7.0]]


def test_grokfast_ma_waits_for_a_full_window_then_adds_its_mean():
    # window 2, lamb 1: step 1 unfiltered; then g + mean of the last two gradients.
    got = _steps(GrokfastMA(window=2, lamb=1.0), GRADS)
    assert [x.tolist() for x in got] == [[1.0, -2.0], [3.0 + 2.0, 0.0 - 1.0], [5.0 + 4.0, 4.0 + 2.0]]
    # window 1 is g + lamb g from the first step.
    assert [x.tolist() for x in _steps(GrokfastMA(window=1, lamb=5.0), GRADS[:1])] == [[6.0, -12.0]]


def test_filter_state_lives_in_the_optimizer_and_round_trips():
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([w])
    f = GrokfastEMA(alpha=0.5, lamb=2.0, optimizer=opt)
    w.grad = GRADS[0].clone()
    f([w])
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)  # as a resume state's optimizer.pt
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    assert torch.equal(saved["state"]["grokfast_ema"]["ema"][0], GRADS[0])
    # A fresh optimiser loaded from that state continues the same filter.
    w2 = torch.nn.Parameter(torch.zeros(2))
    opt2 = torch.optim.AdamW([w2])
    opt2.load_state_dict(saved)
    f2 = GrokfastEMA(alpha=0.5, lamb=2.0, optimizer=opt2)
    for p, fil in ((w, f), (w2, f2)):
        p.grad = GRADS[1].clone()
        fil([p])
    assert torch.equal(w.grad, w2.grad) and w.grad.tolist() == [7.0, -2.0]
    assert f2.state_dict()["ema"][0].tolist() == [2.0, -1.0]


def test_stablemax_values_by_hand():
    x = torch.tensor([[0.0, 1.0, -1.0], [2.0, -3.0, 0.5]], dtype=torch.float64)
    # s(x) = x + 1 (x >= 0), 1 / (1 - x) (x < 0)
    s = torch.tensor([[1.0, 2.0, 0.5], [3.0, 0.25, 1.5]], dtype=torch.float64)
    want = s / s.sum(-1, keepdim=True)
    assert torch.allclose(stablemax(x), want)
    assert torch.allclose(stablemax(x)[0], torch.tensor([2 / 7, 4 / 7, 1 / 7], dtype=torch.float64))
    assert torch.allclose(log_stablemax(x), want.log())
    labels = torch.tensor([1, 2])
    loss = stablemax_cross_entropy(x, labels)
    assert loss.item() == pytest.approx(-(math.log(4 / 7) + math.log(1.5 / 4.75)) / 2)
    # The order of the logits is kept: StableMax and softmax pick the same class.
    assert torch.equal(stablemax(x).argmax(-1), x.argmax(-1))


def test_stablemax_gradient_by_hand():
    # d/dx_j of -log(s(x_y) / S) = s'(x_j) / S - [j = y] s'(x_y) / s(x_y),
    # s' = 1 for x >= 0 and 1 / (1 - x)^2 for x < 0. x = (0, 1, -1), y = 1: S = 3.5.
    x = torch.tensor([[0.0, 1.0, -1.0]], dtype=torch.float64, requires_grad=True)
    stablemax_cross_entropy(x, torch.tensor([1])).backward()
    want = torch.tensor([[1 / 3.5, 1 / 3.5 - 1 / 2, 0.25 / 3.5]], dtype=torch.float64)
    assert torch.allclose(x.grad, want)
    # Through loss_fn: float32 logits, float64 loss, the same gradient.
    x32 = torch.tensor([[0.0, 1.0, -1.0]], requires_grad=True)
    loss = loss_fn(x32, torch.tensor([1]), "stablemax")
    assert loss.dtype == torch.float64
    loss.backward()
    assert torch.allclose(x32.grad, want.float())


def test_stablemax_gradient_is_finite_at_the_pole_of_the_unused_branch():
    x = torch.tensor([[1.0, 0.0, -0.5]], dtype=torch.float64, requires_grad=True)  # 1 / (1 - x) has a pole at 1
    stablemax_cross_entropy(x, torch.tensor([0])).backward()
    assert torch.isfinite(x.grad).all()


def test_perpendicular_gradient_by_hand():
    w = torch.nn.Parameter(torch.tensor([[1.0, 0.0]]))
    w.grad = torch.tensor([[1.0, 1.0]])
    PerpendicularGradient()([w])
    # (1, 1) minus its part along (1, 0) is (0, 1), rescaled to |(1, 1)| = sqrt(2).
    assert torch.allclose(w.grad, torch.tensor([[0.0, math.sqrt(2)]]))
    w.grad = torch.tensor([[1.0, 1.0]])
    PerpendicularGradient(rescale=False)([w])
    assert torch.allclose(w.grad, torch.tensor([[0.0, 1.0]]))


def test_perpendicular_gradient_is_orthogonal_per_tensor_and_keeps_the_norm():
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=torch.float64)) for shape in ((4, 3), (5,))]
    plain = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    for p, gr in zip(params, plain):
        p.grad = gr.clone()
    PerpendicularGradient()(params)
    for p, gr in zip(params, plain):
        assert abs(torch.dot(p.detach().reshape(-1), p.grad.reshape(-1)).item()) < 1e-12
        assert p.grad.norm().item() == pytest.approx(gr.norm().item())


def test_perpendicular_gradient_leaves_orthogonal_gradients_and_zero_weights_alone():
    w = torch.nn.Parameter(torch.tensor([3.0, 0.0, 0.0]))
    w.grad = torch.tensor([0.0, 2.0, -1.0])  # already perpendicular to w
    b = torch.nn.Parameter(torch.zeros(3))  # a bias at initialisation
    b.grad = torch.tensor([1.0, 2.0, 3.0])
    PerpendicularGradient()([w, b])
    assert torch.allclose(w.grad, torch.tensor([0.0, 2.0, -1.0]))
    assert torch.equal(b.grad, torch.tensor([1.0, 2.0, 3.0]))


def test_config_options_are_checked_and_defaults_filled_in():
    assert g.TrainConfig().grokfast is None and g.TrainConfig().grokfast_lamb is None
    assert g.TrainConfig(grokfast="ema").grokfast_lamb == 2.0
    assert g.TrainConfig(grokfast="ma").grokfast_lamb == 5.0
    assert g.TrainConfig(grokfast="ma", grokfast_lamb=1).grokfast_lamb == 1.0
    for bad, match in [
        (dict(grokfast="kalman"), "^grokfast="),
        (dict(grokfast="ema", grokfast_alpha=1.0), "^grokfast_alpha="),
        (dict(grokfast="ma", grokfast_window=0), "^grokfast_window="),
        (dict(grokfast="ema", grokfast_lamb=-1.0), "^grokfast_lamb="),
        (dict(perpendicular_grad="yes"), "^perpendicular_grad="),
        (dict(optimizer="lion"), "^optimizer="),
        (dict(momentum=0.9), "^momentum=.*optimizer='sgd'"),
        (dict(loss="softmax"), "^loss="),
    ]:
        with pytest.raises(ValueError, match=match):
            g.TrainConfig(**bad)


@pytest.mark.parametrize(
    "options",
    [
        dict(grokfast="ema"),
        dict(grokfast="ma", grokfast_window=5),
        dict(loss="stablemax"),
        dict(loss="stablemax", perpendicular_grad=True, weight_decay=0.0),
        dict(optimizer="sgd", momentum=0.9, lr=0.1, weight_decay=0.0, perpendicular_grad=True),
    ],
    ids=["ema", "ma", "stablemax", "stablemax+perp", "sgd+perp"],
)
def test_each_option_trains_and_reloads_with_its_config(tmp_path, options):
    options = {"lr": 3e-3, **options}
    run = small_run(out=tmp_path / "r", steps=80, **options)
    h = run.history
    assert h["train_loss"].iloc[-1] < 0.8 * h["train_loss"].iloc[0]
    loaded = g.load_run(tmp_path / "r")
    assert loaded.config == run.config
    for k, v in options.items():
        assert getattr(loaded.config.train, k) == v


def test_options_change_training():
    base = small_run(steps=30)
    for opts in (dict(grokfast="ema"), dict(loss="stablemax"), dict(perpendicular_grad=True)):
        other = small_run(steps=30, **opts)
        assert not torch.equal(g.models.weights(base.model)["unembed.W_U"], g.models.weights(other.model)["unembed.W_U"]), opts


@pytest.mark.parametrize("options", [dict(grokfast="ema"), dict(grokfast="ma", grokfast_window=7)], ids=["ema", "ma"])
def test_resumed_grokfast_run_equals_the_uninterrupted_one_bit_for_bit(tmp_path, options):
    # Dense rows: an extended adaptive run also keeps the row of its old last step
    # (tests/training/test_adaptive_eval.py), which is not what this test is about.
    options = {**options, "eval_sparse": 1}
    full = small_run(steps=60, checkpoint_every=20, **options)
    small_run(out=tmp_path / "r", steps=30, checkpoint_every=20, **options)
    state = torch.load(next((tmp_path / "r").glob("state-*")) / "optimizer.pt", weights_only=True)
    assert ("grokfast_ema" if options["grokfast"] == "ema" else "grokfast_ma") in state["state"]
    resumed = small_run(out=tmp_path / "r", steps=60, checkpoint_every=20, resume=True, **options)
    assert resumed.history.equals(full.history)
    for name, w in g.models.weights(full.model).items():
        assert torch.equal(w, g.models.weights(resumed.model)[name]), name


def test_resume_with_other_accelerator_settings_is_refused(tmp_path):
    small_run(out=tmp_path / "r", steps=20, grokfast="ema")
    with pytest.raises(ValueError, match="^resume=.*grokfast_lamb"):
        small_run(out=tmp_path / "r", steps=40, grokfast="ema", grokfast_lamb=3.0, resume=True)


def test_batched_runs_with_accelerators_equal_runs_one_by_one():
    from grok_interp.many_runs import batch_groups, train_many

    base = dict(p=23, steps=40, eval_every=10, checkpoint_every=20, **SMALL_MODEL)
    specs = [
        {**base, "grokfast": "ema"},
        {**base, "seed": 1, "grokfast": "ma", "grokfast_window": 5, "grokfast_lamb": 2.0},
        {**base, "seed": 2, "loss": "stablemax", "perpendicular_grad": True, "weight_decay": 0.0},
        {**base, "seed": 3},
    ]
    assert batch_groups(specs) == [[0, 1, 2, 3]]
    for spec, run in zip(specs, train_many(specs, progress=False)):
        one = g.train_hooked(progress=False, **spec)
        assert run.history["step"].tolist() == one.history["step"].tolist()
        for col in ("train_loss", "test_loss", "train_acc", "test_acc"):
            assert torch.allclose(torch.tensor(run.history[col].to_numpy()), torch.tensor(one.history[col].to_numpy()),
                                  rtol=1e-4, atol=1e-5), (spec, col)
        wa, wb = g.models.weights(run.model), g.models.weights(one.model)
        for name in set(wa) - {"blocks.0.attn.b_K"}:  # b_K: rounding noise only (see test_batched)
            assert torch.allclose(wa[name], wb[name], rtol=1e-4, atol=1e-5), (spec, name)


def test_cli_flags_reach_the_config(tmp_path):
    from grok_interp.cli import main

    out = tmp_path / "cli"
    rc = main(["train", "--p", "23", "--steps", "12", "--d-model", "32", "--d-mlp", "64", "--quiet",
               "--grokfast", "ema", "--grokfast-alpha", "0.9", "--loss", "stablemax", "--perpendicular-grad",
               "--weight-decay", "0", "--out", str(out)])
    assert rc == 0
    t = g.load_run(out).config.train
    assert (t.grokfast, t.grokfast_alpha, t.grokfast_lamb, t.loss, t.perpendicular_grad) == ("ema", 0.9, 2.0,
                                                                                            "stablemax", True)
