"""Many runs in one process: ``K`` same-shaped runs trained as one batched computation.

A sweep over seeds, splits, weight decays or learning rates trains models that share
every tensor shape. :func:`train_many` stacks their weights on a leading ``run`` axis
each step and computes all ``K`` forwards and backwards with batched matrix products
(:func:`grok_interp.forward.fast_logits`), so small per-run products become a few large
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

Runs can share a batch when :func:`batch_key` gives them the same key: one-layer,
LayerNorm-free transformers with the same shapes (``p``, ``offset``, ``d_model``,
``n_heads``, ``d_head``, ``d_mlp``, ``act_fn``), the same training- and test-set sizes
and device. Everything else may differ: seeds, init, frozen parts, operation, split,
``frac`` (when the sizes agree), ``lr``, ``weight_decay``, ``betas``, ``warmup_steps``,
``loss``, ``steps``, ``eval_every``, ``checkpoint_every``, ``stop_after_grok``. Runs
that cannot be batched (other architectures, ``forward="hooked"``, a custom callable
operation, a group of one) train through :func:`grok_interp.train_hooked`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._validate import bad_value
from .config import RunConfig
from .forward import FAST_WEIGHTS, fast_forward, fast_logits, fast_unsupported_reason
from .models import weights
from .runs import GrokRun, PreparedRun, prepare_run, save_checkpoint, train_hooked
from .tasks import Split, Task
from .training import Callback, accuracy, checkpoint_schedule, loss_fn, make_optimizer, resolve_device

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
    model sizes, activation, training- and test-set sizes, and the device.
    """
    m, d, t = config.model, config.data, config.train
    if fast_unsupported_reason(m) is not None or t.forward == "hooked" or d.op.startswith("custom:"):
        return None
    task = Task(p=d.p, op=d.op, offset=d.offset)
    split = Split.build(task, d.split, d.frac, d.data_seed, k=d.k, t=d.t, mask=mask)
    return (
        d.p, d.offset, m.d_model, m.n_heads, m.d_head, m.d_mlp, m.act_fn,
        split.n_train, int(split.test_mask.sum()), str(resolve_device(t.device)),
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
    d_mlp, n_train, device = key[5], key[7], key[9]
    if device.startswith("cuda"):
        return None
    return max(1, CPU_BATCH_BYTES // (4 * n_train * d_mlp))


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
    out = []
    for key, idx in groups.items():
        size = max_batch if max_batch is not None else (None if key[0] == "single" else auto_batch_size(key))
        size = size or len(idx)
        out.extend(idx[j : j + size] for j in range(0, len(idx), size))
    return sorted(out, key=lambda g: g[0])


@dataclass(eq=False)
class _Member(PreparedRun):
    """One run inside a batch: its model, optimiser, data, history and run directory."""

    step: int = 0
    memory: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    end: int = 0
    last_row: int = -1
    grok_step: int | None = None
    schedule: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        cfg = self.config.train
        self.step = self.start
        self.schedule = set(checkpoint_schedule(cfg.steps, cfg.checkpoint_every))
        self.last_row = self.history[-1]["step"] if self.history else -1
        self.grok_step = next((r["step"] for r in self.history if r["test_acc"] >= cfg.grok_threshold), None)
        self.end = cfg.steps
        if self.grok_step is not None and cfg.stop_after_grok is not None:
            self.end = min(self.end, self.grok_step + cfg.stop_after_grok)

    def on_checkpoint(self) -> None:
        """Save weights (and resume state) exactly as ``train_hooked`` does."""
        save_checkpoint(self.store, self.memory, self.step, self.model, self.optimizer, self.history)

    def record(self, train_logits: Tensor, train_loss: Tensor, test_logits: Tensor) -> None:
        """Append the history row of the current step (the ``train_loop`` row) and run callbacks."""
        cfg = self.config.train
        row = {
            "step": self.step,
            "train_loss": train_loss.item(),
            "test_loss": loss_fn(test_logits, self.ctx.test_labels, cfg.loss).item(),
            "train_acc": accuracy(train_logits, self.ctx.train_labels),
            "test_acc": accuracy(test_logits, self.ctx.test_labels),
        }
        for cb in self.callbacks:
            row.update(cb(self.step, self.model, self.ctx) or {})
        self.history.append(row)
        self.last_row = self.step
        if self.grok_step is None and row["test_acc"] >= cfg.grok_threshold:
            self.grok_step = self.step
            if cfg.stop_after_grok is not None:
                self.end = min(self.end, self.step + cfg.stop_after_grok)

    def result(self) -> GrokRun:
        if self.store is not None:
            self.store.write_status(self.history[-1]["step"], finished=True)
            self.store.close()
        return GrokRun(
            model=self.model, task=self.task, split=self.split, config=self.config,
            history=pd.DataFrame(self.history), path=self.out_path,
            _memory_checkpoints=self.memory,
        )


def _fused_optimizer(model: nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """:func:`~grok_interp.training.make_optimizer`'s AdamW with the fused kernel where available.

    The same algorithm and the same ``state_dict`` layout (so resume states move between
    ``train_hooked`` and ``train_many``), in one kernel per step instead of about ten
    small operations per parameter: the optimiser is most of a small run's step.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, ValueError):  # pragma: no cover - a device/dtype without the fused kernel
        return make_optimizer(model, cfg)


def _member(
    config: RunConfig, mask: Tensor | None, out: str | os.PathLike | None, resume: bool,
    callbacks: Iterable[Callback], measures: Iterable[Any] | None,
) -> _Member:
    """Set one run up as ``train_hooked`` does (same model, optimiser, data, run directory)."""
    s = prepare_run(config, mask=mask, out=out, resume=resume, callbacks=callbacks, measures=measures,
                    forward=fast_forward, make_opt=_fused_optimizer)
    return _Member(**{f.name: getattr(s, f.name) for f in fields(PreparedRun)})


def _stack(members: list[_Member], detach: bool = False) -> dict[str, Tensor]:
    ws = [weights(m.model) for m in members]
    return {k: torch.stack([w[k].detach() if detach else w[k] for w in ws]) for k in FAST_WEIGHTS}


def _train_batch(members: list[_Member], progress: bool) -> None:
    """The batched ``train_loop``: every member follows its own schedule and stops on its own."""
    act = members[0].config.model.act_fn
    total = sum(m.config.train.steps - m.step for m in members)
    bar = tqdm(total=total, disable=not progress, desc=f"train x{len(members)}", unit="step", dynamic_ncols=True)
    active = list(members)
    data: tuple[list[_Member], Tensor, Tensor] | None = None
    try:
        while active:
            if data is None or [id(m) for m in data[0]] != [id(m) for m in active]:  # the batch changed
                data = (
                    list(active),
                    torch.stack([m.ctx.train_tokens for m in active]),
                    torch.stack([m.ctx.test_tokens for m in active]),
                )
            _, train_tokens, test_tokens = data
            logits = fast_logits(_stack(active), train_tokens, act)
            losses = [loss_fn(logits[i], m.ctx.train_labels, m.config.train.loss) for i, m in enumerate(active)]
            due = [
                i for i, m in enumerate(active)
                if (m.step % m.config.train.eval_every == 0 or m.step >= m.end) and m.step > m.last_row
            ]
            if due:
                sub = [active[i] for i in due]
                with torch.no_grad():
                    test_logits = fast_logits(_stack(sub, detach=True), test_tokens[due], act)
                for j, i in enumerate(due):
                    active[i].record(logits[i].detach(), losses[i].detach(), test_logits[j])
            going = []
            for i, m in enumerate(active):
                final = m.step >= m.end
                if m.step in m.schedule or final:
                    m.on_checkpoint()
                if not final:
                    going.append(i)
                else:
                    bar.update(m.config.train.steps - m.step)
            if not going:
                break
            for i in going:
                m = active[i]
                cfg = m.config.train
                mult = min(m.step / cfg.warmup_steps, 1.0) if cfg.warmup_steps else 1.0
                for group in m.optimizer.param_groups:
                    group["lr"] = cfg.lr * mult
                m.optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward([losses[i] for i in going])  # independent runs: each gets its own gradient
            for i in going:
                active[i].optimizer.step()
                active[i].step += 1
            bar.update(len(going))
            active = [active[i] for i in going]
            bar.set_postfix(runs=len(active), refresh=False)
    finally:
        bar.close()


def train_many(
    runs: Sequence[RunSpec],
    *,
    outs: Sequence[str | os.PathLike | None] | None = None,
    resume: bool = False,
    callbacks: Iterable[Callback] = (),
    measures: Iterable[Any] | None = None,
    progress: bool = True,
    max_batch: int | None = None,
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
        measures: Progress measures recorded at every history row of every run.
        progress: Show a progress bar per batch.
        max_batch: At most this many runs per batch; None (default) sizes batches
            with :func:`auto_batch_size`: every compatible run together on a GPU, on
            CPU only while the batch stays cache-sized (large tasks then train one
            by one, which is faster there; see ``benchmarks/many_runs.py``).

    Returns:
        The runs, in the order given.

    Example:
        >>> runs = train_many([{"p": 97, "seed": s} for s in range(8)], progress=False)  # doctest: +SKIP
    """
    runs = list(runs)
    outs = list(outs) if outs is not None else [None] * len(runs)
    if len(outs) != len(runs):
        raise bad_value("outs", f"{len(outs)} entries", f"give one per run ({len(runs)})")
    callbacks = list(callbacks)
    results: list[GrokRun | None] = [None] * len(runs)
    for group in batch_groups(runs, max_batch):
        if len(group) == 1:
            (i,) = group
            spec = runs[i]
            kwargs = {"config": spec} if isinstance(spec, RunConfig) else dict(spec)
            results[i] = train_hooked(
                out=outs[i], resume=resume, callbacks=callbacks, measures=measures, progress=progress, **kwargs
            )
            continue
        members: list[_Member] = []
        try:
            for i in group:
                config, mask = _as_config(runs[i])
                assert config is not None
                members.append(_member(config, mask, outs[i], resume, callbacks, measures))
            log.info("training %d runs as one batch (p=%d)", len(members), members[0].task.p)
            _train_batch(members, progress)
            for i, m in zip(group, members):
                results[i] = m.result()
        finally:  # each run directory's lock is held while its run trains, and no longer
            for m in members:
                if m.store is not None:
                    m.store.close()
    return [r for r in results if r is not None]
