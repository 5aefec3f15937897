"""Many runs in one process: ``K`` same-shaped runs trained as one batched computation.

A sweep over seeds, splits, weight decays or learning rates trains models that share
every tensor shape. :func:`train_many` stacks their weights on a leading ``run`` axis
each step and computes all ``K`` forwards and backwards with batched matrix products
(:func:`grok_interp.training.forwards.fast_logits`), so small per-run products become a few large
ones and Python/dispatch overhead is paid once per step instead of ``K`` times.

What stays per run, exactly as :func:`grok_interp.train_hooked` does it:

* the model: each run keeps its own hooked model (``build_model`` with its seed); the
  stack is rebuilt from the models' parameters every step (``torch.stack`` is
  differentiable), so gradients land in each model's own ``.grad``;
* the optimiser: each run has its own ``AdamW`` (its lr, weight decay, betas, warm-up)
  and takes its own ``step()``; the runs' losses are independent, so the gradient of
  their sum is each run's own gradient;
* the history, callbacks, measures, checkpoints, early stopping and run directory (the
  same files, written by the same helpers as ``train_hooked``; ``resume=True`` resumes
  each run from its own latest state).

A run that finishes (its ``steps`` or ``stop_after_grok``) leaves the batch; the rest
go on. Each run's history equals its ``train_hooked`` history within float rounding
(batched and single matrix products may round differently; tested).

Batching pays where one run leaves the hardware idle: on a GPU, and on CPU for small
tasks (1.6x for 8 runs at p = 31 with the Nanda sizes, break-even at p = 47). On CPU a
large task already keeps a core busy and a batch of them only spills the caches (8 runs
at p = 97: no gain), so by default (:func:`auto_batch_size`) CPU batches stay
cache-sized and large tasks train one by one.

Runs can share a batch when :func:`batch_key` gives them the same key: LayerNorm-free
transformers with the same shapes (``p``, ``offset``, ``n_layers``, ``d_model``,
``n_heads``, ``d_head``, ``d_mlp``, ``act_fn``), the same training- and test-set sizes
and device. Everything else may differ: seeds, init, frozen parts, operation, split,
``frac`` (when the sizes agree), ``lr``, ``weight_decay``, ``betas``, ``warmup_steps``,
``loss``, ``steps``, ``eval_every``, ``eval_sparse``, ``checkpoint_every``, ``stop_after_grok``
(adaptive evaluation works per run, as in ``train_hooked``; a backfilled row's test
metrics come from a batch of one, so they may differ from the dense row in the last
float bits, as batched and single products do). Runs
that cannot be batched (other architectures, ``forward="hooked"``, a custom callable
operation, a group of one) train through :func:`grok_interp.train_hooked`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from ._validate import bad_value
from .config import RunConfig
from .training.forwards import fast_forward, fast_logits, fast_unsupported_reason, fast_weight_names
from .models import weights
from .runs import GrokRun, PreparedRun, build_run, train_hooked
from .groups import build_task
from .tasks import Split
from .training import Callback, GradientTransform, RunState, eval_row, lifecycle, loss_fn, resolve_device, train_loop
from .training.loop import columns_of_test, columns_of_train

__all__ = ["train_many", "batch_key", "batch_groups", "auto_batch_size", "CPU_BATCH_BYTES"]

log = logging.getLogger(__name__)

RunSpec = RunConfig | Mapping[str, Any]


def _as_config(spec: RunSpec) -> tuple[RunConfig | None, Tensor | None]:
    """``(config, mask)`` for a RunConfig or a dict of ``train_hooked`` options.

    ``config`` is None for a run only ``train_hooked`` can set up (a callable ``op``).
    """
    if isinstance(spec, RunConfig):
        return spec, None
    opts = dict(spec)
    mask = opts.pop("mask", None)
    if "config" in opts:
        return opts["config"], mask
    if callable(opts.get("op")):
        return None, mask
    return RunConfig.from_kwargs(**opts), mask


def batch_key(config: RunConfig, mask: Tensor | None = None) -> tuple | None:
    """Runs with equal keys can train in one batch; ``None``: this run cannot be batched.

    The key holds every shape the batched step stacks: vocabulary (``p``, ``offset``),
    model sizes, activation, number of layers (last, so the indices above stay), training- and test-set sizes, and the device.
    """
    m, d, t = config.model, config.data, config.train
    if fast_unsupported_reason(m) is not None or t.forward == "hooked" or d.op.startswith("custom:"):
        return None
    task = build_task(d.p, d.op, d.offset)
    split = Split.from_config(task, d, mask=mask)
    return (
        d.p, d.offset, m.d_model, m.n_heads, m.d_head, m.d_mlp, m.act_fn,
        split.n_train, int(split.test_mask.sum()), str(resolve_device(t.device)), m.n_layers,
    )


# On CPU a batch pays only while the runs' MLP activations (n_train x d_mlp floats
# each) stay cache-sized: measured on a 2-core Xeon (1 thread, fwd+bwd per run-step),
# 8 runs at once were 1.3x faster than one by one at p=31 (0.6 MB per run), even at
# p=47 (1.4 MB), and 1.3x slower at p=97 (5.8 MB), where each run alone already keeps
# the core busy (benchmarks/many_runs.py). On a GPU, batching is what fills the device.
CPU_BATCH_BYTES = 4 * 2**20


def auto_batch_size(key: tuple) -> int | None:
    """Largest useful batch for runs with :func:`batch_key` ``key`` (None: no limit).

    CUDA: no limit. CPU: as many runs as fit ``CPU_BATCH_BYTES`` of MLP activations
    (at least 1, i.e. one run at a time for large tasks).
    """
    if key[9].startswith("cuda"):
        return None
    d_mlp, n_train, n_layers = key[5], key[7], key[10]
    # Each layer before the last adds the MLP activations of two positions (an estimate:
    # the CPU_BATCH_BYTES break-even was measured on one-layer models).
    return max(1, CPU_BATCH_BYTES // (4 * n_train * d_mlp * (2 * n_layers - 1)))


def batch_groups(runs: Sequence[RunSpec], max_batch: int | None = None) -> list[list[int]]:
    """Partition run indices into batches (same :func:`batch_key`), at most ``max_batch`` each.

    ``max_batch=None`` sizes each batch with :func:`auto_batch_size` (no limit on a
    GPU; on CPU only as many runs as stay cache-sized). Unbatchable runs come back as
    groups of one. Groups keep the input order inside; groups are ordered by first run.
    """
    groups: dict[Any, list[int]] = {}
    for i, spec in enumerate(runs):
        config, mask = _as_config(spec)
        key = batch_key(config, mask) if config is not None else None
        groups.setdefault(("single", i) if key is None else key, []).append(i)
    out: list[list[int]] = []
    for key, idx in groups.items():
        size = max_batch if max_batch is not None else (None if key[0] == "single" else auto_batch_size(key))
        size = size or len(idx)
        out.extend(idx[j : j + size] for j in range(0, len(idx), size))
    return sorted(out, key=lambda g: g[0])


class StackedStep:
    """One full-batch step of ``K`` same-shaped runs as one batched computation.

    The runs' weights are stacked on a leading ``run`` axis every step (``torch.stack``
    is differentiable, so gradients land in each model's own ``.grad``) and all
    forwards run through :func:`~grok_interp.training.forwards.fast_logits`; the runs' losses are
    independent, so one backward of them all gives each run its own gradient. Each
    run's :attr:`RunState.context` is its :class:`~grok_interp.training.TrainContext`.
    """

    adaptive = True

    def __init__(self, act_fn: str, n_layers: int = 1) -> None:
        self.act_fn = act_fn
        self.names = fast_weight_names(n_layers)
        self._data: tuple[list[int], Tensor, Tensor] | None = None

    def _tokens(self, states: Sequence[RunState]) -> tuple[Tensor, Tensor]:
        ids = [id(s) for s in states]
        if self._data is None or self._data[0] != ids:  # the batch changed: restack the data
            self._data = (
                ids,
                torch.stack([s.context.train_tokens for s in states]),
                torch.stack([s.context.test_tokens for s in states]),
            )
        return self._data[1], self._data[2]

    def _stack(self, states: Sequence[RunState], detach: bool = False) -> dict[str, Tensor]:
        ws = [weights(s.model) for s in states]
        return {k: torch.stack([w[k].detach() if detach else w[k] for w in ws]) for k in self.names}

    def forward(self, states: Sequence[RunState]) -> tuple[Tensor, list[Tensor]]:
        train_tokens, _ = self._tokens(states)
        logits = fast_logits(self._stack(states), train_tokens, self.act_fn)
        losses = [loss_fn(logits[i], s.context.train_labels, s.context.loss) for i, s in enumerate(states)]
        return logits, losses

    @torch.no_grad()
    def evaluate(self, states: Sequence[RunState], due: list[int], out: Any) -> list[dict[str, Any]]:
        logits, losses = out
        test_logits = self._test_logits(states, due)
        return [eval_row(logits[i], losses[i], test_logits[j], states[i].context) for j, i in enumerate(due)]

    @torch.no_grad()
    def train_rows(self, states: Sequence[RunState], due: list[int], out: Any) -> list[dict[str, Any]]:
        """Training loss and accuracy of the runs ``due``, from this step's forward."""
        logits, losses = out
        return [columns_of_train(logits[i], losses[i], states[i].context) for i in due]

    @torch.no_grad()
    def test_rows(self, states: Sequence[RunState], due: list[int]) -> list[dict[str, Any]]:
        """Test loss and accuracy of the runs ``due``' models as they are now (one batched forward)."""
        test_logits = self._test_logits(states, due)
        return [columns_of_test(test_logits[j], states[i].context) for j, i in enumerate(due)]

    def _test_logits(self, states: Sequence[RunState], due: list[int]) -> Tensor:
        _, test_tokens = self._tokens(states)
        return fast_logits(self._stack([states[i] for i in due], detach=True), test_tokens[due], self.act_fn)

    def update(self, states: Sequence[RunState], going: list[int], out: Any) -> None:
        _, losses = out
        torch.autograd.backward([losses[i] for i in going])  # independent runs: each gets its own gradient
        for i in going:
            states[i].optimizer_step()


