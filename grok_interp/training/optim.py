"""The optimisers of every kind of run, in one vocabulary.

=========  ==========================================================================
``adamw``  AdamW: ``weight_decay`` decoupled (``theta -= lr * wd * theta``), ``betas``
``adam``   Adam with ``weight_decay`` coupled into the gradient as an L2 term
           (``g += wd * theta``; the paper's ResNet recipe and ``torch.optim.Adam``)
``sgd``    SGD with ``momentum``; ``weight_decay`` as an L2 term in the gradient
=========  ==========================================================================

:func:`build_optimizer` makes one from settings; :func:`make_optimizer` from a
transformer's :class:`~grok_interp.config.TrainConfig`. The image branch calls
:func:`build_optimizer` with its own config's fields. Gradient transforms (Grokfast,
the perpendicular gradient) run before whichever optimiser steps
(:class:`~grok_interp.training.RunState`).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from .._validate import check_choice
from ..config import TrainConfig

__all__ = ["OPTIMIZERS", "build_optimizer", "make_optimizer"]

#: The optimiser names every config accepts a subset of.
OPTIMIZERS = ("adamw", "adam", "sgd")


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    kind: str,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    momentum: float = 0.0,
    fused: bool = False,
) -> torch.optim.Optimizer:
    """One of :data:`OPTIMIZERS` over ``params``.

    ``fused=True`` uses PyTorch's fused kernel where the device has it (Adam and AdamW):
    the same algorithm and ``state_dict`` layout, one kernel per step.
    """
    check_choice("optimizer", kind, OPTIMIZERS)
    params = list(params)
    if kind == "sgd":
        cls: type[torch.optim.Optimizer] = torch.optim.SGD
        kwargs: dict[str, Any] = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        kwargs = dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    if fused and kind != "sgd":
        try:
            return cls(params, fused=True, **kwargs)
        except (RuntimeError, ValueError):  # pragma: no cover - a device/dtype without the fused kernel
            pass
    return cls(params, **kwargs)


def make_optimizer(model: nn.Module, cfg: TrainConfig, *, fused: bool = False) -> torch.optim.Optimizer:
    """The optimiser a transformer run's :class:`~grok_interp.config.TrainConfig` asks
    for (``optimizer``, ``lr``, ``weight_decay``, ``betas``, ``momentum``) over the
    trainable parameters (frozen ones, ``requires_grad=False``, excluded)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return build_optimizer(params, cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas,
                           momentum=cfg.momentum, fused=fused)
