"""One optimiser module for every kind of run: the same names mean the same update."""

from __future__ import annotations

import pytest
import torch

import grok_interp as g
from grok_interp.training import OPTIMIZERS, build_optimizer, make_optimizer
from tests.helpers import small_run

pytestmark = pytest.mark.portable


def _one_step(kind: str, wd: float) -> torch.Tensor:
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = build_optimizer([w], kind, lr=0.1, weight_decay=wd)
    w.grad = torch.tensor([0.5, 0.5])
    opt.step()
    return w.detach()


def test_adam_couples_weight_decay_into_the_gradient_and_adamw_decouples_it():
    # Adam's first step moves every coordinate by lr * sign(g + wd * w); AdamW's by lr * sign(g) then decays w
    assert torch.allclose(_one_step("adam", 1.0), torch.tensor([1.0 - 0.1, -2.0 + 0.1]), atol=1e-6)  # g + w: 1.5, -1.5
    assert torch.allclose(_one_step("adamw", 1.0), torch.tensor([0.9 * 1.0 - 0.1, 0.9 * -2.0 - 0.1]), atol=1e-6)
    assert torch.allclose(_one_step("sgd", 1.0), torch.tensor([1.0 - 0.1 * 1.5, -2.0 - 0.1 * -1.5]), atol=1e-6)
    with pytest.raises(g.GrokInterpError, match="optimizer"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], "lion", lr=0.1, weight_decay=0.0)


def test_every_kind_of_run_takes_its_optimiser_from_the_one_module():
    run = small_run(steps=20, optimizer="adam", weight_decay=0.5)
    opt = make_optimizer(run.model, run.config.train)
    assert type(opt) is torch.optim.Adam and opt.defaults["weight_decay"] == 0.5
    assert opt.defaults["betas"] == run.config.train.betas
    from grok_interp.vision import ResNetConfig

    assert set(OPTIMIZERS) >= set(ResNetConfig.CHOICES["optimizer"])
    assert set(OPTIMIZERS) >= set(g.TrainConfig.CHOICES["optimizer"])
