"""The one training loop, its run state, and the step functions it drives.

Every model this package trains goes through :func:`train_loop`: a single transformer
run (:func:`grok_interp.train_hooked`), ``K`` same-shaped runs stacked into one
computation (:func:`grok_interp.many_runs.train_many`) and the ResNet-18 image runs
(:func:`grok_interp.vision.train_resnet`). What differs between them is only the
*step function* (:class:`StepFunction`); what a run is while it trains is one
:class:`RunState`:

* its model and optimiser, and the gradient transforms applied between the backward
  pass and the optimiser step (:meth:`RunState.optimizer_step`, the one seam where
  gradient filters plug in);
* its :class:`Schedule`: steps, learning-rate warm-up ``min(step / warmup, 1)``, a
  history row every ``eval_every`` steps (with ``eval_sparse > 1`` the test set is
  evaluated at every such step only where the test metrics move; see below),
  checkpoints at :func:`checkpoint_schedule`,
  the grok-stop rule (stop ``stop_after_grok`` steps after test accuracy first
  reaches ``grok_threshold``) and the plateau-stop rule (:class:`PlateauClock`: stop
  after a stretch of at least ``stop_on_plateau`` steps, and at least as long as the run
  before it, with training accuracy held and no new high of test accuracy);
* its history rows and the callbacks that add columns to them;
* what happens at a checkpoint (``on_checkpoint``: the run directory writes weights and
  a resume state there).

One iteration of the loop at step ``s`` (the model after ``s`` updates) is: the step
function's training forward; a history row for each run that is due (the step
function evaluates, callbacks add columns, the grok-stop rule may end the run); a
checkpoint for each run that is due; then, for the runs that go on, the learning rate
of step ``s``, zeroed gradients and the step function's update. Nothing here is
random, so the same initial weights give the same history, bit for bit, on CPU.

Adaptive evaluation (``Schedule.eval_sparse = k > 1``, the default of
:class:`~grok_interp.config.TrainConfig`: 5). The test set costs a forward that is
most of a row's price, and for most of a run the test metrics barely move. So at a
row step that is not a *full* one, the run only holds the row back: its training
metrics (from the step's own forward), its step and a copy of the trained parameters
(one model's worth of memory, at most ``k - 1`` copies; a run whose evaluation
depends on more than its parameters, such as the ResNet's BatchNorm running statistics,
names those tensors too: ``RunState.evaluated_by``). A row is *full* at every
multiple of ``k * eval_every``, at the last step, at every checkpoint step, and
wherever a stop rule could fire (see :meth:`RunState.full_row_due`); there the test
set is evaluated and :func:`backfill_needed` decides, from the last recorded row,
the held rows' training metrics and the full row: if the test metrics moved, every
held row is *backfilled* (its test metrics computed on the model with its copied
weights, its callbacks called with that model) and recorded in step order before the
full row; if not, the held rows are dropped. A checkpoint at a step without a row
resolves the held rows the same way, the newest of them standing as the full row, so
a saved history is complete and a resumed run's history equals the uninterrupted
one's. Evaluation never touches training: every recorded row equals the dense run's
row at that step, bit for bit on CPU. ``eval_sparse = 1`` records every row densely.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._validate import bad_value
from ..errors import TrainingDiverged
from .accelerators import GrokfastEMA, GrokfastMA, PerpendicularGradient, stablemax_cross_entropy
from ..config import TrainConfig
from .forwards import Forward
from ..tasks import Split, Task

__all__ = [
    "Schedule",
    "RunState",
    "PlateauClock",
    "plateau_stop_step",
    "StepFunction",
    "FullBatchStep",
    "GradientTransform",
    "TrainContext",
    "Callback",
    "wants_row",
    "ProgressLog",
    "checkpoint_schedule",
    "loss_fn",
    "accuracy",
    "eval_row",
    "columns_of_train",
    "columns_of_test",
    "backfill_needed",
    "MEMORISED",
    "train_loop",
    "flush_denormals",
    "flushing_denormals",
    "gradient_transforms_for",
    "resolve_device",
]

log = logging.getLogger(__name__)


@dataclass
class TrainContext:
    """What callbacks may look at: the task, the split, the data tensors, the training
    forward and the loss (``"ce"``, ``"stablemax"`` or ``"mse"``, see :func:`loss_fn`)."""

    task: Task
    split: Split
    train_tokens: Tensor
    train_labels: Tensor
    test_tokens: Tensor
    test_labels: Tensor
    forward: Forward
    loss: str = "ce"


class Callback(Protocol):
    """``cb(step, model, context)`` or ``cb(step, model, context, row)`` at every history
    row; a returned dict adds columns to the row.

    A callback that takes a fourth argument (positionally, or a keyword named ``row``)
    receives a copy of the history row it follows: ``step``, ``train_loss``,
    ``test_loss``, ``train_acc``, ``test_acc`` and the columns of the callbacks before it
    (``train_hooked`` puts ``record=`` measures and ``log_to=`` trackers in that order,
    so a tracker sees every column). Loggers need not recompute anything.
    """

    def __call__(self, step: int, model: nn.Module, context: TrainContext) -> dict[str, Any] | None: ...


def wants_row(cb: Callable[..., Any]) -> str | None:
    """How callback ``cb`` takes the history row: ``"keyword"`` (it has a parameter
    named ``row``), ``"positional"`` (it needs exactly a fourth positional argument) or
    None (the three-argument form ``cb(step, model, context)``)."""
    import inspect  # noqa: PLC0415 - only when a run is set up

    try:
        sig = inspect.signature(cb)
    except (TypeError, ValueError):  # a builtin without a signature: the old form
        return None
    row = sig.parameters.get("row")
    if row is not None and row.kind is not row.POSITIONAL_ONLY:
        return "keyword"

    def binds(*args: Any) -> bool:
        try:
            sig.bind(*args)
            return True
        except TypeError:
            return False

    return "positional" if binds(0, None, None, {}) and not binds(0, None, None) else None


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise bad_value("device", "cuda", "no CUDA device is available; use 'cpu' or 'auto'")
    return torch.device(device)


def is_checkpoint_step(step: int, steps: int, every: int) -> bool:
    """Whether :func:`checkpoint_schedule` holds ``step``, without building it (a run of
    10^12 steps would need gigabytes for the list)."""
    if step < 0 or step > steps:
        return False
    return step == steps or step % every == 0 or (step < every and step & (step - 1) == 0)


def checkpoint_schedule(steps: int, every: int) -> list[int]:
    """Steps at which weights are saved: 0, 1, 2, 4, 8, ... below ``every``, then every
    ``every`` steps, and the last step (a list: use :func:`is_checkpoint_step` to test
    one step of a long run)."""
    dense = {0}
    s = 1
    while s < every and s <= steps:
        dense.add(s)
        s *= 2
    return sorted(dense | set(range(0, steps + 1, every)) | {steps})


def _flush_subnormals_(g: Tensor) -> Tensor:
    """Set the entries of ``g`` below its dtype's smallest normal number to zero, in place."""
    return g.masked_fill_(g.abs() < torch.finfo(g.dtype).tiny, 0.0)