def train_many(
    runs: Sequence[RunSpec],
    *,
    outs: Sequence[str | os.PathLike | None] | None = None,
    resume: bool = False,
    callbacks: Iterable[Callback] = (),
    record: Iterable[Any] | None = None,
    progress: bool = True,
    max_batch: int | None = None,
    gradient_transforms: Iterable[GradientTransform] = (),
    threads: int | str | None = "auto",
    batch_parts: int | None = None,
    log_every: float | None = None,
) -> list[GrokRun]:
    """Train many runs, batching those that share shapes; one :class:`GrokRun` per run.

    Each run's result equals ``train_hooked`` on the same configuration within float
    rounding: same initial weights, data, optimiser, schedule, history rows, callbacks
    and run directory. Compatible runs (equal :func:`batch_key`) train together as one
    batched computation; the rest train one by one through ``train_hooked``.

    Args:
        runs: One entry per run: a :class:`~grok_interp.config.RunConfig`, or a dict of
            ``train_hooked`` keyword arguments (``p``, ``op``, ``split``, ``mask`` and any
            config option, e.g. ``{"p": 97, "seed": 3, "weight_decay": 0.5}``).
        outs: A run directory per run (``None`` entries keep that run in memory), as
            ``train_hooked(out=...)``; default: all in memory.
        resume: Continue each run in its ``out`` from its latest state (a finished run
            returns at once), as ``train_hooked(resume=True)``.
        callbacks: ``(step, model, context) -> dict`` called at every history row of
            every run, with that run's own model and context.
        record: Progress measures recorded at every history row of every run.
        progress: Show a progress bar per batch.
        log_every: Log a line per batch (steps done, runs still going, ETA) at most every
            this many seconds, as :func:`~grok_interp.train_hooked` does (None: none).
        gradient_transforms: As ``train_hooked``'s, applied to every run.
        max_batch: At most this many runs per batch; None (default) sizes batches
            with :func:`auto_batch_size`: every compatible run together on a GPU, on
            CPU only while the batch stays cache-sized (large tasks then train one
            by one, which is faster there; see ``benchmarks/many_runs.py``).
        threads, batch_parts: Passed to ``train_hooked`` for the runs that train one
            by one (a batch of one); a sweep worker gives one thread and ``batch_parts=1``.

    Returns:
        The runs, in the order given.

    Examples:
        >>> runs = train_many([{"p": 11, "steps": 20, "d_model": 16, "d_mlp": 32, "seed": s} for s in range(3)],
        ...                   progress=False)   # one batch: three seeds, one computation per step
        >>> [r.config.model.seed for r in runs]
        [0, 1, 2]
    """
    runs = list(runs)
    outs = list(outs) if outs is not None else [None] * len(runs)
    if len(outs) != len(runs):
        raise bad_value("outs", f"{len(outs)} entries", f"give one per run ({len(runs)})")
    callbacks = list(callbacks)
    record = _record_list(record)  # read once: every run records the same measures
    results: list[GrokRun | None] = [None] * len(runs)
    for group in batch_groups(runs, max_batch):
        if len(group) == 1:
            (i,) = group
            spec = runs[i]
            kwargs = {"config": spec} if isinstance(spec, RunConfig) else dict(spec)
            results[i] = train_hooked(
                out=outs[i], resume=resume, callbacks=callbacks, record=record, progress=progress,
                gradient_transforms=gradient_transforms, threads=threads, batch_parts=batch_parts, log_every=log_every,
                **kwargs
            )
            continue
        prepared: list[PreparedRun] = []
        try:
            for i in group:
                config, mask = _as_config(runs[i])
                assert config is not None
                built = build_run(config, mask=mask, fused_optimizer=True)
                started = lifecycle.start_run(built, outs[i], resume, extra=record)
                prepared.append(built.ready(started, forward=fast_forward, callbacks=callbacks))
            log.info("training %d runs as one batch (p=%d)", len(prepared), prepared[0].task.p)
            states = [r.run_state(gradient_transforms) for r in prepared]
            model_cfg = prepared[0].config.model
            train_loop(states, StackedStep(model_cfg.act_fn, model_cfg.n_layers), progress=progress,
                       desc=f"train x{len(states)}", log_every=log_every)
            for i, r, state in zip(group, prepared, states):
                results[i] = r.result(state)
        except BaseException:
            _close_all(prepared, quiet=True)
            raise
        _close_all(prepared)
    return [r for r in results if r is not None]


def _record_list(record: Iterable[Any] | None) -> Any:
    """``record`` as a run keeps it: None, a name, or a list (an iterable read once)."""
    return record if record is None or isinstance(record, str) else list(record)


def _close_all(prepared: list[PreparedRun], quiet: bool = False) -> None:
    """Close every run of a batch, each run directory's lock released whatever the
    others do (a write that failed on a full disk re-raises at its close: the runs after
    it kept their locks, and the sweep retrying them alone found them "being written by
    another process", its own). The first error is raised after all are closed, unless
    ``quiet`` (an error is already on its way)."""
    first: BaseException | None = None
    for r in prepared:
        try:
            r.close()
        except BaseException as exc:  # noqa: BLE001 - the next run's lock must still go
            first = first or exc
    if first is not None and not quiet:
        raise first


# The stacked runs: transformer runs in every respect (config, model, optimiser, run
# directory, resume) but their step, one batched computation for K runs.
lifecycle.register_run_kind("many", dataclasses.replace(lifecycle.run_kind("transformer"), name="many",
                                                        step_function=StackedStep, train=train_many))
