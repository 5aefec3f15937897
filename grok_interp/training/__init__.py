"""Training: the one loop, the forwards it trains through, and the gradient transforms.

* :mod:`~grok_interp.training.loop`: :func:`train_loop` drives :class:`RunState`
  objects (model, optimiser, :class:`Schedule`, history) through a step function;
  warm-up, the stop rules, history rows, checkpoints and resume are written once.
* :mod:`~grok_interp.training.forwards`: ``(model, tokens) -> last-position logits``
  functions: the hooked model's own forward and the fast one-layer forward.
* :mod:`~grok_interp.training.accelerators`: Grokfast filters, StableMax and the
  perpendicular gradient, the transforms and loss the loop's one seam takes.
* :mod:`~grok_interp.training.optim`: the optimisers of every kind of run (AdamW, Adam
  with coupled L2, SGD) in one vocabulary.
"""

from .loop import (
    Callback,
    FullBatchStep,
    GradientTransform,
    PlateauClock,
    RunState,
    Schedule,
    StepFunction,
    TrainContext,
    accuracy,
    checkpoint_schedule,
    cross_entropy,
    eval_row,
    gradient_transforms_for,
    loss_fn,
    plateau_stop_step,
    resolve_device,
    train_loop,
    flush_denormals,
    flushing_denormals,
)
from .optim import OPTIMIZERS, build_optimizer, make_optimizer

__all__ = [
    "train_loop",
    "flush_denormals",
    "flushing_denormals",
    "RunState",
    "Schedule",
    "StepFunction",
    "FullBatchStep",
    "GradientTransform",
    "TrainContext",
    "Callback",
    "PlateauClock",
    "plateau_stop_step",
    "checkpoint_schedule",
    "loss_fn",
    "cross_entropy",
    "accuracy",
    "eval_row",
    "make_optimizer",
    "build_optimizer",
    "OPTIMIZERS",
    "gradient_transforms_for",
    "resolve_device",
]
