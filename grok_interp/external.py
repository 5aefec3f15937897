"""Models trained elsewhere, as runs: a ``HookedTransformer`` in hand, or someone's file.

:func:`from_model` turns a compatible transformer (a ``HookedTransformer``, a
TransformerLens 4 ``TransformerBridge``, or a state dict with its config), a task and,
optionally, its split, checkpoints and history into a :class:`~grok_interp.runs.GrokRun`:
every measure, plot and the report then work on it as on a run trained here.

:func:`from_checkpoint_file` reads the files two well-known codes write, without running
any of their pickled code:

* the TransformerLens Grokking demo (``demos/Grokking_Demo.ipynb``): ``torch.save`` of
  ``{"model", "config", "checkpoints", "checkpoint_epochs", "train_losses",
  "test_losses", "train_indices", "test_indices"}``;
* Nanda et al.'s progress-measures release (``full_run_data.pth``: ``"state_dicts"``,
  ``"train_losses"``, ``"test_losses"``, ``"epochs"``, sometimes ``"config"``; or a
  ``final.pth`` of their ``transformers.py``: ``"model"``, ``"train_losses"``,
  ``"test_losses"``, ``"epoch"``), whose weights are in their own layout (``W_E`` as
  ``(d_model, d_vocab)``, ``W_O`` as ``(d_model, n_heads * d_head)``, ...).

Files are read with ``torch.load(weights_only=True)``: tensors, plain containers and, in
place of a pickled configuration object (``HookedTransformerConfig``, their ``Config``),
an inert :class:`PickledConfig` holding its fields. Any other class in a file is refused
with one line naming it; nothing in the file is executed.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from . import tl_backend
from ._validate import bad_value
from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .errors import GrokInterpError, RunDirectoryError
from .models import MLPBaseline, build_model, check_model_fits_task, load_weights, weights
from .presets import PRESETS
from .runs import GrokRun
from .tasks import Split, Task
from .training import accuracy, loss_fn

__all__ = ["from_model", "from_checkpoint_file", "model_config_from_tl", "read_checkpoint_file", "PickledConfig"]

log = logging.getLogger(__name__)


# --- an outside model's configuration -----------------------------------------------------
def _field(cfg: Any, name: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


#: TransformerLens config fields this library's transformer cannot represent: name ->
#: (the value that means "off", what it would be).
_UNSUPPORTED = {
    "attn_only": (False, "an attention-only model (no MLP)"),
    "gated_mlp": (False, "a gated MLP"),
    "parallel_attn_mlp": (False, "attention and MLP in parallel"),
    "use_local_attn": (False, "local attention"),
    "final_rms": (False, "a final RMSNorm"),
    "use_qk_norm": (False, "QK normalisation"),
    "use_normalization_before_and_after": (False, "normalisation before and after each sublayer"),
    "num_experts": (None, "a mixture of experts"),
}


def model_config_from_tl(cfg: Any) -> ModelConfig:
    """The :class:`ModelConfig` of a TransformerLens config (or a dict of its fields).

    Read: ``n_layers``, ``d_model``, ``n_heads``, ``d_head``, ``d_mlp``, ``act_fn``,
    ``normalization_type`` (None or ``LN``), ``positional_embedding_type`` (``standard``)
    and ``seed``; ``init`` is ``tl``. Everything the library's transformer cannot be
    (attention-only, gated MLP, rotary positions, RMSNorm, grouped-query attention,
    soft caps, another attention scale, ...) is refused in one error that lists it.
    """
    problems = []
    for name, (off, what) in _UNSUPPORTED.items():
        value = _field(cfg, name, off)
        if value not in (off, None, False, 0):
            problems.append(f"{what} ({name}={value!r})")
    pos = _field(cfg, "positional_embedding_type", "standard")
    if pos != "standard":
        problems.append(f"{pos} positional embeddings (positional_embedding_type={pos!r}; only 'standard')")
    norm = _field(cfg, "normalization_type", None)
    if norm not in (None, "LN"):
        problems.append(f"normalization_type={norm!r} (only None or 'LN')")
    n_heads, d_head = _field(cfg, "n_heads"), _field(cfg, "d_head")
    kv = _field(cfg, "n_key_value_heads", None)
    if kv not in (None, n_heads):
        problems.append(f"grouped-query attention (n_key_value_heads={kv})")
    for cap in ("attn_scores_soft_cap", "output_logits_soft_cap"):
        if (_field(cfg, cap, -1.0) or -1.0) > 0:
            problems.append(f"a soft cap ({cap}={_field(cfg, cap)})")
    if not _field(cfg, "use_attn_scale", True):
        problems.append("unscaled attention (use_attn_scale=False)")
    scale = _field(cfg, "attn_scale", None)
    if scale is not None and d_head and not math.isclose(float(scale), math.sqrt(d_head), rel_tol=1e-6):
        problems.append(f"attention scale {float(scale):.4g} (only sqrt(d_head) = {math.sqrt(d_head):.4g})")
    n_ctx = _field(cfg, "n_ctx", 3)
    if n_ctx is not None and n_ctx < 3:
        problems.append(f"n_ctx={n_ctx} (the inputs are 3 tokens)")
    act = _field(cfg, "act_fn", "relu")
    if act not in ModelConfig.CHOICES["act_fn"]:
        problems.append(f"act_fn={act!r} (one of {', '.join(ModelConfig.CHOICES['act_fn'])})")
    if problems:
        raise GrokInterpError("this model cannot be represented by grok_interp's transformer: " + "; ".join(problems))
    seed = _field(cfg, "seed", None)
    return ModelConfig(
        n_layers=int(_field(cfg, "n_layers")), n_heads=int(n_heads), d_model=int(_field(cfg, "d_model")),
        d_head=int(d_head), d_mlp=int(_field(cfg, "d_mlp")), act_fn=act, normalization=norm, init="tl",
        seed=int(seed) if isinstance(seed, (int, np.integer)) else 0,
    )


# --- splits, checkpoints, histories given from outside -----------------------------------
def _split_from_train(task: Task, train: Tensor) -> Split:
    """The split whose training set is the bool ``(p, p)`` mask ``train``: this library's
    own random split when it is one (the TransformerLens demo's, Nanda et al.'s), else a
    ``mask`` split forcing every other valid pair into the test set."""
    if train.dtype != torch.bool or train.shape != (task.p, task.p):
        raise bad_value("split", f"{train.dtype} {tuple(train.shape)}", f"a training mask must be bool ({task.p}, {task.p})")
    if bool((train & ~task.valid).any()):
        raise bad_value("split", "mask", "trains on pairs the task has no answer for")
    n_valid, n_train = int(task.valid.sum()), int(train.sum())
    # The shortest fraction that draws n_train pairs (the draw depends on the count only).
    fracs = [f for f in (round(n_train / n_valid, k) for k in range(1, 7)) if 0 < f < 1 and int(f * n_valid) == n_train]
    for seed, shuffle in ((598, "torch"), (0, "python")) if fracs else ():
        known = Split.random(task, fracs[0], seed, shuffle=shuffle)
        if torch.equal(known.train_mask, train):
            return known
    frac = n_train / (task.p * task.p)
    while int(frac * task.p * task.p) < n_train:  # the float must round back to n_train
        frac = math.nextafter(frac, 1.0)
    return Split.from_mask(task, task.valid & ~train, frac=frac, seed=0)


def _resolve_split(task: Task, split: Any) -> Split:
    if split is None:
        return Split.from_config(task, DataConfig(p=task.p, offset=task.offset))
    if isinstance(split, Split):
        if split.task.p != task.p or not torch.equal(split.task.labels, task.labels):
            raise bad_value("split", split.kind, f"belongs to another task than p={task.p}, op={task.op_name!r}")
        return split
    t = torch.as_tensor(split)
    if t.dtype == torch.bool:
        return _split_from_train(task, t.reshape(task.p, task.p) if t.numel() == task.p**2 else t)
    flat = t.reshape(-1).long()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= task.p**2):
        raise bad_value("split", f"indices in [{int(flat.min())}, {int(flat.max())}]",
                        f"training indices must be flat pair indices a * p + b in [0, {task.p ** 2})")
    train = torch.zeros(task.p * task.p, dtype=torch.bool)
    train[flat] = True
    return _split_from_train(task, train.reshape(task.p, task.p))


def _history_frame(history: Any) -> pd.DataFrame:
    df = history.copy() if isinstance(history, pd.DataFrame) else pd.DataFrame(dict(history))
    if "step" not in df.columns:
        raise bad_value("history", sorted(df.columns)[:5], "needs a 'step' column")
    steps = df["step"].to_numpy()
    if len(steps) and (not np.issubdtype(steps.dtype, np.integer) or bool((np.diff(steps) <= 0).any())):
        raise bad_value("history", "step", "steps must be integers, strictly increasing")
    return df.reset_index(drop=True)


@torch.no_grad()
def _evaluate(model: nn.Module, split: Split, kind: str) -> dict[str, float]:
    """Train and test loss and accuracy of ``model`` on ``split`` (the history's columns)."""
    task = split.task
    device = next(model.parameters()).device
    row = {}
    for name, pairs in (("train", split.train_pairs), ("test", split.test_pairs)):
        logits = model(task.tokens(pairs).to(device))[:, -1]
        labels = task.answers(pairs).to(device)
        row[f"{name}_loss"] = float(loss_fn(logits, labels, kind))
        row[f"{name}_acc"] = accuracy(logits, labels)
    return row


def _check_same_logits(ours: nn.Module, theirs: nn.Module, task: Task) -> None:
    """The rebuilt model must compute the given model's logits (else a setting was missed)."""
    pairs = task.all_pairs()
    with torch.no_grad():
        was = theirs.training
        theirs.eval()
        try:
            want = theirs(task.tokens(pairs).to(next(theirs.parameters()).device))[:, -1].float().cpu()
            want = want[:, : task.d_vocab_out]  # a p + 1-th ("=") logit is dropped (_drop_equals_logit)
        finally:
            theirs.train(was)
        got = ours(task.tokens(pairs).to(next(ours.parameters()).device))[:, -1].float().cpu()
    diff = float((got - want).abs().max())
    if diff > 1e-4 * max(1.0, float(want.abs().max())):
        raise GrokInterpError(
            f"the model rebuilt from this one's weights computes other logits (max difference {diff:.3g}): "
            "its configuration has a setting grok_interp's transformer does not represent"
        )


# --- the public constructor ---------------------------------------------------------------
def from_model(
    model: nn.Module | Mapping[str, Tensor],
    task: Task | int,
    *,
    cfg: Any = None,
    split: Split | Tensor | Sequence[int] | None = None,
    checkpoints: Mapping[int, Mapping[str, Tensor]] | Sequence[Mapping[str, Tensor]] | None = None,
    checkpoint_steps: Sequence[int] | None = None,
    history: pd.DataFrame | Mapping[str, Sequence[Any]] | None = None,
    step: int | None = None,
    train: TrainConfig | Mapping[str, Any] | None = None,
    model_config: ModelConfig | None = None,
) -> GrokRun:
    """A run made from a model trained elsewhere: every measure, plot and the report work on it.

    Args:
        model: A ``HookedTransformer`` (TransformerLens 3), a ``TransformerBridge``
            (TransformerLens 4), or the ``state_dict()`` of either (give ``cfg``).
        task: The task it was trained on (or a prime p: addition mod p). Its vocabulary
            must be the model's: ``d_vocab = p + offset + 1``, ``d_vocab_out = p``, or
            ``p + 1`` (ARENA's configuration: the ``"="`` logit is dropped, and a log
            line says so).
        cfg: The ``HookedTransformerConfig`` (or a dict of its fields) of a state dict;
            read from ``model.cfg`` for a model.
        split: The training set: a :class:`Split`, a bool ``(p, p)`` mask, or the flat
            indices ``a * p + b`` of the training pairs (the demo's ``train_indices``).
            None: this library's default split (random, ``frac=0.3``, ``data_seed=598``:
            the TransformerLens demo's).
        checkpoints: Weights during training: ``{step: state_dict}``, or a list of state
            dicts (steps from ``checkpoint_steps``, else 0, 1, 2, ...). Canonical weights
            or either backend's state dicts.
        checkpoint_steps: The steps of a list of checkpoints.
        history: The training history: a DataFrame or dict of columns with ``step``.
            Missing ``train_loss``, ``test_loss``, ``train_acc``, ``test_acc`` are
            computed on the split at every checkpoint step (and the final one); None:
            the history is those rows.
        step: The final model's step (default: the last checkpoint's or history's, else 0).
        train: How it was trained, as far as known (:class:`TrainConfig` or its options);
            recorded in ``run.config``. Default: this library's defaults.
        model_config: The :class:`ModelConfig` when it is known (``cfg`` is then unused).

    Without ``checkpoints`` the run holds the one model: ``run.measure()`` measures it
    (one row, at ``step``), the Fourier, neuron and attention plots and the report
    draw it, and the curves over training (``plot_training``) say in one line that
    there is no history.

    Returns:
        A :class:`GrokRun` without a directory (``run.save(path)`` writes one) whose
        ``model`` is this library's build of the architecture holding the given
        weights (the given model is neither changed nor kept). For a given model, the
        rebuilt one is checked to compute the same logits on every pair.
    """
    task = task if isinstance(task, Task) else Task(p=task)
    theirs = model if isinstance(model, nn.Module) else None
    if isinstance(model, MLPBaseline):
        raise bad_value("model", "MLPBaseline", "is this library's own; train it with train_hooked(arch='mlp')")
    if theirs is not None:
        cfg = getattr(theirs, "cfg", cfg)
        final = {k: v.detach().to("cpu").clone() for k, v in weights(theirs).items()}
    elif isinstance(model, Mapping):
        final = dict(model)
    else:
        raise bad_value("model", type(model).__name__, "must be a HookedTransformer, a TransformerBridge or a state dict")
    if model_config is None:
        if cfg is None:
            raise bad_value("cfg", None, "a state dict needs its config (the HookedTransformerConfig or a dict of its fields)")
        model_config = model_config_from_tl(cfg)
        n_ctx = _field(cfg, "n_ctx", 3)
        if n_ctx is not None and n_ctx > 3:  # positions past the third are never read
            final = _first_positions(final)
    device = next(theirs.parameters()).device if theirs is not None else torch.device("cpu")
    ours = build_model(model_config, task, device=device)
    final = _vocab_view(final, model_config) if model_config.arch != "mlp" else final
    final, dropped = _drop_equals_logit(final, task)
    if dropped:
        log.warning("the model gives p + 1 = %d logits; the last (the '=' token's) is dropped: the run's model "
                    "answers with the p = %d residues%s", task.p + 1, task.p,
                    " (in every checkpoint too)" if checkpoints is not None else "")
    check_model_fits_task(final, task)
    load_weights(ours, final)
    if theirs is not None:
        _check_same_logits(ours, theirs, task)

    if checkpoints is None:
        by_step: dict[int, Mapping[str, Tensor]] = {}
    elif isinstance(checkpoints, Mapping):
        by_step = dict(checkpoints)
    else:
        ckpts = list(checkpoints)
        steps = list(range(len(ckpts))) if checkpoint_steps is None else [int(s) for s in checkpoint_steps]
        if len(steps) != len(ckpts):
            raise bad_value("checkpoint_steps", f"{len(steps)} steps", f"must give one step per checkpoint ({len(ckpts)})")
        by_step = dict(zip(steps, ckpts))
    scratch = build_model(model_config, task, device=device)
    canon: dict[int, dict[str, Tensor]] = {}
    for s in sorted(by_step):
        w = dict(by_step[s])
        if model_config.arch != "mlp" and cfg is not None and (_field(cfg, "n_ctx", 3) or 3) > 3:
            w = _first_positions(w)
        if model_config.arch != "mlp":
            w, _ = _drop_equals_logit(_vocab_view(w, model_config), task)
        try:
            load_weights(scratch, w)
        except GrokInterpError as exc:
            raise bad_value("checkpoints", s, f"does not fit the model: {exc}") from None
        canon[int(s)] = {k: v.detach().to("cpu").clone() for k, v in weights(scratch).items()}

    split = _resolve_split(task, split)
    if isinstance(train, TrainConfig):
        train_cfg = train
    else:
        train_cfg = TrainConfig(**dict(train or {}))
    hist = _history_frame(history) if history is not None else pd.DataFrame({"step": pd.Series([], dtype="int64")})
    if step is None:
        step = max([*canon, *hist["step"].tolist(), 0])
    if step not in canon:
        canon_final = {k: v.detach().to("cpu").clone() for k, v in weights(ours).items()}
    else:
        canon_final = canon[step]
    hist = _fill_history(hist, {**canon, step: canon_final}, scratch, split, train_cfg.loss)
    d = DataConfig(
        p=task.p, op=task.op_name, offset=task.offset, split=split.kind, frac=split.frac, data_seed=split.seed,
        k=split.k, t=split.t, shuffle=split.shuffle,
    )
    config = RunConfig(data=d, model=model_config, train=train_cfg)
    return GrokRun(model=ours, task=task, split=split, config=config, history=hist, checkpoints=canon)


def _drop_equals_logit(w: dict[str, Tensor], task: Task) -> tuple[dict[str, Tensor], bool]:
    """Canonical weights ``w`` with a ``p + 1``-th output logit (the ``"="`` token's, as
    ARENA's and Nanda et al.'s models have: ``d_vocab_out = d_vocab``) dropped; and
    whether one was. A model never trained to answer ``"="`` gives the same argmax."""
    w_u = w.get("unembed.W_U")
    if w_u is None or w_u.shape[-1] != task.d_vocab_out + 1:
        return w, False
    w = dict(w)
    w["unembed.W_U"] = w_u[..., : task.d_vocab_out]
    if "unembed.b_U" in w and w["unembed.b_U"].shape[-1] == task.d_vocab_out + 1:
        w["unembed.b_U"] = w["unembed.b_U"][..., : task.d_vocab_out]
    return w, True


def _first_positions(w: dict[str, Tensor]) -> dict[str, Tensor]:
    w = dict(w)
    for key in ("pos_embed.W_pos", "pos_embed.weight"):
        if key in w and w[key].shape[0] > 3:
            w[key] = w[key][:3]
    return w


def _vocab_view(w: Mapping[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Canonical names for either backend's state dict, for the fit check."""
    return tl_backend.canonical_state_dict(dict(w), cfg.n_heads, cfg.d_head)  # type: ignore[arg-type]


def _fill_history(
    hist: pd.DataFrame, by_step: dict[int, dict[str, Tensor]], scratch: nn.Module, split: Split, kind: str
) -> pd.DataFrame:
    """Add the four usual columns where the history lacks them, evaluated at the steps
    with weights (rows added for steps the history does not have)."""
    cols = ("train_loss", "test_loss", "train_acc", "test_acc")
    rows = []
    for s in sorted(by_step):
        have = hist.loc[hist["step"] == s]
        if len(have) and all(c in hist.columns and not have[c].isna().any() for c in cols):
            continue
        load_weights(scratch, by_step[s])
        rows.append({"step": s, **_evaluate(scratch, split, kind)})
    if not rows:
        return hist
    computed = pd.DataFrame(rows)
    merged = hist.merge(computed, on="step", how="outer", suffixes=("", "_computed")).sort_values("step")
    for c in cols:
        if c + "_computed" in merged.columns:
            merged[c] = merged[c].fillna(merged.pop(c + "_computed")) if c in hist.columns else merged.pop(c + "_computed")
    front = ["step", *cols]
    merged = merged[front + [c for c in merged.columns if c not in front]]
    merged["step"] = merged["step"].astype("int64")
    return merged.reset_index(drop=True)


# --- reading other people's files ---------------------------------------------------------
class PickledConfig:
    """A configuration object from a checkpoint file, kept as its fields only.

    Stands in for ``HookedTransformerConfig`` or a training code's ``Config`` while a
    file is read: unpickling makes this inert object and sets its attributes, so none
    of the original class's code runs. ``fields`` is the dict of what was saved.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    @property
    def fields(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"PickledConfig({self.__dict__!r:.200})"


def _numpy_globals() -> list[tuple[Any, str]]:
    """The numpy pieces a pickled numpy scalar needs (configs hold ``np.float64``)."""
    try:
        scalar = np._core.multiarray.scalar  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - numpy 1.x
        scalar = np.core.multiarray.scalar  # type: ignore[attr-defined]
    out: list[tuple[Any, str]] = [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
                                  (np.dtype, "numpy.dtype")]
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
        cls = getattr(np.dtypes, name, None)
        if cls is not None:
            out.append((cls, f"numpy.dtypes.{name}"))
    return out


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """Read a ``torch.save`` file of tensors, containers and configuration objects only.

    ``torch.load(weights_only=True)`` with, beside torch's own allowlist, numpy scalars
    and an inert :class:`PickledConfig` for every pickled class whose name ends in
    ``Config`` (``HookedTransformerConfig``, ``Config``). Anything else is refused.

    Raises:
        RunDirectoryError: naming the file and the classes it would have run.
    """
    path = Path(path)
    if not path.is_file():
        raise RunDirectoryError(f"checkpoint file {path} does not exist")
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # noqa: BLE001 - not a torch.save file at all
        raise RunDirectoryError(f"checkpoint file {path} is not a torch.save file ({type(exc).__name__}: {exc})") from exc
    allowed = _numpy_globals()
    known = {name for _, name in allowed}
    configs = [n for n in names if n not in known and n.rsplit(".", 1)[-1].endswith("Config")]
    allowed += [(PickledConfig, n) for n in configs]
    refused = sorted(set(names) - known - set(configs))
    if refused:
        raise RunDirectoryError(
            f"checkpoint file {path} holds pickled objects of {', '.join(refused)}, which a weights-only load "
            "refuses (a hostile or foreign file); nothing in it was run"
        )
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(str(path), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise RunDirectoryError(f"checkpoint file {path} is refused by the weights-only load: {str(exc).splitlines()[0]}") from exc
    except Exception as exc:  # noqa: BLE001 - a truncated or corrupt file
        raise RunDirectoryError(f"checkpoint file {path} is corrupt or truncated ({type(exc).__name__}: {exc})") from exc


def _config_fields(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, PickledConfig):
        return obj.fields
    if isinstance(obj, Mapping):
        return dict(obj)
    raise RunDirectoryError(f"the file's config is a {type(obj).__name__}, neither a config object nor a dict")


def from_checkpoint_file(
    path: str | os.PathLike, task: Task | int | None = None, *, split: Any = None, format: str = "auto"
) -> GrokRun:
    """A run from the checkpoint file of the TransformerLens Grokking demo or of Nanda
    et al.'s progress-measures release (read safely: see :func:`read_checkpoint_file`).

    Histories become this library's columns: the demo's ``train_losses[i]`` is the loss
    at step ``i`` (taken before the i-th update) and ``test_losses[i]`` at step ``i + 1``;
    its checkpoint after epoch ``e`` is step ``e + 1``. Nanda et al.'s losses are at
    step ``i`` (their test losses every ``len(train) / len(test)`` steps) and their
    checkpoints at the file's ``epochs`` (else every 100). Accuracies (and losses the
    file lacks) are computed at the checkpoint steps. Nanda et al.'s unembedding also
    has a logit for ``"="``; it is dropped (this library's models give the p answers),
    so losses computed here can differ from theirs in the last digits.

    Args:
        path: The ``.pth`` file.
        task: The task (default: addition mod the file's p).
        split: The training set, as for :func:`from_model` (default: the file's
            ``train_indices``, or the split its code draws: ``random``, seed 598 for the
            demo; Python's shuffle with the config's seed (0) for Nanda et al.).
        format: ``auto``, ``tl_demo`` or ``progress_measures``.
    """
    from ._validate import check_choice  # noqa: PLC0415

    check_choice("format", format, ("auto", "tl_demo", "progress_measures"))
    data = read_checkpoint_file(path)
    if not isinstance(data, Mapping):
        raise RunDirectoryError(f"checkpoint file {path} holds a {type(data).__name__}, not a dict of run data")
    if format == "auto":
        if "state_dicts" in data or ("model" in data and "embed.W_E" in data["model"] and "checkpoint_epochs" not in data
                                     and _is_nanda_layout(data["model"])):
            format = "progress_measures"
        elif "model" in data and "config" in data:
            format = "tl_demo"
        else:
            raise RunDirectoryError(
                f"checkpoint file {path} is neither the TransformerLens demo's (model, config, checkpoints, ...) "
                f"nor Nanda et al.'s (state_dicts, ...): its keys are {sorted(map(str, data))[:8]}"
            )
    try:
        return _from_tl_demo(data, task, split) if format == "tl_demo" else _from_progress_measures(data, task, split)
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise RunDirectoryError(f"checkpoint file {path} does not hold the {format} format: {type(exc).__name__}: {exc}") from exc


def _from_tl_demo(data: Mapping[str, Any], task: Any, split: Any) -> GrokRun:
    cfg = _config_fields(data["config"])
    p = int(cfg.get("d_vocab_out") or cfg["d_vocab"] - 1)
    task = task if isinstance(task, Task) else Task(p=task if task is not None else p)
    if split is None and "train_indices" in data:
        split = torch.as_tensor(data["train_indices"])
    train_losses = [float(x) for x in data.get("train_losses", [])]
    test_losses = [float(x) for x in data.get("test_losses", [])]
    rows: dict[int, dict[str, float]] = {}
    for i, v in enumerate(train_losses):
        rows.setdefault(i, {})["train_loss"] = v
    for i, v in enumerate(test_losses):
        rows.setdefault(i + 1, {})["test_loss"] = v
    history = pd.DataFrame([{"step": s, **r} for s, r in sorted(rows.items())]) if rows else None
    ckpts = list(data.get("checkpoints", []))
    steps = [int(e) + 1 for e in data.get("checkpoint_epochs", [])]
    demo = PRESETS["tl_demo"]
    train = {k: demo[k] for k in ("lr", "weight_decay", "betas", "warmup_steps", "optimizer", "loss", "checkpoint_every")}
    train["steps"] = max(len(train_losses), 1)
    return from_model(
        dict(data["model"]), task, cfg=cfg, split=split, checkpoints=ckpts, checkpoint_steps=steps,
        history=history, step=len(train_losses) or None, train=train,
    )


def _is_nanda_layout(sd: Mapping[str, Tensor]) -> bool:
    """Nanda et al.'s own transformer: ``W_O`` is ``(d_model, n_heads * d_head)`` (2-D)."""
    return any(k.endswith("attn.W_O") and getattr(v, "ndim", 0) == 2 for k, v in sd.items())


#: Their ``fn_name`` -> this library's operation.
_NANDA_OPS = {"add": "add", "subtract": "subtract", "x2xyy2": "a2_ab_b2"}


def _nanda_to_canonical(sd: Mapping[str, Tensor], p: int, n_heads: int) -> dict[str, Tensor]:
    """Nanda et al.'s layout -> canonical weights (without attention and unembedding
    biases, which their model does not have; the ``"="`` logit column dropped)."""
    out = {}
    for key, v in sd.items():
        name = key.rsplit(".", 1)[-1]
        if name == "mask" or "hook" in key:
            continue
        if key == "embed.W_E":
            out[key] = v.T
        elif key == "unembed.W_U":
            out[key] = v[:, :p]
        elif name in ("W_Q", "W_K", "W_V"):
            out[key] = v.transpose(-1, -2)
        elif name == "W_O":
            d_model = v.shape[0]
            out[key] = v.reshape(d_model, n_heads, -1).permute(1, 2, 0)
        elif name in ("W_in", "W_out"):
            out[key] = v.T
        elif name in ("w_ln", "b_ln"):
            raise RunDirectoryError("Nanda et al.'s LayerNorm (use_ln=True) is not represented here")
        else:
            out[key] = v
    return out


def _from_progress_measures(data: Mapping[str, Any], task: Any, split: Any) -> GrokRun:
    cfg = _config_fields(data.get("config"))
    sds = list(data["state_dicts"]) if "state_dicts" in data else [data["model"]]
    last = sds[-1]
    d_model, d_vocab = last["embed.W_E"].shape
    n_heads, d_head = last["blocks.0.attn.W_Q"].shape[:2]
    n_layers = len({k.split(".")[1] for k in last if k.startswith("blocks.")})
    p = int(cfg.get("p", d_vocab - 1))
    if cfg.get("use_ln"):
        raise RunDirectoryError("Nanda et al.'s LayerNorm (use_ln=True) is not represented here")
    if task is None:
        fn = cfg.get("fn_name", "add")
        if fn not in _NANDA_OPS:
            raise bad_value("task", None, f"the file's operation {fn!r} has no counterpart here; pass task=")
        task = Task(p=p, op=_NANDA_OPS[fn])
    elif not isinstance(task, Task):
        task = Task(p=task)
    act = {"ReLU": "relu", "GeLU": "gelu"}.get(cfg.get("act_type", "ReLU"))
    if act is None:
        raise RunDirectoryError(f"activation {cfg.get('act_type')!r} is not represented here")
    model_config = ModelConfig(
        n_layers=n_layers, n_heads=int(n_heads), d_model=int(d_model), d_head=int(d_head), d_mlp=int(last["blocks.0.mlp.W_in"].shape[0]),
        act_fn=act, init="nanda", seed=int(cfg.get("seed", 0)), attn_bias=False, unembed_bias=False,
    )
    if split is None:
        split = Split.random(task, float(cfg.get("frac_train", 0.3)), int(cfg.get("seed", 0)), shuffle="python")
    train_losses = [float(x) for x in data.get("train_losses", [])]
    test_losses = [float(x) for x in data.get("test_losses", [])]
    rows: dict[int, dict[str, float]] = {}
    for i, v in enumerate(train_losses):
        rows.setdefault(i, {})["train_loss"] = v
    every = max(1, len(train_losses) // len(test_losses)) if test_losses and train_losses else 1
    for i, v in enumerate(test_losses):
        rows.setdefault(i * every, {})["test_loss"] = v
    history = pd.DataFrame([{"step": s, **r} for s, r in sorted(rows.items())]) if rows else None
    if "state_dicts" in data:
        steps = [int(e) for e in data.get("epochs", [])] or [i * int(cfg.get("save_every", 100)) for i in range(len(sds))]
    else:
        steps = [int(data.get("epoch", len(train_losses)))]
    if len(steps) != len(sds):
        raise RunDirectoryError(f"the file has {len(sds)} state dicts but {len(steps)} epochs")
    ckpts = {s: _nanda_to_canonical(sd, task.p, int(n_heads)) for s, sd in zip(steps, sds)}
    train = {"lr": float(cfg.get("lr", 1e-3)), "weight_decay": float(cfg.get("weight_decay", 1.0)), "betas": (0.9, 0.98),
             "warmup_steps": 10, "steps": max(len(train_losses), steps[-1], 1), "checkpoint_every": int(cfg.get("save_every", 100))}
    return from_model(
        ckpts[steps[-1]], task, model_config=model_config, split=split, checkpoints=ckpts, history=history,
        step=steps[-1], train=train,
    )
