"""The data the plots draw, read or computed from a run: the one place viz touches a model.

Every ``plot_*`` function draws the data it is given (a history, a tensor of norms, a
cluster table, activations over the ``(a, b)`` grid). Given a run instead, a plot
hands it to the function here that names the data, and draws the result; the HTML
report calls these functions itself, then the plots. So the drawing code never runs a
model, and what a picture shows can be computed, inspected and tested on its own:

    >>> import grok_interp as g
    >>> from grok_interp.viz import data, plot_neuron_clusters
    >>> run = g.train_hooked(p=11, steps=20, d_model=16, d_mlp=32, progress=False)
    >>> table = data.neuron_clusters(run, step=20)
    >>> len(table) == 32                                  # one row per neuron
    True
    >>> fig = plot_neuron_clusters(table)

Measures live in :mod:`grok_interp.measures`; these functions only choose the model
(final or at a checkpoint) and call them, so a run's data for a plot and for a
measure are the same numbers.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from .._validate import bad_value
from ..measures import (
    compare_measures,
    embedding_fourier_norms,
    events,
    key_frequencies,
    measure_checkpoints,
    neuron_frequency_clusters,
    neuron_logit_map,
)
from ..measures.fourier import frequency_clusters_of
from ..measures.phases import GROKKED
from ..measures._probe import embedding_matrix, neuron_hook, probe_of
from ..protocols import Run, TaskRun, as_history, as_task_run, is_run

__all__ = [
    "BASE_COLUMNS",
    "EVENT_KEYS",
    "history",
    "event_steps",
    "grok_threshold_of",
    "measures_over_steps",
    "fourier_norms",
    "neuron_clusters",
    "activation_clusters",
    "representative_neurons",
    "correct_grid",
    "compare_table",
    "activations",
    "attention_grid",
    "logit_map",
    "embedding_rows",
    "final_key_frequencies",
    "default_pairs",
    "attention_patterns",
]

#: History columns written by every run; other columns are recorded measures.
BASE_COLUMNS = ("step", "train_loss", "test_loss", "train_acc", "test_acc")
#: The events a plot marks, in drawing order.
EVENT_KEYS = ("memorised_at", "grokked_at")


def _numeric(df: pd.DataFrame, col: str) -> bool:
    return pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])


def _np(x: Any) -> np.ndarray:
    return np.asarray(torch.as_tensor(x).detach().double().cpu())


# --- histories -----------------------------------------------------------------------------
def history(data: Run | pd.DataFrame | Iterable[dict[str, Any]]) -> pd.DataFrame:
    """A history sorted by ``step``: a run's, a DataFrame, or a list of row dicts."""
    df = as_history(data)
    if "step" not in df.columns:
        raise bad_value("data", f"columns {list(df.columns)}", "needs a 'step' column")
    return df.sort_values("step", kind="stable").reset_index(drop=True)


def grok_threshold_of(data: Any) -> float:
    """The test accuracy that counts as grokked for ``data``: a run's own
    ``config.train.grok_threshold`` (the one its stop rule used), else
    :data:`grok_interp.measures.phases.GROKKED` (0.99)."""
    thr = getattr(getattr(getattr(data, "config", None), "train", None), "grok_threshold", None)
    return float(thr) if isinstance(thr, (int, float)) and not isinstance(thr, bool) else GROKKED


def event_steps(hist: pd.DataFrame, grok_threshold: float = GROKKED) -> dict[str, int]:
    """``memorised_at`` / ``grokked_at`` steps of a history that has them (empty when it
    lacks accuracies or the events did not happen); see :func:`grok_interp.measures.phases`.
    Grokked: test accuracy ``>= grok_threshold``."""
    if not {"train_acc", "test_acc"} <= set(hist.columns):
        return {}
    ev = events(hist, grok_threshold=grok_threshold)
    return {k: getattr(ev, k) for k in EVENT_KEYS if getattr(ev, k) is not None}


def checkpointed(run: TaskRun) -> TaskRun:
    """``run``, or for a model imported without checkpoints the same run measured at its
    one model (:meth:`grok_interp.GrokRun.with_final_checkpoint`)."""
    if not run.checkpoint_steps and hasattr(run, "with_final_checkpoint"):
        return run.with_final_checkpoint()
    return run


