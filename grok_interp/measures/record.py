"""Taking measures by name: during training (:func:`recorder`) and over saved
checkpoints (:func:`measure_checkpoints`, behind :meth:`GrokRun.measure`).

Each named measure adds one or more columns:

============================  =====================================================  =========
name                          columns                                                forward?
============================  =====================================================  =========
``med``                       ``med`` (wrap, mean)                                   no
``med_sum``                   ``med_sum`` (the paper's plotted scale)                no
``med_nowrap``                ``med_nowrap`` (i = 0..p-2: p-1 steps, no wrap)        no
``med_drop_last_*``           ``med_drop_last_avg`` / ``_sum`` / ``_scaled_sum``:    no
                              the reference scripts' MEDs (``base.py`` /
                              ``str.py`` / ``rec.py``; see ``MED_VARIANTS``)
``uniformity``                ``med_cv``, ``nn_spread``, ``norm_spread``,            no
                              ``top2_variance``
``weight_norm``               ``weight_norm`` and ``weight_norm.<component>``        no
``gini``                      ``gini_embed``, ``gini_logit`` (per-frequency norms)     no
``gini_component``            ``gini_embed_component``, ``gini_logit_component``      no
                              (per-component norms: const, cos k, sin k)
``activation_med``            ``activation_med`` (first MLP layer's ``hook_post``)    p inputs
``rqi``                       ``rqi`` (addition only)                                no
``key_freqs``                 ``n_key_freqs``, ``key_freqs`` (e.g. ``"14 35 41"``)    yes
``restricted_loss``           ``restricted_loss`` (the paper's, all pairs)           yes
``excluded_loss``             ``excluded_loss`` (the paper's, training pairs)        yes
``excluded_loss_per_freq``    ``excluded_loss_k<k>`` for each key frequency          yes
``trig_loss``                 ``trig_loss`` (= the paper's restricted loss)          yes
``restricted_loss_difference``  ``restricted_loss_difference``,                      yes
``excluded_loss_difference``    ``excluded_loss_difference``
                              (``variant="difference_projection"``)
``restricted_loss_tl_demo``   ``restricted_loss_tl_demo`` (test pairs),              yes
``excluded_loss_tl_demo``     ``excluded_loss_tl_demo`` (``variant="tl_demo"``)
``restricted_loss_neuron_projection``, ``excluded_loss_neuron_projection``           yes
                              (``variant="neuron_projection"``)
``logit_cosine``              ``logit_cosine``                                       yes
``stability``                 ``sc_fraction``, ``zero_grad_fraction``,               train
                              ``nlm_cosine``, ``logit_scale`` (Prieto et al.)        pairs
``key_irreps``                ``key_irreps`` (e.g. ``"3a 3b"``; group tasks)         yes
``irrep_restricted_loss``     the paper's restricted loss over the key irreps        yes
``irrep_excluded_loss``       the paper's excluded loss over the key irreps          yes
``cayley_med``                ``cayley_med`` (MED along the group's generators)      no
``llc``                       ``llc``, ``llc_std``, ``llc_stable``,                  SGLD
                              ``llc_chain_spread``, ``llc_settings`` (needs          chains
                              devinterp; :mod:`grok_interp.measures.llc`)
============================  =====================================================  =========

Aliases: ``"default"`` = the cheap ``med``, ``weight_norm``, ``uniformity``;
``"fourier"`` = ``key_freqs``, ``restricted_loss``, ``excluded_loss``, ``gini``,
``logit_cosine``; ``"representations"`` = ``cayley_med``, ``weight_norm``, ``key_irreps``,
``irrep_restricted_loss``, ``irrep_excluded_loss`` (any group task, or ``add``; the irrep
losses use each evaluated model's own key irreps). A callable ``f(model, task) -> float | dict`` is also a measure
(column: its ``__name__``, or the dict's keys). Measures that need a forward share one
``run_with_cache`` over the ``p x p`` grid per evaluation.

Key frequencies: during training the circuit measures use the current model's own
key frequencies (nothing later is known yet); over checkpoints they default to the
final checkpoint's, held fixed, as in the literature.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .._validate import bad_value, check_choice
from ..groups import GroupTask
from ..protocols import TaskRun, as_task_run, as_task_split
from ..tasks import Split, Task
from ._probe import Probe, fits, neuron_hook
from .circuits import excluded_loss, logit_cosine_similarity, restricted_loss, trig_loss, weight_norm
from .fourier import fourier_gini, key_frequencies
from .llc import llc_columns
from .representations import cayley_med, irrep_excluded_loss, irrep_restricted_loss, key_irreps
from .stability import stability
from .uniformity import activation_med, med, rqi, uniformity_stats

__all__ = ["MEASURE_NAMES", "RENAMED_MEASURES", "DEFAULT_MEASURES", "FOURIER_MEASURES", "REPRESENTATION_MEASURES", "recorder", "compute_measures", "measure_checkpoints"]

log = logging.getLogger(__name__)

DEFAULT_MEASURES = ("med", "weight_norm", "uniformity")
FOURIER_MEASURES = ("key_freqs", "restricted_loss", "excluded_loss", "gini", "logit_cosine")


@dataclass
class _Ctx:
    model: nn.Module
    task: Task
    split: Split | None
    key_freqs: list[int] | None = None
    key_rule: str = "neurons"
    _probe: Probe | None = field(default=None, repr=False)
    key_irreps: list[str] | None = None

    @property
    def probe(self) -> Probe:
        if self._probe is None:  # capture the neurons in the same forward if key freqs need them
            want = [neuron_hook(self.model)] if self.key_freqs is None and self.key_rule == "neurons" else []
            self._probe = Probe(self.model, self.task, want)
        return self._probe

    def freqs(self) -> list[int]:
        if self.key_freqs is None:
            self.key_freqs = key_frequencies(self.probe, self.task, self.key_rule)
        return self.key_freqs

    def irreps(self) -> list[str]:
        if self.key_irreps is None:
            self.key_irreps = key_irreps(self.probe, self.task, self.key_rule)
        return self.key_irreps

    @property
    def data(self) -> Any:
        return self.split if self.split is not None else self.task


def _pairs(c: _Ctx) -> str:
    """Training pairs for the excluded losses when there is a split; all pairs otherwise."""
    return "train" if c.split is not None else "all"


def _losses(kind: str, variant: str, column: str) -> Callable[[_Ctx], dict[str, Any]]:
    """A registry entry for one restricted/excluded loss variant."""

    def measure(c: _Ctx) -> dict[str, Any]:
        if kind == "restricted":
            pairs = "test" if variant == "tl_demo" and c.split is not None else "all"
            return {column: restricted_loss(c.probe, c.data, c.freqs(), variant=variant, pairs=pairs)}
        return {column: excluded_loss(c.probe, c.data, c.freqs(), variant=variant, pairs=_pairs(c))}

    return measure


def _excluded_per_freq(c: _Ctx) -> dict[str, Any]:
    per = excluded_loss(c.probe, c.data, c.freqs(), per_frequency=True, pairs=_pairs(c))
    return {f"excluded_loss_k{k}": v for k, v in per.items()}  # type: ignore[union-attr]


_REGISTRY: dict[str, Callable[[_Ctx], dict[str, Any]]] = {
    "med": lambda c: {"med": med(c.model, c.task)},
    "med_sum": lambda c: {"med_sum": med(c.model, c.task, reduce="sum")},
    "med_nowrap": lambda c: {"med_nowrap": med(c.model, c.task, wrap=False)},
    "med_drop_last_avg": lambda c: {"med_drop_last_avg": med(c.model, c.task, variant="drop_last_avg")},
    "med_drop_last_sum": lambda c: {"med_drop_last_sum": med(c.model, c.task, variant="drop_last_sum")},
    "med_drop_last_scaled_sum": lambda c: {
        "med_drop_last_scaled_sum": med(c.model, c.task, variant="drop_last_scaled_sum")
    },
    "uniformity": lambda c: uniformity_stats(c.model, c.task),
    "weight_norm": lambda c: weight_norm(c.model),
    "gini": lambda c: fourier_gini(c.model, c.task),
    "gini_component": lambda c: fourier_gini(c.model, c.task, norms="component"),
    "activation_med": lambda c: {"activation_med": activation_med(c.model, c.task)},
    "rqi": lambda c: {"rqi": rqi(c.model, c.data)},
    "key_freqs": lambda c: {"n_key_freqs": len(c.freqs()), "key_freqs": " ".join(map(str, c.freqs()))},
    "restricted_loss": _losses("restricted", "paper", "restricted_loss"),
    "excluded_loss": _losses("excluded", "paper", "excluded_loss"),
    "excluded_loss_per_freq": _excluded_per_freq,
    "trig_loss": lambda c: {"trig_loss": trig_loss(c.probe, c.data, c.freqs())},
    "restricted_loss_difference": _losses("restricted", "difference_projection", "restricted_loss_difference"),
    "excluded_loss_difference": _losses("excluded", "difference_projection", "excluded_loss_difference"),
    "restricted_loss_tl_demo": _losses("restricted", "tl_demo", "restricted_loss_tl_demo"),
    "excluded_loss_tl_demo": _losses("excluded", "tl_demo", "excluded_loss_tl_demo"),
    "restricted_loss_neuron_projection": _losses("restricted", "neuron_projection", "restricted_loss_neuron_projection"),
    "excluded_loss_neuron_projection": _losses("excluded", "neuron_projection", "excluded_loss_neuron_projection"),
    "logit_cosine": lambda c: {"logit_cosine": logit_cosine_similarity(c.probe, c.data, c.freqs())},
    "stability": lambda c: stability(c.model, c.split if c.split is not None else c.task),
    # groups (grok_interp.measures.representations): the model's own key irreps at each evaluation
    "key_irreps": lambda c: {"key_irreps": " ".join(c.irreps())},
    "irrep_restricted_loss": lambda c: {"irrep_restricted_loss": irrep_restricted_loss(c.probe, c.data, c.irreps())},
    "irrep_excluded_loss": lambda c: {
        "irrep_excluded_loss": irrep_excluded_loss(c.probe, c.data, c.irreps(), pairs=_pairs(c))},
    "cayley_med": lambda c: {"cayley_med": cayley_med(c.model, c.task)},
    "llc": lambda c: llc_columns(c.model, c.split if c.split is not None else c.task),
}
#: Measure names of grok_interp 0.1 that now have other names (their definitions changed
#: or they were renamed): asking for one is an error that names its successor.
RENAMED_MEASURES = {
    "restricted_loss_neurons": "restricted_loss_neuron_projection (0.1's level='neurons'); "
    "restricted_loss is now the paper's per-class projection",
}
MEASURE_NAMES: tuple[str, ...] = tuple(_REGISTRY)
REPRESENTATION_MEASURES = ("cayley_med", "weight_norm", "key_irreps", "irrep_restricted_loss", "irrep_excluded_loss")
_ALIASES = {"default": DEFAULT_MEASURES, "fourier": FOURIER_MEASURES, "representations": REPRESENTATION_MEASURES}


def _expand(measures: str | Iterable[str | Callable[..., Any]]) -> list[str | Callable[..., Any]]:
    items = [measures] if isinstance(measures, str) or callable(measures) else list(measures)
    out: list[str | Callable[..., Any]] = []
    for m in items:
        if isinstance(m, str) and m in _ALIASES:
            out += [x for x in _ALIASES[m] if x not in out]
        elif isinstance(m, str) and m in RENAMED_MEASURES:
            raise bad_value("measure", m, "was renamed in grok_interp 0.2: use " + RENAMED_MEASURES[m])
        elif callable(m) or m in _REGISTRY:
            if m not in out:
                out.append(m)
        else:
            raise bad_value("measure", m, "must be a callable or one of " + ", ".join(map(repr, (*_ALIASES, *_REGISTRY))))
    return out


def _call(m: Callable[..., Any], c: _Ctx) -> dict[str, Any]:
    value = m(c.model, c.task)
    if isinstance(value, dict):
        return value
    if isinstance(value, torch.Tensor):
        value = value.item()
    return {getattr(m, "__name__", "measure"): value}


@torch.no_grad()
def compute_measures(
    model: nn.Module,
    data: TaskRun | Split | Task | int,
    measures: str | Iterable[str | Callable[..., Any]] = "default",
    *,
    key_freqs: Sequence[int] | None = None,
    key_rule: str = "neurons",
    key_irreps_fixed: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Evaluate named measures on one model; one shared forward for those that need it.

    Args:
        model: A hooked model.
        data: Its Task, or a Split / run (needed for ``rqi`` and the train-split
            ``excluded_loss``; with a bare Task, ``excluded_loss`` uses all pairs).
        measures: Names (see the module table), aliases or callables.
        key_freqs: Key frequencies for the circuit measures (default: the model's own,
            by ``key_rule``).
        key_rule: ``neurons`` or ``embedding`` (see :func:`key_frequencies`).
        key_irreps_fixed: Key irreps for the irrep losses of a group task (default: the
            model's own, by ``key_rule``; see :func:`grok_interp.measures.representations.key_irreps`).

    Returns:
        ``{column: value}``.
    """
    check_choice("key_rule", key_rule, ("neurons", "embedding"))
    task, split = as_task_split(data, "data")
    fits(model, task)
    ctx = _Ctx(model, task, split, list(key_freqs) if key_freqs is not None else None, key_rule,
               key_irreps=list(key_irreps_fixed) if key_irreps_fixed is not None else None)
    row: dict[str, Any] = {}
    for m in _expand(measures):
        row.update(_REGISTRY[m](ctx) if isinstance(m, str) else _call(m, ctx))
    return row


