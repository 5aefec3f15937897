"""Progress measures and circuit analyses of grokking runs.

Plain functions of (weights or model, task) returning numbers or tensors; the trainer
records the cheap ones through :func:`recorder`, and :meth:`GrokRun.measure` evaluates
any of them over saved checkpoints. One definition per measure (see each docstring);
other published variants are named options.

* events: :func:`events` (memorised_at, grokked_at, U-Acc, L-Acc of a history).
"""

from .events import Events, events

__all__ = ["Events", "events"]