def measures_over_steps(
    data: Run | pd.DataFrame,
    columns: Sequence[str] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Measure columns over steps: those the data holds, plus, for a run, the named
    measures it did not record, evaluated over its checkpoints.

    A measure name that yields several columns (``gini`` -> ``gini_embed``,
    ``gini_logit``) is replaced by them. ``attrs["columns"]`` lists the measure columns
    in the order asked (all non-base numeric columns when ``columns`` is None).

    Args:
        data: A :class:`~grok_interp.TaskRun` (its history, then
            :func:`~grok_interp.measures.measure_checkpoints` for the missing names) or
            a DataFrame with ``step`` and the columns.
        columns: Measures wanted (default: every recorded non-base column).
        options: Passed to :func:`~grok_interp.measures.measure_checkpoints`.

    Returns:
        The history with the measured columns merged on ``step``.
    """
    df = history(data)
    if columns is None:
        cols = [c for c in df.columns if c not in BASE_COLUMNS and _numeric(df, c)]
    else:
        cols = list(columns)
        absent = [c for c in cols if c not in df.columns]
        if absent:
            if not is_run(data):
                raise bad_value("columns", absent, f"are not columns of the data ({list(df.columns)})")
            measured = measure_checkpoints(checkpointed(as_task_run(data)), absent, **options)
            new = [c for c in measured.columns
                   if c not in df.columns and c not in BASE_COLUMNS and _numeric(measured, c)]
            df = df.merge(measured[["step", *new]], on="step", how="outer").sort_values("step", kind="stable")
            df = df.reset_index(drop=True)
            cols = [c for c in cols if c not in absent] + new
    df.attrs["columns"] = cols
    return df


# --- a model's Fourier picture ---------------------------------------------------------------
def _model(run: TaskRun, step: int | None) -> Any:
    return run.model if step is None else run.model_at(step)


def _weights(run: TaskRun, step: int | None) -> Any:
    return run.model if step is None else run.weights_at(step)


def fourier_norms(run: TaskRun, step: int | None = None) -> Float[Tensor, " k"]:
    """:func:`~grok_interp.measures.embedding_fourier_norms` of the run's final model, or
    of its weights at checkpoint ``step``."""
    run = as_task_run(run, "data")
    return embedding_fourier_norms(_weights(run, step), run.task)


def neuron_clusters(run: TaskRun, step: int | None = None, **options: Any) -> pd.DataFrame:
    """:func:`~grok_interp.measures.neuron_frequency_clusters` of the run's model (final,
    or at checkpoint ``step``): one hooked forward over the grid."""
    run = as_task_run(run, "data")
    return neuron_frequency_clusters(_model(run, step), run.task, **options)


def final_key_frequencies(run: TaskRun) -> list[int]:
    """The final model's :func:`~grok_interp.measures.key_frequencies` (the literature
    holds them fixed over checkpoints, so every step is drawn on the same planes)."""
    run = as_task_run(run, "data")
    return key_frequencies(run.model, run.task)


def correct_grid(run: TaskRun, step: int | None = None) -> Bool[np.ndarray, "p p"]:
    """Whether the model (final, or at ``step``) answers each valid ``(a, b)`` correctly;
    False off the valid pairs."""
    run = as_task_run(run, "data")
    task, model = run.task, _model(run, step)
    pairs = task.all_pairs()
    device = next(model.parameters()).device
    with torch.no_grad():
        pred = model(task.tokens(pairs).to(device))[:, -1].argmax(-1).cpu()
    grid = np.zeros((task.p, task.p), dtype=bool)
    grid[pairs[:, 0].numpy(), pairs[:, 1].numpy()] = (pred == task.answers(pairs)).numpy()
    return grid


def compare_table(run: Run | pd.DataFrame, measures: pd.DataFrame | None = None, **options: Any) -> pd.DataFrame:
    """:func:`~grok_interp.measures.compare_measures` of a run (or a history)."""
    return compare_measures(run, measures, **options)


# --- activations over the (a, b) grid ---------------------------------------------------------
def activations(run: TaskRun, step: int | None = None, hook: str | None = None) -> Float[np.ndarray, "p p n"]:
    """Last-position activations of ``hook`` (default the last MLP layer's
    ``hook_post``) over the whole ``(a, b)`` grid: one hooked forward (``run_with_cache``)."""
    run = as_task_run(run, "data")
    model, task = _model(run, step), run.task
    name = hook or neuron_hook(model)
    acts = probe_of(model, task, [name]).act(name)
    return _np(acts).reshape(task.p, task.p, -1)


def attention_grid(
    run: TaskRun, step: int | None = None, *, layer: int = 0, source: int = 0
) -> Float[np.ndarray, "head p p"]:
    """Attention from the ``=`` position to input position ``source`` (0: ``a``, 1: ``b``,
    2: ``=``) over every ``(a, b)``, per head (``[h, a, b]``); NaN off the valid pairs."""
    run = as_task_run(run, "data")
    p = run.task.p
    acts = activations(run, step, f"blocks.{layer}.attn.hook_pattern")  # (p, p, head * 3)
    grid = acts.reshape(p, p, -1, 3)[..., source].transpose(2, 0, 1)
    return np.where(_np(run.task.valid)[None] > 0, grid, np.nan)


def activation_clusters(acts: Float[np.ndarray, "p p n"] | Tensor, threshold: float = 0.85) -> pd.DataFrame:
    """The :func:`~grok_interp.measures.neuron_frequency_clusters` table of activations
    already computed over the grid (``neuron, frequency, fve, variance``)."""
    a = _np(acts)
    if a.ndim != 3 or a.shape[0] != a.shape[1]:
        raise bad_value("acts", tuple(a.shape), "must be activations (p, p, n)")
    p = a.shape[0]
    return frequency_clusters_of(torch.as_tensor(a.reshape(p * p, -1)), p, threshold)


def representative_neurons(clusters: pd.DataFrame, n: int) -> list[int]:
    """The most active neuron (largest ``variance``) of each frequency cluster, largest
    clusters first, then the most active of the rest: ``n`` neurons in all."""
    missing = [c for c in ("neuron", "frequency", "variance") if c not in clusters.columns]
    if missing:
        raise bad_value("clusters", f"columns {list(clusters.columns)}", f"needs columns {missing}")
    picked: list[int] = []
    clustered = clusters[clusters["frequency"] > 0]
    for _, group in sorted(clustered.groupby("frequency"), key=lambda kv: -len(kv[1])):
        picked.append(int(group.sort_values("variance", ascending=False)["neuron"].iloc[0]))
    for nid in clusters.sort_values("variance", ascending=False)["neuron"].astype(int):
        if len(picked) >= n:
            break
        if nid not in picked:
            picked.append(nid)
    return picked[:n]


# --- weights --------------------------------------------------------------------------------
def logit_map(run: TaskRun, step: int | None = None) -> Float[np.ndarray, "d_mlp p"]:
    """``W_L = W_out W_U`` of the run's weights (final, or at ``step``); see
    :func:`~grok_interp.measures.neuron_logit_map`."""
    run = as_task_run(run, "data")
    return _np(neuron_logit_map(_weights(run, step)))


def embedding_rows(run: TaskRun, step: int | None = None, operand: str = "a") -> Float[np.ndarray, "p d_model"]:
    """The ``p`` rows of ``W_E`` that embed operand ``a`` (or ``b``), in residue order."""
    run = as_task_run(run, "data")
    W = _np(embedding_matrix(_weights(run, step)))
    return W[_np(run.task.operand_tokens(operand)).astype(int)]


# --- attention at chosen inputs ----------------------------------------------------------------
def default_pairs(p: int, n: int = 4) -> Int[Tensor, "n 2"]:
    """``n`` fixed, spread-out inputs ``(a, b)``: ``a = round(j p / n)``,
    ``b = (a + round(p / 3) + 7 j) mod p`` for ``j = 0..n-1`` (deterministic, so the
    same inputs are shown at every checkpoint and in every report)."""
    if n < 1:
        raise bad_value("n", n, "must be >= 1")
    a = torch.tensor([round(j * p / n) % p for j in range(n)])
    b = (a + round(p / 3) + 7 * torch.arange(n)) % p
    return torch.stack([a, b], dim=1)


def attention_patterns(
    run: TaskRun,
    pairs: Int[Tensor, "batch 2"] | Sequence[Sequence[int]] | None = None,
    *,
    step: int | None = None,
    layer: int = 0,
) -> Float[Tensor, "batch head dest src"]:
    """Attention patterns ``blocks.{layer}.attn.hook_pattern`` for inputs ``(a, b)``.

    ``pattern[i, h, q, k]`` is the softmax weight head ``h`` puts on source position
    ``k`` when writing position ``q`` of input ``i`` (rows sum to 1; causal, so
    ``k <= q``). Position 2 is the ``=`` token, where the answer is read.

    Args:
        run: A :class:`~grok_interp.TaskRun`.
        pairs: ``(batch, 2)`` operand pairs (default :func:`default_pairs`).
        step: A checkpoint step (see ``run.checkpoint_steps``); None: the final model.
        layer: Transformer layer.

    Returns:
        The patterns, float32 on the CPU.
    """
    run = as_task_run(run)
    task = run.task
    pairs = default_pairs(task.p) if pairs is None else torch.as_tensor(pairs, dtype=torch.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
        raise bad_value("pairs", tuple(pairs.shape), "must be a non-empty (n, 2) list of (a, b)")
    if bool(((pairs < 0) | (pairs >= task.p)).any()) or not bool(task.valid[pairs[:, 0], pairs[:, 1]].all()):
        raise bad_value("pairs", pairs.tolist(), f"every (a, b) must be a valid input of the task (0 <= a, b < {task.p})")
    model = _model(run, step)
    name = f"blocks.{layer}.attn.hook_pattern"
    device = next(model.parameters()).device
    with torch.no_grad():
        _, cache = model.run_with_cache(task.tokens(pairs).to(device), names_filter=lambda n: n == name)
    if name not in cache:
        raise bad_value("layer", layer,
                        f"the model has no hook {name!r} (layers count from 0; an MLP baseline has no attention)")
    return cache[name].detach().to("cpu", torch.float32)
