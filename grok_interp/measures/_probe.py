"""Shared plumbing for the measures: argument coercion and one cached hooked forward.

A :class:`Probe` runs the model once over the whole ``p x p`` grid of operand pairs
with ``run_with_cache`` (a names filter keeps only the activations asked for), keeps
the last position of each, and hands them to every measure that needs them, so a
checkpoint costs one forward however many measures are taken on it.

When a measure needs the logits alone (the paper's restricted and excluded loss, with
key frequencies held fixed), the probe takes them from the training's fast
last-position forward (:func:`grok_interp.training.forwards.fast_forward`: the same
logits from the same weights, about a quarter of the hooked forward's work). The first
time a model object is probed this way, the fast logits of a few pairs are compared
with the hooked model's own; a model they do not match (an architecture the fast
forward does not cover) is always run hooked.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Iterable

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from .._validate import bad_value, check_choice
from .. import protocols
from ..models import MLPBaseline, check_model_fits_task, weights
from ..tasks import Task
from ..training.forwards import fast_forward, mlp_fast_forward

__all__ = ["as_task", "fits", "canonical", "embedding_matrix", "Probe", "neuron_hook", "grid_pairs", "pair_mask"]


def as_task(task: Task | int, model: Any = None) -> Task:
    """A :class:`Task`, or ``Task(p)`` when given a prime ``p`` (see
    :func:`grok_interp.protocols.as_task`); with ``model``, checked to fit it (see
    :func:`fits`)."""
    task = protocols.as_task(task)
    return task if model is None else fits(model, task)


def fits(model: Any, task: Task) -> Task:
    """``task``, once :func:`grok_interp.models.check_model_fits_task` has checked that
    ``model`` (a model, its weights, ``W_E`` or a :class:`Probe`) was built for it."""
    check_model_fits_task(model.model if isinstance(model, Probe) else model, task)
    return task


def canonical(model_or_weights: nn.Module | dict[str, Tensor]) -> dict[str, Tensor]:
    """Canonical weights (``embed.W_E`` ...) of a model, or the dict itself."""
    if isinstance(model_or_weights, dict):
        return model_or_weights
    if isinstance(model_or_weights, nn.Module):
        return weights(model_or_weights)
    raise bad_value("model", type(model_or_weights).__name__, "must be a model or a canonical weight dict")


def embedding_matrix(x: nn.Module | dict[str, Tensor] | Tensor) -> Float[Tensor, "d_vocab d_model"]:
    """``W_E`` (d_vocab, d_model) of a model, a weight dict, or a tensor given directly."""
    if isinstance(x, Tensor):
        if x.ndim != 2:
            raise bad_value("W_E", tuple(x.shape), "must be a 2-D (d_vocab, d_model) tensor")
        return x
    w = canonical(x)
    if "embed.W_E" not in w:
        raise bad_value("weights", sorted(w)[:5], "have no 'embed.W_E'")
    return w["embed.W_E"]


def pair_mask(task: Task, split: Any, pairs: str) -> Tensor:
    """``(p*p,)`` bool over the grid: ``all`` valid pairs, or the split's ``train`` or
    ``test`` pairs (those two need a :class:`~grok_interp.Split`)."""
    check_choice("pairs", pairs, ("all", "train", "test"))
    if pairs == "all":
        return task.valid.reshape(-1)
    if split is None:
        raise bad_value("pairs", pairs, "needs a Split (or a run) as data, not a bare Task; or use pairs='all'")
    return (split.train_mask if pairs == "train" else split.test_mask).reshape(-1)


def grid_pairs(p: int) -> Int[Tensor, "p_sq 2"]:
    """All ``(a, b)`` in row-major grid order (``a * p + b``), valid or not."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    return torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)


def neuron_hook(model: nn.Module) -> str:
    """The hook of the last MLP layer's neuron activations."""
    if isinstance(model, MLPBaseline):
        return "hidden2.hook_post"
    n_layers = getattr(getattr(model, "cfg", None), "n_layers", 1)
    return f"blocks.{n_layers - 1}.mlp.hook_post"


def last_position(name: str, act: Tensor, pos: int) -> Tensor:
    """Select position ``pos``: the query position for attention patterns/scores."""
    if act.ndim == 2:  # (batch, features): the MLP baseline's hidden layers
        return act
    if name.endswith(("hook_pattern", "hook_attn_scores")):  # (batch, head, query, key)
        return act[:, :, pos]
    return act[:, pos]


