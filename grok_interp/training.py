"""The full-batch training loop.

One step is one AdamW update on the whole training set (an "epoch" in the grokking
literature). The loop is deliberately small: it calls a *forward* (see
:mod:`grok_interp.forward`) for last-position logits, a loss, the optimiser, and at
scheduled steps it hands control out:

* every ``eval_every`` steps a history row is recorded (train loss/accuracy from the
  step's own forward, test loss/accuracy from a no-grad forward) and each *callback*
  ``callback(step, model, context) -> dict | None`` adds columns to that row;
* at every checkpoint step ``on_checkpoint(step, model, optimizer, history)`` runs
  (the run directory saves weights and resume state there).

History row ``step = s`` describes the model after ``s`` updates. Nothing here is
random, so the same initial weights give the same history, bit for bit, on CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._validate import bad_value
from .config import TrainConfig
from .forward import Forward
from .tasks import Split, Task

__all__ = ["TrainContext", "Callback", "checkpoint_schedule", "loss_fn", "accuracy", "train_loop", "resolve_device"]

log = logging.getLogger(__name__)


@dataclass
class TrainContext:
    """What callbacks may look at: the task, the split and the data tensors."""

    task: Task
    split: Split
    train_tokens: Tensor
    train_labels: Tensor
    test_tokens: Tensor
    test_labels: Tensor
    forward: Forward


class Callback(Protocol):
    def __call__(self, step: int, model: nn.Module, context: TrainContext) -> dict[str, Any] | None: ...


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise bad_value("device", "cuda", "no CUDA device is available; use 'cpu' or 'auto'")
    return torch.device(device)


def checkpoint_schedule(steps: int, every: int) -> list[int]:
    """Steps at which weights are saved: 0, 1, 2, 4, 8, ... below ``every``, then every
    ``every`` steps, and the last step."""
    dense = {0}
    s = 1
    while s < every and s <= steps:
        dense.add(s)
        s *= 2
    return sorted(dense | set(range(0, steps + 1, every)) | {steps})


class _ToFloat64(torch.autograd.Function):
    """``x.to(float64)`` whose backward flushes float32-subnormal gradients to zero.

    Once the training set is fit, the float64 softmax gives wrong classes probabilities
    far below float32's smallest normal number (1.2e-38); cast back, a few percent of
    the logits' gradient become subnormal floats, and every CPU matrix product that
    touches them runs about 10x slower (measured: 520 ms instead of 45 ms per p = 113
    step after memorisation). Those entries are 0 to float32 precision anyway.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.dtype = x.dtype
        return x.to(torch.float64)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        g = grad.to(ctx.dtype)
        return g.masked_fill(g.abs() < torch.finfo(ctx.dtype).tiny, 0.0)


def loss_fn(
    logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"], kind: str = "ce"
) -> Float[Tensor, ""]:
    """Cross-entropy in float64 (avoids softmax collapse) or MSE on one-hot targets.

    The float64 cast's gradient is flushed of float32 subnormals (see ``_ToFloat64``),
    which keeps late-training CPU steps as fast as early ones.
    """
    if kind == "ce":
        return F.cross_entropy(_ToFloat64.apply(logits), labels)
    target = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return F.mse_loss(logits, target)


def accuracy(logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"]) -> float:
    return (logits.argmax(-1) == labels).float().mean().item()


def train_loop(
    model: nn.Module,
    context: TrainContext,
    cfg: TrainConfig,
    *,
    optimizer: torch.optim.Optimizer,
    start_step: int = 0,
    history: list[dict[str, Any]] | None = None,
    callbacks: list[Callback] = (),
    on_checkpoint: Callable[[int, nn.Module, torch.optim.Optimizer, list[dict[str, Any]]], None] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train ``model`` in place from ``start_step``; return the history rows.

    Args:
        model: The hooked model (its parameters with ``requires_grad`` are trained).
        context: Task, split, data tensors and the training forward.
        cfg: Steps, learning-rate schedule, loss, cadence and early stopping.
        optimizer: An AdamW over the trainable parameters (restored when resuming).
        start_step: Updates already done (resuming); ``history`` holds their rows.
        callbacks: Called at every history row; their dicts become columns.
        on_checkpoint: Called at every step of :func:`checkpoint_schedule`.
        progress: Show a tqdm bar.
    """
    history = list(history or [])
    schedule = set(checkpoint_schedule(cfg.steps, cfg.checkpoint_every))
    last_row = history[-1]["step"] if history else -1
    grok_step = next((r["step"] for r in history if r["test_acc"] >= cfg.grok_threshold), None)
    end = cfg.steps
    if grok_step is not None and cfg.stop_after_grok is not None:
        end = min(end, grok_step + cfg.stop_after_grok)
    fwd = context.forward
    bar = tqdm(total=cfg.steps, initial=start_step, disable=not progress, desc="train", unit="step", dynamic_ncols=True)
    step = start_step
    try:
        while True:
            final = step >= end
            logits = fwd(model, context.train_tokens)
            loss = loss_fn(logits, context.train_labels, cfg.loss)
            if (step % cfg.eval_every == 0 or final) and step > last_row:
                row = _evaluate(step, model, logits, loss, context, cfg)
                for cb in callbacks:
                    row.update(cb(step, model, context) or {})
                history.append(row)
                last_row = step
                bar.set_postfix(
                    train_loss=f"{row['train_loss']:.3g}", test_loss=f"{row['test_loss']:.3g}",
                    train_acc=f"{row['train_acc']:.3f}", test_acc=f"{row['test_acc']:.3f}", refresh=False,
                )
                if grok_step is None and row["test_acc"] >= cfg.grok_threshold:
                    grok_step = step
                    if cfg.stop_after_grok is not None:
                        end = min(end, step + cfg.stop_after_grok)
                        final = step >= end
            if on_checkpoint is not None and (step in schedule or final):
                on_checkpoint(step, model, optimizer, history)
            if final:
                break
            mult = min(step / cfg.warmup_steps, 1.0) if cfg.warmup_steps else 1.0
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * mult
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            bar.update(1)
    finally:
        bar.close()
    return history


@torch.no_grad()
def _evaluate(
    step: int, model: nn.Module, train_logits: Tensor, train_loss: Tensor, ctx: TrainContext, cfg: TrainConfig
) -> dict[str, Any]:
    test_logits = ctx.forward(model, ctx.test_tokens)
    return {
        "step": step,
        "train_loss": train_loss.item(),
        "test_loss": loss_fn(test_logits, ctx.test_labels, cfg.loss).item(),
        "train_acc": accuracy(train_logits, ctx.train_labels),
        "test_acc": accuracy(test_logits, ctx.test_labels),
    }


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (frozen ones, ``requires_grad=False``, excluded)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
