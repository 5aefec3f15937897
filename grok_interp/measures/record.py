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
``irrep_restricted_loss``, ``irrep_excluded_loss`` (group tasks, or ``add``; over
checkpoints the final checkpoint's key irreps are held fixed). A callable ``f(model, task) -> float | dict`` is also a measure
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
from ..groups import GroupTask, lacks_cyclic_order
from ..protocols import TaskRun, as_task_run, as_task_split
from ..tasks import Split, Task
from ._probe import Probe, fits, neuron_hook
from .circuits import excluded_loss, logit_cosine_similarity, restricted_loss, trig_loss, weight_norm
from .fourier import fourier_gini, key_frequencies
from .llc import llc_columns
from .representations import cayley_med, irrep_excluded_loss, irrep_restricted_loss, key_irreps
from .stability import stability
from .uniformity import activation_med, med, rqi, uniformity_stats

__all__ = ["MEASURE_NAMES", "RENAMED_MEASURES", "MeasureContext", "MeasureSpec", "register_measure", "unregister_measure", "measure_names",
           "plot_columns", "DEFAULT_MEASURES", "FOURIER_MEASURES", "REPRESENTATION_MEASURES", "recorder", "compute_measures", "measure_checkpoints", "measure_specs"]

log = logging.getLogger(__name__)

DEFAULT_MEASURES = ("med", "weight_norm", "uniformity")
FOURIER_MEASURES = ("key_freqs", "restricted_loss", "excluded_loss", "gini", "logit_cosine")
REPRESENTATION_MEASURES = ("cayley_med", "weight_norm", "key_irreps", "irrep_restricted_loss", "irrep_excluded_loss")
_ALIASES = {"default": DEFAULT_MEASURES, "fourier": FOURIER_MEASURES, "representations": REPRESENTATION_MEASURES}
#: On a group task whose elements have no cyclic order (``D_n``, ``S_n``), an alias's
#: measures that read that order give way to their group versions (a name asked for
#: explicitly is refused there instead, naming its replacement).
_GROUP_VERSIONS = {"med": "cayley_med"}


@dataclass
class MeasureContext:
    """What a registered measure is given: the model at one evaluation and its data.

    Attributes:
        model: The hooked model (weights of the step being measured).
        task: Its :class:`~grok_interp.Task`.
        split: Its :class:`~grok_interp.Split`, or None when measured on a bare task.
        key_freqs: Fixed key frequencies, or None (then :meth:`freqs` computes the
            model's own by ``key_rule``).
        key_rule: ``neurons`` or ``embedding`` (see :func:`key_frequencies`).
        key_irreps: Fixed key irreps of a group task, or None (then :meth:`irreps`
            computes the model's own, :func:`grok_interp.measures.representations.key_irreps`).

    ``probe`` is one cached forward over the ``p x p`` grid shared by every measure of
    this evaluation (``probe.logits()``, ``probe.act(hook_name)``).
    """

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
        """The key frequencies the circuit measures use at this evaluation."""
        if self.key_freqs is None:
            self.key_freqs = key_frequencies(self.probe, self.task, self.key_rule)
        return self.key_freqs

    def irreps(self) -> list[str]:
        """The key irreps the representation measures use at this evaluation."""
        if self.key_irreps is None:
            self.key_irreps = key_irreps(self.probe, self.task, self.key_rule)
        return self.key_irreps

    @property
    def data(self) -> Any:
        """The split if there is one, else the task (what the measure functions take)."""
        return self.split if self.split is not None else self.task


@dataclass(frozen=True)
class MeasureSpec:
    """A registered measure: its function, the columns it adds, whether plots show it."""

    name: str
    fn: Callable[[MeasureContext], Any]
    columns: tuple[str, ...]
    plot: bool


_REGISTRY: dict[str, MeasureSpec] = {}
#: Measure names of grok_interp 0.1 that now have other names (their definitions changed
#: or they were renamed): asking for one is an error that names its successor.
RENAMED_MEASURES = {
    "restricted_loss_neurons": "restricted_loss_neuron_projection (0.1's level='neurons'); "
    "restricted_loss is now the paper's per-class projection",
}


def register_measure(
    name: str,
    fn: Callable[[MeasureContext], Any],
    *,
    columns: Sequence[str] | None = None,
    plot: bool = True,
    replace: bool = False,
) -> MeasureSpec:
    """Make ``fn`` a measure that every part of grok_interp can take by ``name``.

    Once registered, ``train_hooked(record=[name])``, ``run.measure([name])``,
    ``grok-interp measure --measures name`` and the report take it; the CLI's help
    lists it, and with ``plot=True`` the report plots its columns (after the
    built-ins, in registration order).

    Args:
        name: The measure's name (letters, digits, ``_``; not an alias or a built-in
            unless ``replace``).
        fn: ``fn(ctx) -> float | dict[str, float]`` with ctx a :class:`MeasureContext`;
            a float becomes the column ``name``.
        columns: The columns it adds (default ``(name,)``): what the report plots.
        plot: Whether the report plots it by default.
        replace: Allow replacing a registered measure of the same name.

    Example:
        >>> from grok_interp.measures import register_measure
        >>> spec = register_measure("logit_norm", lambda ctx: float(ctx.probe.logits().norm()), replace=True)
        >>> spec.columns
        ('logit_norm',)
        >>> unregister_measure("logit_norm")
    """
    if not isinstance(name, str) or not name.replace("_", "").isalnum() or not name[:1].isalpha():
        raise bad_value("name", name, "must be letters, digits and '_', starting with a letter")
    if name in _ALIASES or name in RENAMED_MEASURES or (name in _REGISTRY and not replace):
        raise bad_value("name", name, "is taken (pass replace=True to replace a registered measure)")
    if not callable(fn):
        raise bad_value("fn", fn, "must be callable as fn(ctx)")
    cols = (name,) if columns is None else tuple(columns)
    if not cols or not all(isinstance(c, str) and c for c in cols):
        raise bad_value("columns", columns, "must be non-empty column names")
    spec = MeasureSpec(name=name, fn=fn, columns=cols, plot=bool(plot))
    _REGISTRY[name] = spec
    return spec


def unregister_measure(name: str) -> None:
    """Remove a measure registered with :func:`register_measure` (built-ins stay)."""
    if name in MEASURE_NAMES:
        raise bad_value("name", name, "is a built-in measure")
    if name not in _REGISTRY:
        raise bad_value("name", name, "is not a registered measure")
    del _REGISTRY[name]


def measure_names() -> tuple[str, ...]:
    """Every registered measure name, built-ins first."""
    return tuple(_REGISTRY)


def plot_columns() -> tuple[str, ...]:
    """The columns plots show first, in order: those of the measures registered with
    ``plot=True``."""
    return tuple(c for spec in _REGISTRY.values() if spec.plot for c in spec.columns)


def _one(name: str, fn: Callable[[MeasureContext], Any], columns: Sequence[str] | None = None, plot: bool = False) -> None:
    register_measure(name, fn, columns=columns, plot=plot)


def _pairs(c: MeasureContext) -> str:
    """Training pairs for the excluded losses when there is a split; all pairs otherwise."""
    return "train" if c.split is not None else "all"


def _losses(kind: str, variant: str, column: str) -> Callable[[MeasureContext], dict[str, Any]]:
    """A registry entry for one restricted/excluded loss variant."""

    def measure(c: MeasureContext) -> dict[str, Any]:
        if kind == "restricted":
            pairs = "test" if variant == "tl_demo" and c.split is not None else "all"
            return {column: restricted_loss(c.probe, c.data, c.freqs(), variant=variant, pairs=pairs)}
        return {column: excluded_loss(c.probe, c.data, c.freqs(), variant=variant, pairs=_pairs(c))}

    return measure


def _excluded_per_freq(c: MeasureContext) -> dict[str, Any]:
    per = excluded_loss(c.probe, c.data, c.freqs(), per_frequency=True, pairs=_pairs(c))
    return {f"excluded_loss_k{k}": v for k, v in per.items()}  # type: ignore[union-attr]


# Built-ins, in the order plots show them.
_one("med", lambda c: med(c.model, c.task), plot=True)
_one("restricted_loss", _losses("restricted", "paper", "restricted_loss"), plot=True)
_one("excluded_loss", _losses("excluded", "paper", "excluded_loss"), plot=True)
_one("activation_med", lambda c: activation_med(c.model, c.task), plot=True)
_one("gini", lambda c: fourier_gini(c.model, c.task), ["gini_embed", "gini_logit"], plot=True)
_one("logit_cosine", lambda c: logit_cosine_similarity(c.probe, c.data, c.freqs()), plot=True)
_one("weight_norm", lambda c: weight_norm(c.model), plot=True)
_one("med_sum", lambda c: med(c.model, c.task, reduce="sum"), plot=True)
_one("med_nowrap", lambda c: med(c.model, c.task, wrap=False), plot=True)
_one("rqi", lambda c: rqi(c.model, c.data), plot=True)
_one("key_freqs", lambda c: {"n_key_freqs": len(c.freqs()), "key_freqs": " ".join(map(str, c.freqs()))},
     ["n_key_freqs"], plot=True)
for _variant in ("drop_last_avg", "drop_last_sum", "drop_last_scaled_sum"):
    _one(f"med_{_variant}", (lambda v: lambda c: med(c.model, c.task, variant=v))(_variant))
_one("uniformity", lambda c: uniformity_stats(c.model, c.task), ["med_cv", "nn_spread", "norm_spread", "top2_variance"])
_one("gini_component", lambda c: fourier_gini(c.model, c.task, norms="component"),
     ["gini_embed_component", "gini_logit_component"])
_one("excluded_loss_per_freq", _excluded_per_freq, ["excluded_loss_k<k>"])
_one("trig_loss", lambda c: trig_loss(c.probe, c.data, c.freqs()))
for _kind in ("restricted", "excluded"):
    for _variant, _suffix in (("difference_projection", "difference"), ("tl_demo", "tl_demo"),
                              ("neuron_projection", "neuron_projection")):
        _one(f"{_kind}_loss_{_suffix}", _losses(_kind, _variant, f"{_kind}_loss_{_suffix}"))
_one("stability", lambda c: stability(c.model, c.data), ["sc_fraction", "zero_grad_fraction", "nlm_cosine",
                                                         "logit_scale"])
# Groups (grok_interp.measures.representations) and the LLC (grok_interp.measures.llc).
_one("cayley_med", lambda c: cayley_med(c.model, c.task))
_one("key_irreps", lambda c: {"key_irreps": " ".join(c.irreps())}, ["key_irreps"])
_one("irrep_restricted_loss", lambda c: irrep_restricted_loss(c.probe, c.data, c.irreps()))
_one("irrep_excluded_loss", lambda c: irrep_excluded_loss(c.probe, c.data, c.irreps(), pairs=_pairs(c)))
_one("llc", lambda c: llc_columns(c.model, c.data), ["llc", "llc_std", "llc_stable", "llc_chain_spread"])

#: The built-in measure names (:func:`measure_names` includes those registered since).
MEASURE_NAMES: tuple[str, ...] = measure_names()


def _expand(measures: str | Iterable[str | Callable[..., Any]], task: Task | None = None) -> list[str | Callable[..., Any]]:
    items = [measures] if isinstance(measures, str) or callable(measures) else list(measures)
    swap = _GROUP_VERSIONS if lacks_cyclic_order(task) else {}
    out: list[str | Callable[..., Any]] = []
    for m in items:
        if isinstance(m, str) and m in _ALIASES:
            out += [x for x in (swap.get(x, x) for x in _ALIASES[m]) if x not in out]
        elif isinstance(m, str) and m in RENAMED_MEASURES:
            raise bad_value("measure", m, "was renamed in grok_interp 0.2: use " + RENAMED_MEASURES[m])
        elif callable(m) or m in _REGISTRY:
            if m not in out:
                out.append(m)
        else:
            raise bad_value("measure", m, "must be a callable or one of " + ", ".join(map(repr, (*_ALIASES, *_REGISTRY))))
    return out


def measure_specs(measures: str | Iterable[str]) -> tuple[MeasureSpec, ...]:
    """The registered measures that ``measures`` (names and aliases, as ``record=``
    takes them) records, in the order recorded; what a run-cache key is made of
    (:func:`grok_interp.run_cache.key_payload`)."""
    out = []
    for m in _expand(measures):
        if not isinstance(m, str):
            raise bad_value("measures", m, "must be measure names")
        out.append(_REGISTRY[m])
    return tuple(out)


def _run(name: str, c: MeasureContext) -> dict[str, Any]:
    value = _REGISTRY[name].fn(c)
    if isinstance(value, dict):
        return value
    if isinstance(value, torch.Tensor):
        value = value.item()
    return {name: value}


def _call(m: Callable[..., Any], c: MeasureContext) -> dict[str, Any]:
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
        key_irreps_fixed: Key irreps for the irrep losses (default: the model's own, by
            ``key_rule``; see :func:`grok_interp.measures.representations.key_irreps`).

    Returns:
        ``{column: value}``.
    """
    check_choice("key_rule", key_rule, ("neurons", "embedding"))
    task, split = as_task_split(data, "data")
    fits(model, task)
    ctx = MeasureContext(model, task, split, list(key_freqs) if key_freqs is not None else None, key_rule,
                         key_irreps=list(key_irreps_fixed) if key_irreps_fixed is not None else None)
    row: dict[str, Any] = {}
    for m in _expand(measures, task):
        row.update(_run(m, ctx) if isinstance(m, str) else _call(m, ctx))
    return row


def recorder(
    measures: str | Iterable[str | Callable[..., Any]] = "default",
    *,
    every: int | None = None,
    key_freqs: Sequence[int] | None = None,
    task: Task | None = None,
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
        task: The run's task, if known: on a group without a cyclic order the aliases'
            ``med`` is recorded as ``cayley_med``.

    Returns:
        ``callback(step, model, context) -> dict``.
    """
    names = _expand(measures, task)
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
    names = _expand(measures, run.task)
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
        if not lacks_cyclic_order(run.task):
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