#: Per model object: the fast forward whose logits matched its own (None: run it hooked).
_FAST: "weakref.WeakKeyDictionary[nn.Module, Callable[..., Tensor] | None]" = weakref.WeakKeyDictionary()


def _fast_forward_of(model: nn.Module, tokens: Tensor) -> Callable[..., Tensor] | None:
    """The fast last-position forward for ``model`` if it reproduces the model's own
    logits on the first pairs of ``tokens`` (checked once per model object)."""
    if model in _FAST:
        return _FAST[model]
    candidate: Callable[..., Tensor] | None = mlp_fast_forward if isinstance(model, MLPBaseline) else fast_forward
    head = tokens[:64]
    try:
        fast = candidate(model, head)  # type: ignore[misc]
        own = model(head)[:, -1]
        scale = float(own.abs().max()) + 1.0
        ok = fast.shape == own.shape and bool(torch.allclose(fast, own, rtol=1e-4, atol=1e-4 * scale))
    except Exception:  # an architecture the fast forward does not cover: run it hooked
        ok = False
    _FAST[model] = candidate if ok else None
    return _FAST[model]


class Probe:
    """One hooked forward over the ``p x p`` grid, cached.

    Args:
        model: A hooked model (``run_with_cache`` is used, never a re-implementation).
        task: Its task; inputs are ``task.tokens`` of every grid pair (invalid pairs of
            ``divide`` included: the model is defined on them, losses skip them).
        hooks: Hook names to capture besides the logits (last position kept).
        batch: Pairs per forward call.
    """

    def __init__(self, model: nn.Module, task: Task, hooks: Iterable[str] = (), batch: int = 16384) -> None:
        self.model = model
        self.task = task
        self.batch = batch
        self._want = set(hooks)
        self._acts: dict[str, Tensor] | None = None
        self._logits: Tensor | None = None

    @property
    def valid(self) -> Tensor:
        """``(p*p,)`` bool: pairs with an answer (all but ``b = 0`` for ``divide``)."""
        return self.task.valid.reshape(-1)

    @property
    def answers(self) -> Tensor:
        """``(p*p,)`` int64 answers in grid order (-1 where invalid)."""
        return self.task.labels.reshape(-1)

    @torch.no_grad()
    def _run(self) -> None:
        device = next(self.model.parameters()).device
        tokens = self.task.tokens(grid_pairs(self.task.p)).to(device)
        names = set(self._want)
        logits_parts: list[Tensor] = []
        acts: dict[str, list[Tensor]] = {n: [] for n in names}
        was_training = self.model.training
        self.model.eval()
        try:
            for i in range(0, len(tokens), self.batch):
                chunk = tokens[i : i + self.batch]
                if names:
                    out, cache = self.model.run_with_cache(chunk, names_filter=lambda n: n in names)
                    missing = names - set(cache.keys())
                    if missing:
                        raise bad_value("hook", sorted(missing)[0], "is not a hook point of this model")
                    for n in names:
                        acts[n].append(last_position(n, cache[n], -1).detach().float())
                    out = out[:, -1]
                else:
                    fast = _fast_forward_of(self.model, chunk)
                    out = fast(self.model, chunk) if fast is not None else self.model(chunk)[:, -1]
                logits_parts.append(out.detach().float())
        finally:
            self.model.train(was_training)
        self._logits = torch.cat(logits_parts)
        self._acts = {n: torch.cat(v) for n, v in acts.items()}

    def logits(self) -> Float[Tensor, "p_sq d_vocab_out"]:
        """Last-position logits of every grid pair."""
        if self._logits is None:
            self._run()
        assert self._logits is not None
        return self._logits

    def act(self, name: str) -> Float[Tensor, "p_sq ..."]:
        """Activation ``name`` at the last position for every grid pair."""
        if self._acts is None or name not in self._acts:
            self._want.add(name)
            self._run()
        assert self._acts is not None
        return self._acts[name]


def probe_of(model: Any, task: Task, hooks: Iterable[str] = ()) -> Probe:
    """Reuse ``model`` if it already is a :class:`Probe`, else make one."""
    if isinstance(model, Probe):
        for h in hooks:
            model._want.add(h)
        return model
    return Probe(model, task, hooks)
