"""Grokking on purpose: gradient filters, StableMax and the perpendicular gradient.

Three published ways to make grokking happen sooner, or at all without weight decay,
as options of the one training loop (:class:`grok_interp.training.RunState`):

* **Grokfast** (Lee et al. 2024): amplify the slow part of the gradient. After the
  backward pass, each parameter's gradient ``g_t`` is replaced by ``g_t + lamb * h_t``,
  where ``h_t`` is a low-pass filter of the gradients so far:

  - EMA (:class:`GrokfastEMA`): ``h_1 = g_1``, ``h_t = alpha h_{t-1} + (1 - alpha) g_t``
    (defaults ``alpha = 0.98``, ``lamb = 2``);
  - MA (:class:`GrokfastMA`): ``h_t`` = the mean of the last ``window`` gradients
    ``g_{t-window+1} .. g_t``; the first ``window - 1`` steps are left unfiltered, as in
    the reference (defaults ``window = 100``, ``lamb = 5``).

* **StableMax** (Prieto et al. 2025): a softmax whose exponential is replaced by
  ``s(x) = x + 1`` for ``x >= 0`` and ``1 / (1 - x)`` for ``x < 0``; the probabilities
  are ``s(x_i) / sum_j s(x_j)`` and the loss their cross-entropy
  (:func:`stablemax_cross_entropy`). It grows linearly, so scaling the logits up (the
  "naive loss minimisation" that ends in softmax collapse) buys far less loss.

* **The perpendicular gradient** ``⊥Grad`` (Prieto et al. 2025,
  :class:`PerpendicularGradient`): per parameter tensor ``w`` with gradient ``g``,
  ``g_perp = g - (w.g / w.w) w``, rescaled to the norm of ``g``, so an update never
  grows or shrinks the weights along their own direction.

Each filter is a gradient transform ``fn(params)`` that changes ``p.grad`` in place
(``params`` in the optimiser's order). The filters' state (the EMA, or the window of
past gradients) lives in the optimiser's state under the filter's own key, so it is
saved with ``optimizer.state_dict()`` in every resume state and loaded back with it
(PyTorch keeps state entries that are not parameters as they are): a resumed run goes
on exactly as the uninterrupted one. :func:`grok_interp.training.gradient_transforms_for`
builds them from a :class:`~grok_interp.config.TrainConfig`.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = [
    "stablemax",
    "log_stablemax",
    "stablemax_cross_entropy",
    "GrokfastEMA",
    "GrokfastMA",
    "PerpendicularGradient",
]


# --- StableMax ------------------------------------------------------------------------
def _s(x: Tensor) -> Tensor:
    # Each branch sees only its own half of the inputs (0 elsewhere), so the unused
    # branch never reaches the pole of 1 / (1 - x) at x = 1 and the gradient through
    # torch.where stays finite. (Not clamp: its gradient at the bound 0 is 0, and
    # s'(0) is 1.)
    pos = x >= 0
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.where(pos, torch.where(pos, x, zero) + 1, 1 / (1 - torch.where(pos, zero, x)))


def stablemax(logits: Float[Tensor, "... d_vocab_out"], dim: int = -1) -> Float[Tensor, "... d_vocab_out"]:
    """StableMax probabilities ``s(x_i) / sum_j s(x_j)``.

    ``s(x) = x + 1`` for ``x >= 0`` and ``1 / (1 - x)`` for ``x < 0`` (continuous, with
    slope 1 at 0), so ``stablemax(x)`` is positive, sums to 1 and keeps the order of
    the logits (the argmax, hence accuracy, is the softmax's).

    Example:
        >>> stablemax(torch.tensor([0.0, 1.0, -1.0]))
        tensor([0.2857, 0.5714, 0.1429])
    """
    s = _s(logits)
    return s / s.sum(dim=dim, keepdim=True)


def log_stablemax(logits: Float[Tensor, "... d_vocab_out"], dim: int = -1) -> Float[Tensor, "... d_vocab_out"]:
    """``log stablemax(logits)`` = ``log s(x_i) - log sum_j s(x_j)``."""
    s = _s(logits)
    return s.log() - s.sum(dim=dim, keepdim=True).log()


def stablemax_cross_entropy(
    logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"]
) -> Float[Tensor, ""]:
    """Mean of ``-log stablemax(logits)[label]``, in the logits' dtype.

    :func:`grok_interp.training.loss_fn` (``kind="stablemax"``) calls it on float64
    logits, as it does the softmax cross-entropy.
    """
    return -log_stablemax(logits).gather(-1, labels[:, None]).mean()


# --- gradient transforms -----------------------------------------------------------
class _StatefulTransform:
    """A gradient transform whose buffers live in ``optimizer.state[self.key]`` (or in
    the transform itself without an optimiser), keyed by the parameter's index in the
    ``params`` list it is called with."""

    key = ""

    def __init__(self, optimizer: torch.optim.Optimizer | None) -> None:
        self.optimizer = optimizer
        self._own: dict[str, Any] = {}

    def _state(self) -> dict[str, Any]:
        return self._own if self.optimizer is None else self.optimizer.state[self.key]

    def state_dict(self) -> dict[str, Any]:
        """A copy of the filter's buffers (what a resume state holds)."""
        return copy.deepcopy(self._state())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        target = self._state()
        target.clear()
        target.update(copy.deepcopy(state))


class GrokfastEMA(_StatefulTransform):
    """Grokfast-EMA: ``g_t <- g_t + lamb * h_t`` with ``h_t`` the exponential moving
    average of the gradients, ``h_1 = g_1``, ``h_t = alpha h_{t-1} + (1 - alpha) g_t``.

    Args:
        alpha: Momentum of the average in [0, 1) (reference default 0.98).
        lamb: Amplification of the slow component (reference default 2).
        optimizer: Whose state keeps the average (so resume states save it); None
            keeps it in the transform.

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(1)); f = GrokfastEMA(alpha=0.5, lamb=2.0)
        >>> for g in (1.0, 3.0):
        ...     w.grad = torch.tensor([g]); f([w])
        >>> w.grad  # h = 0.5 * 1 + 0.5 * 3 = 2; 3 + 2 * 2
        tensor([7.])
    """

    key = "grokfast_ema"

    def __init__(self, alpha: float = 0.98, lamb: float = 2.0, optimizer: torch.optim.Optimizer | None = None) -> None:
        super().__init__(optimizer)
        self.alpha, self.lamb = float(alpha), float(lamb)

    @torch.no_grad()
    def __call__(self, params: Sequence[Tensor]) -> None:
        ema: dict[int, Tensor] = self._state().setdefault("ema", {})
        for i, p in enumerate(params):
            if p.grad is None:
                continue
            g = p.grad
            h = ema.get(i)
            if h is None:
                h = g.detach().clone()
            elif h.device != g.device:  # loaded from a resume state onto the CPU
                h = h.to(g.device)
            h.mul_(self.alpha).add_(g, alpha=1 - self.alpha)
            ema[i] = h
            g.add_(h, alpha=self.lamb)


class GrokfastMA(_StatefulTransform):
    """Grokfast-MA: ``g_t <- g_t + lamb * mean(g_{t-window+1}, ..., g_t)`` once
    ``window`` gradients have been seen (earlier steps are left as they are).

    The window is a ring buffer of ``window`` copies of every parameter (for the Nanda
    sizes at p = 113 and ``window = 100``: about 90 MB), saved with every resume state.

    Args:
        window: Number of gradients averaged (reference default 100).
        lamb: Amplification of the average (reference default 5).
        optimizer: Whose state keeps the window; None keeps it in the transform.
    """

    key = "grokfast_ma"

    def __init__(self, window: int = 100, lamb: float = 5.0, optimizer: torch.optim.Optimizer | None = None) -> None:
        super().__init__(optimizer)
        self.window, self.lamb = int(window), float(lamb)

    @torch.no_grad()
    def __call__(self, params: Sequence[Tensor]) -> None:
        state = self._state()
        bufs: dict[int, Tensor] = state.setdefault("window", {})
        count = int(state.get("count", 0)) + 1
        state["count"] = count
        slot = (count - 1) % self.window
        for i, p in enumerate(params):
            if p.grad is None:
                continue
            g = p.grad
            buf = bufs.get(i)
            if buf is None:
                buf = g.new_zeros((self.window, *g.shape))
            elif buf.device != g.device:
                buf = buf.to(g.device)
            buf[slot] = g
            bufs[i] = buf
            if count >= self.window:
                g.add_(buf.mean(0), alpha=self.lamb)


class PerpendicularGradient:
    """``⊥Grad``: each parameter tensor's gradient without its component along the
    tensor, rescaled to the gradient's norm, as the reference code does it::

        g_perp = g - (w.g / (w.w + eps)) w;   g <- g_perp * |g| / (|g_perp| + eps)

    with ``w`` and ``g`` flattened per tensor (not over all parameters at once) and
    ``eps = 1e-30``. A tensor at zero (biases at initialisation) keeps its gradient.
    Works before any optimiser (AdamW's decoupled weight decay is not part of ``g``;
    SGD's L2 term is added after this, inside its step).

    Args:
        rescale: Restore the gradient's norm after the projection (the reference does).
    """

    def __init__(self, rescale: bool = True, eps: float = 1e-30) -> None:
        self.rescale, self.eps = rescale, eps

    @torch.no_grad()
    def __call__(self, params: Sequence[Tensor]) -> None:
        for p in params:
            if p.grad is None:
                continue
            w, g = p.detach().reshape(-1), p.grad.reshape(-1)
            perp = g - (torch.dot(w, g) / (torch.dot(w, w) + self.eps)) * w
            if self.rescale:
                perp = perp * (g.norm() / (perp.norm() + self.eps))
            p.grad.copy_(perp.view_as(p.grad))
