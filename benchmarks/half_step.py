"""One core's share of the README main job: its training set cut in two, as the split step
cuts it. Shared by the benchmarks that time one core's half step (``split_cost.py``,
``step_anatomy.py``, ``loss_cost.py``); not a script itself."""

from __future__ import annotations

import grok_interp as g
from grok_interp.training.loop import make_optimizer


def main_job(p: int):
    """The README main job's configuration, task and random split at ``p``."""
    cfg = g.RunConfig.from_kwargs(p=p)
    task = g.Task(p=p)
    split = g.Split.build(task, "random", cfg.data.frac, cfg.data.data_seed)
    return cfg, task, split


def half(p: int, which: int = 0):
    """Half ``which`` (0: the first, 1: the rest) of the main job's training set at ``p``,
    with a fresh model and its fused AdamW: ``(cfg, task, model, optimizer, tokens, labels)``."""
    cfg, task, split = main_job(p)
    toks, labels = task.tokens(split.train_pairs), task.answers(split.train_pairs)
    h = len(toks) // 2
    sl = slice(0, h) if which == 0 else slice(h, None)
    model = g.models.build_model(cfg.model, task)
    return cfg, task, model, make_optimizer(model, cfg.train, fused=True), toks[sl], labels[sl]