class _CastFlushingGrad(torch.autograd.Function):
    """``x.to(dtype)`` (a view when the dtype is already ``x``'s) whose backward comes
    back in ``x``'s dtype with its subnormal entries flushed to zero.

    Once the training set is fit, a softmax gives wrong classes probabilities far below
    float32's smallest normal number (1.2e-38): a few percent of the logits' gradient
    become subnormal floats, and every CPU matrix product that touches them runs about
    10-30x slower (measured: 520 ms instead of 45 ms per p = 113 step after
    memorisation; ``benchmarks/subnormal_grad.py`` measures the float32 loss). Those
    entries are 0 to float32 precision anyway: Adam's second moment squares them to 0.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, dtype: torch.dtype) -> Tensor:
        ctx.dtype = x.dtype
        return x.view_as(x) if x.dtype == dtype else x.to(dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _flush_subnormals_(grad.to(ctx.dtype, copy=True)), None


def to_float64(x: Tensor) -> Tensor:
    """``x`` cast to float64, whose gradient comes back in ``x``'s dtype flushed of
    subnormals (see ``_CastFlushingGrad``): the cast in front of a float64 loss."""
    return _CastFlushingGrad.apply(x, torch.float64)


def flushing_grad(x: Tensor) -> Tensor:
    """``x`` as it is, whose gradient is flushed of subnormals (see ``_CastFlushingGrad``):
    in front of a loss computed in ``x``'s own dtype."""
    return _CastFlushingGrad.apply(x, x.dtype)


class _CrossEntropy(torch.autograd.Function):
    """Mean cross-entropy over the last axis, accurate where a float32 softmax collapses.

    Near a fit, the correct class's probability rounds to 1 in float32: the plain
    float32 loss becomes 0 and that class's gradient ``p_c - 1`` vanishes, while the
    wrong classes still get theirs (Prieto et al. 2025's softmax collapse). The small
    quantity that matters is ``S``, the wrong classes' share
    ``sum_{j != c} exp(z_j - z_max)``, and it is never subtracted from 1 here:

    * per row, ``loss = (z_max - z_c) + log1p((exp(z_c - z_max) - 1) + S)``, which is
      ``log1p(S)`` when the correct class leads;
    * the correct class's gradient is the exact complement ``-S / s`` of the wrong ones'
      ``exp(z_j - z_max) / s`` (``s`` the whole sum), not ``p_c - 1``.

    So every number keeps the input dtype's relative precision, as the float64 loss did,
    at half its memory traffic. Gradient entries below the dtype's smallest normal number
    are flushed to zero (see ``_CastFlushingGrad`` for why subnormals are slow on a CPU).
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, labels: Tensor) -> Tensor:
        z_max = z.amax(-1, keepdim=True)
        idx = labels[..., None]
        z_c = z.gather(-1, idx)
        e_c = (z_c - z_max).exp_()
        wrong = (z - z_max).exp_().scatter_(-1, idx, 0.0)
        s_w = wrong.sum(-1, keepdim=True)
        loss = ((z_max - z_c) + torch.log1p((e_c - 1) + s_w)).mean()
        ctx.save_for_backward(wrong, e_c, s_w, idx)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor, None]:
        wrong, e_c, s_w, idx = ctx.saved_tensors
        rows = wrong.numel() // wrong.shape[-1]
        scale = (grad_loss / rows) / (e_c + s_w)
        return _flush_subnormals_((wrong * scale).scatter_(-1, idx, -s_w * scale)), None


def cross_entropy(logits: Float[Tensor, "... d_vocab_out"], labels: Int[Tensor, " ..."]) -> Float[Tensor, ""]:
    """The mean cross-entropy of ``logits`` (any leading axes) against ``labels``, free
    of softmax collapse in the logits' own precision (half precision is raised to float32).

    Equal to ``F.cross_entropy`` on the logits cast to float64 within float32 rounding,
    values and gradients, including fitted rows whose loss is far below float32's
    epsilon (where ``F.cross_entropy`` in float32 returns 0); see ``_CrossEntropy``. The
    correct class's gradient is even closer to exact than float64's: ``p_c - 1`` in
    float64 loses its digits once ``p_c`` is within about 1e-12 of 1, and is 0 beyond
    about 1e-16, where the complement still holds the wrong classes' share.
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return _CrossEntropy.apply(logits, labels)


def loss_fn(
    logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"], kind: str = "ce"
) -> Float[Tensor, ""]:
    """Cross-entropy free of softmax collapse (``ce``, :func:`cross_entropy`: float64's
    accuracy on float32 arithmetic), cross-entropy on the logits' own float32
    (``ce_float32``, as the reference code computes it: it collapses), StableMax
    cross-entropy in float64 (``stablemax``, see :mod:`grok_interp.training.accelerators`)
    or MSE on one-hot targets (``mse``).

    The cross-entropies' gradients are flushed of subnormals (see ``_CastFlushingGrad``), which
    keeps late-training CPU steps as fast as early ones; for ``ce_float32`` that is the
    only difference from ``F.cross_entropy``'s gradient.
    """
    if kind == "ce":
        return cross_entropy(logits, labels)
    if kind == "ce_float32":
        return F.cross_entropy(flushing_grad(logits.float()), labels)
    if kind == "stablemax":
        return stablemax_cross_entropy(to_float64(logits), labels)
    target = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return F.mse_loss(logits, target)