def recorder(
    measures: str | Iterable[str | Callable[..., Any]] = "default",
    *,
    every: int | None = None,
    key_freqs: Sequence[int] | None = None,
) -> Callable[[int, nn.Module, Any], dict[str, Any] | None]:
    """A training callback that records measures as history columns.

    ``train_hooked(..., record=[...])`` appends ``recorder(record)`` to its callbacks,
    so every history row (each ``eval_every`` steps, or each one adaptive evaluation
    keeps; a backfilled row's measures see the weights of its own step) gets the
    measures' columns.

    Args:
        measures: Names, aliases (``"default"``: MED, weight norm, uniformity) or
            callables ``f(model, task)``.
        every: Only measure at steps divisible by this (other rows get no value, NaN in
            the history); default every history row.
        key_freqs: Fixed key frequencies for the circuit measures (default: the current
            model's own at each row).

    Returns:
        ``callback(step, model, context) -> dict``.
    """
    names = _expand(measures)
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise bad_value("every", every, "must be a positive integer or None")

    def callback(step: int, model: nn.Module, context: Any) -> dict[str, Any] | None:
        if every is not None and step % every:
            return None
        return compute_measures(model, context.split, names, key_freqs=key_freqs)

    callback.measures = names  # type: ignore[attr-defined]
    return callback


