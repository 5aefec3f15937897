"""The training steps the benchmarks time, set up once: a job's configuration, task and
random split (:func:`job`), a fresh model on its whole training set (:func:`full_batch`)
and one full-batch step through a given forward (:func:`train_step`), as ``train_step.py``,
``compute_efficiency.py``, ``forward_ab.py`` and ``mlp_step.py`` time it; and one core's share of the
README main job, its training set cut in two as the split step cuts it (:func:`half`),
for the benchmarks that time one core's half step (``split_cost.py``,
``step_anatomy.py``, ``loss_cost.py``). Not a script itself."""

from __future__ import annotations

import grok_interp as g
from grok_interp.training import loss_fn
from grok_interp.training import make_optimizer


def job(p: int, op: str = "add", **options):
    """The configuration (``options`` as :meth:`grok_interp.RunConfig.from_kwargs` takes
    them), task and random split of a job at ``p``; no options: the README main job."""
    cfg = g.RunConfig.from_kwargs(p=p, op=op, **options)
    task = g.Task(p=p, op=op)
    split = g.Split.build(task, "random", cfg.data.frac, cfg.data.data_seed)
    return cfg, task, split


def main_job(p: int):
    """The README main job's configuration, task and random split at ``p``."""
    return job(p)


def full_batch(cfg, task, split):
    """A fresh model of ``cfg`` and its AdamW, with the whole training set:
    ``(model, optimizer, tokens, labels)``."""
    model = g.models.build_model(cfg.model, task)
    return model, make_optimizer(model, cfg.train), task.tokens(split.train_pairs), task.answers(split.train_pairs)


def train_step(model, opt, toks, labels, forward) -> None:
    """One full-batch step: ``forward``, the training loss, backward, the optimiser's step."""
    loss = loss_fn(forward(model, toks), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def half(p: int, which: int = 0):
    """Half ``which`` (0: the first, 1: the rest) of the main job's training set at ``p``,
    with a fresh model and its fused AdamW: ``(cfg, task, model, optimizer, tokens, labels)``."""
    cfg, task, split = main_job(p)
    toks, labels = task.tokens(split.train_pairs), task.answers(split.train_pairs)
    h = len(toks) // 2
    sl = slice(0, h) if which == 0 else slice(h, None)
    model = g.models.build_model(cfg.model, task)
    return cfg, task, model, make_optimizer(model, cfg.train, fused=True), toks[sl], labels[sl]