def accuracy(logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"]) -> float:
    return (logits.argmax(-1) == labels).float().mean().item()


GradientTransform = Callable[[list[Tensor]], None]
"""Changes the gradients (``p.grad`` of the trainable parameters, in place) after the
backward pass and before the optimiser step: the seam for gradient filters."""


@dataclass(frozen=True)
class Schedule:
    """When a run evaluates, saves, warms up and stops (steps are updates done).

    Args:
        steps: Last step.
        lr: Learning rate after the warm-up.
        warmup_steps: Linear warm-up: step ``s`` uses ``lr * min(s / warmup_steps, 1)``
            (0: no warm-up).
        eval_every: A history row every this many steps (and at the last step).
        checkpoint_every: Checkpoints at :func:`checkpoint_schedule`.
        stop_after_grok: Stop this many steps after test accuracy first reaches
            ``grok_threshold`` (None: train all ``steps``).
        grok_threshold: Test accuracy that counts as grokked.
        eval_at_checkpoints: Also record a history row at every checkpoint step (the
            ResNet runs do, so each saved epoch has its row).
        stop_on_plateau: Patience ``M`` of the plateau-stop rule (:class:`PlateauClock`;
            None: off).
        plateau_delta: What counts as a new high of test accuracy for that rule.
        eval_sparse: Adaptive evaluation (module docstring): the test set is evaluated
            at every ``eval_sparse * eval_every`` steps and, backfilled, at every
            ``eval_every`` steps where :func:`backfill_needed` says the test metrics
            moved. 1: a full row every ``eval_every`` steps.
        eval_tol: Change of test accuracy between two recorded rows that counts as a
            move (0.01: one point).
        eval_loss_tol: Change of ``log(test_loss)`` between two recorded rows that counts
            as a move (0.1: a tenth; see :func:`backfill_needed`).
    """

    steps: int
    lr: float
    warmup_steps: int = 0
    eval_every: int = 1
    checkpoint_every: int = 100
    stop_after_grok: int | None = None
    grok_threshold: float = 0.99
    eval_at_checkpoints: bool = False
    stop_on_plateau: int | None = None
    plateau_delta: float = 0.01
    eval_sparse: int = 1
    eval_tol: float = 0.01
    eval_loss_tol: float = 0.1

    @classmethod
    def of(cls, cfg: Any, **extra: Any) -> "Schedule":
        """The schedule of a :class:`~grok_interp.config.TrainConfig` (or any object with
        its field names)."""
        names = ("steps", "lr", "warmup_steps", "eval_every", "checkpoint_every", "stop_after_grok", "grok_threshold",
                 "stop_on_plateau", "plateau_delta", "eval_sparse")
        return cls(**{n: getattr(cfg, n) for n in names if hasattr(cfg, n)}, **extra)

    def lr_at(self, step: int) -> float:
        """The learning rate of the update that starts at ``step``."""
        return self.lr * (min(step / self.warmup_steps, 1.0) if self.warmup_steps else 1.0)


class PlateauClock:
    """The plateau-stop rule, fed one history row at a time.

    Nothing counts before memorisation (the first row with training accuracy
    ``>= train_threshold``). From then on the clock is the step of the latest of: the
    memorisation row; a row with training accuracy below ``train_threshold``; a row whose
    test accuracy is a *new high*, at least ``delta`` above the test accuracy of the
    previous new high (the memorisation row's at first). The rule says stop at the first
    row, with training accuracy held, whose step ``s`` has ``s - clock >= max(patience,
    clock)``: no new high for at least ``patience`` steps *and* for at least as long as
    the run had trained before its last new high (so a run still improving late gets a
    longer wait). A late jump is cut only if it comes more than ``max(patience,
    clock)`` steps after the last new high.

    Args:
        patience: ``M`` in steps.
        delta: Rise of test accuracy that counts as a new high (0.01: one point).
        train_threshold: Training accuracy that counts as memorised (0.99).
    """

    def __init__(self, patience: int, delta: float = 0.01, train_threshold: float = 0.99) -> None:
        self.patience, self.delta, self.train_threshold = patience, delta, train_threshold
        self.clock: int | None = None
        self.high = float("nan")

    def update(self, step: int, train_acc: float, test_acc: float) -> bool:
        """Record one row; True when the rule says stop at this row."""
        if self.clock is None:
            if train_acc >= self.train_threshold:
                self.clock, self.high = step, test_acc
            return False
        if train_acc < self.train_threshold:
            self.clock = step
            return False
        if test_acc >= self.high + self.delta - 1e-12:
            self.clock, self.high = step, test_acc
            return False
        return step - self.clock >= max(self.patience, self.clock)


def plateau_stop_step(
    history: Any, patience: int, delta: float = 0.01, train_threshold: float = 0.99
) -> int | None:
    """The step at which :class:`PlateauClock` stops a history (rows or a DataFrame with
    ``step``, ``train_acc`` and ``test_acc``), or None if it never does."""
    rows = history.to_dict("records") if hasattr(history, "to_dict") else list(history)
    clock = PlateauClock(patience, delta, train_threshold)
    for r in rows:
        if clock.update(int(r["step"]), float(r["train_acc"]), float(r["test_acc"])):
            return int(r["step"])
    return None


#: Training accuracy that counts as memorised (the plateau rule's and the events' threshold).
MEMORISED = 0.99


_COLUMNS = ("train_loss", "test_loss", "train_acc", "test_acc")


def _row_order(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with the four metric columns first, in the history's order."""
    return {**{k: row[k] for k in _COLUMNS if k in row}, **{k: v for k, v in row.items() if k not in _COLUMNS}}


def _merged(train: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
    """A sparse run's row from its training and test columns: the four metric columns
    first, then the test side's other columns, then the training side's (the order in
    which the ResNet's dense row lists them: feature uniformity, then batch statistics
    and ``epoch_loss``; a transformer's row has only the four)."""
    return _row_order({**test, **train})


def backfill_needed(
    last: dict[str, Any] | None, held: Sequence[dict[str, Any]], row: dict[str, Any], schedule: Schedule
) -> bool:
    """Whether the rows held back between the last recorded row and a full row must be
    backfilled (adaptive evaluation, see the module docstring).

    True when, from ``last`` (the last recorded row; None: nothing recorded yet) to
    ``row`` (the full row), test accuracy changed by ``eval_tol`` or more, or crossed
    ``grok_threshold`` (either way), or ``log(test_loss)`` changed by ``eval_loss_tol`` or
    more (or either loss is not a positive finite number); or when training accuracy
    crosses :data:`MEMORISED` (0.99) anywhere along ``last``, the ``held`` rows (their
    training metrics are known) and ``row``: memorisation, or losing it, is an event.

    Why 0.1 for the loss: on the README main job (p = 113, seed 999, dense rows to step
    5100) ``log(test_loss)`` drifts by 0.009 per 50 steps (median; 0.028 at the 95th
    percentile) on the plateau, while the memorisation peak (4.8 -> 18 in about 300
    steps) moves it 0.2 per 50 steps: 0.1 keeps the plateau sparse and the peak dense.
    """
    if last is None:
        return True
    thr = schedule.grok_threshold
    a, b = float(last["test_acc"]), float(row["test_acc"])
    if abs(b - a) >= schedule.eval_tol or (a >= thr) != (b >= thr):
        return True
    la, lb = float(last["test_loss"]), float(row["test_loss"])
    if not (math.isfinite(la) and math.isfinite(lb) and la > 0 and lb > 0):
        return True
    if abs(math.log(lb) - math.log(la)) >= schedule.eval_loss_tol:
        return True
    memorised = {float(r["train_acc"]) >= MEMORISED for r in (last, *held, row)}
    return len(memorised) > 1


@dataclass(eq=False)
class RunState:
    """One run while it trains: model, optimiser, schedule, history and what to do at
    checkpoints. The loop reads and advances it; step functions compute with it.

    Args:
        model: The model (its parameters with ``requires_grad`` are trained).
        optimizer: Its optimiser (restored when resuming).
        schedule: When to evaluate, save and stop.
        history: Rows already recorded (resuming); new rows are appended.
        step: Updates already done (resuming).
        callbacks: ``cb(step, model, context) -> dict | None`` at every history row; the
            dicts become columns. A callback that takes a fourth argument ``row`` gets a
            copy of the row so far (see :class:`Callback`). For a backfilled row (adaptive evaluation) ``model``
            holds the weights of that row's step while the callback runs.
        context: What callbacks receive as their third argument (and what step
            functions read their data from).
        on_checkpoint: ``fn(state)`` at every checkpoint step.
        on_row: ``fn(state)`` after every history row (e.g. to write the history out).
        gradient_transforms: Applied in order to the trainable parameters' gradients
            before every optimiser step.
        train_s: Seconds spent training this run so far (a resumed run starts from its
            resume state's); :func:`train_loop` adds the wall time of every step the run
            takes part in (forward, rows, checkpoints, update). Runs trained together
            each count the whole step.
        evaluated_by: ``fn(state)`` -> the tensors the model's evaluation depends on,
            which a held row copies and a backfilled row puts back (adaptive evaluation;
            :attr:`eval_state`). None: the trained parameters (:attr:`params`); the
            ResNet adds its BatchNorm running statistics.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    history: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    callbacks: Sequence[Callback] = ()
    context: Any = None
    on_checkpoint: Callable[["RunState"], None] | None = None
    on_row: Callable[["RunState"], None] | None = None
    gradient_transforms: Sequence[GradientTransform] = ()
    train_s: float = 0.0
    evaluated_by: Callable[["RunState"], Sequence[Tensor]] | None = None
    end: int = field(init=False)
    grok_step: int | None = field(init=False)

    def __post_init__(self) -> None:
        sch = self.schedule
        self.history = list(self.history)
        self._last_row = self.history[-1]["step"] if self.history else -1
        # A resumed run starts from the checkpoint it was saved at: not saved again.
        self._saved_at = self.step if self.step > 0 else -1
        self._held: list[tuple[int, list[Tensor], dict[str, Any]]] = []  # (step, eval_state copy, training metrics)
        self._row_arg = [wants_row(cb) for cb in self.callbacks]
        self.grok_step = next((r["step"] for r in self.history if r["test_acc"] >= sch.grok_threshold), None)
        self.end = sch.steps
        if self.grok_step is not None and sch.stop_after_grok is not None:
            self.end = min(self.end, self.grok_step + sch.stop_after_grok)
        self._plateau = None
        if sch.stop_on_plateau is not None:
            self._plateau = PlateauClock(sch.stop_on_plateau, sch.plateau_delta)
            for r in self.history:
                if self._plateau.update(r["step"], r["train_acc"], r["test_acc"]):
                    self.end = min(self.end, max(r["step"], self.step))
                    break

    @property
    def finished(self) -> bool:
        """True once the run has reached its last step (``steps`` or the grok stop)."""
        return self.step >= self.end

    def eval_due(self) -> bool:
        s, sch = self.step, self.schedule
        due = s % sch.eval_every == 0 or self.finished or (sch.eval_at_checkpoints and self._is_checkpoint(s))
        return due and s > self._last_row

    def checkpoint_due(self) -> bool:
        return (self._is_checkpoint(self.step) or self.finished) and self.step != self._saved_at

    def _is_checkpoint(self, step: int) -> bool:
        return is_checkpoint_step(step, self.schedule.steps, self.schedule.checkpoint_every)

    @property
    def sparse(self) -> bool:
        """True when this run evaluates adaptively (``eval_sparse > 1``)."""
        return self.schedule.eval_sparse > 1

    @property
    def held_steps(self) -> list[int]:
        """Steps of the rows held back, not yet backfilled or dropped."""
        return [h[0] for h in self._held]

    def full_row_due(self) -> bool:
        """Whether this step's row (due by :meth:`eval_due`) evaluates the test set.

        Always for a dense run. For a sparse one: at every multiple of ``eval_sparse *
        eval_every``, at the last step, at every checkpoint step; while grokking has not
        been seen, once the oldest held row is ``stop_after_grok`` steps back (a row
        held there could be the first to reach ``grok_threshold``, and the run must stop
        exactly ``stop_after_grok`` steps after it); and from the step at which the
        plateau-stop rule would fire on its current clock.
        """
        s, sch = self.step, self.schedule
        if not self.sparse or s % (sch.eval_sparse * sch.eval_every) == 0 or self.finished or self._is_checkpoint(s):
            return True
        if self.grok_step is None and sch.stop_after_grok is not None and self._held \
                and s >= self._held[0][0] + sch.stop_after_grok:
            return True
        clock = self._plateau.clock if self._plateau is not None else None
        return clock is not None and s >= clock + max(self._plateau.patience, clock)

    def hold(self, train_row: dict[str, Any]) -> None:
        """Hold back this step's row: its training metrics and a copy of :attr:`eval_state`."""
        _check_finite_row(train_row, self.step)
        self._held.append((self.step, [p.detach().clone() for p in self.eval_state], dict(train_row)))
        self._last_row = self.step

    def resolve(self, row: dict[str, Any] | None, test_at: Callable[[], dict[str, Any]]) -> None:
        """Record the held rows, if the test metrics moved, then the full row ``row`` of
        this step (None: no row at this step, e.g. a checkpoint between rows; the newest
        held row is then evaluated and stands as the full row).

        ``test_at()`` returns the test metrics of :attr:`model` as it is; it is called
        with each backfilled row's weights loaded.
        """
        held, self._held = self._held, []
        if row is None:
            if not held:
                return
            step, weights, train = held.pop()
            full = (step, weights, self._at_weights(weights, lambda: _merged(train, test_at())))
        else:
            full = (self.step, None, row)
        last = self.history[-1] if self.history else None
        if held and backfill_needed(last, [h[2] for h in held], full[2], self.schedule):
            for step, weights, train in held:
                self._at_weights(weights, lambda: self.record(_merged(train, test_at()), step=step))
        step, weights, row = full
        if weights is None:
            self.record(row)
        else:
            self._at_weights(weights, lambda: self.record(row, step=step))

    def _at_weights(self, weights: list[Tensor], fn: Callable[[], Any]) -> Any:
        """``fn()`` with :attr:`eval_state` (the trained parameters, by default) set to
        ``weights``; they are put back after.

        The values are swapped through ``.data``, which autograd does not track: the
        training forward's graph (its saved tensors are these parameters) stays valid
        for the update, which sees the same values bit for bit.
        """
        params = self.eval_state
        with torch.no_grad():
            now = [p.detach().clone() for p in params]
            try:
                for p, w in zip(params, weights):
                    p.data.copy_(w)
                return fn()
            finally:
                for p, w in zip(params, now):
                    p.data.copy_(w)

    def record(self, row: dict[str, Any], step: int | None = None) -> None:
        """Append the history row of ``step`` (default: the current step; callbacks add
        columns) and apply the grok-stop and plateau-stop rules. A row of an earlier
        step (backfilled) is recorded with the model holding that step's weights; a stop
        it calls for cannot come before the current step."""
        step = self.step if step is None else step
        _check_finite_row(row, step)
        row = {"step": step, **row}
        for cb, how in zip(self.callbacks, self._row_arg):
            if how == "positional":
                extra = cb(step, self.model, self.context, dict(row))
            elif how == "keyword":
                extra = cb(step, self.model, self.context, row=dict(row))
            else:
                extra = cb(step, self.model, self.context)
            row.update(extra or {})
        self.history.append(row)
        self._last_row = max(self._last_row, step)
        sch = self.schedule
        if self.grok_step is None and row["test_acc"] >= sch.grok_threshold:
            self.grok_step = step
            if sch.stop_after_grok is not None:
                self.end = min(self.end, max(step + sch.stop_after_grok, self.step))
        if self._plateau is not None and self._plateau.update(step, row["train_acc"], row["test_acc"]):
            self.end = min(self.end, max(step, self.step))
        if self.on_row is not None:
            self.on_row(self)

    def checkpoint(self) -> None:
        """Save this step (``on_checkpoint``); refused, with :class:`TrainingDiverged`,
        when a trained weight is not finite: a run directory keeps only finite states."""
        bad = next((i for i, p in enumerate(self.params) if not bool(torch.isfinite(p.detach()).all())), None)
        if bad is not None:
            raise TrainingDiverged(
                f"training diverged at step {self.step}: trained parameter {bad} holds non-finite values "
                f"(lr={self.schedule.lr})", step=self.step)
        if self.on_checkpoint is not None:
            self.on_checkpoint(self)
        self._saved_at = self.step

    def start_update(self) -> None:
        """Set the learning rate of this step and clear the gradients."""
        lr = self.schedule.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)

    @property
    def params(self) -> list[Tensor]:
        """The parameters the optimiser trains, in its order."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def eval_state(self) -> list[Tensor]:
        """The tensors a history row's evaluation depends on: :attr:`params`, or what
        ``evaluated_by`` names (e.g. the parameters and BatchNorm buffers)."""
        return self.params if self.evaluated_by is None else list(self.evaluated_by(self))

    def optimizer_step(self) -> None:
        """Apply the gradient transforms, then the optimiser: every update of every step
        function goes through here."""
        if self.gradient_transforms:
            params = self.params
            for transform in self.gradient_transforms:
                transform(params)
        self.optimizer.step()


def _check_finite_row(row: dict[str, Any], step: int) -> None:
    """Refuse a history row whose loss is NaN or infinite (:class:`TrainingDiverged`)."""
    for key in ("train_loss", "test_loss"):
        value = row.get(key)
        if value is not None and not math.isfinite(value):
            raise TrainingDiverged(
                f"training diverged at step {step}: {key} is {value} (too high a learning rate or an unstable "
                "loss)", step=step)


class StepFunction(Protocol):
    """How one step of a set of runs is computed; the loop decides when.

    ``forward`` runs at every step before anything else and returns what ``evaluate``
    and ``update`` need (e.g. the training logits and losses). ``evaluate`` returns one
    history row (without ``step``) per run index in ``due``; rows must have
    ``train_loss``, ``test_loss``, ``train_acc`` and ``test_acc``. ``update`` does the
    backward passes and optimiser steps (through :meth:`RunState.optimizer_step`) of
    the runs at indices ``going``; their learning rates are set and gradients cleared.

    ``adaptive`` says whether it can evaluate adaptively (``eval_sparse > 1``); then it
    also has ``train_rows(states, due, out)`` (``train_loss`` and ``train_acc`` from the
    step's own forward) and ``test_rows(states, due)`` (``test_loss`` and ``test_acc`` of
    the models as they are now): :class:`FullBatchStep`, the batched step of
    :mod:`grok_interp.many_runs` and the ResNet epoch step (when its config's
    ``eval_sparse > 1``) do. Runs driven by one that cannot (``adaptive = False``)
    record every row densely, whatever their ``eval_sparse``.
    """

    adaptive: bool

    def forward(self, states: Sequence[RunState]) -> Any: ...

    def evaluate(self, states: Sequence[RunState], due: list[int], out: Any) -> list[dict[str, Any]]: ...

    def update(self, states: Sequence[RunState], going: list[int], out: Any) -> None: ...


def flushing_denormals() -> bool:
    """Whether this thread's CPU arithmetic flushes subnormal floats to zero now (torch
    has a setter, :func:`torch.set_flush_denormal`, and no getter: this asks the CPU)."""
    return float((torch.tensor([1e-30]) * torch.tensor([1e-10])).item()) == 0.0


@contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[bool]:
    """Flush subnormal floats to zero on the CPU while the block runs, then restore the
    setting found (yields whether flushing is on).

    Long training with weight decay drives many weights and Adam moments towards zero,
    into the subnormal range (below 1.2e-38 in float32), where x86 CPUs compute through
    slow microcode: a late epoch of the image campaign's ResNet cost 1.85 times more
    with its subnormals than with them flushed (``benchmarks/denormals.py``). Flushed,
    such a value counts as zero, a change of at most 1.2e-38 per number, but not
    bit for bit the IEEE run: Adam can carry such a change further (from one campaign
    state, one epoch moved a BatchNorm bias 0.018 apart; from another, four epochs left
    the weights 6e-31 apart). ``torch.set_flush_denormal`` sets the calling thread, the one that
    computes with one intra-op thread; with more threads the others may keep subnormals
    (slower, not wrong). Where the CPU cannot flush (``set_flush_denormal`` returns
    False) nothing changes."""
    before = flushing_denormals()
    on = bool(torch.set_flush_denormal(enabled)) and enabled
    try:
        yield on
    finally:
        torch.set_flush_denormal(before)


def train_loop(
    states: Sequence[RunState], step_fn: StepFunction, *, progress: bool = True, desc: str = "train",
    log_every: float | None = None, flush_denormal: bool = False,
) -> None:
    """Train every run in ``states`` in place until each reaches its last step.

    Runs follow their own schedules; a run that finishes leaves, the others go on.

    Args:
        states: The runs (a single run is a list of one).
        step_fn: How a step is computed (:class:`FullBatchStep`, the batched step of
            :mod:`grok_interp.many_runs`, the ResNet epoch step).
        progress: Show a tqdm bar over the steps of all runs.
        desc: The bar's label.
        log_every: Log a line (:class:`ProgressLog`: steps done, the newest row's losses
            and accuracies, ETA) at INFO at most every this many seconds, and one at the
            end; for output that is not a terminal, where a bar is useless. None: none.
        flush_denormal: Flush subnormal floats to zero while training (:func:`flush_denormals`;
            the setting found is restored on return). The ResNet's step asks for it
            (its weights decay into the subnormal range); the transformer and MLP keep
            IEEE arithmetic, their runs replayed bit for bit, and flush only their loss
            gradient's subnormal entries (:func:`loss_fn`).
    """
    if log_every is not None and (isinstance(log_every, bool) or not isinstance(log_every, (int, float))
                                  or not log_every > 0):
        raise bad_value("log_every", log_every, "must be a positive number of seconds or None")
    active = list(states)
    total = sum(s.schedule.steps - s.step for s in active)
    bar = tqdm(total=total, disable=not progress, desc=desc, unit="step", dynamic_ncols=True)
    lines = ProgressLog(total, log_every, desc) if log_every is not None else None
    clock = time.perf_counter()

    def tick(runs: Sequence[RunState]) -> None:
        """Add the wall time since the last tick to each run's ``train_s``."""
        nonlocal clock
        now = time.perf_counter()
        for s in runs:
            s.train_s += now - clock
        clock = now

    with flush_denormals(flush_denormal):
        _run(states, step_fn, active, bar, lines, tick)


def _run(states: Sequence[RunState], step_fn: StepFunction, active: list[RunState], bar: Any,
         lines: ProgressLog | None, tick: Callable[[Sequence[RunState]], None]) -> None:
    """:func:`train_loop`'s loop, with its bar and clock."""
    try:
        while active:
            out = step_fn.forward(active)
            due = [i for i, s in enumerate(active) if s.eval_due()]
            if due:
                _rows(active, due, step_fn, out)
                if len(active) == 1 and active[0].history:
                    r = active[0].history[-1]
                    bar.set_postfix(
                        train_loss=f"{r['train_loss']:.3g}", test_loss=f"{r['test_loss']:.3g}",
                        train_acc=f"{r['train_acc']:.3f}", test_acc=f"{r['test_acc']:.3f}", refresh=False,
                    )
            tick(active)  # a checkpoint saves the time up to its own rows
            going = []
            for i, s in enumerate(active):
                if s.checkpoint_due():
                    if s.held_steps:  # a checkpoint between rows: its history must be complete
                        s.resolve(None, _test_at(step_fn, active, i))
                    s.checkpoint()
                if s.finished:
                    bar.update(s.schedule.steps - s.step)
                else:
                    going.append(i)
            if not going:
                break
            for i in going:
                active[i].start_update()
            step_fn.update(active, going, out)
            for i in going:
                active[i].step += 1
            tick([active[i] for i in going])
            bar.update(len(going))
            if lines is not None:
                lines.update(len(going), states)
            active = [active[i] for i in going]
            if len(states) > 1:
                bar.set_postfix(runs=len(active), refresh=False)
        if lines is not None:
            lines.done(states)
    finally:
        bar.close()


class ProgressLog:
    """Periodic progress lines for logs: at most one every ``every`` seconds.

    Each line is ``desc: step S/T (P%) train_loss ... test_loss ... train_acc ...
    test_acc ... elapsed 1m02s ETA 3m10s``: for one run its current step and newest
    history row; for several, the steps done over all of them and the number still
    training. The ETA assumes the remaining steps go at the mean rate so far.
    """

    def __init__(self, total: int, every: float, desc: str = "train", logger: logging.Logger | None = None) -> None:
        self.total, self.every, self.desc = total, float(every), desc
        self.log = logger or log
        self.done_steps = 0
        self.start = self.last = time.perf_counter()

    def update(self, n: int, states: Sequence[RunState]) -> None:
        self.done_steps += n
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self.log.info(self.line(states, now))

    def done(self, states: Sequence[RunState]) -> None:
        self.done_steps = self.total
        self.log.info(self.line(states, time.perf_counter()))

    def line(self, states: Sequence[RunState], now: float) -> str:
        elapsed = now - self.start
        parts = [f"{self.desc}:"]
        if len(states) == 1:
            s = states[0]
            parts.append(f"step {s.step}/{s.schedule.steps}")
        else:
            going = sum(not s.finished for s in states)
            parts.append(f"{self.done_steps}/{self.total} steps, {going} of {len(states)} runs going")
        parts.append(f"({100 * self.done_steps / max(self.total, 1):.0f}%)")
        if len(states) == 1 and states[0].history:
            r = states[0].history[-1]
            parts.append(" ".join(f"{k} {r[k]:.4g}" for k in _COLUMNS if k in r))
        left = self.total - self.done_steps
        eta = elapsed / self.done_steps * left if self.done_steps else float("nan")
        parts.append(f"elapsed {_duration(elapsed)} ETA {_duration(eta) if left else '0s'}")
        return " ".join(parts)


def _duration(seconds: float) -> str:
    """``3h02m``, ``4m05s`` or ``12s`` (``?`` when unknown)."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _rows(states: Sequence[RunState], due: list[int], step_fn: Any, out: Any) -> None:
    """The history rows of step ``states[i].step`` for every ``i`` in ``due``: dense runs
    through ``step_fn.evaluate``; sparse ones held back or resolved (module docstring)."""
    adaptive = step_fn.adaptive
    sparse = [i for i in due if adaptive and states[i].sparse]
    dense = [i for i in due if i not in sparse]
    if dense:
        for i, row in zip(dense, step_fn.evaluate(states, dense, out)):
            states[i].record(row)
    if not sparse:
        return
    full = [i for i in sparse if states[i].full_row_due()]
    tests = dict(zip(full, step_fn.test_rows(states, full))) if full else {}
    for i, train in zip(sparse, step_fn.train_rows(states, sparse, out)):
        if i in tests:
            states[i].resolve(_merged(train, tests[i]), _test_at(step_fn, states, i))
        else:
            states[i].hold(train)


def _test_at(step_fn: Any, states: Sequence[RunState], i: int) -> Callable[[], dict[str, Any]]:
    """The test metrics of run ``i``'s model as it is when called."""
    return lambda: step_fn.test_rows(states, [i])[0]


class FullBatchStep:
    """One full-batch step of transformer runs, each through its own forward.

    Each run's :attr:`RunState.context` is its :class:`TrainContext` (data, forward and
    loss). The history row's train loss and accuracy come from the step's own training
    forward; test loss and accuracy from a no-grad forward of the test set.

    ``parts > 1`` splits the batch instead of the matrix products: the training set (and
    the test set) is cut into ``parts`` contiguous slices, each computed with one torch
    thread, ``workers`` of them at a time in Python threads (torch releases the
    interpreter lock inside its kernels), and the slices' gradients are summed in a
    fixed order. On a 2-core CPU this keeps both cores busier than two intra-op threads,
    whose fork and join around each of a step's ~150 small operations leave cores idle
    (``benchmarks/train_step.py``, ``split``). The result depends on ``parts`` only, not
    on ``workers``: a run gets the same bits on a quiet machine (two workers) and a busy
    one (one). It equals the one-part step within float rounding; the loss must be a
    mean over the batch (every :func:`loss_fn` is).
    """

    adaptive = True

    def __init__(self, parts: int = 1, workers: int | None = None) -> None:
        self.parts = max(1, int(parts))
        workers = self.parts if workers is None else max(1, min(int(workers), self.parts))
        self._pool = _thread_pool(workers) if self.parts > 1 else None

    def forward(self, states: Sequence[RunState]) -> list[tuple[Tensor, Tensor] | tuple[Tensor, Tensor, list]]:
        outs = []
        for s in states:
            ctx = s.context
            if self._pool is None:
                logits = ctx.forward(s.model, ctx.train_tokens)
                outs.append((logits, loss_fn(logits, ctx.train_labels, ctx.loss)))
            else:
                outs.append(self._split_forward(s))
        return outs

    def _split_forward(self, s: RunState) -> tuple[list[Tensor], Tensor, list]:
        ctx = s.context
        params = s.params
        n = len(ctx.train_labels)

        def part(sl: slice) -> tuple[Tensor, Tensor, tuple]:
            torch.set_num_threads(1)  # this thread's OpenMP setting
            logits = ctx.forward(s.model, ctx.train_tokens[sl])
            loss = loss_fn(logits, ctx.train_labels[sl], ctx.loss) * ((sl.stop - sl.start) / n)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            return logits.detach(), loss.detach(), grads

        results = list(self._pool.map(part, batch_slices(n, self.parts)))
        grads = [_sum_in_order([r[2][j] for r in results]) for j in range(len(params))]
        loss = _sum_in_order([r[1] for r in results])
        return [r[0] for r in results], loss, grads  # the logits stay in parts (read only for a row)

    def evaluate(self, states: Sequence[RunState], due: list[int], out: Any) -> list[dict[str, Any]]:
        return [_row_order({**a, **b}) for a, b in zip(self.train_rows(states, due, out), self.test_rows(states, due))]

    @torch.no_grad()
    def train_rows(self, states: Sequence[RunState], due: list[int], out: Any) -> list[dict[str, Any]]:
        """Training loss and accuracy of the runs ``due``, from this step's forward."""
        rows = []
        for i in due:
            ctx = states[i].context
            logits, loss = out[i][0], out[i][1]
            if self._pool is None:
                rows.append(columns_of_train(logits, loss, ctx))
                continue
            n = len(ctx.train_labels)
            correct = sum(int((lg.argmax(-1) == ctx.train_labels[sl]).sum())
                          for lg, sl in zip(logits, batch_slices(n, self.parts)))
            rows.append({"train_loss": loss.item(), "train_acc": correct / n})
        return rows

    @torch.no_grad()
    def test_rows(self, states: Sequence[RunState], due: list[int]) -> list[dict[str, Any]]:
        """Test loss and accuracy of the models of the runs ``due``, as they are now."""
        rows = []
        for i in due:
            ctx = states[i].context
            if self._pool is None:
                rows.append(columns_of_test(ctx.forward(states[i].model, ctx.test_tokens), ctx))
                continue
            test_loss, test_acc = self._split_test(states[i])
            rows.append({"test_loss": test_loss, "test_acc": test_acc})
        return rows

    def _split_test(self, s: RunState) -> tuple[float, float]:
        """Test loss and accuracy: each part's forward, loss and argmax in its thread."""
        ctx = s.context
        n = len(ctx.test_labels)

        @torch.no_grad()
        def part(sl: slice) -> tuple[Tensor, Tensor]:
            torch.set_num_threads(1)
            logits = ctx.forward(s.model, ctx.test_tokens[sl])
            labels = ctx.test_labels[sl]
            loss = loss_fn(logits, labels, ctx.loss) * ((sl.stop - sl.start) / n)
            return loss, (logits.argmax(-1) == labels).sum()

        results = list(self._pool.map(part, batch_slices(n, self.parts)))
        return _sum_in_order([r[0] for r in results]).item(), sum(int(r[1]) for r in results) / n

    def update(self, states: Sequence[RunState], going: list[int], out: Any) -> None:
        for i in going:
            if len(out[i]) == 3:  # split: the gradients are computed already
                for p, g in zip(states[i].params, out[i][2]):
                    p.grad = g
            else:
                out[i][1].backward()
            states[i].optimizer_step()


_POOLS: dict[int, Any] = {}


def _thread_pool(size: int) -> Any:
    """A process-wide pool of ``size`` threads (they sleep between steps)."""
    from concurrent.futures import ThreadPoolExecutor

    if size not in _POOLS:
        _POOLS[size] = ThreadPoolExecutor(size, thread_name_prefix="grok-interp-part")
    return _POOLS[size]


def batch_slices(n: int, parts: int) -> list[slice]:
    """``parts`` contiguous slices of ``range(n)`` of near-equal length (none empty)."""
    parts = max(1, min(parts, n))
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _sum_in_order(xs: Sequence[Tensor | None]) -> Tensor | None:
    """The sum of the parts' tensors, always in the same order (None: no gradient), in
    contiguous memory like the parameters (``autograd.grad`` may return strided views,
    which the fused AdamW kernel on CPU misreads)."""
    present = [x for x in xs if x is not None]
    if not present:
        return None
    total = present[0].clone(memory_format=torch.contiguous_format)
    for x in present[1:]:
        total += x
    return total


def eval_row(train_logits: Tensor, train_loss: Tensor, test_logits: Tensor, ctx: TrainContext) -> dict[str, Any]:
    """The four columns every history row has, from a step's training forward and the
    test set's logits."""
    return _row_order({**columns_of_train(train_logits, train_loss, ctx), **columns_of_test(test_logits, ctx)})


def columns_of_train(train_logits: Tensor, train_loss: Tensor, ctx: TrainContext) -> dict[str, Any]:
    """``train_loss`` and ``train_acc`` of a row, from a step's training forward."""
    return {"train_loss": train_loss.item(), "train_acc": accuracy(train_logits.detach(), ctx.train_labels)}


def columns_of_test(test_logits: Tensor, ctx: TrainContext) -> dict[str, Any]:
    """``test_loss`` and ``test_acc`` of a row, from the test set's logits."""
    return {"test_loss": loss_fn(test_logits, ctx.test_labels, ctx.loss).item(),
            "test_acc": accuracy(test_logits, ctx.test_labels)}


def gradient_transforms_for(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> list[GradientTransform]:
    """The gradient transforms a :class:`~grok_interp.config.TrainConfig` asks for, in
    the order they apply: the Grokfast filter (``grokfast``), then the perpendicular
    gradient (``perpendicular_grad``), so the gradient the optimiser sees is
    perpendicular to the weights. Empty by default.

    A filter keeps its state in ``optimizer``'s state, so the run's resume states save
    it and a resumed run goes on exactly (see :mod:`grok_interp.training.accelerators`).
    """
    out: list[GradientTransform] = []
    if cfg.grokfast == "ema":
        out.append(GrokfastEMA(cfg.grokfast_alpha, cfg.grokfast_lamb, optimizer=optimizer))
    elif cfg.grokfast == "ma":
        out.append(GrokfastMA(cfg.grokfast_window, cfg.grokfast_lamb, optimizer=optimizer))
    if cfg.perpendicular_grad:
        out.append(PerpendicularGradient())
    return out