def measure_checkpoints(
    run: TaskRun,
    measures: str | Iterable[str | Callable[..., Any]] = ("default", "fourier"),
    *,
    key_freqs_from: str | int | Sequence[int] = "final",
    key_rule: str = "neurons",
    steps: Iterable[int] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Evaluate measures on every saved checkpoint of a run.

    Args:
        run: A :class:`~grok_interp.TaskRun` (a GrokRun, or any run with its task and split).
        measures: Names, aliases or callables (default: the cheap and Fourier suites).
        key_freqs_from: Where the circuit measures' key frequencies come from: ``final``
            (the last checkpoint's, held fixed, as in the literature), ``each`` (every
            checkpoint's own), a checkpoint step, or an explicit list of frequencies.
        key_rule: ``neurons`` or ``embedding`` (see :func:`key_frequencies`).
        steps: Checkpoint steps to measure (default all).
        progress: Show a progress bar.

    Returns:
        DataFrame, one row per checkpoint: ``step``, the measures' columns, and the
        history's ``train_loss``, ``test_loss``, ``train_acc``, ``test_acc`` at that step
        where recorded. ``df.attrs["key_freqs"]`` holds the fixed frequencies (if any).
    """
    from ..models import build_model, load_weights  # noqa: PLC0415 - avoid an import cycle

    run = as_task_run(run)
    check_choice("key_rule", key_rule, ("neurons", "embedding"))
    names = _expand(measures)
    available = run.checkpoint_steps
    if not available:
        raise bad_value("run", run, "has no saved checkpoints")
    steps = sorted(available if steps is None else steps)
    missing = sorted(set(steps) - set(available))
    if missing:
        raise bad_value("steps", missing[:5], f"have no checkpoint; saved steps: {available[:5]} ... {available[-1]}")
    device = next(run.model.parameters()).device
    model = build_model(run.config.model, run.task, device=device)

    fixed: list[int] | None
    if isinstance(key_freqs_from, str):
        check_choice("key_freqs_from", key_freqs_from, ("final", "each"))
        ref = available[-1] if key_freqs_from == "final" else None
        fixed = None
    elif isinstance(key_freqs_from, int) and not isinstance(key_freqs_from, bool):
        ref, fixed = key_freqs_from, None
    else:
        ref, fixed = None, sorted(int(k) for k in key_freqs_from)
    irreps_fixed: list[str] | None = None
    if ref is not None:
        load_weights(model, run.weights_at(ref))
        if isinstance(run.task, GroupTask) or run.task.op == "add":  # the irrep measures' fixed set
            irreps_fixed = key_irreps(model, run.task, key_rule)
            log.info("key irreps (%s rule) at step %d: %s", key_rule, ref, irreps_fixed)
        if not (isinstance(run.task, GroupTask) and not run.task.group.is_cyclic_standard):  # type: ignore[union-attr]
            fixed = key_frequencies(model, run.task, key_rule)  # (Z_p frequencies mean nothing on other groups)
            log.info("key frequencies (%s rule) at step %d: %s", key_rule, ref, fixed)

    rows = []
    for step in tqdm(steps, disable=not progress, desc="measures", unit="ckpt"):
        load_weights(model, run.weights_at(step))
        row = {"step": step}
        row.update(compute_measures(model, run.split, names, key_freqs=fixed, key_rule=key_rule,
                                    key_irreps_fixed=irreps_fixed))
        rows.append(row)
    df = pd.DataFrame(rows)
    hist_cols = [c for c in ("step", "train_loss", "test_loss", "train_acc", "test_acc") if c in run.history.columns]
    df = df.merge(run.history[hist_cols], on="step", how="left")
    df.attrs["key_freqs"] = fixed
    df.attrs["key_irreps"] = irreps_fixed
    df.attrs["key_rule"] = key_rule
    return df
